"""money in fen everywhere; deliveries say their channel; orders keep their date.

* ``datasets.price_cny`` (a float: ``2800.0``) becomes ``datasets.price_fen`` (an integer
  number of fen, like every amount of the exchange); existing prices are converted exactly
  (rounded to the fen).
* ``exchange_deliveries.channel`` and ``.actor``: how a delivery was made and who took it
  (see ``exchange.deliveries``). NULL for deliveries recorded before this migration (their
  ledger events say it).
* ``exchange_orders.ordered_on``: the order's date, so a payment can be checked not to
  precede it; existing orders get the date they were created.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


# Plain ALTER TABLE statements, never a batch "move and copy": on SQLite (foreign keys on)
# recreating ``datasets`` would cascade-delete its versions.


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column("datasets", sa.Column("price_fen", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE datasets SET price_fen = CAST(ROUND(price_cny * 100) AS BIGINT) "
        "WHERE price_cny IS NOT NULL"
    )
    op.execute("ALTER TABLE datasets DROP COLUMN price_cny")
    op.add_column("exchange_deliveries", sa.Column("channel", sa.String(30), nullable=True))
    op.add_column("exchange_deliveries", sa.Column("actor", sa.String(200), nullable=True))
    op.add_column("exchange_orders", sa.Column("ordered_on", sa.Date(), nullable=True))
    day = "date(created)" if bind.dialect.name == "sqlite" else "CAST(created AS date)"
    op.execute(f"UPDATE exchange_orders SET ordered_on = {day}")


def downgrade() -> None:
    op.execute("ALTER TABLE exchange_orders DROP COLUMN ordered_on")
    op.execute("ALTER TABLE exchange_deliveries DROP COLUMN actor")
    op.execute("ALTER TABLE exchange_deliveries DROP COLUMN channel")
    op.add_column("datasets", sa.Column("price_cny", sa.Float(), nullable=True))
    op.execute("UPDATE datasets SET price_cny = price_fen / 100.0 WHERE price_fen IS NOT NULL")
    op.execute("ALTER TABLE datasets DROP COLUMN price_fen")
