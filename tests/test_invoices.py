"""Invoices through the GraphQL API: what a Partner reads, pays from its wallet, and what
Revampd billing issues, voids and writes off."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, update

from db import models as m
from schema.base import from_global_id
from tests.conftest import Api

OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"
BLUEBIRD = "owner@bluebird.example"
CEDAR = "owner@cedar.example"
SUPPORT = "support@revampd.example"
BILLING = "billing@revampd.example"

INVOICE = """id number type status total { amount currencyCode } amountPaid { amount } amountDue { amount }
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
    partly = mine["INV-NW-0026"]  # the current subscription invoice, 200.00 paid from the wallet
    assert partly["status"] == "OPEN" and partly["openedAt"] == partly["issuedAt"]
    assert partly["amountDue"]["amount"] == "199.00" and partly["paymentMethod"] == "WALLET"
    assert [(p["amount"]["amount"], p["method"]) for p in partly["payments"]] == [("200.00", "WALLET")]
    assert partly["payments"][0]["createdBy"]["email"] == OWNER
    assert partly["uncollectibleAt"] is None and partly["paymentError"] is None
    draft = mine["INV-NW-0029"]
    assert draft["status"] == "DRAFT" and draft["openedAt"] is None and draft["payments"] == []


async def test_amount_due_is_zero_once_paid_void_or_written_off(ro_api: Api) -> None:
    settled = {
        **await invoices(ro_api, OWNER, "PAID", "VOID"),
        **await invoices(ro_api, CEDAR, "UNCOLLECTIBLE"),
    }
    assert {i["status"] for i in settled.values()} == {"PAID", "VOID", "UNCOLLECTIBLE"}
    assert {i["amountDue"]["amount"] for i in settled.values()} == {"0.00"}
    written_off = settled["INV-CD-0009"]
    assert written_off["uncollectibleAt"] is not None and written_off["amountPaid"]["amount"] == "0.00"
    assert written_off["uncollectibleAt"] > written_off["openedAt"]


async def test_a_declined_card_charge_shows_why_and_when_it_is_tried_again(api: Api) -> None:
    """The billing run records a declined charge on the invoice (written here directly)."""
    gid = (await invoices(api, CEDAR, "OPEN"))["INV-CD-0014"]["id"]
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
