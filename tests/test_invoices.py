"""Invoices through the GraphQL API: what a Partner reads, pays from its wallet, and what
Revampd billing issues, voids and writes off."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Awaitable, Callable, TypeVar

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import models as m
from db.engine import create_engine, read_sessions, write_sessions
from db.states import AccountKind, InvoiceType, PaymentMethod
from schema.base import from_global_id, to_global_id
from services import invoices as invoice_service
from services import ledger
from tests.clock import NOW
from tests.conftest import Api
from tests.demo import ADD_ONS_NOW, DRAFT, SUBSCRIPTION_NOW, THIS_MONTH, WORKSHOP, WRITTEN_OFF, one

T = TypeVar("T")

OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"
BLUEBIRD = "owner@bluebird.example"
CEDAR = "owner@cedar.example"
SUPPORT = "support@revampd.example"
BILLING = "billing@revampd.example"

INVOICE = """id number type status total { amount currencyCode } amountPaid { amount } amountDue { amount } amountRefunded { amount }
  paymentMethod issuedAt openedAt dueAt paidAt voidedAt voidReason uncollectibleAt paymentError
  nextPaymentAttemptAt lineItems { description quantity unitAmount { amount } amount { amount } }
  payments { amount { amount } method createdAt createdBy { id name email } }"""


# ---- helpers ------------------------------------------------------------------------

async def invoices(api: Api, as_: str, *statuses: str) -> dict[str, dict[str, Any]]:
    """The caller's own invoices (of these statuses), by number."""
    q = f"""query($s: [InvoiceStatus!]) {{ viewer {{ partner {{ revampdConnection {{
      invoices(first: 100, filter: {{status: $s}}) {{ edges {{ node {{ {INVOICE} }} }} }} }} }} }} }}"""
    data = await api.gql(q, {"s": list(statuses) or None}, as_=as_)
    edges = data["viewer"]["partner"]["revampdConnection"]["invoices"]["edges"]
    return {e["node"]["number"]: e["node"] for e in edges}


async def invoice(api: Api, gid: str, *, as_: str) -> dict[str, Any] | None:
    q = f"query($id: ID!) {{ node(id: $id) {{ ... on Invoice {{ {INVOICE} }} }} }}"
    node = (await api.gql(q, {"id": gid}, as_=as_))["node"]
    return dict(node) if node is not None else None


def pk(gid: str) -> int:
    parsed = from_global_id(gid)
    assert parsed is not None and parsed[0] == "Invoice"
    return parsed[1]


# ---- reading invoices -----------------------------------------------------------------

async def test_an_invoice_shows_when_it_opened_and_who_paid_it(ro_api: Api) -> None:
    mine = await invoices(ro_api, OWNER)
    partly = one(mine, **SUBSCRIPTION_NOW)  # the current subscription invoice, 200.00 paid from the wallet
    assert partly["status"] == "OPEN" and partly["openedAt"] == partly["issuedAt"]
    assert partly["amountDue"]["amount"] == "199.00" and partly["paymentMethod"] == "WALLET"
    assert [(p["amount"]["amount"], p["method"]) for p in partly["payments"]] == [("200.00", "WALLET")]
    assert partly["payments"][0]["createdBy"]["email"] == OWNER
    assert partly["uncollectibleAt"] is None and partly["paymentError"] is None
    draft = one(mine, **DRAFT)
    assert draft["status"] == "DRAFT" and draft["openedAt"] is None and draft["payments"] == []


async def test_amount_due_is_zero_once_paid_void_or_written_off(ro_api: Api) -> None:
    settled = {
        **await invoices(ro_api, OWNER, "PAID", "VOID"),
        **await invoices(ro_api, CEDAR, "UNCOLLECTIBLE"),
    }
    assert {i["status"] for i in settled.values()} == {"PAID", "VOID", "UNCOLLECTIBLE"}
    assert {i["amountDue"]["amount"] for i in settled.values()} == {"0.00"}
    written_off = one(settled, **WRITTEN_OFF)
    assert written_off["uncollectibleAt"] is not None and written_off["amountPaid"]["amount"] == "0.00"
    assert written_off["uncollectibleAt"] > written_off["openedAt"]


async def test_a_declined_card_charge_shows_why_and_when_it_is_tried_again(api: Api) -> None:
    """The billing run records a declined charge on the invoice (written here directly)."""
    gid = one(await invoices(api, CEDAR, "OPEN"), type="SUBSCRIPTION", line=f"Starter plan, {THIS_MONTH}")["id"]
    async with api.engine.begin() as conn:
        await conn.execute(update(m.Invoice).where(m.Invoice.id == pk(gid)).values(
            payment_error="Your card was declined.", payment_attempts=1,
            next_payment_attempt_at=m.Invoice.issued_at,
        ))
    shown = await invoice(api, gid, as_=CEDAR)
    assert shown is not None
    assert shown["paymentError"] == "Your card was declined."
    assert shown["nextPaymentAttemptAt"] == shown["issuedAt"]


