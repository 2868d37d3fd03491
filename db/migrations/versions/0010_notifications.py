"""notifications: each user's choices, the emails to send about committed changes, and how far
the events have been read for them

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 17:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

import db.models

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
KINDS = "('INVOICE_ISSUED', 'CHARGE_DECLINED', 'PAYOUT_MADE', 'BANK_TRANSFER_UPDATE', 'WALLET_LOW', 'TICKET_REPLY')"


def upgrade() -> None:
    op.create_table(
        'notification_settings',
        sa.Column('user_id', PK, nullable=False),
        sa.Column('kind', sa.String(length=30), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('threshold', sa.BigInteger(), nullable=True),
        sa.Column('updated_at', db.models.UTCDateTime(), nullable=False),
        sa.CheckConstraint(f"kind IN {KINDS}", name=op.f('ck_notification_settings_kind_known')),
        sa.CheckConstraint('threshold IS NULL OR threshold >= 0', name=op.f('ck_notification_settings_threshold_not_negative')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notification_settings_user_id_users'),
                                ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('user_id', 'kind', name=op.f('pk_notification_settings')),
    )
    op.create_table(
        'notifications',
        sa.Column('id', PK, autoincrement=True, nullable=False),
        sa.Column('user_id', PK, nullable=False),
        sa.Column('event_id', PK, nullable=False),
        sa.Column('kind', sa.String(length=30), nullable=False),
        sa.Column('key', sa.String(length=120), nullable=False),
        sa.Column('subject', sa.String(length=200), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', db.models.UTCDateTime(), nullable=False),
        sa.Column('sending_at', db.models.UTCDateTime(), nullable=True),
        sa.Column('sent_at', db.models.UTCDateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', db.models.UTCDateTime(), nullable=False),
        sa.CheckConstraint('attempts >= 0', name=op.f('ck_notifications_attempts_not_negative')),
        sa.CheckConstraint(f"kind IN {KINDS}", name=op.f('ck_notifications_kind_known')),
        sa.CheckConstraint("status IN ('PENDING', 'SENT', 'FAILED')", name=op.f('ck_notifications_status_known')),
        sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_notifications_event_id_events'),
                                ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notifications_user_id_users'),
                                ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
        sa.UniqueConstraint('user_id', 'key', name=op.f('uq_notifications_user_id_key')),
    )
    op.create_index('ix_notifications_due', 'notifications', ['status', 'next_attempt_at', 'id'], unique=False)
    op.create_index(op.f('ix_notifications_event_id'), 'notifications', ['event_id'], unique=False)
    op.create_table(
        'notification_cursors',
        sa.Column('connection_id', PK, nullable=False),
        sa.Column('last_seq', PK, nullable=False),
        sa.ForeignKeyConstraint(['connection_id'], ['connections.id'],
                                name=op.f('fk_notification_cursors_connection_id_connections'), ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('connection_id', name=op.f('pk_notification_cursors')),
    )


def downgrade() -> None:
    op.drop_table('notification_cursors')
    op.drop_index(op.f('ix_notifications_event_id'), table_name='notifications')
    op.drop_index('ix_notifications_due', table_name='notifications')
    op.drop_table('notifications')
    op.drop_table('notification_settings')
