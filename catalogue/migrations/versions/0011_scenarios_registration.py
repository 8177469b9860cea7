"""application scenarios (应用场景) and data-resource registration (数据资源登记).

* ``scenarios`` and ``scenario_datasets``: scenarios and the datasets (and versions) they
  use. Triggers log the datasets of a changed link in ``catalogue_changes``, so the search
  index re-renders them (their CKAN ``groups``) as it does for any dataset change.
* ``exchange_registrations`` and ``exchange_registration_objections``: the registration
  records of data products and the objections lodged during their public notice.
* ``users.reviewer``: the reviewer role of registrations.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("reviewer", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.create_table(
        "scenarios",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("title_en", sa.String(300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("description_en", sa.Text(), nullable=False),
        sa.Column("sector", sa.String(50), nullable=False),
        sa.Column("proposer", sa.String(300), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("evaluation", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("modified", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_scenarios_name", "scenarios", ["name"], unique=True)
    op.create_index("ix_scenarios_sector", "scenarios", ["sector"])
    op.create_table(
        "scenario_datasets",
        sa.Column("scenario_id", sa.String(36), nullable=False),
        sa.Column("dataset_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["scenario_id"], ["scenarios.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("scenario_id", "dataset_id"),
    )
    op.create_index("ix_scenario_datasets_dataset_id", "scenario_datasets", ["dataset_id"])
    op.create_table(
        "exchange_registrations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("code", sa.String(40), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("previous_id", sa.String(36), nullable=True),
        sa.Column("dataset_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("scenario_id", sa.String(36), nullable=True),
        sa.Column("holder_id", sa.String(36), nullable=False),
        sa.Column("compliance_statement", sa.Text(), nullable=False),
        sa.Column("legality_pledge", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("applied_by", sa.String(200), nullable=False),
        sa.Column("applied_on", sa.Date(), nullable=False),
        sa.Column("reviewed_by", sa.String(200), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=False),
        sa.Column("notice_start", sa.Date(), nullable=True),
        sa.Column("notice_end", sa.Date(), nullable=True),
        sa.Column("registered_on", sa.Date(), nullable=True),
        sa.Column("ended_on", sa.Date(), nullable=True),
        sa.Column("ledger", sa.JSON(), nullable=False),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"]),
        sa.ForeignKeyConstraint(["scenario_id"], ["scenarios.id"]),
        sa.ForeignKeyConstraint(["holder_id"], ["organizations.id"]),
        sa.PrimaryKeyConstraint("id"),
        # one record per code and revision: a code is never given twice
        sa.UniqueConstraint("code", "revision", name="uq_exchange_registrations_code_revision"),
    )
    for col in ("code", "dataset_id", "scenario_id", "holder_id", "status"):
        op.create_index(f"ix_exchange_registrations_{col}", "exchange_registrations", [col])
    op.create_table(
        "exchange_registration_objections",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("registration_id", sa.String(36), nullable=False),
        sa.Column("lodged_by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("lodged_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=False),
        sa.Column("resolved_by", sa.String(200), nullable=True),
        sa.Column("ledger_index", sa.BigInteger(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["registration_id"], ["exchange_registrations.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_exchange_registration_objections_registration_id",
        "exchange_registration_objections",
        ["registration_id"],
    )
    if op.get_bind().dialect.name == "postgresql":
        _pg_triggers()
    else:
        _sqlite_triggers()


# A dataset's CKAN groups are the scenarios that use it: a link added or removed, or a
# scenario renamed, changes the dataset's package dict, so the search index must re-render
# it (catalogue.search.index reads catalogue_changes).
_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION nsdx_scenario_changed() RETURNS trigger AS $$
DECLARE r bigint;
BEGIN
  UPDATE catalogue_revision SET rev = rev + 1 WHERE id = 1 RETURNING rev INTO r;
  IF TG_TABLE_NAME = 'scenarios' THEN
    INSERT INTO catalogue_changes (rev, dataset_id)
      SELECT r, dataset_id FROM scenario_datasets WHERE scenario_id = NEW.id
      ON CONFLICT DO NOTHING;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO catalogue_changes (rev, dataset_id) VALUES (r, OLD.dataset_id)
      ON CONFLICT DO NOTHING;
  ELSE
    INSERT INTO catalogue_changes (rev, dataset_id) VALUES (r, NEW.dataset_id)
      ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql
"""


def _pg_triggers() -> None:
    op.execute(_PG_FUNCTION)
    op.execute(
        "CREATE TRIGGER nsdx_scenario_links_changed AFTER INSERT OR UPDATE OR DELETE "
        "ON scenario_datasets FOR EACH ROW EXECUTE FUNCTION nsdx_scenario_changed()"
    )
    op.execute(
        "CREATE TRIGGER nsdx_scenarios_changed AFTER UPDATE ON scenarios "
        "FOR EACH ROW EXECUTE FUNCTION nsdx_scenario_changed()"
    )


def _sqlite_triggers() -> None:
    bump = "UPDATE catalogue_revision SET rev = rev + 1 WHERE id = 1; "
    for event, ref in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
        op.execute(
            f"CREATE TRIGGER nsdx_scenario_links_{event.lower()} AFTER {event} "
            "ON scenario_datasets BEGIN "
            + bump
            + "INSERT OR IGNORE INTO catalogue_changes (rev, dataset_id) "
            f"SELECT rev, {ref}.dataset_id FROM catalogue_revision WHERE id = 1; "
            "END"
        )
    op.execute(
        "CREATE TRIGGER nsdx_scenarios_update AFTER UPDATE ON scenarios BEGIN "
        + bump
        + "INSERT OR IGNORE INTO catalogue_changes (rev, dataset_id) "
        "SELECT (SELECT rev FROM catalogue_revision WHERE id = 1), dataset_id "
        "FROM scenario_datasets WHERE scenario_id = NEW.id; "
        "END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS nsdx_scenario_links_changed ON scenario_datasets")
        op.execute("DROP TRIGGER IF EXISTS nsdx_scenarios_changed ON scenarios")
        op.execute("DROP FUNCTION IF EXISTS nsdx_scenario_changed()")
    else:
        for name in (
            "nsdx_scenario_links_insert",
            "nsdx_scenario_links_update",
            "nsdx_scenario_links_delete",
            "nsdx_scenarios_update",
        ):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("exchange_registration_objections")
    op.drop_table("exchange_registrations")
    op.drop_table("scenario_datasets")
    op.drop_table("scenarios")
    op.execute("ALTER TABLE users DROP COLUMN reviewer")
