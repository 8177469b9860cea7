"""The "columns and checks" section of the providers' dataset forms (create and edit): the
form's rows turned into datasets.yaml's ``schema`` and ``expectations`` shapes for the Action
API (``package_create`` / ``package_patch``, checked there by :mod:`catalogue.declared`),
the kept declaration turned back into rows, and the core's refusals placed beside the rows
they are about. No rule is decided here: a row is only translated.
"""

from __future__ import annotations

import json
from typing import Any

from ingest.spec import PII_KINDS, PII_TREATMENTS, TYPES

from .i18n import core
from .i18n import gettext as _

#: the expectation kinds the form offers (docs/validation.md); "json": any other entry,
#: written as a JSON object (gx:, in_dataset:, compound unique...)
KINDS = ("not_null", "unique", "between", "in_set", "regex", "length", "row_count",
         "min", "max", "mean", "distinct", "freshness", "json")  # fmt: skip
COL_KEYS = ("name", "type", "description", "pii", "pii_treatment", "sensitive", "unit", "format")
EXP_KEYS = ("kind", "column", "min", "max", "value", "mostly", "description")
MAX_ROWS = 1000
BLANK_ROWS = 3  # empty rows offered after the declared ones
MORE_ROWS = 5  # added by the "more rows" button
MAX_FIELDS = 20_000  # the form's fields, at most (starlette's default is 1000)


def _count(form, key: str) -> int:
    try:
        return max(0, min(int(str(form.get(key) or "0")), MAX_ROWS))
    except ValueError:
        return 0


def _val(form, key: str) -> str:
    """A field as sent (the form's size is capped by the CSRF check, 1 MiB; what is too long
    is the core's to refuse: nothing is cut silently)."""
    return str(form.get(key) or "").strip()


def rows_of_form(form) -> tuple[list[dict], list[dict]]:
    """The rows as posted (kept on the page whatever happens)."""
    cols = [
        {k: _val(form, f"col-{i}-{k}") for k in COL_KEYS} for i in range(_count(form, "col_rows"))
    ]
    exps = [
        {k: _val(form, f"exp-{i}-{k}") for k in EXP_KEYS} for i in range(_count(form, "exp_rows"))
    ]
    if form.get("more"):
        cols += [dict.fromkeys(COL_KEYS, "") for _ in range(MORE_ROWS)]
        exps += [dict.fromkeys(EXP_KEYS, "") for _ in range(MORE_ROWS)]
    return cols[:MAX_ROWS], exps[:MAX_ROWS]


def _number(text: str) -> Any:
    """A bound as typed: a whole number, a decimal number, else the text (a timestamp;
    anything else is the core's to refuse); empty: null."""
    if text == "":
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def declaration_of_rows(cols: list[dict], exps: list[dict]):
    """(schema, expectations, where) from the rows: blank rows are left out; ``where`` maps
    each entry back to its row ("schema"/"expectations" -> row numbers), and ``bad`` holds
    the rows the form itself cannot read (a JSON entry that is not JSON)."""
    schema: list[dict] = []
    col_at: list[int] = []
    types: dict[str, str] = {}
    for i, r in enumerate(cols):
        if not any(r.get(k) for k in ("name", "type", "description", "pii", "unit", "format")):
            continue
        e: dict[str, Any] = {"name": r["name"]}
        for k in ("type", "pii", "description", "unit", "format"):
            if r.get(k):
                e[k] = r[k]
        if r.get("pii") and r["pii"] != "none":
            e["pii_treatment"] = r.get("pii_treatment") or "hmac"
        if r.get("sensitive"):
            e["sensitive"] = True
        schema.append(e)
        col_at.append(i)
        types[r["name"]] = r.get("type") or ""
    expectations: list[dict] = []
    exp_at: list[int] = []
    bad: dict[int, str] = {}
    for i, r in enumerate(exps):
        kind = r.get("kind") or ""
        if not kind:
            continue
        entry = _entry(kind, r, types)
        if entry is None:
            bad[i] = _(
                "Write one JSON object, e.g. %(example)s",
                example='{"gx": "expect_column_stdev_to_be_between", "column": "speed", "max_value": 30}',
            )
            continue
        expectations.append(entry)
        exp_at.append(i)
    return schema, expectations, {"schema": col_at, "expectations": exp_at}, bad


def _entry(kind: str, r: dict, types: dict[str, str]) -> dict | None:
    if kind == "json":
        try:
            v = json.loads(r.get("value") or "")
        except (ValueError, RecursionError):  # not JSON, or nested past Python's stack
            return None
        return v if isinstance(v, dict) else None
    e: dict[str, Any] = {}
    if r.get("column") and kind != "row_count":
        e["column"] = r["column"]
    lo, hi = _number(r.get("min", "")), _number(r.get("max", ""))
    value = r.get("value", "")
    if kind in ("not_null", "unique"):
        e[kind] = True
    elif kind == "between":
        e[kind] = [lo, hi]
    elif kind == "in_set":
        numeric = types.get(r.get("column", "")) in ("integer", "int32", "float")
        items = [v.strip() for v in value.split(",") if v.strip()]
        e[kind] = [_number(v) for v in items] if numeric else items
    elif kind == "regex":
        e[kind] = value
    elif kind == "length":
        e[kind] = _number(value) if value and lo is None and hi is None else [lo, hi]
    elif kind == "freshness":
        e[kind] = {"max_age_days": _number(value)}
    elif kind in ("row_count", "min", "max", "mean", "distinct"):
        e[kind] = {"between": [lo, hi]}
    else:  # a kind this form does not offer: the core names it
        e[kind] = value or True
    if r.get("mostly"):
        e["mostly"] = _number(r["mostly"])
    if r.get("description"):
        e["description"] = r["description"]
    return e


