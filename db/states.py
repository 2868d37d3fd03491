"""Every set of values a column may hold, once: the models' CHECK constraints, the services'
rules and the graph's enums (schema/enums.py, which describes each value) are made from these."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args


class Role(StrEnum):
    PARTNER_ADMIN = "PARTNER_ADMIN"
    PARTNER_MEMBER = "PARTNER_MEMBER"
    SUPPORT = "SUPPORT"
    BILLING_ADMIN = "BILLING_ADMIN"


# Revampd's staff have no Partner; a Partner's users have one.
STAFF_ROLES = (Role.SUPPORT, Role.BILLING_ADMIN)
PARTNER_ROLES = (Role.PARTNER_ADMIN, Role.PARTNER_MEMBER)


class SubscriptionStatus(StrEnum):
    ACTIVE = "ACTIVE"
    CANCELED = "CANCELED"


class PlanChangeKind(StrEnum):
    UPGRADE = "UPGRADE"
    DOWNGRADE = "DOWNGRADE"
    CANCEL = "CANCEL"


class InvoiceType(StrEnum):
    SUBSCRIPTION = "SUBSCRIPTION"
    ADD_ON = "ADD_ON"
    ONE_TIME = "ONE_TIME"


class InvoiceStatus(StrEnum):
    DRAFT = "DRAFT"
    OPEN = "OPEN"
    PAID = "PAID"
    VOID = "VOID"
    UNCOLLECTIBLE = "UNCOLLECTIBLE"


class PaymentMethod(StrEnum):
    WALLET = "WALLET"
    CARD = "CARD"
    BANK_TRANSFER = "BANK_TRANSFER"
    # An invoice paid by more than one method (never a single payment's).
    MIXED = "MIXED"


# The methods of a single payment.
PAYMENT_METHODS = tuple(p for p in PaymentMethod if p is not PaymentMethod.MIXED)


class CardChargeStatus(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    DECLINED = "DECLINED"


class AccountKind(StrEnum):
    """Accounts of the double-entry ledger (services/ledger.py). A Partner's accounts (its
    WALLET, one PAYOUT per payout) never go below zero; RECEIVABLE (one per invoice: minus
    what is still due) and Revampd's own accounts (the rest) may."""

    WALLET = "WALLET"
    PAYOUT = "PAYOUT"
    RECEIVABLE = "RECEIVABLE"
    SUB_ORG_EARNINGS = "SUB_ORG_EARNINGS"
    AFFILIATE_PROGRAM = "AFFILIATE_PROGRAM"
    REVENUE_SHARE = "REVENUE_SHARE"
    ADJUSTMENTS = "ADJUSTMENTS"
    CARD_PROCESSOR = "CARD_PROCESSOR"
    BANK_OUT = "BANK_OUT"
    REVAMPD_REVENUE = "REVAMPD_REVENUE"


PARTNER_ACCOUNT_KINDS = (AccountKind.WALLET, AccountKind.PAYOUT)
CONNECTION_ACCOUNT_KINDS = (*PARTNER_ACCOUNT_KINDS, AccountKind.RECEIVABLE)
SYSTEM_ACCOUNT_KINDS = tuple(k for k in AccountKind if k not in CONNECTION_ACCOUNT_KINDS)


class TransferKind(StrEnum):
    INVOICE_ISSUED = "INVOICE_ISSUED"
    INVOICE_PAYMENT = "INVOICE_PAYMENT"
    INVOICE_VOID = "INVOICE_VOID"
    INVOICE_UNCOLLECTIBLE = "INVOICE_UNCOLLECTIBLE"
    AFFILIATE_PAYOUT = "AFFILIATE_PAYOUT"
    REVENUE_SHARE = "REVENUE_SHARE"
    MANUAL_ADJUSTMENT = "MANUAL_ADJUSTMENT"
    REVERSAL = "REVERSAL"
    PAYOUT_FUNDING = "PAYOUT_FUNDING"
    PAYOUT_CREDIT = "PAYOUT_CREDIT"
    BANK_TRANSFER = "BANK_TRANSFER"
    BANK_RETURN = "BANK_RETURN"
    # A credit note takes an amount off an issued invoice (revenue back to its receivable); each
    # REFUND then pays what was paid back out of the receivable: to the wallet, or to the card.
    CREDIT_NOTE = "CREDIT_NOTE"
    REFUND = "REFUND"
    # A Sub-Org transaction refunded or charged back after it was counted: the Partner's share of
    # it taken back from a payout's account (services/clawbacks.py).
    CLAWBACK = "CLAWBACK"


class TransferPhase(StrEnum):
    """POSTED moves money at once. PENDING reserves it on the debit account; exactly one later
    transfer naming it (pending_id) posts it (POST_PENDING) or releases it (VOID_PENDING)."""

    POSTED = "POSTED"
    PENDING = "PENDING"
    POST_PENDING = "POST_PENDING"
    VOID_PENDING = "VOID_PENDING"


# The phases that move money (each has two entries); the others only reserve or release it.
MOVING_PHASES = (TransferPhase.POSTED, TransferPhase.POST_PENDING)
RESOLVING_PHASES = (TransferPhase.POST_PENDING, TransferPhase.VOID_PENDING)