async def test_payments_and_who_made_them_cost_the_same_statements_for_10_or_100_invoices(ro_api: Api) -> None:
    q = """query($n: Int) { viewer { partner { revampdConnection { invoices(first: $n) { edges { node {
      number payments { amount { amount } createdBy { name } } } } } } } } }"""
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    engine = ro_api.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        await ro_api.gql(q, {"n": 10}, as_=OWNER)
        ten = len(statements)
        statements.clear()
        data = await ro_api.gql(q, {"n": 100}, as_=OWNER)
        hundred = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    edges = data["viewer"]["partner"]["revampdConnection"]["invoices"]["edges"]
    payers = [p["createdBy"] for e in edges for p in e["node"]["payments"] if p["createdBy"]]
    assert len(edges) > 10 and payers and {p["name"] for p in payers} == {"Maya Patel"}
    assert ten == hundred, f"{ten} statements for 10 invoices, {hundred} for 100"


# ---- paying from the wallet -----------------------------------------------------------

PAY = f"""mutation($input: PayInvoiceInput!) {{ payInvoice(input: $input) {{
  invoice {{ {INVOICE} }}
  payment {{ amount {{ amount currencyCode }} method createdAt createdBy {{ email }} }}
  wallet {{ balance {{ amount }} entries(first: 1) {{ edges {{ node {{ amount {{ amount }} kind memo
    source {{ __typename ... on Invoice {{ id }} }} }} }} }} }}
  userErrors {{ field code message }} clientMutationId }} }}"""
AMOUNT = ["input", "amount"]
INVOICE_ID = ["input", "invoiceId"]
KEY = ["input", "idempotencyKey"]


async def pay(api: Api, invoice_id: str, amount: str | None = None, *, key: str = "pay-1",
              as_: str = OWNER, **extra: Any) -> dict[str, Any]:
    input = {"invoiceId": invoice_id, "idempotencyKey": key, **extra}
    if amount is not None:
        input["amount"] = amount
    return dict((await api.gql(PAY, {"input": input}, as_=as_))["payInvoice"])


def refusal(payload: dict[str, Any]) -> tuple[str, list[str] | None]:
    """The one user error of a refused money mutation, which gives back no objects."""
    assert len(payload["userErrors"]) == 1, payload
    assert all(payload[k] is None for k in ("invoice", "payment", "wallet") if k in payload), payload
    return payload["userErrors"][0]["code"], payload["userErrors"][0]["field"]


async def balance(api: Api, as_: str) -> Decimal:
    q = "{ viewer { partner { revampdConnection { wallet { balance { amount } } } } } }"
    data = await api.gql(q, as_=as_)
    return Decimal(data["viewer"]["partner"]["revampdConnection"]["wallet"]["balance"]["amount"])


async def in_transaction(api: Api, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run service code in its own transaction on the app's database, as a worker would."""
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


async def bill(api: Api, email: str, total: int, description: str = "Onboarding workshop") -> str:
    """A new OPEN one-time invoice of `total` minor units for `email`'s connection."""
    cid = await api.connection_id(email)

    async def work(session: AsyncSession) -> int:
        connection = await invoice_service.locked_connection(session, cid)
        made = await invoice_service.create(
            session, connection, type=InvoiceType.ONE_TIME, lines=[invoice_service.Line(description, 1, total)],
            due_at=None,
        )
        return made.id

    return to_global_id("Invoice", await in_transaction(api, work))


async def ledger_problems(api: Api) -> list[str]:
    engine = create_engine(api.settings.database_url)
    try:
        async with read_sessions(engine)() as session:
            return await ledger.verify(session)
    finally:
        await engine.dispose()


async def money_state(api: Api) -> list[Any]:
    """Everything a money mutation could change: balances, transfers, invoices, payments, keys."""
    return [
        await api.rows(select(m.LedgerAccount.code, m.LedgerAccount.balance).order_by(m.LedgerAccount.id)),
        await api.rows(select(func.count()).select_from(m.LedgerTransfer)),
        await api.rows(select(m.Invoice.id, m.Invoice.status, m.Invoice.amount_paid, m.Invoice.payment_method)
                       .order_by(m.Invoice.id)),
        await api.rows(select(func.count()).select_from(m.InvoicePayment)),
        await api.rows(select(m.IdempotencyKey.key).order_by(m.IdempotencyKey.id)),
    ]


async def test_the_owner_pays_part_of_an_open_invoice_from_the_wallet(api: Api) -> None:
    before = await balance(api, OWNER)
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)  # 31.00 due, nothing paid yet
    paid = await pay(api, add_ons["id"], "10.00", clientMutationId="c-1")
    assert paid["userErrors"] == [] and paid["clientMutationId"] == "c-1"
    inv = paid["invoice"]
    assert (inv["id"], inv["status"], inv["paymentMethod"]) == (add_ons["id"], "OPEN", "WALLET")
    assert (inv["amountPaid"]["amount"], inv["amountDue"]["amount"]) == ("10.00", "21.00")
    assert paid["payment"]["amount"] == {"amount": "10.00", "currencyCode": "USD"}
    assert (paid["payment"]["method"], paid["payment"]["createdBy"]["email"]) == ("WALLET", OWNER)
    assert [(p["amount"]["amount"], p["method"]) for p in inv["payments"]] == [("10.00", "WALLET")]
    assert Decimal(paid["wallet"]["balance"]["amount"]) == before - Decimal("10.00") == await balance(api, OWNER)
    [line] = [e["node"] for e in paid["wallet"]["entries"]["edges"]]
    assert (line["amount"]["amount"], line["kind"]) == ("-10.00", "INVOICE_PAYMENT")
    assert line["source"] == {"__typename": "Invoice", "id": add_ons["id"]} and add_ons["number"] in line["memo"]
    assert await ledger_problems(api) == []


