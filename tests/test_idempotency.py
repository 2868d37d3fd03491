"""Idempotency keys through the API: a retried creating mutation answers with the first
result and creates nothing more, however many copies arrive and however they interleave."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from db import models as m
from schema.base import from_global_id
from tests.conftest import Api
from tests.test_addons import ADDON, product_id
from tests.test_ledger import cli
from tests.test_tickets import BLUEBIRD, MEMBER, OWNER, SUPPORT, mutate, ok, submit

CEDAR = "owner@cedar.example"  # no add-ons
TICKET_INPUT = {"title": "Webhook retries", "description": "Our endpoint sees no retries.", "priority": "HIGH"}
KEY_FIELD = ["input", "idempotencyKey"]


async def tickets_of(api: Api, email: str) -> int:
    cid = await api.connection_id(email)
    return int((await api.rows(select(func.count()).select_from(m.Ticket).where(m.Ticket.connection_id == cid)))[0][0])


async def messages_of(api: Api, ticket_gid: str) -> list[tuple[str, bool]]:
    parsed = from_global_id(ticket_gid)
    assert parsed is not None
    rows = await api.rows(
        select(m.TicketMessage.body, m.TicketMessage.internal)
        .where(m.TicketMessage.ticket_id == parsed[1])
        .order_by(m.TicketMessage.id)
    )
    return [(r[0], r[1]) for r in rows]


async def read(api: Api, ticket_gid: str) -> dict[str, Any]:
    q = """query($id: ID!) { node(id: $id) { ... on Ticket {
      id number title description priority status lastActivityAt messageCount } } }"""
    return dict((await api.gql(q, {"id": ticket_gid}, as_=SUPPORT))["node"])


async def keys(api: Api) -> list[tuple[str, str]]:
    rows = await api.rows(select(m.IdempotencyKey.key, m.IdempotencyKey.operation).order_by(m.IdempotencyKey.id))
    return [(r[0], r[1]) for r in rows]


def only_error(payload: dict[str, Any]) -> tuple[str, list[str] | None]:
    assert len(payload["userErrors"]) == 1, payload
    return payload["userErrors"][0]["code"], payload["userErrors"][0]["field"]


async def add_addon(api: Api, as_: str, **input: Any) -> dict[str, Any]:
    doc = f"""mutation($input: AddAddOnInput!) {{ addAddOn(input: $input) {{
      addOn {{ {ADDON} }} userErrors {{ field code message }} clientMutationId }} }}"""
    return dict((await api.gql(doc, {"input": input}, as_=as_))["addAddOn"])


# ---- replays --------------------------------------------------------------------------

async def test_a_retried_submit_returns_the_first_ticket_and_opens_no_other(api: Api) -> None:
    before = await tickets_of(api, MEMBER)
    first = (await ok(api, "submitTicket", {**TICKET_INPUT, "idempotencyKey": "k-1"}, as_=MEMBER))["ticket"]
    # Support takes it up before the retry arrives: the retry sees the ticket as it is now.
    await ok(api, "updateTicketStatus", {"ticketId": first["id"], "status": "IN_PROGRESS"}, as_=SUPPORT)
    retry = await ok(api, "submitTicket", {**TICKET_INPUT, "idempotencyKey": "k-1", "clientMutationId": "again"},
                     as_=MEMBER)
    assert retry["ticket"]["id"] == first["id"] and retry["ticket"]["number"] == first["number"]
    assert retry["ticket"]["status"] == "IN_PROGRESS" and retry["clientMutationId"] == "again"
    assert await tickets_of(api, MEMBER) == before + 1
    fresh = await submit(api, as_=MEMBER)
    assert int(fresh["number"].removeprefix("RVP-")) == int(first["number"].removeprefix("RVP-")) + 1, (
        "a replay takes no ticket number"
    )


async def test_a_retried_reply_adds_one_message_and_changes_nothing(api: Api) -> None:
    ticket = await submit(api)
    input = {"ticketId": ticket["id"], "body": "Any news?", "idempotencyKey": "reply-1"}
    first = await ok(api, "replyToTicket", input, as_=MEMBER)
    after_first = await read(api, ticket["id"])
    retry = await ok(api, "replyToTicket", input, as_=MEMBER)
    assert retry["message"] == first["message"] and retry["ticket"]["id"] == ticket["id"]
    assert await read(api, ticket["id"]) == after_first, "a replay does not touch the ticket"
    assert await messages_of(api, ticket["id"]) == [("Any news?", False)]
    # Even once the ticket is closed, the retry answers with the reply it made.
    await ok(api, "closeTicket", {"ticketId": ticket["id"]}, as_=MEMBER)
    late = await ok(api, "replyToTicket", input, as_=MEMBER)
    assert late["message"]["id"] == first["message"]["id"] and late["ticket"]["status"] == "CLOSED"
    assert await messages_of(api, ticket["id"]) == [("Any news?", False)]


async def test_a_retried_note_adds_one_note(api: Api) -> None:
    ticket = await submit(api)
    input = {"ticketId": ticket["id"], "body": "Root cause: queue config", "idempotencyKey": "note-1"}
    first = await ok(api, "addTicketNote", input, as_=SUPPORT)
    retry = await ok(api, "addTicketNote", input, as_=SUPPORT)
    assert retry["message"] == first["message"] and first["message"]["internal"] is True
    assert await messages_of(api, ticket["id"]) == [("Root cause: queue config", True)]


async def test_a_retried_add_on_returns_the_first_add_on_as_it_now_stands(api: Api) -> None:
    pid = await product_id(api, "LOCAL_NUMBER")
    first = await add_addon(api, CEDAR, productId=pid, quantity=3, idempotencyKey="add-1")
    assert first["userErrors"] == []
    unkeyed = await add_addon(api, CEDAR, productId=pid, quantity=3)
    assert only_error(unkeyed) == ("ALREADY_ADDED", ["input", "productId"]), "without a key a retry is refused"
    doc = "mutation($i: UpdateAddOnInput!) { updateAddOn(input: $i) { userErrors { code } } }"
    await api.gql(doc, {"i": {"addOnId": first["addOn"]["id"], "quantity": 5}}, as_=CEDAR)
    retry = await add_addon(api, CEDAR, productId=pid, quantity=3, idempotencyKey="add-1")
    assert retry["userErrors"] == [] and retry["addOn"]["id"] == first["addOn"]["id"]
    assert retry["addOn"]["quantity"] == 5
    cid = await api.connection_id(CEDAR)
    assert await api.rows(select(m.AddOn.quantity).where(m.AddOn.connection_id == cid)) == [(5,)]


# ---- the same key for something else ---------------------------------------------------

async def test_the_same_key_with_other_input_is_refused_and_changes_nothing(api: Api) -> None:
    first = (await ok(api, "submitTicket", {**TICKET_INPUT, "idempotencyKey": "k-1"}, as_=MEMBER))["ticket"]
    count = await tickets_of(api, MEMBER)
    for other in ({"title": "Another problem"}, {"priority": "LOW"}, {"description": "Other."}):
        payload = await mutate(api, "submitTicket", {**TICKET_INPUT, **other, "idempotencyKey": "k-1"}, as_=MEMBER)
        assert only_error(payload) == ("IDEMPOTENCY_KEY_REUSED", KEY_FIELD) and payload["ticket"] is None
        assert "idempotencyKey" in payload["userErrors"][0]["message"]
    assert await tickets_of(api, MEMBER) == count
    kept = await read(api, first["id"])
    assert [kept[f] for f in ("title", "description", "priority")] == [TICKET_INPUT[f] for f in ("title", "description", "priority")]


async def test_the_same_key_on_another_mutation_is_refused_and_changes_nothing(api: Api) -> None:
    ticket = (await ok(api, "submitTicket", {**TICKET_INPUT, "idempotencyKey": "k-1"}, as_=OWNER))["ticket"]
    reply = await mutate(api, "replyToTicket", {"ticketId": ticket["id"], "body": "hi", "idempotencyKey": "k-1"},
                         as_=OWNER)
    assert only_error(reply) == ("IDEMPOTENCY_KEY_REUSED", KEY_FIELD) and reply["message"] is None
    added = await add_addon(api, OWNER, productId=await product_id(api, "LOCAL_NUMBER"), quantity=1,
                            idempotencyKey="k-1")
    assert only_error(added) == ("IDEMPOTENCY_KEY_REUSED", KEY_FIELD) and added["addOn"] is None
    assert await messages_of(api, ticket["id"]) == []
    assert await keys(api) == [("k-1", "submitTicket")]


async def test_a_key_belongs_to_the_user_who_sent_it(api: Api) -> None:
    counts = {email: await tickets_of(api, email) for email in (MEMBER, BLUEBIRD)}
    made = [(await ok(api, "submitTicket", {**TICKET_INPUT, "idempotencyKey": "shared"}, as_=who))["ticket"]
            for who in (MEMBER, OWNER, BLUEBIRD)]
    assert len({t["id"] for t in made}) == 3, "colleagues and other Partners each get their own ticket"
    assert await tickets_of(api, MEMBER) == counts[MEMBER] + 2
    assert await tickets_of(api, BLUEBIRD) == counts[BLUEBIRD] + 1


# ---- refusals leave the key unused ------------------------------------------------------

async def test_a_refused_first_attempt_leaves_the_key_unused(api: Api) -> None:
    count = await tickets_of(api, MEMBER)
    blank = await mutate(api, "submitTicket", {**TICKET_INPUT, "title": " ", "idempotencyKey": "k-1"}, as_=MEMBER)
    assert only_error(blank) == ("INVALID_TITLE", ["input", "title"])
    forbidden = await mutate(api, "submitTicket", {**TICKET_INPUT, "idempotencyKey": "k-2"}, as_=SUPPORT)
    assert only_error(forbidden) == ("FORBIDDEN", None)
    assert await keys(api) == [] and await tickets_of(api, MEMBER) == count
    # The retry with the input fixed runs for real, under the same key.
    ticket = (await ok(api, "submitTicket", {**TICKET_INPUT, "idempotencyKey": "k-1"}, as_=MEMBER))["ticket"]
    assert ticket["title"] == TICKET_INPUT["title"] and await tickets_of(api, MEMBER) == count + 1
    assert await keys(api) == [("k-1", "submitTicket")]


@pytest.mark.parametrize("key", ["", "   ", "x" * 201, "line\nbreak", "tab\there", "del\x7f", "\u0085"])
async def test_an_idempotency_key_is_1_to_200_characters_without_control_characters(api: Api, key: str) -> None:
    """(NUL never gets this far: the HTTP edge refuses it in any variable.)"""
    count = await tickets_of(api, MEMBER)
    payload = await mutate(api, "submitTicket", {**TICKET_INPUT, "idempotencyKey": key}, as_=MEMBER)
    assert only_error(payload) == ("INVALID_IDEMPOTENCY_KEY", KEY_FIELD) and payload["ticket"] is None
    assert "idempotencyKey" in payload["userErrors"][0]["message"]
    assert await tickets_of(api, MEMBER) == count and await keys(api) == []


async def test_any_printable_key_up_to_200_characters_works(api: Api) -> None:
    for key in ("x" * 200, "3f2b8c1e-5d4a-4e9b-9c7d-2a1b0c9d8e7f", "заявка #7 ✓"):
        first = (await ok(api, "submitTicket", {**TICKET_INPUT, "idempotencyKey": key}, as_=MEMBER))["ticket"]
        again = (await ok(api, "submitTicket", {**TICKET_INPUT, "idempotencyKey": key}, as_=MEMBER))["ticket"]
        assert again["id"] == first["id"]


# ---- concurrency ----------------------------------------------------------------------------

SUBMIT = """mutation($input: SubmitTicketInput!) { submitTicket(input: $input) {
  ticket { id } userErrors { code message } } }"""


async def test_concurrent_retries_with_one_key_open_one_ticket_and_all_answer_it(api: Api) -> None:
    """Runs on whichever database the suite runs on (SQLite, or PostgreSQL with TEST_DATABASE_URL)."""
    count = await tickets_of(api, MEMBER)
    attempts = 100
    responses = await asyncio.gather(*(
        api.post(SUBMIT, {"input": {**TICKET_INPUT, "idempotencyKey": "storm"}}, as_=MEMBER) for _ in range(attempts)
    ))
    assert [r.status_code for r in responses] == [200] * attempts
    bodies = [r.json() for r in responses]
    assert [b for b in bodies if b.get("errors")] == []
    payloads = [b["data"]["submitTicket"] for b in bodies]
    assert [p["userErrors"] for p in payloads] == [[]] * attempts
    assert len({p["ticket"]["id"] for p in payloads}) == 1
    assert await tickets_of(api, MEMBER) == count + 1
    assert await keys(api) == [("storm", "submitTicket")]


async def test_concurrent_retries_of_an_add_on_all_answer_the_one_add_on(api: Api) -> None:
    pid = await product_id(api, "TOLL_FREE_NUMBER")
    payloads = await asyncio.gather(*(
        add_addon(api, CEDAR, productId=pid, quantity=2, idempotencyKey="storm") for _ in range(10)
    ))
    assert [p["userErrors"] for p in payloads] == [[]] * 10, "no ALREADY_ADDED for a retry"
    assert len({p["addOn"]["id"] for p in payloads}) == 1
    cid = await api.connection_id(CEDAR)
    assert await api.rows(select(m.AddOn.quantity).where(m.AddOn.connection_id == cid)) == [(2,)]


# ---- retention ------------------------------------------------------------------------

async def sent_at(api: Api, key: str) -> datetime:
    """When the key was first sent (the purge's "now" is taken from it)."""
    [(at,)] = await api.rows(select(m.IdempotencyKey.created_at).where(m.IdempotencyKey.key == key))
    return at  # type: ignore[no-any-return]


async def test_a_key_past_the_retention_is_purged_and_sending_it_again_is_a_new_request(api: Api) -> None:
    old = (await ok(api, "submitTicket", {**TICKET_INPUT, "idempotencyKey": "old"}, as_=MEMBER))["ticket"]
    kept = (await ok(api, "submitTicket", {**TICKET_INPUT, "idempotencyKey": "kept"}, as_=MEMBER))["ticket"]
    now = await sent_at(api, "kept")
    async with api.engine.begin() as conn:  # "old" was sent 31 days before now, "kept" 29 days before
        for key, days in (("old", 31), ("kept", 29)):
            await conn.execute(update(m.IdempotencyKey).where(m.IdempotencyKey.key == key).values(
                created_at=now - timedelta(days=days)))
    before = await tickets_of(api, MEMBER)

    purged = await cli(api, "idempotency", "purge", "--now", now.isoformat())
    assert purged.code == 0, purged.err
    assert purged.out.startswith("idempotency purge: removed 1 idempotency key created before "), purged.out
    assert "(kept 30 days)" in purged.out
    assert [k for k, _ in await keys(api)] == ["kept"]
    again = await cli(api, "idempotency", "purge", "--now", now.isoformat())
    assert again.out.startswith("idempotency purge: removed 0 idempotency keys"), again.out

    retried = (await ok(api, "submitTicket", {**TICKET_INPUT, "idempotencyKey": "old"}, as_=MEMBER))["ticket"]
    assert retried["id"] != old["id"] and await tickets_of(api, MEMBER) == before + 1
    replayed = (await ok(api, "submitTicket", {**TICKET_INPUT, "idempotencyKey": "kept"}, as_=MEMBER))["ticket"]
    assert replayed["id"] == kept["id"] and await tickets_of(api, MEMBER) == before + 1


async def test_purge_keeps_the_days_it_is_told_and_refuses_nonsense(api: Api) -> None:
    await ok(api, "submitTicket", {**TICKET_INPUT, "idempotencyKey": "a"}, as_=MEMBER)
    later = (await sent_at(api, "a") + timedelta(days=3)).isoformat()
    kept = await cli(api, "idempotency", "purge", "--days", "4", "--now", later)
    assert kept.out.startswith("idempotency purge: removed 0 ") and "(kept 4 days)" in kept.out, kept.out
    removed = await cli(api, "idempotency", "purge", "--days", "2", "--now", later)
    assert removed.out.startswith("idempotency purge: removed 1 ") and await keys(api) == [], removed.out
    refused = await cli(api, "idempotency", "purge", "--days", "0")
    assert refused.code == 2 and "--days: must be a whole number of at least 1, got '0'" in refused.err
