"""Background jobs (upload ingests, re-ingests).

A job is a row in the ``jobs`` table (its status is readable through ``nsdx_job_show``)
plus a call of one handler. Two runners execute them:

- :class:`ThreadRunner` — in-process thread pool, the embedded default;
- :class:`ProcrastinateRunner` — the procrastinate job queue on PostgreSQL, so several
  ``nsdx worker`` processes on several machines share the work.

Handlers get a :class:`JobDeps` (catalogue, object store, masking key) built by the shell.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select

from validation.errors import ValidationFailed
from validation.messages import Msg, from_json, to_json

from .access import SYSTEM, DatasetFacts, Principal, may_see
from .auth import ObjectNotFound
from .models import Dataset, Job, utcnow
from .registry import Catalogue, find_dataset

log = logging.getLogger("nsdx.jobs")

EXTENSION_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".json": "json",
    ".geojson": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".xlsx": "xlsx",
    ".parquet": "parquet",
    ".zip": "gtfs",
}
FORMATS = ("csv", "json", "ndjson", "xlsx", "parquet", "gtfs")


@dataclass
class JobDeps:
    cat: Catalogue
    store: Any  # ingest.storage.ObjectStore
    pii_key: bytes
    reports_dir: Path | None = None


def upload_format(filename: str, declared: str | None) -> str | None:
    """The source format of an upload: the declared CKAN ``format`` or the file extension."""
    d = (declared or "").strip().lower()
    if d in FORMATS:
        return d
    if d in ("excel", "xls"):
        return "xlsx"
    return EXTENSION_FORMATS.get(Path(filename).suffix.lower())


def spec_for_upload(cat: Catalogue, dataset: str, path: str, fmt: str, options: dict | None = None):
    """A DatasetSpec for publishing an uploaded file as the dataset's next version, from the
    dataset's catalogue metadata."""
    from ingest.spec import DatasetSpec, SourceSpec

    from .declared import declared_of, fields_of
    from .registry import DECLARED_KEY

    with cat.Session() as s:
        ds = find_dataset(s, dataset)
        opts = options or {}
        declared = declared_of(ds.extras) or {}
        schema = fields_of(declared)
        return DatasetSpec(
            id=ds.name,
            title=ds.title,
            title_en=ds.title_en,
            notes=ds.notes,
            notes_en=ds.notes_en,
            domain=ds.domain,
            organization=ds.organization.name if ds.organization else "nsdx",
            licence=ds.license_id,
            access=ds.access,
            tags=tuple(t.tag for t in ds.tags),
            source=SourceSpec(
                path=str(path),
                format=fmt,
                encoding=str(opts.get("encoding") or "auto"),
                delimiter=opts.get("delimiter") or None,
                base_dir=Path(path).parent,
            ),
            attribution=ds.attribution,
            source_url=ds.url,
            price_fen=ds.price_fen,
            extras={k: v for k, v in (ds.extras or {}).items() if k != DECLARED_KEY},
            # the columns (personal data masked as declared) and checks the provider declared
            schema=schema,
            expectations=tuple(declared.get("expectations") or ()),
            sensitive_pi=any(f.sensitive for f in schema) or ds.sensitive_pi,  # never cleared here
            grade=ds.grade,
            data_category=ds.data_category,
            from_catalogue=True,
        )


def ingest_upload(deps: JobDeps, payload: dict) -> dict:
    """Publish an uploaded file as the next version of a dataset (the same function as
    ``nsdx ingest``)."""
    from .publishing import publish_dataset

    try:
        spec = spec_for_upload(
            deps.cat, payload["dataset"], payload["path"], payload["format"], payload.get("options")
        )
        result = publish_dataset(
            deps.cat, deps.store, spec, pii_key=deps.pii_key, reports_dir=deps.reports_dir
        )
    finally:
        _remove_upload(Path(payload["path"]))
    out = result.to_dict()
    if any(isinstance(w, Msg) for w in result.warnings):  # for a page in another language
        out[WARNING_MESSAGES] = [to_json(w) for w in result.warnings]
    return out


def _remove_upload(path: Path) -> None:
    """The uploaded file has been published (or refused): remove it and its folder (the
    HTTP layer gives each upload a folder of its own)."""
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()


HANDLERS: dict[str, Callable[[JobDeps, dict], dict]] = {"ingest_upload": ingest_upload}


PRIVATE_RESULT_KEYS = ("prefix",)  # storage locations: never shown to a client
ERROR_MESSAGE = "error_message"  # a failed job's error as a message id and parameters
WARNING_MESSAGES = "warning_messages"  # a published upload's warnings, the same way


