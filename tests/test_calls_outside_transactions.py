"""Calls to the processor and the bank are two-phase: the intent commits, the call is made
with no transaction open, the outcome commits. A process that dies between the steps, or an
answer that never arrives, leaves an intent that is settled by asking again with the same
key: each card is charged at most once, each payout sent at most once, nothing is lost.

The processors here count what they were asked: a processor charges (or a bank sends)
once per key, so the keys it saw are the charges (transfers) made.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

import resolvers.bank_accounts
from db import models as m
from db.engine import create_engine, read_sessions, write_sessions
from schema.base import from_global_id, to_global_id
from server.settings import Settings
from services import billing, card_payments, payouts
from services.access import Principal, Role
from services.bank_gateway import GatewayTransfer, LinkedAccount, SandboxBankGateway
from services.payments import ChargeResult, SandboxGateway
from tests import clock
from tests.conftest import Api, Databases, make_api
from tests.test_bank_accounts import link
from tests.test_billing import connection, set_card, set_wallet
from tests.test_payouts import CANCEL, TRANSFER, available_payout, call, error, verify

CEDAR, NORTHWIND = "owner@cedar.example", "owner@northwind.example"


class CountingProcessor(SandboxGateway):
    """The sandbox processor, counting each charge by its key."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: Counter[str] = Counter()

    async def charge(self, token: str, amount: int, currency: str, idempotency_key: str) -> ChargeResult:
        self.asked[idempotency_key] += 1
        return await super().charge(token, amount, currency, idempotency_key)


