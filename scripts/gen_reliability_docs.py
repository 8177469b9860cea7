"""Write the generated tables of docs/reliability.md (run by `make docs`; a test checks them).

* **kills** — from ``bench/results/crash_harness.json``, written by ``bench/crash_harness.py``
  (the run's own counts: kills, points, phases, how many held);
* **faults** and **hostile input** — each row names the tests that try it; the number of
  cases is counted from pytest's own collection of those tests (parametrised cases each
  count) plus the generated examples each hypothesis test runs (``FUZZ_EXAMPLES`` in
  tests/test_hostile_sources.py). A renamed or removed test breaks the check.

Only the text between each ``<!-- NAME:begin -->`` / ``<!-- NAME:end -->`` pair is written;
the rest of the document (and sections other people add) is left alone.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
RESULTS = ROOT / "bench" / "results" / "crash_harness.json"

# (fault, what strikes where, the tests) — what held is the same for all: see the doc
FAULTS = [
    (
        "SeaweedFS stopped in the middle of a publish",
        "after the first data object is uploaded, before the manifest",
        ["tests/test_faults_resume.py::test_seaweedfs_stopped_mid_publish"],
    ),
    (
        "SeaweedFS killed (SIGKILL) during a 48 MB upload",
        "while the data objects upload",
        ["tests/test_storage_faults.py::test_store_killed_mid_ingest"],
    ),
    (
        "SeaweedFS hung (SIGSTOP)",
        "any request; at query time",
        [
            "tests/test_ingest_faults.py::test_a_hung_s3_server_fails_with_unreachable",
            "tests/test_ingest_faults.py::test_a_hung_store_at_query_time_is_a_transient_error",
            "tests/test_ingest_faults.py::test_storage_down_at_query_time_is_a_transient_error",
        ],
    ),
    (
        "PostgreSQL connection terminated (`pg_terminate_backend`)",
        "inside the catalogue's transaction that registers a version; inside a ledger "
        "append (entries, head and checkpoint written, not committed)",
        [
            "tests/test_faults_resume.py::test_postgres_connection_terminated_mid_transaction",
            "tests/test_ingest_faults.py::test_a_terminated_database_connection_is_transient",
        ],
    ),
    (
        "`NSDX_HOME` on a full file system (3 MB tmpfs)",
        "writing the staged Parquet; a ledger append on a full disk; then the tmpfs grown",
        [
            "tests/test_faults_resume.py::test_a_full_nsdx_home_then_space_again",
            "tests/test_ingest_faults.py::test_a_full_disk_is_a_transient_error",
        ],
    ),
    (
        "validation worker stopped (SIGSTOP)",
        "while it validates a chunk",
        [
            "tests/test_ingest_faults.py::test_a_stopped_validation_worker_ends_the_ingest_with_a_message"
        ],
    ),
    (
        "two publishes of one dataset at once",
        "released together or up to 0.3 s apart, local, S3 and PostgreSQL",
        ["tests/test_publish_race.py"],
    ),
]

# (input class, the tests, hypothesis examples key or None, what held)
HOSTILE = [
    ("generated CSV text (any characters, quotes, separators, line breaks)",
     ["tests/test_hostile_sources.py::test_generated_csv_round_trips_as_text"], "csv",
     "published cell for cell, or refused naming the file"),
    ("generated CSV bytes (random bytes after a header)",
     ["tests/test_hostile_sources.py::test_generated_csv_bytes_publish_or_are_refused_cleanly"],
     "csv-bytes", "published, or refused naming the file"),
    ("generated JSON arrays (ints beyond int64, mixed types, nested lists)",
     ["tests/test_hostile_sources.py::test_generated_json_publishes_its_records_or_names_the_line[json]"],
     "json", "every record published, or refused naming file and element/column"),
    ("generated NDJSON",
     ["tests/test_hostile_sources.py::test_generated_json_publishes_its_records_or_names_the_line[ndjson]"],
     "ndjson", "every record published, or refused naming file, line/column"),
    ("generated xlsx sheets",
     ["tests/test_hostile_sources.py::test_generated_xlsx_publishes_its_rows_or_names_the_row"],
     "xlsx", "every non-empty row published, or refused naming the file"),
    ("generated GTFS zips (member names with `../`, absolute, drive letters, any text)",
     ["tests/test_hostile_sources.py::test_generated_gtfs_zips_publish_or_are_refused_cleanly"],
     "zip", "published, or refused naming the zip; nothing written outside"),
    ("zip bombs (a member declaring 10 GB; 64 MiB and 256 MiB of zeros)",
     ["tests/test_ingest_hostile.py::test_a_member_declaring_10_gb_is_refused_before_reading",
      "tests/test_ingest_hostile.py::test_a_highly_compressed_member_is_refused",
      "tests/test_hostile_sources.py::test_peak_memory_of_hostile_ingests_is_bounded"],
     None, "refused before unpacking, naming member and limit; peak RSS bounded"),
    ("`../` and absolute member names in GTFS archives",
     ["tests/test_hostile_sources.py::test_a_feed_member_leaving_its_folder_is_refused",
      "tests/test_ingest_hostile.py::test_member_names_are_checked_like_ids"],
     None, "refused naming the zip and the member"),
    ("a 10 MB single field",
     ["tests/test_ingest_hostile.py::test_a_10_mb_field_is_read",
      "tests/test_ingest_hostile.py::test_a_field_beyond_the_limit_names_line_and_limit"],
     None, "read whole; beyond the 64 Mi limit refused naming the line"),
    ("NUL bytes",
     ["tests/test_ingest_hostile.py::test_nul_bytes_are_refused_or_stripped_and_reported"],
     None, "refused naming row and column (or stripped when declared)"),
    ("an encoding that changes half-way (UTF-8, then GB18030)",
     ["tests/test_hostile_sources.py::test_an_encoding_that_changes_half_way_names_the_line"],
     None, "refused naming the first line in the other encoding"),
    ("10,000 columns", ["tests/test_hostile_sources.py::test_peak_memory_of_hostile_ingests_is_bounded"],
     None, "published; peak RSS bounded"),
    ("year 99999", ["tests/test_hostile_sources.py::test_year_99999_is_refused_when_declared_a_date_and_kept_as_text_otherwise"],
     None, "declared a date: refused naming line and column; else kept as text"),
    ("int64 overflow",
     ["tests/test_ingest_hostile.py::test_an_integer_beyond_int64_is_not_published_as_a_float",
      "tests/test_hostile_sources.py::test_int64_overflow_in_a_csv_is_refused_when_declared_an_integer"],
     None, "refused naming line and column (or read exactly as decimal(38,0))"),
    ("dataset ids and organisation names that leave their storage prefix",
     ["tests/test_hostile_sources.py::test_dataset_ids_cannot_name_another_storage_folder",
      "tests/test_ingest_hostile.py::test_organisation_names_are_checked_at_load_time",
      "tests/test_ingest_hostile.py::test_a_spec_built_elsewhere_cannot_escape_its_storage_folder",
      "tests/test_hostile_sources.py::test_nothing_leaves_the_storage_root_through_a_key"],
     None, "refused naming datasets.yaml line and column; no key leaves the store"),
    ("upload file names (`..`, `../../etc/passwd`) and refused uploads",
     ["tests/test_hostile_http.py::test_refused_uploads_leave_nothing"],
     None, "4xx, nothing kept"),
]  # fmt: skip


def _collect(paths: list[str]) -> list[str]:
    files = sorted({p.split("::")[0] for p in paths})
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    ids = [line.strip() for line in out.stdout.splitlines() if "::" in line]
    if not ids:
        raise RuntimeError(f"pytest collected nothing:\n{out.stdout}\n{out.stderr}")
    return ids


def _matches(ids: list[str], pattern: str) -> list[str]:
    return [i for i in ids if i == pattern or i.startswith(pattern + "[") or (
        "::" not in pattern and i.startswith(pattern + "::"))]  # fmt: skip


def _fuzz_examples() -> dict[str, int]:
    """FUZZ_EXAMPLES of tests/test_hostile_sources.py (a literal, read without importing)."""
    text = (ROOT / "tests" / "test_hostile_sources.py").read_text(encoding="utf-8")
    line = next(ln for ln in text.splitlines() if ln.startswith("FUZZ_EXAMPLES = "))
    return ast.literal_eval(line.split("=", 1)[1].strip())


def _crash_harness():
    spec = importlib.util.spec_from_file_location(
        "crash_harness", ROOT / "bench" / "crash_harness.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("crash_harness", mod)
    spec.loader.exec_module(mod)
    return mod


def tables() -> dict[str, str]:
    ids = _collect([t for _f, _w, ts in FAULTS for t in ts] + [t for r in HOSTILE for t in r[1]])
    fuzz = _fuzz_examples()

    def cases(patterns: list[str]) -> int:
        n = 0
        for p in patterns:
            found = _matches(ids, p)
            if not found:
                raise RuntimeError(f"no test collected for {p}: renamed or removed?")
            n += len(found)
        return n

    faults = ["| fault | where it strikes | tests | cases |", "|---|---|---|---|"]
    for fault, where, tests in FAULTS:
        names = ", ".join(f"`{t.split('::')[-1] if '::' in t else t}`" for t in tests)
        faults.append(f"| {fault} | {where} | {names} | {cases(tests)} |")
    hostile = ["| input class | cases | generated examples | what held |", "|---|---|---|---|"]
    for what, tests, key, held in HOSTILE:
        n = cases(tests)
        hostile.append(f"| {what} | {n} | {fuzz[key] if key else '—'} | {held} |")
    total = sum(fuzz.values())
    hostile.append(f"| **generated examples in all** | | **{total}** | |")
    out = {"faults": "\n".join(faults), "hostile": "\n".join(hostile)}
    if RESULTS.exists():  # tests/test_reliability_doc.py requires it
        summary = json.loads(RESULTS.read_text(encoding="utf-8"))["summary"]
        out["crash-harness"] = _crash_harness().table(summary)
    return out


def render(text: str, parts: dict[str, str]) -> str:
    for name, body in parts.items():
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        head, rest = text.split(begin, 1)
        _old, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{body}\n{end}{tail}"
    return text


def main() -> None:
    DOC.write_text(render(DOC.read_text(encoding="utf-8"), tables()), encoding="utf-8")


if __name__ == "__main__":
    main()
