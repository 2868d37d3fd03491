"""Charging the card on file, two-phase: by the billing run (services.billing) and by a
Partner admin who pays an OPEN invoice at once (pay now).

Two-phase, as a processor call must be (no transaction open and no connection held
while the processor thinks, and never a second charge):

1. In a transaction (`start` for pay now, `record` for the billing run): the invoice
   is locked and checked, and a PENDING CardCharge is recorded with the key the
   processor will know the charge by.
   At most one charge of an invoice is PENDING (a unique index): while it is,
   nothing else is paid, voided or written off on the invoice (`invoices.in_progress`).
2. The caller asks the processor to charge, with no transaction open.
3. `settle`, in a transaction: SUCCEEDED posts the payment (CARD_PROCESSOR ->
   the invoice's receivable) once; DECLINED records why on the invoice, and for the
   billing run's charge schedules the next attempt or, after the last, writes it off.

When the answer is lost (the processor timed out, the process died) the charge
stays PENDING; `reconcile` asks the processor again with the same key, which
answers with the first charge's result rather than charging again, and settles it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import models as m
from db.states import AccountKind, CardChargeStatus, PaymentMethod
from services import idempotency, invoices, ledger
from services.access import Principal, Role
from services.clock import now_or
from services.errors import DomainError, ErrorCode, NotFound
from services.payments import ChargeResult, GatewayError, PaymentGateway

log = logging.getLogger("revampd.payments")

PENDING, SUCCEEDED, DECLINED = CardChargeStatus.PENDING, CardChargeStatus.SUCCEEDED, CardChargeStatus.DECLINED


async def _replay(session: AsyncSession, principal: Principal, charge_id: int) -> m.CardCharge:
    charge = await session.get(m.CardCharge, charge_id)
    if charge is None:
        raise NotFound("Card charge")
    return charge


PAY_BY_CARD = idempotency.Operation[m.CardCharge]("payInvoiceByCard", "CardCharge", lambda c: c.id, _replay)


async def start(
    session: AsyncSession, principal: Principal, invoice_id: int, idempotency_key: str, now: datetime | None = None
) -> m.CardCharge:
    """PARTNER_ADMIN: record a PENDING charge of the card on file for all that is due on an
    OPEN invoice of its connection. The same key again gives the same charge, as it stands."""
    request = {"invoice": invoice_id}

    async def work() -> m.CardCharge:
        principal.require(Role.PARTNER_ADMIN)
        at = now_or(now)
        invoice = await invoices.locked_invoice(session, principal, invoice_id)
        invoices.require_open(invoice)
        await invoices.in_progress(session, invoice)
        connection = await session.get(m.Connection, invoice.connection_id)
        assert connection is not None
        if connection.card_token is None:
            raise DomainError(ErrorCode.NO_CARD_ON_FILE, "There is no card on file: add one first.", "invoiceId")
        charge = await record(
            session, invoice, invoices.amount_due(invoice), connection.card_token,
            f"pending:{principal.user_id}:{idempotency_key}", by=principal.user_id, now=at,
        )
        # Keyed by its id (the client's key may be 200 characters, too long to prefix).
        charge.processor_key = f"card_charge:{charge.id}"
        await session.flush()
        return charge

    return await idempotency.once(session, principal, PAY_BY_CARD, idempotency_key, request, work, now=now)


async def record(
    session: AsyncSession, invoice: m.Invoice, amount: int, card_token: str, key: str, *,
    by: int | None = None, attempt: int | None = None, now: datetime,
) -> m.CardCharge:
    """A PENDING charge of `amount` on `invoice` (locked by the caller), to be asked of the
    processor with `key` once the caller's transaction has committed."""
    charge = new_charge(invoice, amount, card_token, key, by=by, attempt=attempt, now=now)
    session.add(charge)
    await session.flush()
    return charge


def new_charge(
    invoice: m.Invoice, amount: int, card_token: str, key: str, *, by: int | None = None, attempt: int | None = None,
    now: datetime,
) -> m.CardCharge:
    """`record`'s charge, not yet added (the billing run adds a batch of them at once)."""
    return m.CardCharge(
        invoice_id=invoice.id, amount=amount, currency_code=invoice.currency_code, card_token=card_token,
        processor_key=key, status=PENDING, created_by_id=by, attempt=attempt, created_at=now,
    )


async def charges_of(session: AsyncSession, payment_ids: Sequence[int]) -> dict[int, str]:
    """The processor's charge id of each of these payments that a card charge made."""
    rows = await session.execute(select(m.CardCharge.payment_id, m.CardCharge.charge_id)
                                 .where(m.CardCharge.payment_id.in_(payment_ids)))
    return {pid: cid for pid, cid in rows if pid is not None and cid is not None}


async def ask(gateway: PaymentGateway, charge: m.CardCharge) -> ChargeResult | None:
    """The processor's answer for `charge` (with no transaction open); None when it did not come."""
    try:
        return await gateway.charge(charge.card_token, charge.amount, charge.currency_code, charge.processor_key)
    except GatewayError as exc:
        log.warning("card charge %s: no answer from the processor (%s); payments reconcile settles it",
                    charge.id, exc)
        return None


async def settle(
    session: AsyncSession, charge_id: int, result: ChargeResult, now: datetime | None = None,
    retry_days: Sequence[int] = (),
) -> m.CardCharge:
    """Record the processor's answer for a PENDING charge, once: the payment when it
    succeeded, the reason on the invoice when declined. A charge already settled is left as
    it is (the same answer came twice: a lost answer asked again, a replay).

    A declined charge of the billing run's attempt N schedules attempt N+1 `retry_days[N-1]`
    days later (the BILLING_RETRY_DAYS setting) or, after the last, writes the invoice off."""
    [charge] = await settle_many(session, [(charge_id, result)], now_or(now), retry_days)
    return charge