async def test_without_an_amount_the_wallet_pays_all_that_is_due(api: Api) -> None:
    before = await balance(api, OWNER)
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)
    paid = await pay(api, add_ons["id"])
    inv = paid["invoice"]
    assert paid["userErrors"] == [] and inv["status"] == "PAID" and inv["paidAt"] is not None
    assert (inv["amountPaid"]["amount"], inv["amountDue"]["amount"]) == ("31.00", "0.00")
    assert await balance(api, OWNER) == before - Decimal("31.00")
    assert await ledger_problems(api) == []


async def test_without_an_amount_the_wallet_pays_what_it_holds_of_a_larger_invoice(api: Api) -> None:
    before = await balance(api, OWNER)
    big = await bill(api, OWNER, int(before * 100) + 50_000)
    paid = await pay(api, big)
    assert paid["userErrors"] == [] and paid["invoice"]["status"] == "OPEN"
    assert Decimal(paid["payment"]["amount"]["amount"]) == before
    assert paid["wallet"]["balance"]["amount"] == "0.00" and paid["invoice"]["amountDue"]["amount"] == "500.00"
    assert await ledger_problems(api) == []


async def test_an_invoice_paid_by_card_and_then_from_the_wallet_shows_mixed(api: Api) -> None:
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)

    async def charge_card(session: AsyncSession) -> None:
        row = await invoice_service.locked_invoice(session, None, pk(add_ons["id"]))
        card = await ledger.system_account(session, AccountKind.CARD_PROCESSOR, "USD", row.connection_id)
        await invoice_service.pay(session, row, source=card, amount=1_000, method=PaymentMethod.CARD,
                                  key="card:test", by=None)

    await in_transaction(api, charge_card)
    paid = await pay(api, add_ons["id"])
    inv = paid["invoice"]
    assert paid["userErrors"] == [] and inv["status"] == "PAID" and inv["paymentMethod"] == "MIXED"
    assert [(p["amount"]["amount"], p["method"], p["createdBy"]) for p in inv["payments"]] == [
        ("10.00", "CARD", None), ("21.00", "WALLET", {"id": to_global_id("User", api.ids[OWNER]),
                                                     "name": "Maya Patel", "email": OWNER})]
    assert await ledger_problems(api) == []


# ---- refusals: each its own code, and nothing moves -------------------------------------

async def test_paying_more_than_is_due_is_refused(api: Api) -> None:
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)
    state = await money_state(api)
    payload = await pay(api, add_ons["id"], "31.01")
    assert refusal(payload) == ("OVERPAYMENT", AMOUNT)
    assert "31.00 USD is due" in payload["userErrors"][0]["message"]
    assert await money_state(api) == state


async def test_only_an_open_invoice_can_be_paid(api: Api) -> None:
    northwind = await invoices(api, OWNER, "PAID", "VOID", "DRAFT")
    cedar = await invoices(api, CEDAR, "UNCOLLECTIBLE")
    cases = [(next(i for i in northwind.values() if i["status"] == s), OWNER) for s in ("PAID", "VOID", "DRAFT")]
    cases.append((one(cedar, **WRITTEN_OFF), CEDAR))
    state = await money_state(api)
    for inv, who in cases:
        payload = await pay(api, inv["id"], "1.00", as_=who)
        assert refusal(payload) == ("INVOICE_NOT_OPEN", INVOICE_ID), inv["status"]
        assert inv["number"] in payload["userErrors"][0]["message"]
    assert await money_state(api) == state


