"""witnessed checkpoints: the cosignatures the exchange got for its checkpoints, which
checkpoints reached the quorum, and each witness's last answer.

* ``ledger_cosignatures``: one C2SP ``cosignature/v1`` line per (checkpoint size, witness),
  as the witness sent it (verified against its configured key before it is stored).
* ``ledger_witnessed``: the checkpoints that a quorum of distinct witnesses cosigned.
* ``ledger_witness_status``: per witness, the size it last cosigned, its consecutive
  failures, the last error and when it is asked next (the back-off).

Nothing hashed changes: the leaves and the log-signed checkpoints stay as they were.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_cosignatures",
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("witness", sa.String(255), nullable=False),
        sa.Column("key_id", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", "witness"),
    )
    op.create_table(
        "ledger_witnessed",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("quorum", sa.Integer(), nullable=False),
        sa.Column("cosigners", sa.Integer(), nullable=False),
        sa.Column("witnessed", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size"),
    )
    op.create_table(
        "ledger_witness_status",
        sa.Column("witness", sa.String(255), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_attempt", sa.DateTime(), nullable=True),
        sa.Column("last_ok", sa.DateTime(), nullable=True),
        sa.Column("next_attempt", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("witness"),
    )


def downgrade() -> None:
    op.drop_table("ledger_witness_status")
    op.drop_table("ledger_witnessed")
    op.drop_table("ledger_cosignatures")
