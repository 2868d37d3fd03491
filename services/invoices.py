"""Invoices: DRAFT -> OPEN -> PAID / VOID / UNCOLLECTIBLE, and every payment into one.

An OPEN invoice owes its total through its RECEIVABLE ledger account (the
INVOICE_ISSUED transfer); each payment is one ledger transfer into that account
(from the wallet, the card processor or a bank), recorded as an InvoicePayment
with the transfer it moved. Amounts here are integer minor units; the ledger
(services/ledger.py post()) refuses any movement that would break a rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db import models as m
from db.states import AccountKind, CardChargeStatus, InvoiceStatus, InvoiceType, PaymentMethod, TransferKind
from services import idempotency, ledger, money
from services.access import Principal, Role
from services.clock import now_or
from services.errors import DomainError, ErrorCode, InvalidInput, NotFound

S = InvoiceStatus
# Nothing more is collected on these.
SETTLED = (S.PAID.value, S.VOID.value, S.UNCOLLECTIBLE.value)
MAX_REASON = 500
# Limits of an invoice issued by hand (issue()).
MAX_LINES = 100
MAX_DESCRIPTION = 300
MAX_QUANTITY = 10_000


def amount_due(invoice: m.Invoice) -> int:
    """total - amount paid, in minor units; zero once paid, void or written off."""
    return 0 if invoice.status in SETTLED else invoice.total - invoice.amount_paid


@dataclass(frozen=True)
class Line:
    description: str
    quantity: int
    unit_amount: int
    plan_id: int | None = None
    addon_product_id: int | None = None


async def locked_connection(session: AsyncSession, connection_id: int) -> m.Connection:
    connection = await session.scalar(
        select(m.Connection).where(m.Connection.id == connection_id).with_for_update()
    )
    if connection is None:
        raise NotFound("RevampdConnection", "connectionId")
    return connection


async def create(
    session: AsyncSession,
    connection: m.Connection,
    *,
    type: InvoiceType,
    lines: Sequence[Line],
    due_at: datetime | None,
    period: tuple[datetime, datetime] | None = None,
    open: bool = True,
    now: datetime | None = None,
) -> m.Invoice:
    """A new invoice numbered from `connection`'s counter, which the caller holds locked
    (numbers are gap-free: a rolled-back transaction gives its number back). OPEN at
    once unless `open` is False (then DRAFT)."""
    if not lines or any(li.quantity <= 0 or li.unit_amount <= 0 for li in lines):
        raise DomainError(
            ErrorCode.INVALID_LINE_ITEMS, "An invoice needs line items, each of a positive quantity and amount.", "lineItems"
        )
    at = now_or(now)
    invoice = draft(connection, type=type, lines=lines, due_at=due_at, period=period, now=at)
    session.add(invoice)
    await session.flush()
    session.add_all(line_items(invoice, lines))
    if open:
        await finalize(session, invoice, now=at)
    await session.flush()
    return invoice


def draft(
    connection: m.Connection, *, type: InvoiceType, lines: Sequence[Line], due_at: datetime | None,
    period: tuple[datetime, datetime] | None, now: datetime,
) -> m.Invoice:
    """A new DRAFT invoice (not yet added), numbered from `connection`'s counter."""
    number = f"{connection.invoice_prefix}-{connection.next_invoice_number:04d}"
    connection.next_invoice_number += 1
    return m.Invoice(
        connection_id=connection.id, number=number, type=type.value, status=S.DRAFT.value,
        currency_code=connection.currency_code, total=sum(li.quantity * li.unit_amount for li in lines),
        amount_paid=0, issued_at=now, due_at=due_at, period_start=period[0] if period else None,
        period_end=period[1] if period else None, payment_attempts=0,
    )


def line_items(invoice: m.Invoice, lines: Sequence[Line]) -> list[m.InvoiceLineItem]:
    """The rows of an invoice's lines (its id known)."""
    return [
        m.InvoiceLineItem(
            invoice_id=invoice.id, description=li.description, quantity=li.quantity, unit_amount=li.unit_amount,
            amount=li.quantity * li.unit_amount, plan_id=li.plan_id, addon_product_id=li.addon_product_id,
        )
        for li in lines
    ]


