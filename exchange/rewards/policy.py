"""The reward policy (YAML). Defaults in ``exchange/policy/default.yaml``; a deployment
passes its own file with ``--policy`` (or ``NSDX_REWARD_POLICY``)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml

from validation.money import to_fen

from ..errors import PolicyError
from ..ledger.canonical import canonical_json

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policy" / "default.yaml"
RELATED_RULES = (
    "same_group",
    "shared_controller",
    "shareholder_overlap",
    "same_legal_representative",
    "same_address",
    "same_phone",
    "same_bank_account",
)
FLAG_KINDS = ("cycle", "mirrored", "split")


@dataclass(frozen=True)
class WashTradePolicy:
    window_days: int = 30
    amount_tolerance_pct: str = "10"
    max_cycle_length: int = 5
    split_window_days: int = 7
    split_min_count: int = 3
    exclude: tuple[str, ...] = FLAG_KINDS

    @property
    def tolerance(self) -> Decimal:
        return Decimal(self.amount_tolerance_pct) / 100


@dataclass(frozen=True)
class Policy:
    programme: str = "nsdx default policy"
    rate: str = "0.30"
    annual_cap_per_group: str = "2000000"
    programme_cap_per_group: str = "10000000"
    programme_start_year: int = 2024
    beneficiary: str = "buyer"
    district_party: str = "beneficiary"
    date_basis: str = "paid_on"
    only_exchange_trades: bool = True
    exclude_refunded: bool = True
    no_stacking: bool = True
    min_contract_cny: str = "0"
    related_party: tuple[str, ...] = RELATED_RULES
    wash_trade: WashTradePolicy = field(default_factory=WashTradePolicy)
    source: str = ""

    @property
    def rate_d(self) -> Decimal:
        return Decimal(self.rate)

    @property
    def annual_cap_fen(self) -> int:
        return to_fen(self.annual_cap_per_group)

    @property
    def programme_cap_fen(self) -> int:
        return to_fen(self.programme_cap_per_group)

    @property
    def min_contract_fen(self) -> int:
        return to_fen(self.min_contract_cny)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        d["related_party"] = list(self.related_party)
        d["wash_trade"]["exclude"] = list(self.wash_trade.exclude)
        return d

    @property
    def sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.to_dict())).hexdigest()


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy in ``path``, else in NSDX_REWARD_POLICY, else the built-in one — for every
    caller alike (rewards, flags, reports, the HTTP API)."""
    import os  # noqa: PLC0415

    p = Path(path or os.environ.get("NSDX_REWARD_POLICY") or DEFAULT_POLICY)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise PolicyError(f"cannot read the reward policy {p}: {e.strerror}", file=str(p)) from None
    except yaml.YAMLError as e:
        raise PolicyError(f"{p}: not valid YAML: {e}", file=str(p)) from None
    return parse_policy(raw, source=str(p))


def parse_policy(raw: dict, source: str = "") -> Policy:
    def bad(msg: str) -> PolicyError:
        return PolicyError(
            f"{source or 'policy'}: {msg}",
            hint=f"compare with the defaults in {DEFAULT_POLICY}",
            file=source,
        )

    known = set(Policy.__dataclass_fields__) - {"source"}
    unknown = set(raw) - known
    if unknown:
        raise bad(f"unknown key(s): {', '.join(sorted(unknown))}")
    wt_raw = raw.pop("wash_trade", None) or {}
    unknown = set(wt_raw) - set(WashTradePolicy.__dataclass_fields__)
    if unknown:
        raise bad(f"unknown wash_trade key(s): {', '.join(sorted(unknown))}")
    for k in ("rate", "annual_cap_per_group", "programme_cap_per_group", "min_contract_cny"):
        if k in raw:
            if isinstance(raw[k], float):
                raise bad(f'{k}: write amounts and rates as strings, e.g. "0.30"')
            raw[k] = str(raw[k])
            try:
                Decimal(raw[k])
            except InvalidOperation:
                raise bad(f"{k}: {raw[k]!r} is not a number") from None
    if "amount_tolerance_pct" in wt_raw:
        wt_raw["amount_tolerance_pct"] = str(wt_raw["amount_tolerance_pct"])
    if "exclude" in wt_raw:
        wt_raw["exclude"] = tuple(wt_raw["exclude"] or ())
        if set(wt_raw["exclude"]) - set(FLAG_KINDS):
            raise bad(f"wash_trade.exclude: kinds are {', '.join(FLAG_KINDS)}")
    if "related_party" in raw:
        raw["related_party"] = tuple(raw["related_party"] or ())
        if set(raw["related_party"]) - set(RELATED_RULES):
            raise bad(f"related_party: rules are {', '.join(RELATED_RULES)}")
    if raw.get("beneficiary", "buyer") not in ("buyer", "seller"):
        raise bad("beneficiary must be buyer or seller")
    if raw.get("district_party", "beneficiary") not in ("buyer", "seller", "beneficiary", "both"):
        raise bad("district_party must be buyer, seller, beneficiary or both")
    if raw.get("date_basis", "paid_on") not in ("paid_on", "ordered_on"):
        raise bad("date_basis must be paid_on or ordered_on")
    if not Decimal(raw.get("rate", "0.30")) >= 0:
        raise bad("rate must be >= 0")
    return Policy(**raw, wash_trade=WashTradePolicy(**wt_raw), source=source)
