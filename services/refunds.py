"""Credit notes and refunds: an issued invoice is reduced, never edited.

A BILLING_ADMIN refunds all or part of what was paid into an invoice (`refund`), or voids
an OPEN invoice (`void`). Either is a credit note, numbered from its connection's gap-free
counter ("<invoice prefix>-CN-0001"), of which the ledger keeps two sides, posted together
in the caller's transaction:

- the reduction: the credit note's total from Revampd's revenue back into the invoice's
  receivable (a CREDIT_NOTE transfer, or INVOICE_VOID for a void);
- its settlement: what was paid goes back out of the receivable to where it came from, newest
  payment first, one Refund per payment: a wallet payment's to the wallet (a REFUND transfer,
  at once); a card payment's to the card through the processor, two-phase as card charges
  are (services/card_payments.py): a PENDING REFUND transfer and the key the processor will
  know the refund by are recorded first, the processor is asked with no transaction open
  (`ask`), and its answer recorded (`settle`): the transfer posted, or, when the processor
  refuses, voided and the amount credited to the wallet instead, so that nothing is lost.
  A payment by bank transfer, or by a card whose charge is not known, is refunded to the
  wallet. A lost answer leaves the refund PENDING: `reconcile` asks again with the same key.

The amount still due is not changed by a refund (the invoice is reduced by what is given
back); a void takes it off (`due_reduced`). `Invoice.amount_refunded` counts every refund,
a card refund still PENDING included, so that concurrent refunds never give back more than
was paid: each takes the invoice's row lock and checks what is left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import models as m
from db.states import AccountKind, CreditNoteKind, InvoiceStatus, PaymentMethod, RefundStatus, TransferKind
from services import card_payments, idempotency, invoices, ledger, money
from services.access import Principal, Role
from services.clock import now_or
from services.errors import DomainError, ErrorCode, NotFound
from services.payments import GatewayError, PaymentGateway, RefundResult

log = logging.getLogger("revampd.payments")

PENDING, SUCCEEDED, FAILED = RefundStatus.PENDING, RefundStatus.SUCCEEDED, RefundStatus.FAILED


@dataclass(frozen=True)
class Credited:
    """A credit note made, with its invoice as it now stands and its refunds."""

    credit_note: m.CreditNote
    invoice: m.Invoice
    refunds: list[m.Refund]


def _reason(reason: str) -> str:
    text = reason.strip()
    if not text or len(text) > invoices.MAX_REASON:
        raise DomainError(ErrorCode.INVALID_REASON, f"reason must be 1 to {invoices.MAX_REASON} characters.", "reason")
    return text


async def _locked(session: AsyncSession, principal: Principal, invoice_id: int) -> tuple[m.Connection, m.Invoice]:
    """The invoice's connection and the invoice, row-locked in that order (as issuing an
    invoice takes the connection's): the credit note's number comes from the connection."""
    connection_id = await session.scalar(select(m.Invoice.connection_id).where(m.Invoice.id == invoice_id))
    if connection_id is None or not principal.sees_connection(connection_id):
        raise NotFound("Invoice", "invoiceId")
    connection = await invoices.locked_connection(session, connection_id)
    return connection, await invoices.locked_invoice(session, principal, invoice_id)


@dataclass(frozen=True)
class Line:
    description: str
    quantity: int
    unit_amount: int


def void_lines(items: list[m.InvoiceLineItem], earlier: list[m.CreditNote]) -> list[Line]:
    """A void's credit note's lines: its invoice's lines, less each earlier credit note's total."""
    return [Line(i.description, i.quantity, i.unit_amount) for i in items] + [
        Line(f"Less credit note {c.number}", 1, -c.total) for c in earlier
    ]


def refundable(invoice: m.Invoice) -> int:
    """What was paid into the invoice and not yet refunded."""
    return invoice.amount_paid - invoice.amount_refunded


async def _replay(session: AsyncSession, principal: Principal, note_id: int) -> Credited:
    note = await session.get(m.CreditNote, note_id)
    if note is None:
        raise NotFound("CreditNote")
    invoice = await invoices.locked_invoice(session, principal, note.invoice_id)
    refunds = list(await session.scalars(select(m.Refund).where(m.Refund.credit_note_id == note.id).order_by(m.Refund.id)))
    return Credited(note, invoice, refunds)


REFUND = idempotency.Operation[Credited]("refundInvoice", "CreditNote", lambda c: c.credit_note.id, _replay)


async def refund(
    session: AsyncSession, principal: Principal, invoice_id: int, amount: str | None, reason: str,
    idempotency_key: str, now: datetime | None = None,
) -> Credited:
    """BILLING_ADMIN: give back `amount` (a decimal string; by default all that is left) of
    what was paid into an invoice, to where it came from, by a credit note. Card refunds are
    PENDING until the processor answers (`ask`, then `settle`)."""
    request = {"invoice": invoice_id, "amount": amount, "reason": reason.strip()}

    async def work() -> Credited:
        principal.require(Role.BILLING_ADMIN)
        text = _reason(reason)
        connection, invoice = await _locked(session, principal, invoice_id)
        left = refundable(invoice)
        minor = left if amount is None else money.parse(amount, invoice.currency_code, "amount")
        if left <= 0:
            raise DomainError(ErrorCode.NOTHING_TO_REFUND, f"Nothing paid into {invoice.number} is left to refund.",
                              "invoiceId")
        if minor > left:
            raise DomainError(
                ErrorCode.REFUND_EXCEEDS_PAID,
                f"Only {money.format(left, invoice.currency_code)} paid into {invoice.number} is left to refund; "
                f"{money.format(minor, invoice.currency_code)} is more.", "amount",
            )
        # A charge waiting for the processor would add a payment this refund did not see.
        await invoices.in_progress(session, invoice)
        return await credit(session, connection, invoice, CreditNoteKind.REFUND, refund_amount=minor, due_reduced=0,
                            reason=text, by=principal.user_id, now=now_or(now))

    return await idempotency.once(session, principal, REFUND, idempotency_key, request, work, now=now)


async def void(
    session: AsyncSession, principal: Principal, invoice_id: int, reason: str, now: datetime | None = None
) -> Credited:
    """BILLING_ADMIN: an OPEN invoice is void, by a credit note of all not yet credited: what
    was still due is owed no more, and what was paid and not yet refunded is refunded."""
    principal.require(Role.BILLING_ADMIN)
    text = _reason(reason)
    connection, invoice = await _locked(session, principal, invoice_id)
    if invoice.status != InvoiceStatus.OPEN:
        raise DomainError(ErrorCode.INVOICE_NOT_OPEN,
                          f"Only an OPEN invoice can be voided; {invoice.number} is {invoice.status}.", "invoiceId")
    await invoices.in_progress(session, invoice)
    at = now_or(now)
    voided = await credit(session, connection, invoice, CreditNoteKind.VOID, refund_amount=refundable(invoice),
                          due_reduced=invoices.amount_due(invoice), reason=text, by=principal.user_id, now=at)
    invoice.status, invoice.voided_at, invoice.void_reason = InvoiceStatus.VOID.value, at, text
    invoice.next_payment_attempt_at = None
    await session.flush()
    return voided


async def credit(
    session: AsyncSession, connection: m.Connection, invoice: m.Invoice, kind: CreditNoteKind, *,
    refund_amount: int, due_reduced: int, reason: str, by: int | None, now: datetime,
) -> Credited:
    """A credit note of `refund_amount + due_reduced` on `invoice` (both locked by the caller,
    the connection first), its refunds recorded and its transfers posted together."""
    cur = invoice.currency_code
    note = m.CreditNote(
        connection_id=connection.id, invoice_id=invoice.id, kind=kind.value, currency_code=cur,
        number=f"{connection.invoice_prefix}-CN-{connection.next_credit_note_number:04d}",
        total=refund_amount + due_reduced, due_reduced=due_reduced, reason=reason, created_by_id=by, created_at=now,
    )
    connection.next_credit_note_number += 1
    session.add(note)
    await session.flush()
    parts = await _allocate(session, invoice, refund_amount)
    receivable = await ledger.receivable_account(session, invoice, now)
    revenue = await ledger.system_account(session, AccountKind.REVAMPD_REVENUE, cur, invoice.connection_id, now)
    wallet = await ledger.wallet_account(session, connection, now)
    processor = await ledger.system_account(session, AccountKind.CARD_PROCESSOR, cur, invoice.connection_id, now)
    reduction = TransferKind.INVOICE_VOID if kind == CreditNoteKind.VOID else TransferKind.CREDIT_NOTE
    transfers = [ledger.Transfer(
        f"credit_note:{note.id}", reduction, revenue.id, receivable.id, note.total,
        memo=f"Credit note {note.number} for {invoice.number}: {reason}"[:500], invoice_id=invoice.id, created_by_id=by,
    )]
    for payment, amount, charge_id in parts:
        to_card = charge_id is not None
        transfers.append(ledger.Transfer(
            f"credit_note:{note.id}:refund:{payment.id}", TransferKind.REFUND, receivable.id,
            processor.id if to_card else wallet.id, amount, pending=to_card,
            memo=f"Refund of {invoice.number} ({note.number})", invoice_id=invoice.id, created_by_id=by,
        ))
    rows = await ledger.post(session, transfers, now=now)
    refunds = [
        m.Refund(
            credit_note_id=note.id, invoice_id=invoice.id, payment_id=payment.id, amount=amount, currency_code=cur,
            method=(PaymentMethod.CARD if charge_id else PaymentMethod.WALLET).value,
            status=(PENDING if charge_id else SUCCEEDED).value, settled_at=None if charge_id else now,
            charge_id=charge_id, processor_key=f"refund:{note.id}:{payment.id}" if charge_id else None,
            transfer_id=row.id, created_at=now,
        )
        for (payment, amount, charge_id), row in zip(parts, rows[1:], strict=True)
    ]
    session.add_all(refunds)
    invoice.amount_refunded += refund_amount
    await session.flush()
    return Credited(note, invoice, refunds)


async def _allocate(session: AsyncSession, invoice: m.Invoice, amount: int) -> list[tuple[m.InvoicePayment, int, str | None]]:
    """`amount` over the invoice's payments, newest first, each up to what is left of it:
    (payment, amount, the processor's charge id when it goes back to a card)."""
    if amount == 0:
        return []
    payments = list(await session.scalars(
        select(m.InvoicePayment).where(m.InvoicePayment.invoice_id == invoice.id).order_by(m.InvoicePayment.id.desc())))
    refunded: dict[int, int] = {pid: total for pid, total in await session.execute(
        select(m.Refund.payment_id, func.sum(m.Refund.amount)).where(m.Refund.invoice_id == invoice.id)
        .group_by(m.Refund.payment_id))}
    charges = await card_payments.charges_of(session, [p.id for p in payments])
    parts: list[tuple[m.InvoicePayment, int, str | None]] = []
    for payment in payments:
        take = min(amount, payment.amount - refunded.get(payment.id, 0))
        if take > 0:
            charge_id = charges.get(payment.id) if payment.method == PaymentMethod.CARD else None
            parts.append((payment, take, charge_id))
            amount -= take
    assert amount == 0, f"invoice {invoice.number}: its payments hold {amount} less than it says may be refunded"
    return parts


async def ask(gateway: PaymentGateway, refund: m.Refund) -> RefundResult | None:
    """The processor's answer for a PENDING card refund (with no transaction open); None when it did not come."""
    assert refund.charge_id is not None and refund.processor_key is not None
    try:
        return await gateway.refund(refund.charge_id, refund.amount, refund.currency_code, refund.processor_key)
    except GatewayError as exc:
        log.warning("card refund %s: no answer from the processor (%s); payments reconcile settles it", refund.id, exc)
        return None


async def settle(session: AsyncSession, refund_id: int, result: RefundResult, now: datetime | None = None) -> m.Refund:
    """Record the processor's answer for a PENDING card refund, once: its transfer posted when
    made; when refused, voided and the amount credited to the wallet instead. A refund already
    settled is left as it is (the same answer came twice)."""
    at = now_or(now)
    refund = await session.scalar(select(m.Refund).where(m.Refund.id == refund_id).with_for_update()
                                  .execution_options(populate_existing=True))
    assert refund is not None, f"no refund {refund_id}"
    if refund.status != PENDING:
        return refund
    pending = await session.get(m.LedgerTransfer, refund.transfer_id)
    assert pending is not None
    resolve = ledger.Transfer(
        f"{pending.key}:{'made' if result.success else 'refused'}", TransferKind.REFUND, pending.debit_account_id,
        pending.credit_account_id, pending.amount, memo=pending.memo, invoice_id=pending.invoice_id,
        resolves=pending.id, void=not result.success,
    )
    if result.success:
        await ledger.post(session, [resolve], now=at)
        refund.status, refund.processor_refund_id = SUCCEEDED.value, result.refund_id
    else:
        connection_id = await session.scalar(select(m.Invoice.connection_id).where(m.Invoice.id == refund.invoice_id))
        connection = await session.get(m.Connection, connection_id)
        assert connection is not None
        wallet = await ledger.wallet_account(session, connection, at)
        _, to_wallet = await ledger.post(session, [resolve, ledger.Transfer(
            f"{pending.key}:to_wallet", TransferKind.REFUND, pending.debit_account_id, wallet.id, pending.amount,
            memo=f"{pending.memo}: the card refund was refused, credited to the wallet", invoice_id=pending.invoice_id,
        )], now=at)
        refund.status, refund.wallet_transfer_id = FAILED.value, to_wallet.id
        refund.failure_reason = (result.failure_reason or "The processor refused the refund.")[:300]
        log.info("card refund %s refused (%s): credited to the wallet", refund.id, refund.failure_reason)
    refund.settled_at = at
    await session.flush()
    return refund


@dataclass
class Reconciled:
    refunded: list[m.Refund] = field(default_factory=list)
    refused: list[m.Refund] = field(default_factory=list)
    unanswered: int = 0


async def complete(
    writes: async_sessionmaker[AsyncSession], gateway: PaymentGateway, pending: Sequence[m.Refund],
    now: datetime | None = None,
) -> Reconciled:
    """Ask the processor about each PENDING card refund (no transaction open meanwhile) and
    record each answer in a write transaction of its own."""
    done = Reconciled()
    for refund in pending:
        if refund.status != PENDING:
            continue
        result = await ask(gateway, refund)
        if result is None:
            done.unanswered += 1
            continue
        async with writes() as session, session.begin():
            settled = await settle(session, refund.id, result, now)
        (done.refunded if settled.status == SUCCEEDED else done.refused).append(settled)
    return done


async def reconcile(
    reads: async_sessionmaker[AsyncSession], writes: async_sessionmaker[AsyncSession], gateway: PaymentGateway,
    now: datetime, older_than: timedelta,
) -> Reconciled:
    """Settle every card refund still PENDING that was asked for before `now - older_than`."""
    async with reads() as session:
        pending = list(await session.scalars(
            select(m.Refund).where(m.Refund.status == PENDING, m.Refund.created_at < now - older_than)
            .order_by(m.Refund.created_at, m.Refund.id)))
    return await complete(writes, gateway, pending, now)
