"""calls outside transactions: the billing run's card charges, and bank transfers being sent

The billing run's charge of an invoice is a card charge too, with the run's attempt number
(1, 2, ...): a decline settled later (a lost answer asked again) schedules the next attempt
or writes the invoice off, as the run would have. A bank transfer records when it was
first being sent to the processor (sending_at), before the call.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 06:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

import db.models

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('card_charges', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempt', sa.Integer(), nullable=True))
        batch_op.create_check_constraint('attempt_positive', 'attempt IS NULL OR attempt > 0')
    with op.batch_alter_table('bank_transfers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sending_at', db.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('bank_transfers', schema=None) as batch_op:
        batch_op.drop_column('sending_at')
    with op.batch_alter_table('card_charges', schema=None) as batch_op:
        batch_op.drop_constraint('attempt_positive', type_='check')
        batch_op.drop_column('attempt')
