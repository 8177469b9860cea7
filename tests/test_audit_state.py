"""`nsdx audit verify` remembers the last checkpoint it verified, so deleting the newest
ledger entries together with their checkpoints is caught (found in review)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

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


def _tamper(home: Path, *, rehash: bool) -> list[int]:
    """Edit lingang-insight's ¥150,000 drone contract to ¥950,000 directly in the database:
    its order.placed and payment.confirmed entries (and, with ``rehash``, their stored leaf
    hashes too, as a careful forger would)."""
    import hashlib
    import json

    db = sqlite3.connect(home / "nsdx.db")
    with db:
        rows = db.execute("SELECT idx, payload FROM ledger_entries ORDER BY idx").fetchall()
        order = next(
            json.loads(p)["order"]
            for _, p in rows
            if '"order.placed"' in p
            and '"buyer":"lingang-insight"' in p
            and '"amount_fen":15000000' in p
        )
        edited = []
        for idx, p in rows:
            if f'"order":"{order}"' in p and '"amount_fen":15000000' in p:
                new = p.replace('"amount_fen":15000000', '"amount_fen":95000000')
                db.execute("UPDATE ledger_entries SET payload = ? WHERE idx = ?", (new, idx))
                if rehash:
                    h = hashlib.sha256(b"\x00" + new.encode()).digest()
                    db.execute("UPDATE ledger_entries SET leaf_hash = ? WHERE idx = ?", (h, idx))
                edited.append(idx)
    db.close()
    assert len(edited) == 2
    return edited


@pytest.mark.parametrize("rehash", [False, True])
def test_rewards_refuse_entries_that_were_edited_after_signing(nsdx_env, tmp_path, rehash):
    """Found by an attack run: with two ledger entries edited in SQLite (¥150,000 ->
    ¥950,000), `audit rewards` and `audit report` exited 0, paid lingang-insight ¥285,000
    instead of ¥45,000 and still printed the genuine signed root as their provenance."""
    from tests.test_exchange_trade import _demo_year

    y = str(_demo_year())
    run_cli("exchange", "demo", env=nsdx_env)
    rep = json.loads(run_cli("audit", "rewards", "--year", y, "--json", env=nsdx_env).stdout)
    by = {e["org"]: e for e in rep["enterprises"]}
    assert by["lingang-insight"]["reward_cny"] == "45000.00"
    edited = _tamper(Path(nsdx_env["NSDX_HOME"]), rehash=rehash)
    for args in (["audit", "rewards", "--year", y], ["audit", "rewards", "--year", y, "--json"],
                 ["audit", "report", "--year", y, "--out", str(tmp_path / "r")],
                 ["audit", "flags"], ["audit", "rewards", "--year", y, "--at",
                                      str(rep["checkpoint"]["tree_size"])]):  # fmt: skip
        proc = run_cli(*args, env=nsdx_env, check=False)
        assert proc.returncode == 1, (args, proc.stdout)
        assert "285000" not in proc.stdout and "285,000" not in proc.stdout
        assert "do not hash to the root signed in checkpoint" in proc.stderr
        assert "run `nsdx audit verify`" in proc.stderr
        if not rehash:  # the stored leaf hashes still name the edited entries
            assert f"entries {edited[0]}, {edited[1]} were edited" in proc.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_rewards_refuse_over_http_too(nsdx_env):
    from fastapi.testclient import TestClient

    from catalogue.auth import Accounts
    from nsdx.core import Nsdx
    from nsdx.web.app import create_app
    from tests.test_exchange_trade import _demo_year

    run_cli("exchange", "demo", env=nsdx_env)
    _tamper(Path(nsdx_env["NSDX_HOME"]), rehash=True)
    nx = Nsdx()
    acc = Accounts(nx.catalogue)
    acc.create_user("aud", auditor=True)
    tok, _ = acc.create_token("aud")
    with TestClient(create_app(nx, warm=False)) as c:
        h = {"Authorization": f"Bearer {tok}"}
        for path, params in (("/api/audit/rewards", {"year": _demo_year()}),
                             ("/api/audit/flags", {})):  # fmt: skip
            r = c.get(path, params=params, headers=h)
            assert r.status_code == 500, r.text
            err = r.json()["error"]
            assert err["error"] == "LedgerCorrupt"
            assert "do not hash to the root signed" in err["message"]
    # the official's page refuses with the same status, and shows no figure
    from catalogue.signin import set_password
    from tests.test_portal_edit import PASSWORD, login

    set_password(acc, "aud", PASSWORD)
    with TestClient(create_app(nx, warm=False, worker=False)) as c:
        c.headers.update({"accept": "text/html"})
        login(c, "aud")
        page = c.get("/audit/rewards", params={"year": _demo_year()})
        assert page.status_code == 500, page.text
        assert "在签名后被改动" in page.text  # "changed after they were signed", in Chinese
        assert "¥" not in page.text.split("<main", 1)[-1]


def test_an_auditors_read_writes_nothing(nsdx_env):
    """`nsdx audit rewards` signed a checkpoint (a write to the ledger) when the head was
    not signed; now it computes from the latest signed checkpoint and says so."""
    from exchange.ledger.store import LedgerStore
    from nsdx.cli.exchange import _ex
    from tests.test_exchange_trade import _demo_year

    y = str(_demo_year())
    _ex()  # a deployment (its database) without any ledger entry yet
    fresh = run_cli("audit", "rewards", "--year", y, env=nsdx_env, check=False)
    assert fresh.returncode == 1
    assert "the ledger has no signed checkpoint yet" in fresh.stderr
    run_cli("exchange", "demo", env=nsdx_env)
    ex = _ex()
    signed = ex.ledger.latest_checkpoint().tree_size
    # an entry appended without a signature (a writer without the key)
    LedgerStore(ex.engine, signer=None).append_event("exchange.opened", {"by": "test"})

    def state():
        db = sqlite3.connect(Path(nsdx_env["NSDX_HOME"]) / "nsdx.db")
        try:
            return [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                    for t in ("ledger_entries", "ledger_checkpoints")]  # fmt: skip
        finally:
            db.close()

    before = state()
    out = run_cli("audit", "rewards", "--year", y, env=nsdx_env)
    assert f"computed from checkpoint size {signed}" in out.stdout
    assert "1 newer ledger entry is not covered by a signed checkpoint yet" in out.stdout
    rep = json.loads(run_cli("audit", "rewards", "--year", y, "--json", env=nsdx_env).stdout)
    assert rep["checkpoint"]["tree_size"] == signed
    run_cli("audit", "flags", env=nsdx_env)
    assert state() == before


def test_report_counts_excluded_trades_not_reasons(nsdx_env, tmp_path):
    """The HTML report showed "related_party 4" for the one related-party trade of the demo
    (it shares controller, shareholder, legal representative and phone with the seller):
    trades are counted, each listed with its reasons."""
    from tests.test_exchange_trade import _demo_year

    y = _demo_year()
    run_cli("exchange", "demo", env=nsdx_env)
    run_cli("audit", "report", "--year", str(y), "--out", str(tmp_path), env=nsdx_env)
    s = json.loads((tmp_path / f"exchange-{y}.json").read_text(encoding="utf-8"))
    assert s["exclusions"]["related_party"] == 1
    (qiming,) = [t for t in s["excluded_trades"] if t["buyer"] == "nansha-qiming-ai"]
    assert len(qiming["reasons"]) == 4
    assert {"related_party:same_legal_representative", "related_party:same_phone"} <= set(
        qiming["reasons"]
    )
    assert all(r.startswith("related_party:") for r in qiming["reasons"])
    assert len(s["excluded_trades"]) == sum(
        1 for t in s["transactions"] if t["excluded_because"] and t["date"].startswith(str(y))
    )
    page = (tmp_path / f"exchange-{y}.html").read_text(encoding="utf-8")
    assert "<td>related_party</td><td>1</td>" in page
    assert "; ".join(qiming["reasons"]) in page


def test_people_read_every_amount_as_yuan_with_separators(nsdx_env, tmp_path):
    """Money is shown one way wherever people read it (¥280,000.00): the rewards table and
    its totals, the exclusion and wash-trade details, the HTML report. A fresh check found
    `audit flags` saying "amounts ¥495000.00" and `audit rewards` totals "¥7580000.00"."""
    import re

    from tests.test_exchange_trade import _demo_year

    y = str(_demo_year())
    run_cli("exchange", "demo", env=nsdx_env)
    ungrouped = re.compile(r"¥\d{4}")  # ¥ then four digits: a figure of ¥1,000 or more unseparated
    rewards = run_cli("audit", "rewards", "--year", y, env=nsdx_env).stdout
    flags = run_cli("audit", "flags", env=nsdx_env).stdout
    run_cli("audit", "report", "--year", y, "--out", str(tmp_path), env=nsdx_env)
    report = (tmp_path / f"exchange-{y}.html").read_text()
    for text in (rewards, flags, report):
        assert not ungrouped.search(text), ungrouped.search(text)
    assert "¥280,000.00" in rewards and "¥280,000.00 refunded (ledger" in rewards
    assert re.search(r"total eligible ¥[\d,]+\.\d\d, reward ¥[\d,]+\.\d\d, after caps", rewards)
    flagged = json.loads(run_cli("audit", "flags", "--json", env=nsdx_env).stdout)["flags"]
    assert any("amounts ¥495,000.00, ¥500,000.00, ¥480,000.00" in f["detail"] for f in flagged)
    assert re.search(r'<div class="kpi"><b>¥\d{1,3}(,\d{3})+\.\d\d</b>volume', report)
    # the machine forms stay as they were: plain figures for programs
    rep = json.loads(run_cli("audit", "rewards", "--year", y, "--json", env=nsdx_env).stdout)
    assert re.fullmatch(r"\d+\.\d\d", rep["totals"]["capped_reward_cny"])


def test_the_demo_products_extras_are_strings_so_a_dump_loads_back_the_same(nsdx_env):
    """CKAN extras are strings: the exchange demo stored ``demo: True`` (a JSON boolean),
    which `ckanapi dump` then `ckanapi load` turned into "true" (found by a round trip)."""
    run_cli("exchange", "demo", env=nsdx_env)
    shown = json.loads(
        run_cli("datasets", "show", "haiyun-port-logistics-index", "--json", env=nsdx_env).stdout
    )
    assert {e["key"]: e["value"] for e in shown["extras"]}["demo"] == "true"
    assert shown["nsdx"]["demo"] == "true"
