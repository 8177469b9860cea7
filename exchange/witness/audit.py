"""`nsdx audit verify` with witnesses: the cosignatures stored with the witnessed
checkpoints verify and reach the quorum, and no witness cosigned a history other than the
one in the database (a split view: the exchange showed one fork to a witness and another
to this official).

Each witness answers ``GET /`` with the latest checkpoint it cosigned per log (the
log-signed note with its own cosignature line). A cosigned checkpoint whose root differs
from the database's tree at that size — or whose size is beyond the database — is a fork
signed by the exchange's own key and cosigned by an independent witness: the strongest
evidence there is that two histories were shown.
"""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from validation.messages import Msg

from ..ledger.keys import open_checkpoint
from ..ledger.note import NoteError
from ..models import LedgerCheckpoint, LedgerCosignature, LedgerWitnessed
from .config import WitnessingConfig
from .cosignature import CosignatureError, verify_cosignatures
from .transport import WitnessHTTPError, witness_request

__all__ = [
    "WitnessView",
    "WitnessingAudit",
    "audit_witnessing",
    "fetch_views",
    "witness_checks",
]

MAX_INFO_BYTES = 256 * 1024


@dataclass
class WitnessView:
    witness: str
    url: str
    size: int | None = None
    root: str | None = None  # base64
    note: str | None = None
    error: str | None = None  # unreachable, or its answer did not verify
    agrees: bool | None = None  # with the database (None: not compared)


@dataclass
class WitnessingAudit:
    quorum: int
    witnesses: list[str]
    witnessed_checkpoints: int = 0
    latest_witnessed: int | None = None
    views: list[WitnessView] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)

    def to_dict(self) -> dict:
        return {
            "quorum": self.quorum,
            "witnesses": self.witnesses,
            "witnessed_checkpoints": self.witnessed_checkpoints,
            "latest_witnessed": self.latest_witnessed,
            "views": [asdict(v) for v in self.views],
        }


def _split(note: str) -> tuple[str, str]:
    body, sep, sigs = note.partition("\n\n")
    return body + "\n", sigs if sep else ""


def fetch_views(cfg: WitnessingConfig, origin: str, log_key: str) -> list[WitnessView]:
    """Ask every configured witness (all at once, ``cfg.timeout`` each, an overall deadline
    per request: the whole call takes at most about ``cfg.timeout``) for the latest
    checkpoint it cosigned for ``origin``; keep it only if the witness's cosignature and
    the log's signature verify."""
    with ThreadPoolExecutor(max_workers=max(1, len(cfg.witnesses))) as pool:
        return list(pool.map(lambda w: _view(w, cfg.timeout, origin, log_key), cfg.witnesses))


def _view(w, timeout: float, origin: str, log_key: str) -> WitnessView:
    v = WitnessView(w.key.name, w.url)
    try:
        status, raw = witness_request(w.url + "/", timeout=timeout, limit=MAX_INFO_BYTES)
        if status != 200:
            raise WitnessHTTPError(f"HTTP {status}")
        info = json.loads(raw)
        note = (info.get("checkpoints") or {}).get(origin)
    except (OSError, ValueError, AttributeError) as e:
        v.error = f"unreachable: {type(e).__name__}: {e}"
        return v
    except RecursionError:  # JSON nested deeper than the parser goes: not a witness's answer
        v.error = "unreachable: its answer is not a witness's JSON (nested too deeply)"
        return v
    if not isinstance(note, str):
        v.error = "it has cosigned no checkpoint of this log"
        return v
    try:
        cp = open_checkpoint(note, log_key)
        body, sigs = _split(note)
        if w.key.name not in verify_cosignatures(body, sigs, [w.key]):
            raise CosignatureError("no cosignature by its key")
    except (NoteError, CosignatureError) as e:
        v.error = f"its latest checkpoint does not verify: {e}"
        return v
    v.size, v.root, v.note = cp.size, base64.b64encode(cp.root).decode(), note
    return v


