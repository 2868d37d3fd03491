"""Pay now by card: an admin pays an OPEN invoice with the card on file at once, two-phase
(the charge recorded, the processor asked with no transaction open, the outcome recorded),
so that a slow processor holds no connection and a lost answer is settled, never paid twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from db import models as m
from db.engine import create_engine, read_sessions
from services import ledger
from services.payments import GatewayError, SandboxGateway, SandboxLag
from tests.conftest import Api, Databases, make_api
from tests.test_billing import billing_run
from tests.test_invoices import invoices, pay
from tests.test_ledger import cli
from tests.test_payment_method import update

CEDAR = "owner@cedar.example"  # last month's subscription invoice is overdue
PAY_BY_CARD = """mutation($input: PayInvoiceByCardInput!) { payInvoiceByCard(input: $input) {
  invoice { id number status amountDue { amount } amountPaid { amount } paymentError
            payments { amount { amount } method } }
  payment { amount { amount } method } wallet { id }
  userErrors { field code message } clientMutationId } }"""


async def pay_by_card(api: Api, invoice: str, key: str, as_: str = CEDAR) -> dict[str, Any]:
    data = await api.gql(PAY_BY_CARD, {"input": {"invoiceId": invoice, "idempotencyKey": key}}, as_=as_)
    return dict(data["payInvoiceByCard"])


async def overdue(api: Api) -> dict[str, Any]:
    """Cedar's oldest OPEN invoice."""
    return min((await invoices(api, CEDAR, "OPEN")).values(), key=lambda i: i["issuedAt"])


# The demo's card payments were charges too; the tests look at the charges made since.
SINCE_SEED = ~m.CardCharge.processor_key.startswith("seed:")


async def charges(api: Api) -> list[tuple[str, int, str | None]]:
    rows = await api.rows(select(m.CardCharge.status, m.CardCharge.amount, m.CardCharge.charge_id)
                          .where(SINCE_SEED).order_by(m.CardCharge.id))
    return [(r[0], r[1], r[2]) for r in rows]


async def asked_at(api: Api) -> datetime:
    """When the (one) card charge was asked for: reconcile's "now" is taken from it."""
    [(at,)] = await api.rows(select(m.CardCharge.created_at).where(SINCE_SEED))
    return at  # type: ignore[no-any-return]


async def card_payments(api: Api) -> int:
    return int((await api.rows(select(func.count()).select_from(m.InvoicePayment)
                               .where(m.InvoicePayment.method == "CARD")))[0][0])


async def verify(api: Api) -> None:
    engine = create_engine(api.settings.database_url)
    try:
        async with read_sessions(engine)() as session:
            assert await ledger.verify(session) == []
    finally:
        await engine.dispose()


def codes(payload: dict[str, Any]) -> list[str]:
    return [e["code"] for e in payload["userErrors"]]


async def test_a_declined_invoice_is_paid_at_once_with_a_good_card(api: Api) -> None:
    invoice = await overdue(api)
    due = invoice["amountDue"]["amount"]
    before = await card_payments(api)
    assert codes(await pay_by_card(api, invoice["id"], "k0")) == ["NO_CARD_ON_FILE"]

    await update(api, CEDAR, "tok_chargeDeclined_0002")
    declined = await pay_by_card(api, invoice["id"], "k1")
    assert declined["userErrors"] == [{"field": ["input", "invoiceId"], "code": "CARD_DECLINED",
                                       "message": "Your card was declined."}]
    assert (declined["invoice"]["status"], declined["invoice"]["paymentError"]) == ("OPEN", "Your card was declined.")
    assert declined["payment"] is None and await card_payments(api) == before

    await update(api, CEDAR, "tok_visa_4242")
    paid = await pay_by_card(api, invoice["id"], "k2")
    assert paid["userErrors"] == [] and paid["wallet"] is None
    assert paid["payment"] == {"amount": {"amount": due}, "method": "CARD"}
    assert (paid["invoice"]["status"], paid["invoice"]["amountDue"]["amount"], paid["invoice"]["paymentError"]) == (
        "PAID", "0.00", None)
    # The same key again: the same charge, not another.
    again = await pay_by_card(api, invoice["id"], "k2")
    assert again["payment"] == paid["payment"] and again["invoice"]["status"] == "PAID"
    assert [s for s, _, _ in await charges(api)] == ["DECLINED", "SUCCEEDED"]
    assert await card_payments(api) == before + 1
    assert codes(await pay_by_card(api, invoice["id"], "k3")) == ["INVOICE_NOT_OPEN"]
    await verify(api)


