"""The one exception services raise for a business failure, and its codes."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every code a DomainError carries: clients branch on these (the graph's UserErrorCode),
    so a code is added here, described below, and never renamed."""

    NOT_FOUND = "NOT_FOUND"
    FORBIDDEN = "FORBIDDEN"
    # Input that breaks a rule of its own.
    INVALID_ACCOUNT_NUMBER = "INVALID_ACCOUNT_NUMBER"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    INVALID_BANK_NAME = "INVALID_BANK_NAME"
    INVALID_BODY = "INVALID_BODY"
    INVALID_CARD_TOKEN = "INVALID_CARD_TOKEN"
    INVALID_CURSOR = "INVALID_CURSOR"
    INVALID_DESCRIPTION = "INVALID_DESCRIPTION"
    INVALID_DUE_AT = "INVALID_DUE_AT"
    INVALID_EXTERNAL_ID = "INVALID_EXTERNAL_ID"
    INVALID_HOLDER_NAME = "INVALID_HOLDER_NAME"
    INVALID_IDEMPOTENCY_KEY = "INVALID_IDEMPOTENCY_KEY"
    INVALID_KIND = "INVALID_KIND"
    INVALID_LINE_ITEMS = "INVALID_LINE_ITEMS"
    INVALID_MEMO = "INVALID_MEMO"
    INVALID_OCCURRED_AT = "INVALID_OCCURRED_AT"
    INVALID_PAGINATION = "INVALID_PAGINATION"
    INVALID_PERCENT = "INVALID_PERCENT"
    INVALID_PERIOD = "INVALID_PERIOD"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    INVALID_REASON = "INVALID_REASON"
    INVALID_ROUTING_NUMBER = "INVALID_ROUTING_NUMBER"
    INVALID_SEARCH = "INVALID_SEARCH"
    INVALID_SUB_ORG_NAME = "INVALID_SUB_ORG_NAME"
    INVALID_TITLE = "INVALID_TITLE"
    TOO_MANY_CLAWBACKS = "TOO_MANY_CLAWBACKS"
    TOO_MANY_TRANSACTIONS = "TOO_MANY_TRANSACTIONS"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    # Plans and add-ons.
    ALREADY_ADDED = "ALREADY_ADDED"
    NOT_AN_UPGRADE = "NOT_AN_UPGRADE"
    NOT_A_DOWNGRADE = "NOT_A_DOWNGRADE"
    NO_PENDING_CHANGE = "NO_PENDING_CHANGE"
    NO_PLAN = "NO_PLAN"
    PLAN_RETIRED = "PLAN_RETIRED"
    SAME_PLAN = "SAME_PLAN"
    SUBSCRIPTION_CANCELED = "SUBSCRIPTION_CANCELED"
    USAGE_EXCEEDS_LIMIT = "USAGE_EXCEEDS_LIMIT"
    # Tickets.
    ASSIGNEE_NOT_SUPPORT = "ASSIGNEE_NOT_SUPPORT"
    ILLEGAL_STATUS_CHANGE = "ILLEGAL_STATUS_CHANGE"
    TICKET_CLOSED = "TICKET_CLOSED"
    # Invoices, the wallet and the card.
    ALREADY_APPLIED = "ALREADY_APPLIED"
    ALREADY_INVOICED = "ALREADY_INVOICED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    INVOICE_NOT_DRAFT = "INVOICE_NOT_DRAFT"
    INVOICE_NOT_OPEN = "INVOICE_NOT_OPEN"
    OVERPAYMENT = "OVERPAYMENT"
    NOTHING_TO_REFUND = "NOTHING_TO_REFUND"
    REFUND_EXCEEDS_PAID = "REFUND_EXCEEDS_PAID"
    WALLET_EMPTY = "WALLET_EMPTY"
    CARD_DECLINED = "CARD_DECLINED"
    NO_CARD_ON_FILE = "NO_CARD_ON_FILE"
    PAYMENT_IN_PROGRESS = "PAYMENT_IN_PROGRESS"
    PAYMENT_PENDING = "PAYMENT_PENDING"
    # Payouts and bank accounts.
    BANK_ACCOUNT_IN_USE = "BANK_ACCOUNT_IN_USE"
    BANK_ACCOUNT_REFUSED = "BANK_ACCOUNT_REFUSED"
    BANK_ACCOUNT_REMOVED = "BANK_ACCOUNT_REMOVED"
    CLAWBACK_EXCEEDS_SHARE = "CLAWBACK_EXCEEDS_SHARE"
    EXCEEDS_AVAILABLE = "EXCEEDS_AVAILABLE"
    GATEWAY_UNAVAILABLE = "GATEWAY_UNAVAILABLE"
    NO_BANK_ACCOUNT = "NO_BANK_ACCOUNT"
    NOTHING_AVAILABLE = "NOTHING_AVAILABLE"
    NOT_CANCELABLE = "NOT_CANCELABLE"
    SPLIT_LEAVES_NOTHING_FOR_BANK = "SPLIT_LEAVES_NOTHING_FOR_BANK"
    # The ledger's own rules: a request that reaches one of these is refused whole.
    CROSS_CONNECTION = "CROSS_CONNECTION"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    PENDING_MISMATCH = "PENDING_MISMATCH"
    PENDING_RESOLVED = "PENDING_RESOLVED"
    SAME_ACCOUNT = "SAME_ACCOUNT"
    TRANSFER_KEY_REUSED = "TRANSFER_KEY_REUSED"


DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.NOT_FOUND: "No such object, or not one of yours (another Partner's objects read exactly like "
    "missing ones).",
    ErrorCode.FORBIDDEN: "Your role may not do this (e.g. a PARTNER_MEMBER paying an invoice, a Partner user "
    "doing what only Revampd staff may).",
    ErrorCode.INVALID_ACCOUNT_NUMBER: "accountNumber is not 4 to 17 digits.",
    ErrorCode.INVALID_AMOUNT: "An amount is not a decimal string such as \"12.50\", has more decimals than its "
    "currency, is zero, negative where it must be positive, or too large.",
    ErrorCode.INVALID_BANK_NAME: "bankName is blank, too long or not printable text on one line.",
    ErrorCode.INVALID_BODY: "A message body is blank, too long or holds NUL characters.",
    ErrorCode.INVALID_CARD_TOKEN: "cardToken is not a token the payment processor issued (or looks like a "
    "card number).",
    ErrorCode.INVALID_CURSOR: "after or before is not a cursor of this list.",
    ErrorCode.INVALID_DESCRIPTION: "A description (of a ticket, an invoice line or a Sub-Org transaction) is "
    "blank where it is required, or too long.",
    ErrorCode.INVALID_DUE_AT: "dueAt is in the past.",
    ErrorCode.INVALID_EXTERNAL_ID: "externalId is blank, too long, not printable, or begins or ends with spaces.",
    ErrorCode.INVALID_HOLDER_NAME: "holderName is blank, too long or not printable text on one line.",
    ErrorCode.INVALID_IDEMPOTENCY_KEY: "idempotencyKey is blank, longer than 200 characters or holds control "
    "characters.",
    ErrorCode.INVALID_KIND: "A Sub-Org transaction's kind is missing or unknown.",
    ErrorCode.INVALID_LINE_ITEMS: "An invoice has no line items, more than allowed, or a total too large.",
    ErrorCode.INVALID_MEMO: "memo is blank, too long or holds NUL characters.",
    ErrorCode.INVALID_OCCURRED_AT: "occurredAt is missing, not an ISO 8601 date-time with its UTC offset, or "
    "in the future.",
    ErrorCode.INVALID_PAGINATION: "first/last is negative or over the maximum page size, or both are given.",
    ErrorCode.INVALID_PERCENT: "walletPercent is not a whole number from 1 to 99 for SPLIT, or is given for "
    "another mode.",
    ErrorCode.INVALID_PERIOD: "The period is not a valid range: from must come before until.",
    ErrorCode.INVALID_QUANTITY: "quantity is outside what the product or invoice line allows.",
    ErrorCode.INVALID_REASON: "reason is blank or too long.",
    ErrorCode.INVALID_ROUTING_NUMBER: "routingNumber is not 9 digits, or its check digit is wrong.",
    ErrorCode.INVALID_SEARCH: "A search text is longer than 200 characters.",
    ErrorCode.INVALID_SUB_ORG_NAME: "subOrgName is blank, too long or not printable text.",
    ErrorCode.INVALID_TITLE: "A ticket title is blank, too long or holds NUL characters.",
    ErrorCode.TOO_MANY_CLAWBACKS: "More clawbacks than one call takes.",
    ErrorCode.TOO_MANY_TRANSACTIONS: "More Sub-Org transactions than one call takes.",
    ErrorCode.IDEMPOTENCY_KEY_REUSED: "This idempotencyKey was already used for another mutation, or for this "
    "one with other input: send a new key for a new request.",
    ErrorCode.ALREADY_ADDED: "The connection already has this add-on: change its quantity instead.",
    ErrorCode.NOT_AN_UPGRADE: "upgradePlan to a plan that is not above the current one.",
    ErrorCode.NOT_A_DOWNGRADE: "downgradePlan to a plan that is not below the current one.",
    ErrorCode.NO_PENDING_CHANGE: "There is no pending plan change to withdraw.",
    ErrorCode.NO_PLAN: "The connection has no plan, so Revampd's transaction fee is unknown.",
    ErrorCode.PLAN_RETIRED: "The plan is retired and can no longer be chosen.",
    ErrorCode.SAME_PLAN: "The connection is already on this plan.",
    ErrorCode.SUBSCRIPTION_CANCELED: "The subscription has already ended.",
    ErrorCode.USAGE_EXCEEDS_LIMIT: "Current usage exceeds a limit of the plan asked for (see "
    "planChangePreview's blockers).",
    ErrorCode.ASSIGNEE_NOT_SUPPORT: "Tickets can be assigned only to users with the SUPPORT role.",
    ErrorCode.ILLEGAL_STATUS_CHANGE: "The ticket cannot move from its status to the one asked for.",
    ErrorCode.TICKET_CLOSED: "The ticket is CLOSED and takes no more messages or changes.",
    ErrorCode.ALREADY_APPLIED: "The affiliate payout was already credited to the wallet.",
    ErrorCode.ALREADY_INVOICED: "An invoice for this period already exists.",
    ErrorCode.INSUFFICIENT_FUNDS: "The wallet or payout holds less than the amount; it never goes below zero.",
    ErrorCode.INVOICE_NOT_DRAFT: "The invoice is no longer a DRAFT.",
    ErrorCode.INVOICE_NOT_OPEN: "The invoice is not OPEN (already PAID, VOID or UNCOLLECTIBLE, or a DRAFT).",
    ErrorCode.OVERPAYMENT: "The amount is more than is due on the invoice.",
    ErrorCode.NOTHING_TO_REFUND: "Nothing paid into the invoice is left to refund.",
    ErrorCode.REFUND_EXCEEDS_PAID: "The amount is more than was paid into the invoice and not yet refunded.",
    ErrorCode.WALLET_EMPTY: "The wallet holds no credit to pay with.",
    ErrorCode.CARD_DECLINED: "The card on file was declined (the message says why); the invoice is still OPEN.",
    ErrorCode.NO_CARD_ON_FILE: "The connection has no card on file: add one with updatePaymentMethod.",
    ErrorCode.PAYMENT_IN_PROGRESS: "A card charge of this invoice is still waiting for the processor's answer: "
    "nothing else can be paid, voided or written off on it until it is settled.",
    ErrorCode.PAYMENT_PENDING: "The card processor's answer did not arrive: the charge is settled with the "
    "processor shortly (payments reconcile), never made twice; read the invoice again later.",
    ErrorCode.BANK_ACCOUNT_IN_USE: "A transfer is still on its way to this bank account: unlink it once that "
    "transfer is PAID, FAILED or CANCELED.",
    ErrorCode.BANK_ACCOUNT_REFUSED: "The bank transfer processor refused the account (e.g. no such account at "
    "that bank).",
    ErrorCode.BANK_ACCOUNT_REMOVED: "The bank account was unlinked and receives nothing.",
    ErrorCode.CLAWBACK_EXCEEDS_SHARE: "The clawback would take back more of a Sub-Org transaction than the "
    "Partner's share of it not yet clawed back.",
    ErrorCode.EXCEEDS_AVAILABLE: "The amount is more than is still available on the payout.",
    ErrorCode.GATEWAY_UNAVAILABLE: "The bank transfer processor did not answer: nothing changed; try again.",
    ErrorCode.NO_BANK_ACCOUNT: "There is no default bank account: link one, or name one in bankAccountId.",
    ErrorCode.NOTHING_AVAILABLE: "Nothing of the payout is left to credit or transfer.",
    ErrorCode.NOT_CANCELABLE: "The bank transfer is no longer PENDING (or the processor has sent it already).",
    ErrorCode.SPLIT_LEAVES_NOTHING_FOR_BANK: "walletAmount takes all that is available, leaving nothing for the "
    "bank: use creditPayout instead.",
    ErrorCode.CROSS_CONNECTION: "Money of one connection can only be used within that connection.",
    ErrorCode.CURRENCY_MISMATCH: "The amounts or prices are in different currencies.",
    ErrorCode.PENDING_MISMATCH: "A ledger resolution does not match its pending transfer.",
    ErrorCode.PENDING_RESOLVED: "A pending ledger transfer was already posted or voided.",
    ErrorCode.SAME_ACCOUNT: "A ledger transfer needs two different accounts.",
    ErrorCode.TRANSFER_KEY_REUSED: "A ledger transfer key was already used for another transfer; nothing moved.",
}


class DomainError(Exception):
    """A rule refused the request. `code` is stable; `field` names the input at fault."""

    def __init__(self, code: ErrorCode, message: str, field: str | list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field: list[str] | None = [field] if isinstance(field, str) else field


class NotFound(DomainError):
    """Also raised for objects of another Partner: they read exactly like missing ones."""

    def __init__(self, what: str, field: str | None = None) -> None:
        super().__init__(ErrorCode.NOT_FOUND, f"{what} not found.", field)


class Forbidden(DomainError):
    def __init__(self, message: str = "You do not have permission to do this.") -> None:
        super().__init__(ErrorCode.FORBIDDEN, message)


class InvalidInput(DomainError):
    """Several fields of one input refused together, so that a form can mark each of them
    at once; `errors` in the order of the input's fields."""

    def __init__(self, errors: list[DomainError]) -> None:
        super().__init__(errors[0].code, errors[0].message, errors[0].field)
        self.errors = errors
