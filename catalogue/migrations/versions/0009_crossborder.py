"""cross-border rules: enterprise regions, dataset classification, individuals counted.

* ``exchange_enterprises.region`` (mainland | hong-kong | macao | abroad; existing
  profiles: mainland, since each holds a mainland credit code), ``.division`` (GB/T 2260;
  existing profiles: NULL, read from the credit code) and ``.ciio``;
* ``datasets.grade`` (GB/T 43697-2024: general | important | core; existing: general,
  until the next ``nsdx ingest`` writes the declared grade), ``.has_pi``, ``.sensitive_pi``,
  ``.data_category``;
* ``versions.individuals``: distinct individuals counted at ingest (NULL for versions
  published before: not counted);
* ``exchange_crossborder``: the decision of each cross-border order.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    f = sa.false()
    op.add_column(
        "exchange_enterprises",
        sa.Column("region", sa.String(20), nullable=False, server_default="mainland"),
    )
    op.add_column("exchange_enterprises", sa.Column("division", sa.String(6), nullable=True))
    op.add_column(
        "exchange_enterprises", sa.Column("ciio", sa.Boolean(), nullable=False, server_default=f)
    )
    op.add_column(
        "datasets", sa.Column("grade", sa.String(20), nullable=False, server_default="general")
    )
    op.add_column("datasets", sa.Column("has_pi", sa.Boolean(), nullable=False, server_default=f))
    op.add_column(
        "datasets", sa.Column("sensitive_pi", sa.Boolean(), nullable=False, server_default=f)
    )
    op.add_column("datasets", sa.Column("data_category", sa.String(100), nullable=True))
    op.add_column("versions", sa.Column("individuals", sa.BigInteger(), nullable=True))
    op.create_table(
        "exchange_crossborder",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "order_id", sa.String(36), sa.ForeignKey("exchange_orders.id"), nullable=False,
            unique=True,
        ),
        sa.Column(
            "seller_id", sa.String(36), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("dataset_id", sa.String(36), sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("decided_on", sa.Date(), nullable=False),
        sa.Column("route", sa.String(30), nullable=False),
        sa.Column("rule", sa.String(60), nullable=False),
        sa.Column("individuals", sa.BigInteger(), nullable=False),
        sa.Column("sensitive", sa.BigInteger(), nullable=False),
        sa.Column("policy_sha256", sa.String(64), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("filing_due", sa.Date(), nullable=True),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
    )  # fmt: skip
    op.create_index("ix_exchange_crossborder_seller_id", "exchange_crossborder", ["seller_id"])
    op.create_index("ix_exchange_crossborder_year", "exchange_crossborder", ["year"])


def downgrade() -> None:
    op.drop_index("ix_exchange_crossborder_year", "exchange_crossborder")
    op.drop_index("ix_exchange_crossborder_seller_id", "exchange_crossborder")
    op.drop_table("exchange_crossborder")
    op.execute("ALTER TABLE versions DROP COLUMN individuals")
    for c in ("data_category", "sensitive_pi", "has_pi", "grade"):
        op.execute(f"ALTER TABLE datasets DROP COLUMN {c}")
    for c in ("ciio", "division", "region"):
        op.execute(f"ALTER TABLE exchange_enterprises DROP COLUMN {c}")
