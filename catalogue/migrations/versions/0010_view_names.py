"""the database refuses two datasets on one query view

A dataset's query view is its name with ``-`` turned into ``_``
(:func:`catalogue.registry.view_stem`); two datasets whose names differ only there would
share one DuckDB view. The code checks new names, but two creations at the same moment can
both pass the check: a unique index on the view stem makes the database decide, and the
second is refused (``catalogue.registry.VIEW_NAME_INDEX``; a 409 like the check's).

A database from before names were checked may already hold such pairs (the query API
serves neither of them: ``ViewAmbiguous``). The index leaves those names out, so this
migration never fails on them; the code's check still refuses a third name on their view.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEX = "ux_datasets_view_name"
STEM = "replace(name, '-', '_')"


def upgrade() -> None:
    bind = op.get_bind()
    shared = bind.execute(
        sa.text(
            f"SELECT name FROM datasets WHERE {STEM} IN "
            f"(SELECT {STEM} FROM datasets GROUP BY {STEM} HAVING count(*) > 1) ORDER BY name"
        )
    ).scalars()
    # names are [a-z0-9_-] (catalogue.auth.NAME_RE): safe as quoted literals; checked anyway
    legacy = [n for n in shared if all(c.isalnum() or c in "-_" for c in n)]
    where = f" WHERE name NOT IN ({', '.join(repr(n) for n in legacy)})" if legacy else ""
    op.execute(f"CREATE UNIQUE INDEX {INDEX} ON datasets ({STEM}){where}")


def downgrade() -> None:
    op.execute(f"DROP INDEX {INDEX}")
