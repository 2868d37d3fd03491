"""Who reads what by ID: a Partner its own objects, Revampd staff everything.

A Partner sees a Revampd staff member only where that person shows on its own
tickets (assigned, or author of a message it can read), and then by name only.
"""

from __future__ import annotations

import gc
from collections import deque
from typing import Any

import pytest
from sqlalchemy import ForeignKey, Select, select, union

from db import models as m
from db.engine import create_engine, write_sessions
from schema.base import Node, node_types, to_global_id
from server.auth import issue_dev_token
from services import visibility
from tests.clock import NOW
from tests.conftest import Api

OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"
BLUEBIRD = "owner@bluebird.example"
SUPPORT = "support@revampd.example"
BILLING = "billing@revampd.example"
CASEY = "casey@revampd.example"

NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"
USERS = "query($ids: [ID!]!) { nodes(ids: $ids) { ... on User { id name email isRevampdStaff } } }"
TICKET = """query($id: ID!) { node(id: $id) { ... on Ticket { assignedTo { id name email }
  messages(first: 100) { edges { node { internal author { id name email } } } } } } }"""


# ---- Every Node type --------------------------------------------------------------

def ownership(model: type[Any]) -> list[ForeignKey] | None:
    """The foreign keys that lead from `model`'s table to the Partner it belongs to, never
    through `users` (a person named on a row does not own it); None for the catalogue."""
    start, partners = model.__table__, m.Partner.__table__
    paths: deque[tuple[Any, list[ForeignKey]]] = deque([(start, [])])
    seen = {start}
    while paths:
        table, hops = paths.popleft()
        if table is partners:
            return hops
        for fk in sorted(table.foreign_keys, key=lambda f: f.parent.name):
            target = fk.column.table
            if target is not m.User.__table__ and target not in seen:
                seen.add(target)
                paths.append((target, [*hops, fk]))
    return None


def owned_by(model: type[Any], hops: list[ForeignKey], partner_id: int) -> Select[Any]:
    stmt = select(model.__table__.c.id)
    for fk in hops:
        stmt = stmt.join(fk.column.table, fk.parent == fk.column)
    return stmt.where(m.Partner.__table__.c.id == partner_id)


async def partner_id(api: Api, email: str) -> int:
    return int((await api.rows(select(m.User.partner_id).where(m.User.email == email)))[0][0])


async def ids_of_every_node_type(api: Api, email: str, *, internal: bool) -> tuple[list[str], list[str]]:
    """Up to three IDs of each Node type that belong to `email`'s Partner (internal notes
    only if `internal`), and the names of the types that belong to no Partner."""
    pid = await partner_id(api, email)
    ids: list[str] = []
    public: list[str] = []
    for name, cls in sorted(node_types().items()):
        hops = ownership(cls.node_model)
        if hops is None:
            public.append(name)
            continue
        stmt = owned_by(cls.node_model, hops, pid).where(visibility.shown(cls.node_model))
        if "internal" in cls.node_model.__table__.c and not internal:
            stmt = stmt.where(cls.node_model.__table__.c.internal.is_(False))
        rows = await api.rows(stmt.order_by(cls.node_model.__table__.c.id).limit(3))
        assert rows, f"the demo data has a {name} of {email}'s Partner"
        ids += [to_global_id(name, r[0]) for r in rows]
    return ids, public


async def test_every_node_type_of_another_partner_reads_as_null(ro_api: Api) -> None:
    ids, _ = await ids_of_every_node_type(ro_api, BLUEBIRD, internal=True)
    for viewer in (OWNER, MEMBER):
        assert (await ro_api.gql(NODES, {"ids": ids}, as_=viewer))["nodes"] == [None] * len(ids)
    staff = (await ro_api.gql(NODES, {"ids": ids}, as_=SUPPORT))["nodes"]
    assert [n["id"] for n in staff] == ids, "the IDs are real: staff read every one"
    # Garbage and unknown IDs read the same way.
    nodes = (await ro_api.gql(NODES, {"ids": ["garbage", to_global_id("Invoice", 10**9)]}, as_=OWNER))["nodes"]
    assert nodes == [None, None]


async def test_every_node_type_of_its_own_partner_resolves(ro_api: Api) -> None:
    ids, public = await ids_of_every_node_type(ro_api, OWNER, internal=False)
    assert public == ["AddOnProduct", "Plan"], "only the catalogue belongs to no Partner"
    products = (await ro_api.gql("{ plans { id } addOnProducts { id } }", as_=OWNER)).values()
    ids += [p["id"] for listed in products for p in listed]
    for viewer in (OWNER, MEMBER, SUPPORT, BILLING):
        nodes = (await ro_api.gql(NODES, {"ids": ids}, as_=viewer))["nodes"]
        assert [n and n["id"] for n in nodes] == ids, viewer


def test_a_node_type_needs_a_visibility_rule_for_its_model() -> None:
    with pytest.raises(TypeError, match="has no rule in services/visibility.py"):
        class Secret(Node, model=m.IdempotencyKey):  # noqa: F841 - never made
            pass
    gc.collect()  # the half-made class must not be found as a Node type
    assert "Secret" not in node_types()


# ---- People --------------------------------------------------------------------------