@pytest.mark.parametrize("amount", ["0", "0.00", "-5.00", "abc", "", " ", "1.234", "1e3", "NaN", "Infinity",
                                    "99999999999999", "\u0661\u0662", "1_0", "1.", ".5", "9" * 100_000])
async def test_an_amount_must_be_a_positive_decimal_in_the_currency(api: Api, amount: str) -> None:
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)
    state = await money_state(api)
    payload = await pay(api, add_ons["id"], amount)
    assert refusal(payload) == ("INVALID_AMOUNT", AMOUNT)
    assert "amount" in payload["userErrors"][0]["message"]
    assert await money_state(api) == state


async def test_an_empty_wallet_pays_nothing(api: Api) -> None:
    everything = await bill(api, OWNER, int(await balance(api, OWNER) * 100))
    assert (await pay(api, everything, key="drain"))["invoice"]["status"] == "PAID"
    assert await balance(api, OWNER) == 0
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)
    state = await money_state(api)
    for amount in (None, "5.00"):
        payload = await pay(api, add_ons["id"], amount)
        assert refusal(payload) == ("WALLET_EMPTY", AMOUNT)
    assert await money_state(api) == state


async def test_paying_more_than_the_wallet_holds_is_refused(api: Api) -> None:
    held = await balance(api, OWNER)
    big = await bill(api, OWNER, int(held * 100) + 50_000)
    state = await money_state(api)
    payload = await pay(api, big, f"{held + Decimal('0.01')}")
    assert refusal(payload) == ("INSUFFICIENT_FUNDS", AMOUNT)
    assert "0.01 USD more" in payload["userErrors"][0]["message"]
    assert await money_state(api) == state


async def test_only_the_partner_admin_pays_its_invoices(api: Api) -> None:
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)
    state = await money_state(api)
    for who in (MEMBER, SUPPORT, BILLING):
        assert refusal(await pay(api, add_ons["id"], "1.00", as_=who)) == ("FORBIDDEN", None), who
    assert await money_state(api) == state


async def test_another_partners_invoice_reads_like_a_missing_one(api: Api) -> None:
    theirs = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)["id"]
    state = await money_state(api)
    foreign = await pay(api, theirs, "1.00", as_=BLUEBIRD)
    missing = await pay(api, to_global_id("Invoice", 10**9), "1.00", as_=BLUEBIRD, key="pay-2")
    assert refusal(foreign) == ("NOT_FOUND", INVOICE_ID)
    assert foreign["userErrors"] == missing["userErrors"]
    for wrong in ("nonsense", to_global_id("Ticket", 1)):
        assert refusal(await pay(api, wrong, "1.00", as_=BLUEBIRD, key="pay-3")) == ("NOT_FOUND", INVOICE_ID)
    assert await money_state(api) == state


# ---- idempotency -------------------------------------------------------------------------

async def test_a_retried_payment_answers_with_the_first_and_moves_nothing(api: Api) -> None:
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)
    first = await pay(api, add_ons["id"], "10.00", key="k-1")
    state = await money_state(api)
    retry = await pay(api, add_ons["id"], "10.00", key="k-1", clientMutationId="again")
    assert retry["userErrors"] == [] and retry["clientMutationId"] == "again"
    assert {k: retry[k] for k in ("invoice", "payment", "wallet")} == {k: first[k] for k in ("invoice", "payment", "wallet")}
    assert await money_state(api) == state
    # Once the rest is paid, the retry still answers with its own payment, and the invoice as it now is.
    await pay(api, add_ons["id"], key="k-2")
    late = await pay(api, add_ons["id"], "10.00", key="k-1")
    assert late["userErrors"] == [] and late["payment"] == first["payment"]
    assert late["invoice"]["status"] == "PAID" and late["invoice"]["amountPaid"]["amount"] == "31.00"
    assert await ledger_problems(api) == []


async def test_a_retry_of_a_payment_that_settled_the_invoice_is_not_refused(api: Api) -> None:
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)
    first = await pay(api, add_ons["id"], key="all")
    retry = await pay(api, add_ons["id"], key="all")
    assert retry["userErrors"] == [] and retry["payment"] == first["payment"]
    assert retry["invoice"]["status"] == "PAID"


