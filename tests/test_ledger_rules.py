"""services.ledger.post(), the one writer of money, refuses what must never happen and changes nothing then."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db import models as m
from db.engine import create_engine, write_sessions
from db.states import AccountKind, TransferKind
from services import ledger
from services.errors import DomainError
from tests.conftest import Api


@pytest.fixture
async def session(api: Api) -> AsyncIterator[AsyncSession]:
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as s:
            yield s
    finally:
        await engine.dispose()


async def accounts(s: AsyncSession) -> tuple[m.LedgerAccount, m.LedgerAccount, m.LedgerAccount]:
    """Two connections' wallets and Revampd's adjustments account."""
    connections = list(await s.scalars(select(m.Connection).order_by(m.Connection.id).limit(2)))
    first, second = [await ledger.wallet_account(s, c) for c in connections]
    return first, second, await ledger.system_account(s, AccountKind.ADJUSTMENTS, "USD", connections[0].id)


async def totals(s: AsyncSession) -> tuple[Any, ...]:
    return tuple((await s.execute(select(
        func.count(m.LedgerTransfer.id.distinct()), func.sum(m.LedgerAccount.balance)).select_from(m.LedgerAccount)
        .outerjoin(m.LedgerTransfer, m.LedgerTransfer.debit_account_id == m.LedgerAccount.id))).one())


def move(key: str, debit: m.LedgerAccount, credit: m.LedgerAccount, amount: int) -> ledger.Transfer:
    return ledger.Transfer(key, TransferKind.MANUAL_ADJUSTMENT, debit.id, credit.id, amount)


async def test_a_set_that_would_overdraw_moves_nothing_even_if_the_caller_goes_on(session: AsyncSession) -> None:
    async with session.begin():
        wallet, _, adjustments = await accounts(session)
        before, held = await totals(session), wallet.balance
        with pytest.raises(DomainError) as refused:
            await ledger.post(session, [move("t:1", adjustments, wallet, 100), move("t:2", wallet, adjustments, held + 101)])
        assert refused.value.code == "INSUFFICIENT_FUNDS" and "0.01 USD more" in refused.value.message
        # A caller that catches the refusal and commits must not write half of it.
        assert wallet.balance == held
    async with session.begin():
        assert await totals(session) == before
        assert await ledger.verify(session) == []


async def test_credits_never_cross_connections(session: AsyncSession) -> None:
    async with session.begin():
        first, second, _ = await accounts(session)
        with pytest.raises(DomainError) as refused:
            await ledger.post(session, [move("x:1", first, second, 1)])
        assert refused.value.code == "CROSS_CONNECTION"


async def test_a_key_moves_money_once_and_only_for_its_own_transfer(session: AsyncSession) -> None:
    async with session.begin():
        wallet, _, adjustments = await accounts(session)
        [first] = await ledger.post(session, [move("once", adjustments, wallet, 500)])
        held = wallet.balance
        [again] = await ledger.post(session, [move("once", adjustments, wallet, 500)])
        assert again.id == first.id and wallet.balance == held
        with pytest.raises(DomainError) as refused:
            await ledger.post(session, [move("once", adjustments, wallet, 501)])
        assert refused.value.code == "TRANSFER_KEY_REUSED" and wallet.balance == held
        assert await ledger.verify(session) == []


async def test_a_pending_transfer_reserves_then_is_posted_or_voided_once(session: AsyncSession) -> None:
    async with session.begin():
        wallet, _, adjustments = await accounts(session)
        held = wallet.balance
        [hold] = await ledger.post(session, [ledger.Transfer("p:1", TransferKind.MANUAL_ADJUSTMENT, wallet.id, adjustments.id, 300, pending=True)])
        assert (wallet.balance, wallet.pending) == (held, 300)
        with pytest.raises(DomainError) as refused:  # what is reserved cannot be spent twice
            await ledger.post(session, [move("p:spend", wallet, adjustments, held - 299)])
        assert refused.value.code == "INSUFFICIENT_FUNDS"
        await ledger.post(session, [ledger.Transfer("p:1:post", TransferKind.MANUAL_ADJUSTMENT, wallet.id, adjustments.id, 300, resolves=hold.id)])
        assert (wallet.balance, wallet.pending) == (held - 300, 0)
        with pytest.raises(DomainError) as twice:
            await ledger.post(session, [ledger.Transfer("p:1:void", TransferKind.MANUAL_ADJUSTMENT, wallet.id, adjustments.id, 300, resolves=hold.id, void=True)])
        assert twice.value.code == "PENDING_RESOLVED"
        assert await ledger.verify(session) == []
