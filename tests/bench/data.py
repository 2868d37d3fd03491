"""Benchmark rows: more of everything the dashboard lists, for the demo's Northwind.

The demo seed gives Northwind a few dozen invoices, a handful of waiting tickets and
eleven payouts; a page of 100 needs more. `add_bench_rows` adds, for the benchmark
only, ONE_TIME invoices (issued, most paid by card, some open, some void: through
services.invoices, so the ledger agrees), OPEN and IN_PROGRESS tickets with their
conversations (plain inserts: tickets move no money), and older monthly payouts, each
made of Sub-Org transactions and sent to the bank (the ledger moves posted as the
demo seed posts them). `revampd-bff ledger verify` finds nothing wrong afterwards.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db import models as m
from db.engine import create_engine, read_sessions, write_sessions
from db.migrate import upgrade
from db.states import AccountKind, InvoiceType, PaymentMethod, TransferKind
from services import invoices, money, payouts, refunds
from services import ledger as L
from services.access import Principal, Role
from services.bank_gateway import GatewayTransfer
from services.demo import seed_demo

PARTNER = "Northwind Agency"
OWNER = "owner@northwind.example"
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
SEED = 10_2026

ONE_TIME = (
    ("Additional training session", 30000), ("Campaign strategy workshop", 45000),
    ("Custom report setup", 20000), ("Priority support hours", 12000), ("Number porting fee", 2500),
    ("Template design", 12000), ("API integration review", 60000), ("Data import", 18000),
)
TICKETS = (
    ("Campaign stuck in 'scheduled'", "A campaign scheduled for this morning has not started."),
    ("Missed call notifications not sent", "Missed-call texts stopped going out for one sub-org."),
    ("Invoice PDF shows the wrong address", "Our billing address on the invoice PDF is outdated."),
    ("Workflow step fails with 'rate limited'", "A webhook step in a workflow keeps failing."),
    ("Add-on quantity did not update", "We added phone numbers but the add-on still shows the old count."),
    ("Sub-org cannot log in", "One of our sub-orgs gets 'account locked' on sign-in."),
    ("Question about payout timing", "When does a transfer to our bank usually arrive?"),
    ("Duplicate contacts after import", "An import created duplicate contacts for two sub-orgs."),
)
PARTNER_LINES = (
    "Could you take a look today? Our client is waiting.",
    "Here are the details: it started yesterday around noon.",
    "Thanks, that helps. Anything else we should check on our side?",
    "It happened again this morning, same sub-org.",
)
SUPPORT_LINES = (
    "Thanks for reporting this. I'm looking into it now.",
    "I found the cause and a fix is on its way; I'll update you here.",
    "Could you send the name of the affected sub-org and an example?",
)
SUB_ORGS = ("Acme Dental", "Summit Fitness", "Peak Physio", "Riverbend Auto", "Ironwood Legal")


def _month(now: datetime, offset: int) -> datetime:
    year, month = divmod(now.year * 12 + now.month - 1 + offset, 12)
    return datetime(year, month + 1, 1, tzinfo=UTC)


async def prepare(url: str, today: date) -> None:
    """Migrate the empty database at `url`, seed the demo data for `today` and add the bench rows."""
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        async with read_sessions(engine)() as session:
            await seed_demo(session, today)
        async with write_sessions(engine)() as session:
            await add_bench_rows(session, today)
        # Planner statistics, as a database in service has them (autovacuum would
        # gather them later): without them PostgreSQL plans the rows just loaded badly.
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
            await conn.commit()
    finally:
        await engine.dispose()


async def add_bench_rows(
    session: AsyncSession, today: date, *, invoices_: int = 120, tickets: int = 120, payouts_: int = 115
) -> None:
    """Add the benchmark's rows to the seeded demo database, in one transaction."""
    now = datetime.combine(today, time(), UTC)
    rng = random.Random(SEED)
    async with session.begin():
        owner = await session.scalar(select(m.User).where(m.User.email == OWNER))
        assert owner is not None, "seed the demo data first"
        conn = await session.scalar(select(m.Connection).where(m.Connection.partner_id == owner.partner_id))
        assert conn is not None
        users = list(await session.scalars(select(m.User).order_by(m.User.id)))
        partner_users = [u for u in users if u.partner_id == owner.partner_id]
        support = [u for u in users if u.role == "SUPPORT"]
        billing = next(u for u in users if u.role == "BILLING_ADMIN")
        banks = list(await session.scalars(
            select(m.BankAccount).where(m.BankAccount.connection_id == conn.id).order_by(m.BankAccount.id)
        ))
        await _invoices(session, rng, now, conn, billing, invoices_)
        await _tickets(session, rng, now, conn, partner_users, support, tickets)
        await _payouts(session, rng, now, conn, owner, banks, payouts_)
        await session.flush()


