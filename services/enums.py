"""Domain enumerations shared by the services and exposed by the graph."""

from __future__ import annotations

from enum import Enum


class SubscriptionStatus(str, Enum):
    ACTIVE = "ACTIVE"
    CANCELED = "CANCELED"


class PlanChangeKind(str, Enum):
    UPGRADE = "UPGRADE"
    DOWNGRADE = "DOWNGRADE"
    CANCEL = "CANCEL"


class InvoiceType(str, Enum):
    SUBSCRIPTION = "SUBSCRIPTION"
    ADD_ON = "ADD_ON"
    ONE_TIME = "ONE_TIME"


class InvoiceStatus(str, Enum):
    DRAFT = "DRAFT"
    OPEN = "OPEN"
    PAID = "PAID"
    VOID = "VOID"
    UNCOLLECTIBLE = "UNCOLLECTIBLE"


class PaymentMethod(str, Enum):
    WALLET = "WALLET"
    CARD = "CARD"
    BANK_TRANSFER = "BANK_TRANSFER"
    # An invoice paid by more than one method (never a single payment's).
    MIXED = "MIXED"


class WalletEntryKind(str, Enum):
    AFFILIATE_PAYOUT = "AFFILIATE_PAYOUT"
    REVENUE_SHARE = "REVENUE_SHARE"
    MANUAL_ADJUSTMENT = "MANUAL_ADJUSTMENT"
    PAYOUT_CREDIT = "PAYOUT_CREDIT"
    INVOICE_PAYMENT = "INVOICE_PAYMENT"
    REVERSAL = "REVERSAL"


class PayoutPeriodType(str, Enum):
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"


class CreditStatus(str, Enum):
    PENDING = "PENDING"
    APPLIED = "APPLIED"


class PayoutStatus(str, Enum):
    """AVAILABLE: nothing disposed of yet; PARTIALLY_DISPOSED: some still available;
    PROCESSING: none available, a bank transfer in flight; COMPLETED: all paid out."""

    AVAILABLE = "AVAILABLE"
    PARTIALLY_DISPOSED = "PARTIALLY_DISPOSED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"


class PayoutDisposition(str, Enum):
    CREDIT = "CREDIT"
    TRANSFER = "TRANSFER"
    SPLIT = "SPLIT"


class PayoutMode(str, Enum):
    """What happens to a new payout (a connection's payout preference)."""

    MANUAL = "MANUAL"
    CREDIT = "CREDIT"
    TRANSFER = "TRANSFER"
    SPLIT = "SPLIT"


class TransferStatus(str, Enum):
    PENDING = "PENDING"
    IN_TRANSIT = "IN_TRANSIT"
    PAID = "PAID"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    RETURNED = "RETURNED"


class SubOrgTransactionKind(str, Enum):
    SUBSCRIPTION = "SUBSCRIPTION"
    USAGE = "USAGE"


class TicketStatus(str, Enum):
    OPEN = "OPEN"
    IN_PROGRESS = "IN_PROGRESS"
    RESOLVED = "RESOLVED"
    CLOSED = "CLOSED"


class TicketPriority(str, Enum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class WalletAdjustmentKind(str, Enum):
    """What Revampd billing credits (or takes back): the kinds of adjustWallet."""

    MANUAL_ADJUSTMENT = "MANUAL_ADJUSTMENT"
    REVENUE_SHARE = "REVENUE_SHARE"
