"""The Subscription root: committed changes, as they happen, to what the viewer may read.

Each event names one object as it now stands (`node`), so a client's cache updates it by its
id; the viewer receives an event only when it could read that object with a query (checked
per event, with the caller read again: a user removed from its Partner stops receiving). The
events come from the rows db.events writes at commit, in commit order per connection, through
the worker's hub (server.live). Each event is read on a session of its own, given back before
the event is sent (`end_event`, called by the schema's LiveReads extension): an open
subscription holds no database connection while it waits or while the client reads.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

import strawberry
from graphql import ExecutionResult, GraphQLError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import models as m
from db.states import EventAction as Action
from db.states import Role
from schema.base import Node, decode_id, node_types, subscription
from schema.context import ContextSettings
from schema.enums import described
from schema.loaders import Loaders
from services.access import Principal
from services.errors import DomainError, ErrorCode

log = logging.getLogger("revampd.live")

ALL = 0  # follow every connection (support's queue); no connection has id 0

described(Action, "EventAction", "What happened to an event's object.", {
    "CREATED": "It was made.",
    "UPDATED": "It changed (its status, amounts, assignee...): `node` shows it as it now stands.",
})

# An event's subject (db.events) as the Node type that shows it, and that type's id of it.
NODE_OF_SUBJECT = {
    "tickets": "Ticket", "ticket_messages": "TicketMessage", "invoices": "Invoice", "payouts": "Payout",
    "bank_transfers": "BankTransfer", "addons": "AddOn", "subscriptions": "PlanSubscription",
    "affiliate_payouts": "AffiliatePayout", "ledger_entries": "WalletEntry", "wallets": "Wallet",
}
TICKET_SUBJECTS = ("tickets", "ticket_messages")
# What billing follows: where money moved.
MONEY_SUBJECTS = ("invoices", "ledger_entries", "wallets", "payouts", "bank_transfers", "affiliate_payouts")


class FellBehind(Exception):
    """The subscriber read its events too slowly and was dropped (server.live)."""


class LimitReached(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"You already hold {limit} subscriptions, the most one user may.")


class Inbox(Protocol):
    def put_nowait(self, item: Any) -> None: ...
    async def get(self) -> Any: ...


class Follower(Protocol):
    @property
    def queue(self) -> Inbox: ...


class Live(Protocol):
    """The worker's hub (server.live.Hub)."""

    def follow(self, connection_id: int, user_id: int, after: int | None) -> contextlib.AbstractAsyncContextManager[Follower]: ...


@dataclass(eq=False)
class EventRead:
    """One viewer's read of one event: a pooled session, the viewer read again (None: gone, or no
    longer of its Partner or role) and loaders as that viewer."""

    session: AsyncSession | None = None
    principal: Principal | None = None
    loaders: Loaders | None = None
    readers: int = 0  # the subscriptions reading it
    opening: asyncio.Future[None] | None = None
    gated: bool = False  # holds a place at the gate
    # The selections executed on it, by (operation, variables): subscriptions asking the same
    # question of the same read get the same answer, executed once (`shared_execution`).
    results: dict[Hashable, asyncio.Future[Any]] = field(default_factory=dict)


class EventReads:
    """The worker's reads of events, shared: the subscriptions of one viewer are handed an event
    together (the hub gives it to all its followers in one pass), and read it once (one pooled
    session, one recheck of the viewer, one set of loaders, which batch the subscriptions' loads
    together); each executes its own selection on it. The session goes back when the last of
    them has executed. At most `gate`'s count of reads are open at once (LIVE_READS_AT_ONCE): a
    change fanned out to thousands waits here, never for the pool past its timeout."""

    def __init__(self, at_once: int) -> None:
        self.gate = asyncio.Semaphore(at_once)
        self.open: dict[tuple[int, int, Principal], EventRead] = {}

    async def enter(self, key: tuple[int, int, Principal], reads: async_sessionmaker[AsyncSession],
                    recheck: Callable[[AsyncSession], Awaitable[Principal | None]]) -> EventRead:
        read = self.open.get(key)
        if read is None:
            read = self.open[key] = EventRead()
            read.opening = asyncio.ensure_future(self._open(read, reads, recheck))
        read.readers += 1
        assert read.opening is not None, "set as the read is made"
        try:
            await asyncio.shield(read.opening)
        except BaseException:
            await self.leave(key, read)
            raise
        return read

    async def _open(self, read: EventRead, reads: async_sessionmaker[AsyncSession],
                    recheck: Callable[[AsyncSession], Awaitable[Principal | None]]) -> None:
        await self.gate.acquire()
        read.gated = True
        read.session = reads()
        read.principal = await recheck(read.session)
        if read.principal is not None:
            read.loaders = Loaders(read.session, read.principal)

    async def leave(self, key: tuple[int, int, Principal], read: EventRead) -> None:
        read.readers -= 1
        if read.readers:
            return
        if self.open.get(key) is read:
            del self.open[key]
        running = [f for f in (read.opening, *read.results.values()) if f is not None and not f.done()]
        for future in running:
            future.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        try:
            if read.session is not None:
                await read.session.close()
        finally:
            if read.gated:
                read.gated = False
                self.gate.release()


