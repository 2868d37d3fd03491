"""Events (db/events.py): written by the transaction that made the change, numbered per
connection in commit order, announced only after commit, never for a rollback."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from sqlalchemy import select

from db import models as m
from db.engine import create_engine, write_sessions
from db.states import Role
from services import tickets as ticket_service
from services.access import Principal
from tests.clock import NOW
from tests.conftest import Api

MEMBER = "member@northwind.example"
SUPPORT = "support@revampd.example"


class Announced:
    def __init__(self) -> None:
        self.calls: list[list[tuple[int, int]]] = []

    def __call__(self, written: Sequence[tuple[int, int]]) -> None:
        self.calls.append(list(written))


async def _events(api: Api, connection_id: int) -> list[tuple[int, str, str, int | None]]:
    rows = await api.rows(select(m.Event.seq, m.Event.subject, m.Event.action, m.Event.ticket_id)
                          .where(m.Event.connection_id == connection_id).order_by(m.Event.seq))
    return [tuple(r) for r in rows]


async def _setup(api: Api) -> tuple[Principal, Principal, int, int]:
    cid = await api.connection_id(MEMBER)
    (partner_id,) = (await api.rows(select(m.Connection.partner_id).where(m.Connection.id == cid)))[0]
    member = Principal(api.ids[MEMBER], partner_id, cid, frozenset({Role.PARTNER_MEMBER}))
    support = Principal(api.ids[SUPPORT], None, None, frozenset({Role.SUPPORT}))
    (ticket_id,) = (await api.rows(select(m.Ticket.id).where(m.Ticket.connection_id == cid, m.Ticket.status == "OPEN")
                                   .limit(1)))[0]
    return member, support, cid, ticket_id


async def test_a_committed_change_is_written_numbered_and_announced_after_commit(api: Api) -> None:
    member, support, cid, ticket_id = await _setup(api)
    before = await _events(api, cid)
    announced = Announced()
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine, announce=announced)() as session:
            async with session.begin():
                _, message = await ticket_service.reply(session, member, ticket_id, "Any news?", NOW)
                assert announced.calls == []  # nothing is told before the commit
            assert len(announced.calls) == 1
    finally:
        await engine.dispose()
    after = await _events(api, cid)
    new = after[len(before):]
    last = before[-1][0] if before else 0
    assert [seq for seq, *_ in new] == list(range(last + 1, last + 1 + len(new)))
    assert ("ticket_messages", "CREATED", ticket_id) in [tuple(e[1:]) for e in new]
    assert ("tickets", "UPDATED", ticket_id) in [tuple(e[1:]) for e in new]
    assert announced.calls == [[(cid, new[-1][0])]]


async def test_a_rolled_back_change_leaves_no_event_and_tells_nobody(api: Api) -> None:
    member, _, cid, ticket_id = await _setup(api)
    before = await _events(api, cid)
    announced = Announced()
    engine = create_engine(api.settings.database_url)
    try:
        with pytest.raises(RuntimeError):
            async with write_sessions(engine, announce=announced)() as session, session.begin():
                await ticket_service.reply(session, member, ticket_id, "Never sent", NOW)
                await session.flush()
                raise RuntimeError("the request failed after the reply was written")
        # The same session's next transaction carries nothing of the first.
        async with write_sessions(engine, announce=announced)() as session:
            async with session.begin():
                await ticket_service.reply(session, member, ticket_id, "Sent", NOW)
    finally:
        await engine.dispose()
    new = (await _events(api, cid))[len(before):]
    bodies = [b for (b,) in await api.rows(select(m.TicketMessage.body).where(m.TicketMessage.ticket_id == ticket_id))]
    assert "Never sent" not in bodies and "Sent" in bodies
    assert len([e for e in new if e[1] == "ticket_messages"]) == 1
    assert len(announced.calls) == 1


async def test_a_row_made_under_a_savepoint_that_rolled_back_has_no_event(api: Api) -> None:
    member, _, cid, ticket_id = await _setup(api)
    before = await _events(api, cid)
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as session, session.begin():
            nested = await session.begin_nested()
            session.add(m.TicketMessage(ticket_id=ticket_id, author_id=member.user_id, body="undone", internal=False,
                                        created_at=NOW))
            await session.flush()
            await nested.rollback()
            session.add(m.TicketMessage(ticket_id=ticket_id, author_id=member.user_id, body="kept", internal=False,
                                        created_at=NOW))
    finally:
        await engine.dispose()
    new = (await _events(api, cid))[len(before):]
    assert [e[1] for e in new] == ["ticket_messages"]


async def test_concurrent_writers_on_one_connection_number_its_events_without_gap_or_repeat(api: Api) -> None:
    """100 replies at once to one connection's ticket (PostgreSQL: 100 transactions; SQLite:
    one writer at a time): each event a number of its own, consecutive, in commit order."""
    member, _, cid, ticket_id = await _setup(api)
    before = await _events(api, cid)
    announced = Announced()
    engine = create_engine(api.settings.database_url, pool_size=20, max_overflow=0, pool_timeout=60)
    sessions = write_sessions(engine, announce=announced)

    async def reply(i: int) -> None:
        async with sessions() as session, session.begin():
            await ticket_service.reply(session, member, ticket_id, f"reply {i}", NOW)

    try:
        await asyncio.gather(*(reply(i) for i in range(100)))
    finally:
        await engine.dispose()
    after = await _events(api, cid)
    first = before[-1][0] + 1 if before else 1
    assert [seq for seq, *_ in after[len(before):]] == list(range(first, after[-1][0] + 1))
    assert len([e for e in after[len(before):] if e[1] == "ticket_messages"]) == 100
    # Each commit told its own last number (the hub reads the rows up to it, in order).
    lasts = [seq for call in announced.calls for c, seq in call if c == cid]
    assert len(lasts) == len(set(lasts)) == 100 and max(lasts) == after[-1][0]
    (seq,) = (await api.rows(select(m.EventSequence.last_seq).where(m.EventSequence.connection_id == cid)))[0]
    assert seq == after[-1][0]
