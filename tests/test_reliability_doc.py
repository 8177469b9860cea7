"""docs/reliability.md's tables are the measurements' own (issue 15, item 8): regenerated from
bench/results/crash_harness.json and from pytest's collection of the tests that try each case,
they must equal the doc; and the harness's recorded run must meet the issue's bar."""

from __future__ import annotations

import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))


def test_the_generated_tables_are_current():
    from gen_reliability_docs import DOC, render, tables

    text = DOC.read_text(encoding="utf-8")
    assert text == render(text, tables()), (
        "docs/reliability.md is out of date: run `make docs` (scripts/gen_reliability_docs.py)"
    )
