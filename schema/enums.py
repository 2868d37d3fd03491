"""The domain enums, as GraphQL enums."""

import strawberry

from services import enums
from services.access import Role as _Role

Role = strawberry.enum(_Role, name="Role")
SubscriptionStatus = strawberry.enum(enums.SubscriptionStatus, name="SubscriptionStatus")
PlanChangeKind = strawberry.enum(enums.PlanChangeKind, name="PlanChangeKind")
InvoiceType = strawberry.enum(enums.InvoiceType, name="InvoiceType")
InvoiceStatus = strawberry.enum(enums.InvoiceStatus, name="InvoiceStatus")
PaymentMethod = strawberry.enum(enums.PaymentMethod, name="PaymentMethod")
WalletEntryKind = strawberry.enum(enums.WalletEntryKind, name="WalletEntryKind")
PayoutPeriodType = strawberry.enum(enums.PayoutPeriodType, name="PayoutPeriodType")
CreditStatus = strawberry.enum(enums.CreditStatus, name="CreditStatus")
PayoutStatus = strawberry.enum(enums.PayoutStatus, name="PayoutStatus")
PayoutDispositionKind = strawberry.enum(enums.PayoutDisposition, name="PayoutDispositionKind")
PayoutMode = strawberry.enum(enums.PayoutMode, name="PayoutMode")
SubOrgTransactionKind = strawberry.enum(enums.SubOrgTransactionKind, name="SubOrgTransactionKind")
TransferStatus = strawberry.enum(enums.TransferStatus, name="TransferStatus")
TicketStatus = strawberry.enum(enums.TicketStatus, name="TicketStatus")
TicketPriority = strawberry.enum(enums.TicketPriority, name="TicketPriority")
WalletAdjustmentKind = strawberry.enum(enums.WalletAdjustmentKind, name="WalletAdjustmentKind")
