"""The background jobs, each a function of the settings and `now`: the CLI runs one by hand
(`revampd-bff billing run` ...), the worker runs them all on a schedule (server/worker.py).

Each makes its own engine for the run and disposes of it after: a run is minutes apart from the
next, and holds no connection between runs. Each is safe to run again at the same `now` (the
second run finds nothing left to do) and at once with another run (rows are claimed with SKIP
LOCKED or numbered under a lock), which is what lets the worker retry a run that crashed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.engine import create_engine, is_busy, read_sessions, write_sessions
from db.events import Announce
from server.settings import Settings
from services import billing, earnings, idempotency, notifications, payouts, tickets
from services.bank_gateway import bank_gateway_named
from services.payments import gateway_named

Progress = Callable[[int, int], None]

# Who hears of the events each run's transactions commit (db.events): the worker's hub, which
# tells every server through Redis (server/worker.py), or the server's own when it runs the jobs.
# Unset (a command run by hand), the servers find them by polling (LIVE_POLL_SECONDS).
ANNOUNCE: ContextVar[Announce | None] = ContextVar("revampd_jobs_announce", default=None)


def _writes(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return write_sessions(engine, announce=ANNOUNCE.get())


@asynccontextmanager
async def _engine(settings: Settings, pool_size: int | None = None,
                  max_overflow: int | None = None) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database_url, lock_timeout_ms=settings.db_lock_timeout_ms,
                           pool_size=pool_size, max_overflow=max_overflow)
    try:
        yield engine
    finally:
        await engine.dispose()


async def billing_run(settings: Settings, now: datetime, *, workers: int = 1,
                      progress: Progress | None = None) -> billing.RunSummary:
    async with _engine(settings, pool_size=workers + 1, max_overflow=1) as engine:
        return await billing.run(
            read_sessions(engine), _writes(engine), now,
            gateway_named(settings.payment_gateway, settings.payment_sandbox_lag), settings,
            workers=workers, batch_size=settings.billing_batch_size, progress=progress, busy=is_busy,
        )


def describe_billing(now: datetime, s: billing.RunSummary) -> str:
    return (f"billing run at {now.isoformat()}: billed {s.billed}, charged {s.charged}, declined {s.declined}, "
            f"failed {len(s.failed)}; canceled {s.canceled}, retried {s.retried}, uncollectible {s.uncollectible}")


async def payouts_close_period(settings: Settings, now: datetime, *,
                               report: Callable[[earnings.Closed], None] = lambda closed: None,
                               progress: Progress | None = None) -> earnings.CloseSummary:
    async with _engine(settings) as engine:
        return await earnings.close_period(
            read_sessions(engine), _writes(engine), now,
            bank_gateway_named(settings.bank_gateway, settings.bank_sandbox_lag),
            report=report, busy=is_busy, progress=progress,
        )


def describe_close(now: datetime, s: earnings.CloseSummary) -> str:
    return (f"payouts close-period at {now.isoformat()}: made {len(s.made)}, already made {s.exists}, "
            f"nothing to pay {s.nothing}, failed {len(s.failed)}")


async def payouts_sync(settings: Settings, now: datetime) -> dict[str, int]:
    """Asks the bank about every transfer in flight: short transactions each, none open while it answers."""
    gateway = bank_gateway_named(settings.bank_gateway, settings.bank_sandbox_lag)
    counts: dict[str, int] = {}
    async with _engine(settings) as engine:
        sessions = _writes(engine)
        async with sessions() as session:
            ids = await payouts.in_flight(session)
        for transfer_id in ids:
            outcome = await payouts.sync_one(sessions, gateway, transfer_id, now)
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def describe_sync(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    return (f"payouts sync: asked the processor about {total} transfer{'' if total == 1 else 's'} in flight: "
            f"{counts.get('applied', 0)} moved on, {counts.get('submitted', 0)} sent, "
            f"{counts.get('unchanged', 0)} unchanged, {counts.get('unavailable', 0)} not answered")


async def tickets_auto_close(settings: Settings, now: datetime) -> int:
    async with _engine(settings) as engine, _writes(engine)() as session, session.begin():
        return await tickets.auto_close(session, now=now, days=settings.ticket_auto_close_days)


def describe_auto_close(settings: Settings, closed: int) -> str:
    return (f"closed {closed} ticket{'' if closed == 1 else 's'} resolved more than "
            f"{settings.ticket_auto_close_days} days ago")


@dataclass
class Emails:
    planned: int
    sent: notifications.Sent


async def notifications_send(settings: Settings, now: datetime) -> Emails:
    """Writes the emails every connection's new events call for, a batch at a time, then sends
    the due ones until none is left."""
    mailer = notifications.mailer_of(settings.smtp_url, settings.smtp_from)
    async with _engine(settings) as engine:
        writes = _writes(engine)
        planned = 0
        while True:
            async with writes() as session, session.begin():
                made = await notifications.plan(session, now)
            planned += made
            if not made:
                break
        total = notifications.Sent()
        while (done := await notifications.send(writes, mailer, settings.smtp_from, now)).sent + done.retried + done.failed:
            total.sent, total.retried, total.failed = total.sent + done.sent, total.retried + done.retried, total.failed + done.failed
    return Emails(planned, total)


def describe_emails(settings: Settings, now: datetime, done: Emails) -> str:
    return (f"notifications send at {now.isoformat()}: {done.planned} new, sent {done.sent.sent}, to retry "
            f"{done.sent.retried}, failed for good {done.sent.failed}"
            + ("" if settings.smtp_url else " (no SMTP_URL: logged, not sent)"))


async def idempotency_purge(settings: Settings, before: datetime,
                            progress: Callable[[int], None] | None = None) -> int:
    async with _engine(settings) as engine:
        return await idempotency.purge(_writes(engine), before, progress=progress)


def purge_before(settings: Settings, now: datetime, days: int | None = None) -> datetime:
    return now - timedelta(days=days or settings.idempotency_retention_days)
