"""`nsdx audit verify` remembers the last checkpoint it verified, so deleting the newest
ledger entries together with their checkpoints is caught (found in review)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import run_cli


def test_tail_deletion_is_caught_on_the_next_verify(nsdx_env):
    run_cli("exchange", "demo", env=nsdx_env)
    first = run_cli("audit", "verify", env=nsdx_env)
    assert first.stdout.startswith("✓ ledger verified")
    state = Path(nsdx_env["NSDX_HOME"]) / "audit" / "verified-checkpoint.txt"
    assert state.read_text(encoding="utf-8").count("\n") >= 3  # a signed checkpoint note

    db = sqlite3.connect(Path(nsdx_env["NSDX_HOME"]) / "nsdx.db")
    with db:  # remove the newest entries and every checkpoint that signed them
        db.execute("DELETE FROM ledger_entries WHERE idx >= 30")
        db.execute("DELETE FROM ledger_checkpoints WHERE tree_size > 30")
    db.close()
    proc = run_cli("audit", "verify", env=nsdx_env, check=False)
    assert proc.returncode == 1
    assert "first entry that differs is 30" in proc.stderr
    assert "entries from 30 on were removed" in proc.stderr


def test_demo_refuses_a_ledger_with_real_activity(nsdx_env):
    """Found in review: the demo's sample trades are permanent and count for rewards."""
    from nsdx.cli.exchange import _ex

    ex = _ex()  # the same Exchange the CLI builds, on this test's NSDX_HOME
    ex.ledger.append_event("exchange.opened", {"by": "nansha-data-exchange"})  # real activity
    proc = run_cli("exchange", "demo", env=nsdx_env, check=False)
    assert proc.returncode == 1
    assert "the exchange ledger already holds 1 entries" in proc.stderr
    assert "--force" in proc.stderr
    run_cli("exchange", "demo", "--force", env=nsdx_env)
    again = run_cli("exchange", "demo", env=nsdx_env)
    assert again.stdout.startswith("exchange demo already recorded")
