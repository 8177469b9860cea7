"""Shared fixtures: an isolated nsdx deployment per test, the real CLI, real databases."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "data" / "real"  # real public records, see data/real/SOURCES.md
VECTORS = ROOT / "tests" / "vectors"  # third-party test vectors, each with its SOURCE.md
NSDX = str(Path(sys.executable).parent / "nsdx")
PG_ADMIN_URL = os.environ.get("NSDX_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

# Validation workers stop with the command that started them; tests of lingering workers
# (tests/test_validation_linger.py) turn it on for themselves.
os.environ["NSDX_VALIDATION_LINGER"] = "0"

_plugins = ["tests.fixtures.seaweed", "tests.fixtures.browser"]
pytest_plugins = [p for p in _plugins if (ROOT / (p.replace(".", "/") + ".py")).exists()]


@pytest.fixture
def nsdx_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for one isolated deployment on the embedded default."""
    env = {
        "NSDX_HOME": str(tmp_path / "home"),
        "NSDX_DATASETS": str(tmp_path / "datasets.yaml"),
        "NSDX_PII_KEY": "test-pii-key",
    }
    for k in ("NSDX_DATABASE_URL", "NSDX_STORAGE_URL"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, check=True):
    """Run the installed `nsdx` console script; returns CompletedProcess with text output."""
    full_env = {**os.environ, **(env or {}), "COLUMNS": "200"}
    proc = subprocess.run(
        [NSDX, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"nsdx {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="session")
def pg_available() -> bool:
    ok = _pg_available()
    if not ok and os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}; under CI this is a failure")
    return ok


def create_pg_database() -> str:
    import psycopg

    name = f"nsdx_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return name


def pg_url(name: str) -> str:
    """The SQLAlchemy URL of database ``name`` on the server of NSDX_TEST_PG."""
    from sqlalchemy.engine import make_url

    return (
        make_url(PG_ADMIN_URL)
        .set(drivername="postgresql+psycopg", database=name)
        .render_as_string(hide_password=False)
    )


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database's URL, dropped (connections closed) afterwards."""
    name = create_pg_database()
    try:
        yield pg_url(name)
    finally:
        from catalogue.db import dispose_all

        dispose_all()
        drop_pg_database(name)


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(pg_available: bool):
    """A fresh PostgreSQL database for tests of PostgreSQL-only behaviour."""
    if not pg_available:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    with pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path: Path, pg_available: bool):
    """One test body, two real databases."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nsdx.db'}"
        return
    if not pg_available:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    with pg_database() as url:
        yield url
