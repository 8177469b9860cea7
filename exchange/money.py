"""Money as integer fen (分). Parsing and formatting CNY amounts without floats."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from .errors import InvalidRequest


def to_fen(amount: str | int | Decimal) -> int:
    """'12345.67' / 12345 / Decimal -> 1234567 fen. Floats are refused (use strings)."""
    if isinstance(amount, float):
        raise InvalidRequest("give amounts as strings or integers, not floats", amount=amount)
    try:
        d = Decimal(str(amount).replace(",", "").replace("¥", "").strip())
    except InvalidOperation:
        raise InvalidRequest(
            f"{amount!r} is not an amount in CNY", hint="write e.g. 120000 or 120000.50"
        ) from None
    if d < 0 or d != d.quantize(Decimal("0.01")):
        raise InvalidRequest(
            f"{amount!r}: amounts are non-negative with at most 2 decimals (fen)",
            amount=str(amount),
        )
    return int(d * 100)


def cny(fen: int) -> str:
    """1234567 -> '12345.67'."""
    sign = "-" if fen < 0 else ""
    q, r = divmod(abs(int(fen)), 100)
    return f"{sign}{q}.{r:02d}"


def rate_of(fen: int, rate: Decimal) -> int:
    """fen * rate rounded half up to whole fen."""
    return int((Decimal(fen) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))
