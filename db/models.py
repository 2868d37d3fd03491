"""SQLAlchemy models for the whole Revampd connection domain.

Money columns are BIGINT minor units. The constraints here are the last line of
defence: the services enforce every rule, and the database refuses what must
never happen even if a service is wrong (negative balances, double credits,
orphans, amounts that do not add up).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from db.states import (
    CONNECTION_ACCOUNT_KINDS,
    EVENT_SUBJECTS,
    IN_FLIGHT,
    PARTNER_ROLES,
    PAYMENT_METHODS,
    REFUND_METHODS,
    RESOLVING_PHASES,
    STAFF_ROLES,
    TICKET_SUBJECTS,
    AccountKind,
    CardChargeStatus,
    ClawbackKind,
    CreditNoteKind,
    CreditStatus,
    DocumentKind,
    EventAction,
    InvoiceStatus,
    InvoiceType,
    NotificationKind,
    NotificationStatus,
    PaymentMethod,
    PayoutMode,
    PayoutPeriodType,
    PayoutStatus,
    PlanChangeKind,
    RefundStatus,
    SubOrgTransactionKind,
    SubscriptionStatus,
    TicketPriority,
    TicketStatus,
    TransferEventSource,
    TransferKind,
    TransferPhase,
    TransferStatus,
)
from db.states import (
    PayoutDisposition as DispositionKind,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite would drop the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if getattr(dialect, "name", "") == "sqlite" else value

    def result_processor(self, dialect: Any, coltype: object) -> Any:
        # asyncpg reads a timestamptz as an aware datetime in UTC already: nothing to do per value.
        if dialect.name == "postgresql" and dialect.driver == "asyncpg":
            return None
        general = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite" or general is None:
            return general
        # SQLite keeps the UTC instant as text without its offset ("2026-12-07 12:00:00.000000"):
        # read with the offset added, one C call (a dashboard page reads thousands), and
        # anything else (a number, a value written with an offset) as SQLAlchemy reads it.
        parse = datetime.fromisoformat

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            try:
                return parse(value + "+00:00")
            except (TypeError, ValueError):
                read: datetime | None = general(value)
                return read

        return process

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# Integer on SQLite keeps ROWID aliasing (autoincrement); BIGINT elsewhere.
PK = BigInteger().with_variant(Integer(), "sqlite")
Money = BigInteger

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _id() -> Mapped[int]:
    return mapped_column(PK, primary_key=True, autoincrement=True)


def _fk(target: str, *, nullable: bool = False, index: bool = True) -> Mapped:  # type: ignore[type-arg]
    return mapped_column(
        PK, ForeignKey(target, ondelete="RESTRICT"), nullable=nullable, index=index
    )


def _created() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), nullable=False)


def _q(value: Enum | str) -> str:
    """A state as an SQL literal."""
    return f"'{value.value if isinstance(value, Enum) else value}'"


def _in(column: str, values: Iterable[Enum | str]) -> str:
    return f"{column} IN ({', '.join(_q(v) for v in values)})"


def _enum_check(column: str, values: Iterable[Enum | str], name: str, *, nullable: bool = False) -> CheckConstraint:
    known = _in(column, values)
    return CheckConstraint(f"{column} IS NULL OR {known}" if nullable else known, name=name)


class Partner(Base):
    __tablename__ = "partners"
    id: Mapped[int] = _id()
    name: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    # Shown on its invoices and credit notes (services/statements.py): its postal address (lines
    # separated by newlines) and tax ID, where it has given them.
    address: Mapped[str | None] = mapped_column(Text)
    tax_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = _created()


class User(Base):
    """A Partner user (partner_id set) or a Revampd staff member (partner_id null)."""

    __tablename__ = "users"
    __table_args__ = (
        _enum_check("role", STAFF_ROLES + PARTNER_ROLES, "role_known"),
        CheckConstraint(
            f"(partner_id IS NULL AND {_in('role', STAFF_ROLES)}) OR "
            f"(partner_id IS NOT NULL AND {_in('role', PARTNER_ROLES)})",
            name="staff_have_no_partner",
        ),
    )
    id: Mapped[int] = _id()
    email: Mapped[str] = mapped_column(String(320), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    partner_id: Mapped[int | None] = _fk("partners.id", nullable=True)
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    created_at: Mapped[datetime] = _created()


class Connection(Base):
    """A Partner's one connection with Revampd: everything money is scoped to it."""

    __tablename__ = "connections"
    __table_args__ = (
        CheckConstraint("length(currency_code) = 3", name="currency_iso"),
        _enum_check("payout_period_type", PayoutPeriodType, "payout_period_type_known"),
        # MANUAL is no mode (null); a SPLIT says how much goes to the wallet.
        CheckConstraint(
            "(payout_mode IS NULL AND payout_wallet_percent IS NULL) OR "
            f"({_in('payout_mode', (PayoutMode.CREDIT, PayoutMode.TRANSFER))} AND payout_wallet_percent IS NULL) OR "
            f"(payout_mode = {_q(PayoutMode.SPLIT)} AND payout_wallet_percent BETWEEN 1 AND 99)",
            name="payout_preference_known",
        ),
    )
    id: Mapped[int] = _id()
    partner_id: Mapped[int] = mapped_column(
        PK, ForeignKey("partners.id", ondelete="RESTRICT"), nullable=False, unique=True
    )
    currency_code: Mapped[str] = mapped_column(String(3), nullable=False)
    ticket_prefix: Mapped[str] = mapped_column(String(8), nullable=False, default="RVP")
    next_ticket_number: Mapped[int] = mapped_column(Integer, nullable=False, default=1001)
    # Invoice numbers are "<invoice_prefix>-<n>", n from this gap-free counter (taken under a row lock).
    invoice_prefix: Mapped[str] = mapped_column(String(12), nullable=False, server_default="INV")
    next_invoice_number: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    # Credit notes are "<invoice_prefix>-CN-<n>", n from this gap-free counter (taken under the same lock).
    next_credit_note_number: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default=text("1"))
    # The card on file: a processor's token and what may be shown of the card, never its number.
    card_token: Mapped[str | None] = mapped_column(String(200))
    card_brand: Mapped[str | None] = mapped_column(String(20))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    card_exp_month: Mapped[int | None] = mapped_column(Integer)
    card_exp_year: Mapped[int | None] = mapped_column(Integer)
    # Payouts of Sub-Org earnings: the period they gather (services/earnings.py), and what to do
    # with a new payout (services/payouts.py): nothing (the Partner decides), CREDIT it to the
    # wallet, TRANSFER it to the default bank account, or SPLIT it, payout_wallet_percent to the wallet.
    payout_period_type: Mapped[str] = mapped_column(String(10), nullable=False, server_default=PayoutPeriodType.MONTHLY.value)
    payout_mode: Mapped[str | None] = mapped_column(String(10))
    payout_wallet_percent: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created()


