"""Money as integer fen (分, 1/100 CNY): the one home of parsing and formatting amounts.

Every price and amount nsdx stores is an integer number of fen — a dataset's list price
(``datasets.price_fen``), an offer's price, an order's contract value, a payment, a refund,
a reward. Parsing is exact (:class:`~decimal.Decimal`, never a binary float), and refuses
fractions of a fen, negative amounts, NaN, infinities and amounts beyond :data:`MAX_FEN`.

    to_fen("280000")        -> 28000000
    cny(28000000)           -> "280000.00"      (machine form: JSON, CSV, CKAN extras)
    yuan(28000000)          -> "¥280,000.00"    (what people read: pages, CLI lines)

It lives in the lowest layer because every layer needs it: ``datasets.yaml`` (ingest), the
catalogue's list price (catalogue) and the exchange's offers, orders and rewards.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from .errors import NsdxError
from .messages import Msg

#: ¥1,000,000,000,000.00 — no price or contract in nsdx is larger (it fits a 64-bit integer
#: many times over; a larger figure is a typo or an attack).
MAX_FEN = 100 * 10**12
_MAX_TEXT = 40  # characters of an amount as text (no legitimate amount is longer)
_CENT = Decimal("0.01")


class InvalidAmount(NsdxError):
    """An amount of money that is not a non-negative CNY figure in whole fen."""

    status = 422


def to_fen(amount: Any, *, what: str = "amount", floats: bool = False) -> int:
    """``'12345.67'`` / ``12345`` / ``Decimal`` -> ``1234567`` fen, exactly.

    Strings may carry ``¥`` and thousands separators (``'¥280,000.00'``). Floats are refused
    unless ``floats`` (a JSON number in a CKAN call): then their shortest decimal form is
    parsed, so ``99.5`` is ¥99.50 and ``0.001`` is refused like ``'0.001'``. Raises
    :class:`InvalidAmount` (422) naming ``what``."""
    hint = Msg("write e.g. 120000 or 120000.50 (yuan, at most 2 decimals)")
    if isinstance(amount, bool) or amount is None:
        raise InvalidAmount(_not_amount(what, repr(amount)), hint=hint)
    if isinstance(amount, float):
        if not floats:
            raise InvalidAmount(
                Msg("%(what)s: give amounts as strings or integers, not floats", what=what),
                hint=hint,
                amount=repr(amount),
            )
        amount = repr(amount)
    if isinstance(amount, int):
        d = Decimal(amount)
    elif isinstance(amount, Decimal):
        d = amount
    elif isinstance(amount, str):
        text = amount.strip().replace("¥", "").replace("￥", "").replace(",", "").strip()
        if len(text) > _MAX_TEXT or not text:
            raise InvalidAmount(_not_amount(what, repr(amount[:_MAX_TEXT])), hint=hint)
        try:
            d = Decimal(text)
        except InvalidOperation:
            raise InvalidAmount(_not_amount(what, repr(amount)), hint=hint, amount=amount) from None
    else:
        raise InvalidAmount(
            Msg("%(what)s: a %(type)s is not an amount", what=what, type=type(amount).__name__),
            hint=hint,
        )
    shown = str(amount)[:_MAX_TEXT]
    if not d.is_finite():
        raise InvalidAmount(
            Msg("%(what)s: %(value)s is not a finite amount", what=what, value=repr(shown)),
            hint=hint,
            amount=shown,
        )
    if d < 0:
        raise InvalidAmount(
            Msg("%(what)s: %(value)s is negative", what=what, value=repr(shown)),
            hint=hint,
            amount=shown,
        )
    if d > Decimal(MAX_FEN) / 100:
        raise InvalidAmount(
            Msg(
                "%(what)s: %(value)s is more than the largest amount nsdx accepts (%(max)s)",
                what=what,
                value=repr(shown),
                max=yuan(MAX_FEN),
            ),
            hint=Msg("check the figure"),
            amount=shown,
        )
    if d != d.quantize(_CENT):
        raise InvalidAmount(
            Msg(
                "%(what)s: %(value)s has a fraction of a fen (at most 2 decimals)",
                what=what,
                value=repr(shown),
            ),
            hint=hint,
            amount=shown,
        )
    return int(d * 100)


def _not_amount(what: str, shown: str) -> Msg:
    return Msg("%(what)s: %(value)s is not an amount in CNY", what=what, value=shown)


def cny(fen: int) -> str:
    """1234567 -> '12345.67' (exact; the machine form)."""
    sign = "-" if fen < 0 else ""
    q, r = divmod(abs(int(fen)), 100)
    return f"{sign}{q}.{r:02d}"


def grouped(fen: int) -> str:
    """28000000 -> '280,000.00': the figure people read, for a text that writes the ¥
    itself ("¥%(amount)s refunded")."""
    sign = "-" if fen < 0 else ""
    q, r = divmod(abs(int(fen)), 100)
    return f"{sign}{q:,}.{r:02d}"


def yuan(fen: int | None) -> str:
    """28000000 -> '¥280,000.00' (what people read); None -> ''."""
    if fen is None:
        return ""
    figure = grouped(abs(int(fen)))
    return f"-¥{figure}" if fen < 0 else f"¥{figure}"


def rate_of(fen: int, rate: Decimal) -> int:
    """fen * rate rounded half up to whole fen."""
    return int((Decimal(fen) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))
