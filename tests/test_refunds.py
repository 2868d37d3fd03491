"""Refunds and credit notes: Revampd billing gives back all or part of what was paid into an
invoice, to where it came from (the wallet at once, the card two-phase through the processor),
by a credit note numbered without a gap; never more than was paid, once per idempotency key,
even when 50 ask at once; a refused card refund is credited to the wallet, a lost answer is
settled by `payments reconcile`."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import models as m
from schema.base import to_global_id
from services import card_payments
from services import invoices as invoice_service
from services.payments import ChargeResult
from tests.conftest import Api, Databases, make_api
from tests.test_invoices import (
    BILLING,
    BLUEBIRD,
    MEMBER,
    OWNER,
    balance,
    bill,
    in_transaction,
    invoices,
    ledger_problems,
    money_state,
    pay,
    pk,
    void,
)
from tests.test_invoices_concurrency import outcome, storm
from tests.test_ledger import cli

REFUND = """mutation($input: RefundInvoiceInput!) { refundInvoice(input: $input) {
  invoice { id status amountPaid { amount } amountRefunded { amount } amountDue { amount }
            creditNotes { id number } refunds { amount { amount } method status } }
  creditNote { id number kind reason total { amount currencyCode } amountOffDue { amount } createdAt
               refunds { amount { amount } method status failureReason settledAt creditNote { id } }
               lines { description quantity unitAmount { amount } amount { amount } } invoice { id } }
  wallet { balance { amount } }
  userErrors { field code message } clientMutationId } }"""


async def refund(api: Api, invoice_id: str, amount: str | None = None, *, reason: str = "Billed in error",
                 key: str = "r-1", as_: str = BILLING, **extra: Any) -> dict[str, Any]:
    input = {"invoiceId": invoice_id, "reason": reason, "idempotencyKey": key, **extra}
    if amount is not None:
        input["amount"] = amount
    return dict((await api.gql(REFUND, {"input": input}, as_=as_))["refundInvoice"])


def refused(payload: dict[str, Any]) -> tuple[str, list[str] | None]:
    assert len(payload["userErrors"]) == 1 and payload["creditNote"] is payload["invoice"] is None, payload
    return payload["userErrors"][0]["code"], payload["userErrors"][0]["field"]


async def card_paid(api: Api) -> dict[str, Any]:
    """Northwind's newest PAID invoice paid by card alone, nothing of it refunded yet."""
    paid = [i for i in (await invoices(api, OWNER, "PAID")).values()
            if i["paymentMethod"] == "CARD" and i["amountRefunded"]["amount"] == "0.00"]
    return max(paid, key=lambda i: i["issuedAt"])


def refunds_of(payload: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(r["amount"]["amount"], r["method"], r["status"]) for r in payload["creditNote"]["refunds"]]


async def test_part_of_a_card_payment_goes_back_to_the_card_by_a_numbered_credit_note(api: Api) -> None:
    inv = await card_paid(api)
    wallet = await balance(api, OWNER)
    done = await refund(api, inv["id"], "100.00", reason="  Two seats were never used  ", clientMutationId="c-1")
    assert done["userErrors"] == [] and done["clientMutationId"] == "c-1"
    note = done["creditNote"]
    assert (note["kind"], note["reason"], note["total"], note["amountOffDue"]["amount"]) == (
        "REFUND", "Two seats were never used", {"amount": "100.00", "currencyCode": "USD"}, "0.00")
    assert re.fullmatch(r"INV-NW-CN-\d{4}", note["number"]), note["number"]
    assert refunds_of(done) == [("100.00", "CARD", "SUCCEEDED")]
    assert note["refunds"][0]["creditNote"] == {"id": note["id"]} and note["refunds"][0]["settledAt"] is not None
    assert [(li["description"], li["quantity"], li["amount"]["amount"]) for li in note["lines"]] == [
        ("Refund: Two seats were never used", 1, "100.00")]
    after = done["invoice"]
    # Paid stays paid: the refund is on record beside it, and nothing more is due.
    assert (after["status"], after["amountPaid"], after["amountRefunded"]["amount"], after["amountDue"]["amount"]) == (
        "PAID", inv["amountPaid"], "100.00", "0.00")
    assert after["creditNotes"] == [{"id": note["id"], "number": note["number"]}]
    assert Decimal(done["wallet"]["balance"]["amount"]) == wallet == await balance(api, OWNER)
    # The Partner sees it; another Partner does not.
    q = "query($id: ID!) { node(id: $id) { ... on CreditNote { number total { amount } invoice { id } } } }"
    assert (await api.gql(q, {"id": note["id"]}, as_=MEMBER))["node"] == {
        "number": note["number"], "total": {"amount": "100.00"}, "invoice": {"id": inv["id"]}}
    assert (await api.gql(q, {"id": note["id"]}, as_=BLUEBIRD))["node"] is None
    assert await ledger_problems(api) == []