# The current event's shared read, per subscription (each runs in a task of its own).
_EVENT: ContextVar[tuple[EventReads, tuple[int, int, Principal], EventRead] | None] = ContextVar(
    "revampd_live_event", default=None)


@dataclass
class LiveContext:
    """What a subscription's resolvers read as `info.context` (as a query's Context): the
    caller, and the current event's session and loaders. Made per WebSocket (or SSE)
    connection once its token is checked (server.subscriptions)."""

    settings: ContextSettings
    principal: Principal
    reads: async_sessionmaker[AsyncSession]
    live: Live
    # The caller as it now stands (None: gone, or no longer of its Partner or role).
    recheck: Callable[[AsyncSession], Awaitable[Principal | None]]
    expires_at: float | None  # the token's expiry (a Unix time): the subscription ends then
    # The refusals of a subscription document (resolvers.schema.Schema.stream), as a query's.
    check: Callable[[Any, dict[str, Any] | None], list[GraphQLError]]
    # The worker's reads of events, shared by the subscriptions of one viewer (LIVE_READS_AT_ONCE).
    events: EventReads = field(default_factory=lambda: EventReads(1))
    request_id: str = ""
    # connection_init's payload (Strawberry sets it): where the token comes from.
    connection_params: dict[str, Any] | None = None
    operation: Any = None
    operation_name: str | None = None
    log: dict[str, Any] = field(default_factory=dict)
    busy: bool = False
    objects_in_lists: int | None = None

    def for_operation(self, operation: Any, operation_name: str | None) -> LiveContext:
        """The context of one subscription of the connection (each has its own Operation)."""
        return dataclasses.replace(self, operation=operation, operation_name=operation_name, log={})

    @property
    def db(self) -> AsyncSession:
        current = _EVENT.get()
        if current is None or current[2].session is None:
            raise RuntimeError("no event is being read")
        return current[2].session

    @property
    def loaders(self) -> Loaders:
        current = _EVENT.get()
        if current is None or current[2].loaders is None:
            raise RuntimeError("no event is being read")
        return current[2].loaders


def shared_execution(key: Hashable, execute: Callable[[], Awaitable[ExecutionResult]]) -> Awaitable[ExecutionResult] | None:
    """The answer to a subscription's selection (`key`: its operation and variables) on the
    current event, executed once for every subscription of the viewer asking the same (the
    executor's, resolvers.engine); None outside an event. Each gets its own ExecutionResult
    (the error policy rewrites a result's errors), sharing the data."""
    current = _EVENT.get()
    if current is None:
        return None
    read = current[2]
    future = read.results.get(key)
    if future is None:
        future = read.results[key] = asyncio.ensure_future(execute())

    async def answer() -> ExecutionResult:
        done = await asyncio.shield(future)
        return ExecutionResult(done.data, list(done.errors) if done.errors else None, done.extensions)

    return answer()


async def end_event() -> None:
    """This subscription is done with the current event's read (before the event is sent): the
    last of the viewer's subscriptions to be done gives its session back. Nothing when done already."""
    current = _EVENT.get()
    if current is not None:
        _EVENT.set(None)
        await current[0].leave(current[1], current[2])


def _cursor(connection_id: int, seq: int) -> str:
    return base64.urlsafe_b64encode(f"ConnectionEvent:{connection_id}:{seq}".encode()).decode().rstrip("=")


def _after(cursor: str | None, connection_id: int) -> int | None:
    """The event number a cursor names (of this connection), or INVALID_CURSOR."""
    if cursor is None:
        return None
    try:
        kind, c, seq = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":")
        if kind == "ConnectionEvent" and int(c) == connection_id and int(seq) >= 0 and _cursor(int(c), int(seq)) == cursor:
            return int(seq)
    except (ValueError, UnicodeDecodeError):
        pass
    raise _refused(DomainError(ErrorCode.INVALID_CURSOR, "after is not the cursor of an event of this connection.", ["after"]))


