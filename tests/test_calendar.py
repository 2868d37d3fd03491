"""The calendar, at the dates that break naive date code.

At each date the demo data is seeded for that day; then the clock moves on
through the next two months, stopping either side of every midnight that starts
a period (23:59:59 and 00:00 before and on each Monday and each 1st) and midway
through each week. At each step one Sub-Org transaction per connection is
recorded, the billing run runs and `payouts close-period` runs, each twice (the
second run must do nothing), and every subscription's period holds "now".
Checked at the seed and at the end:

- the ledger verifies clean;
- demo invoices are consistent: numbered 1..n with no gap, nothing issued after
  "now", amounts paid within the totals;
- billing periods are contiguous (no gap, no overlap), each billed once, and
  every period that has ended by "now" was billed;
- monthly and weekly payout periods are contiguous, each a calendar month or a
  Monday-to-Monday week, and every transaction is paid out once, in the
  payout of the period it occurred in.

Every period is UTC (billing anchors, payout months and weeks, the seed), none
is local, so a daylight-saving change may change nothing: one such date is here
to show it. The steps pass `now` to every service; the process's own clock
stays at the suite's pinned date, so a service that read the wall clock instead
would book at the wrong date and fail these checks.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, AsyncIterator, cast

import pytest
from sqlalchemy import ScalarResult, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from db import models as m
from db.engine import create_engine, read_sessions, write_sessions
from server.settings import Settings
from services import billing, earnings, ledger
from services.bank_gateway import SandboxBankGateway
from services.payments import SandboxGateway
from tests.conftest import PG_URL, _build, _pg_admin

DATES = [
    date(2026, 1, 31),  # the last day of a 31-day month
    date(2026, 3, 8),  # the US daylight-saving change (nothing is local: nothing may differ)
    date(2026, 4, 29), date(2026, 4, 30), date(2026, 5, 1),  # the day before a month end, its last day, the day after
    date(2027, 2, 28),  # the last day of a February of 28 days
    date(2028, 2, 28), date(2028, 2, 29),  # a leap year's February
    date(2026, 12, 31), date(2027, 1, 1),  # December 31 to January 1
]
DAYS = 62  # from any day, at least two month ends


@pytest.fixture
async def database_at(tmp_path: Any) -> AsyncIterator[Any]:
    """`await database_at(day)`: the URL of a new database, migrated and seeded for `day`."""
    made: list[str] = []

    async def make(day: date) -> str:
        if PG_URL:
            name = f"revampd_cal_{uuid.uuid4().hex[:8]}"
            await _pg_admin(f'CREATE DATABASE "{name}"')
            made.append(name)
            url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        else:
            url = f"sqlite+aiosqlite:///{os.path.join(str(tmp_path), f'{day}.db')}"
        await _build(url, day)
        return url

    yield make
    for name in made:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _steps(day: date) -> list[datetime]:
    """From the seed's day on, either side of each midnight that starts a period (a Monday's, a
    1st's): its last second before and its first instant; and noon of each Thursday."""
    steps = [datetime.combine(day, time(12), UTC)]
    for k in range(1, DAYS):
        midnight = datetime.combine(day + timedelta(days=k), time(), UTC)
        if midnight.weekday() == 0 or midnight.day == 1:
            steps += [midnight - timedelta(seconds=1), midnight]
        elif midnight.weekday() == 3:
            steps.append(midnight + timedelta(hours=12))
    return steps


async def _transaction(session: AsyncSession, connection_id: int, n: int, at: datetime) -> None:
    item = earnings.TransactionInput(f"cal_{n:05d}", "Calendar Cafe", "USAGE", "12.34",
                                     at - timedelta(minutes=1), "SMS usage")
    recorded = await earnings.record(session, None, connection_id, [item], at)
    assert [t.external_id for t in recorded.transactions] == [item.external_id]


async def _problems(session: AsyncSession, now: datetime) -> list[str]:
    """What is wrong with invoices, subscriptions and payouts at `now`; nothing, if all is well."""
    problems = [f"ledger: {p}" for p in await ledger.verify(session)]
    invoices = list(await session.scalars(select(m.Invoice).order_by(m.Invoice.connection_id, m.Invoice.id)))
    for cid, group in itertools.groupby(invoices, key=lambda i: i.connection_id):
        mine = list(group)
        prefix = mine[0].number.rsplit("-", 1)[0]
        numbers = sorted(int(i.number.rsplit("-", 1)[1]) for i in mine)
        if numbers != list(range(1, len(mine) + 1)) or any(not i.number.startswith(prefix) for i in mine):
            problems.append(f"connection {cid}: invoice numbers {[i.number for i in mine]} are not 1..{len(mine)}")
        for i in mine:
            if i.issued_at > now:
                problems.append(f"{i.number} issued at {i.issued_at}, after now ({now})")
            if not 0 <= i.amount_paid <= i.total or (i.status == "PAID" and i.amount_paid != i.total):
                problems.append(f"{i.number} ({i.status}): {i.amount_paid} paid of {i.total}")
        for kind in ("SUBSCRIPTION", "ADD_ON"):
            # Subscription and add-on invoices always have their period set.
            periods = sorted((cast(datetime, i.period_start), cast(datetime, i.period_end), i.number) for i in mine
                             if i.type == kind and i.status != "VOID")
            problems += _gaps(f"connection {cid}: {kind} invoices", periods)
            # The demo's subscriptions renew on the 1st: each period is one calendar month.
            problems += [f"{number}: a month from {start} to {end}" for start, end, number in periods
                         if not _month(start, end)]
    for s in await session.scalars(select(m.Subscription)):
        subscription = [i for i in invoices if i.connection_id == s.connection_id and i.type == "SUBSCRIPTION"
                        and i.status != "VOID"]
        billed_to = max(cast(datetime, i.period_end) for i in subscription if i.status != "DRAFT")
        if s.status == "ACTIVE" and not s.current_period_start <= now < s.current_period_end:
            problems.append(f"connection {s.connection_id}: its period {s.current_period_start} to "
                            f"{s.current_period_end} does not hold now ({now}): a period ended and was not billed")
        if billed_to != s.current_period_end:
            problems.append(f"connection {s.connection_id}: billed to {billed_to}, but its period ends "
                            f"{s.current_period_end}")
    for model in (m.Payout, m.AffiliatePayout):
        by_kind: dict[tuple[int, str], list[tuple[datetime, datetime, str]]] = defaultdict(list)
        # (select's typing joins the two models into Base: these are rows of `model`)
        for p in cast("ScalarResult[m.Payout | m.AffiliatePayout]", await session.scalars(select(model))):
            by_kind[(p.connection_id, p.period_type)].append((p.period_start, p.period_end, f"{model.__name__} {p.id}"))
            if p.period_end > now:
                problems.append(f"{model.__name__} {p.id} is for a period that has not ended: to {p.period_end}")
            if p.period_type == "WEEKLY" and (p.period_start.weekday() != 0 or p.period_end - p.period_start
                                              != timedelta(days=7)):
                problems.append(f"{model.__name__} {p.id}: a week from {p.period_start} to {p.period_end}")
            if p.period_type == "MONTHLY" and not _month(p.period_start, p.period_end):
                problems.append(f"{model.__name__} {p.id}: a month from {p.period_start} to {p.period_end}")
        for (cid, kind), periods in by_kind.items():
            problems += _gaps(f"connection {cid}: {kind} {model.__name__}s", sorted(periods))
    return problems