async def test_credit_note_numbers_follow_one_another_per_connection(api: Api) -> None:
    inv = await card_paid(api)
    numbers = [(await refund(api, inv["id"], "1.00", key=f"n-{i}"))["creditNote"]["number"] for i in range(3)]
    counts = [int(n.rsplit("-", 1)[1]) for n in numbers]
    assert counts == [counts[0], counts[0] + 1, counts[0] + 2]
    # Each connection counts its own.
    bluebird = max((i for i in (await invoices(api, BLUEBIRD, "PAID")).values()), key=lambda i: i["issuedAt"])
    [(made,)] = await api.rows(select(func.count()).select_from(m.CreditNote).where(
        m.CreditNote.connection_id == await api.connection_id(BLUEBIRD)))
    assert (await refund(api, bluebird["id"], "1.00"))["creditNote"]["number"] == f"INV-BB-CN-{made + 1:04d}"


async def test_refunds_add_up_to_what_was_paid_and_never_more(api: Api) -> None:
    inv = await card_paid(api)
    paid = Decimal(inv["amountPaid"]["amount"])
    first = await refund(api, inv["id"], "10.00", key="a")
    assert first["invoice"]["amountRefunded"]["amount"] == "10.00"
    state = await money_state(api)
    too_much = await refund(api, inv["id"], str(paid - Decimal("10.00") + Decimal("0.01")), key="b")
    code, field = refused(too_much)
    assert (code, field) == ("REFUND_EXCEEDS_PAID", ["input", "amount"])
    assert f"{paid - Decimal('10.00'):,.2f} USD" in too_much["userErrors"][0]["message"]
    assert await money_state(api) == state
    rest = await refund(api, inv["id"], key="c")  # without an amount: all that is left
    assert rest["creditNote"]["total"]["amount"] == f"{paid - Decimal('10.00'):.2f}"
    assert rest["invoice"]["amountRefunded"]["amount"] == f"{paid:.2f}"
    assert refused(await refund(api, inv["id"], key="d")) == ("NOTHING_TO_REFUND", ["input", "invoiceId"])
    unpaid = await bill(api, OWNER, 5_000)
    assert refused(await refund(api, unpaid, key="e")) == ("NOTHING_TO_REFUND", ["input", "invoiceId"])
    assert await ledger_problems(api) == []