class Plan(Base):
    __tablename__ = "plans"
    __table_args__ = (
        CheckConstraint("monthly_price >= 0", name="price_not_negative"),
        CheckConstraint(
            "transaction_fee_bps >= 0 AND transaction_fee_bps <= 10000", name="fee_range"
        ),
        CheckConstraint(
            "(max_sub_orgs IS NULL OR max_sub_orgs >= 0) AND "
            "(max_campaigns IS NULL OR max_campaigns >= 0) AND "
            "(max_workflows IS NULL OR max_workflows >= 0)",
            name="limits_not_negative",
        ),
    )
    id: Mapped[int] = _id()
    code: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    rank: Mapped[int] = mapped_column(Integer, nullable=False, unique=True)
    currency_code: Mapped[str] = mapped_column(String(3), nullable=False)
    monthly_price: Mapped[int] = mapped_column(Money, nullable=False)
    # Basis points: 250 = 2.50 %.
    transaction_fee_bps: Mapped[int] = mapped_column(Integer, nullable=False)
    # NULL means unlimited.
    max_sub_orgs: Mapped[int | None] = mapped_column(Integer)
    max_campaigns: Mapped[int | None] = mapped_column(Integer)
    max_workflows: Mapped[int | None] = mapped_column(Integer)
    retired: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        _enum_check("status", SubscriptionStatus, "status_known"),
        _enum_check("pending_kind", PlanChangeKind, "pending_kind_known", nullable=True),
        # A pending change is all-or-nothing; only a CANCEL has no target plan.
        CheckConstraint(
            "(pending_kind IS NULL AND pending_plan_id IS NULL AND pending_effective_at IS NULL)"
            f" OR (pending_kind = {_q(PlanChangeKind.CANCEL)} AND pending_plan_id IS NULL"
            " AND pending_effective_at IS NOT NULL)"
            f" OR ({_in('pending_kind', (PlanChangeKind.UPGRADE, PlanChangeKind.DOWNGRADE))} AND pending_plan_id IS NOT NULL"
            " AND pending_effective_at IS NOT NULL)",
            name="pending_change_whole",
        ),
        CheckConstraint("current_period_end > current_period_start", name="period_order"),
    )
    id: Mapped[int] = _id()
    connection_id: Mapped[int] = mapped_column(
        PK, ForeignKey("connections.id", ondelete="RESTRICT"), nullable=False, unique=True
    )
    plan_id: Mapped[int] = _fk("plans.id")
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    current_period_start: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    current_period_end: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    pending_kind: Mapped[str | None] = mapped_column(String(20))
    pending_plan_id: Mapped[int | None] = _fk("plans.id", nullable=True, index=False)
    pending_effective_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    pending_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = _created()


class Usage(Base):
    """Current consumption of plan-limited features, refreshed by the platform."""

    __tablename__ = "usage"
    __table_args__ = (
        CheckConstraint(
            "sub_orgs >= 0 AND campaigns >= 0 AND workflows >= 0", name="not_negative"
        ),
    )
    connection_id: Mapped[int] = mapped_column(
        PK, ForeignKey("connections.id", ondelete="RESTRICT"), primary_key=True
    )
    sub_orgs: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    campaigns: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    workflows: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = _created()


