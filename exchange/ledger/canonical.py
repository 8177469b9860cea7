"""Canonical JSON for ledger leaves: RFC 8785 (JSON Canonicalization Scheme, JCS).

A ledger entry is hashed as ``leaf_hash(canonical_json(entry))``, so the same entry must
give the same bytes in every language and on every machine. The output is RFC 8785:

* object members sorted by their names compared as UTF-16 code units (RFC 8785 §3.2.3);
* no whitespace; UTF-8; strings escaped as ECMAScript ``JSON.stringify`` does
  (``\\"``, ``\\\\``, ``\\b \\f \\n \\r \\t``, other controls as ``\\u00xx``; nothing else);
* numbers written as ECMAScript writes an IEEE-754 double (RFC 8785 §3.2.2.3).

The ledger adds stricter rules for numbers, so that no reader can disagree about a value:

* integers must lie in the I-JSON safe range ``-(2**53 - 1) .. 2**53 - 1`` (RFC 7493 §2.2)
  — beyond it a JavaScript or double-based reader would silently round;
* a float is accepted only when its decimal form is *exactly* its binary value
  (``0.5``, ``2.0``, ``1e-3`` is refused because the double nearest 0.001 is not 0.001);
  NaN and ±Infinity are always refused;
* **money is never a float**: write integer fen (分, 1/100 yuan) — ``{"amount_fen": 1999}``
  — or a decimal string — ``{"amount": "19.99", "currency": "CNY"}``.

``canonical_json(obj, strict_numbers=False)`` drops the two ledger rules and writes any
finite double as RFC 8785 does (used to check this module against the RFC's examples).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

__all__ = ["MAX_SAFE_INTEGER", "CanonicalJSONError", "canonical_json"]

MAX_SAFE_INTEGER = 2**53 - 1

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
for _c in range(0x20):
    _ESCAPES.setdefault(chr(_c), f"\\u{_c:04x}")


class CanonicalJSONError(ValueError):
    """A value cannot be written as canonical ledger JSON; ``path`` says where it is."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def canonical_json(obj: Any, *, strict_numbers: bool = True) -> bytes:
    """Serialise ``obj`` (dict with str keys, list/tuple, str, int, bool, None, float) as
    RFC 8785 canonical JSON, UTF-8 encoded. Raises :class:`CanonicalJSONError`."""
    out: list[str] = []
    _write(obj, out, "$", strict_numbers)
    text = "".join(out)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates cannot be UTF-8
        raise CanonicalJSONError("$", "string holds a lone surrogate, not valid Unicode") from exc


def _write(obj: Any, out: list[str], path: str, strict: bool) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(_string(obj, path))
    elif isinstance(obj, int):
        if strict and abs(obj) > MAX_SAFE_INTEGER:
            raise CanonicalJSONError(
                path, f"integer {obj} is outside ±(2**53 - 1); write it as a string"
            )
        if not strict and abs(obj) > MAX_SAFE_INTEGER:
            out.append(_number(float(obj), path, strict))
        else:
            out.append(str(int(obj)))
    elif isinstance(obj, float):
        out.append(_number(obj, path, strict))
    elif isinstance(obj, dict):
        keys = list(obj)
        for k in keys:
            if not isinstance(k, str):
                raise CanonicalJSONError(path, f"object key {k!r} is {type(k).__name__}, not str")
        keys.sort(key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        out.append("{")
        for i, k in enumerate(keys):
            if i:
                out.append(",")
            out.append(_string(k, path))
            out.append(":")
            _write(obj[k], out, f"{path}.{k}", strict)
        out.append("}")
    elif isinstance(obj, list | tuple):
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            _write(item, out, f"{path}[{i}]", strict)
        out.append("]")
    elif isinstance(obj, Decimal):
        raise CanonicalJSONError(
            path,
            f"Decimal {obj} is not allowed; write money as a string (str(value)) or integer fen",
        )
    else:
        raise CanonicalJSONError(path, f"{type(obj).__name__} is not a JSON value")


def _string(s: str, path: str) -> str:
    for ch in s:
        if "\ud800" <= ch <= "\udfff":
            raise CanonicalJSONError(path, "string holds a lone surrogate, not valid Unicode")
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in s) + '"'


def _number(x: float, path: str, strict: bool) -> str:
    if x != x or x in (float("inf"), float("-inf")):
        raise CanonicalJSONError(path, f"{x} is not a JSON number")
    if x == 0:
        return "0"  # -0.0 too, as ECMAScript writes it
    shortest = repr(x)
    if strict and Decimal(x) != Decimal(shortest):
        raise CanonicalJSONError(
            path,
            f"float {shortest} is not exactly representable (its binary value is {Decimal(x)}); "
            "use integer fen or a decimal string",
        )
    if strict and x.is_integer() and abs(x) > MAX_SAFE_INTEGER:
        raise CanonicalJSONError(
            path, f"number {shortest} is outside ±(2**53 - 1); write it as a string"
        )
    return _es_number(shortest)


def _es_number(shortest: str) -> str:
    """ECMAScript Number::toString from Python's shortest round-trip repr (same digits)."""
    sign, rest = ("-", shortest[1:]) if shortest.startswith("-") else ("", shortest)
    _, digits_t, exp = Decimal(rest).as_tuple()
    if not isinstance(exp, int):  # 'n', 'N' or 'F': NaN and infinities have no digits
        raise ValueError(f"not a finite number: {shortest}")
    digits = "".join(map(str, digits_t)).rstrip("0")
    exp += len(digits_t) - len(digits)
    digits = digits.lstrip("0")
    k = len(digits)
    n = exp + k  # value = 0.d1d2...dk * 10**n
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mant = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mant}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + body
