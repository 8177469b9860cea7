"""Unified social credit codes (统一社会信用代码), GB 32100-2015.

An 18-character code: registration authority (1), organisation category (1), administrative
division (6 digits), organisation code (9, GB 11714 with its own check character) and a
check character over the first 17. The alphabet has 31 characters: digits and the upper-case
letters without I, O, Z, S and V. Check character: ``31 - (sum(value_i * 3^i mod 31)) mod 31``
mapped back through the alphabet (31 maps to 0).
"""

from __future__ import annotations

from .errors import InvalidCreditCode

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
WEIGHTS = [pow(3, i, 31) for i in range(17)]  # 1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28
_ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]


def check_char(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters."""
    total = sum(_VALUE[c] * w for c, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def org_check_char(first8: str) -> str:
    """The GB 11714 check character of the 9-character organisation code."""
    total = sum(int(c, 36) * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    v = 11 - total % 11
    return {10: "X", 11: "0"}.get(v, str(v))


def normalise(code: str) -> str:
    return code.strip().upper().replace(" ", "")


def validate(code: str, *, strict_org_code: bool = False) -> str:
    """Return the normalised code or raise :class:`InvalidCreditCode` saying what is wrong.

    ``strict_org_code`` also checks the embedded GB 11714 organisation-code check character
    (codes issued since 2015 with an ``MA`` prefix still follow it, but some issuers did not,
    so it is off by default)."""
    c = normalise(code)
    hint = "a unified social credit code has 18 characters, e.g. 91440300708461136T"
    if len(c) != 18:
        raise InvalidCreditCode(f"{code!r}: {len(c)} characters, expected 18", hint=hint, code=code)
    bad = [ch for ch in c if ch not in _VALUE]
    if bad:
        raise InvalidCreditCode(
            f"{code!r}: character(s) {''.join(dict.fromkeys(bad))!r} are not allowed "
            "(I, O, Z, S and V are never used)",
            hint=hint,
            code=code,
        )
    if not c[2:8].isdigit():
        raise InvalidCreditCode(
            f"{code!r}: characters 3-8 must be the 6-digit administrative division code",
            hint=hint,
            code=code,
        )
    want = check_char(c[:17])
    if c[17] != want:
        raise InvalidCreditCode(
            f"{code!r}: check character is {c[17]!r}, GB 32100-2015 gives {want!r}",
            hint="re-type the code from the business licence (营业执照)",
            code=code,
        )
    if strict_org_code and org_check_char(c[8:16]) != c[16]:
        raise InvalidCreditCode(
            f"{code!r}: the organisation code {c[8:17]} fails its GB 11714 check",
            hint="re-type the code from the business licence (营业执照)",
            code=code,
        )
    return c


def is_valid(code: str) -> bool:
    try:
        validate(code)
    except InvalidCreditCode:
        return False
    return True


def make(division: str, org_code8: str, *, authority: str = "9", category: str = "1") -> str:
    """Build a valid code (demo data and tests): both check characters are computed."""
    first8 = org_code8.upper()
    org9 = first8 + org_check_char(first8)
    first17 = f"{authority}{category}{division}{org9}"
    return first17 + check_char(first17)


def division(code: str) -> str:
    """The administrative division (e.g. 440115 for Nansha District, Guangzhou)."""
    return normalise(code)[2:8]