async def test_the_same_key_for_another_payment_is_refused_and_moves_nothing(api: Api) -> None:
    mine = await invoices(api, OWNER, "OPEN")
    await pay(api, one(mine, **ADD_ONS_NOW)["id"], "10.00", key="k-1")
    state = await money_state(api)
    for invoice_id, amount in ((one(mine, **ADD_ONS_NOW)["id"], "11.00"), (one(mine, **ADD_ONS_NOW)["id"], None),
                               (one(mine, **SUBSCRIPTION_NOW)["id"], "10.00")):
        payload = await pay(api, invoice_id, amount, key="k-1")
        assert refusal(payload) == ("IDEMPOTENCY_KEY_REUSED", KEY)
    assert await money_state(api) == state


async def test_a_key_used_on_another_mutation_is_refused(api: Api) -> None:
    submit = """mutation { submitTicket(input: {title: "t", description: "d", priority: LOW, idempotencyKey: "k-1"}) {
      userErrors { code } } }"""
    assert (await api.gql(submit, as_=OWNER))["submitTicket"]["userErrors"] == []
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)
    state = await money_state(api)
    assert refusal(await pay(api, add_ons["id"], "1.00", key="k-1")) == ("IDEMPOTENCY_KEY_REUSED", KEY)
    assert await money_state(api) == state


@pytest.mark.parametrize("key", ["", "   ", "x" * 201, "line\nbreak", "\u0085"])
async def test_a_payment_needs_a_printable_key_of_1_to_200_characters(api: Api, key: str) -> None:
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)
    state = await money_state(api)
    assert refusal(await pay(api, add_ons["id"], "1.00", key=key)) == ("INVALID_IDEMPOTENCY_KEY", KEY)
    assert await money_state(api) == state


async def test_a_payment_without_a_key_is_not_run(api: Api) -> None:
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)
    state = await money_state(api)
    errors = await api.errors(PAY, {"input": {"invoiceId": add_ons["id"], "amount": "1.00"}}, as_=OWNER)
    assert "idempotencyKey" in errors[0]["message"]
    assert await money_state(api) == state


async def test_a_refused_payment_leaves_its_key_unused(api: Api) -> None:
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)
    assert refusal(await pay(api, add_ons["id"], "99.00", key="k-1"))[0] == "OVERPAYMENT"
    fixed = await pay(api, add_ons["id"], "9.00", key="k-1")
    assert fixed["userErrors"] == [] and fixed["invoice"]["amountPaid"]["amount"] == "9.00"


# ---- voiding and writing off ---------------------------------------------------------------

VOID = f"""mutation($input: VoidInvoiceInput!) {{ voidInvoice(input: $input) {{
  invoice {{ {INVOICE} }} userErrors {{ field code message }} clientMutationId
  creditNote {{ number kind reason total {{ amount }} amountOffDue {{ amount }}
    refunds {{ amount {{ amount }} method status }} }} }} }}"""
UNCOLLECTIBLE = f"""mutation($input: MarkInvoiceUncollectibleInput!) {{ markInvoiceUncollectible(input: $input) {{
  invoice {{ {INVOICE} }} userErrors {{ field code message }} clientMutationId }} }}"""


async def void(api: Api, invoice_id: str, reason: str = "Issued in error", *, as_: str = BILLING,
               **extra: Any) -> dict[str, Any]:
    input = {"invoiceId": invoice_id, "reason": reason, **extra}
    return dict((await api.gql(VOID, {"input": input}, as_=as_))["voidInvoice"])


async def write_off(api: Api, invoice_id: str, *, as_: str = BILLING, **extra: Any) -> dict[str, Any]:
    input = {"invoiceId": invoice_id, **extra}
    return dict((await api.gql(UNCOLLECTIBLE, {"input": input}, as_=as_))["markInvoiceUncollectible"])


async def newest_wallet_line(api: Api, as_: str) -> dict[str, Any]:
    q = """{ viewer { partner { revampdConnection { wallet { entries(first: 1) { edges { node {
      id amount { amount } kind balanceAfter { amount } memo source { __typename ... on Invoice { id number } } } } } } } } } }"""
    data = await api.gql(q, as_=as_)
    return dict(data["viewer"]["partner"]["revampdConnection"]["wallet"]["entries"]["edges"][0]["node"])