class WalletEntryKind(StrEnum):
    """The kinds of transfer (TransferKind) that move a wallet's money."""

    AFFILIATE_PAYOUT = "AFFILIATE_PAYOUT"
    REVENUE_SHARE = "REVENUE_SHARE"
    MANUAL_ADJUSTMENT = "MANUAL_ADJUSTMENT"
    PAYOUT_CREDIT = "PAYOUT_CREDIT"
    INVOICE_PAYMENT = "INVOICE_PAYMENT"
    REVERSAL = "REVERSAL"
    REFUND = "REFUND"


class CreditNoteKind(StrEnum):
    """Why an issued invoice was reduced: part or all of what was paid REFUNDed, or the invoice VOIDed."""

    REFUND = "REFUND"
    VOID = "VOID"


class RefundStatus(StrEnum):
    """A wallet refund SUCCEEDED at once. A card refund is PENDING until the processor's answer is
    recorded; FAILED when it refused, and then the amount was credited to the wallet instead."""

    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


# The methods money is refunded by: where it came from.
REFUND_METHODS = (PaymentMethod.WALLET, PaymentMethod.CARD)


class WalletAdjustmentKind(StrEnum):
    """What Revampd billing credits (or takes back): the kinds of adjustWallet."""

    MANUAL_ADJUSTMENT = "MANUAL_ADJUSTMENT"
    REVENUE_SHARE = "REVENUE_SHARE"


class PayoutPeriodType(StrEnum):
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"


class CreditStatus(StrEnum):
    PENDING = "PENDING"
    APPLIED = "APPLIED"


class PayoutStatus(StrEnum):
    """AVAILABLE: nothing disposed of yet; PARTIALLY_DISPOSED: some still available;
    PROCESSING: none available, a bank transfer in flight; COMPLETED: all paid out."""

    AVAILABLE = "AVAILABLE"
    PARTIALLY_DISPOSED = "PARTIALLY_DISPOSED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"


class PayoutDisposition(StrEnum):
    CREDIT = "CREDIT"
    TRANSFER = "TRANSFER"
    SPLIT = "SPLIT"


class PayoutMode(StrEnum):
    """What happens to a new payout (a connection's payout preference; MANUAL is stored as none)."""

    MANUAL = "MANUAL"
    CREDIT = "CREDIT"
    TRANSFER = "TRANSFER"
    SPLIT = "SPLIT"


class TransferStatus(StrEnum):
    PENDING = "PENDING"
    IN_TRANSIT = "IN_TRANSIT"
    PAID = "PAID"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    RETURNED = "RETURNED"


# A bank transfer the processor may still move (or the Partner, while PENDING, cancel).
IN_FLIGHT = (TransferStatus.PENDING, TransferStatus.IN_TRANSIT)


class TransferEventSource(StrEnum):
    """Where a bank transfer's status change came from."""

    WEBHOOK = "WEBHOOK"
    SYNC = "SYNC"
    GATEWAY = "GATEWAY"
    PARTNER = "PARTNER"


class ClawbackKind(StrEnum):
    """Why a Sub-Org transaction's money went back: the Sub-Org was refunded, or its bank charged it back."""

    REFUND = "REFUND"
    CHARGEBACK = "CHARGEBACK"


class DocumentKind(StrEnum):
    """The PDFs the service makes and keeps (services/pdfs.py)."""

    INVOICE = "INVOICE"
    CREDIT_NOTE = "CREDIT_NOTE"
    RECEIPT = "RECEIPT"
    PAYOUT_STATEMENT = "PAYOUT_STATEMENT"


class SubOrgTransactionKind(StrEnum):
    SUBSCRIPTION = "SUBSCRIPTION"
    USAGE = "USAGE"


class TicketStatus(StrEnum):
    OPEN = "OPEN"
    IN_PROGRESS = "IN_PROGRESS"
    RESOLVED = "RESOLVED"
    CLOSED = "CLOSED"


class TicketPriority(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


# What a ticket may be about.
SubjectKind = Literal["invoice", "payout"]
TICKET_SUBJECTS: tuple[SubjectKind, ...] = get_args(SubjectKind)


class EventAction(StrEnum):
    """What happened to an event's subject (db/events.py)."""

    CREATED = "CREATED"
    UPDATED = "UPDATED"


# The tables whose committed changes are events, by the subject name an event keeps.
EVENT_SUBJECTS = (
    "tickets", "ticket_messages", "invoices", "payouts", "bank_transfers", "addons", "subscriptions",
    "affiliate_payouts", "ledger_entries", "wallets",
)


class NotificationKind(StrEnum):
    """What a user may be told by email (services/notifications.py)."""

    INVOICE_ISSUED = "INVOICE_ISSUED"
    CHARGE_DECLINED = "CHARGE_DECLINED"
    PAYOUT_MADE = "PAYOUT_MADE"
    BANK_TRANSFER_UPDATE = "BANK_TRANSFER_UPDATE"
    WALLET_LOW = "WALLET_LOW"
    TICKET_REPLY = "TICKET_REPLY"


class NotificationStatus(StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"