async def test_a_lost_answer_is_settled_by_reconcile_and_nothing_moves_meanwhile(databases: Databases) -> None:
    api = await make_api(await databases.clone(), payment_sandbox_lost_answer_rate=1.0)
    try:
        await update(api, CEDAR, "tok_visa_4242")
        invoice = await overdue(api)
        before = await card_payments(api)
        lost = await pay_by_card(api, invoice["id"], "k1")
        assert codes(lost) == ["PAYMENT_PENDING"] and lost["invoice"]["status"] == "OPEN"
        # While the outcome is unknown nothing else moves money on the invoice, nor charges it again.
        assert codes(await pay_by_card(api, invoice["id"], "k2")) == ["PAYMENT_IN_PROGRESS"]
        wallet = await pay(api, invoice["id"], "1.00", key="w1", as_=CEDAR)
        assert [e["code"] for e in wallet["userErrors"]] in (["PAYMENT_IN_PROGRESS"], ["WALLET_EMPTY"])
        [(status, amount, charge_id)] = await charges(api)
        assert (status, charge_id) == ("PENDING", None)

        later = (await asked_at(api) + timedelta(minutes=5)).isoformat()
        settled = await cli(api, "payments", "reconcile", "--now", later)
        assert settled.code == 0, settled.err
        assert "payments reconcile: settled 1 card charge" in settled.out and "(1 charged, 0 declined)" in settled.out
        [(status, _, charge_id)] = await charges(api)
        assert status == "SUCCEEDED" and charge_id and charge_id.startswith("ch_sandbox_")
        paid = (await invoices(api, CEDAR, "PAID"))[invoice["number"]]
        assert [(p["amount"]["amount"], p["method"]) for p in paid["payments"]] == [(f"{Decimal(amount) / 100:.2f}",
                                                                                      "CARD")]
        again = await cli(api, "payments", "reconcile", "--now", later)
        assert "settled 0 card charges" in again.out and await card_payments(api) == before + 1
        await verify(api)
    finally:
        await api.http.aclose()
        await api.engine.dispose()


async def test_100_concurrent_pay_now_requests_charge_the_card_once(api: Api) -> None:
    await update(api, CEDAR, "tok_visa_4242")
    invoice = await overdue(api)
    before = await card_payments(api)
    payloads = await asyncio.gather(*(pay_by_card(api, invoice["id"], f"storm-{n}") for n in range(100)))
    outcomes = Counter(tuple(codes(p)) for p in payloads)
    assert outcomes[()] == 1 and set(outcomes) <= {(), ("PAYMENT_IN_PROGRESS",), ("INVOICE_NOT_OPEN",)}, outcomes
    assert [s for s, _, _ in await charges(api)] == ["SUCCEEDED"]
    assert await card_payments(api) == before + 1
    await verify(api)


async def test_a_slow_processor_holds_no_connection_while_it_thinks(databases: Databases) -> None:
    """One pooled connection, a processor that takes two seconds: a query sent while the
    charge waits for its answer is answered before the charge is."""
    api = await make_api(await databases.clone(), db_pool_size=1, db_max_overflow=0,
                         payment_sandbox_latency_ms=2000)
    try:
        await update(api, CEDAR, "tok_visa_4242")
        invoice = await overdue(api)
        charging = asyncio.create_task(pay_by_card(api, invoice["id"], "slow"))
        while not await charges(api):  # the charge is recorded: its call is on its way
            await asyncio.sleep(0.01)
        read = await api.gql("{ viewer { user { email } } }", as_=CEDAR)
        assert read["viewer"]["user"]["email"] == CEDAR
        assert not charging.done(), "the query waited for the charge"
        assert (await charging)["invoice"]["status"] == "PAID"
    finally:
        await api.http.aclose()
        await api.engine.dispose()


async def test_the_sandbox_is_slow_and_loses_answers_when_told_to_as_a_processor_does() -> None:
    lossy = SandboxGateway(SandboxLag(lost_answer_rate=1.0))
    with pytest.raises(GatewayError, match="answer was lost"):
        await lossy.charge("tok_visa_4242", 100, "USD", "key-1")
    # Asked again with the same key, a processor answers with the charge it made, not a new one.
    first = await SandboxGateway().charge("tok_visa_4242", 100, "USD", "key-1")
    again = await SandboxGateway().charge("tok_visa_4242", 100, "USD", "key-1")
    other = await SandboxGateway().charge("tok_visa_4242", 100, "USD", "key-2")
    assert first.success and first.charge_id == again.charge_id != other.charge_id
    with pytest.raises(GatewayError, match="did not answer"):
        await SandboxGateway(SandboxLag(failure_rate=1.0)).charge("tok_visa_4242", 100, "USD", "key-3")


async def test_only_the_connections_admin_pays_its_invoices_by_card(api: Api) -> None:
    await update(api, CEDAR, "tok_visa_4242")
    invoice = await overdue(api)
    for who, code in (("member@northwind.example", "FORBIDDEN"), ("support@revampd.example", "FORBIDDEN"),
                      ("billing@revampd.example", "FORBIDDEN"), ("owner@northwind.example", "NOT_FOUND")):
        assert codes(await pay_by_card(api, invoice["id"], f"k-{who}", as_=who)) == [code], who
    assert await charges(api) == [] and (await overdue(api))["id"] == invoice["id"]


async def test_the_billing_run_first_settles_lost_answers_and_does_not_retry_what_they_paid(
    databases: Databases,
) -> None:
    api = await make_api(await databases.clone(), payment_sandbox_lost_answer_rate=1.0)
    try:
        await update(api, CEDAR, "tok_visa_4242")
        invoice = await overdue(api)
        assert codes(await pay_by_card(api, invoice["id"], "k1")) == ["PAYMENT_PENDING"]
        run = await billing_run(api, await asked_at(api) + timedelta(minutes=5))
        assert run.code == 0, run.err
        assert "billing run: first settled 1 card charge whose answer was lost" in run.out
        assert [s for s, _, _ in await charges(api)] == ["SUCCEEDED"]
        assert invoice["number"] in await invoices(api, CEDAR, "PAID")
        await verify(api)
    finally:
        await api.http.aclose()
        await api.engine.dispose()