def _params_through(data: Any, f: Callable[[str], str]) -> Any:
    """A message kept as JSON (:func:`validation.messages.to_json`) with ``f`` applied to
    the text of its parameters (never to its message ids)."""
    if isinstance(data, dict) and "msg" in data:
        params = data.get("params") or {}
        if isinstance(params, dict):
            return {**data, "params": {k: _params_through(v, f) for k, v in params.items()}}
        return data
    return f(data) if isinstance(data, str) else data


def _with_hint(message: Msg, hint: object) -> Msg:
    """The text ``str(NsdxError)`` gives (message, then its hint), as one message."""
    if not hint:
        return message
    return Msg("%(message)s\n  hint: %(hint)s", message=message, hint=hint)


def job_dict(j: Job) -> dict:
    """A job as clients see it: no server paths, no storage prefixes (the uploaded file's
    folder and the quarantine files' folders are left out, their names kept)."""
    payload = dict(j.payload or {})
    upload_dir = str(Path(payload["path"]).parent) if payload.get("path") else None
    result = {k: v for k, v in (j.result or {}).items() if k not in PRIVATE_RESULT_KEYS}
    if result.get("quarantine"):
        result["quarantine"] = [Path(str(q)).name for q in result["quarantine"]]
    kept = result.pop(ERROR_MESSAGE, None)
    warned = result.pop(WARNING_MESSAGES, None)
    if isinstance(warned, list) and isinstance(result.get("warnings"), list):
        rebuilt = [from_json(w) for w in warned]  # each used only when it is exactly the text
        result["warnings"] = [
            m if isinstance(m, str) and m == w else w
            for m, w in zip(rebuilt, result["warnings"], strict=False)
        ] + result["warnings"][len(rebuilt) :]
    error = j.error

    def private(text: str) -> str:  # the upload's folder is the server's, not the client's
        if not upload_dir:
            return text
        return text.replace(upload_dir + "/", "").replace(upload_dir, "<upload>")

    error = private(error) if error else error
    if error and kept is not None:  # the message with its id, when it is exactly the text
        message = from_json(_params_through(kept, private))
        error = message if isinstance(message, str) and message == error else error
    return {
        "id": j.id,
        "kind": j.kind,
        "status": j.status,
        "payload": {k: v for k, v in payload.items() if k != "path"},
        "result": result,
        "error": error,
        "created": j.created.isoformat(),
        "started": j.started.isoformat() if j.started else None,
        "finished": j.finished.isoformat() if j.finished else None,
    }


class Runner(Protocol):
    def enqueue(self, job_id: str) -> None: ...


class Jobs:
    """Job records of one catalogue and the runner that executes them."""

    def __init__(
        self,
        cat: Catalogue,
        runner: Runner | None = None,
        runner_factory: Callable[[Jobs], Runner] | None = None,
    ) -> None:
        self.cat = cat
        self.runner = runner
        self._factory = runner_factory  # builds the runner on the first submit
        self._lock = threading.Lock()

    def submit(self, kind: str, payload: dict, *, user_id: str | None = None) -> dict:
        if kind not in HANDLERS:
            raise ValueError(f"unknown job kind {kind!r}")
        with self.cat.Session.begin() as s:
            j = Job(kind=kind, payload=payload, result={}, user_id=user_id)
            s.add(j)
            s.flush()
            d = job_dict(j)
        with self._lock:
            if self.runner is None and self._factory is not None:
                self.runner = self._factory(self)
        if self.runner is not None:
            self.runner.enqueue(d["id"])
        return d

    def show(self, job_id: str, principal: Principal = SYSTEM) -> dict:
        """A job, if ``principal`` may see it: its submitter, or whoever may see its dataset's
        unpublished upload (the access rule: as a draft of the dataset — its organisation's
        members and sysadmins). Anyone else is told it does not exist (404)."""
        with self.cat.Session() as s:
            j = s.get(Job, job_id)
            if j is None or not self._may_see(s, j, principal):
                raise ObjectNotFound("job", job_id)
            return job_dict(j)

    def submitted_by(self, principal: Principal, *, limit: int = 50) -> list[dict]:
        """The newest jobs ``principal`` submitted (the provider's own uploads)."""
        if principal.user_id is None:
            return []
        with self.cat.Session() as s:
            rows = s.scalars(
                select(Job)
                .where(Job.user_id == principal.user_id)
                .order_by(Job.created.desc())
                .limit(max(1, min(limit, 500)))
            )
            return [job_dict(j) for j in rows]

    @staticmethod
    def _may_see(s, j: Job, p: Principal) -> bool:
        if p.sysadmin or (j.user_id is not None and j.user_id == p.user_id):
            return True
        name = (j.payload or {}).get("dataset")
        ds = s.scalar(select(Dataset).where(Dataset.name == name)) if name else None
        return ds is not None and may_see(p, DatasetFacts.of(ds).unpublished())

    def run(self, job_id: str, deps: JobDeps) -> dict:
        """Execute one job now and record its outcome."""
        with self.cat.Session.begin() as s:
            j = s.get(Job, job_id)
            if j is None:
                raise ObjectNotFound("job", job_id)
            if j.status in ("finished", "failed"):
                return job_dict(j)
            j.status, j.started = "running", utcnow()
            kind, payload = j.kind, dict(j.payload)
        status, result, error = "finished", {}, None
        try:
            result = HANDLERS[kind](deps, payload)
        except Exception as e:  # noqa: BLE001 - recorded on the job for the caller to read
            if isinstance(e, ValidationFailed) and payload.get("dataset"):
                e.for_clients(f"/dataset/{payload['dataset']}/quality")
            status, error = "failed", str(e)
            message = getattr(e, "message", None)
            if isinstance(message, Msg):  # kept so that a page can say it in its language
                result = {ERROR_MESSAGE: to_json(_with_hint(message, getattr(e, "hint", None)))}
            log.warning("job %s (%s) failed: %s", job_id, kind, traceback.format_exc())
        with self.cat.Session.begin() as s:
            j = s.get(Job, job_id)
            if j is None:  # deleted while it ran
                raise ObjectNotFound("job", job_id)
            j.status, j.result, j.error, j.finished = status, result, error, utcnow()
            return job_dict(j)


