"""The dashboard's documents in operations/: one per page of the spec and one per
mutation, each valid against the schema, and each mutation run once on the demo data.

The queries' answers are pinned by tests/test_operations_golden.py; the mutations
change the data, so they are run here, in an order in which each input is valid.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    FieldNode,
    GraphQLObjectType,
    OperationDefinitionNode,
    OperationType,
    TypeInfo,
    Visitor,
    get_named_type,
    parse,
    validate,
    visit,
)
from graphql.utilities import TypeInfoVisitor

from resolvers.engine import graphql_schema
from resolvers.schema import build_schema
from schema.base import to_global_id
from server.settings import Settings
from tests import clock
from tests.conftest import Api

OPERATIONS = Path(__file__).resolve().parents[1] / "operations"
DOCUMENTS = sorted(OPERATIONS.glob("*.graphql"))
SCHEMA = graphql_schema(build_schema(Settings()))

# The spec's left-hand menu (partner-revampd-connection.txt, "Navigation"), and the
# document each page loads.
PAGES = {
    "Plan": "Plan", "Add-Ons": "AddOns", "Tickets": "Tickets", "Submit Ticket": "SubmitTicket",
    "Invoices": "Invoices", "Wallet": "Wallet", "Affiliate Payouts": "AffiliatePayouts", "Payouts": "Payouts",
}


def _operation(path: Path) -> OperationDefinitionNode:
    definitions = parse(path.read_text()).definitions
    assert len(definitions) == 1 and isinstance(definitions[0], OperationDefinitionNode), (
        f"{path.name}: one operation per document, no fragments (codegen and persisted queries key on it)")
    return definitions[0]


def _mutations() -> dict[str, Path]:
    """Mutation field -> the document that runs it."""
    found: dict[str, Path] = {}
    for path in DOCUMENTS:
        operation = _operation(path)
        if operation.operation == OperationType.MUTATION:
            (field,) = operation.selection_set.selections
            assert isinstance(field, FieldNode)
            assert field.name.value not in found, f"{field.name.value} has two documents"
            found[field.name.value] = path
    return found


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.stem)
def test_every_document_is_one_named_operation_valid_against_the_schema(path: Path) -> None:
    operation = _operation(path)
    assert operation.name and operation.name.value == path.stem, f"{path.name}: the operation is named as its file"
    errors = validate(SCHEMA, parse(path.read_text()))
    assert not errors, f"{path.name}: {[e.message for e in errors]}"


def test_every_page_of_the_spec_has_a_query_document() -> None:
    missing = [page for page, name in PAGES.items()
               if not (OPERATIONS / f"{name}.graphql").exists()
               or _operation(OPERATIONS / f"{name}.graphql").operation != OperationType.QUERY]
    assert not missing, f"pages without a query document in operations/: {missing}"


def test_every_mutation_has_a_document() -> None:
    missing = sorted(set(SCHEMA.mutation_type.fields) - set(_mutations()))  # type: ignore[union-attr]
    assert not missing, f"mutations without a document in operations/: {missing}"


def _objects_without_id(path: Path) -> list[str]:
    """Where the document selects an object whose type has an `id` without selecting it."""
    info = TypeInfo(SCHEMA)
    found: list[str] = []

    class Check(Visitor):
        def enter_field(self, node: FieldNode, *_: Any) -> None:
            kind = get_named_type(info.get_type())
            if (node.selection_set and isinstance(kind, GraphQLObjectType) and "id" in kind.fields
                    and not any(isinstance(s, FieldNode) and s.name.value == "id" and not s.alias
                                for s in node.selection_set.selections)):
                found.append(f"{node.name.value}: {kind.name}")

    visit(parse(path.read_text()), TypeInfoVisitor(info, Check()))
    return found


# DashboardOverview keeps the selection the bench's handwritten endpoint answers byte
# for byte (tests/bench/handwritten.py); these objects are cached inside their parents.
WITHOUT_ID = {"DashboardOverview": ["product: AddOnProduct", "lastMessage: TicketMessage", "author: User",
                                    "bankAccount: BankAccount"]}


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.stem)
def test_every_document_selects_the_id_of_each_object_that_has_one(path: Path) -> None:
    """A normalized cache (Apollo, urql's graphcache, Relay) merges two pages' selections
    of an object, and updates a page from a mutation's answer, only by the object's id."""
    assert _objects_without_id(path) == WITHOUT_ID.get(path.stem, []), (
        f"{path.name} selects these objects without their id")


def _dig(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        data = data[int(key)] if isinstance(data, list) else data[key]
    return data


async def test_every_mutation_document_runs_on_the_demo_data(api: Api) -> None:
    """Each mutation document once, as the user who would run it, with valid input:
    no errors, no userErrors, and the change shows in its answer."""
    owner, bluebird, support, billing = ("owner@cedar.example", "owner@bluebird.example",
                                         "support@revampd.example", "billing@revampd.example")
    documents = {path.stem: path.read_text() for path in _mutations().values()}
    ran: list[str] = []

    async def run(name: str, as_: str, input: dict[str, Any], **expect: Any) -> dict[str, Any]:
        body = (await api.post(documents[name], {"input": input}, as_=as_)).json()
        assert not body.get("errors"), f"{name}: {body['errors']}"
        (payload,) = body["data"].values()
        assert payload["userErrors"] == [], f"{name} as {as_}: {payload['userErrors']}"
        for dotted, value in expect.items():
            assert _dig(payload, dotted.replace("__", ".")) == value, f"{name}: {dotted} is {_dig(payload, dotted.replace('__', '.'))}"
        ran.append(name)
        return dict(payload)

    page = await api.gql("""{ viewer { partner { revampdConnection { id
        invoices(first: 2, filter: { status: [OPEN] }) { nodes { id amountDue { amount } } }
        payouts(first: 2, filter: { status: [AVAILABLE] }) { nodes { id } } } } }
        plans { id code } addOnProducts { id code } }""", as_=owner)
    connection = page["viewer"]["partner"]["revampdConnection"]
    plans = {p["code"]: p["id"] for p in page["plans"]}
    (open_invoice, other_invoice), (payout, other_payout) = connection["invoices"]["nodes"], connection["payouts"]["nodes"]
    affiliate = (await api.gql("{ viewer { partner { revampdConnection { affiliatePayouts(first: 1) { nodes { id creditStatus } } } } } }",
                               as_="owner@northwind.example"))["viewer"]["partner"]["revampdConnection"]["affiliatePayouts"]["nodes"][0]
    assert affiliate["creditStatus"] == "PENDING"

    # Plan page (Bluebird: GROWTH, usage within STARTER's limits)
    await run("UpgradePlan", bluebird, {"planId": plans["SCALE"]},
              subscription__pendingChange__kind="UPGRADE", subscription__pendingChange__targetPlan__code="SCALE",
              replacedChange__kind="DOWNGRADE")
    await run("DowngradePlan", bluebird, {"planId": plans["STARTER"]}, subscription__pendingChange__kind="DOWNGRADE")
    await run("CancelSubscription", bluebird, {}, subscription__pendingChange__kind="CANCEL")
    await run("WithdrawPlanChange", bluebird, {}, subscription__pendingChange=None, withdrawnChange__kind="CANCEL")
    await run("UpdatePaymentMethod", owner, {"cardToken": "tok_visa_4242"},
              revampdConnection__paymentMethod__last4="4242")
    await run("SetNotificationSetting", owner, {"kind": "WALLET_LOW", "enabled": True, "walletLowThreshold": "100.00"},
              setting__enabled=True, setting__walletLowThreshold__amount="100.00")

    # Add-Ons page
    product = next(p["id"] for p in page["addOnProducts"] if p["code"] == "LOCAL_NUMBER")
    add_on = (await run("AddAddOn", owner, {"productId": product, "quantity": 2}, addOn__quantity=2))["addOn"]["id"]
    await run("UpdateAddOn", owner, {"addOnId": add_on, "quantity": 3}, addOn__quantity=3)
    await run("RemoveAddOn", owner, {"addOnId": add_on}, addOn__pendingQuantity=0)

    # Submit Ticket, Ticket pages
    ticket = (await run("CreateTicket", owner, {"title": "Invoice question", "description": "Why this amount?",
                                                "priority": "MEDIUM", "subjectId": open_invoice["id"]},
                        ticket__status="OPEN", ticket__subject__id=open_invoice["id"]))["ticket"]["id"]
    await run("AssignTicket", support, {"ticketId": ticket, "assigneeId": to_global_id("User", api.ids[support])},
              ticket__assignedTo__email=support)
    await run("UpdateTicketStatus", support, {"ticketId": ticket, "status": "IN_PROGRESS"}, ticket__status="IN_PROGRESS")
    await run("AddTicketNote", support, {"ticketId": ticket, "body": "Checking the ledger."}, message__internal=True)
    await run("ReplyToTicket", owner, {"ticketId": ticket, "body": "Thanks!"}, message__internal=False,
              ticket__lastMessage__body="Thanks!")
    await run("CloseTicket", owner, {"ticketId": ticket}, ticket__status="CLOSED")

    # Invoices and Wallet pages
    await run("PayInvoice", owner, {"invoiceId": open_invoice["id"], "idempotencyKey": "pay-1"},
              invoice__status="PAID", invoice__amountDue__amount="0.00")
    issued = (await run("IssueInvoice", billing, {
        "connectionId": connection["id"], "idempotencyKey": "issue-1",
        "dueAt": (clock.NOW + timedelta(days=14)).isoformat(),
        "lineItems": [{"description": "Onboarding workshop", "quantity": 1, "unitAmount": "250.00"}]},
        invoice__status="OPEN", invoice__total__amount="250.00"))["invoice"]["id"]
    await run("VoidInvoice", billing, {"invoiceId": issued, "reason": "Issued in error"}, invoice__status="VOID")
    by_card = (await run("IssueInvoice", billing, {
        "connectionId": connection["id"], "idempotencyKey": "issue-2",
        "dueAt": (clock.NOW + timedelta(days=14)).isoformat(),
        "lineItems": [{"description": "Template design", "quantity": 1, "unitAmount": "120.00"}]},
        invoice__status="OPEN"))["invoice"]["id"]
    await run("PayInvoiceByCard", owner, {"invoiceId": by_card, "idempotencyKey": "card-1"},
              invoice__status="PAID", payment__method="CARD", payment__amount__amount="120.00")
    await run("CreateExport", owner, {"connectionId": connection["id"], "kind": "WALLET_STATEMENT"},
              filename="wallet-statement-all.csv")
    await run("RefundInvoice", billing, {"invoiceId": by_card, "amount": "20.00", "reason": "Two templates dropped",
                                         "idempotencyKey": "refund-1"},
              invoice__amountRefunded__amount="20.00", creditNote__kind="REFUND", creditNote__total__amount="20.00")
    await run("MarkInvoiceUncollectible", billing, {"invoiceId": other_invoice["id"]}, invoice__status="UNCOLLECTIBLE")
    await run("AdjustWallet", billing, {"connectionId": connection["id"], "amount": "25.00", "kind": "MANUAL_ADJUSTMENT",
                                        "memo": "Goodwill credit", "idempotencyKey": "adjust-1"},
              walletEntry__amount__amount="25.00")

    # Affiliate Payouts page (Northwind has pending ones)
    await run("ApplyAffiliatePayout", billing, {"affiliatePayoutId": affiliate["id"]},
              affiliatePayout__creditStatus="APPLIED")

    # Payouts page
    account = {"holderName": "Cedar Collective LLC", "routingNumber": "110000000"}
    first = (await run("LinkBankAccount", owner, {**account, "accountNumber": "000123456789"},
                       bankAccount__isDefault=True))["bankAccount"]["id"]
    second = (await run("LinkBankAccount", owner, {**account, "accountNumber": "00001001"},
                        bankAccount__isDefault=False))["bankAccount"]["id"]
    await run("SetDefaultBankAccount", owner, {"bankAccountId": second}, bankAccount__isDefault=True)
    await run("SetPayoutPreference", owner, {"mode": "MANUAL", "periodType": "MONTHLY"},
              payoutPreference__periodType="MONTHLY")
    await run("CreditPayout", owner, {"payoutId": payout["id"], "amount": "1.00", "idempotencyKey": "credit-1"},
              disposition__kind="CREDIT", disposition__walletAmount__amount="1.00")
    transfer = (await run("TransferPayout", owner, {"payoutId": payout["id"], "amount": "1.00", "idempotencyKey": "send-1"},
                          bankTransfer__status="PENDING", bankTransfer__bankAccount__id=second))["bankTransfer"]["id"]
    await run("CancelBankTransfer", owner, {"bankTransferId": transfer}, bankTransfer__status="CANCELED")
    await run("SplitPayout", owner, {"payoutId": other_payout["id"], "walletAmount": "100.00", "bankAccountId": first,
                                     "idempotencyKey": "split-1"}, disposition__kind="SPLIT", payout__status="PROCESSING")
    await run("UnlinkBankAccount", owner, {"bankAccountId": second}, bankAccounts__0__id=first)
    await run("RecordSubOrgTransactions", billing, {"connectionId": connection["id"], "transactions": [{
        "externalId": "sub-2001", "subOrgName": "Acme Dental", "kind": "SUBSCRIPTION", "grossAmount": "97.00",
        "occurredAt": (clock.NOW - timedelta(hours=1)).isoformat()}]},
        recorded__0__externalId="sub-2001", duplicates=[])
    source = (await api.gql("query($id: ID!) { node(id: $id) { ... on Payout { sourceTransactions { externalId } } } }",
                            {"id": payout["id"]}, as_=owner))["node"]["sourceTransactions"][0]["externalId"]
    await run("RecordClawbacks", billing, {"connectionId": connection["id"], "idempotencyKey": "clawback-1", "clawbacks": [
        {"transactionExternalId": source, "externalId": "re-2000", "kind": "CHARGEBACK", "amount": "0.50"},
        {"transactionExternalId": "sub-2001", "externalId": "re-2001", "kind": "REFUND", "amount": "10.00",
         "reason": "Refunded on request"}]},
        clawbacks__0__takenAmount__amount="0.50", clawbacks__0__payout__id=payout["id"],
        payouts__0__id=payout["id"], payouts__0__clawedBack__amount="0.50",
        clawbacks__1__outstanding__amount="10.00", clawbacks__1__payout=None, duplicates=[],
        revampdConnection__clawbackOutstanding__amount="10.00")

    assert sorted(set(ran)) == sorted(documents), f"not run: {sorted(set(documents) - set(ran))}"
