"""Every read of API.md, answered from the seeded database, scoped to the caller."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event, func, select

from db import models as m
from schema.base import to_global_id
from tests.conftest import Api

OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"
BLUEBIRD = "owner@bluebird.example"
SUPPORT = "support@revampd.example"
DASHBOARD = (Path(__file__).parent.parent / "operations" / "DashboardOverview.graphql").read_text()




async def test_dashboard_overview_shows_the_partners_own_data(ro_api: Api) -> None:
    data = await ro_api.gql(DASHBOARD, as_=OWNER)
    partner = data["viewer"]["partner"]
    conn = partner["revampdConnection"]
    assert partner["name"] == "Northwind Agency"
    assert data["viewer"]["roles"] == ["PARTNER_ADMIN"]
    assert conn["subscription"]["plan"]["code"] == "SCALE"
    assert conn["usage"]["subOrgs"] == 12
    assert conn["usage"]["phoneNumbers"] == sum(a["quantity"] for a in conn["addOns"])

    cid = await ro_api.connection_id(OWNER)
    (balance,) = (await ro_api.rows(select(m.LedgerAccount.balance).where(
        m.LedgerAccount.connection_id == cid, m.LedgerAccount.kind == "WALLET")))[0]
    assert conn["wallet"]["balance"]["amount"] == f"{balance / 100:.2f}"

    invoices = [e["node"] for e in conn["invoices"]["edges"]]
    assert len(invoices) == 10 and conn["invoices"]["pageInfo"]["hasNextPage"]
    assert [i["issuedAt"] for i in invoices] == sorted((i["issuedAt"] for i in invoices), reverse=True)
    newest = await ro_api.rows(select(m.Invoice.number).where(m.Invoice.connection_id == cid).order_by(m.Invoice.issued_at.desc(), m.Invoice.id.desc()).limit(10),
    )
    assert [i["number"] for i in invoices] == [r[0] for r in newest]

    tickets = [e["node"] for e in conn["tickets"]["edges"]]
    assert tickets and {t["status"] for t in tickets} <= {"OPEN", "IN_PROGRESS"}
    assert all(t["number"].startswith("RVP-") for t in tickets)
    payouts = [e["node"] for e in conn["payouts"]["edges"]]
    assert payouts and any(p["transfers"] for p in payouts)


async def test_catalogue_queries_answer_for_any_user(ro_api: Api) -> None:
    q = """{ plans { code monthlyPrice { amount } }
             planComparison { plans { code } rows { feature label values } }
             addOnProducts { code monthlyPrice { amount currencyCode } } }"""
    data = await ro_api.gql(q, as_=MEMBER)
    prices = [float(p["monthlyPrice"]["amount"]) for p in data["plans"]]
    assert prices == sorted(prices) and len(prices) == 4
    assert [p["code"] for p in data["planComparison"]["plans"]] == [p["code"] for p in data["plans"]]
    rows = {r["feature"]: r["values"] for r in data["planComparison"]["rows"]}
    assert rows["subOrgs"][-1] == "Unlimited" and all(len(v) == 4 for v in rows.values())
    assert {p["code"] for p in data["addOnProducts"]} == {"LOCAL_NUMBER", "TOLL_FREE_NUMBER"}


async def test_partners_never_see_internal_notes(ro_api: Api) -> None:
    rows = await ro_api.rows(select(m.TicketMessage.id, m.TicketMessage.ticket_id, m.User.email)
        .join(m.Ticket, m.Ticket.id == m.TicketMessage.ticket_id)
        .join(m.Connection, m.Connection.id == m.Ticket.connection_id)
        .join(m.User, m.User.partner_id == m.Connection.partner_id)
        .where(m.TicketMessage.internal.is_(True), m.User.role == "PARTNER_ADMIN"),
    )
    assert rows, "the demo data has internal notes"
    note_id, ticket_id, owner = rows[0]
    q = """query($t: ID!, $n: ID!) {
      node(id: $t) { ... on Ticket { messageCount lastMessage { internal }
        messages(first: 100) { edges { node { id internal body } } } } }
      note: node(id: $n) { id } }"""
    variables = {"t": to_global_id("Ticket", ticket_id), "n": to_global_id("TicketMessage", note_id)}
    seen = await ro_api.gql(q, variables, as_=owner)
    staff = await ro_api.gql(q, variables, as_=SUPPORT)
    messages = [e["node"] for e in seen["node"]["messages"]["edges"]]
    assert not any(msg["internal"] for msg in messages)
    assert seen["note"] is None and staff["note"] is not None
    assert seen["node"]["messageCount"] == len(messages)
    assert staff["node"]["messageCount"] > seen["node"]["messageCount"]
    assert not seen["node"]["lastMessage"]["internal"]


async def test_pages_walk_every_row_once_in_order(ro_api: Api) -> None:
    q = """query($after: String) { viewer { partner { revampdConnection {
      invoices(first: 7, after: $after) { edges { node { number } } pageInfo { hasNextPage endCursor } } } } } }"""
    seen: list[str] = []
    after = None
    while True:
        page = (await ro_api.gql(q, {"after": after}, as_=OWNER))["viewer"]["partner"]["revampdConnection"]["invoices"]
        seen += [e["node"]["number"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    cid = await ro_api.connection_id(OWNER)
    (total,) = (await ro_api.rows(select(func.count()).where(m.Invoice.connection_id == cid)))[0]
    assert len(seen) == len(set(seen)) == total

    back = """query($before: String) { viewer { partner { revampdConnection {
      invoices(last: 3, before: $before) { edges { node { number } } pageInfo { hasPreviousPage } } } } } }"""
    cursor_q = """{ viewer { partner { revampdConnection { invoices(first: 6) { edges { cursor } } } } } }"""
    cursors = (await ro_api.gql(cursor_q, as_=OWNER))["viewer"]["partner"]["revampdConnection"]["invoices"]["edges"]
    page = (await ro_api.gql(back, {"before": cursors[5]["cursor"]}, as_=OWNER))["viewer"]["partner"]["revampdConnection"]["invoices"]
    assert [e["node"]["number"] for e in page["edges"]] == seen[2:5]
    assert page["pageInfo"]["hasPreviousPage"]


async def test_page_size_over_100_is_a_clear_error(ro_api: Api) -> None:
    q = "{ viewer { partner { revampdConnection { invoices(first: 101) { edges { cursor } } } } } }"
    errors = await ro_api.errors(q, as_=OWNER)
    assert "first must be at most 100" in errors[0]["message"]
    bad_cursor = '{ viewer { partner { revampdConnection { invoices(after: "nonsense") { edges { cursor } } } } } }'
    assert "after is not a valid cursor" in (await ro_api.errors(bad_cursor, as_=OWNER))[0]["message"]


async def test_support_queue_is_for_staff_only(ro_api: Api) -> None:
    q = "{ supportTickets(first: 50) { edges { node { number partner { name } } } } }"
    staff = await ro_api.gql(q, as_=SUPPORT)
    names = {e["node"]["partner"]["name"] for e in staff["supportTickets"]["edges"]}
    assert {"Northwind Agency", "Bluebird Digital", "Cedar Collective"} <= names
    errors = await ro_api.errors(q, as_=OWNER)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_dashboard_costs_the_same_statements_for_10_or_100_items(ro_api: Api) -> None:
    statements: list[str] = []

    def count(*args):  # type: ignore[no-untyped-def]
        statements.append(args[2])

    engine = ro_api.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        await ro_api.gql(DASHBOARD, {"first": 10}, as_=OWNER)
        ten = len(statements)
        statements.clear()
        data = await ro_api.gql(DASHBOARD, {"first": 100}, as_=OWNER)
        hundred = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    conn = data["viewer"]["partner"]["revampdConnection"]
    assert len(conn["invoices"]["edges"]) > 10, "the second run really lists more items"
    assert ten == hundred, f"{ten} statements for 10 items, {hundred} for 100"


async def test_money_is_a_decimal_string_with_the_currencys_places(ro_api: Api) -> None:
    q = """{ viewer { partner { revampdConnection { invoices(first: 1, filter: {status: [PAID]}) {
      edges { node { total { amount currencyCode } amountPaid { amount } amountDue { amount } } } } } } } }"""
    node = (await ro_api.gql(q, as_=OWNER))["viewer"]["partner"]["revampdConnection"]["invoices"]["edges"][0]["node"]
    assert node["amountDue"]["amount"] == "0.00"
    assert node["total"]["amount"] == node["amountPaid"]["amount"]
    assert node["total"]["currencyCode"] == "USD" and node["total"]["amount"].count(".") == 1
    assert len(node["total"]["amount"].split(".")[1]) == 2


async def test_an_unexpected_fault_is_masked(ro_api: Api, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from services import plans

    async def broken(session):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret connection string postgres://admin:pw@db")

    monkeypatch.setattr(plans, "catalogue", broken)
    errors = await ro_api.errors("{ plans { code } }", as_=OWNER)
    assert errors[0]["message"] == "Internal server error."
    assert "secret" not in str(errors)


async def test_several_connections_pages_at_once_show_each_as_alone(ro_api: Api) -> None:
    """Staff asking two connections' tickets and payouts in one query (one statement for both
    pages, each item's messages, users and transfers coming along) see each connection's
    lists exactly as when asking for that connection alone."""
    lists = """tickets(first: 4) { edges { cursor node { id number messageCount lastMessage { body author { name } }
                 assignedTo { name } createdBy { name } } } pageInfo { hasNextPage endCursor } }
               payouts(first: 4) { edges { node { id transfers { id status amount { amount } bankAccount { last4 } } } }
                 pageInfo { hasNextPage } }"""
    ids = [to_global_id("RevampdConnection", await ro_api.connection_id(owner)) for owner in (OWNER, BLUEBIRD)]
    both = await ro_api.gql(f"query($ids: [ID!]!) {{ nodes(ids: $ids) {{ ... on RevampdConnection {{ {lists} }} }} }}",
                            {"ids": ids}, as_=SUPPORT)
    for gid, together in zip(ids, both["nodes"], strict=True):
        alone = await ro_api.gql(f"query($id: ID!) {{ node(id: $id) {{ ... on RevampdConnection {{ {lists} }} }} }}",
                                 {"id": gid}, as_=SUPPORT)
        assert together == alone["node"]
    tickets = [e["node"] for n in both["nodes"] for e in n["tickets"]["edges"]]
    assert any(t["lastMessage"] for t in tickets) and any(t["assignedTo"] for t in tickets)
    assert any(p["node"]["transfers"] for n in both["nodes"] for p in n["payouts"]["edges"])


async def test_pages_backwards_bring_along_the_same_as_forwards(ro_api: Api) -> None:
    """`last`/`before` walks a list in reverse inside its statement: what comes along with each
    item (a ticket's newest message and assignee, a payout's transfers) is the item's own, and
    the page is the same items, in the same order, as the forward pages show."""
    fields = {
        "tickets": "number messageCount lastMessage { body author { name } } assignedTo { name }",
        "payouts": "id transfers { id status bankAccount { last4 } }",
    }
    for name, shown in fields.items():
        forward = f"""{{ viewer {{ partner {{ revampdConnection {{ {name}(first: 8) {{
            edges {{ cursor node {{ {shown} }} }} }} }} }} }} }}"""
        edges = (await ro_api.gql(forward, as_=OWNER))["viewer"]["partner"]["revampdConnection"][name]["edges"]
        assert len(edges) >= 6, name
        back = f"""query($before: String) {{ viewer {{ partner {{ revampdConnection {{
            {name}(last: 4, before: $before) {{ edges {{ node {{ {shown} }} }} pageInfo {{ hasPreviousPage }} }} }} }} }} }}"""
        page = (await ro_api.gql(back, {"before": edges[5]["cursor"]}, as_=OWNER))["viewer"]["partner"]
        page = page["revampdConnection"][name]
        assert [e["node"] for e in page["edges"]] == [e["node"] for e in edges[1:5]], name
        assert page["pageInfo"]["hasPreviousPage"], name


async def test_a_page_of_tickets_shows_what_each_ticket_shows_alone(ro_api: Api) -> None:
    """What a page of tickets brings along in its statement (how many messages the viewer may
    see, the newest of them and its author, the assignee, the submitter) is what each ticket
    shows when read alone, for a Partner's users (no internal notes) and for support."""
    shown = "id number messageCount lastMessage { id internal author { name } } assignedTo { name } createdBy { name }"
    gid = to_global_id("RevampdConnection", await ro_api.connection_id(OWNER))
    counts: dict[str, dict[str, int]] = {}
    for who in (OWNER, MEMBER, SUPPORT):
        listed = await ro_api.gql(
            f"query($c: ID!) {{ node(id: $c) {{ ... on RevampdConnection {{ tickets(first: 30) {{ nodes {{ {shown} }} }} }} }} }}",
            {"c": gid}, as_=who,
        )
        tickets = listed["node"]["tickets"]["nodes"]
        assert any(t["messageCount"] for t in tickets) and any(t["assignedTo"] for t in tickets), who
        for ticket in tickets:
            alone = await ro_api.gql(f"query($t: ID!) {{ node(id: $t) {{ ... on Ticket {{ {shown} }} }} }}",
                                     {"t": ticket["id"]}, as_=who)
            assert alone["node"] == ticket, who
        counts[who] = {t["id"]: t["messageCount"] for t in tickets}
    # Support counts the internal notes too.
    assert any(n > counts[OWNER].get(t, n) for t, n in counts[SUPPORT].items())
