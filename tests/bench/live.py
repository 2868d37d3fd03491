"""Benchmark: live updates (GraphQL subscriptions) held by two server processes sharing Redis.

Usage: make bench-live  (or: python -m tests.bench.live [--quick] [--subscribers 1000] [--changes 20]
[--idle 10000] [--idle-per-socket 1] [--idle-seconds 10] [--no-deflate] [--redis-url URL]
[--database-url URL] [--bench-database NAME] [--only sqlite|postgresql] [--markdown])

For each database (SQLite in a temporary directory; PostgreSQL as well when --database-url,
BENCH_DATABASE_URL or TEST_DATABASE_URL names a server, on which a database `revampd_bench_live`
(--bench-database) is made and dropped afterwards) it migrates and loads the demo and bench rows
(tests/bench/data.py), then starts two `revampd-bff serve` processes on two ports, on that
database and one Redis (a REDIS_KEY_PREFIX of its own; LOG_LEVEL=WARNING, as the other benches
serve; LIVE_MAX_SUBSCRIPTIONS_PER_USER raised, since two users hold every subscription), and:

1. idle: opens --idle subscriptions (`connectionEvents` of Northwind, as its owner and member),
   one WebSocket each (--idle-per-socket S: S on each socket), split over the two servers, waits
   until each server's GET /metrics (`revampd_live_subscriptions`) counts its share, and reads
   each server's resident memory (VmRSS) before and after: the memory of one open subscription;
   then each server's CPU time (utime + stime, all threads) over --idle-seconds with them open,
   against the same time with none;
2. fan-out: opens --subscribers subscribers the same way, then submits a ticket over HTTP
   (`submitTicket` as Northwind's member, to each server in turn) --changes times, one at a time,
   each once every subscriber has had the last one's events, and times each delivery: from the
   moment the mutation's HTTP response arrived (the commit is before it: a delivery may even
   arrive first, and count as negative) to the `next` message's arrival, and from the `occurredAt`
   the event carries (stamped just before the commit) to it on the wall clock. It checks that
   every subscriber got every event of every change exactly once and in order, counts what the
   server ended (a `SERVICE_UNAVAILABLE` error and `complete`, say), and divides each server's
   CPU time over the changes by the deliveries it made (and this process's by all of them).

Before both, a warm-up (a subscriber on each server, one change) makes the caches, pools, hubs
and their Redis connections, and tells how many events a `submitTicket` makes.

The load generator is this process: the websockets library's asyncio client on uvloop, one task
per socket that stamps each message as it is read, and httpx for the mutations; it runs on the
same machine as the servers (and Redis, and PostgreSQL) and takes CPU from them while the
events arrive. Sockets offer permessage-deflate, as browsers do, and the servers decline it (--no-deflate: they do not offer it). The
open-files limit is raised (RLIMIT_NOFILE, which the servers inherit) to what the sockets need.

Goals (the issue): a change fanned out to 1,000 subscribers on two workers with p99 under 100 ms
from commit to delivery; 10,000 open idle subscriptions on two workers at under 20 KiB each.
`--quick` (SQLite, 100 subscribers, 5 changes, 1,000 idle, 3 idle seconds) takes under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import httpx
import orjson
import uvloop
from sqlalchemy import select
from sqlalchemy.engine import make_url
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from db import models as m
from db.engine import create_engine, read_sessions
from server.auth import user_token
from server.cli import Progress
from server.settings import Settings
from tests.bench import dashboard
from tests.bench.data import prepare
from tests.pg import pg_admin

ROOT = Path(__file__).parents[2]
PG_DATABASE = "revampd_bench_live"
OWNER, MEMBER = "owner@northwind.example", "member@northwind.example"
PROTOCOL = Subprotocol("graphql-transport-ws")
SUBSCRIPTION = "subscription { connectionEvents { cursor occurredAt node { __typename id } } }"
SUBMIT = "mutation($input: SubmitTicketInput!) { submitTicket(input: $input) { ticket { id } userErrors { code } } }"
P99_GOAL_MS = 100.0
KIB_GOAL = 20.0
# Subscriptions being opened at once: each takes a pooled connection to read where its connection's events stand,
# and a burst of many more (hundreds at once on two cores) outwaits DB_POOL_TIMEOUT_SECONDS and is refused busy.
OPENING = 64
WAIT = 60.0  # seconds a change's deliveries (or the servers' following) may take before giving up
T = TypeVar("T")


# ---- the database -------------------------------------------------------------------

@dataclass
class Data:
    tokens: dict[str, str]  # by email
    connection_id: int  # Northwind's


async def build(url: str, settings: Settings) -> Data:
    """Migrate, seed the demo and the bench rows; Northwind's owner's and member's tokens."""
    await prepare(url, datetime.now(timezone.utc).date())
    engine = create_engine(url)
    try:
        async with read_sessions(engine)() as session:
            users = {u.email: u for u in await session.scalars(select(m.User).where(m.User.email.in_((OWNER, MEMBER))))}
            cid = await session.scalar(select(m.Connection.id).where(m.Connection.partner_id == users[OWNER].partner_id))
    finally:
        await engine.dispose()
    assert cid is not None
    return Data({email: user_token(settings, user) for email, user in users.items()}, int(cid))


