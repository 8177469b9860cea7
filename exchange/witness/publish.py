"""Witnessing the exchange's own ledger: send its latest signed checkpoint to the configured
witnesses, keep the cosignatures with the checkpoint in the database, and mark it
*witnessed* once a quorum of distinct witnesses cosigned.

Never inside a trade's transaction: :class:`~exchange.witness.pump.WitnessPump` runs it in
the background (``nsdx serve``, ``nsdx worker``) after each new checkpoint, and
``nsdx audit witness`` runs it once. A witness that is down or refusing only delays
witnessing: it is asked again after a back-off (``ledger_witness_status``), and the trades
never wait for it.

Tables (migration 0012): ``ledger_cosignatures`` (tree size, witness, its line),
``ledger_witnessed`` (the checkpoints that reached the quorum), ``ledger_witness_status``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import CheckpointNotFound, ExchangeError
from ..models import LedgerCosignature, LedgerWitnessed, LedgerWitnessStatus
from .client import request_cosignatures
from .config import WitnessingConfig
from .cosignature import CosignatureError, cosignature_timestamp, verify_cosignatures

__all__ = [
    "WitnessQuorumNotReached",
    "WitnessingResult",
    "cosigned_note",
    "witness_latest",
    "witness_status",
]


class WitnessQuorumNotReached(ExchangeError):
    """Fewer witnesses cosigned than the quorum (some down or refusing): retry later."""

    status = 503
    transient = True


@dataclass
class WitnessingResult:
    tree_size: int
    quorum: int
    cosigners: list[str]  # every witness whose cosignature of this size is stored
    failures: dict[str, str] = field(default_factory=dict)  # asked this time, and why not
    asked: list[str] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # witness -> when it is asked next
    note: str = ""  # the checkpoint note with every stored cosignature appended
    already: bool = False  # witnessed before this call

    @property
    def witnessed(self) -> bool:
        return len(set(self.cosigners)) >= self.quorum

    def to_dict(self) -> dict:
        return {
            "tree_size": self.tree_size,
            "quorum": self.quorum,
            "witnessed": self.witnessed,
            "cosigners": self.cosigners,
            "asked": self.asked,
            "failures": self.failures,
            "waiting": self.waiting,
            "note": self.note,
        }


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _line_fields(line: str) -> tuple[int, int]:
    """(key ID, timestamp) of a verified cosignature line."""
    sig = line.rstrip("\n").rsplit(" ", 1)[-1]
    ts = cosignature_timestamp(sig)
    return int.from_bytes(base64.b64decode(sig)[:4], "big"), ts


def _stored(s: Session, tree_size: int) -> dict[str, str]:
    return {
        w: line
        for w, line in s.execute(
            select(LedgerCosignature.witness, LedgerCosignature.line).where(
                LedgerCosignature.tree_size == tree_size
            )
        )
    }


def cosigned_note(engine, note: str, tree_size: int) -> str:
    """``note`` with the stored cosignature lines of ``tree_size`` appended (by witness
    name): note verifiers that do not know a witness ignore its line."""
    with Session(engine) as s:
        lines = _stored(s, tree_size)
    return note + "".join(lines[w].rstrip("\n") + "\n" for w in sorted(lines))


def witness_latest(
    ledger, cfg: WitnessingConfig, *, force: bool = False, now: datetime | None = None
) -> WitnessingResult:
    """Ask the configured witnesses that have not cosigned the ledger's latest signed
    checkpoint yet (those in back-off only with ``force``) and store what they answer.
    Returns the state of that checkpoint; raises only when there is no checkpoint or no
    log key (a witness down is a failure in the result, never an exception)."""
    cp = ledger.latest_checkpoint()
    if cp is None:
        raise CheckpointNotFound(
            "the ledger has no signed checkpoint yet",
            hint="record a trade, or run `nsdx audit checkpoint`",
        )
    if ledger.signer is None:
        raise ExchangeError("no ledger key here: the checkpoints cannot be opened")
    log_key = ledger.signer.verifier_key
    now = now or _utcnow()
    names = {w.key.name: w for w in cfg.witnesses}
    with Session(ledger.engine) as s:
        stored = _stored(s, cp.tree_size)
        already = s.get(LedgerWitnessed, cp.tree_size) is not None
        status = {r.witness: r for r in s.scalars(select(LedgerWitnessStatus))}
        known = {n: r.size for n, r in status.items() if r.size is not None and n in names}
        s.expunge_all()
    body = cp.note.split("\n\n", 1)[0] + "\n"
    good = _verified(body, stored, cfg)
    result = WitnessingResult(cp.tree_size, cfg.quorum, sorted(good), already=already)
    todo = []
    for name, w in names.items():
        if name in good:
            continue
        row = status.get(name)
        if not force and row is not None and row.next_attempt and row.next_attempt > now:
            result.waiting[name] = row.next_attempt.isoformat() + "Z"
            continue
        todo.append(w)
    marked = False

    def arrived(w, line: str | None, size: int | None, failure: str | None) -> None:
        # stored as each witness answers: a slow witness does not hold the others'
        # cosignatures (nor the checkpoint's being witnessed) until it times out
        nonlocal marked
        name = w.key.name
        new = {name: line.rstrip("\n")} if line is not None else {}
        sizes = {name: size} if size is not None else {}
        _record(ledger, cp.tree_size, cfg, [w], new, sizes, {name: failure or "refused"}, now)
        good.update(new)
        if not marked and not already and cfg.distinct_keys(good) >= cfg.quorum:
            _mark_witnessed(ledger, cp.tree_size, cfg.quorum, cfg.distinct_keys(good), now)
            marked = True

    if todo and not already and cfg.distinct_keys(good) < cfg.quorum:
        r = request_cosignatures(
            cp.note,
            log_key,
            todo,
            lambda a, b: [base64.b64decode(p) for p in ledger.consistency(a, b)["proof"]],
            quorum=cfg.quorum,
            known_sizes=known,
            timeout=cfg.timeout,
            on_result=arrived,
        )
        result.asked = [w.key.name for w in todo]
        result.failures = dict(r.failures)
        result.cosigners = sorted(good)
    if cfg.distinct_keys(good) >= cfg.quorum and not already and not marked:
        _mark_witnessed(ledger, cp.tree_size, cfg.quorum, cfg.distinct_keys(good), now)
    result.note = cp.note + "".join(good[w].rstrip("\n") + "\n" for w in sorted(good))
    return result


def _verified(body: str, stored: dict[str, str], cfg: WitnessingConfig) -> dict[str, str]:
    """The stored lines of configured witnesses that verify (a witness removed from the
    configuration, or a line that does not verify, does not count)."""
    out = {}
    for name, line in stored.items():
        try:
            if name in verify_cosignatures(body, line, cfg.keys):
                out[name] = line
        except CosignatureError:
            continue
    return out


def _record(ledger, tree_size, cfg, asked, lines, sizes, failures, now) -> None:
    try:
        _record_once(ledger, tree_size, cfg, asked, lines, sizes, failures, now)
    except IntegrityError:  # another process stored the same cosignature meanwhile: again
        _record_once(ledger, tree_size, cfg, asked, lines, sizes, failures, now)


def _record_once(ledger, tree_size, cfg, asked, lines, sizes, failures, now) -> None:
    # the ledger's own short write transaction: on SQLite it queues behind this process's
    # appenders on their mutex instead of sleeping in SQLite's busy handler (and making
    # them sleep in theirs)
    with ledger.transaction() as s:
        for name, line in lines.items():
            if s.get(LedgerCosignature, (tree_size, name)) is None:
                kid, ts = _line_fields(line)
                s.add(
                    LedgerCosignature(
                        tree_size=tree_size,
                        witness=name,
                        key_id=kid,
                        timestamp=ts,
                        line=line.rstrip("\n"),
                        created=now,
                    )
                )
        for w in asked:
            name = w.key.name
            row = s.get(LedgerWitnessStatus, name)
            if row is None:
                row = LedgerWitnessStatus(witness=name, url=w.url, failures=0)
                s.add(row)
            row.url = w.url
            row.last_attempt = now
            if name in sizes:
                row.size = sizes[name]
            if name in lines:
                row.failures, row.last_error, row.last_ok, row.next_attempt = 0, None, now, None
            else:
                row.failures = (row.failures or 0) + 1
                row.last_error = (failures.get(name) or "refused")[:1000]
                row.next_attempt = now + timedelta(seconds=cfg.backoff(row.failures))


def _mark_witnessed(ledger, tree_size: int, quorum: int, cosigners: int, now) -> None:
    try:
        with ledger.transaction() as s:
            if s.get(LedgerWitnessed, tree_size) is None:
                s.add(
                    LedgerWitnessed(
                        tree_size=tree_size, quorum=quorum, cosigners=cosigners, witnessed=now
                    )
                )
    except IntegrityError:  # another process marked it at the same moment
        pass


def witness_status(engine, tree_size: int | None = None) -> dict:
    """What the database says about witnessing: the latest witnessed checkpoint, the
    cosignatures of ``tree_size`` (if given) and each witness's last answer."""
    with Session(engine) as s:
        latest = s.scalars(
            select(LedgerWitnessed).order_by(LedgerWitnessed.tree_size.desc()).limit(1)
        ).first()
        out: dict = {
            "latest_witnessed": None
            if latest is None
            else {
                "tree_size": latest.tree_size,
                "quorum": latest.quorum,
                "cosigners": latest.cosigners,
                "witnessed": latest.witnessed.isoformat() + "Z",
            },
            "witnesses": [
                {
                    "witness": r.witness,
                    "url": r.url,
                    "size": r.size,
                    "failures": r.failures,
                    "last_error": r.last_error,
                    "last_ok": r.last_ok.isoformat() + "Z" if r.last_ok else None,
                    "next_attempt": r.next_attempt.isoformat() + "Z" if r.next_attempt else None,
                }
                for r in s.scalars(
                    select(LedgerWitnessStatus).order_by(LedgerWitnessStatus.witness)
                )
            ],
        }
        if tree_size is not None:
            out["tree_size"] = tree_size
            out["witnessed"] = s.get(LedgerWitnessed, tree_size) is not None
            out["cosignatures"] = [
                {"witness": w, "line": line} for w, line in sorted(_stored(s, tree_size).items())
            ]
    return out
