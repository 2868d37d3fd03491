"""events: committed changes a connection's users can follow, numbered per connection

No foreign key to connections: checking one at commit would lock the connection's row (KEY
SHARE) and deadlock with a transaction holding it FOR UPDATE (db/models.py Event).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 16:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

import db.models

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        'events',
        sa.Column('id', PK, autoincrement=True, nullable=False),
        sa.Column('connection_id', PK, nullable=False),
        sa.Column('seq', PK, nullable=False),
        sa.Column('subject', sa.String(length=30), nullable=False),
        sa.Column('subject_id', PK, nullable=False),
        sa.Column('action', sa.String(length=10), nullable=False),
        sa.Column('ticket_id', PK, nullable=True),
        sa.Column('occurred_at', db.models.UTCDateTime(), nullable=False),
        sa.CheckConstraint("action IN ('CREATED', 'UPDATED')", name=op.f('ck_events_action_known')),
        sa.CheckConstraint(
            "subject IN ('tickets', 'ticket_messages', 'invoices', 'payouts', 'bank_transfers', 'addons', "
            "'subscriptions', 'affiliate_payouts', 'ledger_entries', 'wallets')",
            name=op.f('ck_events_subject_known'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_events')),
        sa.UniqueConstraint('connection_id', 'seq', name=op.f('uq_events_connection_id_seq')),
    )
    op.create_index('ix_events_ticket', 'events', ['ticket_id', 'id'], unique=False)
    op.create_index('ix_events_occurred_at', 'events', ['occurred_at', 'id'], unique=False)
    op.create_table(
        'event_sequences',
        sa.Column('connection_id', PK, nullable=False),
        sa.Column('last_seq', PK, nullable=False),
        sa.PrimaryKeyConstraint('connection_id', name=op.f('pk_event_sequences')),
    )


def downgrade() -> None:
    op.drop_table('event_sequences')
    op.drop_index('ix_events_occurred_at', table_name='events')
    op.drop_index('ix_events_ticket', table_name='events')
    op.drop_table('events')