async def test_voiding_an_invoice_gives_the_wallet_back_what_it_paid(api: Api) -> None:
    workshop = one(await invoices(api, OWNER, "OPEN"), **WORKSHOP)  # 900.00, 400.00 of it from the wallet
    assert (workshop["amountPaid"]["amount"], workshop["paymentMethod"]) == ("400.00", "WALLET")
    before = await balance(api, OWNER)
    voided = await void(api, workshop["id"], "  Workshop canceled by Revampd  ", clientMutationId="v-1")
    assert voided["userErrors"] == [] and voided["clientMutationId"] == "v-1"
    inv = voided["invoice"]
    assert (inv["status"], inv["voidReason"]) == ("VOID", "Workshop canceled by Revampd")
    # What was paid stays on record; the credit note gave it back.
    assert inv["voidedAt"] is not None and (inv["amountPaid"]["amount"], inv["amountDue"]["amount"]) == ("400.00", "0.00")
    assert inv["amountRefunded"]["amount"] == "400.00"
    note = voided["creditNote"]
    assert (note["kind"], note["total"]["amount"], note["amountOffDue"]["amount"]) == ("VOID", "900.00", "500.00")
    assert note["reason"] == "Workshop canceled by Revampd" and note["number"].startswith(workshop["number"].split("-")[0])
    assert [(r["amount"]["amount"], r["method"], r["status"]) for r in note["refunds"]] == [("400.00", "WALLET", "SUCCEEDED")]
    assert await balance(api, OWNER) == before + Decimal("400.00")
    line = await newest_wallet_line(api, OWNER)
    assert (line["kind"], line["amount"]["amount"]) == ("REFUND", "400.00")
    assert Decimal(line["balanceAfter"]["amount"]) == before + Decimal("400.00")
    assert line["source"] == {"__typename": "Invoice", "id": workshop["id"], "number": workshop["number"]}
    assert await invoice(api, workshop["id"], as_=OWNER) == inv
    assert await ledger_problems(api) == []


async def test_voiding_refunds_a_card_payment_whose_charge_is_unknown_to_the_wallet(api: Api) -> None:
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)

    async def charge_card(session: AsyncSession) -> None:
        row = await invoice_service.locked_invoice(session, None, pk(add_ons["id"]))
        card = await ledger.system_account(session, AccountKind.CARD_PROCESSOR, "USD", row.connection_id)
        await invoice_service.pay(session, row, source=card, amount=1_000, method=PaymentMethod.CARD,
                                  key="card:test", by=None)

    await in_transaction(api, charge_card)
    await pay(api, add_ons["id"], "5.00")
    before = await balance(api, OWNER)
    voided = await void(api, add_ons["id"])
    inv = voided["invoice"]
    assert (inv["status"], inv["amountPaid"]["amount"], inv["amountDue"]["amount"]) == ("VOID", "15.00", "0.00")
    assert inv["amountRefunded"]["amount"] == "15.00"
    # Newest payment first; no charge is known for the card payment (no processor made it), so the wallet takes it.
    assert [(r["amount"]["amount"], r["method"]) for r in voided["creditNote"]["refunds"]] == [
        ("5.00", "WALLET"), ("10.00", "WALLET")]
    assert await balance(api, OWNER) == before + Decimal("15.00")
    assert await ledger_problems(api) == []


async def test_voiding_an_unpaid_invoice_moves_no_wallet_money(api: Api) -> None:
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)
    before, line = await balance(api, OWNER), await newest_wallet_line(api, OWNER)
    inv = (await void(api, add_ons["id"]))["invoice"]
    assert (inv["status"], inv["amountDue"]["amount"]) == ("VOID", "0.00")
    assert await balance(api, OWNER) == before and await newest_wallet_line(api, OWNER) == line
    assert refusal(await pay(api, add_ons["id"], "1.00"))[0] == "INVOICE_NOT_OPEN"
    assert await ledger_problems(api) == []


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
async def test_a_void_needs_a_reason_of_1_to_500_characters(api: Api, reason: str) -> None:
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)
    state = await money_state(api)
    assert refusal(await void(api, add_ons["id"], reason)) == ("INVALID_REASON", ["input", "reason"])
    assert await money_state(api) == state


async def test_writing_off_an_invoice_leaves_what_was_paid_and_owes_nothing_more(api: Api) -> None:
    current = one(await invoices(api, OWNER, "OPEN"), **SUBSCRIPTION_NOW)  # 399.00, 200.00 paid
    before = await balance(api, OWNER)
    written = await write_off(api, current["id"], clientMutationId="w-1")
    assert written["userErrors"] == [] and written["clientMutationId"] == "w-1"
    inv = written["invoice"]
    assert (inv["status"], inv["amountPaid"]["amount"], inv["amountDue"]["amount"]) == ("UNCOLLECTIBLE", "200.00", "0.00")
    assert inv["uncollectibleAt"] is not None and inv["voidedAt"] is None
    assert await balance(api, OWNER) == before
    assert refusal(await pay(api, current["id"], "1.00"))[0] == "INVOICE_NOT_OPEN"
    assert await invoice(api, current["id"], as_=OWNER) == inv
    assert await ledger_problems(api) == []


