"""The domain's states (db/states.py), as GraphQL enums, each value described."""

from __future__ import annotations

from enum import Enum

import strawberry

from db import states


def described(cls: type[Enum], name: str, description: str, values: dict[str, str]) -> None:
    """`cls` as the GraphQL enum `name`, with a description for each of its values (all of them)."""
    if set(values) != set(cls.__members__):
        raise TypeError(f"{name}: describe exactly its values {sorted(cls.__members__)}, not {sorted(values)}")
    strawberry.enum(cls, name=name, description=description)
    for value in cls.__strawberry_definition__.values:  # type: ignore[attr-defined]  # set by strawberry.enum
        value.description = values[value.name]


Role = states.Role
described(Role, "Role", "What a user may do; a token carries one or more.", {
    "PARTNER_ADMIN": "A Partner's administrator: everything a member may, plus the plan, add-ons, invoices, "
    "payment method, payouts and bank accounts.",
    "PARTNER_MEMBER": "A Partner's user: reads the connection, and submits, replies to and closes its tickets.",
    "SUPPORT": "Revampd support: works the ticket queue of every Partner.",
    "BILLING_ADMIN": "Revampd billing: issues, voids and writes off invoices, adjusts wallets, applies "
    "affiliate payouts and records Sub-Org transactions.",
})
SubscriptionStatus = states.SubscriptionStatus
described(SubscriptionStatus, "SubscriptionStatus", "Whether the plan is still billed.", {
    "ACTIVE": "Billed each period.",
    "CANCELED": "Ended by a cancellation that took effect; no longer billed.",
})
PlanChangeKind = states.PlanChangeKind
described(PlanChangeKind, "PlanChangeKind", "What a plan change does.", {
    "UPGRADE": "To a higher tier.",
    "DOWNGRADE": "To a lower tier.",
    "CANCEL": "End the subscription.",
})
InvoiceType = states.InvoiceType
described(InvoiceType, "InvoiceType", "What an invoice bills.", {
    "SUBSCRIPTION": "A period of the plan, with its add-ons as lines, issued by the billing run.",
    "ADD_ON": "Add-on charges billed on their own.",
    "ONE_TIME": "A one-time platform service, issued by Revampd billing (issueInvoice).",
})
InvoiceStatus = states.InvoiceStatus
described(InvoiceStatus, "InvoiceStatus", "Where an invoice is in its life.", {
    "DRAFT": "Prepared ahead of its period by the billing run; not yet due and may still change.",
    "OPEN": "Issued and due: it can be paid.",
    "PAID": "Paid in full.",
    "VOID": "Canceled by Revampd billing: owed no more, and what the wallet paid went back to the wallet.",
    "UNCOLLECTIBLE": "Written off: what was still due will not be collected; what was paid stays paid.",
})
PaymentMethod = states.PaymentMethod
described(PaymentMethod, "PaymentMethod", "How money was paid into an invoice.", {
    "WALLET": "From the connection's wallet.",
    "CARD": "Charged to the card on file.",
    "BANK_TRANSFER": "By a bank transfer.",
    "MIXED": "An invoice paid by more than one method (never a single payment's).",
})
WalletEntryKind = states.WalletEntryKind
described(WalletEntryKind, "WalletEntryKind", "Why money moved into or out of a wallet.", {
    "AFFILIATE_PAYOUT": "An affiliate payout credited.",
    "REVENUE_SHARE": "A revenue-share credit (or its reversal) from Revampd billing.",
    "MANUAL_ADJUSTMENT": "A manual credit or debit by Revampd billing.",
    "PAYOUT_CREDIT": "A payout of Sub-Org earnings, or part of it, credited.",
    "INVOICE_PAYMENT": "A payment from the wallet into an invoice.",
    "REVERSAL": "Money given back, such as a wallet payment refunded when an invoice was voided (before "
    "credit notes: now such money comes back as REFUND).",
    "REFUND": "Money paid into an invoice given back by a credit note: a wallet payment, a bank payment, or a "
    "card payment whose card refund the processor refused.",
})
CreditNoteKind = states.CreditNoteKind
described(CreditNoteKind, "CreditNoteKind", "Why an issued invoice was reduced by a credit note.", {
    "REFUND": "Part or all of what was paid into the invoice was refunded.",
    "VOID": "The invoice was voided: what was still due is owed no more, and what was paid is refunded.",
})
RefundStatus = states.RefundStatus
described(RefundStatus, "RefundStatus", "Where a refund stands.", {
    "PENDING": "A card refund asked of the card processor, whose answer has not been recorded yet.",
    "SUCCEEDED": "Given back: to the wallet at once, or to the card by the processor.",
    "FAILED": "The processor refused the card refund; the amount was credited to the wallet instead.",
})
PayoutPeriodType = states.PayoutPeriodType
described(PayoutPeriodType, "PayoutPeriodType", "How long a payout period is.", {
    "WEEKLY": "A week.",
    "MONTHLY": "A calendar month.",
})
CreditStatus = states.CreditStatus
described(CreditStatus, "CreditStatus", "Whether an affiliate payout is in the wallet yet.", {
    "PENDING": "Not yet credited to the wallet.",
    "APPLIED": "Credited to the wallet (see appliedAt).",
})
PayoutStatus = states.PayoutStatus
described(PayoutStatus, "PayoutStatus", "How much of a payout has been disposed of.", {
    "AVAILABLE": "Nothing credited or transferred yet.",
    "PARTIALLY_DISPOSED": "Some credited or transferred, some still available.",
    "PROCESSING": "None available; a bank transfer is still on its way.",
    "COMPLETED": "All of it credited to the wallet or paid into a bank.",
})
PayoutDispositionKind = states.PayoutDisposition
described(PayoutDispositionKind, "PayoutDispositionKind", "Where payout money went.", {
    "CREDIT": "To the wallet.",
    "TRANSFER": "To a bank account.",
    "SPLIT": "Part to the wallet, the rest to a bank account.",
})
PayoutMode = states.PayoutMode
described(PayoutMode, "PayoutMode", "What happens to each new payout (the payout preference).", {
    "MANUAL": "Nothing: the Partner decides each payout.",
    "CREDIT": "All of it to the wallet.",
    "TRANSFER": "All of it to the default bank account.",
    "SPLIT": "walletPercent of it to the wallet, the rest to the default bank account.",
})
SubOrgTransactionKind = states.SubOrgTransactionKind
described(
    SubOrgTransactionKind, "SubOrgTransactionKind", "What a Sub-Org paid for.", {
        "SUBSCRIPTION": "A subscription charge.",
        "USAGE": "A usage-based charge.",
    },
)
ClawbackKind = states.ClawbackKind
described(ClawbackKind, "ClawbackKind", "Why a Sub-Org transaction's money went back after it was recorded.", {
    "REFUND": "The Sub-Org was refunded.",
    "CHARGEBACK": "The Sub-Org's bank charged the payment back (a dispute).",
})
TransferStatus = states.TransferStatus
described(TransferStatus, "TransferStatus", "Where a bank transfer is.", {
    "PENDING": "Accepted, not yet sent; the Partner may still cancel it.",
    "IN_TRANSIT": "Sent by the processor, on its way to the bank.",
    "PAID": "Arrived in the bank account.",
    "FAILED": "Refused by the bank or processor (see failureCode); the amount is available on the payout again.",
    "CANCELED": "Canceled by the Partner while PENDING; the amount is available on the payout again.",
    "RETURNED": "PAID, then sent back by the bank (an ACH return, see returnCode); the amount is available on "
    "the payout again.",
})
TicketStatus = states.TicketStatus
described(TicketStatus, "TicketStatus", "Where a support ticket is.", {
    "OPEN": "New: waiting for support.",
    "IN_PROGRESS": "Support is working on it.",
    "RESOLVED": "Support considers it solved. A Partner's reply reopens it; otherwise it closes by itself "
    "after TICKET_AUTO_CLOSE_DAYS (7 unless configured).",
    "CLOSED": "Done; it takes no more replies. Final.",
})
TicketPriority = states.TicketPriority
described(TicketPriority, "TicketPriority", "How urgent a ticket is.", {
    "LOW": "Low urgency.",
    "MEDIUM": "Medium urgency.",
    "HIGH": "High urgency.",
})
WalletAdjustmentKind = states.WalletAdjustmentKind
described(
    WalletAdjustmentKind, "WalletAdjustmentKind", "The kinds of adjustWallet.", {
        "MANUAL_ADJUSTMENT": "From (or back to) Revampd's adjustments account.",
        "REVENUE_SHARE": "From (or back to) Revampd's revenue-share account.",
    },
)
NotificationKind = states.NotificationKind
described(NotificationKind, "NotificationKind", "What a Partner's user may be told of by email.", {
    "INVOICE_ISSUED": "An invoice was issued (told to the Partner's administrators).",
    "CHARGE_DECLINED": "The card on file was declined for an invoice, with a way to pay it now (administrators).",
    "PAYOUT_MADE": "A payout of Sub-Org earnings was made (administrators).",
    "BANK_TRANSFER_UPDATE": "A bank transfer arrived, failed or was returned by the bank (administrators).",
    "WALLET_LOW": "The wallet fell below the threshold the user set (administrators; off until a threshold is set).",
    "TICKET_REPLY": "Revampd support replied to a ticket the user submitted.",
})
