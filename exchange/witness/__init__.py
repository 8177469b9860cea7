"""Witnessing the exchange ledger: a C2SP tlog-witness that cosigns checkpoints
(``cosignature/v1``) only when the log grew by appending. See docs/ledger.md, "Witnesses"."""

from .core import Witness, WitnessConfigError, WitnessRefused, init_witness
from .cosignature import (
    CosignatureError,
    CosignerKey,
    CosignerVerifier,
    cosignature_message,
    generate_cosigner_key,
    parse_cosigner_key,
    parse_cosigner_verifier,
    verify_cosignatures,
)

__all__ = [
    "CosignatureError",
    "CosignerKey",
    "CosignerVerifier",
    "Witness",
    "WitnessConfigError",
    "WitnessRefused",
    "cosignature_message",
    "generate_cosigner_key",
    "init_witness",
    "parse_cosigner_key",
    "parse_cosigner_verifier",
    "verify_cosignatures",
]
