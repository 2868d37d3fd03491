"""Benchmark: a wallet statement export of 100,000 entries, streamed.

Usage: make bench-export  (or: python -m tests.bench.export [--entries 100000]
[--database-url postgresql+asyncpg://user@host/name])

Builds one migrated database with the demo data, gives Northwind's wallet `--entries` more
entries (plain INSERTs of ledger rows, with running balances), then exports its wallet
statement as CSV with the code GET /files/exports/wallet-statement/... runs
(services.exports.csv_stream), for a tenth of the entries and then for all of them, and prints
rows per second and the peak of Python memory allocated while streaming (tracemalloc): flat
memory is the same peak for both. Checks that every entry came out once, in order, with its
balance after it.

Defaults: a temporary SQLite file; with --database-url (PostgreSQL) it makes the database
`<name>` fresh and drops it after.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import shutil
import tempfile
import time
import tracemalloc
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from db import models as m
from db.engine import create_engine, read_sessions, write_sessions
from db.migrate import upgrade
from services import exports
from services.demo import seed_demo

CHUNK = 5000


async def add_entries(url: str, n: int) -> tuple[int, int]:
    """`n` more entries on Northwind's wallet (alternating credits and smaller debits, each a
    MANUAL_ADJUSTMENT transfer from Revampd's ADJUSTMENTS part); its connection id and how many
    entries it now has."""
    engine = create_engine(url)
    try:
        async with write_sessions(engine)() as session, session.begin():
            wallet = await session.scalar(
                select(m.LedgerAccount).join(m.Connection, m.Connection.id == m.LedgerAccount.connection_id)
                .join(m.Partner, m.Partner.id == m.Connection.partner_id)
                .where(m.Partner.name == "Northwind Agency", m.LedgerAccount.kind == "WALLET"))
            other = await session.scalar(select(m.LedgerAccount.id).where(m.LedgerAccount.kind == "ADJUSTMENTS").limit(1))
            assert wallet is not None and other is not None
            first_transfer = int(await session.scalar(select(func.coalesce(func.max(m.LedgerTransfer.id), 0))) or 0) + 1
            start = datetime(2027, 1, 1, tzinfo=timezone.utc)
            balance, sequence = wallet.balance, wallet.entry_count
            transfers: list[dict[str, Any]] = []
            entries: list[dict[str, Any]] = []
            for k in range(n):
                amount = 1_500 if k % 2 == 0 else -1_000
                balance += amount
                sequence += 1
                at = start + timedelta(seconds=k)
                tid = first_transfer + k
                transfers.append({
                    "id": tid, "key": f"bench:export:{k}", "kind": "MANUAL_ADJUSTMENT", "phase": "POSTED",
                    "debit_account_id": other if amount > 0 else wallet.id,
                    "credit_account_id": wallet.id if amount > 0 else other, "amount": abs(amount),
                    "currency_code": wallet.currency_code, "memo": f"Bench adjustment {k}", "created_at": at,
                })
                entries.append({"account_id": wallet.id, "transfer_id": tid, "sequence": sequence, "amount": amount,
                                "balance_after": balance, "created_at": at})
            for i in range(0, n, CHUNK):
                await session.execute(insert(m.LedgerTransfer), transfers[i : i + CHUNK])
                await session.execute(insert(m.LedgerEntry), entries[i : i + CHUNK])
            await session.execute(update(m.LedgerAccount).where(m.LedgerAccount.id == wallet.id)
                                  .values(balance=balance, entry_count=sequence))
            assert wallet.connection_id is not None
            return wallet.connection_id, sequence
    finally:
        await engine.dispose()


async def stream(url: str, connection_id: int, start: datetime | None) -> tuple[int, int, float, int]:
    """Rows, bytes, seconds and the tracemalloc peak of one export."""
    engine = create_engine(url)
    try:
        reads = read_sessions(engine)
        rows = size = 0
        last = tail = b""
        tracemalloc.start()
        began = time.perf_counter()
        async for chunk in exports.csv_stream(reads, "wallet-statement", connection_id, start, None):
            rows += chunk.count(b"\r\n")
            size += len(chunk)
            last, tail = chunk, last
        seconds = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # The last entry's balance is the wallet's: the export ends where the ledger does.
        [*_, final] = list(csv.reader(io.StringIO((tail + last).decode())))
        async with reads() as session:
            balance = await session.scalar(select(m.LedgerAccount.balance).where(
                m.LedgerAccount.connection_id == connection_id, m.LedgerAccount.kind == "WALLET"))
        assert final[5] == f"{(balance or 0) / 100:.2f}", (final, balance)
        return rows - 1, size, seconds, peak  # less the header
    finally:
        await engine.dispose()


async def run(url: str, n: int) -> None:
    engine = create_engine(url)
    try:
        await seed_demo(write_sessions(engine)(), date(2026, 12, 1))
    finally:
        await engine.dispose()
    connection_id, total = await add_entries(url, n)
    print(f"wallet statement export, {total:,} entries in all, {url.split(':')[0]}")
    print("| entries exported | rows/s | MB sent | peak Python memory while streaming |")
    print("|---:|---:|---:|---:|")
    for share in (10, 1):
        start = datetime(2027, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=n - n // share) if share > 1 else None
        rows, size, seconds, peak = await stream(url, connection_id, start)
        expected = n // share if share > 1 else total
        assert rows == expected, (rows, expected)
        print(f"| {rows:,} | {rows / seconds:,.0f} | {size / 1e6:.1f} | {peak / 1024:,.0f} KiB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args()
    if args.database_url:
        url = make_url(args.database_url)

        async def recreate(drop_only: bool = False) -> None:
            admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
            try:
                async with admin.connect() as c:
                    await c.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
                    if not drop_only:
                        await c.execute(text(f'CREATE DATABASE "{url.database}"'))
            finally:
                await admin.dispose()

        asyncio.run(recreate())
        try:
            upgrade(args.database_url)
            asyncio.run(run(args.database_url, args.entries))
        finally:
            asyncio.run(recreate(drop_only=True))
        return
    folder = tempfile.mkdtemp(prefix="revampd-bench-export-")
    try:
        path = f"sqlite+aiosqlite:///{folder}/bench.db"
        upgrade(path)
        asyncio.run(run(path, args.entries))
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
