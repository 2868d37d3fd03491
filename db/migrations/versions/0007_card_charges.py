"""card charges: pay now by card, recorded before the processor is called

A charge of the card on file a Partner asks for, recorded before the processor is
called and settled after; at most one PENDING per invoice.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 03:45:00.000000
"""
import sqlalchemy as sa
from alembic import op

import db.models

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('card_charges',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('invoice_id', ID, nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency_code', sa.String(length=3), nullable=False),
    sa.Column('card_token', sa.String(length=200), nullable=False),
    sa.Column('processor_key', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('charge_id', sa.String(length=100), nullable=True),
    sa.Column('decline_code', sa.String(length=40), nullable=True),
    sa.Column('decline_reason', sa.String(length=300), nullable=True),
    sa.Column('payment_id', ID, nullable=True),
    sa.Column('created_by_id', ID, nullable=True),
    sa.Column('created_at', db.models.UTCDateTime(), nullable=False),
    sa.Column('settled_at', db.models.UTCDateTime(), nullable=True),
    sa.CheckConstraint("status IN ('PENDING', 'SUCCEEDED', 'DECLINED')", name=op.f('ck_card_charges_status_known')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_card_charges_amount_positive')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_card_charges_invoice_id_invoices'),
                            ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['payment_id'], ['invoice_payments.id'],
                            name=op.f('fk_card_charges_payment_id_invoice_payments'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_card_charges_created_by_id_users'),
                            ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_card_charges')),
    sa.UniqueConstraint('processor_key', name=op.f('uq_card_charges_processor_key')),
    sa.UniqueConstraint('payment_id', name=op.f('uq_card_charges_payment_id')),
    )
    with op.batch_alter_table('card_charges', schema=None) as batch_op:
        batch_op.create_index('ix_card_charges_one_pending', ['invoice_id'], unique=True,
                              sqlite_where=sa.text("status = 'PENDING'"), postgresql_where=sa.text("status = 'PENDING'"))
        batch_op.create_index('ix_card_charges_pending', ['created_at', 'id'], unique=False,
                              sqlite_where=sa.text("status = 'PENDING'"), postgresql_where=sa.text("status = 'PENDING'"))


def downgrade() -> None:
    op.drop_table('card_charges')
