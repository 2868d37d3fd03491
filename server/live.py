"""Live updates: each worker's hub, which hears of committed events and hands them to the
subscriptions it holds.

A write transaction writes its events (db.events) and, after commit, announces the last event
number of each connection it changed. The hub of the worker that committed passes that on to
every worker: through Redis pub/sub when REDIS_URL is set, in process otherwise. A hub that
hears of a connection's new events reads them once (`events`, in number order, so in commit
order) and gives each of its followers of that connection the ones it has not had. The
announcement is only a nudge: the rows are the truth. So a nudge lost (Redis away, or a
change made by a command in another process) is made good by the hub's poll of the
connections it follows every LIVE_POLL_SECONDS, and a follower that comes back with a cursor
reads what it missed from the rows.

A follower's queue is bounded (LIVE_QUEUE_SIZE events): one that falls that far behind is
dropped (`FellBehind`) rather than buffered without bound; it may resubscribe with the
cursor of the last event it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import models as m
from schema.live import ALL, FellBehind, LimitReached
from server.observability import LIVE_EVENTS, LIVE_SUBSCRIPTIONS

log = logging.getLogger("revampd.live")

_PAGE = 500  # events read at a time


class Inbox:
    """A follower's bounded queue of events: asyncio.Queue's get, get_nowait, put_nowait and qsize
    for its one reader, without Queue's three deques and Event (an idle subscription holds an
    empty list and nothing else: make bench-live's memory per subscription)."""

    __slots__ = ("items", "size", "waiter")

    def __init__(self, size: int) -> None:
        self.items: list[Any] = []
        self.size = size
        self.waiter: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self.items)

    def put_nowait(self, item: Any) -> None:
        if len(self.items) >= self.size:
            raise asyncio.QueueFull
        self.items.append(item)
        self._wake()

    def only(self, item: Any) -> None:
        """Drops what is waiting: `item` is all there is to read."""
        self.items = [item]
        self._wake()

    def get_nowait(self) -> Any:
        if not self.items:
            raise asyncio.QueueEmpty
        return self.items.pop(0)

    async def get(self) -> Any:
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.items.pop(0)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


@dataclass(eq=False)
class Follower:
    """One subscription's place in the events of the connection it follows (or of all
    connections): the last number it has had of each."""

    connection_id: int
    user_id: int
    queue: Inbox
    seen: dict[int, int] = field(default_factory=dict)
    dropped: bool = False

    def give(self, rows: Sequence[Any]) -> None:
        if self.dropped:
            return
        for row in rows:
            if row.seq <= self.seen.get(row.connection_id, 0):
                continue
            try:
                self.queue.put_nowait(row)
            except asyncio.QueueFull:
                self.dropped = True
                self.queue.only(FellBehind())
                return
            self.seen[row.connection_id] = row.seq


_AFTER = (
    select(m.Event)
    .where(m.Event.connection_id == bindparam("connection_id"), m.Event.seq > bindparam("after"),
           m.Event.seq <= bindparam("upto"))
    .order_by(m.Event.seq)
    .limit(_PAGE)
)


