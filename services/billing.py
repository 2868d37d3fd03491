"""The card on file, and billing: each subscription invoiced and collected when its period ends.

`bill_connection` bills one connection whose period has ended, in the caller's one
transaction: the pending plan change (or cancellation) and add-on decreases take
effect, ONE SUBSCRIPTION invoice for the new period is issued (a line for the plan,
one per add-on), paid from the wallet first, the rest recorded as a PENDING charge
of the card on file, and the next period opens. `retry_invoice` tries a declined
charge again when it is due. `run` is the billing run: it finds the work that is due
and does each piece in a transaction of its own, claimed with `FOR UPDATE SKIP
LOCKED`, so that several runs at once (in as many processes or machines) never bill
anything twice.

The card is charged two-phase (services.card_payments): the PENDING charge commits
with the invoice, `charge` asks the processor with no transaction open and no
connection held, and its answer is recorded in a second transaction. The processor
knows the charge by `billing:<invoice>:card:<attempt>`, also the key of the ledger
transfer that records it: when the answer is lost or the process dies between the
steps, `payments reconcile` (run first by every billing run) asks again with the
same key and records that first charge; the card is never charged twice.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import re
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol, Sequence, TypeVar

from sqlalchemy import ColumnElement, Select, and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from db import models as m
from services import card_payments, invoices, ledger
from services.access import Principal, Role
from services.enums import InvoiceStatus, InvoiceType, PaymentMethod, PlanChangeKind, SubscriptionStatus
from services.errors import DomainError, ErrorCode, NotFound
from services.payments import PaymentGateway
from services.wallet import apply_pending_affiliate_payouts

log = logging.getLogger("revampd.billing")


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(timezone.utc)


# ---- The card on file ----------------------------------------------------------

MAX_TOKEN = 200
_CARD_NUMBER = re.compile(r"[0-9][0-9 -]{10,22}[0-9]")


def _checked_token(token: str) -> str:
    if _CARD_NUMBER.fullmatch(token) and 12 <= sum(ch.isdigit() for ch in token) <= 19:
        raise DomainError(
            ErrorCode.INVALID_CARD_TOKEN,
            "Send the token the payment processor gave for the card, never a card number.",
            "cardToken",
        )
    if not 1 <= len(token) <= MAX_TOKEN or not token.isprintable() or token != token.strip():
        raise DomainError(
            ErrorCode.INVALID_CARD_TOKEN,
            f"cardToken must be a token from the payment processor (1 to {MAX_TOKEN} characters, no spaces).",
            "cardToken",
        )
    return token


async def update_payment_method(
    session: AsyncSession,
    principal: Principal,
    gateway: PaymentGateway,
    card_token: str,
    now: datetime | None = None,
) -> m.Connection:
    """PARTNER_ADMIN: the card behind `card_token` becomes the connection's card on file.
    Only the token, brand, last 4 and expiry are kept. An invoice whose charge was
    declined is tried on the new card at the next billing run."""
    principal.require(Role.PARTNER_ADMIN)
    token = _checked_token(card_token)
    card = await gateway.card(token)  # before any lock: a processor may be slow
    if principal.connection_id is None:
        raise NotFound("RevampdConnection")
    connection = await invoices.locked_connection(session, principal.connection_id)
    connection.card_token = token
    connection.card_brand, connection.card_last4 = card.brand, card.last4
    connection.card_exp_month, connection.card_exp_year = card.exp_month, card.exp_year
    at = _now(now)
    await session.execute(
        update(m.Invoice)
        .where(
            m.Invoice.connection_id == connection.id,
            m.Invoice.status == InvoiceStatus.OPEN.value,
            m.Invoice.next_payment_attempt_at > at,
        )
        .values(next_payment_attempt_at=at)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    return connection


# ---- Periods -------------------------------------------------------------------

def next_period_end(start: datetime, end: datetime) -> datetime:
    """The end of the monthly period after [start, end): one month after `end`, on the
    period's anchor day where the month has it, else on the month's last day, at the
    same time of day. The anchor is `end`'s day, unless `end` was cut short to the
    last day of its month (then it is `start`'s): Jan 31 -> Feb 28 -> Mar 31 -> Apr 30."""
    last = calendar.monthrange(end.year, end.month)[1]
    anchor = start.day if end.day == last and start.day > end.day else end.day
    year, month = divmod(end.year * 12 + end.month, 12)  # the month after end's, 0-based
    month += 1
    return end.replace(year=year, month=month, day=min(anchor, calendar.monthrange(year, month)[1]))


# ---- Billing one connection ----------------------------------------------------

class BillingPolicy(Protocol):
    """The settings billing reads (server.settings.Settings has them)."""

    @property
    def billing_pay_from_wallet(self) -> bool: ...

    @property
    def billing_retry_days(self) -> tuple[int, ...]: ...

    @property
    def payments_reconcile_after_seconds(self) -> int: ...


NO_CARD = "No card on file."


@dataclass
class Collection:
    """What collecting an invoice did."""

    invoice: m.Invoice
    from_wallet: int = 0
    charged: int = 0  # to the card
    declined: str | None = None  # the processor's reason
    uncollectible: bool = False
    # The card charge recorded, PENDING until `charge` asks the processor (after the commit).
    charge: m.CardCharge | None = None
    unanswered: bool = False  # the processor's answer was lost: `payments reconcile` settles it


@dataclass
class Billed:
    """A connection's period billed: the subscription ended, or the next period opened
    with its invoice (none when nothing is owed for it)."""

    connection_id: int
    canceled: bool = False
    collection: Collection | None = None


async def bill_connection(
    session: AsyncSession,
    connection_id: int,
    now: datetime,
    settings: BillingPolicy,
) -> Billed | None:
    """Bill the period of `connection_id` that ended at or before `now`, in the caller's
    transaction; None when no period has ended (or the subscription has). What the wallet
    does not pay is a PENDING card charge (`Collection.charge`), for `charge` to ask of the
    processor once the caller has committed. Billing the
    same period twice is impossible: the subscription row is locked and moves on to the
    next period in this transaction, and the database allows one SUBSCRIPTION invoice
    per connection and period."""
    subscription = await session.scalar(
        select(m.Subscription).where(m.Subscription.connection_id == connection_id).with_for_update()
    )
    if subscription is None:
        raise NotFound("Subscription")
    if subscription.status != SubscriptionStatus.ACTIVE.value or subscription.current_period_end > now:
        return None
    connection = await invoices.locked_connection(session, connection_id)
    boundary = subscription.current_period_end
    _apply_plan_change(subscription, boundary)
    addons = await _apply_addon_changes(session, connection_id, boundary, now)
    if subscription.status == SubscriptionStatus.CANCELED.value:
        await session.flush()
        return Billed(connection_id, canceled=True)
    start, end = boundary, next_period_end(subscription.current_period_start, boundary)
    plan = await session.get(m.Plan, subscription.plan_id)
    assert plan is not None
    billed = Billed(connection_id)
    lines = _lines(connection, plan, addons, start)
    if lines:
        invoice = await _period_invoice(session, connection, lines, (start, end), now)
        # Credits first, so that the wallet pays the new invoice with them.
        await apply_pending_affiliate_payouts(session, connection.id, now)
        billed.collection = await _collect(session, connection, invoice, now, settings)
    subscription.current_period_start, subscription.current_period_end = start, end
    await session.flush()
    return billed


def _apply_plan_change(subscription: m.Subscription, boundary: datetime) -> None:
    """The pending upgrade or downgrade (the new plan) or cancellation (the end)."""
    effective = subscription.pending_effective_at
    if subscription.pending_kind is None or effective is None or effective > boundary:
        return
    if subscription.pending_kind == PlanChangeKind.CANCEL.value:
        subscription.status = SubscriptionStatus.CANCELED.value
    else:
        assert subscription.pending_plan_id is not None
        subscription.plan_id = subscription.pending_plan_id
    subscription.pending_kind = subscription.pending_plan_id = None
    subscription.pending_effective_at = subscription.pending_requested_at = None


async def _apply_addon_changes(
    session: AsyncSession, connection_id: int, boundary: datetime, now: datetime
) -> list[tuple[m.AddOn, m.AddOnProduct]]:
    """Pending decreases take effect (a removal deletes the add-on); the add-ons kept."""
    rows = (
        await session.execute(
            select(m.AddOn, m.AddOnProduct)
            .join(m.AddOnProduct, m.AddOnProduct.id == m.AddOn.product_id)
            .where(m.AddOn.connection_id == connection_id)
            .order_by(m.AddOn.created_at, m.AddOn.id)
            .with_for_update(of=m.AddOn)
        )
    ).all()
    kept = []
    for addon, product in rows:
        effective = addon.pending_effective_at
        if addon.pending_quantity is not None and effective is not None and effective <= boundary:
            if addon.pending_quantity == 0:
                await session.delete(addon)
                continue
            addon.quantity, addon.pending_quantity, addon.pending_effective_at = addon.pending_quantity, None, None
            addon.updated_at = now
        kept.append((addon, product))
    return kept


def _lines(
    connection: m.Connection, plan: m.Plan, addons: Sequence[tuple[m.AddOn, m.AddOnProduct]], start: datetime
) -> list[invoices.Line]:
    """A line for the plan and one per add-on, as projected (services.addons)."""
    month = f"{start:%b %Y}"
    for name, currency in ((plan.name, plan.currency_code), *((p.name, p.currency_code) for _, p in addons)):
        if currency != connection.currency_code:
            raise DomainError(
                ErrorCode.CURRENCY_MISMATCH, f"{name} is priced in {currency}; the connection is billed in "
                f"{connection.currency_code}."
            )
    lines = []
    if plan.monthly_price > 0:
        lines.append(invoices.Line(f"{plan.name} plan, {month}", 1, plan.monthly_price, plan_id=plan.id))
    lines += [
        invoices.Line(f"{product.name}, {month}", addon.quantity, product.monthly_price, addon_product_id=product.id)
        for addon, product in addons
    ]
    return lines


async def _period_invoice(
    session: AsyncSession,
    connection: m.Connection,
    lines: list[invoices.Line],
    period: tuple[datetime, datetime],
    now: datetime,
) -> m.Invoice:
    """The period's SUBSCRIPTION invoice, still a DRAFT: a new one, or the draft made
    ahead of time for the period (brought up to date, keeping its number)."""
    start, end = period
    existing = await session.scalar(
        select(m.Invoice).where(
            m.Invoice.connection_id == connection.id,
            m.Invoice.type == InvoiceType.SUBSCRIPTION.value,
            m.Invoice.period_start == start,
        ).with_for_update()
    )
    if existing is None:
        return await invoices.create(
            session, connection, type=InvoiceType.SUBSCRIPTION, lines=lines, due_at=start, period=period,
            open=False, now=now,
        )
    if existing.status != InvoiceStatus.DRAFT.value:
        raise DomainError(
            ErrorCode.ALREADY_INVOICED,
            f"{existing.number} ({existing.status}) already invoices the period from {start.isoformat()}.",
        )
    await session.execute(delete(m.InvoiceLineItem).where(m.InvoiceLineItem.invoice_id == existing.id))
    session.add_all(
        m.InvoiceLineItem(
            invoice_id=existing.id, description=li.description, quantity=li.quantity, unit_amount=li.unit_amount,
            amount=li.quantity * li.unit_amount, plan_id=li.plan_id, addon_product_id=li.addon_product_id,
        )
        for li in lines
    )
    existing.total = sum(li.quantity * li.unit_amount for li in lines)
    existing.issued_at, existing.due_at, existing.period_end = now, start, end
    await session.flush()
    return existing


async def _collect(
    session: AsyncSession,
    connection: m.Connection,
    invoice: m.Invoice,
    now: datetime,
    settings: BillingPolicy,
) -> Collection:
    """Pay what is due on `invoice` (a DRAFT, opened here, or OPEN) from the wallet as far
    as it goes, and record a PENDING charge of the rest to the card on file, which `charge`
    asks of the processor once this transaction has committed. Without a card on file it
    is declined at once: left OPEN with the next attempt due, or after the last retry
    UNCOLLECTIBLE."""
    done = Collection(invoice)
    due = invoice.total - invoice.amount_paid
    wallet = None
    if settings.billing_pay_from_wallet:
        wallet = await ledger.wallet_account(session, connection, now)
        await session.refresh(wallet, with_for_update=True)
        done.from_wallet = max(0, min(due, wallet.balance - wallet.pending))
    rest = due - done.from_wallet
    attempt = invoice.payment_attempts + 1
    if invoice.status == InvoiceStatus.DRAFT.value:
        await invoices.finalize(session, invoice, now=now)
    if wallet is not None and done.from_wallet:
        key = f"billing:{invoice.id}:wallet" + (f":{attempt}" if attempt > 1 else "")
        await invoices.pay(
            session, invoice, source=wallet, amount=done.from_wallet, method=PaymentMethod.WALLET, key=key,
            by=None, now=now,
        )
    if rest == 0:
        if attempt > 1:
            invoice.payment_error = None  # the wallet paid what the card could not
        await session.flush()
        return done
    invoice.payment_attempts = attempt
    if connection.card_token is None:
        done.declined = NO_CARD
        done.uncollectible = await card_payments.declined(
            session, invoice, attempt, NO_CARD, now, settings.billing_retry_days)
        return done
    # The processor knows the charge by this key, which is also the payment's ledger key.
    done.charge = await card_payments.record(
        session, invoice, rest, connection.card_token, f"billing:{invoice.id}:card:{attempt}", attempt=attempt,
        now=now,
    )
    return done


async def charge(
    writes: async_sessionmaker[AsyncSession],
    gateway: PaymentGateway,
    collection: Collection,
    now: datetime,
    settings: BillingPolicy,
    turns: AbstractAsyncContextManager[Any] | None = None,
) -> None:
    """Ask the processor for `collection`'s PENDING card charge, committed by the caller,
    with no transaction open, then record its answer in a transaction of its own (taken
    inside `turns`, when given). A lost answer leaves it PENDING for `payments reconcile`."""
    pending = collection.charge
    assert pending is not None
    result = await card_payments.ask(gateway, pending)
    if result is None:
        collection.unanswered = True
        return
    async with turns or nullcontext(), writes() as session, session.begin():
        settled = await card_payments.settle(session, pending.id, result, now, settings.billing_retry_days)
        invoice = await session.get(m.Invoice, settled.invoice_id)
        assert invoice is not None
    if settled.status == card_payments.SUCCEEDED:
        collection.charged = settled.amount
        log.debug("%s: charged %s to the card (%s)", invoice.number, settled.amount, settled.charge_id)
    else:
        collection.declined = settled.decline_reason
        collection.uncollectible = invoice.status == InvoiceStatus.UNCOLLECTIBLE.value


def _retry_due(now: datetime) -> ColumnElement[bool]:
    return and_(m.Invoice.status == InvoiceStatus.OPEN.value, m.Invoice.next_payment_attempt_at <= now)


async def retry_invoice(
    session: AsyncSession,
    invoice_id: int,
    now: datetime,
    settings: BillingPolicy,
) -> Collection | None:
    """Try the declined charge of an OPEN invoice again, if it is due by `now` (the wallet
    first, when it holds credit now; the rest a PENDING card charge, as `bill_connection`
    records it); None when it is not due."""
    invoice = await session.scalar(
        select(m.Invoice).where(m.Invoice.id == invoice_id, _retry_due(now)).with_for_update()
    )
    if invoice is None:
        return None
    if await invoices.charge_pending(session, invoice.id):
        return None  # the Partner's own charge of it is on its way: tried again once settled, if still due
    connection = await session.get(m.Connection, invoice.connection_id)
    assert connection is not None
    invoice.next_payment_attempt_at = None
    return await _collect(session, connection, invoice, now, settings)


# ---- The billing run -----------------------------------------------------------

BATCH_SIZE = 100
BUSY_ATTEMPTS = 3
R = TypeVar("R")


@dataclass
class RunSummary:
    billed: int = 0  # periods billed (a new period opened)
    canceled: int = 0  # subscriptions that ended
    charged: int = 0  # card charges that went through
    declined: int = 0  # card charges declined (no card on file counts)
    uncollectible: int = 0  # invoices written off after the last retry
    retried: int = 0  # declined charges tried again
    # Card charges (this run's earlier or a Partner's pay now) whose answer was lost, settled at the start.
    reconciled: int = 0
    # Card charges whose answer was lost in this run: PENDING, settled by `payments reconcile`.
    unanswered: int = 0
    # What failed: ("connection", id), ("invoice", id) or ("card charge", id); each is logged with
    # its traceback. A card charge that failed is PENDING, settled by `payments reconcile`.
    failed: list[tuple[str, int]] = field(default_factory=list)

    def count(self, collection: Collection | None) -> None:
        if collection is None:
            return
        self.charged += collection.charged > 0
        self.declined += collection.declined is not None
        self.uncollectible += collection.uncollectible
        self.unanswered += collection.unanswered


Progress = Callable[[int, int], None]


def _period_due(now: datetime) -> ColumnElement[bool]:
    return and_(
        m.Subscription.status == SubscriptionStatus.ACTIVE.value, m.Subscription.current_period_end <= now
    )


async def run(
    reads: async_sessionmaker[AsyncSession],
    writes: async_sessionmaker[AsyncSession],
    now: datetime,
    gateway: PaymentGateway,
    settings: BillingPolicy,
    *,
    workers: int = 1,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
    busy: Callable[[BaseException], bool] = lambda exc: False,
) -> RunSummary:
    """Bill every period ended by `now` and retry every declined charge due by then, after
    settling the card charges whose answer was lost (card_payments.reconcile).

    Each connection is billed in two transactions with the processor's call between them,
    none open meanwhile (the invoice, its wallet payment and a PENDING card charge; then
    the charge's outcome): `workers` is how many calls are in flight at once, and only a
    worker inside a transaction holds a pooled connection.

    `writes` must make write sessions (db.engine.write_sessions: BEGIN IMMEDIATE on
    SQLite). Due rows are listed in batches, in id order; `workers` tasks take them one
    at a time, each in a transaction of its own that claims its row with
    `SELECT ... FOR UPDATE SKIP LOCKED` and checks it is still due: a row another run
    holds is skipped (that run bills it), one already billed is no longer due. On
    SQLite, which has no row locks, write transactions take turns. The run goes over
    the due rows again until a pass claims nothing, so periods missed for months are
    billed one after the other and a row skipped while locked is billed once free. A
    failure is logged with its traceback and counted; it stops nothing else, and its
    row stays due for the next run. What `busy` says is a busy database (a lock not
    had in time: db.engine.is_busy) is tried again first, up to BUSY_ATTEMPTS times."""
    summary = RunSummary()
    # First the Partners' own card charges whose answer was lost, so that an invoice one paid is
    # not retried. Should that fail, billing goes on: a retry skips an invoice whose charge is PENDING.
    try:
        settled = await card_payments.reconcile(
            reads, writes, gateway, now, timedelta(seconds=settings.payments_reconcile_after_seconds),
            settings.billing_retry_days,
        )
        summary.reconciled = len(settled.succeeded) + len(settled.declined)
    except Exception:
        log.exception("billing: settling card charges whose answer was lost failed; `payments reconcile` does it")
    failed_connections: set[int] = set()
    failed_invoices: set[int] = set()
    done = total = 0
    async with reads() as session:
        total += await session.scalar(select(func.count()).select_from(m.Invoice).where(_retry_due(now))) or 0
        total += await session.scalar(select(func.count()).select_from(m.Subscription).where(_period_due(now))) or 0
    if progress:
        progress(0, total)

    def step() -> None:
        nonlocal done, total
        done += 1
        total = max(total, done)
        if progress:
            progress(done, total)

    # SQLite has one writer at a time and its waiters poll: this process's workers take
    # turns here instead, so that none of them waits out the busy timeout.
    sqlite = writes.kw["bind"].dialect.name == "sqlite"
    turns: AbstractAsyncContextManager[Any] = asyncio.Lock() if sqlite else nullcontext()

    async def transact(what: str, work: Callable[[AsyncSession], Awaitable[R]]) -> tuple[bool, R | None]:
        """`work` in a transaction of its own: (True, its result), or (False, None) once it
        failed (logged). A busy database is tried again, as nothing was committed (a card
        charge is asked again with the same key)."""
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            try:
                async with turns, writes() as session, session.begin():
                    return True, await work(session)
            except Exception as exc:
                if busy(exc) and attempt < BUSY_ATTEMPTS:
                    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                    log.warning("billing: %s: the database is busy (%s); trying again", what, reason)
                    continue
                log.exception("billing: %s failed", what)
                return False, None
        raise AssertionError("unreachable")

    async def collect(collection: Collection) -> None:
        """The card charge the committed transaction recorded, asked of the processor with no
        transaction open: this is where the workers' calls overlap."""
        if collection.charge is None:
            return
        try:
            await charge(writes, gateway, collection, now, settings, turns)
        except Exception:
            log.exception("billing: card charge %s of %s failed; it stays PENDING for `payments reconcile`",
                          collection.charge.id, collection.invoice.number)
            summary.failed.append(("card charge", collection.charge.id))

    async def claim_and_retry(session: AsyncSession, invoice_id: int) -> Collection | None:
        claimed = await session.scalar(
            select(m.Invoice.id).where(m.Invoice.id == invoice_id, _retry_due(now)).with_for_update(skip_locked=True)
        )
        return None if claimed is None else await retry_invoice(session, invoice_id, now, settings)

    async def retry(row: tuple[int, int]) -> bool:
        invoice_id, connection_id = row
        if invoice_id in failed_invoices:
            return False
        ok, collection = await transact(
            f"invoice {invoice_id} of connection {connection_id}", lambda session: claim_and_retry(session, invoice_id)
        )
        if not ok:
            summary.failed.append(("invoice", invoice_id))
            failed_invoices.add(invoice_id)
        if collection is None:
            return False
        await collect(collection)
        summary.retried += 1
        summary.count(collection)
        return True

    async def claim_and_bill(session: AsyncSession, subscription_id: int, connection_id: int) -> Billed | None:
        claimed = await session.scalar(
            select(m.Subscription.id)
            .where(m.Subscription.id == subscription_id, _period_due(now))
            .with_for_update(skip_locked=True)
        )
        return None if claimed is None else await bill_connection(session, connection_id, now, settings)

    async def bill(row: tuple[int, int]) -> bool:
        subscription_id, connection_id = row
        if connection_id in failed_connections:
            return False
        ok, billed = await transact(
            f"connection {connection_id}", lambda session: claim_and_bill(session, subscription_id, connection_id)
        )
        if not ok:
            summary.failed.append(("connection", connection_id))
            failed_connections.add(connection_id)
        if billed is None:
            return False
        if billed.canceled:
            summary.canceled += 1
        else:
            if billed.collection is not None:
                await collect(billed.collection)
            summary.billed += 1
            summary.count(billed.collection)
        return True

    retries = select(m.Invoice.id, m.Invoice.connection_id).where(_retry_due(now))
    periods = select(m.Subscription.id, m.Subscription.connection_id).where(_period_due(now))
    while True:
        claimed = await _work(_due_rows(reads, retries, m.Invoice.id, batch_size), retry, workers, step)
        claimed += await _work(_due_rows(reads, periods, m.Subscription.id, batch_size), bill, workers, step)
        if claimed == 0:
            return summary


async def _due_rows(
    reads: async_sessionmaker[AsyncSession],
    stmt: Select[int, int],
    key: InstrumentedAttribute[int],
    batch_size: int,
) -> AsyncIterator[list[tuple[int, int]]]:
    """The rows of `stmt`, `batch_size` at a time in `key` order (its first column), each
    batch read in a short transaction of its own."""
    after = 0
    while True:
        async with reads() as session:
            rows = [(a, b) for a, b in await session.execute(stmt.where(key > after).order_by(key).limit(batch_size))]
        if not rows:
            return
        yield rows
        after = rows[-1][0]


async def _work(
    batches: AsyncIterator[list[tuple[int, int]]],
    job: Callable[[tuple[int, int]], Awaitable[bool]],
    workers: int,
    step: Callable[[], None],
) -> int:
    """`job` on every row of `batches`, on `workers` tasks; how many did something."""
    queue: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue(maxsize=2 * workers)
    did = 0

    async def worker() -> None:
        nonlocal did
        while (row := await queue.get()) is not None:
            did += await job(row)
            step()

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    try:
        async for rows in batches:
            for row in rows:
                await queue.put(row)
        for _ in tasks:
            await queue.put(None)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return did
