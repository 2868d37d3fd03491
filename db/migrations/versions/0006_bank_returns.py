"""bank returns: RETURNED bank transfers, BANK_RETURN ledger transfers

A PAID bank transfer the bank sends back is RETURNED, its amount put back on the
payout by a BANK_RETURN ledger transfer.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 03:40:00.000000
"""
import sqlalchemy as sa
from alembic import op

import db.models

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('PENDING', 'IN_TRANSIT', 'PAID', 'FAILED', 'CANCELED')"
NEW_STATUSES = "status IN ('PENDING', 'IN_TRANSIT', 'PAID', 'FAILED', 'CANCELED', 'RETURNED')"
OLD_KINDS = ("INVOICE_ISSUED", "INVOICE_PAYMENT", "INVOICE_VOID", "INVOICE_UNCOLLECTIBLE", "AFFILIATE_PAYOUT",
             "REVENUE_SHARE", "MANUAL_ADJUSTMENT", "REVERSAL", "PAYOUT_FUNDING", "PAYOUT_CREDIT", "BANK_TRANSFER")


def _kinds(kinds: tuple[str, ...]) -> str:
    return "kind IN (" + ", ".join(f"'{k}'" for k in kinds) + ")"


def _kinds_known(kinds: tuple[str, ...]) -> None:
    """ledger_transfers' kind_known check. SQLite rebuilds the table for it, which drops its
    triggers: they are made again as 0002 made them (transfers are immutable)."""
    with op.batch_alter_table('ledger_transfers', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_ledger_transfers_kind_known'), type_='check')
        batch_op.create_check_constraint('kind_known', _kinds(kinds))
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for event in ("update", "delete"):
            conn.execute(sa.text(f"DROP TRIGGER IF EXISTS ledger_transfers_no_{event}"))
            conn.execute(sa.text(
                f"CREATE TRIGGER ledger_transfers_no_{event} BEFORE {event.upper()} ON ledger_transfers "
                f"BEGIN SELECT RAISE(ABORT, 'ledger rows are immutable: {event} on ledger_transfers'); END"
            ))


def upgrade() -> None:
    with op.batch_alter_table('bank_transfers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('returned_at', db.models.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('return_code', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('return_reason', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('return_transfer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                                      nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_bank_transfers_return_transfer_id'), ['return_transfer_id'])
        batch_op.create_foreign_key(batch_op.f('fk_bank_transfers_return_transfer_id_ledger_transfers'),
                                    'ledger_transfers', ['return_transfer_id'], ['id'], ondelete='RESTRICT')
        batch_op.drop_constraint(batch_op.f('ck_bank_transfers_status_known'), type_='check')
        batch_op.create_check_constraint('status_known', NEW_STATUSES)
    _kinds_known((*OLD_KINDS, "BANK_RETURN"))
    with op.batch_alter_table('bank_transfer_events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_bank_transfer_events_status_known'), type_='check')
        batch_op.create_check_constraint('status_known', NEW_STATUSES)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.execute(sa.text("SELECT count(*) FROM bank_transfers WHERE status = 'RETURNED'")).scalar():
        raise RuntimeError("bank transfers were returned: their BANK_RETURN ledger transfers have no older form")
    with op.batch_alter_table('bank_transfer_events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_bank_transfer_events_status_known'), type_='check')
        batch_op.create_check_constraint('status_known', OLD_STATUSES)
    _kinds_known(OLD_KINDS)
    with op.batch_alter_table('bank_transfers', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_bank_transfers_status_known'), type_='check')
        batch_op.create_check_constraint('status_known', OLD_STATUSES)
        batch_op.drop_constraint(batch_op.f('fk_bank_transfers_return_transfer_id_ledger_transfers'),
                                 type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_bank_transfers_return_transfer_id'), type_='unique')
        batch_op.drop_column('return_transfer_id')
        batch_op.drop_column('return_reason')
        batch_op.drop_column('return_code')
        batch_op.drop_column('returned_at')