class CountingBank(SandboxBankGateway):
    """The sandbox bank, counting each transfer by its reference."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: Counter[str] = Counter()

    async def create_transfer(self, reference: str, account_token: str, amount: int, currency: str) -> GatewayTransfer:
        self.asked[reference] += 1
        return await super().create_transfer(reference, account_token, amount, currency)


# ---- a card charge of the billing run -----------------------------------------------------

async def bill_cedar(api: Api, *, die: str) -> tuple[CountingProcessor, int]:
    """Bill Cedar's period (wallet empty, a good card on file) and die `die`: "after the
    intent" (the PENDING charge committed, the processor never asked) or "after the call"
    (the processor charged, its answer never recorded). Then `payments reconcile`."""
    await set_card(api, CEDAR, "tok_visa_4242")
    await set_wallet(api, CEDAR, 0)
    end = datetime_of((await connection(api, CEDAR))["subscription"]["currentPeriodEnd"])
    now, settings = end + timedelta(hours=1), Settings(database_url=api.settings.database_url)
    processor = CountingProcessor()
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as session, session.begin():
            billed = await billing.bill_connection(session, await api.connection_id(CEDAR), now, settings)
        assert billed is not None and billed.collection is not None and billed.collection.charge is not None
        charge = billed.collection.charge
        if die == "after the call":
            assert (await processor.charge(charge.card_token, charge.amount, charge.currency_code,
                                           charge.processor_key)).success
        # ... the process is gone. Later, `payments reconcile`:
        settled = await card_payments.reconcile(read_sessions(engine), write_sessions(engine), processor,
                                                now + timedelta(minutes=5), timedelta(seconds=60), (1, 3, 5))
        assert [c.id for c in settled.succeeded] == [charge.id] and settled.unanswered == 0
        # ... and once more, as cron would: nothing left to settle, nothing charged again.
        again = await card_payments.reconcile(read_sessions(engine), write_sessions(engine), processor,
                                              now + timedelta(minutes=10), timedelta(seconds=60), (1, 3, 5))
        assert (again.succeeded, again.declined, again.unanswered) == ([], [], 0)
    finally:
        await engine.dispose()
    return processor, charge.invoice_id


def datetime_of(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def card_payments_of(api: Api, invoice_id: int) -> list[tuple[str, int]]:
    rows = await api.rows(select(m.InvoicePayment.method, m.InvoicePayment.amount)
                          .where(m.InvoicePayment.invoice_id == invoice_id, m.InvoicePayment.method == "CARD"))
    return [(method, amount) for method, amount in rows]


async def test_a_billing_charge_whose_process_died_before_the_call_is_made_once_by_reconcile(api: Api) -> None:
    processor, invoice_id = await bill_cedar(api, die="after the intent")
    assert list(processor.asked.values()) == [1]
    [(status, total)] = await api.rows(select(m.Invoice.status, m.Invoice.total).where(m.Invoice.id == invoice_id))
    assert status == "PAID" and await card_payments_of(api, invoice_id) == [("CARD", total)]
    await verify(api)


async def test_a_billing_charge_whose_process_died_after_the_call_is_recorded_once_by_reconcile(api: Api) -> None:
    processor, invoice_id = await bill_cedar(api, die="after the call")
    # Asked twice with one key: one charge at the processor, one payment here.
    assert list(processor.asked.values()) == [2]
    [(status, total)] = await api.rows(select(m.Invoice.status, m.Invoice.total).where(m.Invoice.id == invoice_id))
    assert status == "PAID" and await card_payments_of(api, invoice_id) == [("CARD", total)]
    await verify(api)


# ---- a bank submission ---------------------------------------------------------------------

async def transfer_recorded(api: Api) -> int:
    """A transferPayout whose bank transfer is recorded, its submission not made: the
    disposition as its transaction commits it (services.payouts.transfer)."""
    payout, _ = await available_payout(api, NORTHWIND)
    cid = await api.connection_id(NORTHWIND)
    [(partner_id,)] = await api.rows(select(m.User.partner_id).where(m.User.email == NORTHWIND))
    principal = Principal(api.ids[NORTHWIND], partner_id, cid, frozenset({Role.PARTNER_ADMIN}))
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as session, session.begin():
            parsed = from_global_id(payout)
            assert parsed is not None
            disposed = await payouts.transfer(session, principal, parsed[1], bank_account_id=None, amount=None,
                                              idempotency_key="crash")
    finally:
        await engine.dispose()
    assert disposed.bank_transfer is not None
    return disposed.bank_transfer.id


async def sync(api: Api, bank: SandboxBankGateway, transfer_id: int) -> str:
    engine = create_engine(api.settings.database_url)
    try:
        return await payouts.sync_one(write_sessions(engine), bank, transfer_id)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("die", ["after the disposition", "after marking it as being sent", "after the call"])
async def test_a_bank_submission_that_died_at_any_step_is_sent_once_by_sync(api: Api, die: str) -> None:
    """The transfer is recorded, then the process dies: before it is sent, once it is marked
    as being sent, or after the bank took it (its answer lost). `payouts sync` sends it with
    its one reference; the bank has one transfer, PAID, and the ledger agrees."""
    bank = CountingBank()
    transfer_id = await transfer_recorded(api)
    if die != "after the disposition":
        engine = create_engine(api.settings.database_url)
        try:
            async with write_sessions(engine)() as session, session.begin():
                sending = await payouts.start_sending(session, transfer_id, clock.NOW)
            assert sending is not None
            if die == "after the call":
                await bank.create_transfer(sending.reference, sending.account_token, sending.amount, sending.currency)
        finally:
            await engine.dispose()
        # The bank may have it: it is canceled only once the bank's answer is in.
        gid = to_global_id("BankTransfer", transfer_id)
        assert error(await call(api, CANCEL, NORTHWIND, bankTransferId=gid))[0] == "GATEWAY_UNAVAILABLE"
    assert await sync(api, bank, transfer_id) == "submitted"
    assert await sync(api, bank, transfer_id) == "applied"  # the sandbox has paid it by now
    [(status, ref)] = await api.rows(select(m.BankTransfer.status, m.BankTransfer.gateway_ref)
                                     .where(m.BankTransfer.id == transfer_id))
    assert (status, ref) == ("PAID", f"sbt_sandbox_ok_bt{transfer_id}")
    assert set(bank.asked) == {f"bt{transfer_id}"}
    await verify(api)


async def test_a_lost_answer_leaves_the_transfer_being_sent_until_sync_and_then_it_can_be_canceled(
    databases: Databases,
) -> None:
    api = await make_api(await databases.clone(), bank_sandbox_lost_answer_rate=1.0)
    try:
        payout, available = await available_payout(api, NORTHWIND)
        sent = await call(api, TRANSFER, NORTHWIND, payoutId=payout, idempotencyKey="lost")
        assert sent["userErrors"] == [] and sent["bankTransfer"]["status"] == "PENDING"
        transfer = sent["bankTransfer"]["id"]
        assert error(await call(api, CANCEL, NORTHWIND, bankTransferId=transfer)) == (
            "GATEWAY_UNAVAILABLE", ["input", "bankTransferId"])
        parsed = from_global_id(transfer)
        assert parsed is not None
        assert await sync(api, SandboxBankGateway(), parsed[1]) == "submitted"
        canceled = await call(api, CANCEL, NORTHWIND, bankTransferId=transfer)
        # The bank's cancel answer is lost too (the sandbox loses every answer here): try again.
        assert error(canceled)[0] == "GATEWAY_UNAVAILABLE"
        await verify(api)
    finally:
        await api.http.aclose()
        await api.engine.dispose()


async def test_a_slow_bank_holds_no_connection_while_it_thinks(databases: Databases) -> None:
    """One pooled connection, a bank that takes two seconds: a query sent while the
    transfer waits for the bank is answered first."""
    api = await make_api(await databases.clone(), db_pool_size=1, db_max_overflow=0, bank_sandbox_latency_ms=2000)
    try:
        payout, _ = await available_payout(api, NORTHWIND)
        sending = asyncio.create_task(call(api, TRANSFER, NORTHWIND, payoutId=payout, idempotencyKey="slow"))
        being_sent = select(func.count()).select_from(m.BankTransfer).where(m.BankTransfer.sending_at.is_not(None),
                                                                            m.BankTransfer.gateway_ref.is_(None))
        while not (await api.rows(being_sent))[0][0]:  # marked as being sent: the bank is being asked
            await asyncio.sleep(0.01)
        read = await api.gql("{ viewer { user { email } } }", as_=NORTHWIND)
        assert read["viewer"]["user"]["email"] == NORTHWIND
        assert not sending.done(), "the query waited for the bank"
        sent = await sending
        assert sent["userErrors"] == [] and sent["bankTransfer"]["status"] == "PENDING"
    finally:
        await api.http.aclose()
        await api.engine.dispose()


class HeldBank(SandboxBankGateway):
    """The sandbox bank, answering a link only once the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked, self.release = asyncio.Event(), asyncio.Event()

    async def link_account(self, holder_name: str, routing_number: str, account_number: str) -> LinkedAccount:
        self.asked.set()
        await self.release.wait()
        return await super().link_account(holder_name, routing_number, account_number)


