"""Support tickets through the GraphQL API: Partners and Revampd support in one conversation."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from db import models as m
from db.engine import create_engine, write_sessions
from schema.base import to_global_id
from server import cli
from services import tickets as ticket_service
from tests.clock import NOW
from tests.conftest import Api

OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"
BLUEBIRD = "owner@bluebird.example"
CEDAR = "owner@cedar.example"
SUPPORT = "support@revampd.example"
SUPPORT2 = "support2@revampd.example"
BILLING = "billing@revampd.example"

TICKET = """id number title description status priority createdAt updatedAt lastActivityAt
  resolvedAt closedAt messageCount assignedTo { id email } createdBy { email }
  lastMessage { id body internal } subject { __typename id }"""
MESSAGE = "message { id body internal author { email } }"


# ---- helpers ------------------------------------------------------------------------



def _user(api: Api, email: str) -> str:
    return to_global_id("User", api.ids[email])


async def mutate(api: Api, name: str, input: dict[str, Any], *, as_: str) -> dict[str, Any]:
    """The payload of mutation `name` (fields: ticket, message where there is one, userErrors)."""
    extra = MESSAGE if name in ("replyToTicket", "addTicketNote") else ""
    type_name = name[0].upper() + name[1:] + "Input"
    q = f"""mutation($input: {type_name}!) {{ {name}(input: $input) {{
        ticket {{ {TICKET} }} {extra} userErrors {{ field code message }} clientMutationId }} }}"""
    return dict((await api.gql(q, {"input": input}, as_=as_))[name])


async def ok(api: Api, name: str, input: dict[str, Any], *, as_: str) -> dict[str, Any]:
    payload = await mutate(api, name, input, as_=as_)
    assert payload["userErrors"] == [], payload["userErrors"]
    return payload


async def refused(api: Api, name: str, input: dict[str, Any], *, as_: str) -> dict[str, Any]:
    payload = await mutate(api, name, input, as_=as_)
    assert payload["ticket"] is None and len(payload["userErrors"]) == 1, payload
    return dict(payload["userErrors"][0])


async def submit(api: Api, *, as_: str = MEMBER, **input: Any) -> dict[str, Any]:
    fields = {"title": "Webhook retries", "description": "Our webhook endpoint sees no retries.",
              "priority": "MEDIUM", **input}
    return dict((await ok(api, "submitTicket", fields, as_=as_))["ticket"])


async def move(api: Api, ticket_id: str, *statuses: str) -> dict[str, Any]:
    ticket: dict[str, Any] = {}
    for status in statuses:
        ticket = (await ok(api, "updateTicketStatus", {"ticketId": ticket_id, "status": status}, as_=SUPPORT))["ticket"]
    return ticket


async def read_ticket(api: Api, ticket_id: str, *, as_: str) -> dict[str, Any] | None:
    q = f"""query($id: ID!) {{ node(id: $id) {{ ... on Ticket {{ {TICKET}
        messages(first: 100) {{ edges {{ node {{ id body internal }} }} }} }} }} }}"""
    node = (await api.gql(q, {"id": ticket_id}, as_=as_))["node"]
    return dict(node) if node is not None else None


async def connection_tickets(api: Api, filter: dict[str, Any] | None = None, *, as_: str, first: int = 100) -> list[dict[str, Any]]:
    q = f"""query($f: TicketFilter, $first: Int) {{ viewer {{ partner {{ revampdConnection {{
        tickets(first: $first, filter: $f) {{ edges {{ node {{ {TICKET} }} }} }} }} }} }} }}"""
    data = await api.gql(q, {"f": filter, "first": first}, as_=as_)
    return [e["node"] for e in data["viewer"]["partner"]["revampdConnection"]["tickets"]["edges"]]


QUEUE = f"""query($first: Int, $after: String, $f: SupportTicketFilter) {{
  supportTickets(first: $first, after: $after, filter: $f) {{
    edges {{ cursor node {{ {TICKET} partner {{ id name }} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"""


async def queue(api: Api, filter: dict[str, Any] | None = None, *, as_: str = SUPPORT) -> list[dict[str, Any]]:
    data = await api.gql(QUEUE, {"first": 100, "f": filter}, as_=as_)
    return [e["node"] for e in data["supportTickets"]["edges"]]


# ---- Partners: submit ---------------------------------------------------------------

async def test_any_partner_user_submits_an_open_unassigned_ticket_with_the_next_number(api: Api) -> None:
    cid = await api.connection_id(MEMBER)
    (next_number,) = (await api.rows(select(m.Connection.next_ticket_number).where(m.Connection.id == cid)))[0]
    by_member = await submit(api, as_=MEMBER, title="  Number porting  ", description="  Port 3 numbers. ",
                             priority="HIGH")
    by_owner = await submit(api, as_=OWNER)
    assert by_member["number"] == f"RVP-{next_number}" and by_owner["number"] == f"RVP-{next_number + 1}"
    assert by_member["title"] == "Number porting" and by_member["description"] == "Port 3 numbers."
    assert (by_member["status"], by_member["priority"], by_member["assignedTo"]) == ("OPEN", "HIGH", None)
    assert by_member["createdBy"]["email"] == MEMBER and by_member["messageCount"] == 0
    # Newest activity first: both head the Partner's list, seen by any of its users.
    listed = await connection_tickets(api, as_=OWNER, first=2)
    assert [t["id"] for t in listed] == [by_owner["id"], by_member["id"]]


async def test_ticket_numbers_count_per_connection(api: Api) -> None:
    northwind = await submit(api, as_=MEMBER)
    bluebird = await submit(api, as_=BLUEBIRD)
    cedar = await submit(api, as_=CEDAR)
    for ticket, email in ((northwind, MEMBER), (bluebird, BLUEBIRD), (cedar, CEDAR)):
        cid = await api.connection_id(email)
        (counter,) = (await api.rows(select(m.Connection.next_ticket_number).where(m.Connection.id == cid)))[0]
        assert ticket["number"] == f"RVP-{counter - 1}", email


async def test_title_must_be_1_to_200_characters_after_trimming(api: Api) -> None:
    for title in ("", "    ", "x" * 201):
        err = await refused(api, "submitTicket", {"title": title, "description": "d", "priority": "LOW"}, as_=MEMBER)
        assert (err["code"], err["field"]) == ("INVALID_TITLE", ["input", "title"])
    assert "200" in err["message"]
    assert (await submit(api, title=" " + "x" * 200 + " "))["title"] == "x" * 200


async def test_description_must_be_at_most_10000_characters_and_not_blank(api: Api) -> None:
    for description in ("  ", "x" * 10_001):
        err = await refused(api, "submitTicket", {"title": "t", "description": description, "priority": "LOW"}, as_=MEMBER)
        assert (err["code"], err["field"]) == ("INVALID_DESCRIPTION", ["input", "description"])
    assert len((await submit(api, description="x" * 10_000))["description"]) == 10_000


async def test_priority_must_be_low_medium_or_high(api: Api) -> None:
    q = "mutation { submitTicket(input: {title: \"t\", description: \"d\", priority: URGENT}) { ticket { id } } }"
    assert await api.errors(q, as_=MEMBER)


async def test_staff_cannot_submit_tickets(api: Api) -> None:
    for staff in (SUPPORT, BILLING):
        err = await refused(api, "submitTicket", {"title": "t", "description": "d", "priority": "LOW"}, as_=staff)
        assert err["code"] == "FORBIDDEN"


async def test_mutations_echo_the_client_mutation_id(api: Api) -> None:
    payload = await ok(api, "submitTicket", {"title": "t", "description": "d", "priority": "LOW",
                                             "clientMutationId": "abc-1"}, as_=MEMBER)
    assert payload["clientMutationId"] == "abc-1"
    refusal = await mutate(api, "closeTicket", {"ticketId": "garbage", "clientMutationId": "abc-2"}, as_=MEMBER)
    assert refusal["clientMutationId"] == "abc-2" and refusal["userErrors"][0]["code"] == "NOT_FOUND"


# ---- Partners: subject --------------------------------------------------------------

async def test_ticket_about_an_invoice_or_payout_shows_it_to_both_sides(api: Api) -> None:
    cid = await api.connection_id(OWNER)
    invoice_id = (await api.rows(select(m.Invoice.id).where(m.Invoice.connection_id == cid).limit(1)))[0][0]
    payout_id = (await api.rows(select(m.Payout.id).where(m.Payout.connection_id == cid).limit(1)))[0][0]
    for type_name, pk in (("Invoice", invoice_id), ("Payout", payout_id)):
        gid = to_global_id(type_name, pk)
        ticket = await submit(api, subjectId=gid)
        assert ticket["subject"] == {"__typename": type_name, "id": gid}
        for viewer in (OWNER, SUPPORT):
            seen = await read_ticket(api, ticket["id"], as_=viewer)
            assert seen is not None and seen["subject"] == {"__typename": type_name, "id": gid}
        staff_view = await queue(api, {"status": ["OPEN"], "unassigned": True})
        assert {"__typename": type_name, "id": gid} in [t["subject"] for t in staff_view]


async def test_subject_of_another_partner_reads_like_not_found(api: Api) -> None:
    cid = await api.connection_id(BLUEBIRD)
    foreign = (await api.rows(select(m.Invoice.id).where(m.Invoice.connection_id == cid).limit(1)))[0][0]
    missing = to_global_id("Payout", 10**9)
    not_a_subject = to_global_id("Plan", 1)
    for gid in (to_global_id("Invoice", foreign), missing, not_a_subject, "garbage"):
        err = await refused(api, "submitTicket", {"title": "t", "description": "d", "priority": "LOW",
                                                  "subjectId": gid}, as_=MEMBER)
        assert (err["code"], err["field"]) == ("NOT_FOUND", ["input", "subjectId"])


# ---- Partners: reply and close ------------------------------------------------------

async def test_reply_adds_a_message_and_moves_the_ticket_to_the_top(api: Api) -> None:
    older = await submit(api, title="Older")
    newer = await submit(api, title="Newer")
    payload = await ok(api, "replyToTicket", {"ticketId": older["id"], "body": "  Any news?  "}, as_=OWNER)
    assert payload["message"]["body"] == "Any news?" and payload["message"]["internal"] is False
    assert payload["message"]["author"]["email"] == OWNER
    ticket = payload["ticket"]
    assert ticket["messageCount"] == 1 and ticket["lastMessage"]["id"] == payload["message"]["id"]
    assert ticket["lastActivityAt"] > older["lastActivityAt"] and ticket["updatedAt"] > older["updatedAt"]
    listed = await connection_tickets(api, as_=MEMBER, first=2)
    assert [t["id"] for t in listed] == [older["id"], newer["id"]]
    answer = await ok(api, "replyToTicket", {"ticketId": older["id"], "body": "Looking into it."}, as_=SUPPORT)
    assert answer["ticket"]["messageCount"] == 2 and answer["message"]["author"]["email"] == SUPPORT


async def test_reply_body_must_be_1_to_10000_characters(api: Api) -> None:
    ticket = await submit(api)
    for body in ("", " \n ", "x" * 10_001):
        err = await refused(api, "replyToTicket", {"ticketId": ticket["id"], "body": body}, as_=MEMBER)
        assert (err["code"], err["field"]) == ("INVALID_BODY", ["input", "body"])
    assert (await read_ticket(api, ticket["id"], as_=MEMBER))["messageCount"] == 0  # type: ignore[index]


async def test_partner_reply_reopens_a_resolved_ticket(api: Api) -> None:
    ticket = await submit(api)
    resolved = await move(api, ticket["id"], "IN_PROGRESS", "RESOLVED")
    assert resolved["status"] == "RESOLVED" and resolved["resolvedAt"] is not None
    reopened = (await ok(api, "replyToTicket", {"ticketId": ticket["id"], "body": "Still broken."}, as_=MEMBER))["ticket"]
    assert reopened["status"] == "OPEN" and reopened["resolvedAt"] is None


async def test_staff_reply_leaves_a_resolved_ticket_resolved(api: Api) -> None:
    ticket = await submit(api)
    await move(api, ticket["id"], "IN_PROGRESS", "RESOLVED")
    after = (await ok(api, "replyToTicket", {"ticketId": ticket["id"], "body": "Anything else?"}, as_=SUPPORT))["ticket"]
    assert after["status"] == "RESOLVED"


async def test_partner_closes_a_ticket(api: Api) -> None:
    ticket = await submit(api)
    closed = (await ok(api, "closeTicket", {"ticketId": ticket["id"]}, as_=OWNER))["ticket"]
    assert closed["status"] == "CLOSED" and closed["closedAt"] is not None
    assert closed["lastActivityAt"] > ticket["lastActivityAt"]
    err = await refused(api, "closeTicket", {"ticketId": ticket["id"]}, as_=OWNER)
    assert err["code"] == "TICKET_CLOSED"


async def test_reply_to_closed_ticket_is_refused(api: Api) -> None:
    ticket = await submit(api)
    await ok(api, "closeTicket", {"ticketId": ticket["id"]}, as_=MEMBER)
    for who in (MEMBER, SUPPORT):
        err = await refused(api, "replyToTicket", {"ticketId": ticket["id"], "body": "One more thing"}, as_=who)
        assert (err["code"], err["field"]) == ("TICKET_CLOSED", ["input", "ticketId"])
        assert "new ticket" in err["message"]


async def test_another_partners_ticket_reads_like_not_found(api: Api) -> None:
    theirs = await submit(api, as_=BLUEBIRD)
    missing = to_global_id("Ticket", 10**9)
    for gid in (theirs["id"], missing, "garbage", to_global_id("Invoice", 1)):
        for name, extra in (("replyToTicket", {"body": "hi"}), ("closeTicket", {})):
            err = await refused(api, name, {"ticketId": gid, **extra}, as_=OWNER)
            assert (err["code"], err["field"]) == ("NOT_FOUND", ["input", "ticketId"])
    assert await read_ticket(api, theirs["id"], as_=OWNER) is None
    assert theirs["id"] not in [t["id"] for t in await connection_tickets(api, as_=OWNER)]
    untouched = await read_ticket(api, theirs["id"], as_=BLUEBIRD)
    assert untouched is not None and untouched["status"] == "OPEN" and untouched["messageCount"] == 0


# ---- Partners: the list -------------------------------------------------------------

async def test_partner_ticket_list_is_newest_activity_first_with_assignee_count_and_last_message(ro_api: Api) -> None:
    listed = await connection_tickets(ro_api, as_=MEMBER)
    cid = await ro_api.connection_id(MEMBER)
    expected = await ro_api.rows(select(m.Ticket.id).where(m.Ticket.connection_id == cid)
        .order_by(m.Ticket.last_activity_at.desc(), m.Ticket.id.desc()),
    )
    assert [t["id"] for t in listed] == [to_global_id("Ticket", r[0]) for r in expected]
    assigned = [t for t in listed if t["assignedTo"] is not None]
    assert assigned and {t["assignedTo"]["id"] for t in assigned} <= {_user(ro_api, SUPPORT), _user(ro_api, SUPPORT2)}
    assert all(t["assignedTo"]["email"] is None for t in assigned), "a Partner sees support reps by name only"
    with_messages = [t for t in listed if t["messageCount"]]
    assert with_messages and all(t["lastMessage"] and not t["lastMessage"]["internal"] for t in with_messages)


async def test_partner_ticket_list_filters_by_status_priority_and_search(ro_api: Api) -> None:
    every = await connection_tickets(ro_api, as_=OWNER)
    for status in ("OPEN", "IN_PROGRESS", "RESOLVED", "CLOSED"):
        got = await connection_tickets(ro_api, {"status": [status]}, as_=OWNER)
        assert [t["id"] for t in got] == [t["id"] for t in every if t["status"] == status]
    high = await connection_tickets(ro_api, {"priority": ["HIGH"]}, as_=OWNER)
    assert high and [t["id"] for t in high] == [t["id"] for t in every if t["priority"] == "HIGH"]
    found = await connection_tickets(ro_api, {"search": "TOLL-FREE"}, as_=OWNER)
    assert found and all("toll-free" in (t["title"] + t["description"]).lower() for t in found)
    both = await connection_tickets(ro_api, {"search": "toll-free", "status": ["OPEN"]}, as_=OWNER)
    assert all(t["status"] == "OPEN" for t in both)
    for odd in ("%", "_", "\\", "100%\\"):
        assert await connection_tickets(ro_api, {"search": odd}, as_=OWNER) == []


# ---- Revampd support: the queue -----------------------------------------------------

async def test_support_queue_spans_partners_oldest_waiting_first(ro_api: Api) -> None:
    tickets = await queue(ro_api)
    expected = await ro_api.rows(
        select(m.Ticket.id)
        .where(m.Ticket.status.in_(["OPEN", "IN_PROGRESS"]))
        .order_by(m.Ticket.last_activity_at, m.Ticket.id)
    )
    assert [t["id"] for t in tickets] == [to_global_id("Ticket", r[0]) for r in expected]
    assert len({t["partner"]["name"] for t in tickets}) == 3
    everything = await queue(ro_api, {"status": ["OPEN", "IN_PROGRESS", "RESOLVED", "CLOSED"]})
    (total,) = (await ro_api.rows(select(func.count()).select_from(m.Ticket)))[0]
    assert len(everything) == total > len(tickets)


async def test_support_queue_pages_without_gaps_or_repeats(ro_api: Api) -> None:
    seen: list[str] = []
    after = None
    while True:
        data = (await ro_api.gql(QUEUE, {"first": 4, "after": after}, as_=SUPPORT))["supportTickets"]
        seen += [e["node"]["id"] for e in data["edges"]]
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert seen == [t["id"] for t in await queue(ro_api)]


async def test_support_queue_filters(ro_api: Api) -> None:
    every = await queue(ro_api)
    bluebird = (await ro_api.gql("{ viewer { partner { id } } }", as_=BLUEBIRD))["viewer"]["partner"]["id"]
    by_partner = await queue(ro_api, {"partnerId": bluebird})
    assert by_partner and [t["id"] for t in by_partner] == [t["id"] for t in every if t["partner"]["id"] == bluebird]
    mine = await queue(ro_api, {"assigneeId": _user(ro_api, SUPPORT2)})
    assert mine and [t["id"] for t in mine] == [
        t["id"] for t in every if t["assignedTo"] and t["assignedTo"]["email"] == SUPPORT2
    ]
    unassigned = await queue(ro_api, {"unassigned": True})
    assert unassigned and [t["id"] for t in unassigned] == [t["id"] for t in every if t["assignedTo"] is None]
    assigned = await queue(ro_api, {"unassigned": False})
    assert len(assigned) + len(unassigned) == len(every)
    waiting = await queue(ro_api, {"status": ["OPEN", "IN_PROGRESS"], "priority": ["HIGH"]})
    assert waiting and [t["id"] for t in waiting] == [
        t["id"] for t in every if t["status"] in ("OPEN", "IN_PROGRESS") and t["priority"] == "HIGH"
    ]


async def test_support_queue_is_for_revampd_staff_only(ro_api: Api) -> None:
    for partner_user in (OWNER, MEMBER):
        errors = await ro_api.errors(QUEUE, {"first": 5}, as_=partner_user)
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_new_tickets_wait_in_the_queue_unassigned(api: Api) -> None:
    ticket = await submit(api)
    waiting = await queue(api, {"unassigned": True, "status": ["OPEN"]})
    assert waiting[-1]["id"] == ticket["id"]  # newest activity waits last


# ---- Revampd support: assign, status, notes ------------------------------------------

async def test_support_assigns_a_ticket_to_a_support_representative(api: Api) -> None:
    ticket = await submit(api)
    assigned = (await ok(api, "assignTicket", {"ticketId": ticket["id"], "assigneeId": _user(api, SUPPORT2)}, as_=SUPPORT))["ticket"]
    assert assigned["assignedTo"]["email"] == SUPPORT2 and assigned["updatedAt"] > ticket["updatedAt"]
    partner_view = await read_ticket(api, ticket["id"], as_=MEMBER)
    assert partner_view is not None and partner_view["assignedTo"] == {"id": _user(api, SUPPORT2), "email": None}
    assert [t["id"] for t in await queue(api, {"assigneeId": _user(api, SUPPORT2), "status": ["OPEN"]})][-1] == ticket["id"]


async def test_tickets_are_assigned_to_support_users_only(api: Api) -> None:
    ticket = await submit(api)
    for email in (BILLING, OWNER, BLUEBIRD):
        err = await refused(api, "assignTicket", {"ticketId": ticket["id"], "assigneeId": _user(api, email)}, as_=SUPPORT)
        assert (err["code"], err["field"]) == ("ASSIGNEE_NOT_SUPPORT", ["input", "assigneeId"])
    for gid in (to_global_id("User", 10**9), "garbage", ticket["id"]):
        err = await refused(api, "assignTicket", {"ticketId": ticket["id"], "assigneeId": gid}, as_=SUPPORT)
        assert (err["code"], err["field"]) == ("NOT_FOUND", ["input", "assigneeId"])


async def test_status_moves_open_in_progress_resolved_closed(api: Api) -> None:
    ticket = await submit(api)
    in_progress = await move(api, ticket["id"], "IN_PROGRESS")
    assert in_progress["status"] == "IN_PROGRESS" and in_progress["lastActivityAt"] > ticket["lastActivityAt"]
    resolved = await move(api, ticket["id"], "RESOLVED")
    assert resolved["resolvedAt"] is not None and resolved["closedAt"] is None
    closed = await move(api, ticket["id"], "CLOSED")
    assert closed["status"] == "CLOSED" and closed["closedAt"] is not None
    assert closed["resolvedAt"] == resolved["resolvedAt"]


async def test_illegal_status_change_names_the_allowed_moves(api: Api) -> None:
    ticket = await submit(api)
    for status, allowed in (("RESOLVED", "IN_PROGRESS or CLOSED"), ("OPEN", "IN_PROGRESS or CLOSED")):
        err = await refused(api, "updateTicketStatus", {"ticketId": ticket["id"], "status": status}, as_=SUPPORT)
        assert (err["code"], err["field"]) == ("ILLEGAL_STATUS_CHANGE", ["input", "status"])
        assert allowed in err["message"], err["message"]
    await move(api, ticket["id"], "IN_PROGRESS")
    err = await refused(api, "updateTicketStatus", {"ticketId": ticket["id"], "status": "OPEN"}, as_=SUPPORT)
    assert "RESOLVED or CLOSED" in err["message"]
    await move(api, ticket["id"], "RESOLVED", "IN_PROGRESS", "RESOLVED", "CLOSED")
    for status in ("OPEN", "IN_PROGRESS", "RESOLVED"):
        err = await refused(api, "updateTicketStatus", {"ticketId": ticket["id"], "status": status}, as_=SUPPORT)
        assert err["code"] == "ILLEGAL_STATUS_CHANGE" and "new ticket" in err["message"]


async def test_closed_ticket_cannot_be_reassigned(api: Api) -> None:
    ticket = await submit(api)
    await ok(api, "closeTicket", {"ticketId": ticket["id"]}, as_=MEMBER)
    err = await refused(api, "assignTicket", {"ticketId": ticket["id"], "assigneeId": _user(api, SUPPORT)}, as_=SUPPORT)
    assert err["code"] == "TICKET_CLOSED"


async def test_support_actions_need_the_support_role(api: Api) -> None:
    ticket = await submit(api)
    actions = (
        ("assignTicket", {"assigneeId": _user(api, SUPPORT)}),
        ("updateTicketStatus", {"status": "IN_PROGRESS"}),
        ("addTicketNote", {"body": "note"}),
    )
    for who in (OWNER, MEMBER, BILLING, BLUEBIRD):
        for name, extra in actions:
            err = await refused(api, name, {"ticketId": ticket["id"], **extra}, as_=who)
            assert err["code"] == "FORBIDDEN", (who, name, err)
    seen = await read_ticket(api, ticket["id"], as_=SUPPORT)
    assert seen is not None and (seen["status"], seen["assignedTo"], seen["messageCount"]) == ("OPEN", None, 0)


async def test_internal_notes_never_reach_partners(api: Api) -> None:
    ticket = await submit(api)
    reply = await ok(api, "replyToTicket", {"ticketId": ticket["id"], "body": "Hello?"}, as_=MEMBER)
    before = await read_ticket(api, ticket["id"], as_=MEMBER)
    payload = await ok(api, "addTicketNote", {"ticketId": ticket["id"], "body": "  Partner is on legacy webhooks.  "}, as_=SUPPORT)
    note = payload["message"]
    assert note["internal"] is True and note["body"] == "Partner is on legacy webhooks."
    assert payload["ticket"]["messageCount"] == 2 and payload["ticket"]["lastMessage"]["id"] == note["id"]

    # Staff see the note on every path.
    staff = await read_ticket(api, ticket["id"], as_=SUPPORT)
    assert staff is not None and staff["messageCount"] == 2 and staff["lastMessage"]["id"] == note["id"]
    assert note["id"] in [e["node"]["id"] for e in staff["messages"]["edges"]]
    assert (await api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": note["id"]}, as_=BILLING))["node"]

    # Partners see no trace of it: not in the ticket, the list, a lookup, a count or a timestamp.
    for partner_user in (OWNER, MEMBER):
        seen = await read_ticket(api, ticket["id"], as_=partner_user)
        assert seen == before
        assert seen is not None and seen["lastMessage"]["id"] == reply["message"]["id"]
        assert [e["node"]["id"] for e in seen["messages"]["edges"]] == [reply["message"]["id"]]
        listed = {t["id"]: t for t in await connection_tickets(api, as_=partner_user)}[ticket["id"]]
        assert (listed["messageCount"], listed["lastMessage"]["id"]) == (1, reply["message"]["id"])
        q = """query($n: ID!, $t: ID!) { node(id: $n) { id } nodes(ids: [$n]) { id }
               t: node(id: $t) { ... on Ticket { messages(last: 5) { edges { node { id } } } } } }"""
        lookups = await api.gql(q, {"n": note["id"], "t": ticket["id"]}, as_=partner_user)
        assert lookups["node"] is None and lookups["nodes"] == [None]
        assert [e["node"]["id"] for e in lookups["t"]["messages"]["edges"]] == [reply["message"]["id"]]
    # ... nor in what a Partner's own mutation returns.
    after = await ok(api, "replyToTicket", {"ticketId": ticket["id"], "body": "Thanks"}, as_=MEMBER)
    assert after["ticket"]["messageCount"] == 2 and not after["ticket"]["lastMessage"]["internal"]


async def test_internal_note_body_must_be_1_to_10000_characters(api: Api) -> None:
    ticket = await submit(api)
    for body in (" ", "x" * 10_001):
        err = await refused(api, "addTicketNote", {"ticketId": ticket["id"], "body": body}, as_=SUPPORT)
        assert err["code"] == "INVALID_BODY"


# ---- who may do what (the README's table) -------------------------------------------

ALLOWED, FORBIDDEN, NOT_FOUND = "ok", "FORBIDDEN", "NOT_FOUND"
USERS = (OWNER, MEMBER, BLUEBIRD, SUPPORT, BILLING)
# For a ticket of Northwind; columns in the order of USERS.
ROLE_TABLE: dict[str, tuple[str, ...]] = {
    "replyToTicket": (ALLOWED, ALLOWED, NOT_FOUND, ALLOWED, ALLOWED),
    "closeTicket": (ALLOWED, ALLOWED, NOT_FOUND, ALLOWED, ALLOWED),
    "assignTicket": (FORBIDDEN, FORBIDDEN, FORBIDDEN, ALLOWED, FORBIDDEN),
    "updateTicketStatus": (FORBIDDEN, FORBIDDEN, FORBIDDEN, ALLOWED, FORBIDDEN),
    "addTicketNote": (FORBIDDEN, FORBIDDEN, FORBIDDEN, ALLOWED, FORBIDDEN),
}


async def test_who_may_do_what_with_tickets(api: Api) -> None:
    for who, expected in zip(USERS, (ALLOWED, ALLOWED, ALLOWED, FORBIDDEN, FORBIDDEN), strict=False):
        payload = await mutate(api, "submitTicket", {"title": "t", "description": "d", "priority": "LOW"}, as_=who)
        assert (payload["userErrors"][0]["code"] if payload["userErrors"] else ALLOWED) == expected, who
    extras: dict[str, dict[str, Any]] = {
        "replyToTicket": {"body": "hi"},
        "closeTicket": {},
        "assignTicket": {"assigneeId": _user(api, SUPPORT2)},
        "updateTicketStatus": {"status": "IN_PROGRESS"},
        "addTicketNote": {"body": "note"},
    }
    for name, row in ROLE_TABLE.items():
        for who, expected in zip(USERS, row, strict=False):
            ticket = await submit(api, as_=MEMBER)
            payload = await mutate(api, name, {"ticketId": ticket["id"], **extras[name]}, as_=who)
            got = payload["userErrors"][0]["code"] if payload["userErrors"] else ALLOWED
            assert got == expected, (name, who, payload["userErrors"])


# ---- auto-close ---------------------------------------------------------------------

async def _resolved(api: Api) -> list[tuple[int, datetime]]:
    rows = await api.rows(select(m.Ticket.id, m.Ticket.resolved_at).where(m.Ticket.status == "RESOLVED"))
    return [(r[0], r[1]) for r in rows]


async def test_auto_close_closes_tickets_resolved_longer_than_the_setting(api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ticket = await submit(api)
    resolved_at = (await move(api, ticket["id"], "IN_PROGRESS", "RESOLVED"))["resolvedAt"]
    now = datetime.fromisoformat(resolved_at) + timedelta(days=3, minutes=1)
    old = [pk for pk, at in await _resolved(api) if at < now - timedelta(days=3)]
    assert ticket["id"] in [to_global_id("Ticket", pk) for pk in old] and len(old) > 1

    monkeypatch.setenv("DATABASE_URL", api.settings.database_url)
    monkeypatch.setenv("TICKET_AUTO_CLOSE_DAYS", "3")
    await asyncio.to_thread(cli.main, ["tickets", "auto-close", "--now", now.isoformat()])
    assert f"closed {len(old)} tickets" in capsys.readouterr().out
    assert not {pk for pk, _ in await _resolved(api)} & set(old)
    closed = await read_ticket(api, ticket["id"], as_=MEMBER)
    assert closed is not None and closed["status"] == "CLOSED"
    assert closed["closedAt"] is not None and datetime.fromisoformat(closed["closedAt"]) == now

    await asyncio.to_thread(cli.main, ["tickets", "auto-close", "--now", now.isoformat()])
    assert "closed 0 tickets" in capsys.readouterr().out


async def test_auto_close_leaves_recently_resolved_tickets(api: Api) -> None:
    ticket = await submit(api)
    resolved_at = datetime.fromisoformat((await move(api, ticket["id"], "IN_PROGRESS", "RESOLVED"))["resolvedAt"])
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as session, session.begin():
            await ticket_service.auto_close(session, now=resolved_at + timedelta(days=7), days=7)
    finally:
        await engine.dispose()
    still = await read_ticket(api, ticket["id"], as_=SUPPORT)
    assert still is not None and still["status"] == "RESOLVED"


# ---- PostgreSQL: concurrency ------------------------------------------------------------

@pytest.mark.postgres
async def test_concurrent_submits_take_distinct_consecutive_numbers(api: Api) -> None:
    cid = await api.connection_id(MEMBER)
    (first,) = (await api.rows(select(m.Connection.next_ticket_number).where(m.Connection.id == cid)))[0]
    made = await asyncio.gather(*(submit(api, as_=(MEMBER, OWNER)[i % 2], title=f"Concurrent {i}") for i in range(10)))
    numbers = sorted(int(t["number"].removeprefix("RVP-")) for t in made)
    assert numbers == list(range(first, first + 10))
    (after,) = (await api.rows(select(m.Connection.next_ticket_number).where(m.Connection.id == cid)))[0]
    assert after == first + 10


@pytest.mark.postgres
async def test_concurrent_auto_close_workers_never_double_close(api: Api) -> None:
    now = NOW + timedelta(days=365)
    expected = len(await _resolved(api))
    assert expected
    engine = create_engine(api.settings.database_url)

    async def worker() -> int:
        async with write_sessions(engine)() as session, session.begin():
            return await ticket_service.auto_close(session, now=now, days=7)

    try:
        counts = await asyncio.gather(*(worker() for _ in range(4)))
    finally:
        await engine.dispose()
    assert sum(counts) == expected and await _resolved(api) == []