class AddOnProduct(Base):
    __tablename__ = "addon_products"
    __table_args__ = (
        CheckConstraint("monthly_price > 0", name="price_positive"),
        CheckConstraint("max_quantity > 0", name="max_positive"),
    )
    id: Mapped[int] = _id()
    code: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    currency_code: Mapped[str] = mapped_column(String(3), nullable=False)
    monthly_price: Mapped[int] = mapped_column(Money, nullable=False)
    max_quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    is_phone_number: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    retired: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class AddOn(Base):
    __tablename__ = "addons"
    __table_args__ = (
        UniqueConstraint("connection_id", "product_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "pending_quantity IS NULL OR (pending_quantity >= 0 AND pending_quantity < quantity)",
            name="pending_is_decrease",
        ),
        CheckConstraint(
            "(pending_quantity IS NULL) = (pending_effective_at IS NULL)", name="pending_whole"
        ),
    )
    id: Mapped[int] = _id()
    connection_id: Mapped[int] = _fk("connections.id")
    product_id: Mapped[int] = _fk("addon_products.id")
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    # A scheduled decrease (0 = removal) applied at the end of the period.
    pending_quantity: Mapped[int | None] = mapped_column(Integer)
    pending_effective_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        _enum_check("type", InvoiceType, "type_known"),
        _enum_check("status", InvoiceStatus, "status_known"),
        CheckConstraint("total >= 0", name="total_not_negative"),
        CheckConstraint("amount_paid >= 0 AND amount_paid <= total", name="paid_within_total"),
        CheckConstraint("amount_refunded >= 0 AND amount_refunded <= amount_paid", name="refunded_within_paid"),
        CheckConstraint(
            f"status <> {_q(InvoiceStatus.PAID)} OR (amount_paid = total AND paid_at IS NOT NULL)",
            name="paid_means_paid",
        ),
        CheckConstraint(f"(status = {_q(InvoiceStatus.VOID)}) = (voided_at IS NOT NULL)", name="void_has_time"),
        _enum_check("payment_method", PaymentMethod, "payment_method_known", nullable=True),
        Index("ix_invoices_connection_issued", "connection_id", "issued_at", "id"),
        # The billing run's backstop: one subscription invoice per connection and period.
        UniqueConstraint("connection_id", "type", "period_start", name="uq_invoices_one_per_period"),
        CheckConstraint("payment_attempts >= 0", name="attempts_not_negative"),
    )
    id: Mapped[int] = _id()
    connection_id: Mapped[int] = _fk("connections.id", index=False)
    number: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)
    type: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    currency_code: Mapped[str] = mapped_column(String(3), nullable=False)
    total: Mapped[int] = mapped_column(Money, nullable=False)
    amount_paid: Mapped[int] = mapped_column(Money, nullable=False, default=0)
    # What was paid and has been refunded (by credit notes: services/refunds.py), a card refund
    # still waiting for the processor's answer included.
    amount_refunded: Mapped[int] = mapped_column(Money, nullable=False, default=0, server_default=text("0"))
    # Method of the payment that settled it (or the last one), for display.
    payment_method: Mapped[str | None] = mapped_column(String(20))
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    void_reason: Mapped[str | None] = mapped_column(Text)
    # DRAFT -> OPEN (opened_at) -> PAID (paid_at) / VOID (voided_at) / UNCOLLECTIBLE (uncollectible_at).
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    uncollectible_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Card charges: how many were tried, why the last was declined, when the next is due.
    payment_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    payment_error: Mapped[str | None] = mapped_column(Text)
    next_payment_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class InvoiceLineItem(Base):
    __tablename__ = "invoice_line_items"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("amount = quantity * unit_amount", name="amount_adds_up"),
    )
    id: Mapped[int] = _id()
    invoice_id: Mapped[int] = _fk("invoices.id")
    description: Mapped[str] = mapped_column(String(300), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    unit_amount: Mapped[int] = mapped_column(Money, nullable=False)
    amount: Mapped[int] = mapped_column(Money, nullable=False)
    addon_product_id: Mapped[int | None] = _fk("addon_products.id", nullable=True, index=False)
    plan_id: Mapped[int | None] = _fk("plans.id", nullable=True, index=False)


class InvoicePayment(Base):
    __tablename__ = "invoice_payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        _enum_check("method", PAYMENT_METHODS, "method_known"),
    )
    id: Mapped[int] = _id()
    invoice_id: Mapped[int] = _fk("invoices.id")
    amount: Mapped[int] = mapped_column(Money, nullable=False)
    method: Mapped[str] = mapped_column(String(20), nullable=False)
    created_by_id: Mapped[int | None] = _fk("users.id", nullable=True, index=False)
    created_at: Mapped[datetime] = _created()
    # The ledger transfer that moved this payment.
    transfer_id: Mapped[int] = mapped_column(
        PK, ForeignKey("ledger_transfers.id", ondelete="RESTRICT"), nullable=False, unique=True
    )


_CHARGE_PENDING = text(f"status = {_q(CardChargeStatus.PENDING)}")


