"""The ingest pipeline: source file → Arrow batches → validation → masking → zstd Parquet
in a staging directory → published version ``<org>/<dataset>/v<N>/`` in object storage.

``run_pipeline`` publishes at most one version and never registers anything: the catalogue
(``catalogue.publishing``) calls it and moves its pointer after :meth:`ObjectStore.publish`
has returned. A failure at any step leaves nothing visible.

Memory does not depend on the size of the source: readers deliver small batches (bounded
read-ahead), which are gathered without copying into chunks of ~CHUNK_ROWS rows; at most
two chunks are held here while a third is validated. Row-level validation runs in a worker
process (:mod:`validation.worker`; ``NSDX_VALIDATION_WORKER=0`` keeps it in-process, and
``quarantine_rows`` always does) so great-expectations overlaps reading and writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from validation import (
    BatchValidator,
    IndividualCounter,
    ValidationFailed,
    check_policy,
    mask_batch,
)
from validation import worker as validation_worker
from validation.errors import NsdxError
from validation.messages import Msg
from validation.pii import masked_schema, require_declared
from validation.worker import ValidationWorkerError

from . import failpoints
from .arrow_pandas import without_pandas
from .coverage import merge as merge_coverage
from .coverage import table_coverage
from .errors import ConfigError, IngestError, SourceError
from .readers import SourceTable, open_source, source_files
from .remote import download, is_remote, list_remote
from .spec import ID_RE, TABLE_RE, DatasetSpec
from .storage import MANIFEST, ObjectStore, sha256_file
from .storage.base import reserved_prefix

PIPELINE_VERSION = "2"  # bump when the output of the same input changes
PARQUET_ROWS_PER_FILE = 5_000_000
PII_SAMPLE_ROWS = 20_000
# Batches are gathered into chunks of about this size before validation and writing:
# great-expectations has a fixed cost per call, and bigger row groups compress better.
# Memory stays bounded by the chunk size (a few chunks in flight), whatever the file size.
CHUNK_ROWS = 1_000_000
CHUNK_BYTES = 128 << 20

# progress(event, **fields): "table" (name, files), "rows" (name, rows), "publish" (bytes)
Progress = Callable[..., None]


@dataclass
class PreviousVersion:
    number: int
    fingerprint: str
    # table name -> [{"name", "type", ...}] of the previous version's published schema
    tables: dict[str, list[dict]] = field(default_factory=dict)


class Claims(Protocol):
    """Version numbers owned by one run (the catalogue implements it in the database, see
    ``catalogue.publishing``): a publish writes only under a number it holds."""

    def take(self, fingerprint: str) -> int:
        """A new number, never handed out before, above every registered version."""

    def pending(self) -> list[tuple[int, str, str]]:
        """(number, fingerprint, run id) of numbers taken but not registered."""

    def adopt(self, number: int, old_run: str) -> bool:
        """Take over another run's number (it stopped between storage and registering)."""

    def writing(self, number: int) -> None:
        """Storage may now hold objects under the number: it is never given back."""

    def release(self, number: int) -> None:
        """Give back a number whose prefix is not a committed version (the run's uploads
        have ended: a later owner of the number overwrites or removes what is left)."""


class _LocalClaims:
    """Without a catalogue (tests, tools): numbers after the previous version, skipping the
    ones storage already holds. Not safe against a concurrent publisher."""

    def __init__(self, previous: PreviousVersion | None) -> None:
        self._next = (previous.number if previous else 0) + 1

    def take(self, fingerprint: str) -> int:
        n, self._next = self._next, self._next + 1
        return n

    def pending(self) -> list[tuple[int, str, str]]:
        return []

    def adopt(self, number: int, old_run: str) -> bool:
        return False

    def writing(self, number: int) -> None:
        pass

    def release(self, number: int) -> None:
        pass


@dataclass
class IngestResult:
    dataset_id: str
    status: str  # published | up_to_date | adopted | published_with_warnings
    version: int
    prefix: str
    manifest: dict
    validation: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)
    seconds: float = 0.0
    current: bool = True  # False: registered, but a newer version published meanwhile stays current

    @property
    def row_count(self) -> int:
        return int(self.manifest.get("row_count", 0))

    @property
    def bytes(self) -> int:
        return int(self.manifest.get("bytes", 0))

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset_id,
            "status": self.status,
            "version": self.version,
            "prefix": self.prefix,
            "rows": self.row_count,
            "bytes": self.bytes,
            "quality_score": self.validation.get("score"),
            "warnings": self.warnings,
            "quarantine": self.quarantine,
            "seconds": round(self.seconds, 3),
            "current": self.current,
        }


