"""ledger throughput: the append queue and stored subtree hashes (tiles).

* ``ledger_queue`` — events committed by a trade transaction that did not get the ledger
  lock at once (another appender held it). The next lock holder moves them into
  ``ledger_entries`` in one batch (dense indices, one checkpoint for the batch) and
  deletes them here in the same transaction. Rows live for milliseconds; this is not a
  ledger table (it needs DELETE), and nothing in it is ever given a receipt.
* ``ledger_entries.queue_id`` — which queue row an entry came from, so the appender
  waiting for its receipt finds its index. Metadata outside the leaf hash.
* ``ledger_tiles`` — the hashes of the perfect subtrees at levels 8, 16, 24, ... (a node
  at ``level`` covers leaves ``[idx << level, (idx + 1) << level)``), written by the same
  transaction that completes them, so an inclusion or consistency proof at any size
  reads O(log n) small ranges instead of every leaf hash. Derived data: `nsdx audit
  verify` recomputes and checks them; append-only on PostgreSQL like the ledger tables.

Existing ledgers get their tiles computed here (one streaming pass over the leaf hashes).

Revision ID: 0004
Revises: 0003
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TILE_HEIGHT = 8


def _fold(buf: bytes, rounds: int) -> bytes:
    for _ in range(rounds):
        buf = b"".join(
            hashlib.sha256(b"\x01" + buf[i : i + 64]).digest() for i in range(0, len(buf), 64)
        )
    return buf


def _backfill_tiles(bind) -> None:
    size = bind.execute(sa.text("SELECT count(*) FROM ledger_entries")).scalar() or 0
    level, unit = 0, 1 << TILE_HEIGHT
    while size >> (level + TILE_HEIGHT):
        above = level + TILE_HEIGHT
        count = size >> above  # complete nodes at the level above
        chunk = 4096  # nodes above per query
        for lo in range(0, count, chunk):
            hi = min(count, lo + chunk)
            if level == 0:
                q = sa.text(
                    "SELECT leaf_hash FROM ledger_entries WHERE idx >= :a AND idx < :b ORDER BY idx"
                )
            else:
                q = sa.text(
                    "SELECT hash FROM ledger_tiles WHERE level = :l AND idx >= :a AND idx < :b "
                    "ORDER BY idx"
                )
            rows = bind.execute(q, {"l": level, "a": lo * unit, "b": hi * unit}).scalars()
            folded = _fold(b"".join(bytes(r) for r in rows), TILE_HEIGHT)
            bind.execute(
                sa.text("INSERT INTO ledger_tiles (level, idx, hash) VALUES (:l, :i, :h)"),
                [
                    {"l": above, "i": lo + k, "h": folded[k * 32 : (k + 1) * 32]}
                    for k in range(hi - lo)
                ],
            )
        level = above


def upgrade() -> None:
    op.create_table(
        "ledger_queue",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    # which queue row an entry came from, so its appender finds its index (not hashed;
    # NULL for entries appended directly)
    with op.batch_alter_table("ledger_entries") as b:
        b.add_column(sa.Column("queue_id", sa.BigInteger(), nullable=True))
    op.create_table(
        "ledger_tiles",
        sa.Column("level", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    bind = op.get_bind()
    _backfill_tiles(bind)
    if bind.dialect.name == "postgresql":
        # nsdx_ledger_append_only() comes from 0003.
        op.execute(
            "CREATE TRIGGER ledger_tiles_append_only BEFORE UPDATE OR DELETE ON ledger_tiles "
            "FOR EACH ROW EXECUTE FUNCTION nsdx_ledger_append_only()"
        )
        op.execute(
            "CREATE TRIGGER ledger_tiles_no_truncate BEFORE TRUNCATE ON ledger_tiles "
            "FOR EACH STATEMENT EXECUTE FUNCTION nsdx_ledger_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_tiles_append_only ON ledger_tiles")
        op.execute("DROP TRIGGER IF EXISTS ledger_tiles_no_truncate ON ledger_tiles")
    op.drop_table("ledger_tiles")
    with op.batch_alter_table("ledger_entries") as b:
        b.drop_column("queue_id")
    op.drop_table("ledger_queue")
