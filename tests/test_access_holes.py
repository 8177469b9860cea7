"""Regression tests for holes found by the attack run (issue 11): view hijack across
organisations (7), resource id shadowing (8), job leaks (10), expired/revoked tokens on
every route and the database file's mode (12). Each reproduces the attack through the real
app on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import os
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError

from catalogue import editing
from catalogue.db import HEAD
from catalogue.errors import CatalogueError
from catalogue.jobs import job_dict
from catalogue.models import ApiToken, Dataset, Job, utcnow
from tests import test_ckan_api
from tests.test_ckan_api import BUS, Deployment

deployment = test_ckan_api.deployment  # the fixture: a sysadmin and organisation "bureau"

VICTIM = {**BUS, "name": "nansha-ride-hailing-orders", "title": "网约车订单"}


def _two_orgs(d: Deployment) -> tuple[str, str]:
    """bureau's admin (the victim) and the admin of another organisation (the attacker)."""
    d.ok("organization_create", {"name": "rival"})
    return d.user("victim", org="bureau", role="admin"), d.user(
        "mallory", org="rival", role="admin"
    )


# -- 7: view hijack ---------------------------------------------------------------------------
def test_names_mapping_to_one_view_are_refused_across_organisations(deployment):
    d = deployment
    victim, mallory = _two_orgs(d)
    d.ok("package_create", VICTIM, token=victim)
    for name, domain in (
        ("nansha_ride_hailing_orders", "transport"),  # the attack: same view, other org
        ("nansha_ride-hailing_orders", "transport"),
        ("nansha_ride_hailing_orders", "urban-management"),  # other domain too
    ):
        attack = {
            "name": name,
            "owner_org": "rival",
            "extras": [{"key": "domain", "value": domain}],
        }
        status, body = d.call("package_create", attack, token=mallory)
        assert status == 409, body
        assert body["error"]["__type"] == "Validation Error"
        (msg,) = body["error"]["name"]
        assert "'nansha-ride-hailing-orders'" in msg and "same query view" in msg
    # renaming into the view is refused as well
    d.ok("package_create", {"name": "harmless", "owner_org": "rival"}, token=mallory)
    status, body = d.call(
        "package_patch", {"id": "harmless", "name": "nansha_ride_hailing_orders"}, token=mallory
    )
    assert status == 409 and "same query view" in body["error"]["name"][0]
    # '__' separates a dataset from its tables' views
    status, body = d.call(
        "package_create", {"name": "harmless__x", "owner_org": "rival"}, token=mallory
    )
    assert status == 409 and "'__'" in body["error"]["name"][0]
    # and so does '--': 'bus--v1' would be the view of version 1 of 'bus'
    status, body = d.call(
        "package_create", {"name": "harmless--v1", "owner_org": "rival"}, token=mallory
    )
    assert status == 409 and "'--'" in body["error"]["name"][0]
    assert d.ok("package_show", {"id": "nansha-ride-hailing-orders"})["title"] == "网约车订单"


def test_declared_dataset_cannot_take_an_existing_view(deployment, tmp_path):
    """The other order: an attacker registered the underscore name first; publishing the
    declared dataset (datasets.yaml, `nsdx ingest`) is refused before any file is written."""
    d = deployment
    _, mallory = _two_orgs(d)
    d.ok("package_create", {"name": "bus_gps", "owner_org": "rival"}, token=mallory)
    (tmp_path / "bus.csv").write_text("ts,speed\n2026-03-02 08:00:00,3\n", encoding="utf-8")
    (tmp_path / "datasets.yaml").write_text(
        "datasets:\n  - {id: bus-gps, title: 公交, domain: transport, organization: bureau,\n"
        "     licence: CC-BY-4.0, access: open, source: {path: bus.csv, format: csv}}\n",
        encoding="utf-8",
    )
    with pytest.raises(CatalogueError) as e:
        d.nx.ingest(["bus-gps"])
    assert type(e.value).__name__ == "ViewNameTaken" and e.value.status == 409
    assert "'bus_gps'" in e.value.message
    objects = Path(d.nx.settings.storage_url.removeprefix("file://"))
    assert not objects.exists() or not any(p.is_file() for p in objects.rglob("*"))
    views = [(t.view_schema, t.view_name) for t in d.nx.catalogue.published_tables()]
    assert views == []


def _migrate(engine, target: str) -> None:
    """Move the schema to Alembic revision ``target`` (up or down)."""
    from alembic import command
    from alembic.config import Config

    from catalogue.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        (command.upgrade if target > current else command.downgrade)(cfg, target)


