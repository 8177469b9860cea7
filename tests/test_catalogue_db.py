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