def _refused(err: DomainError) -> GraphQLError:
    return GraphQLError(err.message, extensions={"code": err.code, "field": err.field})


def _ended(message: str, code: str) -> GraphQLError:
    """Why a subscription ends (or is refused) for a reason that is not its arguments'."""
    return GraphQLError(message, extensions={"code": code})


After = Annotated[str | None, strawberry.argument(
    description="The cursor of the last event you had: the events committed since then come first, in order; "
    "left out, only events from now on.")]


@strawberry.type(description="A committed change to an object the viewer may read. Events of a connection come in "
                 "the order they were committed. An envelope (no id): a client caches `node`, by its own id.")
class ConnectionEvent:
    cursor: str = strawberry.field(
        description="Opaque: subscribe again with `after: cursor` to receive the events committed since this one.")
    action: Action = strawberry.field(description="Whether `node` was made or changed.")
    occurred_at: datetime = strawberry.field(description="When the change was committed (about).")
    node: Node = strawberry.field(
        description="The object, as it now stands (Ticket, TicketMessage, Invoice, Payout, BankTransfer, AddOn, "
        "PlanSubscription, AffiliatePayout, WalletEntry or Wallet): select what you show with fragments, and "
        "a normalized cache updates it by its id.")


async def _visible(info: strawberry.Info, row: m.Event) -> Node | None:
    """The event's object, if the caller may read it (read with the event's loaders)."""
    cls = node_types()[NODE_OF_SUBJECT[row.subject]]
    return await cls.load(info, row.subject_id)


async def _events(
    info: strawberry.Info, connection_id: int, after: int | None, wanted: Callable[[m.Event], bool],
) -> AsyncGenerator[ConnectionEvent, None]:
    context: LiveContext = info.context
    p = context.principal
    async with context.live.follow(connection_id, p.user_id, after) as follower:
        timer = _expiring(follower, context.expires_at)
        try:
            while True:
                item = await _next(follower, context.expires_at)
                if isinstance(item, FellBehind):
                    raise _ended("You were reading events too slowly and were dropped: subscribe again with `after` "
                                 "the cursor of the last event you had.", "TOO_SLOW")
                row: m.Event = item
                if not wanted(row):
                    continue
                key = (row.connection_id, row.seq, p)
                read = await context.events.enter(key, context.reads, context.recheck)
                _EVENT.set((context.events, key, read))
                try:
                    if read.principal is None:
                        raise _ended("Your access has changed: sign in again.", "UNAUTHENTICATED")
                    node = await _visible(info, row)
                    if node is not None:
                        yield ConnectionEvent(cursor=_cursor(row.connection_id, row.seq), action=Action(row.action),
                                              occurred_at=row.occurred_at, node=node)
                finally:  # given back already if the event was sent (LiveReads)
                    await end_event()
        finally:
            if timer is not None:
                timer.cancel()


# What the token's expiry puts in a follower's queue, to wake a subscriber with nothing to read.
_WAKE = object()


def _expiring(follower: Follower, expires_at: float | None) -> asyncio.TimerHandle | None:
    """Wakes the subscriber when its token expires (one timer, no task per subscription); a full
    queue needs no waking: the subscriber finds the token expired at its next item."""
    if expires_at is None:
        return None

    def wake() -> None:
        with contextlib.suppress(asyncio.QueueFull):
            follower.queue.put_nowait(_WAKE)

    return asyncio.get_running_loop().call_later(max(0.0, expires_at - datetime.now(UTC).timestamp()), wake)


async def _next(follower: Follower, expires_at: float | None) -> Any:
    """The next event; the token's expiry ends the subscription (the timer's wake-up, which may
    come a hair before the wall clock reads the expiry, or the clock at an event read after it)."""
    item = await follower.queue.get()
    if item is _WAKE or (expires_at is not None and datetime.now(UTC).timestamp() >= expires_at):
        raise _ended("Your token has expired: subscribe again with a new one.", "UNAUTHENTICATED")
    return item


@strawberry.type(description="Live updates (graphql-transport-ws on /graphql, or Server-Sent Events). Each field "
                 "sends an event for each committed change the viewer may read, and nothing for one it may not.")
