"""indexes for the officials' transaction pages at 100,000+ ledger entries.

* ``ledger_entries.created`` — the period filter (``since``/``until``).
* one expression index per party key of a leaf (``buyer``, ``seller``, ``org``, ``actor``)
  and for ``dataset``: the leaf's top-level JSON value (SQLite ``json_extract``, PostgreSQL
  ``payload::jsonb ->> key``). ``exchange.ledger.browse`` filters with the very same
  expressions, so the enterprise and dataset filters are index lookups instead of a
  substring scan of every leaf.

Indexes are metadata outside the leaves: nothing hashed changes.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KEYS = ("buyer", "seller", "org", "actor", "dataset")


def _expr(dialect: str, key: str) -> str:
    if dialect == "postgresql":
        return f"((payload::jsonb) ->> '{key}')"
    return f"json_extract(payload, '$.{key}')"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_index("ix_ledger_entries_created", "ledger_entries", ["created"])
    for key in KEYS:
        op.execute(
            f"CREATE INDEX ix_ledger_entries_{key} ON ledger_entries ({_expr(dialect, key)})"
        )


def downgrade() -> None:
    for key in KEYS:
        op.execute(f"DROP INDEX ix_ledger_entries_{key}")
    op.drop_index("ix_ledger_entries_created", "ledger_entries")
