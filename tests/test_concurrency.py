"""Writes under concurrency: 100 clients on one row answer at once, right, and never 5xx."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, AsyncIterator

import pytest
from sqlalchemy import func, select, text

from db import models as m
from schema.base import from_global_id, to_global_id
from tests.conftest import Api, Databases, make_api

OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"
CEDAR = "owner@cedar.example"
SUPPORT = "support@revampd.example"
N = 100

SUBMIT = """mutation { submitTicket(input: {title: "Webhooks", description: "d", priority: LOW}) {
    ticket { id } userErrors { code } } }"""
REPLY = """mutation($t: ID!) { replyToTicket(input: {ticketId: $t, body: "again"}) {
    message { id } userErrors { code } } }"""
STATUS = """mutation($t: ID!) { updateTicketStatus(input: {ticketId: $t, status: IN_PROGRESS}) {
    ticket { status } userErrors { code } } }"""
UPGRADE = """mutation { upgradePlan(input: {planId: "%s"}) {
    subscription { pendingChange { targetPlan { code } } } userErrors { code } } }""" % to_global_id("Plan", 4)
ADD = """mutation { addAddOn(input: {productId: "%s", quantity: 2}) {
    addOn { id } userErrors { code } } }""" % to_global_id("AddOnProduct", 2)


async def burst(api: Api, query: str, variables: dict[str, Any] | None, as_: str, n: int = N) -> list[dict[str, Any]]:
    """n identical calls at once. Each must answer 200 without top-level errors: a
    business refusal is a userErrors entry; a 5xx or an unmasked fault fails here."""
    responses = await asyncio.gather(*(api.post(query, variables, as_=as_) for _ in range(n)))
    assert Counter(r.status_code for r in responses) == {200: n}, [r.text for r in responses if r.status_code != 200][:3]
    bodies = [r.json() for r in responses]
    assert [b for b in bodies if b.get("errors")] == []
    return [next(iter(b["data"].values())) for b in bodies]


async def count(api: Api, stmt: Any) -> int:
    return int((await api.rows(stmt))[0][0])


async def test_100_concurrent_submits_each_open_one_ticket_with_its_own_number(api: Api) -> None:
    cid = await api.connection_id(MEMBER)
    before = await count(api, select(func.count()).where(m.Ticket.connection_id == cid))
    payloads = await burst(api, SUBMIT, None, MEMBER)
    assert all(p["userErrors"] == [] for p in payloads)
    ids = {p["ticket"]["id"] for p in payloads}
    assert len(ids) == N
    numbers = [n for (n,) in await api.rows(select(m.Ticket.number).where(m.Ticket.connection_id == cid))]
    assert len(numbers) == before + N == len(set(numbers))
    assert sorted(numbers)[-N:] == list(range(max(numbers) - N + 1, max(numbers) + 1))


async def test_100_concurrent_replies_to_one_ticket_are_all_kept(api: Api) -> None:
    ticket = (await api.gql(SUBMIT, as_=MEMBER))["submitTicket"]["ticket"]["id"]
    payloads = await burst(api, REPLY, {"t": ticket}, MEMBER)
    assert all(p["userErrors"] == [] for p in payloads)
    assert len({p["message"]["id"] for p in payloads}) == N
    parsed = from_global_id(ticket)
    assert parsed is not None
    assert await count(api, select(func.count()).where(m.TicketMessage.ticket_id == parsed[1])) == N


async def test_100_concurrent_status_moves_on_one_ticket_move_it_once(api: Api) -> None:
    ticket = (await api.gql(SUBMIT, as_=MEMBER))["submitTicket"]["ticket"]["id"]
    payloads = await burst(api, STATUS, {"t": ticket}, SUPPORT)
    outcomes = Counter(p["userErrors"][0]["code"] if p["userErrors"] else "moved" for p in payloads)
    assert outcomes == {"moved": 1, "ILLEGAL_STATUS_CHANGE": N - 1}
    (status,) = (await api.rows(select(m.Ticket.status).order_by(m.Ticket.id.desc()).limit(1)))[0]
    assert status == "IN_PROGRESS"


async def test_100_concurrent_upgrades_schedule_one_change(api: Api) -> None:
    payloads = await burst(api, UPGRADE, None, OWNER)
    assert all(p["userErrors"] == [] for p in payloads)
    assert {p["subscription"]["pendingChange"]["targetPlan"]["code"] for p in payloads} == {"ENTERPRISE"}
    cid = await api.connection_id(OWNER)
    rows = await api.rows(select(m.Subscription.pending_kind, m.Subscription.pending_plan_id)
                          .where(m.Subscription.connection_id == cid))
    assert rows == [("UPGRADE", 4)]


async def test_100_concurrent_adds_of_one_product_add_it_once(api: Api) -> None:
    payloads = await burst(api, ADD, None, CEDAR)
    outcomes = Counter(p["userErrors"][0]["code"] if p["userErrors"] else "added" for p in payloads)
    assert outcomes == {"added": 1, "ALREADY_ADDED": N - 1}
    cid = await api.connection_id(CEDAR)
    assert await api.rows(select(m.AddOn.product_id, m.AddOn.quantity).where(m.AddOn.connection_id == cid)) == [(2, 2)]


@pytest.fixture
async def one_connection(databases: Databases) -> AsyncIterator[Api]:
    """An app whose pool holds a single connection and waits at most a second for it."""
    client = await make_api(await databases.clone(), db_pool_size=1, db_max_overflow=0, db_pool_timeout=1.0)
    yield client
    await client.http.aclose()
    await client.engine.dispose()


async def test_a_request_never_waits_for_a_second_connection(one_connection: Api) -> None:
    """Each mutation reads (auth), writes and reads again: with one connection in the
    pool that only works if it never holds one while asking for another."""
    payloads = await burst(one_connection, SUBMIT, None, MEMBER, n=20)
    assert all(p["userErrors"] == [] for p in payloads)


async def test_a_saturated_pool_answers_503_with_retry_after(one_connection: Api) -> None:
    async with one_connection.engine.connect() as held:  # the only connection
        await held.execute(text("SELECT 1"))
        response = await one_connection.post("{ viewer { user { email } } }", as_=OWNER)
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    # Free again, it answers.
    assert (await one_connection.post("{ viewer { user { email } } }", as_=OWNER)).status_code == 200


async def test_a_write_that_waits_too_long_for_a_lock_answers_503_and_changes_nothing(databases: Databases) -> None:
    client = await make_api(await databases.clone(), db_lock_timeout_ms=200)
    try:
        cid = await client.connection_id(MEMBER)
        before = await count(client, select(func.count()).where(m.Ticket.connection_id == cid))
        from db.engine import create_engine, write_sessions

        blocker = create_engine(client.settings.database_url)
        async with write_sessions(blocker)() as session, session.begin():
            # Hold the lock a submit needs: the connection row (PostgreSQL), the database (SQLite).
            await session.execute(select(m.Connection).where(m.Connection.id == cid).with_for_update())
            response = await client.post(SUBMIT, as_=MEMBER)
        await blocker.dispose()
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"].isdigit()
        assert response.json()["errors"][0]["message"] == "The service is busy; retry in a moment."
        assert await count(client, select(func.count()).where(m.Ticket.connection_id == cid)) == before
    finally:
        await client.http.aclose()
        await client.engine.dispose()