def rows_of_declared(declared: dict | None) -> tuple[list[dict], list[dict]]:
    """The form's rows for a kept declaration, with blank rows to add more."""
    d = declared or {}
    cols = []
    for f in d.get("schema") or []:
        row = {k: "" if f.get(k) is None else str(f.get(k)) for k in COL_KEYS}
        row["sensitive"] = "1" if f.get("sensitive") else ""
        if not f.get("pii") or f.get("pii") == "none":
            row["pii_treatment"] = ""
        cols.append(row)
    exps = [_row(e) for e in d.get("expectations") or []]
    cols += [dict.fromkeys(COL_KEYS, "") for _ in range(BLANK_ROWS)]
    exps += [dict.fromkeys(EXP_KEYS, "") for _ in range(BLANK_ROWS)]
    return cols, exps


def _text(v: Any) -> str:
    return "" if v is None else str(v)


def _row(e: Any) -> dict:
    """One kept expectation as a row of the form; an entry the form's kinds cannot show
    exactly becomes a JSON row (kept as it is)."""
    row = dict.fromkeys(EXP_KEYS, "")
    as_json = {**row, "kind": "json", "value": json.dumps(e, ensure_ascii=False)}
    if not isinstance(e, dict):
        return as_json
    kinds = [k for k in e if k in KINDS and k != "json"]
    if len(kinds) != 1 or set(e) - {kinds[0], "column", "mostly", "description"}:
        return as_json
    kind, v = kinds[0], e[kinds[0]]
    row.update(kind=kind, column=_text(e.get("column")), mostly=_text(e.get("mostly")),
               description=_text(e.get("description")))  # fmt: skip
    between = v.get("between") if isinstance(v, dict) and set(v) == {"between"} else None
    if kind in ("not_null", "unique") and v is True:
        return row
    if kind == "between" and isinstance(v, list) and len(v) == 2:
        return {**row, "min": _text(v[0]), "max": _text(v[1])}
    if kind in ("row_count", "min", "max", "mean", "distinct") and isinstance(between, list):
        if len(between) == 2:
            return {**row, "min": _text(between[0]), "max": _text(between[1])}
    if (
        kind == "in_set"
        and isinstance(v, list)
        and all(isinstance(x, str | int | float) and "," not in str(x) for x in v)
    ):
        return {**row, "value": ", ".join(map(str, v))}
    if kind == "regex" and isinstance(v, str):
        return {**row, "value": v}
    if kind == "length" and isinstance(v, int):
        return {**row, "value": str(v)}
    if kind == "length" and isinstance(v, list) and len(v) == 2:
        return {**row, "min": _text(v[0]), "max": _text(v[1])}
    if kind == "freshness" and isinstance(v, dict) and set(v) == {"max_age_days"}:
        return {**row, "value": _text(v["max_age_days"])}
    return as_json


def row_errors(err: dict, where: dict[str, list[int]], bad: dict[int, str]):
    """The core's refusals of ``schema`` and ``expectations`` (CKAN's shape: one object per
    entry, or messages about the list) as messages per row, in the visitor's language:
    ({row: {key: text}}, {row: {key: text}}, text about a whole list or None)."""
    cols: dict[int, dict[str, str]] = {}
    exps: dict[int, dict[str, str]] = {i: {"value": m} for i, m in bad.items()}
    whole: list[str] = []
    for name, out in (("schema", cols), ("expectations", exps)):
        v = err.get(name)
        if not isinstance(v, list):
            continue
        for n, item in enumerate(v):
            if isinstance(item, dict):
                if not item or n >= len(where[name]):
                    continue
                row = out.setdefault(where[name][n], {})
                for key, msgs in item.items():
                    key = _field(name, key)
                    text = " ".join(core(m) for m in (msgs if isinstance(msgs, list) else [msgs]))
                    row[key] = (row[key] + " " + text) if key in row else text
            else:
                whole.append(core(item))
    return cols, exps, (" ".join(whole) or None)


def _field(section: str, key: str) -> str:
    """Which input of a row a refusal is about."""
    if section == "schema":
        return key if key in COL_KEYS else "name"
    if key in ("column", "columns"):
        return "column"
    if key in ("mostly", "description"):
        return key
    return "kind"


def choices() -> dict[str, Any]:
    """The select lists of the section (values are datasets.yaml's words)."""
    return {"types": TYPES, "pii_kinds": PII_KINDS, "treatments": PII_TREATMENTS, "kinds": KINDS}


__all__ = [
    "MAX_FIELDS",
    "choices",
    "declaration_of_rows",
    "row_errors",
    "rows_of_declared",
    "rows_of_form",
]
