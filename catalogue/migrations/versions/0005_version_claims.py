"""version claims: a publish takes its version number in the database before writing.

``version_claims`` — one row per (dataset name, version number) an ingest has taken. The
primary key makes taking a number atomic on SQLite and PostgreSQL alike: two concurrent
publishers of one dataset can never both write ``<org>/<dataset>/v<N>/``. A claim is
released when its run fails before writing anything to storage, deleted when the version
is registered, and otherwise kept (the number is never reused; a committed but unregistered
version is adopted from its claim by the next run).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "version_claims",
        sa.Column("dataset", sa.String(length=200), nullable=False),
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("claimed", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("dataset", "number"),
    )


def downgrade() -> None:
    op.drop_table("version_claims")
