"""exchange: enterprise profiles, offers, orders, payments, grants, deliveries, refunds,
and the append-only ledger (entries, signed checkpoints, head).

On PostgreSQL, triggers make ``ledger_entries`` and ``ledger_checkpoints`` append-only:
UPDATE, DELETE and TRUNCATE raise an exception whoever runs them (only a superuser who
drops the trigger can get round it, and `nsdx audit verify` catches that). The
application role should additionally lack UPDATE/DELETE/TRUNCATE on them (docs/exchange.md).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LEDGER_TABLES = ("ledger_entries", "ledger_checkpoints")

APPEND_ONLY_FN = """
CREATE OR REPLACE FUNCTION nsdx_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'nsdx ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "exchange_enterprises",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "organization_id", sa.String(36), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("credit_code", sa.String(18), nullable=False),
        sa.Column("legal_name", sa.String(300), nullable=False),
        sa.Column("corporate_group", sa.String(300), nullable=True),
        sa.Column("legal_representative", sa.String(100), nullable=True),
        sa.Column("shareholders", sa.JSON(), nullable=False),
        sa.Column("controllers", sa.JSON(), nullable=False),
        sa.Column("registered_address", sa.String(500), nullable=True),
        sa.Column("phone", sa.String(50), nullable=True),
        sa.Column("bank_account", sa.String(64), nullable=True),
        sa.Column("in_nansha", sa.Boolean(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "ix_exchange_enterprises_organization_id",
        "exchange_enterprises",
        ["organization_id"],
        unique=True,
    )
    op.create_index(
        "ix_exchange_enterprises_credit_code", "exchange_enterprises", ["credit_code"], unique=True
    )
    op.create_index(
        "ix_exchange_enterprises_corporate_group", "exchange_enterprises", ["corporate_group"]
    )

    op.create_table(
        "exchange_offers",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("dataset_id", sa.String(36), sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("seller_id", sa.String(36), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("licence_terms", sa.Text(), nullable=False),
        sa.Column("term_start", sa.Date(), nullable=False),
        sa.Column("term_end", sa.Date(), nullable=False),
        sa.Column("delivery_mode", sa.String(30), nullable=False),
        sa.Column("cross_border", sa.Boolean(), nullable=False),
        sa.Column("access_days", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_exchange_offers_dataset_id", "exchange_offers", ["dataset_id"])
    op.create_index("ix_exchange_offers_seller_id", "exchange_offers", ["seller_id"])

    op.create_table(
        "exchange_orders",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("offer_id", sa.String(36), sa.ForeignKey("exchange_offers.id"), nullable=False),
        sa.Column("dataset_id", sa.String(36), sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("seller_id", sa.String(36), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("buyer_id", sa.String(36), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("contract_no", sa.String(100), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("other_support", sa.Boolean(), nullable=False),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    for col in ("offer_id", "dataset_id", "seller_id", "buyer_id", "status"):
        op.create_index(f"ix_exchange_orders_{col}", "exchange_orders", [col])

    op.create_table(
        "exchange_payments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("order_id", sa.String(36), sa.ForeignKey("exchange_orders.id"), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("paid_on", sa.Date(), nullable=False),
        sa.Column("confirmed_by", sa.String(200), nullable=False),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_exchange_payments_order_id", "exchange_payments", ["order_id"])

    op.create_table(
        "exchange_grants",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("order_id", sa.String(36), sa.ForeignKey("exchange_orders.id"), nullable=False),
        sa.Column("dataset_id", sa.String(36), sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("buyer_id", sa.String(36), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("starts", sa.DateTime(), nullable=False),
        sa.Column("expires", sa.DateTime(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    for col in ("order_id", "dataset_id", "buyer_id", "expires"):
        op.create_index(f"ix_exchange_grants_{col}", "exchange_grants", [col])

    op.create_table(
        "exchange_deliveries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("grant_id", sa.String(36), sa.ForeignKey("exchange_grants.id"), nullable=False),
        sa.Column("order_id", sa.String(36), sa.ForeignKey("exchange_orders.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("keys", sa.JSON(), nullable=False),
        sa.Column("url_expires", sa.DateTime(), nullable=False),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_exchange_deliveries_grant_id", "exchange_deliveries", ["grant_id"])
    op.create_index("ix_exchange_deliveries_order_id", "exchange_deliveries", ["order_id"])

    op.create_table(
        "exchange_refunds",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("order_id", sa.String(36), sa.ForeignKey("exchange_orders.id"), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("refunded_on", sa.Date(), nullable=False),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_exchange_refunds_order_id", "exchange_refunds", ["order_id"])

    op.create_table(
        "ledger_entries",
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_ledger_entries_kind", "ledger_entries", ["kind"])
    op.create_table(
        "ledger_checkpoints",
        sa.Column("tree_size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
    )
    op.execute(
        sa.text("INSERT INTO ledger_head (id, size, frontier) VALUES (1, 0, :f)").bindparams(f=b"")
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND_ONLY_FN)
        for t in LEDGER_TABLES:
            op.execute(
                f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
                "FOR EACH ROW EXECUTE FUNCTION nsdx_ledger_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                "FOR EACH STATEMENT EXECUTE FUNCTION nsdx_ledger_append_only()"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for t in LEDGER_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {t}_append_only ON {t}")
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}")
        op.execute("DROP FUNCTION IF EXISTS nsdx_ledger_append_only()")
    for t in (
        "ledger_head",
        "ledger_checkpoints",
        "ledger_entries",
        "exchange_refunds",
        "exchange_deliveries",
        "exchange_grants",
        "exchange_payments",
        "exchange_orders",
        "exchange_offers",
        "exchange_enterprises",
    ):
        op.drop_table(t)
