"""the background worker's job queue (procrastinate's tables and functions), on PostgreSQL only

With the embedded SQLite, `serve` runs the jobs in process on procrastinate's in-memory queue
(server/worker.py): nothing is made here.

The schema is procrastinate's own (`SchemaManager.get_schema()`, from the version installed
when this runs first). A later procrastinate that changes it ships SQL migrations of its own
(procrastinate/sql/migrations): a migration of ours applies them when pyproject.toml's bound on
procrastinate moves.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 19:00:00.000000
"""
from alembic import op
from procrastinate.schema import SchemaManager
from sqlalchemy.engine.interfaces import AdaptedConnection

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

TABLES = "procrastinate_periodic_defers, procrastinate_events, procrastinate_jobs, procrastinate_workers"
TYPES = "procrastinate_job_to_defer_v1, procrastinate_job_status, procrastinate_job_event_type"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # Many statements with PL/pgSQL bodies, sent as one script (asyncpg's execute without
    # arguments, in the migration's transaction), as procrastinate's own `schema --apply` does.
    schema = SchemaManager.get_schema()
    adapted = op.get_bind().connection.dbapi_connection
    assert isinstance(adapted, AdaptedConnection), "migrations run on the async engine (db/migrations/env.py)"
    adapted.run_async(lambda driver: driver.execute(schema))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP TABLE IF EXISTS {TABLES} CASCADE")
    op.execute("""
        DO $$ DECLARE f regprocedure; BEGIN
            FOR f IN SELECT oid::regprocedure FROM pg_proc WHERE proname LIKE 'procrastinate\\_%' LOOP
                EXECUTE 'DROP FUNCTION ' || f || ' CASCADE';
            END LOOP;
        END $$""")
    op.execute(f"DROP TYPE IF EXISTS {TYPES} CASCADE")