def dataset_prefix(spec: DatasetSpec) -> str:
    # datasets.yaml is checked when loaded (with line and column); a spec built elsewhere (an
    # upload job from catalogue metadata) is checked here: both names become storage folders
    for what, name in (("organization", spec.organization), ("dataset id", spec.id)):
        if not ID_RE.fullmatch(name or ""):
            raise ConfigError(
                f"{what} {name!r} must match [a-z0-9-]{{2,100}} (it names the storage folder)",
                line=spec.line,
                hint="rename it to lower-case letters, digits and '-'",
            )
    if reserved_prefix(spec.organization):
        raise ConfigError(
            f"organization {spec.organization!r} is a name the store keeps for itself",
            line=spec.line,
            hint="choose another name for the organisation (it names the storage folder "
            "<org>/<dataset>/)",
        )
    return f"{spec.organization}/{spec.id}"


def version_prefix(spec: DatasetSpec, number: int) -> str:
    return f"{dataset_prefix(spec)}/v{number}"


class DigestCache:
    """SHA-256 of source files already hashed, by (path, size, mtime, ctime, inode), the way
    git's index skips unchanged files: a re-run over an unchanged 180 MB file does not read it
    twice (~0.3 s). Any write to the file changes its ctime, which no tool can set back.
    Kept in a JSON file only its owner can read; a damaged or missing cache is rebuilt."""

    MAX_ENTRIES = 1000

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, list] = {}
        if path is not None:
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self.entries = loaded
            except (OSError, ValueError):
                pass

    def digest(self, p: Path) -> str:
        st = p.stat()
        key = str(p.resolve())
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        hit = self.entries.get(key)
        if isinstance(hit, list) and len(hit) == 5 and hit[:4] == stamp:
            return str(hit[4])
        digest = sha256_file(p)
        if p.stat().st_ctime_ns == st.st_ctime_ns:  # not written to while it was read
            self.entries[key] = [*stamp, digest]
            self._save()
        return digest

    def _save(self) -> None:
        if self.path is None:
            return
        while len(self.entries) > self.MAX_ENTRIES:
            self.entries.pop(next(iter(self.entries)))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            _private_file(tmp, json.dumps(self.entries))
            tmp.replace(self.path)
        except OSError:  # only a cache
            pass


def fingerprint(
    spec: DatasetSpec, files: list[Path], pii_key: bytes, cache: DigestCache | None = None
) -> tuple[str, list[dict]]:
    """What determines the published bytes: the source content and the options that shape
    the output. Titles and notes are not part of it (they change metadata, not data)."""
    h = hashlib.sha256(_shaping(spec, pii_key))
    described = []
    for p in files:
        digest = cache.digest(p) if cache is not None else sha256_file(p)
        size = p.stat().st_size
        h.update(f"{p.name}\0{size}\0{digest}\n".encode())
        described.append({"path": str(p), "bytes": size, "sha256": digest})
    return h.hexdigest(), described


def _shaping(spec: DatasetSpec, pii_key: bytes) -> bytes:
    """The options that shape the published bytes, as the fingerprint hashes them."""
    src = spec.source
    shaping = {
        "pipeline": PIPELINE_VERSION,
        "format": src.format,
        "encoding": src.encoding,
        "delimiter": src.delimiter,
        "skip_rows": src.skip_rows,
        "thousands": src.thousands,
        "currency": list(src.currency),
        "percent": src.percent,
        "null_values": list(src.null_values),
        "date_formats": list(src.date_formats),
        "day_first": src.day_first,
        "sheet": src.sheet,
        "tables": list(src.tables),
        "schema": [f.__dict__ for f in spec.schema],
        "expectations": list(spec.expectations),
        "on_invalid": spec.on_invalid,
        "access": spec.access,
        "pii_key": hashlib.sha256(pii_key).hexdigest()[:16] if spec.schema else None,
    }
    return json.dumps(shaping, sort_keys=True, default=str).encode()


def _committed_manifest(store: ObjectStore, prefix: str) -> dict | None:
    key = f"{prefix}/{MANIFEST}"
    if not store.exists(key):
        return None
    return json.loads(store.get_bytes(key))