def _month(start: datetime, end: datetime) -> bool:
    """[start, end) is one calendar month, from 00:00 UTC on the 1st."""
    return (start.day, start.time(), end.day, end.time()) == (1, time(), 1, time()) and (
        end.year * 12 + end.month - start.year * 12 - start.month == 1)


def _gaps(what: str, periods: list[tuple[Any, Any, str]]) -> list[str]:
    return [f"{what}: {a[2]} ends {a[1]} but {b[2]} starts {b[0]}" for a, b in itertools.pairwise(periods)
            if a[1] != b[0]]


@pytest.mark.parametrize("day", DATES, ids=str)
async def test_seed_billing_and_payouts_across_the_calendar(database_at: Any, day: date) -> None:
    url = await database_at(day)
    engine = create_engine(url)
    reads, writes = read_sessions(engine), write_sessions(engine)
    settings, cards, bank = Settings(database_url=url), SandboxGateway(), SandboxBankGateway()
    seeded_at = datetime.combine(day, time(), UTC)
    try:
        async with reads() as session:
            assert await _problems(session, seeded_at) == [], f"the demo data seeded for {day}"
            connections = list(await session.scalars(select(m.Connection.id).order_by(m.Connection.id)))
        # One connection is paid out by the week, the others by the month.
        async with writes() as session, session.begin():
            await session.execute(update(m.Connection).where(m.Connection.id == connections[1])
                                  .values(payout_period_type="WEEKLY"))
        n = itertools.count()
        billed: set[tuple[int, datetime]] = set()
        for now in _steps(day):
            async with writes() as session, session.begin():
                for cid in connections:
                    await _transaction(session, cid, next(n), now)
            first = await billing.run(reads, writes, now, cards, settings)
            again = await billing.run(reads, writes, now, cards, settings)
            assert (again.billed, again.retried, again.failed) == (0, 0, []), f"billed twice at {now}: {again}"
            assert first.failed == [], f"billing at {now}: {first}"
            closed = await earnings.close_period(reads, writes, now, bank)
            reclosed = await earnings.close_period(reads, writes, now, bank)
            assert (reclosed.made, closed.failed, reclosed.failed) == ([], [], []), f"closing at {now}"
            async with reads() as session:
                for s in await session.scalars(select(m.Subscription)):
                    assert s.status != "ACTIVE" or s.current_period_start <= now < s.current_period_end, (
                        f"at {now}, connection {s.connection_id} is in the period {s.current_period_start} to "
                        f"{s.current_period_end}")
                    billed.add((s.connection_id, s.current_period_end))
        async with reads() as session:
            assert await _problems(session, now) == [], f"after {DAYS} days from {day}"
            unpaid = await session.scalar(select(m.SubOrgTransaction.id).where(
                m.SubOrgTransaction.payout_id.is_(None), m.SubOrgTransaction.occurred_at < seeded_at))
            assert unpaid is None, "a transaction of before the seed's day was never paid out"
            late = (await session.execute(
                select(m.SubOrgTransaction.external_id, m.Payout.id, m.Payout.period_start, m.Payout.period_end)
                .join(m.Payout, m.Payout.id == m.SubOrgTransaction.payout_id)
                .where(m.SubOrgTransaction.external_id.like("cal_%"), m.Payout.created_at > seeded_at,
                       (m.SubOrgTransaction.occurred_at >= m.Payout.period_end))
            )).all()
            assert late == [], "transactions paid out in a period they did not occur in"
            periods = {(p.connection_id, p.period_type) for p in await session.scalars(
                select(m.Payout).where(m.Payout.created_at > seeded_at))}
    finally:
        await engine.dispose()
    # The steps crossed at least two month ends: every connection was billed at each and
    # both kinds of payout period were closed.
    assert all(len([e for c, e in billed if c == cid]) >= 3 for cid in connections), sorted(billed)
    assert {kind for _, kind in periods} == {"MONTHLY", "WEEKLY"}, periods
