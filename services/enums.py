"""The domain's states are defined once, in db/states.py. This module only re-exports them for
the modules that still import them from here (resolvers/plans.py, resolvers/wallet.py,
schema/wallet.py): import them from db.states instead, then delete this module."""

from db.states import CreditStatus as CreditStatus
from db.states import InvoiceStatus as InvoiceStatus
from db.states import InvoiceType as InvoiceType
from db.states import PaymentMethod as PaymentMethod
from db.states import PayoutDisposition as PayoutDisposition
from db.states import PayoutMode as PayoutMode
from db.states import PayoutPeriodType as PayoutPeriodType
from db.states import PayoutStatus as PayoutStatus
from db.states import PlanChangeKind as PlanChangeKind
from db.states import SubOrgTransactionKind as SubOrgTransactionKind
from db.states import SubscriptionStatus as SubscriptionStatus
from db.states import TicketPriority as TicketPriority
from db.states import TicketStatus as TicketStatus
from db.states import TransferStatus as TransferStatus
from db.states import WalletAdjustmentKind as WalletAdjustmentKind
from db.states import WalletEntryKind as WalletEntryKind