async def last_event(url: str, connection_id: int) -> int:
    """The number of the connection's last event."""
    engine = create_engine(url)
    try:
        async with read_sessions(engine)() as session:
            last = await session.scalar(
                select(m.EventSequence.last_seq).where(m.EventSequence.connection_id == connection_id))
    finally:
        await engine.dispose()
    return int(last or 0)


# ---- the servers --------------------------------------------------------------------

@dataclass
class Server(dashboard.Server):
    """A server of the bench's (tests/bench/dashboard.py's), with its resident memory."""

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def start_server(name: str, env: dict[str, str], stack: ExitStack) -> Server:
    """`revampd-bff serve --port P` (one worker: the process is the worker); --no-jobs: the
    background jobs (run in process on SQLite) would make events of their own."""
    return dashboard.started(
        Server, name, lambda port: [sys.executable, "-m", "server.cli", "serve", "--no-jobs", "--port", str(port)], env,
        stack)


async def followed(http: httpx.AsyncClient, server: Server) -> int:
    """The subscriptions the server's hub follows (its GET /metrics)."""
    body = (await http.get(f"http://127.0.0.1:{server.port}/metrics")).text
    found = re.search(r"^revampd_live_subscriptions (\S+)$", body, re.M)
    return int(float(found.group(1))) if found else 0


# ---- the subscribers ----------------------------------------------------------------

@dataclass
class Delivery:
    seq: int
    arrived: float  # perf_counter()
    wall: float  # time.time()
    occurred_at: str


@dataclass
class Tally:
    """What the sockets of a phase have heard: the events delivered, and what went wrong. A change
    is out once every subscriber still open has had its events (`begin`)."""

    messages: int = 0
    target: int = 0
    first: int = 0  # the number of the current change's first event
    events: int = 0  # the current change's events (each subscriber's share)
    errors: int = 0  # messages that were not an event (an error, a `complete`), and sockets lost
    ended: int = 0  # subscribers the server ended (or whose socket it closed)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    problems: list[str] = field(default_factory=list)

    def begin(self, first: int, events: int, subscribers: int, base: int | None = None) -> None:
        """A change whose events are numbered from `first`, for `subscribers`; counted from `base`
        messages (by default: from now on)."""
        self.first, self.events = first, events
        self.target = (self.messages if base is None else base) + events * subscribers
        self.check()

    def check(self) -> None:
        if self.messages >= self.target:
            self.done.set()
        else:
            self.done.clear()

    def problem(self, what: str) -> None:
        self.errors += 1
        if len(self.problems) < 20:
            self.problems.append(what[:300])