async def test_only_an_open_invoice_can_be_voided_or_written_off(api: Api) -> None:
    settled = await invoices(api, OWNER, "PAID", "VOID", "DRAFT")
    cases = [next(i for i in settled.values() if i["status"] == s) for s in ("PAID", "VOID", "DRAFT")]
    cases.append(one(await invoices(api, CEDAR), **WRITTEN_OFF))
    state = await money_state(api)
    for inv in cases:
        for payload in (await void(api, inv["id"]), await write_off(api, inv["id"])):
            assert refusal(payload) == ("INVOICE_NOT_OPEN", INVOICE_ID), inv["status"]
            assert inv["number"] in payload["userErrors"][0]["message"]
    assert await money_state(api) == state


async def test_only_billing_admins_void_or_write_off(api: Api) -> None:
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)
    state = await money_state(api)
    for who in (OWNER, MEMBER, SUPPORT):
        assert refusal(await void(api, add_ons["id"], as_=who)) == ("FORBIDDEN", None), who
        assert refusal(await write_off(api, add_ons["id"], as_=who)) == ("FORBIDDEN", None), who
    for missing in (to_global_id("Invoice", 10**9), "nonsense"):
        assert refusal(await void(api, missing)) == ("NOT_FOUND", INVOICE_ID)
        assert refusal(await write_off(api, missing)) == ("NOT_FOUND", INVOICE_ID)
    assert await money_state(api) == state


# ---- issuing one-time invoices ------------------------------------------------------------

ISSUE = f"""mutation($input: IssueInvoiceInput!) {{ issueInvoice(input: $input) {{
  invoice {{ {INVOICE} }} userErrors {{ field code message }} clientMutationId }} }}"""
LINES = [
    {"description": "Custom onboarding session", "quantity": 2, "unitAmount": "150.00"},
    {"description": "Data migration", "quantity": 1, "unitAmount": "99.99"},
]


def in_days(days: float) -> str:
    return (NOW + timedelta(days=days)).isoformat()


async def issue(api: Api, email: str = OWNER, lines: list[dict[str, Any]] | None = None, *, key: str = "issue-1",
                due_at: str | None = None, as_: str = BILLING, **extra: Any) -> dict[str, Any]:
    """issueInvoice for `email`'s connection."""
    input = {"connectionId": to_global_id("RevampdConnection", await api.connection_id(email)),
             "lineItems": LINES if lines is None else lines, "dueAt": due_at or in_days(14),
             "idempotencyKey": key, **extra}
    return dict((await api.gql(ISSUE, {"input": input}, as_=as_))["issueInvoice"])


async def next_number(api: Api, email: str) -> str:
    [(prefix, n)] = await api.rows(select(m.Connection.invoice_prefix, m.Connection.next_invoice_number)
                                   .where(m.Connection.id == await api.connection_id(email)))
    return f"{prefix}-{n:04d}"


async def test_billing_issues_a_one_time_invoice_that_is_open_at_once_with_the_next_number(api: Api) -> None:
    number, due = await next_number(api, OWNER), in_days(14)
    issued = await issue(api, due_at=due, clientMutationId="i-1")
    assert issued["userErrors"] == [] and issued["clientMutationId"] == "i-1"
    inv = issued["invoice"]
    assert (inv["number"], inv["type"], inv["status"]) == (number, "ONE_TIME", "OPEN")
    assert inv["total"] == {"amount": "399.99", "currencyCode": "USD"}
    assert (inv["amountDue"]["amount"], inv["amountPaid"]["amount"]) == ("399.99", "0.00")
    assert inv["openedAt"] == inv["issuedAt"] and datetime.fromisoformat(inv["dueAt"]) == datetime.fromisoformat(due)
    assert inv["lineItems"] == [
        {"description": "Custom onboarding session", "quantity": 2, "unitAmount": {"amount": "150.00"},
         "amount": {"amount": "300.00"}},
        {"description": "Data migration", "quantity": 1, "unitAmount": {"amount": "99.99"},
         "amount": {"amount": "99.99"}},
    ]
    # The Partner sees it among its open invoices and can pay it.
    assert (await invoices(api, OWNER, "OPEN"))[number] == inv
    paid = await pay(api, inv["id"])
    assert paid["userErrors"] == [] and paid["invoice"]["status"] == "PAID"
    assert await next_number(api, OWNER) > number
    assert await ledger_problems(api) == []


