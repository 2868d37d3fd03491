"""Benchmark: the billing run over many connections whose period has ended.

Usage: make bench-billing  (or: python -m tests.bench.billing [--connections N]
[--database-url URL] [--workers 4] [--processes 2] [--latency-ms 200])

Builds one migrated database with the demo data and N more connections whose
period has ended (a plan, phone-number add-ons on most, wallet credit on some, a
card on file on most, some that decline), then bills a fresh copy of it once per
worker count with the same code `revampd-bff billing run` runs, then with that
command in two processes at once, and prints connections billed per second; then
all of it again with the sandbox processor answering each charge in --latency-ms
(the card is charged with no transaction open, so the workers' calls overlap).
Checks afterwards that every connection was billed exactly once and that `ledger
verify` finds nothing wrong.

Defaults: 100,000 connections on PostgreSQL (`--database-url postgresql+asyncpg://
user@host/name`: it makes `<name>_tpl` and one copy per run next to it, and drops
them after), 2,000 on SQLite (a temporary file).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import re
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence, cast

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from db import models as m
from db.engine import create_engine, is_busy, read_sessions, write_sessions
from db.migrate import upgrade
from server.settings import Settings
from services import billing, ledger
from services.demo import seed_demo
from services.payments import SANDBOX_CARDS, SandboxGateway, SandboxLag

CHUNK = 5000


def _chunks(rows: Sequence[dict[str, Any]]) -> list[Sequence[dict[str, Any]]]:
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]


async def _next_id(session: AsyncSession, model: type[Any]) -> int:
    return int(await session.scalar(select(func.coalesce(func.max(model.id), 0))) or 0) + 1


async def add_due_connections(
    session: AsyncSession, n: int, start: datetime, end: datetime, *, seed: int = 7
) -> list[int]:
    """`n` Partners with a connection whose period [start, end) has ended; returns their
    connection ids. In the caller's (write) transaction, with plain INSERTs: a plan each
    (one in ten Growth ones with a downgrade to Starter pending), local numbers on half
    of them and a toll-free number on one in five, wallet credit on one in five (posted
    as ledger rows), a good card on most, a declining card on one in twenty and none on
    one in fifty."""
    rng = random.Random(seed)
    plans = {p.code: p for p in await session.scalars(select(m.Plan))}
    products = {p.code: p for p in await session.scalars(select(m.AddOnProduct))}
    first = {model: await _next_id(session, model) for model in (m.Partner, m.Connection, m.Subscription, m.AddOn)}
    created = start - timedelta(days=40)
    partners: list[dict[str, Any]] = []
    connections: list[dict[str, Any]] = []
    subscriptions: list[dict[str, Any]] = []
    addons: list[dict[str, Any]] = []
    credits: list[tuple[int, int]] = []
    for k in range(n):
        pid, cid = first[m.Partner] + k, first[m.Connection] + k
        partners.append({"id": pid, "name": f"Bench Partner {cid:07d}", "created_at": created})
        roll = k % 100
        token = None if roll < 2 else "tok_chargeDeclined_0002" if roll < 7 else "tok_visa_4242"
        card = SANDBOX_CARDS[token].card if token else None
        connections.append({
            "id": cid, "partner_id": pid, "currency_code": "USD", "ticket_prefix": "RVP", "next_ticket_number": 1001,
            "invoice_prefix": f"B{cid:07d}", "next_invoice_number": 1, "card_token": token,
            "card_brand": card and card.brand, "card_last4": card and card.last4,
            "card_exp_month": card and card.exp_month, "card_exp_year": card and card.exp_year, "created_at": created,
        })
        plan = plans[("STARTER", "GROWTH", "SCALE")[k % 3]]
        downgrade = plan.code == "GROWTH" and k % 10 == 1
        subscriptions.append({
            "id": first[m.Subscription] + k, "connection_id": cid, "plan_id": plan.id, "status": "ACTIVE",
            "current_period_start": start, "current_period_end": end, "created_at": created,
            "pending_kind": "DOWNGRADE" if downgrade else None,
            "pending_plan_id": plans["STARTER"].id if downgrade else None,
            "pending_effective_at": end if downgrade else None, "pending_requested_at": start if downgrade else None,
        })
        for code, wanted in (("LOCAL_NUMBER", k % 2 == 0), ("TOLL_FREE_NUMBER", k % 5 == 0)):
            if wanted:
                addons.append({"id": first[m.AddOn] + len(addons), "connection_id": cid,
                               "product_id": products[code].id, "quantity": rng.randint(1, 5),
                               "created_at": created, "updated_at": created})
        if k % 5 == 0:
            credits.append((cid, rng.randint(1000, 60000)))
    for model, rows in ((m.Partner, partners), (m.Connection, connections), (m.Subscription, subscriptions),
                        (m.AddOn, addons)):
        for chunk in _chunks(rows):
            await session.execute(insert(model), chunk)
    await _credit_wallets(session, credits, start - timedelta(days=10))
    if session.get_bind().dialect.name == "postgresql":
        for table in ("partners", "connections", "subscriptions", "addons", "ledger_accounts", "ledger_transfers",
                      "ledger_entries"):
            await session.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            ))
    return [c["id"] for c in connections]


async def _credit_wallets(session: AsyncSession, credits: list[tuple[int, int]], at: datetime) -> None:
    """A MANUAL_ADJUSTMENT to each wallet from Revampd's ADJUSTMENTS part for its connection,
    written as ledger.post() would write it."""
    account_id = await _next_id(session, m.LedgerAccount)
    transfer_id = await _next_id(session, m.LedgerTransfer)
    accounts, transfers, entries = [], [], []
    for j, (cid, amount) in enumerate(credits):
        wallet, funds, transfer = account_id + 2 * j, account_id + 2 * j + 1, transfer_id + j
        accounts += [
            {"id": wallet, "code": f"wallet:{cid}", "kind": "WALLET", "currency_code": "USD",
             "connection_id": cid, "allow_negative": False, "balance": amount, "pending": 0,
             "entry_count": 1, "created_at": at},
            {"id": funds, "code": f"ADJUSTMENTS:USD:{cid}", "kind": "ADJUSTMENTS", "currency_code": "USD",
             "connection_id": None, "allow_negative": True, "balance": -amount, "pending": 0,
             "entry_count": 1, "created_at": at},
        ]
        transfers.append({"id": transfer, "key": f"bench:credit:{cid}", "kind": "MANUAL_ADJUSTMENT", "phase": "POSTED",
                          "debit_account_id": funds, "credit_account_id": wallet, "amount": amount,
                          "currency_code": "USD", "memo": "Benchmark credit", "created_at": at})
        entries += [
            {"account_id": funds, "transfer_id": transfer, "sequence": 1, "amount": -amount,
             "balance_after": -amount, "created_at": at},
            {"account_id": wallet, "transfer_id": transfer, "sequence": 1, "amount": amount,
             "balance_after": amount, "created_at": at},
        ]
    for model, rows in ((m.LedgerAccount, accounts), (m.LedgerTransfer, transfers), (m.LedgerEntry, entries)):
        for chunk in _chunks(rows):
            await session.execute(insert(model), chunk)


# ---- Databases: a template, and a copy per run ------------------------------------------

class Store:
    def __init__(self, url: str | None) -> None:
        self.pg = bool(url and url.startswith("postgresql"))
        self.tmp = tempfile.TemporaryDirectory()
        self.base = make_url(url) if url else None
        self.made: list[str] = []

    def url(self, name: str) -> str:
        if self.base is not None:
            return self.base.set(database=name).render_as_string(hide_password=False)
        return f"sqlite+aiosqlite:///{self.tmp.name}/{name}.db"

    def name(self, suffix: str) -> str:
        return f"{self.base.database}_{suffix}" if self.base is not None else suffix

    async def _admin(self, sql: str) -> None:
        assert self.base is not None
        engine = create_async_engine(self.base.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql(sql)
        finally:
            await engine.dispose()

    async def create(self, name: str, template: str | None = None) -> str:
        if self.pg:
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await self._admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
            self.made.append(name)
        elif template:
            shutil.copyfile(f"{self.tmp.name}/{template}.db", f"{self.tmp.name}/{name}.db")
        return self.url(name)

    async def drop_all(self) -> None:
        for name in reversed(self.made):
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.tmp.cleanup()


async def build(url: str, n: int) -> tuple[datetime, int]:
    """Migrate, seed the demo, add `n` due connections; (when they are due, how many are)."""
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        async with read_sessions(engine)() as session:
            await seed_demo(session, datetime.now(timezone.utc).date())
        async with write_sessions(engine)() as session, session.begin():
            sub = await session.scalar(select(m.Subscription).limit(1))
            assert sub is not None
            start, end = sub.current_period_start, sub.current_period_end
            await add_due_connections(session, n, start, end)
            due = await session.scalar(select(func.count()).select_from(m.Subscription))
    finally:
        await engine.dispose()
    return end + timedelta(days=1), int(due or 0)


async def bill(url: str, now: datetime, workers: int, latency_ms: int = 0) -> tuple[billing.RunSummary, float]:
    """The billing run with `workers` (calls in flight), the sandbox processor answering in
    `latency_ms`; the pool is smaller than the workers: only a worker in a transaction holds
    a connection."""
    engine = create_engine(url, pool_size=min(workers, 8) + 1, max_overflow=1)
    try:
        started = time.perf_counter()
        summary = await billing.run(
            read_sessions(engine), write_sessions(engine), now, SandboxGateway(SandboxLag(latency_ms)),
            Settings(database_url=url), workers=workers, busy=is_busy,
        )
        return summary, time.perf_counter() - started
    finally:
        await engine.dispose()


async def bill_in_processes(url: str, now: datetime, processes: int, workers: int,
                            latency_ms: int = 0) -> tuple[int, float]:
    """`revampd-bff billing run --workers W` in `processes` processes at once; (billed in all, seconds)."""
    started = time.perf_counter()
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "billing", "run", "--now", now.isoformat(), "--workers", str(workers),
            env={**os.environ, "DATABASE_URL": url, "PAYMENT_SANDBOX_LATENCY_MS": str(latency_ms)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]
    outputs = [(await p.communicate())[0].decode() for p in procs]
    seconds = time.perf_counter() - started
    assert all(p.returncode == 0 for p in procs), outputs
    # Each process that exits 0 has printed "billed N".
    billed = sum(int(cast("re.Match[str]", re.search(r"billed (\d+)", out)).group(1)) for out in outputs)
    return billed, seconds


async def check(url: str, now: datetime, due: int) -> list[str]:
    engine = create_engine(url)
    try:
        async with read_sessions(engine)() as session:
            late = await session.scalar(
                select(func.count()).select_from(m.Subscription).where(
                    m.Subscription.status == "ACTIVE", m.Subscription.current_period_end <= now)
            )
            invoices = await session.scalar(
                select(func.count()).select_from(m.Invoice).where(
                    m.Invoice.type == "SUBSCRIPTION", m.Invoice.issued_at == now)
            )
            problems = await ledger.verify(session)
    finally:
        await engine.dispose()
    if late:
        problems.append(f"{late} subscriptions still due")
    if invoices != due:
        problems.append(f"{invoices} subscription invoices issued for {due} connections")
    return problems


async def main(n: int | None, url: str | None, workers: list[int], processes: int, latency_ms: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    store = Store(url)
    n = n if n is not None else 100_000 if store.pg else 2_000
    try:
        started = time.perf_counter()
        template = store.name("tpl")
        now, due = await build(await store.create(template), n)
        print(f"billing run over {due:,} due connections ({n:,} made + the 3 demo ones) "
              f"on {'PostgreSQL' if store.pg else 'SQLite'}; data built in {time.perf_counter() - started:.0f} s")
        for latency in sorted({0, latency_ms}):
            answers = f"processor answering in {latency} ms" if latency else "processor answering at once"
            for w in workers:
                copy = await store.create(store.name(f"w{w}l{latency}"), template)
                summary, seconds = await bill(copy, now, w, latency)
                print(f"  {w} worker{'s' if w > 1 else ' '}, {answers}: {summary.billed:,} billed in {seconds:.1f} s = "
                      f"{summary.billed / seconds:,.0f} connections/s  (charged {summary.charged:,}, "
                      f"declined {summary.declined:,}, failed {len(summary.failed)})")
                problems = await check(copy, now, due)
                assert summary.billed == due and not summary.failed, summary
                assert not problems, problems[:10]
            if processes > 1:
                copy = await store.create(store.name(f"p{processes}l{latency}"), template)
                billed, seconds = await bill_in_processes(copy, now, processes, max(workers), latency)
                print(f"  {processes} processes of {max(workers)} workers each, {answers}: {billed:,} billed in "
                      f"{seconds:.1f} s = {billed / seconds:,.0f} connections/s")
                problems = await check(copy, now, due)
                assert billed == due and not problems, (billed, problems[:10])
        print("  every connection billed exactly once; ledger verify finds nothing wrong")
    finally:
        await store.drop_all()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, help="default 100,000 on PostgreSQL, 2,000 on SQLite")
    parser.add_argument("--database-url", help="postgresql+asyncpg://user@host/name (default: SQLite in a temp dir)")
    parser.add_argument("--workers", default="4",
                        help="worker counts (batches at once) to time, comma-separated (default 4); the processes "
                        "run with the largest")
    parser.add_argument("--processes", type=int, default=2,
                        help="then time this many `billing run` processes at once (default 2; 1: skip)")
    parser.add_argument("--latency-ms", type=int, default=200,
                        help="then time it all again with the sandbox processor answering in this long (default "
                        "200; 0: skip)")
    a = parser.parse_args()
    asyncio.run(main(a.connections, a.database_url, [int(w) for w in a.workers.split(",")], a.processes,
                     a.latency_ms))