@dataclass(eq=False)
class Subscriber:
    """One WebSocket and its subscriptions, read by a task of its own."""

    ws: ClientConnection
    server: int
    tally: Tally
    got: list[Delivery] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    closing: bool = False
    ended: bool = False

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                arrived, wall = time.perf_counter(), time.time()  # first: before anything else is done with it
                message = orjson.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await self.ws.send('{"type":"pong"}')
                    continue
                payload = message.get("payload") or {}
                event = (payload.get("data") or {}).get("connectionEvents") if kind == "next" else None
                if event is None or payload.get("errors"):
                    self.tally.problem(str(message))
                    if kind in ("complete", "error"):
                        self.end()
                    continue
                self.got.append(Delivery(_seq(event["cursor"]), arrived, wall, event["occurredAt"]))
                self.tally.messages += 1
                self.tally.check()
        except Exception as exc:  # noqa: BLE001 - the socket went away: say so, the phase's checks count it
            self.tally.problem(f"socket lost: {exc!r}")
            self.end()
            return
        if not self.closing:
            self.tally.problem(f"socket closed by the server: {self.ws.close_code} {self.ws.close_reason}")
            self.end()

    def end(self) -> None:
        """The server ended it: the current change's events it has not had will not come."""
        if self.ended:
            return
        self.ended = True
        self.tally.ended += 1
        if self.tally.events:
            had = sum(1 for d in self.got[-self.tally.events:] if d.seq >= self.tally.first)
            self.tally.target -= self.tally.events - had
            self.tally.check()

    async def close(self) -> None:
        self.closing = True
        await self.ws.close()
        if self.task is not None:
            self.task.cancel()


def _seq(cursor: str) -> int:
    return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().rsplit(":", 1)[1])


async def open_subscriber(port: int, server: int, token: str, subscriptions: int, tally: Tally,
                          deflate: bool) -> Subscriber:
    ws = await connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=[PROTOCOL], open_timeout=WAIT,
                       compression="deflate" if deflate else None, ping_interval=None, close_timeout=10)
    await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    if ack.get("type") != "connection_ack":
        raise SystemExit(f"connection_init was answered {ack}")
    for n in range(subscriptions):
        await ws.send(json.dumps({"id": str(n + 1), "type": "subscribe", "payload": {"query": SUBSCRIPTION}}))
    subscriber = Subscriber(ws, server, tally)
    subscriber.task = asyncio.create_task(subscriber.read())
    return subscriber


async def gather_limited(calls: list[Callable[[], Awaitable[T]]], limit: int, progress: Progress | None) -> list[T]:
    """The calls, `limit` at a time, in order; `progress` told as they finish."""
    gate = asyncio.Semaphore(limit)
    finished = 0

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        nonlocal finished
        async with gate:
            result = await call()
        finished += 1
        if progress is not None and (finished % 50 == 0 or finished == len(calls)):
            progress(finished, len(calls))
        return result

    try:
        return list(await asyncio.gather(*(one(c) for c in calls)))
    finally:
        if progress is not None:
            progress.close()