async def finalize(session: AsyncSession, invoice: m.Invoice, *, now: datetime | None = None) -> None:
    """DRAFT -> OPEN: from now on the invoice's total is owed (its receivable is charged)."""
    if invoice.status != S.DRAFT.value:
        raise DomainError(ErrorCode.INVOICE_NOT_DRAFT, f"Invoice {invoice.number} is {invoice.status}, not DRAFT.", "invoiceId")
    at = now_or(now)
    # An invoice's receivable is made as it opens.
    receivable = await ledger.receivable_account(session, invoice, at, likely_new=True)
    revenue = await ledger.system_account(session, AccountKind.REVAMPD_REVENUE, invoice.currency_code, invoice.connection_id, at)
    await ledger.post(session, [issued(invoice, receivable.id, revenue.id)], now=at)
    opened(invoice, at)


def issued(invoice: m.Invoice, receivable_id: int, revenue_id: int) -> ledger.Transfer:
    """The INVOICE_ISSUED transfer that opens a DRAFT invoice: its total is owed."""
    return ledger.Transfer(
        f"invoice:{invoice.id}:issued", TransferKind.INVOICE_ISSUED, receivable_id, revenue_id, invoice.total,
        memo=f"Invoice {invoice.number}", invoice_id=invoice.id,
    )


def opened(invoice: m.Invoice, at: datetime) -> None:
    """A DRAFT invoice whose INVOICE_ISSUED transfer is posted is OPEN."""
    invoice.status, invoice.opened_at = S.OPEN.value, at


async def locked_invoice(session: AsyncSession, principal: Principal | None, invoice_id: int) -> m.Invoice:
    """The invoice, row-locked; another Partner's reads exactly like a missing one."""
    invoice = await session.scalar(select(m.Invoice).where(m.Invoice.id == invoice_id).with_for_update())
    if invoice is None or (principal is not None and not principal.sees_connection(invoice.connection_id)):
        raise NotFound("Invoice", "invoiceId")
    return invoice


def require_open(invoice: m.Invoice) -> None:
    if invoice.status != S.OPEN.value:
        what = {
            S.PAID.value: "is already paid",
            S.VOID.value: "is void",
            S.UNCOLLECTIBLE.value: "was written off as uncollectible",
            S.DRAFT.value: "is a draft and not due yet",
        }[invoice.status]
        raise DomainError(ErrorCode.INVOICE_NOT_OPEN, f"Invoice {invoice.number} {what}; nothing can be paid on it.", "invoiceId")


async def charge_pending(session: AsyncSession, invoice_id: int) -> bool:
    """A card charge of the invoice waits for the processor's answer (services.card_payments)."""
    return bool(await session.scalar(select(m.CardCharge.id).where(
        m.CardCharge.invoice_id == invoice_id, m.CardCharge.status == CardChargeStatus.PENDING)))


async def in_progress(session: AsyncSession, invoice: m.Invoice) -> None:
    """Refuse to move money on a (locked) invoice whose card charge is still PENDING: its
    outcome would land on an invoice that changed."""
    if await charge_pending(session, invoice.id):
        raise DomainError(
            ErrorCode.PAYMENT_IN_PROGRESS,
            f"A card charge of {invoice.number} is waiting for the processor's answer; try again once it is settled.",
            "invoiceId",
        )


async def pay(
    session: AsyncSession,
    invoice: m.Invoice,
    *,
    source: m.LedgerAccount,
    amount: int,
    method: PaymentMethod,
    key: str,
    by: int | None,
    now: datetime | None = None,
) -> m.InvoicePayment:
    """`amount` from `source` into the (locked, OPEN) invoice: one ledger transfer under
    `key`, its payment record, and PAID once nothing is due. The same key again is the
    same payment: for payInvoice that happens only once the client's idempotency key was
    purged (services.idempotency), as its ledger key, which embeds it, is kept forever."""
    at = now_or(now)
    existing = await session.scalar(
        select(m.InvoicePayment).join(m.LedgerTransfer, m.LedgerTransfer.id == m.InvoicePayment.transfer_id)
        .where(m.LedgerTransfer.key == key)
    )
    if existing is not None:
        return existing
    require_open(invoice)
    due = amount_due(invoice)
    if amount > due:
        raise DomainError(
            ErrorCode.OVERPAYMENT,
            f"Only {money.format(due, invoice.currency_code)} is due on {invoice.number}; "
            f"{money.format(amount, invoice.currency_code)} is more.",
            "amount",
        )
    receivable = await ledger.receivable_account(session, invoice, at)
    [transfer] = await ledger.post(
        session, [payment_transfer(invoice, source.id, receivable.id, amount, key, by)], now=at
    )
    payment = paid(invoice, transfer, method, at)
    session.add(payment)
    await session.flush()
    return payment


