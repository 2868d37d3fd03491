"""What a normalized client cache (Apollo's) needs: an ID on every object that changes,
and mutation payloads that return every object they changed, under those IDs.

The dashboard is read first, then a mutation's payload alone must carry the
change to the objects the dashboard cached, under the same IDs.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from graphql import GraphQLObjectType
from sqlalchemy import select

from db import models as m
from resolvers.engine import graphql_schema
from resolvers.schema import build_schema
from schema.base import to_global_id
from server.settings import Settings
from tests.clock import NOW
from tests.conftest import Api

OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"
BLUEBIRD = "owner@bluebird.example"
CEDAR = "owner@cedar.example"
BILLING = "billing@revampd.example"

DASHBOARD = """{ viewer { id partner { revampdConnection { id
  subscription { id pendingChange { kind } }
  pendingChange { kind }
  usage { id phoneNumbers }
  wallet { id balance { amount } }
  payoutPreference { id mode }
  projectedNextInvoice { id total { amount } }
  addOns { id }
  tickets(first: 1) { totalCount }
  invoices(first: 1) { totalCount }
  bankAccounts { id }
} } } }"""

CACHED = ["subscription", "usage", "wallet", "payoutPreference", "projectedNextInvoice"]

# Object types with no ID: values, which a client keeps inside the object that holds them
# (Apollo: a type policy with `merge: true`); each is described as such in the schema.
VALUES = {
    "Money", "PageInfo", "PlanLimits", "PaymentCard", "PendingPlanChange", "PlanChangePreview",
    "PlanChangeBlocker", "PlanComparison", "PlanComparisonRow", "InvoiceLineItem", "InvoicePayment",
    "WalletFunding", "UserError", "NotificationSetting", "Refund", "CreditNoteLine",
    "ClawbackRecovery",
}


async def dashboard(api: Api, as_: str) -> dict[str, Any]:
    return dict((await api.gql(DASHBOARD, as_=as_))["viewer"]["partner"]["revampdConnection"])


def test_every_object_type_has_an_id_or_is_a_value() -> None:
    schema = graphql_schema(build_schema(Settings()))
    without = {
        name for name, t in schema.type_map.items()
        if isinstance(t, GraphQLObjectType) and not name.startswith("__") and "id" not in t.fields
        and not name.endswith(("Connection", "Edge", "Payload", "Event")) and name not in ("Query", "Mutation", "Subscription")
    }
    assert without == VALUES
    for name in VALUES:
        assert "no id" in (schema.type_map[name].description or ""), f"{name} is described as a value (no id)"


async def test_objects_a_client_caches_have_stable_ids_and_refetch_by_node(ro_api: Api) -> None:
    first, again = await dashboard(ro_api, OWNER), await dashboard(ro_api, OWNER)
    ids = [first[key]["id"] for key in CACHED]
    assert ids == [again[key]["id"] for key in CACHED] and len(set(ids)) == len(ids)
    assert first == again

    query = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }"
    for viewer in (OWNER, MEMBER, BILLING):
        nodes = (await ro_api.gql(query, {"ids": ids}, as_=viewer))["nodes"]
        assert [(n["__typename"], n["id"]) for n in nodes] == [
            ("PlanSubscription", ids[0]), ("Usage", ids[1]), ("Wallet", ids[2]), ("PayoutPreference", ids[3]),
            ("ProjectedInvoice", ids[4]),
        ]
    assert (await ro_api.gql(query, {"ids": ids}, as_=BLUEBIRD))["nodes"] == [None] * len(ids)

    refetched = await ro_api.gql(
        "query($id: ID!) { node(id: $id) { ... on Wallet { balance { amount } } } }", {"id": first["wallet"]["id"]},
        as_=OWNER,
    )
    assert refetched["node"]["balance"] == first["wallet"]["balance"]

    viewers = {u: (await ro_api.gql("{ viewer { id } }", as_=u))["viewer"]["id"] for u in (OWNER, MEMBER)}
    assert viewers[OWNER] != viewers[MEMBER]
    assert viewers[OWNER] == (await ro_api.gql("{ viewer { id } }", as_=OWNER))["viewer"]["id"]


async def mutate(api: Api, name: str, input: dict[str, Any], selection: str, *, as_: str) -> dict[str, Any]:
    doc = f"""mutation($input: {name[0].upper()}{name[1:]}Input!) {{ {name}(input: $input) {{
      {selection} userErrors {{ code message }} }} }}"""
    payload = dict((await api.gql(doc, {"input": input}, as_=as_))[name])
    assert payload["userErrors"] == [], payload
    return payload


async def test_upgrade_returns_the_connection_and_subscription_with_the_pending_change(api: Api) -> None:
    before = await dashboard(api, OWNER)
    assert before["pendingChange"] is None and before["subscription"]["pendingChange"] is None
    ((enterprise, price),) = await api.rows(select(m.Plan.id, m.Plan.monthly_price).where(m.Plan.code == "ENTERPRISE"))

    payload = await mutate(api, "upgradePlan", {"planId": to_global_id("Plan", enterprise)}, """
      subscription { id pendingChange { kind } }
      revampdConnection { id pendingChange { kind } subscription { id pendingChange { kind } }
        projectedNextInvoice { id plan { amount } } }""", as_=OWNER)
    conn = payload["revampdConnection"]
    assert conn["id"] == before["id"]
    assert payload["subscription"] == conn["subscription"] == {
        "id": before["subscription"]["id"], "pendingChange": {"kind": "UPGRADE"}
    }
    assert conn["pendingChange"] == {"kind": "UPGRADE"}
    assert conn["projectedNextInvoice"] == {
        "id": before["projectedNextInvoice"]["id"], "plan": {"amount": f"{Decimal(price).scaleb(-2):.2f}"}
    }

    withdrawn = await mutate(api, "withdrawPlanChange", {}, "revampdConnection { pendingChange { kind } }", as_=OWNER)
    assert withdrawn["revampdConnection"] == {"pendingChange": None}


async def test_add_on_and_ticket_payloads_return_the_connections_changed_lists(api: Api) -> None:
    before = await dashboard(api, CEDAR)
    ((product,),) = await api.rows(select(m.AddOnProduct.id).where(m.AddOnProduct.code == "LOCAL_NUMBER"))
    added = await mutate(api, "addAddOn", {"productId": to_global_id("AddOnProduct", product), "quantity": 3},
                         "addOn { id } revampdConnection { id addOns { id } usage { id phoneNumbers } }", as_=CEDAR)
    conn = added["revampdConnection"]
    assert conn["id"] == before["id"] and added["addOn"]["id"] in [a["id"] for a in conn["addOns"]]
    assert [a["id"] for a in conn["addOns"] if a["id"] != added["addOn"]["id"]] == [a["id"] for a in before["addOns"]]
    assert conn["usage"] == {"id": before["usage"]["id"], "phoneNumbers": before["usage"]["phoneNumbers"] + 3}

    ticket = {"title": "Numbers", "description": "Which area codes?", "priority": "LOW"}
    submitted = await mutate(api, "submitTicket", ticket,
                             "ticket { id } revampdConnection { tickets(first: 1) { totalCount nodes { id } } }",
                             as_=CEDAR)
    tickets = submitted["revampdConnection"]["tickets"]
    assert tickets == {"totalCount": before["tickets"]["totalCount"] + 1, "nodes": [submitted["ticket"]]}


async def test_void_returns_the_wallet_with_its_money_back(api: Api) -> None:
    before = await dashboard(api, OWNER)
    # Northwind's custom integration workshop: 400.00 of it paid from the wallet.
    ((invoice,),) = await api.rows(select(m.InvoiceLineItem.invoice_id).where(
        m.InvoiceLineItem.description == "Custom integration workshop"))
    voided = await mutate(api, "voidInvoice", {"invoiceId": to_global_id("Invoice", invoice), "reason": "Canceled"},
                          "invoice { status } wallet { id balance { amount } }", as_=BILLING)
    assert voided["invoice"] == {"status": "VOID"}
    assert voided["wallet"]["id"] == before["wallet"]["id"]
    assert Decimal(voided["wallet"]["balance"]["amount"]) == Decimal(before["wallet"]["balance"]["amount"]) + 400


async def test_issue_invoice_and_bank_account_payloads_return_the_connection(api: Api) -> None:
    before = await dashboard(api, CEDAR)
    line = {"description": "Setup", "quantity": 1, "unitAmount": "150.00"}
    due = (NOW + timedelta(days=30)).isoformat()
    issued = await mutate(api, "issueInvoice", {
        "connectionId": before["id"], "lineItems": [line], "dueAt": due, "idempotencyKey": "cache-ids-1",
    }, "invoice { id } revampdConnection { id invoices(first: 1) { totalCount nodes { id } } }", as_=BILLING)
    assert issued["revampdConnection"] == {"id": before["id"], "invoices": {
        "totalCount": before["invoices"]["totalCount"] + 1, "nodes": [issued["invoice"]]}}

    account = {"holderName": "Cedar Collective LLC", "routingNumber": "110000000", "accountNumber": "000123456789"}
    linked = await mutate(api, "linkBankAccount", account,
                          "bankAccount { id } revampdConnection { bankAccounts { id } }", as_=CEDAR)
    listed = [a["id"] for a in linked["revampdConnection"]["bankAccounts"]]
    assert listed == [a["id"] for a in before["bankAccounts"]] + [linked["bankAccount"]["id"]]
    unlinked = await mutate(api, "unlinkBankAccount", {"bankAccountId": linked["bankAccount"]["id"]},
                            "revampdConnection { bankAccounts { id } }", as_=CEDAR)
    assert unlinked["revampdConnection"]["bankAccounts"] == before["bankAccounts"]
