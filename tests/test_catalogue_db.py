"""catalogue.db: migrations on open, and the quick path for a database already at HEAD."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent


def test_head_is_the_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from catalogue.db import HEAD, MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_heads() == [HEAD]


def test_open_migrates_a_new_database_and_reopens_without_alembic(database_url):
    """A new database is migrated to HEAD; a later process opens it without importing Alembic
    (seconds of every command) and sees the same schema."""
    from catalogue.db import HEAD, dispose_all, make_engine

    engine = make_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
    dispose_all()
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from catalogue.registry import Catalogue\n"
        "cat = Catalogue(sys.argv[2])\n"
        "print(len(cat.packages()), 'alembic' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), database_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0", "False"]


def test_float_list_prices_become_fen_and_versions_survive(database_url):
    """Migration 0007: ``datasets.price_cny`` (a float: 2800.0 shown as ¥2800.0) becomes
    ``price_fen``; the dataset's versions (ON DELETE CASCADE) are untouched — no table is
    recreated."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from catalogue.db import MIGRATIONS, dispose_all

    engine = create_engine(database_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
        conn.execute(text(
            "INSERT INTO datasets (id, name, title, domain, access, license_id, private, state,"
            " price_cny, extras, metadata_created, metadata_modified) VALUES ('d1', 'ride', 't',"
            " 'transport', 'restricted', 'x', false, 'active', 280000.0, '{}', '2026-01-01',"
            " '2026-01-01'), ('d2', 'cheap', 't', 'transport', 'restricted', 'x', false,"
            " 'active', 99.5, '{}', '2026-01-01', '2026-01-01'), ('d3', 'open', 't',"
            " 'transport', 'open', 'x', false, 'active', NULL, '{}', '2026-01-01',"
            " '2026-01-01')"))  # fmt: skip
        conn.execute(text(
            "INSERT INTO versions (id, dataset_id, number, prefix, storage_url, fingerprint,"
            " manifest, validation, row_count, bytes, created) VALUES ('v1', 'd1', 1, 'p',"
            " 'file://', 'f', '{}', '{}', 0, 0, '2026-01-01')"))  # fmt: skip
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0007")
        rows = dict(conn.execute(text("SELECT name, price_fen FROM datasets")).all())
        assert rows == {"ride": 28_000_000, "cheap": 9_950, "open": None}
        assert conn.execute(text("SELECT count(*) FROM versions")).scalar() == 1
        cols = {c["name"] for c in __import__("sqlalchemy").inspect(conn).get_columns("datasets")}
        assert "price_cny" not in cols
    engine.dispose()
    dispose_all()
