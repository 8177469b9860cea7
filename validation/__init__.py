"""Validation: expectation suites from datasets.yaml, validation runs and their reports,
personal-data detection and masking (PIPL).

The lowest layer of nsdx: it imports none of nsdx, ingest, catalogue or exchange, and takes
plain values (lists of dicts, pyarrow objects, strings). great-expectations is imported only by
:mod:`validation.gx`, lazily.
"""

from .errors import (
    ExpectationConfigError,
    PiiPolicyError,
    UndeclaredPersonalData,
    ValidationFailed,
    ValidationPackageError,
)
from .pii import PiiFinding, check_policy, detect, mask_batch, mask_value
from .report import ExpectationResult, ValidationReport
from .runner import BatchValidator
from .shorthand import Expectation, parse_expectations

__all__ = [
    "BatchValidator",
    "Expectation",
    "ExpectationConfigError",
    "ExpectationResult",
    "PiiFinding",
    "PiiPolicyError",
    "UndeclaredPersonalData",
    "ValidationFailed",
    "ValidationPackageError",
    "ValidationReport",
    "check_policy",
    "detect",
    "mask_batch",
    "mask_value",
    "parse_expectations",
]
