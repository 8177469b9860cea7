"""What a dataset declares about its data, kept in the catalogue: its columns (type,
description, personal data: which kind, how it is published, sensitive or not) and its
checks (the ``expectations:`` shorthand of datasets.yaml, docs/validation.md).

The Action API's ``package_create``/``package_update``/``package_patch`` take them as
``schema`` and ``expectations`` (datasets.yaml's keys and shapes), the portal's dataset
forms send the same, and ``nsdx ingest`` keeps what datasets.yaml declares. They are checked
by the functions datasets.yaml is checked with (:func:`ingest.spec.check_fields`,
:func:`validation.shorthand.parse_expectations`, :func:`validation.pii.check_policy`), and
the next upload is published with them (:func:`catalogue.jobs.spec_for_upload`): declared
personal columns masked, the expectations run and reported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ingest.spec import FieldSpec, check_fields, field_from_dict, field_to_dict
from validation.errors import ExpectationConfigError, PiiPolicyError
from validation.messages import Msg
from validation.native import re2_compiles
from validation.pii import check_policy
from validation.shorthand import Expectation, parse_expectations

from .registry import DECLARED_KEY  # where it is kept: the extras column, never in `extras`

MAX_EXPECTATIONS = 500
MAX_BYTES = 256 * 1024  # the whole declaration, as JSON


def check_declaration(
    schema: Any, expectations: Any, access: str
) -> tuple[dict[str, Any], dict[str, list]]:
    """The declaration to keep (``{"schema": [...], "expectations": [...]}``, datasets.yaml's
    shapes) and the refusals, CKAN's way: ``{"schema": [{}, {"pii": [msg]}, ...]}`` (one
    object per entry, empty when the entry is fine) or ``{"schema": [msg]}`` for the list as
    a whole; the same for ``expectations``."""
    errors: dict[str, list] = {}
    schema = [] if schema is None else schema
    expectations = [] if expectations is None else expectations
    fields, problems = check_fields(schema)
    if problems:
        errors["schema"] = _per_entry(schema, [(e.index, e.key, e.reason) for e in problems])
    else:
        try:
            check_policy(access, {f.name: (f.pii, f.pii_treatment) for f in fields if f.pii})
        except PiiPolicyError as e:
            kept = [(i, "pii_treatment", e.message) for i, f in enumerate(fields)
                    if f.name in e.columns]  # fmt: skip
            errors["schema"] = _per_entry(schema, kept)
    if not isinstance(expectations, list):
        errors["expectations"] = [Msg("expectations: must be a list of mappings")]
    elif len(expectations) > MAX_EXPECTATIONS:
        errors["expectations"] = [Msg("At most %(n)s checks.", n=MAX_EXPECTATIONS)]
    else:
        rows: list[tuple[int | None, str | None, str]] = []
        for i, raw in enumerate(expectations):
            try:  # one entry at a time: every refused entry is named, not only the first
                parsed = parse_expectations(
                    [raw], table=raw.get("table") if isinstance(raw, dict) else None
                )
            except ExpectationConfigError as e:
                rows.append((i, e.key, e.reason))
            else:
                rows.extend((i, key, why) for key, why in map(_backtracking, parsed) if why)
        if rows:
            errors["expectations"] = _per_entry(expectations, rows)
    declared = {"schema": [field_to_dict(f) for f in fields], "expectations": list(expectations)}
    if not errors:
        try:
            size = len(json.dumps(declared, ensure_ascii=False).encode())
        except (TypeError, ValueError):
            size = MAX_BYTES + 1  # not JSON: only a Python caller can send that
        if size > MAX_BYTES:
            errors["expectations"] = [
                Msg("The columns and checks together take at most %(n)s KiB.", n=MAX_BYTES >> 10)
            ]
    return declared, errors


# great-expectations' parameters that are patterns (Python's backtracking `re`, jsonschema's
# "pattern"): on the values of an upload they run in great-expectations, not in RE2
_PATTERN_KWARGS = frozenset(
    {"regex", "regex_list", "like_pattern", "like_pattern_list", "json_schema"}
)


def _backtracking(e: Expectation) -> tuple[str | None, Msg | None]:
    """Why a check declared through the portal or the Action API could run a pattern with
    backtracking on the upload's values (one value may then take hours: the whole job queue
    waits behind it), or ``(None, None)``. A pattern is checked by the ``regex`` check, which
    runs on Arrow's RE2 (linear time, :mod:`validation.native`); a pattern RE2 refuses (a
    back-reference, look-around) would fall back to Python's ``re``, and so does every
    pattern given to great-expectations directly (``gx:``) or under a ``row_condition``.
    datasets.yaml, which the operator keeps, is not limited."""
    if e.key == "regex":
        if e.kwargs.get("row_condition") is not None:
            return "regex", Msg("a regex check cannot have a row_condition here")
        if not re2_compiles(str(e.kwargs.get("regex"))):
            return "regex", Msg(
                "the pattern %(regex)s uses back-references or look-around, which can take "
                "hours on one value; write it without them",
                regex=repr(e.kwargs.get("regex")),
            )
        return None, None
    found = sorted(_PATTERN_KWARGS & set(e.kwargs))
    if found:
        return e.key, Msg(
            "%(name)s takes a pattern (%(params)s), which is checked only by the regex check "
            "here (it cannot take hours on one value); use {column: ..., regex: ...}",
            name=e.type,
            params=", ".join(found),
        )
    return None, None


def _per_entry(entries: Any, problems: Sequence[tuple[int | None, str | None, str]]) -> list:
    if any(i is None for i, _k, _r in problems) or not isinstance(entries, list):
        return [r for _i, _k, r in problems]
    out: list[dict[str, list]] = [{} for _ in entries]
    for i, key, reason in problems:
        out[i].setdefault(key or "entry", []).append(reason)  # type: ignore[index]
    return out


def declared_of(extras: dict | None) -> dict[str, Any] | None:
    """The declaration a dataset keeps, or None."""
    d = (extras or {}).get(DECLARED_KEY)
    return d if isinstance(d, dict) else None


def declared_from_spec(spec) -> dict[str, Any]:
    """What datasets.yaml declares for a dataset, in the catalogue's shape (JSON: a date
    written unquoted in YAML is kept as its ISO text)."""
    d = {
        "schema": [field_to_dict(f) for f in spec.schema],
        "expectations": list(spec.expectations),
    }
    return json.loads(json.dumps(d, ensure_ascii=False, default=str))


def fields_of(declared: dict[str, Any] | None) -> tuple[FieldSpec, ...]:
    """The declared columns as ingest's FieldSpecs (the kept declaration was checked)."""
    return tuple(field_from_dict(f, i) for i, f in enumerate((declared or {}).get("schema") or []))


__all__ = [
    "DECLARED_KEY",
    "check_declaration",
    "declared_from_spec",
    "declared_of",
    "fields_of",
]
