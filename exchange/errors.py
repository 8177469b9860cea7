"""Errors of the exchange: each names the condition, says what to do next, and whether a
retry may succeed (``transient``). ``status`` is the HTTP status the API answers with."""

from __future__ import annotations

from validation.errors import NsdxError


class ExchangeError(NsdxError):
    """Base class of everything the exchange package raises on purpose."""


class InvalidCreditCode(ExchangeError):
    """A unified social credit code (统一社会信用代码) fails GB 32100-2015."""


class EnterpriseNotFound(ExchangeError):
    status = 404


class OfferNotFound(ExchangeError):
    status = 404


class OrderNotFound(ExchangeError):
    status = 404


class NotAllowed(ExchangeError):
    """The acting user or organisation may not do this (wrong seller, wrong buyer, auditor)."""

    status = 403


class InvalidState(ExchangeError):
    """The order is not in a state where this step is possible (e.g. grant before payment)."""

    status = 409


class InvalidRequest(ExchangeError):
    status = 422


class LedgerBusy(ExchangeError):
    """Another writer held the ledger lock for too long."""

    transient = True
    status = 503


class LedgerKeyError(ExchangeError):
    """The checkpoint signing key is missing, unreadable or malformed."""

    status = 500


class LedgerCorrupt(ExchangeError):
    """`nsdx audit verify` found an entry that differs from what was signed."""

    status = 500


class CheckpointNotFound(ExchangeError):
    status = 404


class TileNotFound(ExchangeError):
    """No such tlog-tiles path: malformed, or beyond the log's current size."""

    status = 404


class PolicyError(ExchangeError):
    """The reward policy file is missing or malformed."""


class CrossBorderRefused(ExchangeError):
    """The cross-border rules refuse this sale (core data, an offer not made for it...);
    the refusal is a ledger event (``ledger_index``)."""

    status = 403


class CrossBorderBlocked(ExchangeError):
    """The order's cross-border route needs a procedure whose evidence is not recorded."""

    status = 409