async def _invoices(
    session: AsyncSession, rng: random.Random, now: datetime, conn: m.Connection, billing: m.User, count: int
) -> None:
    """ONE_TIME invoices over the past 300 days, oldest first (numbers follow issue order):
    8 in 10 paid by card a day later, 1 in 10 left open, 1 in 10 void."""
    staff = Principal(billing.id, None, None, frozenset({Role.BILLING_ADMIN}))
    card = await L.system_account(session, AccountKind.CARD_PROCESSOR, conn.currency_code, conn.id, now - 400 * DAY)
    times = sorted(now - rng.randint(2 * 24, 300 * 24) * HOUR for _ in range(count))
    for n, issued in enumerate(times):
        description, unit = rng.choice(ONE_TIME)
        line = invoices.Line(description, rng.randint(1, 3), unit)
        invoice = await invoices.create(
            session, conn, type=InvoiceType.ONE_TIME, lines=[line], due_at=issued + 14 * DAY, now=issued
        )
        if n % 10 == 3:
            await refunds.void(session, staff, invoice.id, "Issued in error", now=issued + 5 * HOUR)
        elif n % 10 != 7:
            await invoices.pay(
                session, invoice, source=card, amount=invoice.total, method=PaymentMethod.CARD,
                key=f"bench:invoice:{invoice.id}:card", by=None, now=issued + DAY,
            )