class CardCharge(Base):
    """A charge of the card on file, by the billing run or a Partner (pay now), recorded
    before the processor is called and settled after: PENDING while its outcome is unknown
    (the call is on its way, or its answer was lost: `revampd-bff payments reconcile` asks
    again with the same key), then SUCCEEDED with the invoice payment it made, or DECLINED
    with why. At most one is PENDING per invoice."""

    __tablename__ = "card_charges"
    __table_args__ = (
        _enum_check("status", CardChargeStatus, "status_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("attempt IS NULL OR attempt > 0", name="attempt_positive"),
        Index("ix_card_charges_one_pending", "invoice_id", unique=True,
              sqlite_where=_CHARGE_PENDING, postgresql_where=_CHARGE_PENDING),
        Index("ix_card_charges_pending", "created_at", "id",
              sqlite_where=_CHARGE_PENDING, postgresql_where=_CHARGE_PENDING),
    )
    id: Mapped[int] = _id()
    invoice_id: Mapped[int] = _fk("invoices.id", index=False)
    amount: Mapped[int] = mapped_column(Money, nullable=False)
    currency_code: Mapped[str] = mapped_column(String(3), nullable=False)
    # The card charged (its token at the processor) and the key the processor knows the charge by.
    card_token: Mapped[str] = mapped_column(String(200), nullable=False)
    processor_key: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    charge_id: Mapped[str | None] = mapped_column(String(100))
    decline_code: Mapped[str | None] = mapped_column(String(40))
    decline_reason: Mapped[str | None] = mapped_column(String(300))
    payment_id: Mapped[int | None] = mapped_column(
        PK, ForeignKey("invoice_payments.id", ondelete="RESTRICT"), unique=True
    )
    created_by_id: Mapped[int | None] = _fk("users.id", nullable=True, index=False)
    # The billing run's attempt at the invoice (1, 2, ...); None for a Partner's pay now.
    attempt: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created()
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CreditNote(Base):
    """An issued invoice reduced, as it is never edited (services/refunds.py): part or all of
    what was paid refunded (REFUND), or the invoice voided (VOID: what was still due is taken
    off, `due_reduced`, and what was paid refunded). Numbered from its connection's gap-free
    counter. Its refunds say how it was settled."""

    __tablename__ = "credit_notes"
    __table_args__ = (
        _enum_check("kind", CreditNoteKind, "kind_known"),
        CheckConstraint("total > 0", name="total_positive"),
        CheckConstraint("due_reduced >= 0 AND due_reduced <= total", name="due_reduced_within_total"),
        Index("ix_credit_notes_connection_created", "connection_id", "created_at", "id"),
    )
    id: Mapped[int] = _id()
    connection_id: Mapped[int] = _fk("connections.id", index=False)
    invoice_id: Mapped[int] = _fk("invoices.id")
    number: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(10), nullable=False)
    currency_code: Mapped[str] = mapped_column(String(3), nullable=False)
    total: Mapped[int] = mapped_column(Money, nullable=False)
    due_reduced: Mapped[int] = mapped_column(Money, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    created_by_id: Mapped[int | None] = _fk("users.id", nullable=True, index=False)
    created_at: Mapped[datetime] = _created()


_REFUND_PENDING = text(f"status = {_q(RefundStatus.PENDING)}")


class Refund(Base):
    """Money paid into an invoice given back by a credit note, to where it came from: a wallet
    payment to the wallet (one REFUND transfer, at once), a card payment through the processor
    (two-phase, as card charges: a PENDING REFUND transfer and `processor_key` recorded first,
    the processor asked with no transaction open, then the transfer posted, or voided and the
    amount credited to the wallet instead when the processor refuses)."""

    __tablename__ = "refunds"
    __table_args__ = (
        _enum_check("method", REFUND_METHODS, "method_known"),
        _enum_check("status", RefundStatus, "status_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(f"method = {_q(PaymentMethod.CARD)} OR status = {_q(RefundStatus.SUCCEEDED)}",
                        name="wallet_refunds_at_once"),
        CheckConstraint(f"(status = {_q(RefundStatus.FAILED)}) = (wallet_transfer_id IS NOT NULL)",
                        name="failed_goes_to_wallet"),
        CheckConstraint(f"(method = {_q(PaymentMethod.CARD)}) = (charge_id IS NOT NULL AND processor_key IS NOT NULL)",
                        name="card_refunds_name_their_charge"),
        Index("ix_refunds_pending", "created_at", "id", sqlite_where=_REFUND_PENDING, postgresql_where=_REFUND_PENDING),
    )
    id: Mapped[int] = _id()
    credit_note_id: Mapped[int] = _fk("credit_notes.id")
    invoice_id: Mapped[int] = _fk("invoices.id")
    # The payment it gives back (part of).
    payment_id: Mapped[int] = _fk("invoice_payments.id")
    method: Mapped[str] = mapped_column(String(20), nullable=False)
    amount: Mapped[int] = mapped_column(Money, nullable=False)
    currency_code: Mapped[str] = mapped_column(String(3), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    # A card refund: the charge it gives back, the key the processor knows it by, its answer.
    charge_id: Mapped[str | None] = mapped_column(String(100))
    processor_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    processor_refund_id: Mapped[str | None] = mapped_column(String(100))
    failure_reason: Mapped[str | None] = mapped_column(String(300))
    # The REFUND transfer: posted (wallet) or PENDING until the processor answers (card).
    transfer_id: Mapped[int] = mapped_column(
        PK, ForeignKey("ledger_transfers.id", ondelete="RESTRICT"), nullable=False, unique=True
    )
    # A card refund the processor refused: the REFUND transfer that credited the wallet instead.
    wallet_transfer_id: Mapped[int | None] = mapped_column(
        PK, ForeignKey("ledger_transfers.id", ondelete="RESTRICT"), unique=True
    )
    created_at: Mapped[datetime] = _created()
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        _enum_check("kind", AccountKind, "kind_known"),
        CheckConstraint("pending >= 0", name="pending_not_negative"),
        CheckConstraint("allow_negative OR balance - pending >= 0", name="no_overdraft"),
        CheckConstraint(
            f"({_in('kind', CONNECTION_ACCOUNT_KINDS)}) = (connection_id IS NOT NULL)",
            name="owner_known",
        ),
        CheckConstraint(
            f"(kind = {_q(AccountKind.RECEIVABLE)}) = (invoice_id IS NOT NULL)", name="receivable_has_invoice"
        ),
        CheckConstraint(f"(kind = {_q(AccountKind.PAYOUT)}) = (payout_id IS NOT NULL)", name="payout_has_payout"),
    )
    id: Mapped[int] = _id()
    # One account per code: "wallet:<connection>", "receivable:<invoice>", "payout:<payout>",
    # "<KIND>:<currency>:<connection>" for Revampd's own (a part per connection: ledger.system_account).
    code: Mapped[str] = mapped_column(String(80), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(30), nullable=False)
    currency_code: Mapped[str] = mapped_column(String(3), nullable=False)
    connection_id: Mapped[int | None] = _fk("connections.id", nullable=True)
    invoice_id: Mapped[int | None] = mapped_column(
        PK, ForeignKey("invoices.id", ondelete="RESTRICT"), unique=True
    )
    payout_id: Mapped[int | None] = mapped_column(
        PK, ForeignKey("payouts.id", ondelete="RESTRICT"), unique=True
    )
    allow_negative: Mapped[bool] = mapped_column(Boolean, nullable=False)
    # Posted balance (credits minus debits), and what PENDING transfers reserve from it.
    balance: Mapped[int] = mapped_column(Money, nullable=False, default=0)
    pending: Mapped[int] = mapped_column(Money, nullable=False, default=0)
    # The sequence number of the account's last entry.
    entry_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = _created()


class LedgerTransfer(Base):
    """An immutable movement of `amount` from the debit account to the credit account."""

    __tablename__ = "ledger_transfers"
    __table_args__ = (
        _enum_check("kind", TransferKind, "kind_known"),
        _enum_check("phase", TransferPhase, "phase_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="two_accounts"),
        CheckConstraint(
            f"({_in('phase', RESOLVING_PHASES)}) = (pending_id IS NOT NULL)",
            name="resolution_names_pending",
        ),
    )
    id: Mapped[int] = _id()
    # At most one transfer per key: a retry can never move money twice.
    key: Mapped[str] = mapped_column(String(250), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(30), nullable=False)
    phase: Mapped[str] = mapped_column(String(20), nullable=False)
    # Unique: a pending transfer is posted or voided at most once.
    pending_id: Mapped[int | None] = mapped_column(
        PK, ForeignKey("ledger_transfers.id", ondelete="RESTRICT"), unique=True
    )
    debit_account_id: Mapped[int] = _fk("ledger_accounts.id")
    credit_account_id: Mapped[int] = _fk("ledger_accounts.id")
    amount: Mapped[int] = mapped_column(Money, nullable=False)
    currency_code: Mapped[str] = mapped_column(String(3), nullable=False)
    # What the money moved for, shown on statements.
    invoice_id: Mapped[int | None] = _fk("invoices.id", nullable=True)
    affiliate_payout_id: Mapped[int | None] = _fk("affiliate_payouts.id", nullable=True, index=False)
    payout_id: Mapped[int | None] = _fk("payouts.id", nullable=True)
    memo: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    created_by_id: Mapped[int | None] = _fk("users.id", nullable=True, index=False)
    created_at: Mapped[datetime] = _created()


class LedgerEntry(Base):
    """One side of a posted transfer on one account, with the balance after it."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        CheckConstraint("sequence > 0", name="sequence_positive"),
        UniqueConstraint("account_id", "sequence"),
        Index("ix_ledger_entries_account_created", "account_id", "created_at", "id"),
    )
    id: Mapped[int] = _id()
    account_id: Mapped[int] = _fk("ledger_accounts.id", index=False)
    transfer_id: Mapped[int] = _fk("ledger_transfers.id")
    sequence: Mapped[int] = mapped_column(Integer, nullable=False)
    # Signed: credits positive, debits negative.
    amount: Mapped[int] = mapped_column(Money, nullable=False)
    balance_after: Mapped[int] = mapped_column(Money, nullable=False)
    created_at: Mapped[datetime] = _created()


class AffiliatePayout(Base):
    __tablename__ = "affiliate_payouts"
    __table_args__ = (
        _enum_check("period_type", PayoutPeriodType, "period_type_known"),
        _enum_check("credit_status", CreditStatus, "credit_status_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("period_end > period_start", name="period_order"),
        CheckConstraint(
            f"(credit_status = {_q(CreditStatus.APPLIED)}) = (applied_at IS NOT NULL)", name="applied_has_time"
        ),
        CheckConstraint(
            f"(credit_status = {_q(CreditStatus.APPLIED)}) = (transfer_id IS NOT NULL)", name="applied_has_transfer"
        ),
        UniqueConstraint("connection_id", "period_type", "period_start"),
    )
    id: Mapped[int] = _id()
    connection_id: Mapped[int] = _fk("connections.id")
    period_type: Mapped[str] = mapped_column(String(10), nullable=False)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    amount: Mapped[int] = mapped_column(Money, nullable=False)
    credit_status: Mapped[str] = mapped_column(String(10), nullable=False)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The transfer that credited it to the wallet (exactly once).
    transfer_id: Mapped[int | None] = mapped_column(
        PK, ForeignKey("ledger_transfers.id", ondelete="RESTRICT", use_alter=True), unique=True
    )
    created_at: Mapped[datetime] = _created()


class Payout(Base):
    """A Partner's earnings from Sub-Org transactions for a period.

    Its ledger account (kind PAYOUT) holds what is not yet paid out. The parts
    here are kept with every movement, in the same transaction, and
    `ledger verify` checks them against the ledger: available_amount is the
    account's balance less what transfers in flight reserve, bank_in_flight_amount
    is that reservation, bank_paid_amount and wallet_amount what left the account
    to a bank and to the wallet. A failed or canceled transfer's amount returns to
    available_amount.
    """

    __tablename__ = "payouts"
    __table_args__ = (
        _enum_check("status", PayoutStatus, "status_known"),
        _enum_check("period_type", PayoutPeriodType, "period_type_known"),
        _enum_check("disposition", DispositionKind, "disposition_known", nullable=True),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("fee_amount >= 0 AND gross_amount - fee_amount = amount", name="net_of_fees"),
        CheckConstraint(
            "available_amount >= 0 AND wallet_amount >= 0 AND bank_in_flight_amount >= 0 "
            "AND bank_paid_amount >= 0 AND clawed_back_amount >= 0",
            name="parts_not_negative",
        ),
        CheckConstraint(
            "available_amount + wallet_amount + bank_in_flight_amount + bank_paid_amount + clawed_back_amount = amount",
            name="parts_sum",
        ),
        CheckConstraint("period_end > period_start", name="period_order"),
        # One payout per connection and period, however many processes close it.
        UniqueConstraint("connection_id", "period_end", name="uq_payouts_one_per_period"),
        Index("ix_payouts_connection_period", "connection_id", "period_end", "id"),
    )
    id: Mapped[int] = _id()
    connection_id: Mapped[int] = _fk("connections.id", index=False)
    period_type: Mapped[str] = mapped_column(String(10), nullable=False, server_default=PayoutPeriodType.MONTHLY.value)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    currency_code: Mapped[str] = mapped_column(String(3), nullable=False)
    # Of its transactions: their gross, Revampd's fees, and the Partner's share (amount).
    gross_amount: Mapped[int] = mapped_column(Money, nullable=False)
    fee_amount: Mapped[int] = mapped_column(Money, nullable=False)
    amount: Mapped[int] = mapped_column(Money, nullable=False)
    available_amount: Mapped[int] = mapped_column(Money, nullable=False)
    wallet_amount: Mapped[int] = mapped_column(Money, nullable=False, default=0)
    bank_in_flight_amount: Mapped[int] = mapped_column(Money, nullable=False, default=0)
    bank_paid_amount: Mapped[int] = mapped_column(Money, nullable=False, default=0)
    # Taken back by clawbacks (services/clawbacks.py): Sub-Org transactions refunded or charged back.
    clawed_back_amount: Mapped[int] = mapped_column(Money, nullable=False, default=0, server_default=text("0"))
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    disposition: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class SubOrgTransaction(Base):
    """A Sub-Org charge processed through Revampd; the Partner's share is the gross less
    Revampd's transaction fee (fee_bps of the Partner's plan when it was recorded)."""

    __tablename__ = "sub_org_transactions"
    __table_args__ = (
        CheckConstraint("gross_amount > 0", name="gross_positive"),
        CheckConstraint(
            "partner_amount >= 0 AND partner_amount <= gross_amount", name="share_within_gross"
        ),
        CheckConstraint("fee_amount >= 0 AND partner_amount + fee_amount = gross_amount", name="share_plus_fee"),
        CheckConstraint("fee_bps >= 0 AND fee_bps <= 10000", name="fee_range"),
        _enum_check("kind", SubOrgTransactionKind, "kind_known"),
        # A transaction arrives once: a repeated external id is the same transaction.
        UniqueConstraint("connection_id", "external_id", name="uq_sub_org_transactions_external_id"),
        Index(
            "ix_sub_org_transactions_unpaid", "connection_id", "occurred_at",
            sqlite_where=text("payout_id IS NULL"), postgresql_where=text("payout_id IS NULL"),
        ),
    )
    id: Mapped[int] = _id()
    connection_id: Mapped[int] = _fk("connections.id")
    payout_id: Mapped[int | None] = _fk("payouts.id", nullable=True)
    external_id: Mapped[str] = mapped_column(String(100), nullable=False)
    sub_org_name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(String(300), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)  # SUBSCRIPTION / USAGE
    gross_amount: Mapped[int] = mapped_column(Money, nullable=False)
    # Basis points of the plan's fee when it was recorded (250 = 2.50 %), and the fee itself.
    fee_bps: Mapped[int] = mapped_column(Integer, nullable=False)
    fee_amount: Mapped[int] = mapped_column(Money, nullable=False)
    partner_amount: Mapped[int] = mapped_column(Money, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    recorded_at: Mapped[datetime] = _created()


class Clawback(Base):
    """A Sub-Org transaction refunded or charged back after it was recorded (the feed says so, or
    Revampd billing records it): the Partner's share of it (`amount`, at most its partner_amount
    over all its clawbacks) is taken back from payouts, never from the wallet. What a payout could
    not give is `outstanding`, carried to the connection's next payouts (services/clawbacks.py);
    each taking is a ClawbackRecovery."""

    __tablename__ = "clawbacks"
    __table_args__ = (
        _enum_check("kind", ClawbackKind, "kind_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("outstanding >= 0 AND outstanding <= amount", name="outstanding_within_amount"),
        # A reversal arrives once: a repeated external id is the same reversal.
        UniqueConstraint("connection_id", "external_id", name="uq_clawbacks_external_id"),
        Index("ix_clawbacks_outstanding", "connection_id", "created_at", "id",
              sqlite_where=text("outstanding > 0"), postgresql_where=text("outstanding > 0")),
    )
    id: Mapped[int] = _id()
    connection_id: Mapped[int] = _fk("connections.id", index=False)
    transaction_id: Mapped[int] = _fk("sub_org_transactions.id")
    external_id: Mapped[str] = mapped_column(String(100), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    currency_code: Mapped[str] = mapped_column(String(3), nullable=False)
    amount: Mapped[int] = mapped_column(Money, nullable=False)
    outstanding: Mapped[int] = mapped_column(Money, nullable=False)
    reason: Mapped[str] = mapped_column(String(300), nullable=False)
    created_by_id: Mapped[int | None] = _fk("users.id", nullable=True, index=False)
    created_at: Mapped[datetime] = _created()


class ClawbackRecovery(Base):
    """Part of a clawback taken from a payout's available money: one CLAWBACK ledger transfer."""

    __tablename__ = "clawback_recoveries"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)
    id: Mapped[int] = _id()
    clawback_id: Mapped[int] = _fk("clawbacks.id")
    payout_id: Mapped[int] = _fk("payouts.id")
    amount: Mapped[int] = mapped_column(Money, nullable=False)
    transfer_id: Mapped[int] = mapped_column(
        PK, ForeignKey("ledger_transfers.id", ondelete="RESTRICT"), nullable=False, unique=True
    )
    created_at: Mapped[datetime] = _created()


