"""accounts (users, memberships, API tokens), link resources, jobs, and the change log
that keeps in-memory search indexes current (triggers on datasets and organizations)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("fullname", sa.String(length=300), nullable=False),
        sa.Column("email", sa.String(length=300), nullable=False),
        sa.Column("sysadmin", sa.Boolean(), nullable=False),
        sa.Column("auditor", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_users_name", "users", ["name"], unique=True)
    op.create_table(
        "memberships",
        sa.Column("organization_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("organization_id", "user_id"),
    )
    op.create_index("ix_memberships_user_id", "memberships", ["user_id"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("expires", sa.DateTime(), nullable=True),
        sa.Column("last_used", sa.DateTime(), nullable=True),
        sa.Column("revoked", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_index("ix_api_tokens_token_hash", "api_tokens", ["token_hash"], unique=True)
    op.create_table(
        "link_resources",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("dataset_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("format", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("extras", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("last_modified", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_link_resources_dataset_id", "link_resources", ["dataset_id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("started", sa.DateTime(), nullable=True),
        sa.Column("finished", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_table(
        "catalogue_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rev", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "catalogue_changes",
        sa.Column("rev", sa.BigInteger(), nullable=False),
        sa.Column("dataset_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("rev", "dataset_id"),
    )
    op.execute("INSERT INTO catalogue_revision (id, rev) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        _pg_triggers()
    else:
        _sqlite_triggers()


# The revision row is updated inside the writing transaction, so on PostgreSQL its row lock
# orders dataset writers: revisions become visible in the order they were handed out.
_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION nsdx_catalogue_changed() RETURNS trigger AS $$
DECLARE r bigint;
BEGIN
  UPDATE catalogue_revision SET rev = rev + 1 WHERE id = 1 RETURNING rev INTO r;
  IF TG_TABLE_NAME = 'organizations' THEN
    INSERT INTO catalogue_changes (rev, dataset_id) VALUES (r, 'org:' || NEW.id);
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO catalogue_changes (rev, dataset_id) VALUES (r, OLD.id);
  ELSE
    INSERT INTO catalogue_changes (rev, dataset_id) VALUES (r, NEW.id);
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql
"""


def _pg_triggers() -> None:
    op.execute(_PG_FUNCTION)
    op.execute(
        "CREATE TRIGGER nsdx_datasets_changed AFTER INSERT OR UPDATE OR DELETE ON datasets "
        "FOR EACH ROW EXECUTE FUNCTION nsdx_catalogue_changed()"
    )
    op.execute(
        "CREATE TRIGGER nsdx_organizations_changed AFTER UPDATE ON organizations "
        "FOR EACH ROW EXECUTE FUNCTION nsdx_catalogue_changed()"
    )


def _sqlite_triggers() -> None:
    for event, ref, table, prefix in (
        ("INSERT", "NEW", "datasets", ""),
        ("UPDATE", "NEW", "datasets", ""),
        ("DELETE", "OLD", "datasets", ""),
        ("UPDATE", "NEW", "organizations", "org:"),
    ):
        key = f"'{prefix}' || {ref}.id" if prefix else f"{ref}.id"
        op.execute(
            f"CREATE TRIGGER nsdx_{table}_{event.lower()} AFTER {event} ON {table} "
            "BEGIN "
            "UPDATE catalogue_revision SET rev = rev + 1 WHERE id = 1; "
            "INSERT INTO catalogue_changes (rev, dataset_id) "
            f"SELECT rev, {key} FROM catalogue_revision WHERE id = 1; "
            "END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS nsdx_datasets_changed ON datasets")
        op.execute("DROP TRIGGER IF EXISTS nsdx_organizations_changed ON organizations")
        op.execute("DROP FUNCTION IF EXISTS nsdx_catalogue_changed()")
    else:
        for name in (
            "nsdx_datasets_insert",
            "nsdx_datasets_update",
            "nsdx_datasets_delete",
            "nsdx_organizations_update",
        ):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for t in (
        "catalogue_changes",
        "catalogue_revision",
        "jobs",
        "link_resources",
        "api_tokens",
        "memberships",
        "users",
    ):
        op.drop_table(t)