async def _tickets(
    session: AsyncSession, rng: random.Random, now: datetime, conn: m.Connection,
    partner_users: list[m.User], support: list[m.User], count: int,
) -> None:
    """OPEN and IN_PROGRESS tickets from the last 60 days with 1 to 5 messages, alternating
    the Partner and support; most assigned, some with an internal note before the last message."""
    for i in range(count):
        title, description = rng.choice(TICKETS)
        author = rng.choice(partner_users)
        created = now - rng.randint(2 * 60, 60 * 24 * 60) * timedelta(minutes=1)
        n = rng.randint(1, 5)
        agent = rng.choice(support) if n > 1 or i % 3 else None
        times, at = [], created
        for _ in range(n):
            at = min(at + rng.randint(10, 600) * timedelta(minutes=1), now)
            times.append(at)
        ticket = m.Ticket(
            connection_id=conn.id, number=conn.next_ticket_number, title=f"{title} (#{i + 1})",
            description=description, status="IN_PROGRESS" if agent and n > 1 else "OPEN",
            priority=rng.choice(("LOW", "MEDIUM", "HIGH")), assigned_to_id=agent.id if agent else None,
            created_by_id=author.id, created_at=created, updated_at=times[-1], last_activity_at=times[-1],
        )
        conn.next_ticket_number += 1
        session.add(ticket)
        await session.flush()
        for k, when in enumerate(times):
            by_support = k % 2 == 1 and agent is not None
            body = (SUPPORT_LINES if by_support else PARTNER_LINES)[k // 2 % 3]
            session.add(m.TicketMessage(
                ticket_id=ticket.id, author_id=(agent if by_support and agent else author).id, body=body,
                internal=False, created_at=when,
            ))
        if agent is not None and n >= 2 and i % 4 == 0:  # never the newest message
            session.add(m.TicketMessage(
                ticket_id=ticket.id, author_id=agent.id, body="Internal: checked the logs, see the incident.",
                internal=True, created_at=times[-2] + (times[-1] - times[-2]) / 2,
            ))


async def _payouts(
    session: AsyncSession, rng: random.Random, now: datetime, conn: m.Connection, owner: m.User,
    banks: list[m.BankAccount], count: int,
) -> None:
    """Monthly payouts for the months before the demo's (which cover the last eleven),
    each of 2 to 4 Sub-Org transactions, transferred to the default bank account and PAID;
    every sixth first failed on the other account and was sent again."""
    assert banks, "Northwind has bank accounts"
    cur = conn.currency_code
    earnings = await L.system_account(session, AccountKind.SUB_ORG_EARNINGS, cur, conn.id, now - 400 * DAY)
    bank_out = await L.system_account(session, AccountKind.BANK_OUT, cur, conn.id, now - 400 * DAY)
    fee_bps = await session.scalar(
        select(m.Plan.transaction_fee_bps).join(m.Subscription, m.Subscription.plan_id == m.Plan.id)
        .where(m.Subscription.connection_id == conn.id)
    )
    assert fee_bps is not None
    default, other = banks[0], banks[-1]
    for k in range(count):
        start, end = _month(now, -12 - k), _month(now, -11 - k)
        txs = []
        for j in range(rng.randint(2, 4)):
            gross = rng.choice((9700, 14900, 29700, 49700)) if j % 2 == 0 else rng.randint(500, 8000)
            fee = money.basis_points_of(gross, fee_bps)
            at = start + timedelta(seconds=int((end - start).total_seconds() * rng.random()))
            txs.append(m.SubOrgTransaction(
                connection_id=conn.id, external_id=f"txn_bench_{k:04d}_{j}", sub_org_name=rng.choice(SUB_ORGS),
                description="Pro plan subscription" if j % 2 == 0 else "SMS usage",
                kind="SUBSCRIPTION" if j % 2 == 0 else "USAGE", gross_amount=gross, fee_bps=fee_bps,
                fee_amount=fee, partner_amount=gross - fee, occurred_at=at, recorded_at=at + HOUR,
            ))
        amount, created = sum(t.partner_amount for t in txs), end + 2 * HOUR
        p = m.Payout(
            connection_id=conn.id, period_type="MONTHLY", period_start=start, period_end=end, currency_code=cur,
            gross_amount=sum(t.gross_amount for t in txs), fee_amount=sum(t.fee_amount for t in txs),
            amount=amount, available_amount=amount, wallet_amount=0, bank_in_flight_amount=0, bank_paid_amount=0,
            status="AVAILABLE", created_at=created, updated_at=created,
        )
        session.add(p)
        await session.flush()
        for t in txs:
            t.payout_id = p.id
        session.add_all(txs)
        own = await L.payout_account(session, p, created)
        await L.post(session, [L.Transfer(
            f"payout:{p.id}:funding", TransferKind.PAYOUT_FUNDING, earnings.id, own.id, amount,
            memo=f"Sub-Org earnings, {start:%B %Y}", payout_id=p.id)], now=created)
        at = created + DAY + 9 * HOUR
        plan = [(default, at, "PAID")]
        if k % 6 == 5 and other is not default:
            plan = [(other, at, "FAILED"), (default, at + 4 * DAY, "PAID")]
        for account, sent, outcome in plan:
            b = m.BankTransfer(payout_id=p.id, bank_account_id=account.id, amount=amount, status="PENDING",
                               created_by_id=owner.id, created_at=sent, updated_at=sent, submitted_at=sent)
            [reserve] = await L.post(session, [L.Transfer(
                f"bench:bank_transfer:{p.id}:{sent.timestamp():.0f}", TransferKind.BANK_TRANSFER, own.id, bank_out.id,
                amount, memo=f"Bank transfer of the payout for {start:%B %Y}", payout_id=p.id,
                created_by_id=owner.id, pending=True)], now=sent)
            b.pending_transfer_id = reserve.id
            session.add(b)
            await session.flush()
            b.gateway_ref = f"sbt_sandbox_ok_bench{b.id}"
            session.add(m.PayoutDisposition(
                payout_id=p.id, kind="TRANSFER", wallet_amount=0, bank_amount=amount, bank_transfer_id=b.id,
                created_by_id=owner.id, created_at=sent))
            for status, when in (("IN_TRANSIT", sent + DAY), (outcome, sent + 2 * DAY)):
                failure = ("no_account", "Returned by the receiving bank: R03 no account/unable to locate "
                           "account.") if status == "FAILED" else (None, None)
                payouts.stamp(b, GatewayTransfer(b.gateway_ref, status, *failure), when, when)
                session.add(m.BankTransferEvent(
                    event_id=f"evt_bench_{b.id}_{status.lower()}", bank_transfer_id=b.id, source="WEBHOOK",
                    status=status, failure_code=b.failure_code if status == "FAILED" else None,
                    failure_reason=b.failure_reason if status == "FAILED" else None, applied=True,
                    occurred_at=when, received_at=when))
            await L.post(session, [L.Transfer(
                f"bank_transfer:{b.id}:{'paid' if outcome == 'PAID' else 'void'}", TransferKind.BANK_TRANSFER, own.id,
                bank_out.id, amount, memo=reserve.memo, payout_id=p.id, resolves=reserve.id,
                void=outcome != "PAID")], now=sent + 2 * DAY)
        await session.flush()
        await payouts.refresh(session, p)
        p.updated_at = plan[-1][1] + 2 * DAY
