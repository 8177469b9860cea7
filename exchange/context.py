"""One object that holds what every exchange operation needs: the catalogue database,
the object store (for delivery URLs), the ledger and its signing key.

    ex = Exchange(catalogue, store, home=home, pii_key=key)

A deployment holds one (the service root's ``Nsdx.exchange``, built once under a lock so
the ledger has one writer); every surface (CLI, HTTP API, demo) calls :mod:`exchange.trade`,
:mod:`exchange.rewards.compute` and :mod:`exchange.ledger.verify` with it.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .crossborder.policy import CrossBorderPolicy
from .errors import LedgerKeyError
from .ledger.keys import LedgerSigner, load_signer
from .ledger.store import LedgerStore
from .rules import TradeRules, load_rules

if TYPE_CHECKING:
    from .witness.config import WitnessingConfig
    from .witness.pump import WitnessPump


def _utc_today() -> date:
    return datetime.now(UTC).date()


class Exchange:
    def __init__(
        self,
        catalogue,
        store=None,
        *,
        home: Path | str = ".nsdx",
        pii_key: bytes | None = None,
        signer: LedgerSigner | None = None,
        rules: TradeRules | None = None,
        crossborder: CrossBorderPolicy | None = None,
        create_keys: bool = True,
    ) -> None:
        self._crossborder = crossborder
        self.catalogue = catalogue
        self.engine = catalogue.engine
        self.store = store
        self.home = Path(home)
        self.pii_key = pii_key
        self._signer = signer
        self._rules = rules
        #: The server's clock for the dates of orders, payments and refunds (UTC).
        self.today: Callable[[], date] = _utc_today
        self.create_keys = create_keys  # false: a missing ledger key is not generated

    @cached_property
    def signer(self) -> LedgerSigner:
        return self._signer or load_signer(self.home, create=self.create_keys)

    @cached_property
    def ledger(self) -> LedgerStore:
        if self.create_keys:
            return LedgerStore(self.engine, self.signer)
        try:  # reading needs no key; signing then says there is none
            return LedgerStore(self.engine, self.signer)
        except LedgerKeyError:
            return LedgerStore(self.engine, None)

    @cached_property
    def witnessing(self) -> WitnessingConfig | None:
        """The witnesses this exchange asks to cosign its checkpoints and the quorum
        (NSDX_WITNESSES or ``home``/witnesses.txt; see :mod:`exchange.witness.config`), or
        None when none is configured."""
        from .witness.config import load_witnessing

        return load_witnessing(self.home)

    def start_witnessing(self) -> WitnessPump | None:
        """Start the background job that witnesses each new checkpoint (the job
        worker's; see :mod:`exchange.witness.pump`); None when no witness is configured."""
        cfg = self.witnessing
        if cfg is None:
            return None
        from .witness.pump import WitnessPump

        return WitnessPump(self.ledger, cfg).start()

    @cached_property
    def crossborder_policy(self) -> CrossBorderPolicy:
        """The cross-border policy: ``exchange/policy/crossborder.yaml`` or the file in
        NSDX_CROSSBORDER_POLICY (read once per exchange)."""
        from .crossborder.policy import load_policy

        return self._crossborder or load_policy()

    @cached_property
    def rules(self) -> TradeRules:
        """The trade rules (dates, amounts, lengths): ``exchange/policy/trade.yaml`` or
        the file in NSDX_TRADE_POLICY."""
        return self._rules or load_rules()

    def on_day(self, day: date) -> Exchange:
        """The same exchange (same ledger, same database) whose clock says ``day``: for
        replaying a dated history in the Python API (``nsdx exchange demo``). Neither the
        CLI nor the HTTP API lets a caller set the clock."""
        self.ledger  # noqa: B018 - built once, shared by the copy
        other = copy.copy(self)
        other.today = lambda: day
        return other

    def fingerprint(self, value: str | None) -> str | None:
        """A keyed fingerprint of a contact detail (phone, bank account): the ledger keeps
        these instead of the numbers, which is enough to see that two firms share one."""
        if not value:
            return None
        key = self.pii_key or b"nsdx-ledger-fingerprint"
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]
