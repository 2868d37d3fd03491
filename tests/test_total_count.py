"""`totalCount` on every connection: the whole list with its filter, as the viewer sees it.

Counted by one statement per list (per parent list, for lists under each item of
a page), and only when asked for.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from graphql import GraphQLObjectType
from sqlalchemy import Integer, event, func, select

from db import models as m
from resolvers.engine import graphql_schema
from resolvers.schema import build_schema
from server.settings import Settings
from tests.conftest import Api

OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"
SUPPORT = "support@revampd.example"

CONNECTION = """query($first: Int, $after: String, $status: [InvoiceStatus!]) { viewer { partner { revampdConnection {
  invoices(first: $first, after: $after, filter: {status: $status}) { totalCount nodes { id } pageInfo { endCursor } }
  tickets(first: 1) { totalCount }
  payouts(first: 1) { totalCount }
  affiliatePayouts(first: 1) { totalCount }
  subOrgTransactions(first: 1) { totalCount }
  paid: subOrgTransactions(first: 1, filter: {unpaid: false}) { totalCount }
  wallet { entries(first: 1) { totalCount } }
} } } }"""


@contextmanager
def statements(api: Api) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(api.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(api.engine.sync_engine, "before_cursor_execute", record)


def counts(seen: list[str]) -> list[str]:
    """The statements that count a list: not those of messageCount (window counts, or a page
    of tickets that brings each ticket's count along)."""
    return [s for s in seen if "count(*)" in s.lower() and "over" not in s.lower()
            and not s.lstrip().lower().startswith("with page")]


async def count(api: Api, stmt: Any) -> int:
    return int((await api.rows(stmt))[0][0])


def test_every_connection_type_has_total_count() -> None:
    schema = graphql_schema(build_schema(Settings()))
    connections = [t for name, t in schema.type_map.items() if name.endswith("Connection") and name != "RevampdConnection"]
    assert len(connections) >= 7
    for t in connections:
        assert isinstance(t, GraphQLObjectType)
        assert str(t.fields["totalCount"].type) == "Int!", t.name


async def test_total_count_is_the_whole_list_with_its_filter_on_every_page(ro_api: Api) -> None:
    cid = await ro_api.connection_id(OWNER)
    wallet = select(m.LedgerAccount.id).where(m.LedgerAccount.connection_id == cid, m.LedgerAccount.kind == "WALLET")
    want = {
        "invoices": await count(ro_api, select(func.count()).select_from(m.Invoice).where(m.Invoice.connection_id == cid)),
        "tickets": await count(ro_api, select(func.count()).select_from(m.Ticket).where(m.Ticket.connection_id == cid)),
        "payouts": await count(ro_api, select(func.count()).select_from(m.Payout).where(m.Payout.connection_id == cid)),
        "affiliatePayouts": await count(
            ro_api, select(func.count()).select_from(m.AffiliatePayout).where(m.AffiliatePayout.connection_id == cid)
        ),
        "subOrgTransactions": await count(
            ro_api, select(func.count()).select_from(m.SubOrgTransaction).where(m.SubOrgTransaction.connection_id == cid)
        ),
        "paid": await count(ro_api, select(func.count()).select_from(m.SubOrgTransaction).where(
            m.SubOrgTransaction.connection_id == cid, m.SubOrgTransaction.payout_id.is_not(None))),
        "entries": await count(ro_api, select(func.count()).select_from(m.LedgerEntry).where(
            m.LedgerEntry.account_id.in_(wallet))),
    }
    assert all(n > 1 for n in want.values()), f"the demo data has several of each: {want}"
    assert want["paid"] < want["subOrgTransactions"]

    conn = (await ro_api.gql(CONNECTION, {"first": 2}, as_=OWNER))["viewer"]["partner"]["revampdConnection"]
    got = {key: conn[key]["totalCount"] for key in want if key != "entries"}
    got["entries"] = conn["wallet"]["entries"]["totalCount"]
    assert got == want
    assert len(conn["invoices"]["nodes"]) == 2 < want["invoices"]

    # The next page, and an empty one, count the same list.
    after = conn["invoices"]["pageInfo"]["endCursor"]
    for variables in ({"first": 2, "after": after}, {"first": 0}):
        page = (await ro_api.gql(CONNECTION, variables, as_=OWNER))["viewer"]["partner"]["revampdConnection"]
        assert page["invoices"]["totalCount"] == want["invoices"]

    paid = await count(ro_api, select(func.count()).select_from(m.Invoice).where(
        m.Invoice.connection_id == cid, m.Invoice.status == "PAID"))
    filtered = (await ro_api.gql(CONNECTION, {"first": 1, "status": ["PAID"]}, as_=OWNER))
    assert 0 < filtered["viewer"]["partner"]["revampdConnection"]["invoices"]["totalCount"] == paid < want["invoices"]


MESSAGES = """{ viewer { partner { revampdConnection { tickets(first: 50) { nodes { id
  messages(first: 1) { totalCount } messageCount } } } } } }"""


async def test_messages_count_what_the_viewer_may_see_in_one_statement(ro_api: Api) -> None:
    """A Partner's count leaves out internal notes; staff count them. The count of every
    ticket's messages on a page is one statement."""
    cid = await ro_api.connection_id(OWNER)
    rows = await ro_api.rows(
        select(m.TicketMessage.ticket_id, func.count(), func.sum(m.TicketMessage.internal.cast(Integer)))
        .join(m.Ticket).where(m.Ticket.connection_id == cid).group_by(m.TicketMessage.ticket_id)
    )
    assert any(internal for _, _, internal in rows), "the demo data has internal notes"
    ticket_ids = {to_gid("Ticket", t): (n, n - int(internal or 0)) for t, n, internal in rows}

    with statements(ro_api) as seen:
        tickets = (await ro_api.gql(MESSAGES, as_=MEMBER))["viewer"]["partner"]["revampdConnection"]["tickets"]
    assert len(counts(seen)) == 1, counts(seen)
    for ticket in tickets["nodes"]:
        shown = ticket_ids.get(ticket["id"], (0, 0))[1]
        assert ticket["messages"]["totalCount"] == ticket["messageCount"] == shown

    for ticket in tickets["nodes"]:
        as_staff = await ro_api.gql(
            "query($id: ID!) { node(id: $id) { ... on Ticket { messages(first: 1) { totalCount } } } }",
            {"id": ticket["id"]}, as_=SUPPORT,
        )
        assert as_staff["node"]["messages"]["totalCount"] == ticket_ids.get(ticket["id"], (0, 0))[0]


async def test_total_count_is_counted_only_when_asked_for(ro_api: Api) -> None:
    query = "{ viewer { partner { revampdConnection { invoices(first: 3) { nodes { id } } } } } }"
    with statements(ro_api) as seen:
        await ro_api.gql(query, as_=OWNER)
    assert counts(seen) == []


async def test_the_support_queue_counts_every_waiting_ticket(ro_api: Api) -> None:
    waiting = await count(ro_api, select(func.count()).select_from(m.Ticket).where(
        m.Ticket.status.in_(["OPEN", "IN_PROGRESS"])))
    resolved = await count(ro_api, select(func.count()).select_from(m.Ticket).where(m.Ticket.status == "RESOLVED"))
    got = await ro_api.gql(
        "{ q: supportTickets(first: 1) { totalCount } r: supportTickets(first: 1, filter: {status: [RESOLVED]}) "
        "{ totalCount } }", as_=SUPPORT,
    )
    assert (got["q"]["totalCount"], got["r"]["totalCount"]) == (waiting, resolved)
    assert waiting > 1


def to_gid(type_name: str, pk: int) -> str:
    from schema.base import to_global_id

    return str(to_global_id(type_name, pk))