async def settle_many(
    session: AsyncSession, answers: Sequence[tuple[int, ChargeResult]], now: datetime, retry_days: Sequence[int] = (),
) -> list[m.CardCharge]:
    """`settle` for many charges (of different invoices) at once, in the caller's
    transaction, the payments of those that succeeded in one ledger post; the charges in
    the order of `answers`."""
    if not answers:
        return []
    result_of = dict(answers)
    C = m.CardCharge
    invoice_ids = list(await session.scalars(select(C.invoice_id).where(C.id.in_(result_of))))
    assert len(invoice_ids) == len(result_of), f"no card charge among {sorted(result_of)}"
    # Locked in order, as everywhere: the invoices, then their charges.
    bills = {i.id: i for i in await session.scalars(
        select(m.Invoice).where(m.Invoice.id.in_(invoice_ids)).order_by(m.Invoice.id).with_for_update()
        .execution_options(populate_existing=True))}
    charges = {c.id: c for c in await session.scalars(
        select(C).where(C.id.in_(result_of)).order_by(C.id).with_for_update().execution_options(populate_existing=True))}
    pending = [charges[cid] for cid, _ in answers if charges[cid].status == PENDING]
    made = [c for c in pending if result_of[c.id].success]
    for c in made:
        # While it was PENDING nothing else moved money on the invoice (`invoices.in_progress`): it is
        # OPEN and owes at least this much.
        invoices.require_open(bills[c.invoice_id])
        assert invoices.amount_due(bills[c.invoice_id]) >= c.amount, f"card charge {c.id} exceeds what is due"
    # Each payment: from the card processor's part for the invoice's connection into its receivable.
    ends = [(ledger.system_part(AccountKind.CARD_PROCESSOR, c.currency_code, bills[c.invoice_id].connection_id),
             ledger.receivable_of(bills[c.invoice_id])) for c in made]
    found = await ledger.accounts(session, [account for pair in ends for account in pair], now)
    rows = await ledger.post(session, [
        invoices.payment_transfer(bills[c.invoice_id], found[source.code].id, found[receivable.code].id, c.amount,
                                  c.processor_key, c.created_by_id)
        for c, (source, receivable) in zip(made, ends, strict=True)
    ], now=now)
    payments = [invoices.paid(bills[c.invoice_id], row, PaymentMethod.CARD, now) for c, row in zip(made, rows, strict=True)]
    session.add_all(payments)
    await session.flush()
    for c, payment in zip(made, payments, strict=True):
        c.status, c.charge_id, c.payment_id, c.settled_at = SUCCEEDED, result_of[c.id].charge_id, payment.id, now
        bills[c.invoice_id].payment_error = None
    for c in pending:
        if c in made:
            continue
        result = result_of[c.id]
        c.status, c.decline_code, c.settled_at = DECLINED, result.decline_code, now
        c.decline_reason = (result.decline_reason or "The card was declined.")[:300]
        bills[c.invoice_id].payment_error = c.decline_reason
        await session.flush()
        if c.attempt is not None:
            await declined(session, bills[c.invoice_id], c.attempt, c.decline_reason, now, retry_days)
    await session.flush()
    return [charges[cid] for cid, _ in answers]


async def declined(
    session: AsyncSession, invoice: m.Invoice, attempt: int, reason: str, now: datetime, retry_days: Sequence[int]
) -> bool:
    """The billing run's attempt at `invoice` was declined: the next attempt is due
    `retry_days[attempt - 1]` days on, or after the last the invoice is written off (True)."""
    invoice.payment_error = reason
    if attempt > len(retry_days):
        await invoices.mark_uncollectible(session, None, invoice.id, now=now)
        log.info("%s: card declined: %s", invoice.number, reason)
        log.info("%s: uncollectible after %d declined charges", invoice.number, attempt)
        return True
    invoice.next_payment_attempt_at = now + timedelta(days=retry_days[attempt - 1])
    log.info("%s: card declined: %s (next attempt %s)", invoice.number, reason,
             invoice.next_payment_attempt_at.isoformat())
    await session.flush()
    return False


@dataclass
class Reconciled:
    succeeded: list[m.CardCharge] = field(default_factory=list)
    declined: list[m.CardCharge] = field(default_factory=list)
    unanswered: int = 0


async def reconcile(
    reads: async_sessionmaker[AsyncSession], writes: async_sessionmaker[AsyncSession], gateway: PaymentGateway,
    now: datetime, older_than: timedelta, retry_days: Sequence[int] = (),
) -> Reconciled:
    """Settle every charge still PENDING that was asked for before `now - older_than`: the
    processor is asked again with the charge's key (no transaction open meanwhile), and
    its answer recorded, each charge in a (write) transaction of its own."""
    done = Reconciled()
    async with reads() as session:
        pending = list(await session.scalars(
            select(m.CardCharge).where(m.CardCharge.status == PENDING, m.CardCharge.created_at < now - older_than)
            .order_by(m.CardCharge.created_at, m.CardCharge.id)
        ))
    for charge in pending:
        result = await ask(gateway, charge)
        if result is None:
            done.unanswered += 1
            continue
        async with writes() as session, session.begin():
            settled = await settle(session, charge.id, result, now, retry_days)
        (done.succeeded if settled.status == SUCCEEDED else done.declined).append(settled)
    return done