async def test_every_bad_line_is_named_at_once_and_nothing_is_issued(api: Api) -> None:
    number, state = await next_number(api, OWNER), await money_state(api)
    lines = [
        {"description": "Fine", "quantity": 1, "unitAmount": "10.00"},
        {"description": "   ", "quantity": 1, "unitAmount": "10.00"},
        {"description": "Too precise", "quantity": 1, "unitAmount": "12.345"},
        {"description": "None of it", "quantity": 0, "unitAmount": "10.00"},
        {"description": "Far too many", "quantity": 10_001, "unitAmount": "-1"},
        {"description": "x" * 301, "quantity": 1, "unitAmount": "abc"},
    ]
    payload = await issue(api, lines=lines, due_at=in_days(-1))
    assert payload["invoice"] is None
    line = ["input", "lineItems"]
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("INVALID_DESCRIPTION", [*line, "1", "description"]),
        ("INVALID_AMOUNT", [*line, "2", "unitAmount"]),
        ("INVALID_QUANTITY", [*line, "3", "quantity"]),
        ("INVALID_QUANTITY", [*line, "4", "quantity"]),
        ("INVALID_AMOUNT", [*line, "4", "unitAmount"]),
        ("INVALID_DESCRIPTION", [*line, "5", "description"]),
        ("INVALID_AMOUNT", [*line, "5", "unitAmount"]),
        ("INVALID_DUE_AT", ["input", "dueAt"]),
    ]
    assert all(e["message"] for e in payload["userErrors"])
    assert await next_number(api, OWNER) == number and await money_state(api) == state


@pytest.mark.parametrize(("line", "code", "field"), [
    ({"description": "", "quantity": 1, "unitAmount": "1.00"}, "INVALID_DESCRIPTION", "description"),
    ({"description": "d", "quantity": -1, "unitAmount": "1.00"}, "INVALID_QUANTITY", "quantity"),
    ({"description": "d", "quantity": 1, "unitAmount": "0"}, "INVALID_AMOUNT", "unitAmount"),
    ({"description": "d", "quantity": 1, "unitAmount": "0.001"}, "INVALID_AMOUNT", "unitAmount"),
    ({"description": "d", "quantity": 1, "unitAmount": "1e2"}, "INVALID_AMOUNT", "unitAmount"),
    ({"description": "d", "quantity": 1, "unitAmount": ""}, "INVALID_AMOUNT", "unitAmount"),
])
async def test_each_line_needs_a_description_a_quantity_and_a_positive_unit_amount(
    api: Api, line: dict[str, Any], code: str, field: str
) -> None:
    payload = await issue(api, lines=[LINES[0], line])
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, ["input", "lineItems", "1", field])]
    assert payload["invoice"] is None


async def test_lines_may_be_as_long_and_as_many_as_the_limits_allow(api: Api) -> None:
    lines = [{"description": "d" * 300, "quantity": 10_000, "unitAmount": "0.01"}] * 100
    inv = (await issue(api, lines=lines))["invoice"]
    assert inv["total"]["amount"] == "10000.00" and len(inv["lineItems"]) == 100


async def test_an_invoice_has_1_to_100_lines_and_a_sensible_total(api: Api) -> None:
    number = await next_number(api, OWNER)
    for lines in ([], [LINES[1]] * 101, [{"description": "d", "quantity": 10_000, "unitAmount": "9999999999.99"}]):
        payload = await issue(api, lines=lines)
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [("INVALID_LINE_ITEMS", ["input", "lineItems"])]
    assert await next_number(api, OWNER) == number


async def test_a_due_date_without_a_time_zone_is_utc(api: Api) -> None:
    due = (NOW + timedelta(days=3)).replace(tzinfo=None, microsecond=0)
    inv = (await issue(api, due_at=due.isoformat()))["invoice"]
    assert datetime.fromisoformat(inv["dueAt"]) == due.replace(tzinfo=timezone.utc)


async def test_only_billing_admins_issue_invoices(api: Api) -> None:
    number, state = await next_number(api, OWNER), await money_state(api)
    for who in (OWNER, MEMBER, SUPPORT):
        assert refusal(await issue(api, as_=who)) == ("FORBIDDEN", None), who
    bad: dict[str, Any] = {"connectionId": to_global_id("RevampdConnection", 10**9)}
    assert refusal(await issue(api, **bad)) == ("NOT_FOUND", ["input", "connectionId"])
    assert await next_number(api, OWNER) == number and await money_state(api) == state


async def test_a_retried_issue_answers_with_the_first_invoice_and_takes_no_number(api: Api) -> None:
    due = in_days(30)
    first = (await issue(api, key="k-1", due_at=due))["invoice"]
    state = await money_state(api)
    retry = await issue(api, key="k-1", due_at=due)
    assert retry["userErrors"] == [] and retry["invoice"] == first
    assert await money_state(api) == state
    for other in ({"lines": LINES[:1], "due_at": due}, {"due_at": in_days(31)}, {"email": CEDAR, "due_at": due}):
        assert refusal(await issue(api, key="k-1", **other)) == ("IDEMPOTENCY_KEY_REUSED", KEY)
    assert await money_state(api) == state
    nxt = (await issue(api, key="k-2"))["invoice"]
    assert int(nxt["number"].rsplit("-", 1)[1]) == int(first["number"].rsplit("-", 1)[1]) + 1