class Hub:
    """A worker's live updates. `announce` is the write sessions' (db.events); `follow` is
    the subscriptions'. `start`/`stop` run its Redis listener and its poll."""

    def __init__(self, reads: async_sessionmaker[AsyncSession], *, redis_url: str | None = None,
                 redis_prefix: str = "revampd:", queue_size: int = 1000, poll_seconds: float = 5.0,
                 max_per_user: int = 50) -> None:
        self.reads, self.redis_url = reads, redis_url
        self.channel = f"{redis_prefix}events"
        self.queue_size, self.poll_seconds, self.max_per_user = queue_size, poll_seconds, max_per_user
        self.followers: dict[int, set[Follower]] = {}
        self.by_user: dict[int, int] = {}
        self.pending: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []
        self.redis: Any = None
        if redis_url:
            from redis.asyncio import Redis

            self.redis = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.redis_down = False

    # ---- lifecycle ------------------------------------------------------------

    def _started(self) -> None:
        """Its tasks run from the first follower on (a worker nobody follows only announces)."""
        if self.tasks:
            return
        self.tasks.append(asyncio.create_task(self._deliver(), name="live-deliver"))
        self.tasks.append(asyncio.create_task(self._poll(), name="live-poll"))
        if self.redis_url:
            self.tasks.append(asyncio.create_task(self._listen(), name="live-listen"))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks.clear()
        if self.redis is not None:
            await self.redis.aclose()

    # ---- hearing of events ---------------------------------------------------------

    def announce(self, written: Sequence[tuple[int, int]]) -> None:
        """After a commit (db.events): connections and their last event numbers. Through Redis
        when there is one (every worker hears it, this one too); if it is out of reach, this
        worker's own followers are told directly and the others find the events by polling."""
        if self.redis is None:
            self._tell(written)
            return
        message = ",".join(f"{c}:{s}" for c, s in written)
        task = asyncio.get_running_loop().create_task(self._publish(message, written))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _tell(self, written: Sequence[tuple[int, int]]) -> None:
        if self.followers:
            for item in written:
                self.pending.put_nowait(item)

    async def _publish(self, message: str, written: Sequence[tuple[int, int]]) -> None:
        try:
            await self.redis.publish(self.channel, message)
        except Exception as exc:  # noqa: BLE001 - Redis away: this worker's followers still hear of it
            self._redis_lost(exc)
            self._tell(written)
            return
        if self.redis_down:
            self.redis_down = False
            log.warning("Redis reachable again for live updates")

    def _redis_lost(self, exc: BaseException) -> None:
        if not self.redis_down:
            log.warning("Redis out of reach for live updates (%s): other workers hear of changes by polling", exc)
        self.redis_down = True

    async def _listen(self) -> None:
        """Redis pub/sub, listened to again after Redis comes back; on each (re)connection the
        poll runs at once, for what was announced meanwhile."""
        delay = 0.5
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    if self.redis_down:
                        log.warning("Redis reachable again for live updates")
                    self.redis_down, delay = False, 0.5
                    await self._check_all()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            for part in message["data"].decode().split(","):
                                c, _, s = part.partition(":")
                                self.pending.put_nowait((int(c), int(s)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: try again, meanwhile poll
                self._redis_lost(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.poll_seconds)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self._check_all()
            except Exception:
                log.exception("live updates: polling for events failed")

    async def _check_all(self) -> None:
        """Nudge every followed connection whose last event is past what its followers had."""
        if not self.followers:
            return
        for connection_id, last in (await self._lasts(None if ALL in self.followers else list(self.followers))).items():
            self.pending.put_nowait((connection_id, last))

    async def _lasts(self, connections: list[int] | None) -> dict[int, int]:
        """The last event number of these connections (None: of every one)."""
        stmt = select(m.EventSequence.connection_id, m.EventSequence.last_seq)
        if connections is not None:
            stmt = stmt.where(m.EventSequence.connection_id.in_(connections))
        async with self.reads() as session:
            return {c: s for c, s in (await session.execute(stmt)).all()}

    # ---- handing them out ------------------------------------------------------------

    async def _deliver(self) -> None:
        """One nudge at a time, so each connection's events go out in order."""
        while True:
            connection_id, last = await self.pending.get()
            try:
                await self._read_and_give(connection_id, last)
            except Exception:
                log.exception("live updates: reading the events of connection %s failed", connection_id)

    async def _read_and_give(self, connection_id: int, last: int) -> None:
        followers = [*self.followers.get(connection_id, ()), *self.followers.get(ALL, ())]
        followers = [f for f in followers if not f.dropped]
        if not followers:
            return
        after = min(f.seen.get(connection_id, 0) for f in followers)
        while after < last:
            async with self.reads() as session:
                rows = list(await session.scalars(_AFTER, {"connection_id": connection_id, "after": after, "upto": last}))
            if not rows:
                return
            for follower in followers:
                was = follower.dropped
                follower.give(rows)
                if follower.dropped and not was:
                    LIVE_EVENTS.labels("dropped").inc()
            LIVE_EVENTS.labels("delivered").inc(len(rows) * len(followers))
            after = rows[-1].seq

    # ---- following ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def follow(self, connection_id: int, user_id: int, after: int | None) -> AsyncIterator[Follower]:
        """A follower of one connection's events (ALL: every connection's) from `after` (its
        number of the last event had; None: from now on). Refuses (LimitReached) a user who
        already holds LIVE_MAX_SUBSCRIPTIONS_PER_USER."""
        if self.by_user.get(user_id, 0) >= self.max_per_user:
            raise LimitReached(self.max_per_user)
        self._started()
        follower = Follower(connection_id, user_id, Inbox(self.queue_size))
        lasts = await self._lasts(None if connection_id == ALL else [connection_id])
        follower.seen = lasts if after is None else {connection_id: after}
        self.followers.setdefault(connection_id, set()).add(follower)
        self.by_user[user_id] = self.by_user.get(user_id, 0) + 1
        LIVE_SUBSCRIPTIONS.inc()
        try:
            if after is not None and after < lasts.get(connection_id, 0):
                self.pending.put_nowait((connection_id, lasts[connection_id]))  # what it missed, in order
            yield follower
        finally:
            self.followers[connection_id].discard(follower)
            if not self.followers[connection_id]:
                del self.followers[connection_id]
            self.by_user[user_id] -= 1
            if not self.by_user[user_id]:
                del self.by_user[user_id]
            LIVE_SUBSCRIPTIONS.dec()

    @property
    def open_subscriptions(self) -> int:
        return sum(len(f) for f in self.followers.values())