async def open_all(what: str, servers: list[Server], data: Data, sockets: int, per_socket: int, tally: Tally,
                   deflate: bool) -> list[Subscriber]:
    """`sockets` sockets split over the servers (and over Northwind's owner and member), each with
    `per_socket` subscriptions; returns once every server's hub follows its share."""
    users = (data.tokens[OWNER], data.tokens[MEMBER])

    def opener(i: int) -> Callable[[], Awaitable[Subscriber]]:
        return lambda: open_subscriber(servers[i % 2].port, i % 2, users[(i // 2) % 2], per_socket, tally, deflate)

    subscribers = await gather_limited([opener(i) for i in range(sockets)], max(1, OPENING // per_socket),
                                       Progress(f"{what}: opening"))
    expected = [per_socket * sum(1 for s in subscribers if s.server == n) for n in range(len(servers))]
    async with httpx.AsyncClient(timeout=30) as http:
        deadline = time.monotonic() + WAIT
        while True:
            counts = [await followed(http, s) for s in servers]
            if counts == expected:
                return subscribers
            if tally.problems or time.monotonic() > deadline:
                raise SystemExit(f"{what}: the servers follow {counts} subscriptions, not {expected}; "
                                 f"client problems: {tally.problems[:5]}")
            await asyncio.sleep(0.2)


async def close_all(subscribers: list[Subscriber], servers: list[Server]) -> None:
    await gather_limited([s.close for s in subscribers], 256, None)
    async with httpx.AsyncClient(timeout=30) as http:
        deadline = time.monotonic() + WAIT
        while any([await followed(http, s) for s in servers]):
            if time.monotonic() > deadline:
                raise SystemExit("the servers still follow subscriptions a minute after the sockets closed")
            await asyncio.sleep(0.2)


# ---- the two phases -----------------------------------------------------------------

@dataclass
class Idle:
    subscriptions: list[int]  # per server
    sockets: int
    rss_before: list[float]  # MiB per server
    rss_after: list[float]
    cpu_none: list[float]  # CPU seconds per server over the idle window, with no subscription
    cpu_open: list[float]  # ... and with them open
    seconds: float

    def kib(self, n: int) -> float:
        return (self.rss_after[n] - self.rss_before[n]) * 1024 / self.subscriptions[n]

    @property
    def kib_all(self) -> float:
        return (sum(self.rss_after) - sum(self.rss_before)) * 1024 / sum(self.subscriptions)


async def cpu_over(servers: list[Server], seconds: float) -> list[float]:
    before = [s.cpu_seconds() for s in servers]
    await asyncio.sleep(seconds)
    return [s.cpu_seconds() - b for s, b in zip(servers, before, strict=True)]


async def idle_phase(servers: list[Server], data: Data, args: argparse.Namespace) -> Idle:
    sockets = -(-args.idle // args.idle_per_socket)
    await asyncio.sleep(2)  # what the warm-up left settles
    cpu_none = await cpu_over(servers, args.idle_seconds)
    rss_before = [s.rss_mib() for s in servers]
    tally = Tally()
    subscribers = await open_all(f"{args.idle:,} idle subscriptions", servers, data, sockets, args.idle_per_socket,
                                 tally, args.deflate)
    await asyncio.sleep(2)  # the servers finish what the openings started
    rss_after = [s.rss_mib() for s in servers]
    cpu_open = await cpu_over(servers, args.idle_seconds)
    if tally.messages or tally.errors:
        print(f"  idle sockets heard {tally.messages} events and {tally.errors} errors: {tally.problems[:3]}")
    counts = [args.idle_per_socket * sum(1 for s in subscribers if s.server == n) for n in range(len(servers))]
    await close_all(subscribers, servers)
    return Idle(counts, sockets, rss_before, rss_after, cpu_none, cpu_open, args.idle_seconds)


@dataclass
class FanOut:
    subscribers: list[int]  # per server
    changes: int
    events_per_change: int
    expected: int
    received: int
    wrong: int  # subscribers whose events were not exactly every event, once, in order
    from_response: list[float]  # ms, each delivery
    from_occurred: list[float]  # ms, each delivery (wall clock)
    complete: list[float]  # ms, per change: from its response to its last delivery
    round_trip: list[float]  # ms, per change: the mutation's HTTP round trip
    server_cpu: list[float]  # seconds per server while the changes went out
    client_cpu: float  # seconds of this process's meanwhile
    errors: int  # messages other than events
    ended: int  # subscriptions the server ended
    problems: list[str]

    def cpu_ms_per_delivery(self, n: int) -> float:
        if not self.received:
            return float("nan")
        return self.server_cpu[n] * 1000 / (self.received * self.subscribers[n] / sum(self.subscribers))


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def warm_up(servers: list[Server], data: Data, url: str, args: argparse.Namespace) -> int:
    """A subscriber on each server and one change, as the fan-out makes them: caches, pools,
    the hubs and their Redis connections are made before anything is measured. Returns the
    number of events a change (`submitTicket`) makes."""
    tally = Tally()
    subscribers = await open_all("warm-up", servers, data, 4, 1, tally, args.deflate)
    before = await last_event(url, data.connection_id)
    async with httpx.AsyncClient(timeout=30) as http:
        await submit(http, servers[0], data, "Warm-up")
    events = await last_event(url, data.connection_id) - before
    tally.begin(before + 1, events, len(subscribers), base=0)
    await asyncio.wait_for(tally.done.wait(), WAIT)
    if tally.errors:
        raise SystemExit(f"warm-up: {tally.problems}")
    await close_all(subscribers, servers)
    return events


async def submit(http: httpx.AsyncClient, server: Server, data: Data, title: str) -> None:
    response = await http.post(
        f"http://127.0.0.1:{server.port}/graphql", headers={"Authorization": f"Bearer {data.tokens[MEMBER]}"},
        json={"query": SUBMIT, "variables": {"input": {"title": title, "description": "d", "priority": "LOW"}}})
    body = response.json()
    if response.status_code != 200 or body.get("errors") or body["data"]["submitTicket"]["userErrors"]:
        raise SystemExit(f"submitTicket was answered {response.status_code} {body}")


async def fan_out_phase(servers: list[Server], data: Data, url: str, events: int, args: argparse.Namespace) -> FanOut:
    tally = Tally()
    subscribers = await open_all(f"{args.subscribers:,} subscribers", servers, data, args.subscribers, 1, tally,
                                 args.deflate)
    first = await last_event(url, data.connection_id) + 1  # the first event of the first change
    responded: list[float] = []
    round_trip: list[float] = []
    progress = Progress(f"{args.changes} changes to {args.subscribers:,} subscribers")
    cpu, client_cpu = [s.cpu_seconds() for s in servers], time.process_time()
    async with httpx.AsyncClient(timeout=30) as http:
        for k in range(args.changes):
            await asyncio.sleep(0.2)  # each change on idle servers
            tally.begin(first + k * events, events, sum(1 for s in subscribers if not s.ended))
            sent = time.perf_counter()
            await submit(http, servers[k % 2], data, f"Fan-out {k + 1}")
            responded.append(time.perf_counter())
            round_trip.append((responded[-1] - sent) * 1000)
            try:
                await asyncio.wait_for(tally.done.wait(), WAIT)
            except TimeoutError:
                tally.problem(f"change {k + 1}: {tally.target - tally.messages} deliveries missing after {WAIT:g} s")
            progress(k + 1, args.changes)
    progress.close()
    cpu = [s.cpu_seconds() - c for s, c in zip(servers, cpu, strict=True)]
    client_cpu = time.process_time() - client_cpu
    await asyncio.sleep(0.5)  # any late or extra event
    await close_all(subscribers, servers)
    expected_seqs = list(range(first, first + events * args.changes))
    from_response, from_occurred, wrong = [], [], 0
    last = [0.0] * args.changes
    for s in subscribers:
        if [d.seq for d in s.got] != expected_seqs:
            wrong += 1
        for d in s.got:
            k = (d.seq - first) // events
            if not 0 <= k < args.changes:
                continue
            from_response.append((d.arrived - responded[k]) * 1000)
            from_occurred.append((d.wall - datetime.fromisoformat(d.occurred_at).timestamp()) * 1000)
            last[k] = max(last[k], d.arrived)
    counts = [sum(1 for s in subscribers if s.server == n) for n in range(len(servers))]
    return FanOut(counts, args.changes, events, events * args.changes * len(subscribers),
                  sum(len(s.got) for s in subscribers), wrong, from_response, from_occurred,
                  [(t - r) * 1000 for t, r in zip(last, responded, strict=True)], round_trip, cpu, client_cpu,
                  tally.errors, tally.ended, tally.problems)


@dataclass
class Result:
    database: str
    idle: Idle | None
    fan_out: FanOut | None


async def measure(label: str, url: str, servers: list[Server], data: Data, args: argparse.Namespace) -> Result:
    events = await warm_up(servers, data, url, args)
    print(f"{label}: warmed up; a submitTicket makes {events} events for Northwind's subscribers", flush=True)
    idle = await idle_phase(servers, data, args) if args.idle else None
    if idle is not None:
        print(f"{label}: {sum(idle.subscriptions):,} idle subscriptions on {idle.sockets:,} sockets: "
              f"{idle.kib_all:.1f} KiB each (RSS {_pair(idle.rss_before, '.0f')} -> {_pair(idle.rss_after, '.0f')} MiB), "
              f"CPU over {idle.seconds:g} s {_pair([c * 1000 for c in idle.cpu_open], '.0f')} ms "
              f"({_pair([c * 1000 for c in idle.cpu_none], '.0f')} ms with none open)", flush=True)
    fan = await fan_out_phase(servers, data, url, events, args) if args.subscribers else None
    if fan is not None:
        print(f"{label}: {fan.received:,} of {fan.expected:,} deliveries, {fan.errors} errors, {fan.ended} subscriptions "
              f"ended by the server; from the response p50 "
              f"{percentile(fan.from_response, 0.5):.0f} ms, p99 {percentile(fan.from_response, 0.99):.0f} ms, "
              f"max {max(fan.from_response, default=float('nan')):.0f} ms; server CPU per delivery "
              f"{_pair([fan.cpu_ms_per_delivery(n) for n in range(2)], '.2f')} ms", flush=True)
        for problem in fan.problems[:5]:
            print(f"  problem: {problem}")
    return Result(label, idle, fan)


def _pair(values: list[float], spec: str) -> str:
    return " / ".join(format(v, spec) for v in values)


# ---- a database ---------------------------------------------------------------------

def raise_open_files(needed: int) -> str:
    """RLIMIT_NOFILE raised to `needed` for this process and the servers it starts (which inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return f"open-files limit {soft:,} (enough)"
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(hard, needed)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return f"open-files limit raised from {soft:,} to {hard:,} only (the hard limit; {needed:,} wanted)"
    return f"open-files limit raised from {soft:,} to {needed:,} (RLIMIT_NOFILE, inherited by the servers)"


def bench_database(label: str, url: str, args: argparse.Namespace) -> Result:
    started = time.monotonic()
    prefix = f"revampd-bench-live:{uuid.uuid4().hex}:"
    per_user = max(args.subscribers, args.idle, 50)
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": args.redis_url, "REDIS_KEY_PREFIX": prefix,
           "LOG_LEVEL": "WARNING", "LIVE_MAX_SUBSCRIPTIONS_PER_USER": str(per_user)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    settings = Settings.from_env(env)
    data = asyncio.run(build(url, settings))
    print(f"\n{label}: built in {time.monotonic() - started:.0f} s; LIVE_MAX_SUBSCRIPTIONS_PER_USER={per_user} "
          f"(default 50 per user on each worker: two users hold every subscription here)", flush=True)
    try:
        with ExitStack() as stack:
            servers = [start_server(name, env, stack) for name in ("A", "B")]
            print(f"{label}: servers A (pid {servers[0].process.pid}, port {servers[0].port}) and B (pid "
                  f"{servers[1].process.pid}, port {servers[1].port}), Redis prefix {prefix}", flush=True)
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                result = runner.run(measure(label, url, servers, data, args))
            for server in servers:
                if server.process.poll() is not None:
                    raise SystemExit(f"server {server.side} exited:\n{server.output()}")
    finally:
        asyncio.run(_forget_redis(args.redis_url, prefix))
    return result


async def _forget_redis(url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


# ---- reporting ----------------------------------------------------------------------

FAN_COLUMNS = ("Database", "Subscribers (A / B)", "Changes", "Deliveries (got / expected)", "Not exactly once",
               "Errors (subscriptions ended)",
               "From response p50 / p99 / max ms", "From occurredAt p50 / p99 / max ms",
               "Change fully out p50 / max ms", "Mutation round trip p50 ms", "Server CPU ms per delivery (A / B)",
               "Client CPU ms per delivery", "p99 < 100 ms")
IDLE_COLUMNS = ("Database", "Subscriptions (A / B)", "Sockets", "RSS MiB before (A / B)", "RSS MiB after (A / B)",
                "KiB per subscription (A / B)", "Under 20 KiB", "CPU ms per s, none open (A / B)",
                "CPU ms per s, open (A / B)")
TEXT = ("Database",)


def _three(values: list[float]) -> str:
    return f"{percentile(values, 0.5):.0f} / {percentile(values, 0.99):.0f} / {max(values, default=float('nan')):.0f}"


def fan_cells(r: Result) -> list[str]:
    f = r.fan_out
    assert f is not None
    met = "yes" if f.received == f.expected and percentile(f.from_response, 0.99) < P99_GOAL_MS else "no"
    return [r.database, f"{sum(f.subscribers):,} ({_pair([float(n) for n in f.subscribers], ',.0f')})",
            f"{f.changes} x {f.events_per_change} events", f"{f.received:,} / {f.expected:,}", str(f.wrong),
            f"{f.errors:,} ({f.ended:,})",
            _three(f.from_response), _three(f.from_occurred),
            f"{percentile(f.complete, 0.5):.0f} / {max(f.complete, default=float('nan')):.0f}",
            f"{percentile(f.round_trip, 0.5):.0f}",
            _pair([f.cpu_ms_per_delivery(n) for n in range(len(f.subscribers))], ".2f"),
            f"{f.client_cpu * 1000 / f.received:.2f}" if f.received else "-", met]


def idle_cells(r: Result) -> list[str]:
    i = r.idle
    assert i is not None
    per = [i.kib(n) for n in range(len(i.subscriptions))]
    return [r.database, f"{sum(i.subscriptions):,} ({_pair([float(n) for n in i.subscriptions], ',.0f')})",
            f"{i.sockets:,}", _pair(i.rss_before, ".0f"), _pair(i.rss_after, ".0f"),
            f"{i.kib_all:.1f} ({_pair(per, '.1f')})", "yes" if i.kib_all < KIB_GOAL else "no",
            _pair([c * 1000 / i.seconds for c in i.cpu_none], ".1f"),
            _pair([c * 1000 / i.seconds for c in i.cpu_open], ".1f")]


def table(columns: tuple[str, ...], lines: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(columns) + " |")
        print("|" + "|".join("---" if c in TEXT else "--:" for c in columns) + "|")
        for line in lines:
            print("| " + " | ".join(line) + " |")
        return
    widths = [max(len(line[i]) for line in [list(columns), *lines]) for i in range(len(columns))]
    for n, line in enumerate([list(columns), *lines]):
        print("  ".join(c.ljust(w) if name in TEXT else c.rjust(w)
                        for name, c, w in zip(columns, line, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def report(results: list[Result], args: argparse.Namespace, limit: str) -> None:
    deflate = "offering permessage-deflate (the servers decline it)" if args.deflate else "without permessage-deflate"
    print(f"\nLive updates: two `revampd-bff serve` processes (one worker each) sharing Redis, {os.cpu_count()} CPUs "
          f"shared with the load generator (this process), Redis and the database. Sockets {deflate}; {limit}.")
    fans = [r for r in results if r.fan_out is not None]
    if fans:
        print(f"\nFan-out: {args.subscribers:,} subscribers (`connectionEvents`, one socket each), {args.changes} "
              f"ticket submissions one at a time. Each delivery timed from the mutation's HTTP response (after its "
              f"commit) and from the event's occurredAt (stamped just before the commit). Goal: p99 < "
              f"{P99_GOAL_MS:.0f} ms.\n")
        table(FAN_COLUMNS, [fan_cells(r) for r in fans], args.markdown)
    idles = [r for r in results if r.idle is not None]
    if idles:
        print(f"\nIdle: {args.idle:,} subscriptions, {args.idle_per_socket} per socket. KiB per subscription: the "
              f"servers' VmRSS growth over the subscriptions they hold; CPU over {args.idle_seconds:g} idle s, per "
              f"second (1000 = one core), with none and with them open. Goal: under {KIB_GOAL:.0f} KiB.\n")
        table(IDLE_COLUMNS, [idle_cells(r) for r in idles], args.markdown)
    problems = [(r.database, p) for r in results if r.fan_out is not None for p in r.fan_out.problems]
    for database, problem in problems[:10]:
        print(f"{database}: {problem}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run in under a minute: SQLite (unless --only "
                        "postgresql), 100 subscribers, 5 changes, 1,000 idle subscriptions, 3 idle seconds")
    parser.add_argument("--subscribers", type=int, help="fan-out subscribers, one socket each (1,000; 0: skip)")
    parser.add_argument("--changes", type=int, help="changes fanned out, one at a time (20)")
    parser.add_argument("--idle", type=int, help="idle subscriptions held (10,000; 0: skip)")
    parser.add_argument("--idle-per-socket", type=int, default=1, help="idle subscriptions on each socket (1; the "
                        "server allows LIVE_MAX_SUBSCRIPTIONS_PER_CONNECTION, 20)")
    parser.add_argument("--idle-seconds", type=float, help="CPU measured over this long, idle (10)")
    parser.add_argument("--no-deflate", dest="deflate", action="store_false",
                        help="sockets do not offer permessage-deflate (browsers do)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL")
                        or "redis://127.0.0.1:6379/0", help="the servers' Redis (BENCH_REDIS_URL, TEST_REDIS_URL, "
                        "else redis://127.0.0.1:6379/0); keys and channel under a prefix of the bench's own")
    parser.add_argument("--database-url", help="a PostgreSQL server (postgresql+asyncpg://user@host/any): "
                        "the bench makes and drops the database --bench-database on it")
    parser.add_argument("--bench-database", default=PG_DATABASE, help=f"(default {PG_DATABASE})")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    args = parser.parse_args()
    quick = {"subscribers": 100, "changes": 5, "idle": 1000, "idle_seconds": 3.0}
    full = {"subscribers": 1000, "changes": 20, "idle": 10_000, "idle_seconds": 10.0}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick and args.only is None:
        args.only = "sqlite"
    if not 1 <= args.idle_per_socket <= 20:
        parser.error("--idle-per-socket must be 1 to 20 (LIVE_MAX_SUBSCRIPTIONS_PER_CONNECTION)")
    pg = args.database_url or os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if pg and not pg.startswith("postgresql"):
        parser.error(f"--database-url must be a PostgreSQL URL, got {pg!r}")
    if args.only == "postgresql" and not pg:
        parser.error("--only postgresql needs --database-url, BENCH_DATABASE_URL or TEST_DATABASE_URL")
    sockets = max(args.subscribers, -(-args.idle // args.idle_per_socket))
    limit = raise_open_files(sockets + 1024)
    print(limit, flush=True)
    results: list[Result] = []
    if args.only != "postgresql":
        tmp = tempfile.mkdtemp(prefix="revampd-bench-live-")
        try:
            results.append(bench_database("SQLite", f"sqlite+aiosqlite:///{tmp}/bench.db", args))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if pg and args.only != "sqlite":
        name = args.bench_database
        url = make_url(pg).set(database=name).render_as_string(hide_password=False)
        asyncio.run(pg_admin(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(pg_admin(pg, f'CREATE DATABASE "{name}"'))
        try:
            results.append(bench_database("PostgreSQL", url, args))
        finally:
            asyncio.run(pg_admin(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    report(results, args, limit)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # everything started is stopped and removed by then
        sys.exit("interrupted")
