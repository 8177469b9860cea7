"""Personal data (PIPL): detect undeclared personal data, mask declared personal data.

Masking (:func:`mask_batch`), per column declared in datasets.yaml with ``pii: <kind>``:

* ``hmac`` (default) — the value is normalised and replaced by a keyed token
  ``"pii_" + hex(HMAC-SHA256(key, kind + ":" + value))[:24]``. The same value gives the same
  token in every dataset masked with the same key, so joins still work; without the key a
  token cannot be turned back into the value (nor checked against a guessed one).
  ``free_text`` columns keep their text; phone numbers, ID numbers and plates found inside
  are replaced by their tokens.
* ``drop`` — the column is removed.
* ``keep`` — left as is; allowed only on restricted (sold, contract-bound) data, see
  :func:`check_policy`.

Detection (:func:`detect`) looks at a sample of rows for mainland mobile numbers, 18-digit
resident ID numbers with a valid GB 11643 check digit, and vehicle plates; pyarrow's RE2
regex finds candidate rows, Python checks only those candidates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import PiiPolicyError, UndeclaredPersonalData
from .messages import Msg

TREATMENTS = ("hmac", "drop", "keep")
KINDS = ("plate", "phone", "id_card", "name", "address", "free_text", "none")

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领"
_L = "A-HJ-NP-Z"  # plate letters: no I, no O
# regular plate 粤A12345 (7 chars); new-energy 粤AD12345 / 粤A12345D (8 chars)
PLATE_BODY = f"[{PROVINCES}][{_L}][·• -]?(?:[DF][{_L}0-9][0-9]{{4}}|[0-9]{{5}}[DF]|[{_L}0-9]{{4}}[{_L}0-9挂学警港澳])"
_D = "[0-9０-９]"  # ASCII or full-width digits (both are written in Chinese text)
# 13812345678, 138-1234-5678, 138 1234 5678, １３８１２３４５６７８, +86 138...
PHONE_BODY = rf"(?:\+?86[- ]?|0086[- ]?)?[1１][3-9３-９]{_D}(?:[- ]?{_D}{{4}}){{2}}"
ID_BODY = (
    r"[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]"
)

# RE2 (pyarrow) has no look-around: bound with "start or a non-alphanumeric character".
# A digit run right after a decimal point is the fraction of a number (coordinates such as
# "POINT (-73.91529424 40.6)"), not a phone or ID number: '.' does not count as a boundary.
_RE2 = {
    "phone": f"(?:^|[^0-9０-９A-Za-z.]){PHONE_BODY}(?:[^0-9０-９A-Za-z]|$)",
    "id_card": f"(?:^|[^0-9A-Za-z.]){ID_BODY}(?:[^0-9A-Za-z]|$)",
    "plate": f"{PLATE_BODY}(?:[^0-9A-Za-z]|$)",
}
_PY = {
    "phone": re.compile(f"(?<![0-9０-９A-Za-z+.]){PHONE_BODY}(?![0-9０-９A-Za-z])"),
    "id_card": re.compile(f"(?<![0-9A-Za-z.]){ID_BODY}(?![0-9A-Za-z])"),
    "plate": re.compile(f"{PLATE_BODY}(?![0-9A-Za-z])"),
}
DETECT_ORDER = ("id_card", "phone", "plate")  # an ID number contains 11-digit runs

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_check_digit(first17: str) -> str:
    """The GB 11643 check character (ISO 7064 MOD 11-2) for the first 17 digits."""
    s = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[s % 11]


def is_valid_id_number(value: str) -> bool:
    """An 18-character resident ID number with a plausible date and a correct check digit."""
    v = value.strip().upper()
    if not re.fullmatch(ID_BODY, v, flags=re.IGNORECASE):
        return False
    return id_check_digit(v[:17]) == v[17]


# -- normalisation + tokens ----------------------------------------------------------------


def _normalise(arr: pa.Array, kind: str) -> pa.Array:
    """Vectorised: NFKC, no surrounding space; per kind: the canonical written form."""
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    arr = pc.utf8_normalize(arr, "NFKC")
    if kind in ("phone", "id_card", "plate"):
        arr = pc.replace_substring_regex(arr, r"[\s\-·•]+", "")
        arr = pc.utf8_upper(arr)
        if kind == "phone":
            arr = pc.replace_substring_regex(arr, r"^(?:\+86|0086|86)(1[0-9]{10})$", r"\1")
    elif kind in ("name", "address"):
        arr = pc.utf8_trim_whitespace(arr)
        arr = pc.replace_substring_regex(arr, r"\s+", " ")
    else:
        arr = pc.utf8_trim_whitespace(arr)
    return arr


def _normalise_one(value: str, kind: str) -> str:
    return _normalise(pa.array([value], pa.string()), kind)[0].as_py()


def _token(key: bytes, kind: str, value: str) -> str:
    return "pii_" + hmac.digest(key, f"{kind}:{value}".encode(), "sha256").hex()[:24]


def mask_value(value: Any, kind: str, key: bytes) -> str | None:
    """The token one value gets (for a lookup: "which rows are about plate 粤A12345?")."""
    if value is None:
        return None
    return _token(key, kind, _normalise_one(str(value), kind))


def _mask_array(arr: pa.Array | pa.ChunkedArray, kind: str, key: bytes) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if kind == "free_text":
        return _mask_free_text(arr, key)
    # normalise and hash each distinct value once (values that normalise alike get one token)
    enc = pc.cast(arr, pa.string()).dictionary_encode()
    return _tokens(_normalise(enc.dictionary, kind), kind, key).take(enc.indices)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_TOKEN_BYTES = 12  # 24 hex characters


def _tokens(values: pa.Array, kind: str, key: bytes) -> pa.StringArray:
    """``_token`` for every value of a null-free string array, without per-value pyarrow calls.

    HMAC-SHA256 (RFC 2104) written with two pre-keyed hashlib states that are copied per
    value: about twice as fast as ``hmac.digest`` per call, same result.
    """
    n = len(values)
    if n == 0:
        return pa.array([], pa.string())
    k = key if len(key) <= 64 else hashlib.sha256(key).digest()
    k = k.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in k))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in k))
    inner.update(f"{kind}:".encode())
    icopy, ocopy = inner.copy, outer.copy

    def mac(m: bytes) -> bytes:
        i = icopy()
        i.update(m)
        o = ocopy()
        o.update(i.digest())
        return o.digest()[:_TOKEN_BYTES]

    values = pc.cast(values, pa.string())
    _, obuf, dbuf = values.buffers()
    offs = np.frombuffer(obuf, dtype=np.int32)[values.offset : values.offset + n + 1].tolist()
    data = dbuf.to_pybytes() if dbuf is not None else b""
    raw = np.frombuffer(
        b"".join([mac(data[a:b]) for a, b in zip(offs[:-1], offs[1:], strict=True)]), dtype=np.uint8
    )
    raw = raw.reshape(n, _TOKEN_BYTES)
    width = 4 + 2 * _TOKEN_BYTES
    out = np.empty((n, width), dtype=np.uint8)
    out[:, :4] = np.frombuffer(b"pii_", dtype=np.uint8)
    out[:, 4::2] = _HEX[raw >> 4]
    out[:, 5::2] = _HEX[raw & 0x0F]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))


def _mask_free_text(arr: pa.Array, key: bytes) -> pa.Array:
    arr = pc.cast(arr, pa.string()) if not pa.types.is_string(arr.type) else arr
    hit = pc.fill_null(pc.match_substring_regex(arr, "|".join(_RE2.values())), False)
    if not pc.any(hit).as_py():
        return arr
    enc = arr.dictionary_encode()
    values = enc.dictionary.to_pylist()

    def sub(text: str) -> str:
        for kind in DETECT_ORDER:

            def mask(m: re.Match[str], k: str = kind) -> str:
                if k != "id_card" or is_valid_id_number(m.group(0)):
                    return _token(key, k, _normalise_one(m.group(0), k))
                return m.group(0)

            text = _PY[kind].sub(mask, text)
        return text

    return pa.array([sub(v) for v in values], pa.string()).take(enc.indices)


def mask_batch(
    batch: pa.RecordBatch | pa.Table,
    pii_columns: dict[str, tuple[str, str]],
    key: bytes,
) -> pa.RecordBatch | pa.Table:
    """Apply each declared column's treatment: ``{column: (kind, treatment)}``.

    ``hmac`` replaces values by keyed tokens (nulls stay null), ``drop`` removes the column,
    ``keep`` (and kind ``none``) leaves it. Row count and the other columns are unchanged.
    """
    if not key:
        raise ValueError("the masking key is empty; set NSDX_PII_KEY or let nsdx generate one")
    missing = [c for c in pii_columns if c not in batch.schema.names]
    if missing:
        raise KeyError(f"pii columns not in the data: {', '.join(missing)}")
    arrays, fields = [], []
    for i, f in enumerate(batch.schema):
        col = batch.column(i)
        if f.name in pii_columns:
            kind, treatment = pii_columns[f.name]
            if treatment not in TREATMENTS:
                raise ValueError(
                    f"pii_treatment {treatment!r} of {f.name!r} is not one of {TREATMENTS}"
                )
            if kind != "none" and treatment == "drop":
                continue
            if kind != "none" and treatment == "hmac":
                col = _mask_array(col, kind, key)
                f = pa.field(f.name, pa.string(), nullable=True, metadata=f.metadata)
        arrays.append(col)
        fields.append(f)
    schema = pa.schema(fields, metadata=batch.schema.metadata)
    if isinstance(batch, pa.Table):
        return pa.Table.from_arrays(arrays, schema=schema)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def masked_schema(schema: pa.Schema, pii_columns: dict[str, tuple[str, str]]) -> pa.Schema:
    """The schema :func:`mask_batch` produces (to open a Parquet writer before the first batch)."""
    fields = []
    for f in schema:
        kind, treatment = pii_columns.get(f.name, ("none", "keep"))
        if kind != "none" and treatment == "drop":
            continue
        if kind != "none" and treatment == "hmac":
            f = pa.field(f.name, pa.string(), nullable=True, metadata=f.metadata)
        fields.append(f)
    return pa.schema(fields, metadata=schema.metadata)


def check_policy(access: str, pii_columns: dict[str, tuple[str, str]]) -> None:
    """Raise :class:`PiiPolicyError` when open data would publish personal data unmasked."""
    if access == "restricted":
        return
    kept = sorted(
        c for c, (kind, treatment) in pii_columns.items() if kind != "none" and treatment == "keep"
    )
    if kept:
        raise PiiPolicyError(
            Msg(
                "open data cannot publish personal data unmasked: pii_treatment: keep on "
                "%(columns)s",
                columns=", ".join(kept),
            ),
            columns=kept,
            hint="use `pii_treatment: hmac` (keyed token, joins still work) or `pii_treatment: drop`, "
            "or make the dataset `access: restricted`",
        )


# -- detection -------------------------------------------------------------------------


@dataclass(frozen=True)
class PiiFinding:
    column: str
    kind: str  # phone | id_card | plate
    count: int  # rows of the sample holding at least one such value
    sample_masked: str  # one example, partly hidden, e.g. 138****5678

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "count": self.count,
            "sample_masked": self.sample_masked,
        }


def _hide(value: str, kind: str) -> str:
    v = value.strip()
    if kind == "phone":
        digits = re.sub(r"\D", "", v)[-11:]
        return digits[:3] + "****" + digits[-4:]
    if kind == "id_card":
        return v[:4] + "*" * 10 + v[-4:]
    return v[:2] + "*" * max(len(v) - 4, 1) + v[-2:]


def _sample(data: pa.RecordBatch | pa.Table, rows: int) -> pa.RecordBatch | pa.Table:
    if data.num_rows <= rows:
        return data
    idx = np.unique(np.linspace(0, data.num_rows - 1, rows).astype(np.int64))
    return data.take(pa.array(idx))


def detect(
    batch_or_table: pa.RecordBatch | pa.Table,
    declared: set[str] | frozenset[str] = frozenset(),
    *,
    sample_rows: int = 20_000,
    min_count: int = 1,
) -> list[PiiFinding]:
    """Personal data in columns not in ``declared`` (looked for in an evenly spaced sample)."""
    data = _sample(batch_or_table, sample_rows)
    findings: list[PiiFinding] = []
    for i, f in enumerate(data.schema):
        if f.name in declared:
            continue
        t = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        numeric = pa.types.is_floating(t) or pa.types.is_decimal(t)
        if (
            not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t))
            and not numeric
        ):
            continue
        col = data.column(i)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        if numeric:  # a phone or ID number read as a number: 13812345678.0 (a pandas export
            col = _whole_numbers(col)  # of a column with gaps, a sheet's mixed cells)
        if _too_short(col):
            continue
        col = pc.utf8_normalize(pc.cast(col, pa.string()), "NFKC")
        for kind in DETECT_ORDER:
            hit = pc.fill_null(pc.match_substring_regex(col, _RE2[kind]), False)
            if not pc.any(hit).as_py():
                continue
            count, example = 0, None
            for text in col.filter(hit).to_pylist():
                found = [m.group(0) for m in _PY[kind].finditer(text)]
                if kind == "id_card":
                    found = [v for v in found if is_valid_id_number(v)]
                if found:
                    count += 1
                    example = example or found[0]
            if count >= min_count and example is not None:
                findings.append(PiiFinding(f.name, kind, count, _hide(example, kind)))
    return findings


# The shortest value any detector matches: a plate (粤A12345: 9 bytes in UTF-8, 7 under
# NFKC, which never turns fewer than 7 bytes into 7 plate characters or 11 digits), a phone
# (11 digits); integers below 10**10 have at most 10 digits.
_MIN_BYTES = 7
_MAX_HARMLESS_INT = 10**10


def _whole_numbers(col: pa.Array) -> pa.Array:
    """The whole values of a float or decimal column as integers (the others null): written
    as text they are 1.3812345678e+10 or 13812345678.00, which no detector reads as the
    phone number they are."""
    as_float = pc.cast(col, pa.float64(), safe=False)
    whole = pc.and_(
        pc.fill_null(pc.is_finite(as_float), False),
        pc.fill_null(pc.equal(pc.floor(as_float), as_float), False),
    )
    whole = pc.and_(whole, pc.fill_null(pc.less(pc.abs(as_float), 2.0**62), False))
    if pa.types.is_decimal(col.type):  # exact: an 18-digit ID number has no float64 twin
        kept = pc.if_else(whole, col, pa.scalar(None, col.type))
        return pc.cast(pc.cast(kept, pa.decimal128(38, 0), safe=False), pa.int64(), safe=False)
    return pc.cast(pc.if_else(whole, as_float, None), pa.int64(), safe=False)


def _too_short(col: pa.Array) -> bool:
    """Can no value of ``col`` hold personal data? One vectorised pass, so a table of
    thousands of short columns (a wide sheet of counts) is not searched column by column
    with every pattern."""
    if pa.types.is_integer(col.type):
        mm = pc.min_max(col).as_py()
        lo, hi = mm["min"], mm["max"]
        return lo is None or max(abs(lo), abs(hi)) < _MAX_HARMLESS_INT
    longest = pc.max(pc.binary_length(col)).as_py()
    return longest is None or longest < _MIN_BYTES


def require_declared(
    batch_or_table: pa.RecordBatch | pa.Table,
    declared: set[str] | frozenset[str],
    *,
    dataset_id: str | None = None,
    sample_rows: int = 20_000,
) -> None:
    """Raise :class:`UndeclaredPersonalData` when :func:`detect` finds anything."""
    findings = detect(batch_or_table, declared, sample_rows=sample_rows)
    if findings:
        raise UndeclaredPersonalData(findings, dataset_id=dataset_id)


def mask_sample(value: Any, kind: str | None, key: bytes) -> str | None:
    """One value of a validation report's samples as it may be shown: a declared personal
    column's value becomes the token publishing gives it (whatever its treatment: a report
    is not the place for raw personal data), and in any other text every phone number, ID
    number and plate found is replaced by its token, as in a ``free_text`` column."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if kind and kind not in ("none", "free_text"):
        return mask_value(text, kind, key)
    return _mask_free_text(pa.array([text], pa.string()), key)[0].as_py()