async def test_a_wallet_payment_comes_back_to_the_wallet_newest_payment_first(api: Api) -> None:
    gid = await bill(api, OWNER, 3_000)
    await pay(api, gid, "10.00", key="p1")
    await pay(api, gid, "5.00", key="p2")
    wallet = await balance(api, OWNER)
    done = await refund(api, gid, "12.00")
    assert refunds_of(done) == [("5.00", "WALLET", "SUCCEEDED"), ("7.00", "WALLET", "SUCCEEDED")]
    assert await balance(api, OWNER) == wallet + Decimal("12.00")
    # A refund changes nothing of what is due: 30.00 - 15.00 paid.
    assert (done["invoice"]["status"], done["invoice"]["amountDue"]["amount"]) == ("OPEN", "15.00")
    q = """{ viewer { partner { revampdConnection { wallet { entries(first: 2) { edges { node {
      kind amount { amount } source { ... on Invoice { id } } } } } } } } } }"""
    entries = (await api.gql(q, as_=OWNER))["viewer"]["partner"]["revampdConnection"]["wallet"]["entries"]["edges"]
    assert Counter((e["node"]["kind"], e["node"]["amount"]["amount"]) for e in entries) == Counter(
        [("REFUND", "5.00"), ("REFUND", "7.00")])
    assert all(e["node"]["source"] == {"id": gid} for e in entries)
    assert await ledger_problems(api) == []


async def test_a_replayed_refund_answers_the_same_credit_note_and_refunds_once(api: Api) -> None:
    inv = await card_paid(api)
    first = await refund(api, inv["id"], "3.00", key="same")
    again = await refund(api, inv["id"], "3.00", key="same")
    assert again["creditNote"] == first["creditNote"] and again["invoice"]["amountRefunded"]["amount"] == "3.00"
    assert refused(await refund(api, inv["id"], "4.00", key="same"))[0] == "IDEMPOTENCY_KEY_REUSED"
    assert len(await api.rows(select(m.Refund.id).where(m.Refund.invoice_id == pk(inv["id"])))) == 1
    assert await ledger_problems(api) == []


async def test_a_card_refund_the_processor_refuses_is_credited_to_the_wallet(api: Api) -> None:
    inv = await card_paid(api)

    async def unknown_to_the_sandbox(session: AsyncSession) -> None:
        await session.execute(update(m.CardCharge).where(m.CardCharge.invoice_id == pk(inv["id"]))
                              .values(charge_id="ch_elsewhere_1"))

    await in_transaction(api, unknown_to_the_sandbox)
    wallet = await balance(api, OWNER)
    done = await refund(api, inv["id"], "20.00")
    [r] = done["creditNote"]["refunds"]
    assert (r["method"], r["status"], r["amount"]["amount"]) == ("CARD", "FAILED", "20.00")
    assert "no such charge" in r["failureReason"]
    assert await balance(api, OWNER) == wallet + Decimal("20.00")
    assert await ledger_problems(api) == []


async def test_a_lost_refund_answer_is_settled_by_reconcile_never_twice(databases: Databases) -> None:
    api = await make_api(await databases.clone(), payment_sandbox_lost_answer_rate=1.0)
    try:
        inv = await card_paid(api)
        wallet = await balance(api, OWNER)
        done = await refund(api, inv["id"], "50.00")
        assert done["userErrors"] == [] and refunds_of(done) == [("50.00", "CARD", "PENDING")]
        # Counted as refunded while the processor's answer is awaited: nothing can give it back twice.
        assert done["invoice"]["amountRefunded"]["amount"] == "50.00"
        assert await ledger_problems(api) == []
        [(asked,)] = await api.rows(select(m.Refund.created_at).where(m.Refund.status == "PENDING"))
        later = (asked + timedelta(minutes=10)).isoformat()
        settled = await cli(api, "payments", "reconcile", "--now", later)
        assert settled.code == 0, settled.err
        assert "1 card refund (1 refunded, 0 refused)" in settled.out
        again = await cli(api, "payments", "reconcile", "--now", later)
        assert "0 card refunds" in again.out
        [(status, refund_id)] = await api.rows(
            select(m.Refund.status, m.Refund.processor_refund_id).where(m.Refund.invoice_id == pk(inv["id"])))
        assert status == "SUCCEEDED" and refund_id.startswith("re_sandbox_")
        assert await balance(api, OWNER) == wallet
        assert await ledger_problems(api) == []
    finally:
        await api.http.aclose()