async def add_support_rep(api: Api, email: str, name: str) -> str:
    """A new support representative who has not touched any ticket yet; returns its ID.
    (No service creates staff users: they come from Revampd's own directory.)"""
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as session, session.begin():
            user = m.User(email=email, name=name, role="SUPPORT", partner_id=None,
                          created_at=NOW)
            session.add(user)
            await session.flush()
            uid = user.id
    finally:
        await engine.dispose()
    api.ids[email] = uid
    api.tokens[email] = issue_dev_token(api.settings, uid, None, ["SUPPORT"])
    return to_global_id("User", uid)


async def user(api: Api, gid: str, *, as_: str) -> dict[str, Any] | None:
    node = (await api.gql(USERS, {"ids": [gid]}, as_=as_))["nodes"][0]
    return dict(node) if node is not None else None


async def mutation(api: Api, name: str, input: dict[str, Any], result: str, *, as_: str) -> dict[str, Any]:
    type_name = name[0].upper() + name[1:] + "Input"
    q = f"mutation($input: {type_name}!) {{ {name}(input: $input) {{ {result} userErrors {{ code }} }} }}"
    payload = (await api.gql(q, {"input": input}, as_=as_))[name]
    assert payload["userErrors"] == [], payload
    return dict(payload)


async def new_ticket(api: Api) -> str:
    input = {"title": "Webhook retries", "description": "Our endpoint sees no retries.", "priority": "HIGH"}
    return str((await mutation(api, "submitTicket", input, "ticket { id }", as_=MEMBER))["ticket"]["id"])


async def test_a_partner_sees_the_rep_assigned_to_its_ticket_by_name_only(api: Api) -> None:
    casey = await add_support_rep(api, CASEY, "Casey Morgan")
    assert await user(api, casey, as_=OWNER) is None, "not on any of Northwind's tickets yet"
    ticket = await new_ticket(api)
    await mutation(api, "assignTicket", {"ticketId": ticket, "assigneeId": casey}, "ticket { id }", as_=SUPPORT)

    name_only = {"id": casey, "name": "Casey Morgan", "email": None}
    seen = (await api.gql(TICKET, {"id": ticket}, as_=MEMBER))["node"]
    assert seen["assignedTo"] == name_only
    assert await user(api, casey, as_=OWNER) == {**name_only, "isRevampdStaff": True}
    assert await user(api, casey, as_=BLUEBIRD) is None, "Casey is on none of Bluebird's tickets"
    assert (await user(api, casey, as_=SUPPORT) or {}).get("email") == CASEY


async def test_a_rep_who_only_wrote_internal_notes_stays_invisible_to_the_partner(api: Api) -> None:
    casey = await add_support_rep(api, CASEY, "Casey Morgan")
    ticket = await new_ticket(api)
    await mutation(api, "addTicketNote", {"ticketId": ticket, "body": "Looks like a queue issue."},
                   "ticket { id }", as_=CASEY)

    assert await user(api, casey, as_=OWNER) is None
    seen = (await api.gql(TICKET, {"id": ticket}, as_=OWNER))["node"]
    assert seen["messages"]["edges"] == [] and seen["assignedTo"] is None

    # A reply the Partner can read shows who wrote it, by name.
    await mutation(api, "replyToTicket", {"ticketId": ticket, "body": "Fixed on our side."},
                   "ticket { id }", as_=CASEY)
    seen = (await api.gql(TICKET, {"id": ticket}, as_=OWNER))["node"]
    authors = [e["node"]["author"] for e in seen["messages"]["edges"]]
    assert authors == [{"id": casey, "name": "Casey Morgan", "email": None}]
    assert (await user(api, casey, as_=OWNER) or {}).get("name") == "Casey Morgan"


async def test_a_partner_reads_staff_on_its_tickets_by_name_and_no_one_else(ro_api: Api) -> None:
    """Its own users with email; staff on its tickets by name; other staff and other
    Partners' users not at all."""
    cid = await ro_api.connection_id(OWNER)
    partner_id = (await ro_api.rows(select(m.Connection.partner_id).where(m.Connection.id == cid)))[0][0]
    on_its_tickets = {r[0] for r in await ro_api.rows(union(
        select(m.Ticket.assigned_to_id).where(m.Ticket.connection_id == cid),
        select(m.TicketMessage.author_id).join(m.Ticket)
        .where(m.Ticket.connection_id == cid, m.TicketMessage.internal.is_(False)),
    ))}
    users = await ro_api.rows(select(m.User.id, m.User.name, m.User.email, m.User.partner_id))
    seen = (await ro_api.gql(USERS, {"ids": [to_global_id("User", u.id) for u in users]}, as_=OWNER))["nodes"]

    staff = {u.id for u in users if u.partner_id is None}
    assert staff & on_its_tickets and staff - on_its_tickets, "the demo data has staff on and off its tickets"
    assert ro_api.ids[BILLING] in staff - on_its_tickets
    for u, node in zip(users, seen, strict=True):
        if u.partner_id == partner_id:
            assert node is not None and node["email"] == u.email
        elif u.id in staff & on_its_tickets:
            assert node is not None and (node["name"], node["email"]) == (u.name, None)
        else:
            assert node is None, u.email


async def test_staff_read_every_user_with_email(ro_api: Api) -> None:
    users = await ro_api.rows(select(m.User.id, m.User.email).order_by(m.User.id))
    ids = [to_global_id("User", u.id) for u in users]
    for viewer in (SUPPORT, BILLING):
        seen = (await ro_api.gql(USERS, {"ids": ids}, as_=viewer))["nodes"]
        assert [n["email"] for n in seen] == [u.email for u in users]