def run_pipeline(
    spec: DatasetSpec,
    store: ObjectStore,
    *,
    previous: PreviousVersion | None,
    pii_key: bytes,
    progress: Progress | None = None,
    resolve_dataset: Callable[[str], list[str]] | None = None,
    reports_dir: Path | None = None,
    force: bool = False,
    claims: Claims | None = None,
) -> IngestResult:
    """Publish ``spec``'s source as a new version (or say it is up to date). A remote source
    (``https://``, ``s3://``, see :mod:`ingest.remote`) is fingerprinted from its ETag /
    Last-Modified / size, downloaded (streamed) into a temporary folder only when it changed,
    and that folder is removed whatever happens."""
    started = time.perf_counter()
    if not is_remote(spec.source.path):
        files = source_files(spec.source)
        cache = DigestCache(
            reports_dir.parent / "cache" / "source-digests.json" if reports_dir else None
        )
        fp, source_desc = fingerprint(spec, files, pii_key, cache)
        return _run(
            spec, store, files, fp, source_desc, previous, pii_key, progress,
            resolve_dataset, reports_dir, force, claims, started,
        )  # fmt: skip
    objects = list_remote(spec.source.path)
    said: str | None = None  # the fingerprint from what the server says of each object
    if all(o.versioned for o in objects):  # the server says which version: no download
        said = _remote_fingerprint(spec, objects, pii_key)
        if previous and previous.fingerprint == said and not force:
            return _up_to_date(spec, store, previous, started)
    tmp = Path(tempfile.mkdtemp(prefix="nsdx-source-", dir=os.environ.get("NSDX_STAGING_DIR")))
    labels: dict[str, str] = {}
    try:
        files, source_desc = [], []
        for o in objects:
            (progress or (lambda *a, **k: None))("download", url=o.url, bytes=o.size)
            path, digest = download(o, tmp)
            labels[str(path)] = o.url
            files.append(path)
            source_desc.append({"path": o.name, "bytes": path.stat().st_size, "sha256": digest})
        # no ETag nor Last-Modified: the content decides
        fp = said if said is not None else fingerprint(spec, files, pii_key)[0]
        return _run(
            spec, store, files, fp, source_desc, previous, pii_key, progress,
            resolve_dataset, reports_dir, force, claims, started,
        )  # fmt: skip
    except NsdxError as e:
        raise _relabel(e, labels) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remote_fingerprint(spec: DatasetSpec, objects: list, pii_key: bytes) -> str:
    h = hashlib.sha256(_shaping(spec, pii_key))
    for o in objects:
        h.update(json.dumps(o.describe(), sort_keys=True).encode() + b"\n")
    return h.hexdigest()


def _relabel(e: NsdxError, labels: dict[str, str]) -> NsdxError:
    """An error about a downloaded file names its URL, not the temporary copy."""
    for local, url in labels.items():
        e.message = e.message.replace(local, url)
        e.args = tuple(a.replace(local, url) if isinstance(a, str) else a for a in e.args)
        if getattr(e, "file", None) == local:
            e.file = url  # type: ignore[attr-defined]
        if e.fields.get("file") == local:
            e.fields["file"] = url
    return e


def _up_to_date(spec, store, previous: PreviousVersion, started: float) -> IngestResult:
    manifest = _committed_manifest(store, version_prefix(spec, previous.number)) or {}
    return IngestResult(
        spec.id,
        "up_to_date",
        previous.number,
        version_prefix(spec, previous.number),
        manifest,
        validation=manifest.get("validation", {}),
        seconds=time.perf_counter() - started,
    )


def _run(
    spec, store, files, fp, source_desc, previous, pii_key, progress,
    resolve_dataset, reports_dir, force, claims, started,
) -> IngestResult:  # fmt: skip
    claims = claims or _LocalClaims(previous)
    emit = progress or (lambda *a, **k: None)
    if previous and previous.fingerprint == fp and not force:
        return _up_to_date(spec, store, previous, started)

    def adopted(number: int, existing: dict) -> IngestResult:
        return IngestResult(
            spec.id,
            "adopted",
            number,
            version_prefix(spec, number),
            existing,
            validation=existing.get("validation", {}),
            seconds=time.perf_counter() - started,
        )

    # A committed but unregistered version with the same fingerprint (a run stopped between
    # publish and register) is adopted instead of duplicated.
    if not force:
        for number, claimed_fp, run in claims.pending():
            if claimed_fp != fp or (previous and number <= previous.number):
                continue
            existing = _committed_manifest(store, version_prefix(spec, number))
            if existing and existing.get("fingerprint") == fp and claims.adopt(number, run):
                return adopted(number, existing)
    # The number this run owns: nothing else writes under it. A number whose prefix storage
    # already holds (a store shared with another catalogue) is skipped, never written into.
    number = claims.take(fp)
    while (existing := _committed_manifest(store, version_prefix(spec, number))) is not None:
        if existing.get("fingerprint") == fp and not force:
            return adopted(number, existing)
        number = claims.take(fp)
    try:
        return _publish_new(
            spec,
            store,
            number,
            fp,
            files,
            source_desc,
            pii_key,
            emit,
            resolve_dataset,
            reports_dir,
            claims,
            started,
            previous,
        )
    except BaseException:
        if _uncommitted(store, version_prefix(spec, number)):
            claims.release(number)  # the next run may take the number (and its leftovers)
        raise


def _uncommitted(store: ObjectStore, prefix: str) -> bool:
    """After a failed publish: is the prefix certainly not a committed version? (Unknown when
    the store cannot be asked: then the number stays claimed and is never reused.)"""
    try:
        return not store.exists(f"{prefix}/{MANIFEST}")
    except Exception:  # noqa: BLE001 - the original error is what the user sees
        return False


