"""The card on file, and billing: each subscription invoiced and collected when its period ends.

`bill_connection` bills one connection whose period has ended, in the caller's one
transaction: the pending plan change (or cancellation) and add-on decreases take
effect, ONE SUBSCRIPTION invoice for the new period is issued (a line for the plan,
one per add-on), paid from the wallet first, the rest recorded as a PENDING charge
of the card on file, and the next period opens. `retry_invoice` tries a declined
charge again when it is due. `run` is the billing run: it finds the work that is due
and does it in batches, each in a transaction of its own, claimed with `FOR UPDATE
SKIP LOCKED`, so that several runs at once (in as many processes or machines) never
bill anything twice. `bill_batch` bills a batch of connections as `bill_connection`
bills one, with each kind of row read once for the batch and one ledger post for all
its invoices: the run's cost is in the rows it writes, not in statements per connection.

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
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol, Sequence, TypeVar

from sqlalchemy import ColumnElement, Select, and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from db import models as m
from db.states import (
    AccountKind,
    CreditStatus,
    InvoiceStatus,
    InvoiceType,
    PaymentMethod,
    PlanChangeKind,
    SubscriptionStatus,
)
from services import card_payments, invoices, ledger, refunds
from services.access import Principal, Role
from services.clock import now_or
from services.errors import DomainError, ErrorCode, NotFound
from services.payments import PaymentGateway
from services.wallet import apply_pending_affiliate_payouts

log = logging.getLogger("revampd.billing")


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
    at = now_or(now)
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


async def bill_batch(
    session: AsyncSession,
    subscription_ids: Sequence[int],
    now: datetime,
    settings: BillingPolicy,
) -> list[Billed]:
    """`bill_connection` for many connections in the caller's one transaction, with what is
    the same for all of them done once: each kind of row read (and locked) in one statement
    for the batch, the invoices, lines, payments and card charges written together, and the
    ledger transfers of all the invoices in one post. Subscriptions another transaction
    holds are skipped (SKIP LOCKED), as are those no longer due. A connection with more to
    it this period (a plan change or add-on decrease taking effect, a draft made ahead,
    affiliate payouts to credit first) is billed by `bill_connection`, in this transaction."""
    S = m.Subscription
    subscriptions = list(await session.scalars(
        select(S).where(S.id.in_(subscription_ids), _period_due(now)).order_by(S.id)
        .with_for_update(skip_locked=True).execution_options(populate_existing=True)
    ))
    if not subscriptions:
        return []
    ids = [s.connection_id for s in subscriptions]
    connections = {c.id: c for c in await session.scalars(
        select(m.Connection).where(m.Connection.id.in_(ids)).order_by(m.Connection.id).with_for_update()
        .execution_options(populate_existing=True)
    )}
    addons: dict[int, list[tuple[m.AddOn, m.AddOnProduct]]] = {cid: [] for cid in ids}
    for addon, product in await session.execute(
        select(m.AddOn, m.AddOnProduct).join(m.AddOnProduct, m.AddOnProduct.id == m.AddOn.product_id)
        .where(m.AddOn.connection_id.in_(ids)).order_by(m.AddOn.connection_id, m.AddOn.created_at, m.AddOn.id)
        .with_for_update(of=m.AddOn)
    ):
        addons[addon.connection_id].append((addon, product))
    drafted = set(await session.scalars(
        select(m.Invoice.connection_id).where(
            m.Invoice.connection_id.in_(ids), m.Invoice.type == InvoiceType.SUBSCRIPTION.value,
            m.Invoice.period_start.in_({s.current_period_end for s in subscriptions}),
        )
    ))
    crediting = set(await session.scalars(
        select(m.AffiliatePayout.connection_id).where(
            m.AffiliatePayout.connection_id.in_(ids), m.AffiliatePayout.credit_status == CreditStatus.PENDING.value)
    ))
    plans = {p.id: p for p in await session.scalars(select(m.Plan))}

    def simple(s: m.Subscription) -> bool:
        boundary = s.current_period_end
        return not (
            (s.pending_kind is not None and s.pending_effective_at is not None and s.pending_effective_at <= boundary)
            or any(a.pending_quantity is not None and a.pending_effective_at is not None
                   and a.pending_effective_at <= boundary for a, _ in addons[s.connection_id])
            or s.connection_id in drafted or s.connection_id in crediting
            or (connections[s.connection_id].card_token is None and not settings.billing_retry_days)
        )

    billed: dict[int, Billed] = {}
    new: list[tuple[m.Connection, m.Invoice, list[invoices.Line]]] = []
    for s in subscriptions:
        if not simple(s):
            one = await bill_connection(session, s.connection_id, now, settings)
            assert one is not None, "locked and due"
            billed[s.connection_id] = one
            continue
        connection = connections[s.connection_id]
        start, end = s.current_period_end, next_period_end(s.current_period_start, s.current_period_end)
        lines = _lines(connection, plans[s.plan_id], addons[s.connection_id], start)
        billed[s.connection_id] = Billed(connection.id)
        if lines:
            new.append((connection, invoices.draft(
                connection, type=InvoiceType.SUBSCRIPTION, lines=lines, due_at=start, period=(start, end), now=now,
            ), lines))
        s.current_period_start, s.current_period_end = start, end
    if new:
        await _open_and_collect(session, new, now, settings, billed)
    await session.flush()
    return [billed[s.connection_id] for s in subscriptions]


async def _open_and_collect(
    session: AsyncSession,
    new: list[tuple[m.Connection, m.Invoice, list[invoices.Line]]],
    now: datetime,
    settings: BillingPolicy,
    billed: dict[int, Billed],
) -> None:
    """bill_batch's new invoices: written, opened and paid from the wallet as far as it
    goes (one ledger post for all), the rest a PENDING card charge each, as `_collect` does
    for one."""
    session.add_all(invoice for _, invoice, _ in new)
    await session.flush()
    session.add_all(item for _, invoice, lines in new for item in invoices.line_items(invoice, lines))
    from_wallet = settings.billing_pay_from_wallet
    found = await ledger.accounts(session, [
        account for connection, invoice, _ in new for account in (
            ledger.receivable_of(invoice), ledger.system_part(AccountKind.REVAMPD_REVENUE, invoice.currency_code, connection.id),
            *([ledger.wallet_of(connection)] if from_wallet else []),
        )
    ], now)
    wallets = {connection.id: found[ledger.wallet_of(connection).code] for connection, _, _ in new if from_wallet}
    if wallets:
        # Read under the lock post() takes too, so that what the wallet pays is what it holds.
        await session.execute(
            select(m.LedgerAccount).where(m.LedgerAccount.id.in_([w.id for w in wallets.values()]))
            .order_by(m.LedgerAccount.id).with_for_update().execution_options(populate_existing=True)
        )
    moves, paying = [], []
    for connection, invoice, _ in new:
        receivable = found[ledger.receivable_of(invoice).code]
        revenue = found[ledger.system_part(AccountKind.REVAMPD_REVENUE, invoice.currency_code, connection.id).code]
        moves.append(invoices.issued(invoice, receivable.id, revenue.id))
        collection = Collection(invoice)
        billed[connection.id].collection = collection
        wallet = wallets.get(connection.id)
        if wallet is not None:
            collection.from_wallet = _wallet_part(invoice.total, wallet)
        if wallet is not None and collection.from_wallet:
            moves.append(invoices.payment_transfer(
                invoice, wallet.id, receivable.id, collection.from_wallet, f"billing:{invoice.id}:wallet", None))
            paying.append(invoice)
    rows = await ledger.post(session, moves, now=now)
    by_key = {row.key: row for row in rows}
    for _, invoice, _ in new:
        invoices.opened(invoice, now)
    session.add_all(invoices.paid(invoice, by_key[f"billing:{invoice.id}:wallet"], PaymentMethod.WALLET, now)
                    for invoice in paying)
    for connection, invoice, _ in new:
        done = billed[connection.id].collection
        assert done is not None
        if invoice.total > done.from_wallet:
            await _card_part(session, connection, done, invoice.total - done.from_wallet, now, settings)


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
        done.from_wallet = _wallet_part(due, wallet)
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
    await _card_part(session, connection, done, rest, now, settings)
    await session.flush()
    return done


def _wallet_part(due: int, wallet: m.LedgerAccount) -> int:
    """What the wallet (read under its lock) pays of `due`: all it holds, up to `due`."""
    return max(0, min(due, wallet.balance - wallet.pending))


async def _card_part(
    session: AsyncSession, connection: m.Connection, done: Collection, rest: int, now: datetime,
    settings: BillingPolicy,
) -> None:
    """The next attempt at `rest` of the (OPEN) invoice: a PENDING charge of the card on file
    (added, for the caller to flush), or without a card declined at once."""
    invoice = done.invoice
    attempt = invoice.payment_attempts = invoice.payment_attempts + 1
    if connection.card_token is None:
        done.declined = NO_CARD
        done.uncollectible = await card_payments.declined(
            session, invoice, attempt, NO_CARD, now, settings.billing_retry_days)
        return
    # The processor knows the charge by this key, which is also the payment's ledger key.
    done.charge = card_payments.new_charge(
        invoice, rest, connection.card_token, f"billing:{invoice.id}:card:{attempt}", attempt=attempt, now=now,
    )
    session.add(done.charge)


async def charge(
    writes: async_sessionmaker[AsyncSession],
    gateway: PaymentGateway,
    collections: Sequence[Collection],
    now: datetime,
    settings: BillingPolicy,
    turns: AbstractAsyncContextManager[Any] | None = None,
) -> None:
    """Ask the processor for each collection's PENDING card charge, committed by the caller,
    all at once and with no transaction open, then record the answers in one transaction
    (taken inside `turns`, when given). A lost answer leaves its charge PENDING for
    `payments reconcile`."""
    results = await asyncio.gather(*(card_payments.ask(gateway, c.charge) for c in collections if c.charge))
    answered = []
    for collection, result in zip([c for c in collections if c.charge], results, strict=True):
        if result is None:
            collection.unanswered = True
        else:
            answered.append((collection, result))
    if not answered:
        return
    async with turns or nullcontext(), writes() as session, session.begin():
        settled = await card_payments.settle_many(
            session, [(c.charge.id, r) for c, r in answered if c.charge], now, settings.billing_retry_days)
        # The invoices settle_many locked and brought up to date, from the session's identity map.
        written_off = set()
        for c in settled:
            bill = await session.get(m.Invoice, c.invoice_id)
            if bill is not None and bill.status == InvoiceStatus.UNCOLLECTIBLE.value:
                written_off.add(c.invoice_id)
    for (collection, _), done in zip(answered, settled, strict=True):
        if done.status == card_payments.SUCCEEDED:
            collection.charged = done.amount
        else:
            collection.declined = done.decline_reason
            collection.uncollectible = done.invoice_id in written_off


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

    Each batch is billed in two transactions with the processor's calls between them,
    none open meanwhile (the invoices, their wallet payments and PENDING card charges;
    then the charges' outcomes): a worker has its batch's calls in flight at once, and
    only a worker inside a transaction holds a pooled connection.

    `writes` must make write sessions (db.engine.write_sessions: BEGIN IMMEDIATE on
    SQLite). Due rows are listed in batches of `batch_size`, in id order; `workers`
    tasks take them a batch at a time (periods: `bill_batch`, the batch in one
    transaction; declined charges due again: one invoice per transaction), claimed with
    `SELECT ... FOR UPDATE SKIP LOCKED` and checked to be still due: a row another run
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
        given_back = await refunds.reconcile(
            reads, writes, gateway, now, timedelta(seconds=settings.payments_reconcile_after_seconds))
        if given_back.refunded or given_back.refused:
            log.info("billing: settled %d card refunds whose answer was lost",
                     len(given_back.refunded) + len(given_back.refused))
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

    def step(n: int) -> None:
        nonlocal done, total
        done += n
        total = max(total, done)
        if progress:
            progress(done, total)

    # SQLite has one writer at a time and its waiters poll: this process's workers take
    # turns here instead, so that none of them waits out the busy timeout.
    sqlite = writes.kw["bind"].dialect.name == "sqlite"
    turns: AbstractAsyncContextManager[Any] = asyncio.Lock() if sqlite else nullcontext()

    async def transact(
        what: str, work: Callable[[AsyncSession], Awaitable[R]], quiet: bool = False
    ) -> tuple[bool, R | None]:
        """`work` in a transaction of its own: (True, its result), or (False, None) once it
        failed (logged with its traceback; `quiet`: one WARNING line). A busy database is
        tried again, as nothing was committed."""
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            try:
                async with turns, writes() as session, session.begin():
                    return True, await work(session)
            except Exception as exc:
                if busy(exc) and attempt < BUSY_ATTEMPTS:
                    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                    log.warning("billing: %s: the database is busy (%s); trying again", what, reason)
                    continue
                if quiet:
                    log.warning("billing: %s failed (%s: %s)", what, type(exc).__name__, exc)
                else:
                    log.exception("billing: %s failed", what)
                return False, None
        raise AssertionError("unreachable")

    async def collect(collections: Sequence[Collection]) -> None:
        """The card charges the committed transaction recorded, asked of the processor at once
        with no transaction open: this is where the calls overlap."""
        charging = [c for c in collections if c.charge is not None]
        if not charging:
            return
        try:
            await charge(writes, gateway, charging, now, settings, turns)
        except Exception:
            log.exception("billing: recording %d card charges' answers failed; they stay PENDING for "
                          "`payments reconcile`", len(charging))
            summary.failed += [("card charge", c.charge.id) for c in charging if c.charge is not None]

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
        await collect([collection])
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
        if billed.collection is not None:
            await collect([billed.collection])
        tally(billed)
        return True

    def tally(billed: Billed) -> None:
        if billed.canceled:
            summary.canceled += 1
        else:
            summary.billed += 1
            summary.count(billed.collection)

    async def bill_many(rows: list[tuple[int, int]]) -> int:
        """A batch of due subscriptions billed in one transaction (bill_batch), their card
        charges asked together after it commits; should the batch fail, each of its
        connections on its own, so that the others are billed and the one at fault named."""
        rows = [row for row in rows if row[1] not in failed_connections]
        if not rows:
            return 0
        ok, billed = await transact(
            f"the batch of connections {rows[0][1]} to {rows[-1][1]}",
            lambda session: bill_batch(session, [sid for sid, _ in rows], now, settings), quiet=True,
        )
        if not ok:
            return sum([await bill(row) for row in rows])
        assert billed is not None
        await collect([b.collection for b in billed if b.collection is not None])
        for b in billed:
            tally(b)
        return len(billed)

    async def one_by_one(rows: list[tuple[int, int]]) -> int:
        return sum([await retry(row) for row in rows])

    retries = select(m.Invoice.id, m.Invoice.connection_id).where(_retry_due(now))
    periods = select(m.Subscription.id, m.Subscription.connection_id).where(_period_due(now))
    while True:
        # Retries (few, each with more to it) one invoice at a time; periods a batch at a time.
        claimed = await _work(_due_rows(reads, retries, m.Invoice.id, 1), one_by_one, workers, step)
        claimed += await _work(_due_rows(reads, periods, m.Subscription.id, batch_size), bill_many, workers, step)
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
    job: Callable[[list[tuple[int, int]]], Awaitable[int]],
    workers: int,
    step: Callable[[int], None],
) -> int:
    """`job` on each of `batches`, on `workers` tasks; how many rows it did something to."""
    queue: asyncio.Queue[list[tuple[int, int]] | None] = asyncio.Queue(maxsize=2 * workers)
    did = 0

    async def worker() -> None:
        nonlocal did
        while (rows := await queue.get()) is not None:
            did += await job(rows)
            step(len(rows))

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    try:
        async for rows in batches:
            await queue.put(rows)
        for _ in tasks:
            await queue.put(None)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return did
