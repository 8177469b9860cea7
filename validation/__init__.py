"""Validation: expectation suites from datasets.yaml, validation runs and their reports,
personal-data detection and masking (PIPL).

The lowest layer of nsdx: it imports none of nsdx, ingest, catalogue or exchange, and takes
plain values (lists of dicts, pyarrow objects, strings). great-expectations is imported only by
:mod:`validation.gx`, lazily.
"""

from __future__ import annotations

import importlib

# name -> module; imported on first use, so that ``import validation.errors`` (which every
# package does for :class:`~validation.errors.NsdxError`) does not pull in pyarrow and numpy
_EXPORTS = {
    "ExpectationConfigError": "validation.errors",
    "NsdxError": "validation.errors",
    "PiiPolicyError": "validation.errors",
    "UndeclaredPersonalData": "validation.errors",
    "ValidationFailed": "validation.errors",
    "ValidationPackageError": "validation.errors",
    "IndividualCounter": "validation.pii",
    "PiiFinding": "validation.pii",
    "check_policy": "validation.pii",
    "detect": "validation.pii",
    "mask_batch": "validation.pii",
    "mask_value": "validation.pii",
    "ExpectationResult": "validation.report",
    "ValidationReport": "validation.report",
    "BatchValidator": "validation.runner",
    "Expectation": "validation.shorthand",
    "parse_expectations": "validation.shorthand",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'validation' has no attribute {name!r}")
