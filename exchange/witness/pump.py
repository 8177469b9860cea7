"""The background job that witnesses each new checkpoint: one thread per process that
runs the job worker (``nsdx serve``'s embedded worker, ``nsdx worker``).

It wakes when this process signs a checkpoint (:meth:`LedgerStore.on_signed`, called after
the signing transaction committed), and every ``interval`` seconds to find checkpoints
signed by other processes (CLI trades, other servers). Each round runs
:func:`~exchange.witness.publish.witness_latest`; while the quorum is not reached it tries
again after the back-off of the witnesses that failed (``NSDX_WITNESS_RETRY``, doubled
after each failure up to ``NSDX_WITNESS_RETRY_MAX``). A trade never waits for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from .config import WitnessingConfig
from .publish import WitnessingResult, witness_latest

__all__ = ["WitnessPump"]

log = logging.getLogger("nsdx.witness")

#: The least time between two rounds: under a stream of trades one round witnesses the
#: latest checkpoint of the last quarter second (a witness only needs the latest).
MIN_GAP = 0.25


class WitnessPump:
    def __init__(
        self,
        ledger,
        cfg: WitnessingConfig,
        *,
        on_round: Callable | None = None,
        min_gap: float = MIN_GAP,
    ) -> None:
        self.min_gap = min_gap
        self.ledger = ledger
        self.cfg = cfg
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.last: WitnessingResult | None = None
        self.last_error: str | None = None
        self._on_round = on_round  # tests: called after every round

    def start(self) -> WitnessPump:
        if self._thread is None:
            self.ledger.on_signed(self.nudge)
            self._thread = threading.Thread(target=self._run, daemon=True, name="nsdx-witness")
            self._thread.start()
        return self

    def nudge(self, *_args) -> None:
        """A new checkpoint was signed: witness it now (not inside the caller)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self.ledger.off_signed(self.nudge)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_once(self) -> WitnessingResult | None:
        """One round now (also what the thread runs); never raises."""
        try:
            if self.ledger.latest_checkpoint() is None:
                return None
            r = witness_latest(self.ledger, self.cfg)
            self.last, self.last_error = r, None
            if r.failures:
                log.warning(
                    "checkpoint %s: %d of %d witnesses cosigned (quorum %d); %s",
                    r.tree_size,
                    len(r.cosigners),
                    len(self.cfg.witnesses),
                    r.quorum,
                    "; ".join(f"{k}: {v}" for k, v in r.failures.items()),
                )
            return r
        except Exception as e:  # noqa: BLE001 - the database or a bug: log, retry later
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning("witnessing failed: %s", self.last_error)
            return None
        finally:
            self.rounds += 1
            if self._on_round is not None:
                self._on_round(self)

    def _delay(self, r: WitnessingResult | None) -> float:
        """Seconds until the next round: the interval when witnessed (or nothing to do),
        else until the earliest witness in back-off may be asked again."""
        if r is None:
            return self.cfg.retry if self.last_error else self.cfg.interval
        if r.witnessed:
            return self.cfg.interval
        now = datetime.now(UTC).replace(tzinfo=None)
        waits = []
        for when in r.waiting.values():
            t = datetime.fromisoformat(when.rstrip("Z"))
            waits.append((t - now).total_seconds())
        if r.failures:
            waits.append(self.cfg.retry)
        return max(0.05, min(waits or [self.cfg.retry]))

    def _run(self) -> None:
        self._wake.set()  # a first look at start-up
        delay = self.cfg.interval
        while not self._stop.is_set():
            self._wake.wait(delay)
            if self._stop.is_set():
                return
            self._wake.clear()
            r = self.run_once()
            delay = self._delay(r)
            if self.min_gap and self._stop.wait(self.min_gap):
                return
            delay = max(0.0, delay - self.min_gap)