def audit_witnessing(
    store, log_key: str, cfg: WitnessingConfig, *, entries: int, ask: bool = True
) -> WitnessingAudit:
    """Check the stored cosignatures against ``cfg`` and (``ask``) every witness's view
    against the database, whose ``entries`` leaves ``verify_ledger`` has just checked."""
    a = WitnessingAudit(cfg.quorum, [w.key.name for w in cfg.witnesses])
    with Session(store.engine) as s:
        witnessed = list(s.scalars(select(LedgerWitnessed).order_by(LedgerWitnessed.tree_size)))
        notes = {
            size: note
            for size, note in s.execute(
                select(LedgerCheckpoint.tree_size, LedgerCheckpoint.note).where(
                    LedgerCheckpoint.tree_size.in_([w.tree_size for w in witnessed])
                )
            )
        }
        lines: dict[int, list[str]] = {}
        for size, line in s.execute(
            select(LedgerCosignature.tree_size, LedgerCosignature.line).where(
                LedgerCosignature.tree_size.in_([w.tree_size for w in witnessed])
            )
        ):
            lines.setdefault(size, []).append(line)
    a.witnessed_checkpoints = len(witnessed)
    a.latest_witnessed = witnessed[-1].tree_size if witnessed else None
    for w in witnessed:
        note = notes.get(w.tree_size)
        if note is None:
            a.problems.append(
                ("quorum", f"checkpoint {w.tree_size} is marked witnessed but is not stored")
            )
            continue
        body, _ = _split(note)
        good: set[str] = set()
        for line in lines.get(w.tree_size, []):
            try:
                good |= set(verify_cosignatures(body, line, cfg.keys))
            except CosignatureError as e:
                a.problems.append(("cosignature", f"checkpoint {w.tree_size}: {e}"))
        if cfg.distinct_keys(good) < cfg.quorum:
            a.problems.append(
                (
                    "quorum",
                    Msg(
                        "checkpoint %(size)s is marked witnessed but %(n)s of the configured "
                        "witnesses cosigned it (quorum %(quorum)s)",
                        size=w.tree_size,
                        n=cfg.distinct_keys(good),
                        quorum=cfg.quorum,
                    ),
                )
            )
    if not ask:
        return a
    latest = store.latest_checkpoint()
    if latest is None:
        return a
    origin = latest.note.split("\n", 1)[0]
    a.views = fetch_views(cfg, origin, log_key)
    signed = {cp.tree_size: cp.root for cp in store.checkpoints()}
    for v in a.views:
        if v.size is None or v.root is None:
            continue
        root = base64.b64decode(v.root)
        ours = signed.get(v.size)  # read after the views: a checkpoint signed meanwhile counts
        if ours is None and v.size <= entries:
            ours = store.tree(v.size).root(v.size) if v.size else None
        v.agrees = ours == root
        if v.agrees:
            continue
        if ours is None:
            a.problems.append(
                (
                    "fork",
                    Msg(
                        "witness %(witness)s cosigned a checkpoint of size %(size)s signed by "
                        "the exchange, but the database holds %(entries)s entries and no such "
                        "checkpoint: the exchange showed the witness another history (a split "
                        "view), or entries were removed",
                        witness=v.witness,
                        size=v.size,
                        entries=entries,
                    ),
                )
            )
        else:
            a.problems.append(
                (
                    "fork",
                    Msg(
                        "witness %(witness)s cosigned a different history at size %(size)s: "
                        "root %(theirs)s, but the database's tree of %(size)s entries has root "
                        "%(ours)s - both signed by the exchange: it showed two histories (a "
                        "split view)",
                        witness=v.witness,
                        size=v.size,
                        theirs=v.root,
                        ours=base64.b64encode(ours).decode(),
                    ),
                )
            )
    return a


def witness_checks(store, log_key: str, cfg: WitnessingConfig, *, ask: bool = True):
    """A check for ``verify_with_state(also=...)``: adds the witnesses' problems (a fork,
    a quorum not reached, a cosignature that does not verify) to the result."""
    from ..ledger.verify import Problem

    def check(res) -> None:
        a = audit_witnessing(store, log_key, cfg, entries=res.entries, ask=ask)
        res.witnessing = a.to_dict()
        for kind, message in a.problems:
            res.problems.append(Problem(kind, message))
        res.ok = res.ok and not a.problems

    return check