class Document(Base):
    """A PDF made once and kept (services/pdfs.py): an object in one state (`revision`, a digest
    of what the document shows) always gives the same bytes, however the renderer changes."""

    __tablename__ = "documents"
    __table_args__ = (
        _enum_check("kind", DocumentKind, "kind_known"),
        UniqueConstraint("kind", "object_id", "revision", name="uq_documents_revision"),
    )
    id: Mapped[int] = _id()
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    object_id: Mapped[int] = mapped_column(PK, nullable=False)
    connection_id: Mapped[int] = _fk("connections.id", index=False)
    revision: Mapped[str] = mapped_column(String(64), nullable=False)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = _created()


class BankAccount(Base):
    __tablename__ = "bank_accounts"
    __table_args__ = (
        CheckConstraint("length(account_last4) = 4", name="last4_len"),
        # At most one default among the live accounts of a connection.
        Index(
            "uq_bank_accounts_one_default",
            "connection_id",
            unique=True,
            sqlite_where=text("is_default AND removed_at IS NULL"),
            postgresql_where=text("is_default AND removed_at IS NULL"),
        ),
    )
    id: Mapped[int] = _id()
    connection_id: Mapped[int] = _fk("connections.id")
    holder_name: Mapped[str] = mapped_column(String(200), nullable=False)
    bank_name: Mapped[str] = mapped_column(String(200), nullable=False)
    routing_number: Mapped[str] = mapped_column(String(20), nullable=False)
    account_last4: Mapped[str] = mapped_column(String(4), nullable=False)
    # Opaque token from the bank transfer processor; the full number is never stored.
    account_token: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = _created()
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BankTransfer(Base):
    """Part of a payout sent to a bank: a PENDING ledger transfer (pending_transfer_id)
    from the payout's account until the processor says PAID (posted) or FAILED, or the
    Partner cancels it (voided: the amount is available on the payout again). A PAID one
    the bank returns is RETURNED: a BANK_RETURN transfer puts the amount back on the payout."""

    __tablename__ = "bank_transfers"
    __table_args__ = (
        _enum_check("status", TransferStatus, "status_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index(
            "ix_bank_transfers_in_flight", "id",
            sqlite_where=text(_in("status", IN_FLIGHT)), postgresql_where=text(_in("status", IN_FLIGHT)),
        ),
    )
    id: Mapped[int] = _id()
    payout_id: Mapped[int] = _fk("payouts.id")
    bank_account_id: Mapped[int] = _fk("bank_accounts.id")
    amount: Mapped[int] = mapped_column(Money, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    # The ledger transfer that reserves the amount; its resolution posts or voids it.
    pending_transfer_id: Mapped[int] = mapped_column(
        PK, ForeignKey("ledger_transfers.id", ondelete="RESTRICT"), nullable=False, unique=True
    )
    # The processor's id for it, once it has accepted it.
    gateway_ref: Mapped[str | None] = mapped_column(String(100), unique=True)
    failure_code: Mapped[str | None] = mapped_column(String(40))
    failure_reason: Mapped[str | None] = mapped_column(String(300))
    created_by_id: Mapped[int | None] = _fk("users.id", nullable=True, index=False)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()
    # When it was first being sent to the processor (services.payouts.submit): from then on the
    # processor may have it, so it is canceled only through the processor, once its answer is in.
    sending_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    in_transit_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A PAID transfer the bank sent back (an ACH return: R02 account closed, R03 no account):
    # the BANK_RETURN ledger transfer that put its amount back on the payout.
    returned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    return_code: Mapped[str | None] = mapped_column(String(40))
    return_reason: Mapped[str | None] = mapped_column(String(300))
    return_transfer_id: Mapped[int | None] = mapped_column(
        PK, ForeignKey("ledger_transfers.id", ondelete="RESTRICT"), unique=True
    )


class PayoutDisposition(Base):
    """One decision about a payout: what went to the wallet and what to a bank, by whom
    (null: the connection's payout preference, applied when the payout was made)."""

    __tablename__ = "payout_dispositions"
    __table_args__ = (
        _enum_check("kind", DispositionKind, "kind_known"),
        CheckConstraint("wallet_amount >= 0 AND bank_amount >= 0", name="parts_not_negative"),
        CheckConstraint(
            f"(kind = {_q(DispositionKind.CREDIT)} AND wallet_amount > 0 AND bank_amount = 0) OR "
            f"(kind = {_q(DispositionKind.TRANSFER)} AND wallet_amount = 0 AND bank_amount > 0) OR "
            f"(kind = {_q(DispositionKind.SPLIT)} AND wallet_amount > 0 AND bank_amount > 0)",
            name="parts_match_kind",
        ),
        CheckConstraint("(wallet_amount > 0) = (credit_transfer_id IS NOT NULL)", name="credit_has_transfer"),
        CheckConstraint("(bank_amount > 0) = (bank_transfer_id IS NOT NULL)", name="bank_has_transfer"),
    )
    id: Mapped[int] = _id()
    payout_id: Mapped[int] = _fk("payouts.id")
    kind: Mapped[str] = mapped_column(String(10), nullable=False)
    wallet_amount: Mapped[int] = mapped_column(Money, nullable=False)
    bank_amount: Mapped[int] = mapped_column(Money, nullable=False)
    credit_transfer_id: Mapped[int | None] = mapped_column(
        PK, ForeignKey("ledger_transfers.id", ondelete="RESTRICT"), unique=True
    )
    bank_transfer_id: Mapped[int | None] = mapped_column(
        PK, ForeignKey("bank_transfers.id", ondelete="RESTRICT"), unique=True
    )
    created_by_id: Mapped[int | None] = _fk("users.id", nullable=True, index=False)
    created_at: Mapped[datetime] = _created()


class BankTransferEvent(Base):
    """A status change of a bank transfer as it arrived: a processor's webhook event, a
    poll of the processor, or the Partner's cancel. Each event id is handled once;
    `applied` says whether it moved the transfer (a late or repeated one does not)."""

    __tablename__ = "bank_transfer_events"
    __table_args__ = (
        _enum_check("source", TransferEventSource, "source_known"),
        _enum_check("status", TransferStatus, "status_known"),
    )
    id: Mapped[int] = _id()
    event_id: Mapped[str] = mapped_column(String(120), nullable=False, unique=True)
    bank_transfer_id: Mapped[int | None] = _fk("bank_transfers.id", nullable=True)
    source: Mapped[str] = mapped_column(String(10), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    failure_code: Mapped[str | None] = mapped_column(String(40))
    failure_reason: Mapped[str | None] = mapped_column(String(300))
    applied: Mapped[bool] = mapped_column(Boolean, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    received_at: Mapped[datetime] = _created()


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        _enum_check("status", TicketStatus, "status_known"),
        _enum_check("priority", TicketPriority, "priority_known"),
        CheckConstraint("length(title) BETWEEN 1 AND 200", name="title_len"),
        CheckConstraint(
            "(subject_type IS NULL) = (subject_id IS NULL)", name="subject_whole"
        ),
        _enum_check("subject_type", TICKET_SUBJECTS, "subject_known", nullable=True),
        UniqueConstraint("connection_id", "number"),
        Index("ix_tickets_connection_activity", "connection_id", "last_activity_at", "id"),
        Index("ix_tickets_status_created", "status", "created_at", "id"),
    )
    id: Mapped[int] = _id()
    connection_id: Mapped[int] = _fk("connections.id", index=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    priority: Mapped[str] = mapped_column(String(10), nullable=False)
    assigned_to_id: Mapped[int | None] = _fk("users.id", nullable=True)
    created_by_id: Mapped[int] = _fk("users.id", index=False)
    # What the ticket is about: ("invoice" | "payout", id) of the same connection.
    subject_type: Mapped[str | None] = mapped_column(String(20))
    subject_id: Mapped[int | None] = mapped_column(PK)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()
    last_activity_at: Mapped[datetime] = _created()
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TicketMessage(Base):
    __tablename__ = "ticket_messages"
    __table_args__ = (
        CheckConstraint("length(body) BETWEEN 1 AND 10000", name="body_len"),
        Index("ix_ticket_messages_ticket_created", "ticket_id", "created_at", "id"),
    )
    id: Mapped[int] = _id()
    ticket_id: Mapped[int] = _fk("tickets.id", index=False)
    author_id: Mapped[int] = _fk("users.id", index=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    # Internal notes are for Revampd staff only.
    internal: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = _created()


class IdempotencyKey(Base):
    """First result of a creating mutation, replayed for the same key (services/idempotency.py)."""

    __tablename__ = "idempotency_keys"
    # By age: `revampd-bff idempotency purge` removes those past the retention.
    __table_args__ = (UniqueConstraint("user_id", "key"), Index("ix_idempotency_keys_created_at", "created_at", "id"))
    id: Mapped[int] = _id()
    user_id: Mapped[int] = _fk("users.id", index=False)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    operation: Mapped[str] = mapped_column(String(60), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    result_type: Mapped[str | None] = mapped_column(String(40))
    result_id: Mapped[int | None] = mapped_column(PK)
    created_at: Mapped[datetime] = _created()


class Event(Base):
    """A committed change to something a connection's users can follow (db/events.py): its
    subject (a table and row id) and whether it was made or changed. Numbered per connection
    in commit order (`seq`, from `EventSequence`); written in the transaction that made the
    change, so there is none for a transaction that rolled back."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("connection_id", "seq"),
        _enum_check("action", EventAction, "action_known"),
        _enum_check("subject", EVENT_SUBJECTS, "subject_known"),
        Index("ix_events_ticket", "ticket_id", "id"),
        Index("ix_events_occurred_at", "occurred_at", "id"),
    )
    id: Mapped[int] = _id()
    # No foreign key, here and in EventSequence: checking one would take a KEY SHARE lock on the
    # connection's row as the committing transaction's last statements, which deadlocks with a
    # transaction holding that row FOR UPDATE (an invoice's numbering) and waiting for the sequence.
    connection_id: Mapped[int] = mapped_column(PK, nullable=False)
    seq: Mapped[int] = mapped_column(PK, nullable=False)
    subject: Mapped[str] = mapped_column(String(30), nullable=False)
    subject_id: Mapped[int] = mapped_column(PK, nullable=False)
    action: Mapped[str] = mapped_column(String(10), nullable=False)
    # The ticket a ticket's or a message's event is about (support's queue, a ticket's followers).
    ticket_id: Mapped[int | None] = mapped_column(PK)
    occurred_at: Mapped[datetime] = _created()


class EventSequence(Base):
    """The last `Event.seq` of each connection: taken (and locked) by the committing
    transaction as its last statement, so events are numbered in commit order."""

    __tablename__ = "event_sequences"
    connection_id: Mapped[int] = mapped_column(PK, primary_key=True)  # no foreign key: see Event
    last_seq: Mapped[int] = mapped_column(PK, nullable=False)


class NotificationSetting(Base):
    """A user's choice for one kind of email (none: the kind's default, services.notifications)."""

    __tablename__ = "notification_settings"
    __table_args__ = (
        _enum_check("kind", NotificationKind, "kind_known"),
        CheckConstraint("threshold IS NULL OR threshold >= 0", name="threshold_not_negative"),
    )
    user_id: Mapped[int] = mapped_column(PK, ForeignKey("users.id", ondelete="RESTRICT"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(30), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    # WALLET_LOW: the balance (minor units of the connection's currency) to be told of falling below.
    threshold: Mapped[int | None] = mapped_column(Money)
    updated_at: Mapped[datetime] = _created()


class Notification(Base):
    """An email to one user about one committed change, written once (`key`: one per user and
    thing told of) and sent by `revampd-bff notifications send`: PENDING until the SMTP server
    took it (SENT), retried with backoff, FAILED after the last attempt."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("user_id", "key"),
        _enum_check("kind", NotificationKind, "kind_known"),
        _enum_check("status", NotificationStatus, "status_known"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index("ix_notifications_due", "status", "next_attempt_at", "id"),
    )
    id: Mapped[int] = _id()
    user_id: Mapped[int] = _fk("users.id", index=False)
    event_id: Mapped[int] = _fk("events.id")
    kind: Mapped[str] = mapped_column(String(30), nullable=False)
    key: Mapped[str] = mapped_column(String(120), nullable=False)
    subject: Mapped[str] = mapped_column(String(200), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(10), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # Set when a sender took it (before calling the SMTP server): another sender leaves it alone a while.
    sending_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class NotificationCursor(Base):
    """The last event of each connection that `notifications send` has turned into notifications."""

    __tablename__ = "notification_cursors"
    connection_id: Mapped[int] = mapped_column(PK, ForeignKey("connections.id", ondelete="RESTRICT"), primary_key=True)
    last_seq: Mapped[int] = mapped_column(PK, nullable=False)