def payment_transfer(
    invoice: m.Invoice, source_id: int, receivable_id: int, amount: int, key: str, by: int | None
) -> ledger.Transfer:
    """The INVOICE_PAYMENT transfer of `amount` from `source_id` into the invoice."""
    return ledger.Transfer(
        key, TransferKind.INVOICE_PAYMENT, source_id, receivable_id, amount, memo=f"Payment of {invoice.number}",
        invoice_id=invoice.id, created_by_id=by,
    )


def paid(invoice: m.Invoice, transfer: m.LedgerTransfer, method: PaymentMethod, at: datetime) -> m.InvoicePayment:
    """The payment a posted INVOICE_PAYMENT transfer made (not yet added), and the invoice
    brought up to date: what it has been paid, by which method, PAID once nothing is due."""
    payment = m.InvoicePayment(
        invoice_id=invoice.id, amount=transfer.amount, method=method.value, created_by_id=transfer.created_by_id,
        created_at=at, transfer_id=transfer.id,
    )
    first = invoice.amount_paid == 0
    invoice.amount_paid += transfer.amount
    if first or invoice.payment_method == method.value:
        invoice.payment_method = method.value
    else:
        invoice.payment_method = PaymentMethod.MIXED.value
    if invoice.amount_paid == invoice.total:
        invoice.status, invoice.paid_at = S.PAID.value, at
        invoice.next_payment_attempt_at = None
    return payment


@dataclass(frozen=True)
class Paid:
    invoice: m.Invoice
    payment: m.InvoicePayment
    wallet: m.LedgerAccount


async def _replay_payment(session: AsyncSession, principal: Principal, payment_id: int) -> Paid:
    payment = await session.get(m.InvoicePayment, payment_id)
    if payment is None:
        raise NotFound("Payment")
    invoice = await locked_invoice(session, principal, payment.invoice_id)
    connection = await session.get(m.Connection, invoice.connection_id)
    assert connection is not None
    return Paid(invoice, payment, await ledger.wallet_account(session, connection))


PAY_FROM_WALLET = idempotency.Operation[Paid]("payInvoice", "InvoicePayment", lambda p: p.payment.id, _replay_payment)


async def pay_from_wallet(
    session: AsyncSession,
    principal: Principal,
    invoice_id: int,
    amount: str | None,
    idempotency_key: str,
    now: datetime | None = None,
) -> Paid:
    """PARTNER_ADMIN: pay an OPEN invoice of its own connection from its wallet, all that
    is due or `amount` of it; by default as much as the wallet covers."""
    request = {"invoice": invoice_id, "amount": amount}

    async def work() -> Paid:
        principal.require(Role.PARTNER_ADMIN)
        invoice = await locked_invoice(session, principal, invoice_id)
        require_open(invoice)
        await in_progress(session, invoice)
        connection = await session.get(m.Connection, invoice.connection_id)
        assert connection is not None
        wallet = await ledger.wallet_account(session, connection)
        # Read under the lock post() takes too, so the default is never stale.
        await session.refresh(wallet, with_for_update=True)
        available = wallet.balance - wallet.pending
        minor = None if amount is None else money.parse(amount, invoice.currency_code, "amount")
        if available <= 0:
            raise DomainError(ErrorCode.WALLET_EMPTY, "The wallet holds no credit to pay with.", "amount")
        if minor is None:
            minor = min(amount_due(invoice), available)
        key = f"invoice:{invoice.id}:wallet:{principal.user_id}:{idempotency_key}"
        try:
            payment = await pay(
                session, invoice, source=wallet, amount=minor, method=PaymentMethod.WALLET, key=key,
                by=principal.user_id, now=now,
            )
        except ledger.InsufficientFunds as err:  # the amount asked for is what does not fit
            raise DomainError(err.code, err.message, "amount") from None
        return Paid(invoice, payment, wallet)

    return await idempotency.once(session, principal, PAY_FROM_WALLET, idempotency_key, request, work, now=now)


