"""The trade rules: bounds on dates, amounts and lengths every trade step checks
(:mod:`exchange.trade`, :mod:`exchange.sharing`), from ``exchange/policy/trade.yaml`` or the
file in ``NSDX_TRADE_POLICY``. The checks live here, in the domain, so the CLI, the HTTP API
and the Python API refuse the same inputs with the same 4xx error."""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from validation.messages import Msg
from validation.money import InvalidAmount, cny, to_fen, yuan

from .errors import InvalidRequest, PolicyError
from .ledger.canonical import canonical_json

DEFAULT_RULES = Path(__file__).resolve().parent / "policy" / "trade.yaml"
#: Versions, days and seconds are stored in 32-bit integer columns.
MAX_INT32 = 2**31 - 1


@dataclass(frozen=True)
class TradeRules:
    backdate_days: int = 7
    min_order_cny: str = "0.01"
    max_amount_cny: str = "1000000000"
    max_access_days: int = 3650
    max_term_days: int = 3660
    max_url_seconds: int = 604800
    registration_notice_days: int = 10  # public notice of a registration (exchange.registration)
    source: str = ""

    @property
    def min_order_fen(self) -> int:
        return to_fen(self.min_order_cny)

    @property
    def max_amount_fen(self) -> int:
        return to_fen(self.max_amount_cny)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        return d

    @property
    def sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.to_dict())).hexdigest()

    # -- the checks ------------------------------------------------------------------
    def amount(self, value: Any, what: str, *, minimum: int = 0) -> int:
        """An amount in fen: exact, finite, whole fen, within [minimum, max_amount_cny]."""
        try:
            fen = to_fen(value, what=what)
        except InvalidAmount as e:
            raise InvalidRequest(e.message, hint=e.hint, **e.fields) from None
        if fen > self.max_amount_fen:
            raise InvalidRequest(
                Msg(
                    "%(what)s: %(amount)s is above the exchange's maximum %(max)s",
                    what=what,
                    amount=yuan(fen),
                    max=yuan(self.max_amount_fen),
                ),
                hint=Msg(
                    "the trade rules (%(file)s) set max_amount_cny",
                    file=self.source or DEFAULT_RULES.name,
                ),
                amount=cny(fen),
            )
        if fen < minimum:
            raise InvalidRequest(
                Msg(
                    "%(what)s: %(amount)s is below the minimum %(min)s",
                    what=what,
                    amount=yuan(fen),
                    min=yuan(minimum),
                ),
                hint=Msg("a contract has a value; check the figure"),
                amount=cny(fen),
            )
        return fen

    def day(
        self, value: date | str | None, what: str, today: date, *, not_before: date | None = None
    ) -> date:
        """The date of a step: ``today`` (the server's clock) when not given; else at most
        ``backdate_days`` before today, in today's year, not after today, and not before
        ``not_before`` (the step it follows)."""
        if value is None or value == "":
            d = today
        else:
            d = parse_day(value, what)
        if d > today:
            raise InvalidRequest(
                Msg(
                    "%(what)s %(day)s is in the future (today is %(today)s)",
                    what=what,
                    day=d.isoformat(),
                    today=today.isoformat(),
                ),
                hint=Msg("record a step when it happens"),
                **{what.replace(" ", "_"): d.isoformat()},
            )
        earliest = today.toordinal() - self.backdate_days
        if d.toordinal() < earliest or d.year != today.year:
            raise InvalidRequest(
                Msg(
                    "%(what)s %(day)s is too far back: the exchange accepts dates from "
                    "%(earliest)s to today (%(today)s)",
                    what=what,
                    day=d.isoformat(),
                    earliest=max(date.fromordinal(earliest), date(today.year, 1, 1)).isoformat(),
                    today=today.isoformat(),
                ),
                hint=Msg(
                    "at most %(days)s days back and within this year (trade rules: "
                    "backdate_days); leave the date out to use today",
                    days=self.backdate_days,
                ),
                **{what.replace(" ", "_"): d.isoformat()},
            )
        if not_before is not None and d < not_before:
            raise InvalidRequest(
                Msg(
                    "%(what)s %(day)s is before the step it follows (%(before)s)",
                    what=what,
                    day=d.isoformat(),
                    before=not_before.isoformat(),
                ),
                **{what.replace(" ", "_"): d.isoformat()},
            )
        return d


