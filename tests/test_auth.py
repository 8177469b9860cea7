"""Accounts: users, organisations, roles, hashed tokens with expiry and revocation — the
core (catalogue.auth) and the CLI that calls it, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from catalogue.auth import (
    SYSTEM,
    Accounts,
    InvalidInput,
    NotAuthorized,
    ObjectNotFound,
    hash_token,
)
from catalogue.models import ApiToken, utcnow
from catalogue.registry import Catalogue
from tests.conftest import run_cli


@pytest.fixture
def accounts(database_url) -> Accounts:
    return Accounts(Catalogue(database_url))


def test_users_and_flags(accounts):
    u = accounts.create_user("li-wei", sysadmin=True, fullname="李伟")
    assert u["sysadmin"] and not u["auditor"] and u["fullname"] == "李伟"
    accounts.create_user("auditor-1", auditor=True)
    assert [x["name"] for x in accounts.users()] == ["auditor-1", "li-wei"]
    p = accounts.principal("auditor-1")
    assert p.auditor and not p.sysadmin and not p.roles
    with pytest.raises(InvalidInput) as e:
        accounts.create_user("li-wei")
    assert e.value.errors == {"name": ["User 'li-wei' already exists."]}
    with pytest.raises(InvalidInput):
        accounts.create_user("Bad Name")
    with pytest.raises(ObjectNotFound):
        accounts.user("nobody")


def test_memberships_and_roles(accounts):
    accounts.create_org("bureau", title="交通局")
    accounts.create_org("firm-a")
    for n in ("ed", "boss", "reader"):
        accounts.create_user(n)
    accounts.add_member("bureau", "ed", "editor")
    accounts.add_member("bureau", "boss", "admin")
    accounts.add_member("firm-a", "reader", "member")
    bureau = accounts.org_show("bureau", SYSTEM)
    ed, boss = accounts.principal("ed"), accounts.principal("boss")
    assert ed.can_edit(bureau["id"]) and not ed.can_admin(bureau["id"])
    assert boss.can_admin(bureau["id"])
    reader = accounts.principal("reader")
    assert not reader.insider(bureau["id"])
    # an admin adds members, an editor may not
    accounts.add_member("bureau", "reader", "member", by=boss)
    with pytest.raises(NotAuthorized):
        accounts.add_member("bureau", "reader", "admin", by=ed)
    accounts.add_member("bureau", "reader", "editor")  # changing a role
    assert accounts.principal("reader").roles[bureau["id"]] == "editor"
    assert {m["name"]: m["role"] for m in accounts.user("reader")["organizations"]} == {
        "bureau": "editor",
        "firm-a": "member",
    }
    with pytest.raises(InvalidInput) as e:
        accounts.add_member("bureau", "ed", "owner")
    assert "role" in e.value.errors
    accounts.remove_member("bureau", "reader")
    assert bureau["id"] not in accounts.principal("reader").roles
    with pytest.raises(NotAuthorized):
        accounts.create_org("x-org", creator=ed)


def test_tokens_are_stored_hashed_expire_and_revoke(accounts):
    accounts.create_user("ed")
    secret, info = accounts.create_token("ed", name="laptop")
    assert secret.startswith("nsdx_") and len(secret) > 40
    with accounts.cat.Session() as s:
        row = s.scalar(select(ApiToken))
        assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in (row.token_hash, row.name, row.id)
    assert accounts.authenticate(secret).name == "ed"
    assert accounts.authenticate(None).anonymous
    with pytest.raises(NotAuthorized, match="not valid"):
        accounts.authenticate("nsdx_forged")
    # expiry
    old, _ = accounts.create_token("ed", expires_days=30)
    with accounts.cat.Session.begin() as s:
        s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(old))).expires = (
            utcnow() - timedelta(seconds=1)
        )
    with pytest.raises(NotAuthorized, match="expired"):
        accounts.authenticate(old)
    with pytest.raises(InvalidInput):
        accounts.create_token("ed", expires_days=0)
    # revocation by id or by the token itself
    accounts.revoke_token(info["id"])
    with pytest.raises(NotAuthorized, match="revoked"):
        accounts.authenticate(secret)
    third, _ = accounts.create_token("ed")
    accounts.revoke_token(third)
    statuses = sorted(t["status"] for t in accounts.tokens("ed"))
    assert statuses == ["expired", "revoked", "revoked"]


def test_cli(nsdx_env, database_url):
    env = {**nsdx_env, "NSDX_DATABASE_URL": database_url}
    run_cli("user", "create", "admin", "--sysadmin", env=env)
    out = run_cli("user", "create", "audit", "--auditor", "--json", env=env).stdout
    assert json.loads(out)["auditor"] is True
    run_cli("org", "create", "bureau", "--title", "南沙区交通运输局", env=env)
    run_cli("user", "create", "ed", env=env)
    r = run_cli("org", "add-member", "bureau", "ed", "--role", "editor", env=env)
    assert r.stdout.strip() == "ed is now editor of bureau"
    r = run_cli("token", "create", "--user", "ed", "--expires", "30", env=env)
    token = r.stdout.strip()
    assert r.stdout == token + "\n" and token.startswith("nsdx_")  # only the token
    users = json.loads(run_cli("user", "list", "--json", env=env).stdout)
    assert [u["name"] for u in users] == ["admin", "audit", "ed"]
    orgs = json.loads(run_cli("org", "list", "--json", env=env).stdout)
    assert orgs[0]["name"] == "bureau" and orgs[0]["title"] == "南沙区交通运输局"
    members = json.loads(run_cli("org", "members", "bureau", "--json", env=env).stdout)
    assert members == [{"name": "ed", "capacity": "editor", "id": members[0]["id"]}]
    tokens = json.loads(run_cli("token", "list", "--json", env=env).stdout)
    assert [t["status"] for t in tokens] == ["active"] and token not in json.dumps(tokens)
    run_cli("token", "revoke", tokens[0]["id"], env=env)
    accounts = Accounts(Catalogue(database_url))
    with pytest.raises(NotAuthorized, match="revoked"):
        accounts.authenticate(token)
    # errors are the catalogue's messages, exit 1
    r = run_cli("org", "add-member", "bureau", "ghost", "--role", "member", env=env, check=False)
    assert r.returncode == 1
    assert "user 'ghost' not found" in r.stderr and "nsdx user create" in r.stderr
    r = run_cli("user", "create", "ed", env=env, check=False)
    assert r.returncode == 1 and "already exists" in r.stderr


@pytest.mark.parametrize("name", ["iceberg", "_staging"])
def test_an_organisation_cannot_take_a_folder_the_store_keeps(accounts, name):
    with pytest.raises(InvalidInput) as e:
        accounts.create_org(name)
    assert e.value.errors == {"name": ["This name is kept by the object store; choose another."]}
    accounts.create_org("iceberg-lab")  # a name merely beginning so is fine
