"""billing history: an issued invoice reduced by a numbered credit note, what was paid given back
by refunds (to the wallet, or two-phase to the card); clawbacks of Sub-Org transactions refunded
or charged back after they were counted, taken from payouts (CREDIT_NOTE, REFUND and CLAWBACK
ledger transfers); the PDFs made and kept, and the Partner's address and tax ID they show

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 21:30:48.911202
"""
import sqlalchemy as sa
from alembic import op

import db.models

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

OLD_KINDS = ("INVOICE_ISSUED", "INVOICE_PAYMENT", "INVOICE_VOID", "INVOICE_UNCOLLECTIBLE", "AFFILIATE_PAYOUT",
             "REVENUE_SHARE", "MANUAL_ADJUSTMENT", "REVERSAL", "PAYOUT_FUNDING", "PAYOUT_CREDIT", "BANK_TRANSFER",
             "BANK_RETURN")


OLD_PARTS_NOT_NEGATIVE = ("available_amount >= 0 AND wallet_amount >= 0 AND bank_in_flight_amount >= 0 "
                          "AND bank_paid_amount >= 0")
OLD_PARTS_SUM = "available_amount + wallet_amount + bank_in_flight_amount + bank_paid_amount = amount"
NEW_PARTS_NOT_NEGATIVE = OLD_PARTS_NOT_NEGATIVE + " AND clawed_back_amount >= 0"
NEW_PARTS_SUM = "available_amount + wallet_amount + bank_in_flight_amount + bank_paid_amount + clawed_back_amount = amount"