def test_a_view_two_old_datasets_share_is_served_to_nobody(deployment, tmp_path):
    """A database from before names were checked may hold two datasets on one view: the
    query API serves neither (409 naming both), never the later in the earlier's place;
    migration 0010 (the database's unique index on the view) still applies to it."""
    d = deployment
    (tmp_path / "a.csv").write_text("who\nvictim\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text("who\nattacker\n", encoding="utf-8")
    (tmp_path / "datasets.yaml").write_text(
        "datasets:\n"
        "  - {id: bus-gps, title: a, domain: transport, organization: bureau,\n"
        "     licence: CC-BY-4.0, access: open, source: {path: a.csv, format: csv}}\n"
        "  - {id: bus-gps-b, title: b, domain: transport, organization: rival,\n"
        "     licence: CC-BY-4.0, access: open, source: {path: b.csv, format: csv}}\n",
        encoding="utf-8",
    )
    assert {r.status for r in d.nx.ingest(all_=True)} == {"published"}
    engine = d.nx.catalogue.engine
    _migrate(engine, "0009")  # what an old database may hold: no index, two on one view
    with d.nx.catalogue.Session.begin() as s:
        s.execute(update(Dataset).where(Dataset.name == "bus-gps-b").values(name="bus_gps"))
    _migrate(engine, HEAD)  # the index leaves the old pair out instead of failing
    r = d.client.post("/api/query", json={"sql": "SELECT who FROM transport.bus_gps"})
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["error"] == "ViewAmbiguous" and err["datasets"] == ["bus-gps", "bus_gps"]
    assert "attacker" not in r.text and "victim" not in r.text
    # every other name is under the index: a pair made behind the check's back is refused
    d.ok("package_create", {"name": "other-x", "owner_org": "bureau"})
    with pytest.raises(IntegrityError), d.nx.catalogue.Session.begin() as s:
        s.add(Dataset(name="other_x", domain="transport", extras={}))


def test_two_names_on_one_view_created_at_once_one_wins(deployment, monkeypatch):
    """Two organisations create datasets on one query view at the same moment. A barrier
    holds both requests after the name check, so both pass it before either commits: the
    database's unique index on the view (migration 0010) lets exactly one in, and the other
    gets the check's own answer (409, CKAN 'Validation Error', naming the winner)."""
    d = deployment
    victim, mallory = _two_orgs(d)
    real = editing.view_name_owner
    barrier = threading.Barrier(2, timeout=120)  # generous: a loaded machine
    checks = itertools.count()

    def check_then_wait(*args, **kw):
        owner = real(*args, **kw)
        if next(checks) < 2:  # the two creations' checks, not the refusal's lookup
            barrier.wait()
        return owner

    monkeypatch.setattr(editing, "view_name_owner", check_then_wait)
    attempts = {
        "nansha-ride-hailing-orders": ({**VICTIM}, victim),
        "nansha_ride_hailing_orders": (
            {"name": "nansha_ride_hailing_orders", "owner_org": "rival"},
            mallory,
        ),
    }
    answers: dict[str, tuple[int, dict]] = {}

    def create(name: str) -> None:
        data, token = attempts[name]
        answers[name] = d.call("package_create", data, token=token)

    threads = [threading.Thread(target=create, args=(n,)) for n in attempts]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    assert sorted(status for status, _ in answers.values()) == [200, 409], answers
    (winner,) = [n for n, (status, _) in answers.items() if status == 200]
    (loser,) = [n for n in answers if n != winner]
    body = answers[loser][1]
    assert body["success"] is False and body["error"]["__type"] == "Validation Error"
    (msg,) = body["error"]["name"]
    assert f"{winner!r}" in msg and "same query view" in msg
    assert d.ok("package_show", {"id": winner})["name"] == winner
    status, _ = d.call("package_show", {"id": loser})
    assert status == 404


# -- 8: resource id shadowing ------------------------------------------------------------------
def test_client_resource_ids_cannot_shadow_existing_ones(deployment):
    d = deployment
    victim, mallory = _two_orgs(d)
    pkg = d.ok("package_create", VICTIM, token=victim)
    rid = pkg["resources"][0]["id"]
    d.ok("package_create", {"name": "decoy", "owner_org": "rival"}, token=mallory)
    evil = {"package_id": "decoy", "id": rid, "url": "https://evil.example/x.csv"}
    status, body = d.call("resource_create", evil, token=mallory)
    assert status == 409, body
    assert body["error"]["id"] == [f"resource id {rid!r} already exists"]
    # through package_update's resource list too
    status, body = d.call(
        "package_patch", {"id": "decoy", "resources": [{"id": rid, "url": "https://evil.example"}]},
        token=mallory,
    )  # fmt: skip
    assert status == 409 and "already exists" in body["error"]["resources"][0]
    r = d.ok("resource_show", {"id": rid})
    assert r["url"] == "https://example.org/bus.csv" and r["package_id"] == pkg["id"]
    # nor a dataset's id (one namespace of ids; a fresh check found a resource taking the
    # id of another organisation's dataset, and a dataset the id of its resource)
    status, body = d.call("resource_create", {**evil, "id": pkg["id"]}, token=mallory)
    assert status == 409 and body["error"]["id"] == [f"id {pkg['id']!r} is a dataset's id"]
    # a dataset's id is given by the portal: another user's is ignored, as CKAN does, and
    # a sysadmin's (loading another catalogue) may not be a resource's
    other = d.ok("package_create", {"name": "decoy-two", "owner_org": "rival", "id": rid},
                 token=mallory)  # fmt: skip
    assert other["id"] != rid
    status, body = d.call("package_create", {"name": "decoy-three", "owner_org": "rival",
                                             "id": rid})  # fmt: skip
    assert status == 409 and body["error"]["id"] == ["That id is a resource's id"], body
    # an id nobody has is kept
    mine = d.ok("resource_create", {**evil, "id": "my-own-id"}, token=mallory)
    assert mine["id"] == "my-own-id"


# -- 10: jobs ---------------------------------------------------------------------------------
def test_job_show_follows_the_access_rule_and_hides_storage(deployment):
    d = deployment
    editor = d.user("ed", org="bureau", role="editor")
    member = d.user("mem", org="bureau", role="member")
    outsider = d.user("out")
    d.ok("package_create", {**BUS, "private": True, "resources": []}, token=editor)
    r = d.client.post(
        "/api/3/action/resource_create",
        data={"package_id": "nansha-bus-gps", "format": "CSV"},
        files={"upload": ("bus.csv", b"ts,speed\n2026-03-02 08:00:00,3\n", "text/csv")},
        headers={"Authorization": editor},
    )
    assert r.status_code == 200, r.text
    job_id = r.json()["result"]["nsdx_job"]["id"]
    for who in (editor, member, "admin"):
        job = d.ok("nsdx_job_show", {"id": job_id}, token=who)
        assert job["payload"]["dataset"] == "nansha-bus-gps"
    for who in (None, outsider):
        status, body = d.call("nsdx_job_show", {"id": job_id}, token=who)
        assert status == 404 and body["error"]["__type"] == "Not Found Error", body
        assert "nansha-bus-gps" not in str(body)


def test_job_dict_has_no_storage_prefix_or_server_path(tmp_path):
    folder = tmp_path / "uploads" / "abc123"
    j = Job(
        id="j1", kind="ingest_upload", status="failed", created=utcnow(),
        payload={"dataset": "d", "path": str(folder / "bus.csv"), "filename": "bus.csv"},
        result={"prefix": "bureau/d/v3", "rows": 5, "quarantine": [str(tmp_path / "q" / "x.csv")]},
        error=f"cannot read {folder / 'bus.csv'}: bad bytes",
    )  # fmt: skip
    d = job_dict(j)
    text = repr(d)
    assert str(tmp_path) not in text and "bureau/d/v3" not in text
    assert d["error"] == "cannot read bus.csv: bad bytes"
    assert d["result"] == {"rows": 5, "quarantine": ["x.csv"]}


# -- 12: tokens and the database file ------------------------------------------------------------
ROUTES = [
    ("GET", "/api/3/action/package_show?id=nansha-bus-gps"),
    ("GET", "/dataset/nansha-bus-gps.jsonld"),
    ("GET", "/dataset/nansha-bus-gps/croissant.json"),
    ("GET", "/catalog.jsonld"),  # (the portal's pages sign in with a session, not tokens)
    ("GET", "/api/query?sql=SELECT%201"),
    ("GET", "/api/exchange/offers"),
    ("GET", "/api/downloads"),
    ("GET", "/dataset/nansha-bus-gps/v1/nansha-bus-gps.parquet"),
]


def test_expired_and_revoked_tokens_get_403_everywhere(deployment):
    d = deployment
    d.ok("package_create", BUS)
    expired = d.user("old")
    revoked = d.user("gone")
    with d.nx.catalogue.Session.begin() as s:
        for t in s.query(ApiToken).all():
            if t.user_id == d.accounts.principal("old").user_id:
                t.expires = utcnow()
    d.accounts.revoke_token(revoked)
    for token in (expired, revoked, "nsdx_not-a-token"):
        for method, path in ROUTES:
            r = d.client.request(method, path, headers={"Authorization": token})
            assert r.status_code == 403, (path, r.status_code, r.text[:300])


def test_sqlite_database_file_is_private(tmp_path):
    from catalogue.registry import Catalogue

    Catalogue(f"sqlite:///{tmp_path / 'db' / 'nsdx.db'}")
    mode = stat.S_IMODE(os.stat(tmp_path / "db" / "nsdx.db").st_mode)
    assert mode == 0o600, oct(mode)
    for extra in ("nsdx.db-wal", "nsdx.db-shm"):
        p = tmp_path / "db" / extra
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, extra