class ThreadRunner:
    """Runs jobs in this process on a small thread pool (the embedded default)."""

    def __init__(self, jobs: Jobs, deps: Callable[[], JobDeps], workers: int = 2) -> None:
        self.jobs = jobs
        self.deps = deps
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nsdx-job")

    def enqueue(self, job_id: str) -> None:
        self.pool.submit(self.jobs.run, job_id, self.deps())

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True)


# -- the PostgreSQL job queue (procrastinate) -------------------------------------------
QUEUE = "nsdx"
_SCHEMA_LOCK = 7_350_215  # pg advisory lock id while installing procrastinate's schema
_worker_deps: Callable[[], JobDeps] | None = None


def _conninfo(database_url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_queue_schema(database_url: str) -> None:
    """Install procrastinate's tables once (idempotent, safe with concurrent callers)."""
    import psycopg
    from procrastinate.schema import SchemaManager

    with psycopg.connect(_conninfo(database_url), autocommit=True) as c:
        c.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
        try:
            row = c.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
            if row is None or row[0] is None:
                c.execute(SchemaManager.get_schema())
        finally:
            c.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))


def queue_app(database_url: str):
    """A procrastinate App on the catalogue's PostgreSQL database with the one nsdx task."""
    import procrastinate

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=_conninfo(database_url))
    )

    @app.task(name="nsdx.run_job", queue=QUEUE)
    def run_job(job_id: str) -> None:
        if _worker_deps is None:  # pragma: no cover - run_worker sets it
            raise RuntimeError("nsdx job deps are not configured in this worker")
        deps = _worker_deps()
        Jobs(deps.cat).run(job_id, deps)

    return app, run_job


class ProcrastinateRunner:
    """Queues jobs in PostgreSQL; any `nsdx worker` (or a server's embedded worker) runs
    them."""

    def __init__(self, database_url: str) -> None:
        ensure_queue_schema(database_url)
        self.app, self.task = queue_app(database_url)
        self._opened = False
        self._lock = threading.Lock()

    def enqueue(self, job_id: str) -> None:
        with self._lock:
            if not self._opened:
                self.app.open()
                self._opened = True
        self.task.defer(job_id=job_id)

    def shutdown(self) -> None:
        with self._lock:
            if self._opened:
                self.app.close()
                self._opened = False


def set_worker_deps(deps: Callable[[], JobDeps]) -> None:
    global _worker_deps
    _worker_deps = deps


def run_worker(
    database_url: str,
    deps: Callable[[], JobDeps],
    *,
    concurrency: int = 1,
    once: bool = False,
) -> None:
    """Run queued jobs until stopped (or, with ``once``, until the queue is empty)."""
    ensure_queue_schema(database_url)
    set_worker_deps(deps)
    app, _ = queue_app(database_url)
    with app.open():
        app.run_worker(queues=[QUEUE], concurrency=concurrency, wait=not once)


async def run_worker_async(database_url: str, deps: Callable[[], JobDeps]) -> None:
    """The same worker inside a running event loop (``nsdx serve`` on PostgreSQL)."""
    set_worker_deps(deps)
    app, _ = queue_app(database_url)
    async with app.open_async():
        await app.run_worker_async(queues=[QUEUE], concurrency=1, install_signal_handlers=False)