def _kinds_known(kinds: tuple[str, ...]) -> None:
    """ledger_transfers' kind_known check. SQLite rebuilds the table for it, which drops its
    triggers: they are made again as 0002 made them (transfers are immutable)."""
    with op.batch_alter_table('ledger_transfers', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_ledger_transfers_kind_known'), type_='check')
        batch_op.create_check_constraint('kind_known', "kind IN (" + ", ".join(f"'{k}'" for k in kinds) + ")")
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for event in ("update", "delete"):
            conn.execute(sa.text(f"DROP TRIGGER IF EXISTS ledger_transfers_no_{event}"))
            conn.execute(sa.text(
                f"CREATE TRIGGER ledger_transfers_no_{event} BEFORE {event.upper()} ON ledger_transfers "
                f"BEGIN SELECT RAISE(ABORT, 'ledger rows are immutable: {event} on ledger_transfers'); END"
            ))


def upgrade() -> None:
    op.create_table('credit_notes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('connection_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('invoice_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('number', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('currency_code', sa.String(length=3), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('due_reduced', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', db.models.UTCDateTime(), nullable=False),
    sa.CheckConstraint("kind IN ('REFUND', 'VOID')", name=op.f('ck_credit_notes_kind_known')),
    sa.CheckConstraint('due_reduced >= 0 AND due_reduced <= total', name=op.f('ck_credit_notes_due_reduced_within_total')),
    sa.CheckConstraint('total > 0', name=op.f('ck_credit_notes_total_positive')),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_credit_notes_connection_id_connections'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_credit_notes_created_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_credit_notes_invoice_id_invoices'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_notes')),
    sa.UniqueConstraint('number', name=op.f('uq_credit_notes_number'))
    )
    with op.batch_alter_table('credit_notes', schema=None) as batch_op:
        batch_op.create_index('ix_credit_notes_connection_created', ['connection_id', 'created_at', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_credit_notes_invoice_id'), ['invoice_id'], unique=False)

    op.create_table('refunds',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('credit_note_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('invoice_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('payment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('method', sa.String(length=20), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency_code', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('charge_id', sa.String(length=100), nullable=True),
    sa.Column('processor_key', sa.String(length=200), nullable=True),
    sa.Column('processor_refund_id', sa.String(length=100), nullable=True),
    sa.Column('failure_reason', sa.String(length=300), nullable=True),
    sa.Column('transfer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('wallet_transfer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', db.models.UTCDateTime(), nullable=False),
    sa.Column('settled_at', db.models.UTCDateTime(), nullable=True),
    sa.CheckConstraint("(status = 'FAILED') = (wallet_transfer_id IS NOT NULL)", name=op.f('ck_refunds_failed_goes_to_wallet')),
    sa.CheckConstraint("method = 'CARD' OR status = 'SUCCEEDED'", name=op.f('ck_refunds_wallet_refunds_at_once')),
    sa.CheckConstraint("(method = 'CARD') = (charge_id IS NOT NULL AND processor_key IS NOT NULL)",
                       name=op.f('ck_refunds_card_refunds_name_their_charge')),
    sa.CheckConstraint("method IN ('WALLET', 'CARD')", name=op.f('ck_refunds_method_known')),
    sa.CheckConstraint("status IN ('PENDING', 'SUCCEEDED', 'FAILED')", name=op.f('ck_refunds_status_known')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_refunds_amount_positive')),
    sa.ForeignKeyConstraint(['credit_note_id'], ['credit_notes.id'], name=op.f('fk_refunds_credit_note_id_credit_notes'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_refunds_invoice_id_invoices'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['payment_id'], ['invoice_payments.id'], name=op.f('fk_refunds_payment_id_invoice_payments'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['transfer_id'], ['ledger_transfers.id'], name=op.f('fk_refunds_transfer_id_ledger_transfers'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['wallet_transfer_id'], ['ledger_transfers.id'], name=op.f('fk_refunds_wallet_transfer_id_ledger_transfers'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
    sa.UniqueConstraint('processor_key', name=op.f('uq_refunds_processor_key')),
    sa.UniqueConstraint('transfer_id', name=op.f('uq_refunds_transfer_id')),
    sa.UniqueConstraint('wallet_transfer_id', name=op.f('uq_refunds_wallet_transfer_id'))
    )
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refunds_credit_note_id'), ['credit_note_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_refunds_invoice_id'), ['invoice_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_refunds_payment_id'), ['payment_id'], unique=False)
        batch_op.create_index('ix_refunds_pending', ['created_at', 'id'], unique=False, sqlite_where=sa.text("status = 'PENDING'"), postgresql_where=sa.text("status = 'PENDING'"))

    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_credit_note_number', sa.Integer(), server_default=sa.text('1'), nullable=False))

    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('amount_refunded', sa.BigInteger(), server_default=sa.text('0'), nullable=False))
        batch_op.create_check_constraint('refunded_within_paid', 'amount_refunded >= 0 AND amount_refunded <= amount_paid')

    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.add_column(sa.Column('address', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('tax_id', sa.String(length=40), nullable=True))
    op.create_table('documents',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('object_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('connection_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('revision', sa.String(length=64), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', db.models.UTCDateTime(), nullable=False),
    sa.CheckConstraint("kind IN ('INVOICE', 'CREDIT_NOTE', 'RECEIPT', 'PAYOUT_STATEMENT')", name=op.f('ck_documents_kind_known')),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_documents_connection_id_connections'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_documents')),
    sa.UniqueConstraint('kind', 'object_id', 'revision', name='uq_documents_revision')
    )
    op.create_table('clawbacks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('connection_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('transaction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('external_id', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('currency_code', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('outstanding', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', db.models.UTCDateTime(), nullable=False),
    sa.CheckConstraint("kind IN ('REFUND', 'CHARGEBACK')", name=op.f('ck_clawbacks_kind_known')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_clawbacks_amount_positive')),
    sa.CheckConstraint('outstanding >= 0 AND outstanding <= amount', name=op.f('ck_clawbacks_outstanding_within_amount')),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_clawbacks_connection_id_connections'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_clawbacks_created_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['transaction_id'], ['sub_org_transactions.id'], name=op.f('fk_clawbacks_transaction_id_sub_org_transactions'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clawbacks')),
    sa.UniqueConstraint('connection_id', 'external_id', name='uq_clawbacks_external_id')
    )
    with op.batch_alter_table('clawbacks', schema=None) as batch_op:
        batch_op.create_index('ix_clawbacks_outstanding', ['connection_id', 'created_at', 'id'], unique=False, sqlite_where=sa.text('outstanding > 0'), postgresql_where=sa.text('outstanding > 0'))
        batch_op.create_index(batch_op.f('ix_clawbacks_transaction_id'), ['transaction_id'], unique=False)

    op.create_table('clawback_recoveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('clawback_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('payout_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('transfer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', db.models.UTCDateTime(), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_clawback_recoveries_amount_positive')),
    sa.ForeignKeyConstraint(['clawback_id'], ['clawbacks.id'], name=op.f('fk_clawback_recoveries_clawback_id_clawbacks'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_clawback_recoveries_payout_id_payouts'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['transfer_id'], ['ledger_transfers.id'], name=op.f('fk_clawback_recoveries_transfer_id_ledger_transfers'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clawback_recoveries')),
    sa.UniqueConstraint('transfer_id', name=op.f('uq_clawback_recoveries_transfer_id'))
    )
    with op.batch_alter_table('clawback_recoveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_clawback_recoveries_clawback_id'), ['clawback_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_clawback_recoveries_payout_id'), ['payout_id'], unique=False)

    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('clawed_back_amount', sa.BigInteger(), server_default=sa.text('0'), nullable=False))
        batch_op.drop_constraint(batch_op.f('ck_payouts_parts_sum'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_payouts_parts_not_negative'), type_='check')
        batch_op.create_check_constraint('parts_not_negative', NEW_PARTS_NOT_NEGATIVE)
        batch_op.create_check_constraint('parts_sum', NEW_PARTS_SUM)

    _kinds_known((*OLD_KINDS, "CREDIT_NOTE", "REFUND", "CLAWBACK"))


def downgrade() -> None:
    conn = op.get_bind()
    if conn.execute(sa.text("SELECT count(*) FROM credit_notes")).scalar():
        raise RuntimeError("invoices were refunded or voided by credit notes: their ledger transfers have no older form")
    if conn.execute(sa.text("SELECT count(*) FROM clawbacks")).scalar():
        raise RuntimeError("Sub-Org transactions were clawed back: their ledger transfers have no older form")
    _kinds_known(OLD_KINDS)
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_payouts_parts_sum'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_payouts_parts_not_negative'), type_='check')
        batch_op.create_check_constraint('parts_not_negative', OLD_PARTS_NOT_NEGATIVE)
        batch_op.create_check_constraint('parts_sum', OLD_PARTS_SUM)
        batch_op.drop_column('clawed_back_amount')
    for table in ('clawback_recoveries', 'clawbacks', 'documents'):
        op.drop_table(table)
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.drop_column('tax_id')
        batch_op.drop_column('address')

    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_invoices_refunded_within_paid'), type_='check')
        batch_op.drop_column('amount_refunded')

    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_column('next_credit_note_number')

    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_index('ix_refunds_pending', sqlite_where=sa.text("status = 'PENDING'"), postgresql_where=sa.text("status = 'PENDING'"))
        batch_op.drop_index(batch_op.f('ix_refunds_payment_id'))
        batch_op.drop_index(batch_op.f('ix_refunds_invoice_id'))
        batch_op.drop_index(batch_op.f('ix_refunds_credit_note_id'))

    op.drop_table('refunds')
    with op.batch_alter_table('credit_notes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_credit_notes_invoice_id'))
        batch_op.drop_index('ix_credit_notes_connection_created')

    op.drop_table('credit_notes')
