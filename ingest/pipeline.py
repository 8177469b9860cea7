"""The ingest pipeline: source file → Arrow batches → validation → masking → zstd Parquet
in a staging directory → published version ``<org>/<dataset>/v<N>/`` in object storage.

``run_pipeline`` publishes at most one version and never registers anything: the catalogue
(``catalogue.publishing``) calls it and moves its pointer after :meth:`ObjectStore.publish`
has returned. A failure at any step leaves nothing visible.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from validation import BatchValidator, ValidationFailed, check_policy, mask_batch
from validation.pii import require_declared

from .errors import ConfigError, IngestError
from .readers import SourceTable, open_source, source_files
from .spec import DatasetSpec
from .storage import MANIFEST, ObjectStore, sha256_file

PIPELINE_VERSION = "1"  # bump when the output of the same input changes
PARQUET_ROWS_PER_FILE = 5_000_000
PII_SAMPLE_ROWS = 20_000
# Batches are gathered into chunks of about this size before validation and writing:
# great-expectations has a fixed cost per call, and bigger row groups compress better.
# Memory stays bounded by the chunk size, whatever the file size.
CHUNK_ROWS = 1_000_000
CHUNK_BYTES = 128 << 20

# progress(event, **fields): "table" (name, files), "rows" (name, rows), "publish" (bytes)
Progress = Callable[..., None]


@dataclass
class PreviousVersion:
    number: int
    fingerprint: str


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
        }


def dataset_prefix(spec: DatasetSpec) -> str:
    return f"{spec.organization}/{spec.id}"


def version_prefix(spec: DatasetSpec, number: int) -> str:
    return f"{dataset_prefix(spec)}/v{number}"


def fingerprint(spec: DatasetSpec, files: list[Path], pii_key: bytes) -> tuple[str, list[dict]]:
    """What determines the published bytes: the source content and the options that shape
    the output. Titles and notes are not part of it (they change metadata, not data)."""
    src = spec.source
    shaping = {
        "pipeline": PIPELINE_VERSION,
        "format": src.format,
        "encoding": src.encoding,
        "delimiter": src.delimiter,
        "skip_rows": src.skip_rows,
        "thousands": src.thousands,
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
    h = hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode())
    described = []
    for p in files:
        digest = sha256_file(p)
        size = p.stat().st_size
        h.update(f"{p.name}\0{size}\0{digest}\n".encode())
        described.append({"path": str(p), "bytes": size, "sha256": digest})
    return h.hexdigest(), described


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
) -> IngestResult:
    started = time.perf_counter()
    emit = progress or (lambda *a, **k: None)
    files = source_files(spec.source)
    fp, source_desc = fingerprint(spec, files, pii_key)

    if previous and previous.fingerprint == fp and not force:
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

    # The next free version number; a committed but unregistered version with the same
    # fingerprint (a crash between publish and register) is adopted instead of duplicated.
    number = (previous.number if previous else 0) + 1
    while (existing := _committed_manifest(store, version_prefix(spec, number))) is not None:
        if existing.get("fingerprint") == fp and not force:
            return IngestResult(
                spec.id,
                "adopted",
                number,
                version_prefix(spec, number),
                existing,
                validation=existing.get("validation", {}),
                seconds=time.perf_counter() - started,
            )
        number += 1

    prefix = version_prefix(spec, number)
    staging = store.new_staging()
    try:
        tables, validation, warnings, quarantine = _convert(
            spec, staging, pii_key, emit, resolve_dataset, reports_dir, number
        )
        manifest = _manifest(spec, number, fp, source_desc, tables, validation, staging)
        (staging / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
        emit("publish", prefix=prefix, bytes=manifest["bytes"])
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


def _table_dirname(table: SourceTable) -> str:
    return table.name or "data"


def _pii_columns(spec: DatasetSpec, schema: pa.Schema) -> dict[str, tuple[str, str]]:
    return {
        f.name: (f.pii, f.pii_treatment)
        for f in spec.schema
        if f.pii and f.pii != "none" and f.name in schema.names
    }


def _convert(spec, staging, pii_key, emit, resolve_dataset, reports_dir, number):
    tables = open_source(spec.source, spec.schema)
    names = {t.name for t in tables}
    for i, e in enumerate(spec.expectations):
        if e.get("table") is not None and e["table"] not in names:
            raise ConfigError(
                f"expectation {i + 1} of {spec.id!r} names table {e['table']!r}, which the "
                f"source does not have (tables: {', '.join(sorted(n for n in names if n))})",
                line=spec.line,
                hint="fix `table:` of the expectation in datasets.yaml",
            )
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
        )
        pii_cols = _pii_columns(spec, table.schema)
        check_policy(spec.access, pii_cols)
        out_dir = staging / "data" / name
        out_dir.mkdir(parents=True, exist_ok=True)
        q_writer = None
        writer = None
        out_schema = None
        part, rows_in_part, rows, offset = 0, 0, 0, 0
        written: list[Path] = []
        try:
            for batch in _chunks(table.batches):
                if offset == 0 and batch.num_rows:
                    sample = batch.slice(0, PII_SAMPLE_ROWS)
                    declared = set(pii_cols) | {f.name for f in spec.schema if f.pii == "none"}
                    require_declared(sample, declared, dataset_id=spec.id)
                valid = validator.check_batch(batch, offset)
                offset += batch.num_rows
                if valid is not None and not pc.all(valid).as_py():
                    bad = batch.filter(pc.invert(valid))
                    if q_writer is None:
                        q_path = _quarantine_path(reports_dir, spec, number, name)
                        q_writer = pq.ParquetWriter(
                            q_path, _with_reason(bad).schema, compression="zstd"
                        )
                        quarantine.append(str(q_path))
                    q_writer.write_batch(_with_reason(bad, validator))
                    batch = batch.filter(valid)
                if pii_cols:
                    batch = mask_batch(batch, pii_cols, pii_key)
                if writer is None or rows_in_part >= PARQUET_ROWS_PER_FILE:
                    if writer is not None:
                        writer.close()
                        part += 1
                    out_schema = batch.schema
                    path = out_dir / f"part-{part:05d}.parquet"
                    writer = pq.ParquetWriter(path, out_schema, compression="zstd")
                    written.append(path)
                    rows_in_part = 0
                writer.write_batch(batch)
                rows_in_part += batch.num_rows
                rows += batch.num_rows
                emit("rows", name=name, rows=offset)
            if writer is None:  # an empty table still gets a file with its schema
                out_schema = table.schema
                path = out_dir / "part-00000.parquet"
                pq.write_table(out_schema.empty_table(), path, compression="zstd")
                written.append(path)
        finally:
            if writer is not None:
                writer.close()
            if q_writer is not None:
                q_writer.close()
        report = validator.finish([str(p) for p in written], resolve_dataset=resolve_dataset)
        _keep_report(reports_dir, spec, number, name, report)
        reports[name] = report.summary()
        if not report.success:
            if spec.on_invalid == "fail":
                raise ValidationFailed(report)
            warnings.extend(
                f"{name}: {exp} failed on {n} rows"
                for exp, n in report.failures_by_expectation.items()
            )
        outs.append(_TableOut(name, rows, out_schema, written))
        (staging / "reports").mkdir(exist_ok=True)
        (staging / "reports" / f"{name}.validation.json").write_text(
            json.dumps(report.to_dict(), ensure_ascii=False, default=str)
        )
    return outs, _merge_summaries(reports), warnings, quarantine


def _chunks(batches) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of record batches into chunks of about CHUNK_ROWS / CHUNK_BYTES."""
    pending: list[pa.RecordBatch] = []
    rows = size = 0
    for b in batches:
        pending.append(b)
        rows += b.num_rows
        size += b.nbytes
        if rows >= CHUNK_ROWS or size >= CHUNK_BYTES:
            yield _concat(pending)
            pending, rows, size = [], 0, 0
    if pending:
        yield _concat(pending)


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _with_reason(bad: pa.RecordBatch, reasons: pa.Array) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [*bad.columns, reasons], names=[*bad.schema.names, "_failed_expectations"]
    )


def _quarantine_path(reports_dir: Path | None, spec: DatasetSpec, number: int, name: str) -> Path:
    base = (reports_dir or Path(".nsdx/reports")) / spec.id / f"v{number}"
    base.mkdir(parents=True, exist_ok=True)
    return base / f"{name}.quarantine.parquet"


def _keep_report(reports_dir, spec, number, name, report) -> None:
    """The provider keeps every report, including those of runs that published nothing."""
    base = (reports_dir or Path(".nsdx/reports")) / spec.id
    base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (base / f"{stamp}-v{number}-{name}.json").write_text(
        json.dumps(report.to_dict(), ensure_ascii=False, default=str)
    )
    (base / f"{stamp}-v{number}-{name}.html").write_text(report.to_html())


def _merge_summaries(reports: dict[str, dict]) -> dict:
    if len(reports) == 1:
        return next(iter(reports.values()))
    scores = [r.get("score") for r in reports.values() if r.get("score") is not None]
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
        "files": flat,
        "validation": validation,
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