def parse_day(value: date | str, what: str) -> date:
    if isinstance(value, date):
        return value
    text = str(value)
    try:
        if len(text) > 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            Msg("%(what)s: %(value)s is not a date", what=what, value=repr(text[:40])),
            hint=Msg("write YYYY-MM-DD"),
        ) from None


def bounded_int(value: Any, what: str, lo: int, hi: int) -> int:
    """``value`` as an integer in [lo, hi]: ints, integral finite floats (``30.0``) and
    digit strings; anything else (``"abc"``, ``1e9`` beyond ``hi``, NaN, a bool) is refused
    with :class:`InvalidRequest` (422)."""
    n: int | None = None
    if isinstance(value, bool):
        n = None
    elif isinstance(value, int):
        n = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        n = int(value)
    elif isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,18}", value.strip()):
        n = int(value.strip())
    if n is None:
        raise InvalidRequest(
            Msg(
                "%(what)s: %(value)s is not a whole number", what=what, value=repr(str(value)[:40])
            ),
            hint=Msg("give an integer from %(lo)s to %(hi)s", lo=lo, hi=hi),
        )
    if not lo <= n <= hi:
        raise InvalidRequest(
            Msg("%(what)s: %(n)s is outside %(lo)s..%(hi)s", what=what, n=n, lo=lo, hi=hi),
            hint=Msg("give an integer from %(lo)s to %(hi)s", lo=lo, hi=hi),
        )
    return n


def bounded_number(value: Any, what: str, lo: float, hi: float) -> float:
    """``value`` as a finite number in (lo, hi] (e.g. a profile lifetime in days)."""
    try:
        x = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x) or not lo < x <= hi:
        raise InvalidRequest(
            f"{what}: {str(value)[:40]!r} is not a number in ({lo:g}, {hi:g}]",
            hint=f"give a number greater than {lo:g} and at most {hi:g}",
        )
    return x


def load_rules(path: str | Path | None = None) -> TradeRules:
    """The trade rules in ``path``, else in NSDX_TRADE_POLICY, else the built-in ones."""
    p = Path(path or os.environ.get("NSDX_TRADE_POLICY") or DEFAULT_RULES)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise PolicyError(f"cannot read the trade rules {p}: {e.strerror}", file=str(p)) from None
    except yaml.YAMLError as e:
        raise PolicyError(f"{p}: not valid YAML: {e}", file=str(p)) from None
    return parse_rules(raw, source=str(p))


def parse_rules(raw: Any, source: str = "") -> TradeRules:
    def bad(msg: str) -> PolicyError:
        return PolicyError(
            f"{source or 'trade rules'}: {msg}",
            hint=f"compare with the defaults in {DEFAULT_RULES.name}",
            file=source,
        )

    if not isinstance(raw, dict):
        raise bad("expected a mapping of rule: value")
    known = set(TradeRules.__dataclass_fields__) - {"source"}
    unknown = set(raw) - known
    if unknown:
        raise bad(f"unknown key(s): {', '.join(sorted(map(str, unknown)))}")
    out: dict[str, Any] = {}
    for k in (
        "backdate_days",
        "max_access_days",
        "max_term_days",
        "max_url_seconds",
        "registration_notice_days",
    ):
        if k in raw:
            v = raw[k]
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_INT32:
                raise bad(f"{k}: {v!r} must be a whole number from 0 to {MAX_INT32}")
            out[k] = v
    for k in ("min_order_cny", "max_amount_cny"):
        if k in raw:
            if isinstance(raw[k], float):
                raise bad(f'{k}: write amounts as strings, e.g. "0.01"')
            try:
                to_fen(str(raw[k]), what=k)
            except InvalidAmount as e:
                raise bad(e.message) from None
            out[k] = str(raw[k])
    return TradeRules(**out, source=source)


def bounded_text(value: Any, what: str, limit: int) -> str:
    """``value`` as text of at most ``limit`` characters (None -> "")."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(
            Msg("%(what)s must be text", what=what),
            hint=Msg("at most %(limit)s characters", limit=limit),
        )
    if len(value) > limit:
        raise InvalidRequest(
            Msg(
                "%(what)s is %(n)s characters long; at most %(limit)s are kept",
                what=what,
                n=len(value),
                limit=limit,
            ),
            hint=Msg("shorten it"),
        )
    return value
