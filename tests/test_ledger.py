"""The ledger as operations see it: `revampd-bff ledger verify`, and post()'s refusals."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from db import models as m
from db.engine import create_engine, write_sessions
from db.states import SYSTEM_ACCOUNT_KINDS, AccountKind, TransferKind
from services import ledger, money
from services.errors import DomainError
from tests import clock
from tests.conftest import Api

ROOT = Path(__file__).resolve().parent.parent
NORTHWIND = "owner@northwind.example"


@dataclass
class Run:
    code: int
    out: str
    err: str


async def cli(api: Api, *args: str) -> Run:
    """`revampd-bff ARGS` in a process of its own, on the test's database."""
    proc = await asyncio.create_subprocess_exec(
        *clock.command("server.cli"), *args, cwd=ROOT,
        env={**os.environ, "DATABASE_URL": api.settings.database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def write(api: Api, work: Any) -> Any:
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


async def test_ledger_verify_finds_nothing_wrong_with_the_demo_data(api: Api) -> None:
    run = await cli(api, "ledger", "verify")
    assert run.code == 0, run.err
    assert "ledger verify: every balance, sum, invoice, affiliate payout, payout and bank transfer agrees" in run.out


async def test_ledger_totals_sums_each_of_revampds_accounts_over_its_parts(api: Api) -> None:
    """Revampd keeps a part of each of its accounts per connection; `ledger totals` gives each
    kind's one number, which with the Partners' accounts makes each currency sum to zero."""
    A = m.LedgerAccount
    parts = await api.rows(select(A.kind, func.sum(A.balance), func.count()).where(A.kind.in_(SYSTEM_ACCOUNT_KINDS))
                           .group_by(A.kind))
    assert min(n for _, _, n in parts) >= 1 and max(n for _, _, n in parts) == 3, "one part per demo connection"
    run = await cli(api, "ledger", "totals")
    assert run.code == 0, run.err
    shown = {line.split()[0]: line.split() for line in run.out.splitlines()[1:]}
    assert {kind: (row[1], row[2], row[4]) for kind, row in shown.items()} == {
        kind: ("USD", f"{money.to_decimal(int(total), 'USD'):,.2f}", str(n)) for kind, total, n in parts}
    partners = await api.rows(select(func.sum(A.balance)).where(A.kind.not_in(SYSTEM_ACCOUNT_KINDS)))
    assert sum(int(total) for _, total, _ in parts) + int(partners[0][0]) == 0


async def test_ledger_verify_reports_a_tampered_balance_and_exits_non_zero(api: Api) -> None:
    cid = await api.connection_id(NORTHWIND)
    code = f"wallet:{cid}"
    (balance,) = (await api.rows(select(m.LedgerAccount.balance).where(m.LedgerAccount.code == code)))[0]

    # A cached balance can be changed behind the ledger's back (entries and transfers cannot).
    async def tamper(session: Any) -> None:
        await session.execute(
            update(m.LedgerAccount).where(m.LedgerAccount.code == code).values(balance=balance + 100)
        )

    await write(api, tamper)
    run = await cli(api, "ledger", "verify")
    assert run.code != 0
    assert f"account {code}: balance {balance + 100} and " in run.out
    assert f"but its entries sum to {balance} over " in run.out
    assert "ledger verify: 1 problem" in run.err


async def test_a_set_of_transfers_moves_nothing_when_its_first_overdraws(api: Api) -> None:
    """Posted together, a debit of more than the wallet holds followed by a credit that
    would cover it is refused: the debit's entry would show the wallet below zero."""
    cid = await api.connection_id(NORTHWIND)
    code = f"wallet:{cid}"
    (held,) = (await api.rows(select(m.LedgerAccount.balance).where(m.LedgerAccount.code == code)))[0]

    async def overdraw_then_cover(session: Any) -> None:
        connection = await session.get(m.Connection, cid)
        wallet = await ledger.wallet_account(session, connection)
        adjustments = await ledger.system_account(session, AccountKind.ADJUSTMENTS, connection.currency_code, cid)
        await ledger.post(session, [
            ledger.Transfer(
                "test:overdraw:debit", TransferKind.MANUAL_ADJUSTMENT, wallet.id, adjustments.id, held + 500
            ),
            ledger.Transfer("test:overdraw:credit", TransferKind.MANUAL_ADJUSTMENT, adjustments.id, wallet.id, 1000),
        ])

    with pytest.raises(DomainError) as refused:
        await write(api, overdraw_then_cover)
    assert refused.value.code == "INSUFFICIENT_FUNDS"
    assert "5.00 USD more is needed" in refused.value.message
    moved = await api.rows(select(func.count()).select_from(m.LedgerTransfer)
                           .where(m.LedgerTransfer.key.like("test:overdraw:%")))
    assert moved == [(0,)]
    assert await api.rows(select(m.LedgerAccount.balance).where(m.LedgerAccount.code == code)) == [(held,)]


@pytest.mark.postgres
async def test_post_works_from_the_locked_balance_not_one_read_before_the_lock(api: Api) -> None:
    """A transaction that read a wallet (as `wallet_account` does) before another one
    debited it must post from the balance it finds under the lock, or the debit is lost.
    (PostgreSQL only: on SQLite a write transaction holds the database from its start.)"""
    cid = await api.connection_id(NORTHWIND)
    code = f"wallet:{cid}"
    (held,) = (await api.rows(select(m.LedgerAccount.balance).where(m.LedgerAccount.code == code)))[0]
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as early, early.begin():
            connection = await early.get(m.Connection, cid)
            assert connection is not None
            wallet = await ledger.wallet_account(early, connection)  # read, not locked
            adjustments = await ledger.system_account(early, AccountKind.ADJUSTMENTS, connection.currency_code, cid)
            assert wallet.balance == held

            async def debit(session: Any) -> None:  # another request, committed meanwhile
                await ledger.post(session, [ledger.Transfer(
                    "test:stale:debit", TransferKind.MANUAL_ADJUSTMENT, wallet.id, adjustments.id, 300)])

            await write(api, debit)
            await ledger.post(early, [ledger.Transfer(
                "test:stale:credit", TransferKind.MANUAL_ADJUSTMENT, adjustments.id, wallet.id, 1000)])
    finally:
        await engine.dispose()
    assert await api.rows(select(m.LedgerAccount.balance).where(m.LedgerAccount.code == code)) == [
        (held - 300 + 1000,)
    ]
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as session:
            assert await ledger.verify(session) == []
    finally:
        await engine.dispose()