async def test_voiding_an_invoice_a_card_part_paid_refunds_that_part_to_the_card(api: Api) -> None:
    gid = await bill(api, OWNER, 8_000)

    async def charge(session: AsyncSession) -> None:
        row = await invoice_service.locked_invoice(session, None, pk(gid))
        made = await card_payments.record(session, row, 3_000, "tok_visa_4242", "test:part", now=row.issued_at)
        await card_payments.settle(session, made.id, ChargeResult(True, charge_id="ch_sandbox_part"))

    await in_transaction(api, charge)
    await pay(api, gid, "10.00")
    voided = await void(api, gid, "Billed twice")
    note = voided["creditNote"]
    assert (note["kind"], note["total"]["amount"], note["amountOffDue"]["amount"]) == ("VOID", "80.00", "40.00")
    assert [(r["amount"]["amount"], r["method"], r["status"]) for r in note["refunds"]] == [
        ("10.00", "WALLET", "SUCCEEDED"), ("30.00", "CARD", "SUCCEEDED")]
    assert voided["invoice"]["amountRefunded"]["amount"] == "40.00"
    assert await ledger_problems(api) == []


async def test_bad_input_is_refused_naming_the_field_and_changes_nothing(api: Api) -> None:
    inv = await card_paid(api)
    state = await money_state(api)
    assert refused(await refund(api, inv["id"], reason="   ", key="x1")) == ("INVALID_REASON", ["input", "reason"])
    assert refused(await refund(api, inv["id"], reason="x" * 501, key="x2")) == ("INVALID_REASON", ["input", "reason"])
    for bad in ("-1.00", "0", "1.234", "ten"):
        assert refused(await refund(api, inv["id"], bad, key=f"x-{bad}")) == ("INVALID_AMOUNT", ["input", "amount"]), bad
    assert refused(await refund(api, to_global_id("Invoice", 10**9), key="x3")) == ("NOT_FOUND", ["input", "invoiceId"])
    assert await money_state(api) == state


async def test_only_billing_admins_refund(api: Api) -> None:
    inv = await card_paid(api)
    state = await money_state(api)
    for who in (OWNER, MEMBER, "support@revampd.example"):
        assert refused(await refund(api, inv["id"], "1.00", as_=who)) == ("FORBIDDEN", None), who
    assert await money_state(api) == state


async def test_50_concurrent_refunds_of_one_invoice_never_give_back_more_than_was_paid(api: Api) -> None:
    gid = await bill(api, OWNER, 2_000)

    async def card_pays_it(session: AsyncSession) -> None:
        row = await invoice_service.locked_invoice(session, None, pk(gid))
        made = await card_payments.record(session, row, 2_000, "tok_visa_4242", "test:all", now=row.issued_at)
        await card_payments.settle(session, made.id, ChargeResult(True, charge_id="ch_sandbox_all"))

    await in_transaction(api, card_pays_it)
    calls = [(REFUND, {"invoiceId": gid, "amount": "1.50", "reason": "Storm", "idempotencyKey": f"s-{i}"}, BILLING)
             for i in range(50)]
    results = await storm(api, calls)
    outcomes = Counter(outcome(p) for p in results)
    # 13 x 1.50 of the 20.00 paid; 0.50 is left, less than each of the others asks.
    assert outcomes == {"ok": 13, "REFUND_EXCEEDS_PAID": 37}, outcomes
    made = next(i for i, p in enumerate(results) if outcome(p) == "ok")
    replayed = await storm(api, [calls[made]] * 50)
    assert {p["creditNote"]["id"] for p in replayed} == {results[made]["creditNote"]["id"]}
    [(refunded,)] = await api.rows(select(m.Invoice.amount_refunded).where(m.Invoice.id == pk(gid)))
    assert refunded == 1_950
    assert len(await api.rows(select(m.CreditNote.id).where(m.CreditNote.invoice_id == pk(gid)))) == 13
    assert await ledger_problems(api) == []
