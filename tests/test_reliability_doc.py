"""docs/reliability.md's tables are the measurements' own (issue 15, item 8): regenerated from
bench/results/crash_harness.json and from pytest's collection of the tests that try each case,
they must equal the doc; and the harness's recorded run must meet the issue's bar."""

from __future__ import annotations

import json
import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))


def test_the_generated_tables_are_current():
    from gen_reliability_docs import DOC, render, tables

    text = DOC.read_text(encoding="utf-8")
    assert text == render(text, tables()), (
        "docs/reliability.md is out of date: run `make docs` (scripts/gen_reliability_docs.py)"
    )


def test_the_recorded_crash_run_meets_the_bar():
    """≥ 30 kills of `nsdx ingest` on each backend at every failpoint, ≥ 15 ledger kills on
    each database, 8 PostgreSQL appenders at once, every kill held."""
    from gen_reliability_docs import RESULTS, _crash_harness

    harness = _crash_harness()
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    summary = results["summary"]
    assert summary == harness.summarise(results)  # the counts are the rounds' own
    for backend in ("local", "s3"):
        s = summary[f"ingest_{backend}"]
        assert s["kills"] >= 30 and s["held"] == s["kills"], s
        assert s["points"] == len(harness.INGEST_POINTS[backend]), s
        assert {"reading", "validating", "writing", "committing"} <= set(s["phases"]), s
        rounds = results[f"ingest_{backend}"]["rounds"]
        assert all(r["problems"] == [] for r in rounds)
    for db in ("sqlite", "postgres"):
        s = summary[f"ledger_{db}"]
        assert s["kills"] >= 15 and s["held"] == s["kills"], s
    assert summary["ledger_postgres"]["appenders"] == 8