# -- individuals -------------------------------------------------------------------------

#: Kinds whose values single out one person: their distinct tokens count individuals.
IDENTIFYING_KINDS = ("plate", "phone", "id_card", "name")


def _distinct(a: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``a`` (a sort: ``np.unique`` of numpy 2.4 hashes, ~100×
    slower on a million 64-bit integers)."""
    s = np.sort(a)
    if len(s) < 2:
        return s
    return s[np.concatenate(([True], s[1:] != s[:-1]))]


def _token_ids(tokens: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The distinct tokens of an array as 64-bit integers (their first 16 hex digits: two
    different people share one with a chance of about n²/2⁶⁵)."""
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    u = pc.unique(tokens.drop_null())  # a plate repeats every 30 s: decode each one once
    if len(u) == 0:
        return np.empty(0, dtype=np.uint64)
    head = pc.utf8_slice_codeunits(pc.cast(u, pa.string()), 4, 20)
    _, obuf, dbuf = head.buffers()
    n = len(head)
    offs = np.frombuffer(obuf, dtype=np.int32)[head.offset : head.offset + n + 1]
    if dbuf is None or not (np.diff(offs) == 16).all():  # not all tokens: hash each value
        values = pc.unique(pc.cast(u, pa.string())).to_pylist()
        digests = [hashlib.blake2b(v.encode(), digest_size=8).digest() for v in values]
        return _distinct(np.frombuffer(b"".join(digests), dtype=">u8").astype(np.uint64))
    hexdigits = dbuf.to_pybytes()[offs[0] : offs[-1]].decode("ascii")
    return _distinct(np.frombuffer(bytes.fromhex(hexdigits), dtype=">u8").astype(np.uint64))


class IndividualCounter:
    """Counts the distinct individuals of a table at ingest, from the masked tokens of its
    identifying personal-data columns (``plate``, ``phone``, ``id_card``, ``name``; masked
    with ``hmac`` or kept — a kept column is tokenised here only to be counted; dropped
    columns leave the data and are not counted). Memory: 8 bytes per distinct person.

    A table's count is the sum of its columns' counts: two columns may describe two
    different people (a passenger's phone, a driver's plate), and when in doubt the higher
    count decides (GB/T 43697-2024)."""

    def __init__(self, pii_columns: dict[str, tuple[str, str]], key: bytes) -> None:
        self.columns = {
            c: kt
            for c, kt in pii_columns.items()
            if kt[0] in IDENTIFYING_KINDS and kt[1] in ("hmac", "keep")
        }
        self.key = key
        self._ids: dict[str, list[np.ndarray]] = {c: [] for c in self.columns}

    def add(self, masked: pa.RecordBatch | pa.Table) -> None:
        for c, (kind, treatment) in self.columns.items():
            col = masked.column(masked.schema.get_field_index(c))
            if treatment == "keep":
                col = _mask_array(col, kind, self.key)
            parts = self._ids[c]
            parts.append(_token_ids(col))
            if len(parts) >= 32:
                self._ids[c] = [_distinct(np.concatenate(parts))]

    def counts(self) -> dict[str, int]:
        return {c: len(_distinct(np.concatenate(p))) if p else 0 for c, p in self._ids.items()}

    def total(self) -> int:
        return sum(self.counts().values())