async def test_linking_an_account_holds_no_connection_while_the_bank_thinks(
    databases: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One pooled connection; the bank answers the link only after a query has been
    answered, which it could not be if the link held the connection meanwhile."""
    api = await make_api(await databases.clone(), db_pool_size=1, db_max_overflow=0)
    bank = HeldBank()
    monkeypatch.setattr(resolvers.bank_accounts, "bank_gateway_named", lambda name, lag: bank)
    try:
        linking = asyncio.create_task(link(api, idempotencyKey="held"))
        await bank.asked.wait()
        read = await asyncio.wait_for(api.gql("{ viewer { user { email } } }", as_=CEDAR), 30)
        assert read["viewer"]["user"]["email"] == CEDAR
        bank.release.set()
        assert (await linking)["userErrors"] == []
    finally:
        bank.release.set()
        await api.http.aclose()
        await api.engine.dispose()


class HeldProcessor(SandboxGateway):
    """The sandbox processor, answering charges only once the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked, self.release = asyncio.Event(), asyncio.Event()

    async def charge(self, token: str, amount: int, currency: str, idempotency_key: str) -> ChargeResult:
        self.asked.set()
        await self.release.wait()
        return await super().charge(token, amount, currency, idempotency_key)


async def test_the_billing_run_holds_no_connection_while_the_processor_thinks(api: Api) -> None:
    """One pooled connection and four workers: while Cedar's charge waits for the processor,
    a query on the same pool is answered (it could not be if the charge held the
    connection), and it sees Cedar's new period: the invoice and its PENDING charge were
    committed before the processor was asked."""
    await set_card(api, CEDAR, "tok_visa_4242")
    await set_wallet(api, CEDAR, 0)
    end = datetime_of((await connection(api, CEDAR))["subscription"]["currentPeriodEnd"])
    processor = HeldProcessor()
    engine = create_engine(api.settings.database_url, pool_size=1, max_overflow=0)
    try:
        run = asyncio.create_task(billing.run(
            read_sessions(engine), write_sessions(engine), end + timedelta(days=1), processor,
            Settings(database_url=api.settings.database_url), workers=4,
        ))
        await processor.asked.wait()
        cedar = await api.connection_id(CEDAR)
        async with read_sessions(engine)() as session:
            opened = await asyncio.wait_for(session.scalar(
                select(m.Subscription.current_period_start).where(m.Subscription.connection_id == cedar)), 30)
            pending = await session.scalar(select(func.count()).select_from(m.CardCharge)
                                           .where(m.CardCharge.status == "PENDING"))
        assert (opened, pending) == (end, 1)
        processor.release.set()
        summary = await run
        assert (summary.billed, summary.charged, summary.failed) == (3, 1, [])
    finally:
        processor.release.set()
        await engine.dispose()
    await verify(api)