class Subscription:
    @subscription(description="Changes to a connection: its plan subscription, add-ons, invoices, wallet "
                             "and its entries, affiliate payouts, payouts and their bank transfers, tickets and their "
                             "messages. A Partner's users follow their own connection (leave `connectionId` out); "
                             "Revampd staff name one.")
    async def connection_events(
        self, info: strawberry.Info,
        connection_id: Annotated[strawberry.ID | None, strawberry.argument(
            description="The RevampdConnection to follow: staff must give one; a Partner's user may leave it out "
            "(its own) or give its own.")] = None,
        after: After = None,
    ) -> AsyncGenerator[ConnectionEvent, None]:
        context: LiveContext = info.context
        p = context.principal
        cid = p.connection_id if connection_id is None else _decoded(connection_id, "RevampdConnection", "connectionId")
        if cid is None or not p.sees_connection(cid):
            raise _refused(DomainError(ErrorCode.NOT_FOUND, "No RevampdConnection with this ID.",
                                       ["connectionId"] if connection_id is not None or p.is_staff else None))
        async for event in _with_limits(info, _events(info, cid, _after(after, cid), lambda _: True)):
            yield event

    @subscription(description="A ticket's changes (status, assignee) and new messages; internal notes "
                             "only for Revampd support.")
    async def ticket_events(
        self, info: strawberry.Info,
        ticket_id: Annotated[strawberry.ID, strawberry.argument(description="The Ticket to follow.")],
        after: After = None,
    ) -> AsyncGenerator[ConnectionEvent, None]:
        context: LiveContext = info.context
        tid = _decoded(ticket_id, "Ticket", "ticketId")
        async with context.reads() as session:
            ticket = await Loaders(session, context.principal).by_id(m.Ticket).load(tid)
        if ticket is None:
            raise _refused(DomainError(ErrorCode.NOT_FOUND, "No Ticket with this ID.", ["ticketId"]))
        cid = ticket.connection_id

        def of_ticket(row: m.Event) -> bool:
            return row.ticket_id == tid

        async for event in _with_limits(info, _events(info, cid, _after(after, cid), of_ticket)):
            yield event

    @subscription(description="Revampd support's queue: new tickets, assignments, status changes, "
                             "replies and internal notes, of every Partner (SUPPORT only). Events of one connection "
                             "come in commit order; after a reconnection, refetch the queue.")
    async def support_queue_events(self, info: strawberry.Info) -> AsyncGenerator[ConnectionEvent, None]:
        async for event in _of_every_connection(info, Role.SUPPORT, TICKET_SUBJECTS):
            yield event

    @subscription(description="Where money moved, for every Partner (BILLING_ADMIN only): invoices issued, paid, voided "
                  "or written off (by a user or the billing run), wallet entries and balances, affiliate payouts, "
                  "payouts and their bank transfers. Events of one connection come in commit order; after a "
                  "reconnection, refetch.")
    async def billing_events(self, info: strawberry.Info) -> AsyncGenerator[ConnectionEvent, None]:
        async for event in _of_every_connection(info, Role.BILLING_ADMIN, MONEY_SUBJECTS):
            yield event


async def _of_every_connection(
    info: strawberry.Info, role: Role, subjects: tuple[str, ...],
) -> AsyncGenerator[ConnectionEvent, None]:
    """Staff's view of every connection's events about `subjects` (no cursor: they refetch)."""
    context: LiveContext = info.context
    if not context.principal.has(role):
        raise _refused(DomainError(ErrorCode.FORBIDDEN, f"This needs the {role.value} role."))
    async for event in _with_limits(info, _events(info, ALL, None, lambda row: row.subject in subjects)):
        yield event


def _decoded(gid: str, expected: str, name: str) -> int:
    try:
        return decode_id(gid, expected, name)
    except DomainError as err:
        raise _refused(err) from None


async def _with_limits(
    info: strawberry.Info, events: AsyncGenerator[ConnectionEvent, None],
) -> AsyncGenerator[ConnectionEvent, None]:
    """The events; a user over the subscription limit is refused with the limit's words. One
    log line when the subscription ends: who, what, how many events and why it ended."""
    sent, why = 0, "closed by the client"
    try:
        async for event in events:
            sent += 1
            yield event
    except LimitReached as exc:
        why = "SUBSCRIPTION_LIMIT"
        raise _ended(str(exc), "SUBSCRIPTION_LIMIT") from None
    except GraphQLError as exc:
        why = str((exc.extensions or {}).get("code", "error"))
        raise
    except Exception as exc:
        why = f"fault: {type(exc).__name__}"
        raise
    finally:
        await events.aclose()
        log.info("subscription ended: user=%s field=%s events=%s reason=%s", info.context.principal.user_id,
                 info.field_name, sent, why)


__all__ = ["ALL", "ConnectionEvent", "FellBehind", "LimitReached", "Live", "LiveContext", "Subscription", "end_event"]
