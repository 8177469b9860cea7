"""Commands that read never create: run from the wrong folder, a read-only command says where
it looked and what to set, exits 1 and leaves the folder as it was (no .nsdx, no database,
no ledger key, no personal-data key). `nsdx audit entry 56` used to create a whole new
deployment there and answer "no ledger entry at index 56"."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import NSDX

READ_ONLY = [
    ("datasets", "list"),
    ("datasets", "list", "--json"),
    ("datasets", "show", "nansha-bus-gps"),
    ("query", "SELECT 1"),
    ("query", "SELECT 1", "--format", "json"),
    ("audit", "entry", "56"),
    ("audit", "verify"),
    ("audit", "verify", "--json"),
    ("audit", "proof", "--index", "0"),
    ("audit", "pubkey"),
    ("audit", "checkpoints"),
    ("audit", "flags"),
    ("audit", "checkpoint"),  # signs the head: of an existing ledger only
    ("audit", "rewards", "--year", "2025"),
    ("exchange", "offers"),
    ("exchange", "orders", "--json"),
    ("exchange", "show", "o-1"),
    ("exchange", "enterprise", "list"),
    ("user", "list"),
    ("org", "list"),
    ("token", "list"),
]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any NSDX_* setting (a newcomer's shell), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSDX_")}
    return {**env, "NSDX_VALIDATION_LINGER": "0", "COLUMNS": "200", **extra}


def nsdx(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NSDX, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_read_only_command_in_an_empty_folder_creates_nothing(tmp_path, args):
    r = nsdx(*args, cwd=tmp_path, env=clean_env())
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert tree(tmp_path) == []  # no .nsdx, no database, no keys
    assert r.stdout == ""
    where = str(tmp_path / ".nsdx" / "nsdx.db")
    if "--json" in args:
        err = json.loads(r.stderr)["error"]
        assert err["error"] == "StateNotFound"
        text = err["message"] + " " + err["hint"]
    else:
        text = r.stderr
    assert f"{where} does not exist" in text
    assert "NSDX_HOME" in text


def test_a_named_state_folder_that_is_missing_is_named(tmp_path):
    home = tmp_path / "elsewhere" / "state"
    r = nsdx("audit", "entry", "56", cwd=tmp_path, env=clean_env(NSDX_HOME=str(home)))
    assert r.returncode == 1
    assert f"{home / 'nsdx.db'} does not exist" in r.stderr
    assert tree(tmp_path) == []


def test_writing_commands_still_create_the_deployment(tmp_path):
    """The other side: the first writing command creates the state it needs."""
    r = nsdx("org", "create", "bus-co", cwd=tmp_path, env=clean_env())
    assert r.returncode == 0, r.stderr
    assert (tmp_path / ".nsdx" / "nsdx.db").is_file()
    r = nsdx("org", "list", "--json", cwd=tmp_path, env=clean_env())
    assert r.returncode == 0, r.stderr
    assert [o["name"] for o in json.loads(r.stdout)] == ["bus-co"]


def test_reading_an_existing_deployment_generates_no_key(tmp_path):
    """A deployment whose keys are given in the environment (no key files): reading it
    without them must not write new keys beside it."""
    keys = {"NSDX_PII_KEY": "secret-pii", "NSDX_LEDGER_KEY": ""}
    assert nsdx("org", "create", "bus-co", cwd=tmp_path, env=clean_env(**keys)).returncode == 0
    before = tree(tmp_path)
    assert "pii.key" not in " ".join(before) and "ledger.key" not in " ".join(before)
    for args in (
        ("exchange", "offers", "--json"),
        ("exchange", "enterprise", "list", "--json"),
        ("audit", "checkpoints", "--json"),
        ("datasets", "list", "--json"),
    ):
        r = nsdx(*args, cwd=tmp_path, env=clean_env())
        assert r.returncode == 0, (args, r.stderr)
        json.loads(r.stdout)
        assert not (tmp_path / ".nsdx" / "pii.key").exists(), args
        assert not (tmp_path / ".nsdx" / "ledger.key").exists(), args
    for args in (("audit", "pubkey"), ("audit", "verify")):  # they need the key itself
        r = nsdx(*args, cwd=tmp_path, env=clean_env())
        assert r.returncode == 1, args
        assert f"{tmp_path / '.nsdx' / 'ledger.key'} does not exist" in r.stderr
        assert "NSDX_LEDGER_KEY" in r.stderr
        assert not (tmp_path / ".nsdx" / "ledger.key").exists()
