"""Arguments a client controls are checked strictly: cursors, IDs, search text, query size."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import Api

OWNER = "owner@northwind.example"
SUPPORT = "support@revampd.example"


def b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def forged(values: Any) -> str:
    return b64(json.dumps(values))


CONNECTION = "query($c: String) { viewer { partner { revampdConnection { %s } } } }"
EDGES = "{ edges { cursor } }"
LISTS = {
    "invoices": (CONNECTION % f"invoices(after: $c) {EDGES}", OWNER),
    "tickets": (CONNECTION % f"tickets(after: $c) {EDGES}", OWNER),
    "payouts": (CONNECTION % f"payouts(after: $c) {EDGES}", OWNER),
    "affiliatePayouts": (CONNECTION % f"affiliatePayouts(after: $c) {EDGES}", OWNER),
    "walletEntries": (CONNECTION % f"wallet {{ entries(after: $c) {EDGES} }}", OWNER),
    "messages": (CONNECTION % f"tickets(first: 1) {{ edges {{ node {{ messages(after: $c) {EDGES} }} }} }}", OWNER),
    "supportTickets": (f"query($c: String) {{ supportTickets(after: $c) {EDGES} }}", SUPPORT),
}
CURSORS = {
    "ints": forged([1, 2]),
    "strings": forged(["x", "y"]),
    "nulls": forged([None, None]),
    "naive-datetime": forged([{"dt": "2026-01-01T00:00:00"}, 1]),
    "id-2^70": forged([{"dt": "2026-01-01T00:00:00+00:00"}, 2**70]),
    "bool-id": forged([{"dt": "2026-01-01T00:00:00+00:00"}, True]),
    "dt-not-text": forged([{"dt": 5}, 1]),
    "extra-keys": forged([{"dt": "2026-01-01T00:00:00+00:00", "x": 1}, 1]),
    "too-short": forged([1]),
    "literal": "WzEsIDJd",
    "not-base64": "!!!",
}


@pytest.mark.parametrize("cursor", CURSORS.values(), ids=CURSORS.keys())
@pytest.mark.parametrize("name", LISTS.keys())
async def test_a_forged_cursor_is_an_invalid_cursor_error_naming_the_argument(
    ro_api: Api, name: str, cursor: str
) -> None:
    query, who = LISTS[name]
    errors = await ro_api.errors(query, {"c": cursor}, as_=who)
    assert [(e["message"], e["extensions"]["code"]) for e in errors] == [
        ("after is not a valid cursor.", "INVALID_CURSOR")
    ]


async def test_a_real_cursor_still_pages(ro_api: Api) -> None:
    query, _ = LISTS["tickets"]
    first = await ro_api.gql(query.replace("tickets(after: $c)", "tickets(first: 1, after: $c)"), as_=OWNER)
    cursor = first["viewer"]["partner"]["revampdConnection"]["tickets"]["edges"][0]["cursor"]
    after = await ro_api.gql(query, {"c": cursor}, as_=OWNER)
    assert cursor not in [e["cursor"] for e in after["viewer"]["partner"]["revampdConnection"]["tickets"]["edges"]]


@pytest.mark.parametrize(
    "variant",
    [b64("Ticket:1") + "=", b64("Ticket:01"), b64("Ticket:\uff11"), b64("Ticket:+1"), b64("Ticket: 1"),
     b64("Ticket:1").replace("E", "F")],
    ids=["padding", "leading-zero", "full-width-digit", "plus-sign", "space", "other-trailing-bits"],
)
async def test_each_object_has_exactly_one_id(ro_api: Api, variant: str) -> None:
    q = "query($id: ID!) { node(id: $id) { id } }"
    assert (await ro_api.gql(q, {"id": b64("Ticket:1")}, as_=SUPPORT))["node"] == {"id": b64("Ticket:1")}
    assert (await ro_api.gql(q, {"id": variant}, as_=SUPPORT))["node"] is None


async def test_an_overlong_id_reads_as_nothing(ro_api: Api) -> None:
    q = "query($id: ID!) { node(id: $id) { id } }"
    assert (await ro_api.gql(q, {"id": b64("Ticket:" + "1" * 100_000)}, as_=SUPPORT))["node"] is None
    reply = """mutation($id: ID!) { replyToTicket(input: {ticketId: $id, body: "x"}) { userErrors { field code } } }"""
    errors = (await ro_api.gql(reply, {"id": "VGlja2V0OjE" * 10_000}, as_=SUPPORT))["replyToTicket"]["userErrors"]
    assert errors == [{"field": ["input", "ticketId"], "code": "NOT_FOUND"}]


SEARCH = "query($q: String) { viewer { partner { revampdConnection { tickets(filter: {search: $q}) %s } } } }" % EDGES


async def test_search_text_is_capped(ro_api: Api) -> None:
    errors = await ro_api.errors(SEARCH, {"q": "x" * 201}, as_=OWNER)
    assert errors[0]["extensions"]["code"] == "INVALID_SEARCH"
    assert errors[0]["extensions"]["field"] == ["filter", "search"]
    assert "at most 200 characters" in errors[0]["message"]
    await ro_api.gql(SEARCH, {"q": "x" * 200}, as_=OWNER)


NESTED = """query($n: Int, $m: Int) { viewer { partner { revampdConnection {
    tickets(first: $n) { edges { node { messages(first: $m) { edges { node { body } } } } } } } } } }"""


async def test_a_query_whose_worst_case_is_over_budget_is_refused_before_it_runs(ro_api: Api) -> None:
    response = await ro_api.post(NESTED, {"n": 100, "m": 100}, as_=OWNER)
    body = response.json()
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["cost"] == 100 + 100 * 100
    assert "10,100" in error["message"] and "10,000" in error["message"]


async def test_a_query_within_budget_runs(ro_api: Api) -> None:
    await ro_api.gql(NESTED, {"n": 50, "m": 50}, as_=OWNER)
    # Unset page sizes count as the default page size (20): 20 + 20 * 20.
    await ro_api.gql(NESTED, {}, as_=OWNER)


async def test_the_dashboard_with_100_items_per_list_is_within_budget(ro_api: Api) -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "operations" / "DashboardOverview.graphql").read_text()
    await ro_api.gql(doc, {"first": 100}, as_=OWNER)