async def mark_uncollectible(
    session: AsyncSession, principal: Principal | None, invoice_id: int, now: datetime | None = None
) -> m.Invoice:
    """An OPEN invoice will not be paid: what is still due is written off. BILLING_ADMIN,
    or the billing run (principal None) after the last declined charge."""
    if principal is not None:
        principal.require(Role.BILLING_ADMIN)
    invoice = await locked_invoice(session, principal, invoice_id)
    if invoice.status != S.OPEN.value:
        raise DomainError(
            ErrorCode.INVOICE_NOT_OPEN, f"Only an OPEN invoice can be written off; {invoice.number} is {invoice.status}.",
            "invoiceId",
        )
    await in_progress(session, invoice)
    at = now_or(now)
    due = amount_due(invoice)
    receivable = await ledger.receivable_account(session, invoice, at)
    revenue = await ledger.system_account(session, AccountKind.REVAMPD_REVENUE, invoice.currency_code, invoice.connection_id, at)
    await ledger.post(session, [ledger.Transfer(
        f"invoice:{invoice.id}:uncollectible", TransferKind.INVOICE_UNCOLLECTIBLE, revenue.id, receivable.id, due,
        memo=f"Invoice {invoice.number} uncollectible", invoice_id=invoice.id,
        created_by_id=principal.user_id if principal else None,
    )], now=at)
    invoice.status, invoice.uncollectible_at = S.UNCOLLECTIBLE.value, at
    invoice.next_payment_attempt_at = None
    await session.flush()
    return invoice


@dataclass(frozen=True)
class LineInput:
    """A line as a person typed it: the unit amount is a decimal string."""

    description: str
    quantity: int
    unit_amount: str


def _checked_lines(lines: Sequence[LineInput], currency: str) -> tuple[list[Line], list[DomainError]]:
    """The lines in minor units, and an error for each field that is wrong."""
    if not 1 <= len(lines) <= MAX_LINES:
        return [], [DomainError(
            ErrorCode.INVALID_LINE_ITEMS, f"An invoice has 1 to {MAX_LINES} line items, got {len(lines)}.", "lineItems"
        )]
    checked: list[Line] = []
    errors: list[DomainError] = []
    for i, li in enumerate(lines):
        path = ["lineItems", str(i)]
        description = li.description.strip()
        if not 1 <= len(description) <= MAX_DESCRIPTION:
            errors.append(DomainError(
                ErrorCode.INVALID_DESCRIPTION, f"A line's description must be 1 to {MAX_DESCRIPTION} characters, "
                f"got {len(description):,}.", [*path, "description"],
            ))
        if not 1 <= li.quantity <= MAX_QUANTITY:
            errors.append(DomainError(
                ErrorCode.INVALID_QUANTITY, f"quantity must be a whole number from 1 to {MAX_QUANTITY:,}.", [*path, "quantity"]
            ))
        try:
            unit_amount = money.parse(li.unit_amount, currency, "unitAmount")
        except DomainError as err:
            errors.append(DomainError(err.code, err.message, [*path, "unitAmount"]))
            continue
        checked.append(Line(description, li.quantity, unit_amount))
    total = sum(li.quantity * li.unit_amount for li in checked)
    if not errors and total > money.MAX_AMOUNT:
        errors.append(DomainError(
            ErrorCode.INVALID_LINE_ITEMS, f"The total, {money.format(total, currency)}, is too large for one invoice.",
            "lineItems",
        ))
    return checked, errors


def _utc(at: datetime) -> datetime:
    """A time without a zone is taken as UTC."""
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


async def _replay_invoice(session: AsyncSession, principal: Principal, invoice_id: int) -> m.Invoice:
    return await locked_invoice(session, principal, invoice_id)


ISSUE = idempotency.Operation[m.Invoice]("issueInvoice", "Invoice", lambda i: i.id, _replay_invoice)


async def issue(
    session: AsyncSession,
    principal: Principal,
    connection_id: int,
    lines: Sequence[LineInput],
    due_at: datetime,
    idempotency_key: str,
    now: datetime | None = None,
) -> m.Invoice:
    """BILLING_ADMIN: a ONE_TIME invoice for a connection, OPEN at once, numbered from its
    counter. Every line is checked in the connection's currency; all that is wrong is
    refused together (InvalidInput), and nothing is issued."""
    due = _utc(due_at)
    request = {
        "connection": connection_id,
        "lines": [[li.description, li.quantity, li.unit_amount] for li in lines],
        "dueAt": due.isoformat(),
    }

    async def work() -> m.Invoice:
        principal.require(Role.BILLING_ADMIN)
        connection = await locked_connection(session, connection_id)
        at = now_or(now)
        checked, errors = _checked_lines(lines, connection.currency_code)
        if due < at:
            errors.append(DomainError(ErrorCode.INVALID_DUE_AT, "dueAt must not be in the past.", "dueAt"))
        if errors:
            raise InvalidInput(errors)
        return await create(session, connection, type=InvoiceType.ONE_TIME, lines=checked, due_at=due, now=at)

    return await idempotency.once(session, principal, ISSUE, idempotency_key, request, work, now=now)