def _publish_new(
    spec,
    store,
    number,
    fp,
    files,
    source_desc,
    pii_key,
    emit,
    resolve_dataset,
    reports_dir,
    claims,
    started,
    previous,
) -> IngestResult:
    prefix = version_prefix(spec, number)
    if validation_worker.wanted(spec.expectations, spec.on_invalid):
        validation_worker.prestart()  # great-expectations imports while the source is opened
    staging = store.new_staging()
    try:
        try:
            tables, validation, warnings, quarantine = _convert(
                spec, files, staging, pii_key, emit, resolve_dataset, reports_dir, number, previous
            )
        except ValidationWorkerError as e:
            raise IngestError(
                f"dataset {spec.id!r}: {e.message}", hint=e.hint, dataset=spec.id
            ) from e
        manifest = _manifest(spec, number, fp, source_desc, tables, validation, staging)
        (staging / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
        failpoints.hit("ingest.staged")
        emit("publish", prefix=prefix, bytes=manifest["bytes"])
        claims.writing(number)
        store.publish(staging, prefix, progress=lambda n: emit("published_bytes", bytes=n))
    except BaseException:
        store.discard(staging)
        raise
    status = "published_with_warnings" if warnings else "published"
    return IngestResult(
        spec.id,
        status,
        number,
        prefix,
        manifest,
        validation=validation,
        warnings=warnings,
        quarantine=quarantine,
        seconds=time.perf_counter() - started,
    )


@dataclass
class _TableOut:
    name: str
    rows: int
    schema: pa.Schema
    files: list[Path]
    individuals: dict[str, int] = field(default_factory=dict)  # column -> distinct people


def _table_dirname(table: SourceTable) -> str:
    name = table.name or "data"
    if not TABLE_RE.fullmatch(name):  # any reader: the name becomes a folder of the version
        raise SourceError(
            f"table name {name!r} must match [A-Za-z0-9][A-Za-z0-9_-]{{0,99}}",
            file=table.files[0] if table.files else None,
            hint="rename the member or sheet the table comes from",
        )
    return name


def _pii_columns(spec: DatasetSpec, schema: pa.Schema) -> dict[str, tuple[str, str]]:
    return {
        f.name: (f.pii, f.pii_treatment)
        for f in spec.schema
        if f.pii and f.pii != "none" and f.name in schema.names
    }


def _convert(spec, files, staging, pii_key, emit, resolve_dataset, reports_dir, number, previous):
    if validation_worker.gx_in_process(spec.expectations, spec.on_invalid):
        return _convert_tables(
            spec, files, staging, pii_key, emit, resolve_dataset, reports_dir, number, previous
        )
    with without_pandas():  # else pyarrow imports it (~0.2 s) on its first Python value
        return _convert_tables(
            spec, files, staging, pii_key, emit, resolve_dataset, reports_dir, number, previous
        )


def _convert_tables(
    spec, files, staging, pii_key, emit, resolve_dataset, reports_dir, number, previous
):
    tables = open_source(spec.source, spec.schema, files=files)  # the files fingerprinted
    _check_table_names(spec, {t.name for t in tables})
    outs: list[_TableOut] = []
    reports: dict[str, dict] = {}
    warnings: list[str] = []
    quarantine: list[str] = []
    for table in tables:
        name = _table_dirname(table)
        emit("table", name=name, files=table.files)
        validator = BatchValidator(
            spec.id,
            list(spec.expectations),
            table.schema,
            on_invalid=spec.on_invalid,
            file=table.files[0] if table.files else None,
            table=table.name,
            resolve_dataset=resolve_dataset,
            worker=validation_worker.enabled(),
        )
        with validator:
            out, q_paths = _write_table(
                spec,
                table,
                staging / "data" / name,
                validator,
                pii_key,
                emit,
                quarantine_path=lambda name=name: _quarantine_path(reports_dir, spec, number, name),
                previous=(previous.tables.get(name) if previous else None),
                warnings=warnings,
            )
            emit("validate", name=name)
            report = validator.finish([str(p) for p in out.files], resolve_dataset=resolve_dataset)
            report.repairs = table.repairs.to_list()
        quarantine.extend(q_paths)
        kept = _keep_report(reports_dir, spec, number, name, report)
        reports[name] = report.summary()
        if not report.publishable:  # the on_invalid policy decides, in the report
            where = Msg("table %(name)s: ", name=repr(name)) if table.name else ""
            other = (
                Msg("declare `on_invalid: quarantine_rows` / `warn`")
                if spec.on_invalid == "fail"
                else Msg(
                    "declare `on_invalid: warn` (setting rows aside cannot fix a dataset-level "
                    "check such as row_count)"
                )
            )
            failed = ValidationFailed(
                report,
                hint=Msg(
                    "%(where)sthe counts are failing rows; read the report %(kept)s — fix the "
                    "source, relax the expectation, or %(other)s in datasets.yaml",
                    where=where,
                    kept=kept,
                    other=other,
                ),
            )
            failed.report_file = kept  # a server path: a surface for clients names its page
            raise failed
        if not report.success:
            warnings.extend(
                Msg("%(table)s: %(check)s failed on %(n)s rows", table=name, check=exp, n=n)
                for exp, n in report.failures_by_expectation.items()
            )
        outs.append(out)
        (staging / "reports").mkdir(exist_ok=True)
        (staging / "reports" / f"{name}.validation.json").write_text(
            json.dumps(_without_samples(report.to_dict()), ensure_ascii=False, default=str)
        )
    if not spec.allow_empty and sum(o.rows for o in outs) == 0:
        raise SourceError(
            f"the source of {spec.id!r} has no rows: a version with 0 rows would replace the "
            "current one",
            file=str(files[0]) if files else spec.source.path,
            hint="check the source file; if an empty version is intended, declare "
            "`allow_empty: true` for the dataset in datasets.yaml",
        )
    return outs, _merge_summaries(reports), warnings, quarantine


def _check_table_names(spec: DatasetSpec, names: set[str | None]) -> None:
    for i, e in enumerate(spec.expectations):
        if e.get("table") is not None and e["table"] not in names:
            raise ConfigError(
                f"expectation {i + 1} of {spec.id!r} names table {e['table']!r}, which the "
                f"source does not have (tables: {', '.join(sorted(n for n in names if n))})",
                line=spec.line,
                hint="fix `table:` of the expectation in datasets.yaml",
            )


def _write_table(
    spec: DatasetSpec,
    table: SourceTable,
    out_dir: Path,
    validator: BatchValidator,
    pii_key: bytes,
    emit: Progress,
    *,
    quarantine_path: Callable[[], Path],
    previous: list[dict] | None = None,
    warnings: list[str] | None = None,
) -> tuple[_TableOut, list[str]]:
    """Stream one table: chunk, check for undeclared personal data (first chunk), validate,
    set invalid rows aside (quarantine_rows), mask, write zstd Parquet parts to staging."""
    name = _table_dirname(table)
    pii_cols = _pii_columns(spec, table.schema)
    check_policy(spec.access, pii_cols)
    declared = set(pii_cols) | {f.name for f in spec.schema if f.pii == "none"}
    out_schema = masked_schema(table.schema, pii_cols)
    if previous is not None:
        _check_schema_change(spec, table, name, previous, out_schema, warnings)
    parts = _Parts(out_dir, out_schema)
    writer = _Writer(parts)
    rejected = _Quarantine(quarantine_path)
    text_cols = [
        i
        for i, f in enumerate(table.schema)
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    ]
    nul = _NulBytes(spec, table, warnings)
    individuals = IndividualCounter(pii_cols, pii_key)
    unnamed = [c for c in table.unnamed if c in table.schema.names]
    filled: set[str] = set()  # unnamed columns seen holding a value
    offset = 0
    try:
        for chunk in _chunks(table.batches):
            failpoints.hit("ingest.read")
            chunk, blank = _without_blank_rows(chunk)
            table.repairs.blank_rows += blank
            if len(filled) < len(unnamed):
                filled |= _holding_values(chunk, [c for c in unnamed if c not in filled])
            if text_cols:
                chunk = nul.check(chunk, text_cols, offset)
            # every chunk, on rows spread evenly across it: personal data late in a file
            # must block the publish as surely as personal data on its first lines
            require_declared(chunk, declared, dataset_id=spec.id, sample_rows=PII_SAMPLE_ROWS)
            valid = validator.check_batch(chunk, offset)
            failpoints.hit("ingest.validated")
            offset += chunk.num_rows
            if valid is not None:
                chunk = rejected.set_aside(chunk, valid, validator)
            masked = mask_batch(chunk, pii_cols, pii_key) if pii_cols else chunk
            individuals.add(masked)
            writer.write(masked)  # "ingest.written" is hit once it is in the file
            emit("rows", name=name, rows=offset)
        writer.finish()
    finally:
        writer.stop()
        files = parts.close()
        rejected.close()
        validation_worker.release_memory()
    empty = [c for c in unnamed if c not in filled and c in parts.schema.names]
    if empty:  # no name and no value: dropped, and said so in the report
        parts.drop_columns(empty)
        table.repairs.dropped_columns.extend(empty)
    return _TableOut(name, parts.rows, parts.schema, files, individuals.counts()), rejected.paths


def _empty_mask(chunk: pa.Table) -> pa.Array | None:
    """Rows with no value in any column (null, or "" in a text column); None when there is
    none (settled on the first column, usually)."""
    mask = None
    for col in chunk.columns:
        empty = pc.is_null(col)
        t = col.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            empty = pc.or_kleene(empty, pc.equal(pc.binary_length(col), 0))
        mask = empty if mask is None else pc.and_kleene(mask, empty)
        if not pc.any(mask).as_py():
            return None
    return mask


def _without_blank_rows(chunk: pa.Table) -> tuple[pa.Table, int]:
    """Blank rows (",,,,", or a record of only spaces) are skipped and counted: not data."""
    if chunk.num_rows == 0 or chunk.num_columns == 0:
        return chunk, 0
    mask = _empty_mask(chunk)
    if mask is None:
        return chunk, 0
    n = int(pc.sum(mask).as_py() or 0)
    return chunk.filter(pc.invert(pc.fill_null(mask, False))), n


def _holding_values(chunk: pa.Table, columns: list[str]) -> set[str]:
    out = set()
    for c in columns:
        col = chunk.column(c)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = pc.utf8_trim_whitespace(col)
            has = pc.and_kleene(pc.is_valid(col), pc.not_equal(col, ""))
        else:
            has = pc.is_valid(col)
        if pc.any(pc.fill_null(has, False)).as_py():
            out.add(c)
    return out


class _NulBytes:
    """NUL characters (U+0000) in text: refused (``nul_bytes: refuse``, the default: they
    truncate strings in C-based tools and hide data), or removed and reported
    (``nul_bytes: strip``). One vectorised scan per text column per chunk."""

    def __init__(self, spec: DatasetSpec, table: SourceTable, warnings: list[str] | None):
        self.spec, self.table, self.warnings = spec, table, warnings
        self.stripped: dict[str, int] = {}

    def check(self, chunk: pa.Table, cols: list[int], offset: int) -> pa.Table:
        for i in cols:
            col = chunk.column(i)
            if not _may_hold_nul(col):
                continue
            hits = pc.match_substring(col, "\x00")
            if not pc.any(hits).as_py():
                continue
            name = chunk.schema.field(i).name
            if self.spec.source.nul_bytes != "strip":
                row = offset + pc.index(hits, True).as_py() + 1
                raise SourceError(
                    f"column {name!r} holds a NUL character (U+0000) in data row {row:,}",
                    file=self.table.files[0] if self.table.files else self.spec.source.path,
                    column=name,
                    hint="remove the NUL bytes from the source, or declare `nul_bytes: strip` in "
                    "the source in datasets.yaml to have them removed (and reported)",
                )
            n = pc.sum(hits).as_py()
            chunk = chunk.set_column(
                i, chunk.schema.field(i), pc.replace_substring(col, "\x00", "")
            )
            if self.warnings is not None and name not in self.stripped:
                self.warnings.append(
                    Msg(
                        "NUL characters removed from column %(column)s (nul_bytes: strip)",
                        column=repr(name),
                    )
                )
            self.stripped[name] = self.stripped.get(name, 0) + n
        return chunk


def _may_hold_nul(col: pa.ChunkedArray) -> bool:
    """Does any chunk's character data hold a zero byte? (One pass over the raw buffer, no
    copy: ~20x faster than a string kernel; a hit is then checked exactly.)"""
    for ch in col.chunks:
        buf = ch.buffers()[2]
        if buf is not None and buf.size and not np.frombuffer(buf, np.uint8).all():
            return True
    return False


def _check_schema_change(spec, table, name, previous, out_schema, warnings) -> None:
    """A new version never silently changes what the previous one's columns are: a changed
    type or a removed column is refused unless declared (the column's ``type:`` in
    ``schema:``, or ``schema_changes: allow``); every change is reported."""
    before = {c["name"]: c["type"] for c in previous}
    after = {f.name: str(f.type) for f in out_schema}
    changed: list[str] = []
    removed: list[str] = []
    accepted: list[str] = []
    for col, typ in before.items():
        if col not in after:
            removed.append(col)
        elif after[col] != typ:
            f = spec.field(f"{name}.{col}") or spec.field(col)
            (accepted if f is not None and f.type else changed).append(
                f"{col} {typ} -> {after[col]}"
            )
    added = [c for c in after if c not in before]
    where = f"table {name!r}" if table.name else "the table"
    if (changed or removed) and spec.schema_changes != "allow":
        what = []
        if changed:
            what.append("types change: " + ", ".join(changed))
        if removed:
            what.append("columns removed: " + ", ".join(removed))
        raise SourceError(
            f"{where} differs from the current version's: {'; '.join(what)}",
            file=table.files[0] if table.files else spec.source.path,
            hint="if the change is intended, declare the new type of each column in `schema:` "
            "(or `schema_changes: allow` for the dataset) in datasets.yaml; otherwise check "
            "the source (an empty or truncated file infers every column as text)",
        )
    if warnings is not None:
        for kind, cols in (
            (Msg("types changed"), changed + accepted),
            (Msg("columns removed"), removed),
            (Msg("columns added"), added),
        ):
            if cols:
                warnings.append(
                    Msg(
                        "schema change in %(where)s: %(kind)s: %(columns)s",
                        where=where,
                        kind=kind,
                        columns=", ".join(cols),
                    )
                )


class _Writer:
    """Writes chunks to :class:`_Parts` in a thread of its own: Parquet encoding and zstd
    (which release the GIL) run while the next chunk is read, checked and masked, the way
    the CSV reader parses ahead. At most one chunk waits; a writing error is raised by the
    next call."""

    def __init__(self, parts: _Parts) -> None:
        import queue  # noqa: PLC0415
        import threading  # noqa: PLC0415

        self.parts = parts
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="nsdx-parquet", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self._error is None:
                    self.parts.write(item)
                    failpoints.hit("ingest.written")
            except BaseException as e:  # noqa: BLE001 - raised in the caller's thread
                self._error = e
            finally:
                del item
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: pa.Table) -> None:
        self._raise()
        self._queue.put(data)

    def finish(self) -> None:
        """Wait until every chunk is written; raise a writing error."""
        self._queue.join()
        self._raise()

    def stop(self) -> None:
        """End the thread (after the chunks queued, or at once after an error)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class _Parts:
    """The zstd Parquet files of one table in staging: one row group per chunk, a new file
    every PARQUET_ROWS_PER_FILE rows; an empty table still gets a file with its schema."""

    def __init__(self, out_dir: Path, schema: pa.Schema) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir = out_dir
        self.schema = schema
        self.files: list[Path] = []
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_file = 0

    def write(self, data: pa.Table) -> None:
        writer = self._writer
        if writer is None or self._rows_in_file >= PARQUET_ROWS_PER_FILE:
            writer = self._next_file(data.schema)
        writer.write_table(data)
        self._rows_in_file += data.num_rows
        self.rows += data.num_rows

    def _next_file(self, schema: pa.Schema) -> pq.ParquetWriter:
        if self._writer is not None:
            self._writer.close()
        self.schema = schema
        path = self.out_dir / f"part-{len(self.files):05d}.parquet"
        self._writer = writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.files.append(path)
        self._rows_in_file = 0
        return writer

    def close(self) -> list[Path]:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        elif not self.files:
            path = self.out_dir / "part-00000.parquet"
            pq.write_table(self.schema.empty_table(), path, compression="zstd")
            self.files.append(path)
        return self.files

    def drop_columns(self, columns: list[str]) -> None:
        """Rewrite the closed parts without ``columns``, one row group at a time."""
        keep = [n for n in self.schema.names if n not in columns]
        self.schema = pa.schema([self.schema.field(n) for n in keep], self.schema.metadata)
        for path in self.files:
            tmp = path.with_suffix(".tmp")
            src = pq.ParquetFile(path)
            with pq.ParquetWriter(tmp, self.schema, compression="zstd") as w:
                for i in range(src.num_row_groups):
                    w.write_table(src.read_row_group(i, columns=keep).cast(self.schema))
                if src.num_row_groups == 0:
                    w.write_table(self.schema.empty_table())
            src.close()
            tmp.replace(path)


class _Quarantine:
    """Rows that failed a row-level expectation (on_invalid: quarantine_rows), with the
    expectations they failed, in a Parquet file the provider keeps (never published)."""

    def __init__(self, path: Callable[[], Path]) -> None:
        self._path = path
        self._writer: pq.ParquetWriter | None = None
        self.paths: list[str] = []

    def set_aside(self, chunk: pa.Table, valid: pa.Array, validator: BatchValidator) -> pa.Table:
        """Write the invalid rows of ``chunk`` (just checked by ``validator``); return the rest."""
        if pc.all(valid).as_py():
            return chunk
        invalid = pc.invert(valid)
        reasons = validator.quarantine_reason(chunk).filter(invalid)
        bad = chunk.filter(invalid)
        bad = pa.Table.from_arrays(
            [*bad.columns, reasons], names=[*bad.schema.names, "_failed_expectations"]
        )
        if self._writer is None:
            path = self._path()
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))  # owner only
            self._writer = pq.ParquetWriter(path, bad.schema, compression="zstd")
            self.paths.append(str(path))
        self._writer.write_table(bad)
        return chunk.filter(valid)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _chunks(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.Table]:
    """Gather a stream of record batches into tables of about CHUNK_ROWS / CHUNK_BYTES rows,
    without copying them (the reader's batches are small, see ingest.readers.csv)."""
    pending: list[pa.RecordBatch] = []
    rows = size = 0
    for b in batches:
        pending.append(b)
        rows += b.num_rows
        size += b.nbytes
        if rows >= CHUNK_ROWS or size >= CHUNK_BYTES:
            yield pa.Table.from_batches(pending)
            pending, rows, size = [], 0, 0
    if pending:
        yield pa.Table.from_batches(pending)


def _quarantine_path(reports_dir: Path | None, spec: DatasetSpec, number: int, name: str) -> Path:
    base = (reports_dir or Path(".nsdx/reports")) / spec.id / f"v{number}"
    base.mkdir(parents=True, exist_ok=True)
    return base / f"{name}.quarantine.parquet"


SAMPLE_KEYS = (
    "partial_unexpected_list",
    "partial_unexpected_rows",
    "partial_unexpected_counts",
    "unexpected_list",
    "unexpected_index_list",
    "partial_unexpected_index_list",
)


def _without_samples(report: dict) -> dict:
    """The published copy of a report: counts and verdicts, no values read from the data
    (they may be personal data the published Parquet masks). Of each result only its
    numbers stay — counts, percentages, a numeric observed value (an aggregate such as a
    mean, served only to those who may read the data: ``validation.report.shown_report``);
    a text observed value (a date, a list of values) and the exception's message and
    traceback go. The provider's own copy keeps them all."""

    def number(v: Any) -> bool:
        return v is None or isinstance(v, bool | int | float)

    out = dict(report)
    out["results"] = [
        {
            **r,
            "result": {
                k: (v if number(v) else None) if k == "observed_value" else v
                for k, v in (r.get("result") or {}).items()
                if k not in SAMPLE_KEYS and (k == "observed_value" or number(v))
            },
            "exception_info": {
                k: v for k, v in (r.get("exception_info") or {}).items() if isinstance(v, bool)
            },
        }
        for r in report.get("results", [])
        if isinstance(r, dict)
    ]
    return out


def _private_file(path: Path, text: str) -> None:
    """Write a file only its owner can read (reports and quarantined rows hold raw values)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _keep_report(reports_dir, spec, number, name, report) -> Path:
    """The provider keeps every report, including those of runs that published nothing;
    returns the HTML report's path."""
    base = (reports_dir or Path(".nsdx/reports")) / spec.id
    base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    _private_file(
        base / f"{stamp}-v{number}-{name}.json",
        json.dumps(report.to_dict(), ensure_ascii=False, default=str),
    )
    html = base / f"{stamp}-v{number}-{name}.html"
    _private_file(html, report.to_html())
    return html


def _merge_summaries(reports: dict[str, dict]) -> dict:
    if len(reports) == 1:
        return next(iter(reports.values()))
    scores = [s for r in reports.values() if (s := r.get("score")) is not None]
    failures: dict[str, int] = {}
    for name, r in reports.items():
        for exp, n in (r.get("failures_by_expectation") or {}).items():
            failures[f"{name}.{exp}"] = n
    return {
        "success": all(r.get("success", True) for r in reports.values()),
        "score": round(sum(scores) / len(scores), 2) if scores else None,
        "failures_by_expectation": failures,
        "tables": reports,
    }


def _schema_list(schema: pa.Schema) -> list[dict]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def _manifest(spec, number, fp, source_desc, tables, validation, staging: Path) -> dict:
    table_entries, flat = [], []
    for t in tables:
        files = []
        for p in t.files:
            entry = {
                "path": p.relative_to(staging).as_posix(),
                "rows": pq.ParquetFile(p).metadata.num_rows,
                "bytes": p.stat().st_size,
                "sha256": sha256_file(p),
            }
            files.append(entry)
            flat.append(entry)
        table_entries.append(
            {
                "name": t.name,
                "rows": t.rows,
                "bytes": sum(f["bytes"] for f in files),
                "schema": _schema_list(t.schema),
                "files": files,
                "coverage": table_coverage(t.files, t.schema),
                "individuals": t.individuals,
            }
        )
    for p in sorted((staging / "reports").glob("*")) if (staging / "reports").exists() else []:
        flat.append(
            {
                "path": p.relative_to(staging).as_posix(),
                "bytes": p.stat().st_size,
                "sha256": sha256_file(p),
            }
        )
    return {
        "nsdx_manifest": 1,
        "dataset": spec.id,
        "organization": spec.organization,
        "domain": spec.domain,
        "version": number,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint": fp,
        "source": {
            "format": spec.source.format,
            "files": [
                {"name": Path(s["path"]).name, "bytes": s["bytes"], "sha256": s["sha256"]}
                for s in source_desc
            ],
        },
        "row_count": sum(t["rows"] for t in table_entries),
        "bytes": sum(t["bytes"] for t in table_entries),
        "tables": table_entries,
        "coverage": merge_coverage([t["coverage"] for t in table_entries]),
        "files": flat,
        "validation": validation,
        # distinct individuals in the identifying personal-data columns, counted from their
        # masked tokens (validation.pii.IndividualCounter): the cross-border rules read it
        "personal_information": {
            "has_pi": spec.has_pi,
            "sensitive": spec.sensitive_pi,
            "individuals": sum(sum(t.individuals.values()) for t in tables),
        },
    }


__all__ = [
    "IngestError",
    "IngestResult",
    "PreviousVersion",
    "dataset_prefix",
    "fingerprint",
    "run_pipeline",
    "version_prefix",
]
