"""No row that every Partner's money waits on (PostgreSQL, where transactions that write
different rows run side by side; SQLite's write transactions take turns by design).

Revampd's own accounts are kept as one part per connection (ledger.system_account), so a
Partner's money movement locks rows of its own only. Here Northwind's movement stays open,
its transaction not committed, holding every one of Revampd's accounts that its money
touches; meanwhile Cedar issues, pays from the wallet, pays by card, credits and transfers a
payout, and is billed. Each would wait until Northwind commits if any of them shared a row
with it: the test would then stop at WAIT with the step that waited."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Awaitable

import pytest
from sqlalchemy import select

from db import models as m
from db.engine import create_engine, write_sessions
from db.states import AccountKind, TransferKind
from server.settings import Settings
from services import billing, ledger
from services.payments import SandboxGateway
from tests.conftest import Api
from tests.test_invoices import issue, pay
from tests.test_pay_by_card import overdue, pay_by_card, verify
from tests.test_payment_method import update
from tests.test_payouts import CREDIT, TRANSFER, available_payout, call, dollars, with_bank_account

pytestmark = pytest.mark.postgres

NORTHWIND, CEDAR = "owner@northwind.example", "owner@cedar.example"
# Far longer than any step takes; reached only by a step that waits on Northwind's locks.
WAIT = 60


async def done(what: str, step: Awaitable[Any]) -> Any:
    try:
        return await asyncio.wait_for(step, WAIT)
    except TimeoutError:
        pytest.fail(f"{what} waited on Northwind's open transaction")


async def test_one_partners_open_money_movement_never_holds_up_another_partners(api: Api) -> None:
    northwind, cedar = await api.connection_id(NORTHWIND), await api.connection_id(CEDAR)
    await update(api, CEDAR, "tok_visa_4242")
    await with_bank_account(api, CEDAR, "ok")
    late = await overdue(api)
    payout, available = await available_payout(api, CEDAR)

    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as held, held.begin():
            # Northwind's money movement: a credit to its wallet, and a lock on each of Revampd's
            # accounts its money has moved through (revenue, card processor, earnings, bank, ...).
            connection = await held.get(m.Connection, northwind)
            assert connection is not None
            wallet = await ledger.wallet_account(held, connection)
            funds = await ledger.system_account(held, AccountKind.ADJUSTMENTS, "USD", northwind)
            await ledger.post(
                held, [ledger.Transfer("held:1", TransferKind.MANUAL_ADJUSTMENT, funds.id, wallet.id, 100)]
            )
            touched = (await held.scalars(
                select(m.LedgerAccount.kind).where(m.LedgerAccount.code.like(f"%:USD:{northwind}")).with_for_update()
            )).all()
            assert {"REVAMPD_REVENUE", "CARD_PROCESSOR", "SUB_ORG_EARNINGS", "BANK_OUT", "ADJUSTMENTS"} <= set(touched)

            bill = (await done("issueInvoice", issue(api, CEDAR, [
                {"description": "Workshop", "quantity": 1, "unitAmount": "1.00"}], key="cedar-1")))["invoice"]
            assert (await done("payInvoice", pay(api, bill["id"], key="cedar-1", as_=CEDAR)))["userErrors"] == []
            paid = await done("payInvoiceByCard", pay_by_card(api, late["id"], "cedar-card"))
            assert paid["userErrors"] == [] and paid["invoice"]["status"] == "PAID"
            credited = await done("creditPayout", call(api, CREDIT, CEDAR, payoutId=payout, amount=dollars(100),
                                                       idempotencyKey="cedar-credit"))
            assert credited["userErrors"] == []
            sent = await done("transferPayout", call(api, TRANSFER, CEDAR, payoutId=payout, idempotencyKey="cedar-bank"))
            assert sent["userErrors"] == [] and sent["disposition"]["bankAmount"]["amount"] == dollars(available - 100)

            async def bill_cedar() -> billing.Collection:
                settings = Settings(database_url=api.settings.database_url, billing_pay_from_wallet=False)
                async with write_sessions(engine)() as session, session.begin():
                    end = await session.scalar(
                        select(m.Subscription.current_period_end).where(m.Subscription.connection_id == cedar))
                    assert end is not None
                    billed = await billing.bill_connection(session, cedar, end + timedelta(hours=1), settings)
                assert billed is not None and billed.collection is not None
                await billing.charge(write_sessions(engine), SandboxGateway(), [billed.collection],
                                     end + timedelta(hours=1), settings)
                return billed.collection

            collection = await done("the billing run", bill_cedar())
            assert collection.charged > 0
        await verify(api)
    finally:
        await engine.dispose()
