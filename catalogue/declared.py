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
from validation.pii import check_policy
from validation.shorthand import parse_expectations

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
                parse_expectations([raw], table=raw.get("table") if isinstance(raw, dict) else None)
            except ExpectationConfigError as e:
                rows.append((i, e.key, e.reason))
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
