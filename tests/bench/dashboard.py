"""Benchmark: DashboardOverview through GraphQL against the same page hand-written, and every page.

Usage: make bench  (or: python -m tests.bench.dashboard [--quick] [--seconds 3] [--rounds 3]
[--first 10,100] [--connections 1,8,32] [--doc-seconds 1] [--no-documents] [--database-url URL]
[--bench-database NAME] [--only sqlite|postgresql] [--markdown])

For each database (SQLite in a temporary directory; PostgreSQL as well when
--database-url, BENCH_DATABASE_URL or TEST_DATABASE_URL names a server, on which a
database `revampd_bench` (--bench-database) is made and dropped afterwards; the named
database itself is never touched) it:

1. migrates, loads the demo data and the benchmark's rows (tests/bench/data.py:
   Northwind gets more than 110 invoices, waiting tickets and payouts);
2. measures in this process, through httpx's ASGI transport, the SQL statements of
   one request and the Python memory it allocates at its peak (tracemalloc);
3. starts three servers as `revampd-bff serve` runs (tests/bench/serve.py: one uvicorn
   worker, uvloop, httptools, gc.freeze()): the GraphQL app, the lean hand-written
   endpoint (tests/bench/handwritten.py: SQLAlchemy Core, one statement per list,
   orjson) and the data layer alone (tests/bench/datalayer.py: the loaders' calls the
   page makes, ORM, no GraphQL), and checks that GraphQL and hand-written answer the
   same bytes for first=10 and first=100 (a diff, and no numbers, if not);
4. for each page size and number of connections, runs rounds of load on each side in
   turn (GraphQL, hand-written, data layer, GraphQL, ...) from a separate lean process
   (tests/bench/loadgen.py: keep-alive HTTP/1.1, one request in flight per
   connection), as the Northwind owner;
5. runs every query document in operations/ (mutations left out) against the GraphQL
   server from one connection, at each page size when it takes `$first`, and reads
   which engine answered it from the server's counter `revampd_graphql_executions_total`
   on GET /metrics ("plan" or "graphql-core"; "?" when the server has no such counter).

It reports requests per second, the ratio of each side's throughput to the hand-written
endpoint's, CPU time of the server process per request (utime + stime from /proc over
the run, all threads, divided by the requests it served), p50 and p99 latency,
statements per request, each server's peak resident memory (VmHWM) and the bytes of one
response on the wire, as sent without and with `Accept-Encoding: gzip`. The goal (issue
21): GraphQL's CPU per request at most 1.25 times the hand-written endpoint's, and its
throughput at least 0.8 times. `--quick` (SQLite only unless --only postgresql, short runs, one connection)
takes well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Awaitable, Callable, TypeVar

import httpx
import orjson
from graphql import OperationDefinitionNode, OperationType, parse
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine, make_url

from db import models as m
from db.engine import create_engine, read_sessions
from schema.base import to_global_id
from server.auth import user_token
from server.settings import Settings
from tests.bench.data import OWNER, prepare
from tests.bench.serve import BENCH_LIMITS
from tests.pg import pg_admin

ROOT = Path(__file__).parents[2]
OPERATIONS = ROOT / "operations"
QUERY = (OPERATIONS / "DashboardOverview.graphql").read_text()
LOADGEN = Path(__file__).with_name("loadgen.py")
PG_DATABASE = "revampd_bench"
CPU_GOAL = 1.25  # GraphQL's CPU per request over the hand-written endpoint's, at most
RATIO_GOAL = 0.8  # GraphQL's throughput over the hand-written endpoint's, at least
SIDES = ("graphql", "handwritten", "datalayer")
LABELS = {"graphql": "GraphQL", "handwritten": "hand-written", "datalayer": "data layer"}
# What each side's server answers the page at (the data layer's is the hand-written app's second route).
PATHS = {"handwritten": "/dashboard", "datalayer": "/dashboard/loaders"}
EXECUTIONS = "revampd_graphql_executions_total"
TICK = os.sysconf("SC_CLK_TCK")


# ---- the database -------------------------------------------------------------------

async def build(url: str) -> tuple[str, dict[str, int]]:
    """Migrate, seed, add the bench rows; the owner's token and Northwind's list sizes."""
    await prepare(url, datetime.now(timezone.utc).date())
    engine = create_engine(url)
    try:
        async with read_sessions(engine)() as session:
            owner = await session.scalar(select(m.User).where(m.User.email == OWNER))
            assert owner is not None
            conn = await session.scalar(select(m.Connection).where(m.Connection.partner_id == owner.partner_id))
            assert conn is not None
            sizes = {
                "invoices": await session.scalar(select(func.count()).where(m.Invoice.connection_id == conn.id)),
                "waiting tickets": await session.scalar(select(func.count()).where(
                    m.Ticket.connection_id == conn.id, m.Ticket.status.in_(("OPEN", "IN_PROGRESS")))),
                "payouts": await session.scalar(select(func.count()).where(m.Payout.connection_id == conn.id)),
            }
    finally:
        await engine.dispose()
    token = user_token(Settings(database_url=url), owner)
    return token, {k: int(v or 0) for k, v in sizes.items()}


async def page_variables(url: str) -> dict[str, dict[str, str]]:
    """The ids the documents that show one object need, from Northwind's rows: its
    newest paid invoice, its ticket with the most messages, a plan it is not on."""
    engine = create_engine(url)
    try:
        async with read_sessions(engine)() as session:
            cid = await session.scalar(
                select(m.Connection.id).join(m.User, m.User.partner_id == m.Connection.partner_id)
                .where(m.User.email == OWNER)
            )
            invoice = await session.scalar(
                select(m.Invoice.id).where(m.Invoice.connection_id == cid, m.Invoice.status == "PAID")
                .order_by(m.Invoice.issued_at.desc(), m.Invoice.id.desc()).limit(1)
            )
            ticket = await session.scalar(
                select(m.TicketMessage.ticket_id).join(m.Ticket, m.Ticket.id == m.TicketMessage.ticket_id)
                .where(m.Ticket.connection_id == cid).group_by(m.TicketMessage.ticket_id)
                .order_by(func.count().desc(), m.TicketMessage.ticket_id).limit(1)
            )
            current = select(m.Subscription.plan_id).where(m.Subscription.connection_id == cid).scalar_subquery()
            plan = await session.scalar(
                select(m.Plan.id).where(m.Plan.id != current, m.Plan.retired.is_(False)).order_by(m.Plan.rank).limit(1)
            )
    finally:
        await engine.dispose()
    return {
        "Invoice": {"id": to_global_id("Invoice", invoice)},
        "Ticket": {"id": to_global_id("Ticket", ticket)},
        "PlanChangePreview": {"planId": to_global_id("Plan", plan)},
    }


# ---- requests -----------------------------------------------------------------------

def graphql_body(first: int, query: str = QUERY, name: str = "DashboardOverview",
                 variables: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"query": query, "variables": {**(variables or {}), "first": first} if first is not None
                       else variables or {}, "operationName": name}).encode()


@dataclass(frozen=True)
class Call:
    """One request as the Northwind owner: a GET of `path`, or a POST of `body` to it."""

    path: str
    body: bytes | None = None

    @property
    def method(self) -> str:
        return "GET" if self.body is None else "POST"

    def headers(self, token: str, **extra: str) -> dict[str, str]:
        json_body = {"Content-Type": "application/json"} if self.body is not None else {}
        return {"Authorization": f"Bearer {token}", **json_body, **extra}

    def raw(self, port: int, token: str) -> bytes:
        head = "".join(f"{k}: {v}\r\n" for k, v in self.headers(token).items())
        length = f"Content-Length: {len(self.body)}\r\n" if self.body is not None else ""
        return (f"{self.method} {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}{length}\r\n").encode() \
            + (self.body or b"")


def dashboard_call(side: str, first: int) -> Call:
    if side == "graphql":
        return Call("/graphql", graphql_body(first))
    return Call(f"{PATHS[side]}?first={first}")


def raw_request(side: str, port: int, token: str, first: int) -> bytes:
    return dashboard_call(side, first).raw(port, token)


def app_of(side: str) -> str:
    """The app that serves a side: the hand-written app serves the data layer too."""
    return "graphql" if side == "graphql" else "handwritten"


@dataclass(frozen=True)
class Document:
    """A query document of operations/ and the variables it is run with."""

    name: str
    text: str
    takes_first: bool
    variables: dict[str, str]

    def call(self, first: int | None) -> Call:
        return Call("/graphql", graphql_body(first, self.text, self.name, self.variables))  # type: ignore[arg-type]


def documents(ids: dict[str, dict[str, str]]) -> tuple[list[Document], list[str]]:
    """Every query document in operations/ that can be run with what `ids` gives (mutations
    left out), and the others left out and why (a required variable nobody fills)."""
    found, skipped = [], []
    for path in sorted(OPERATIONS.glob("*.graphql")):
        text = path.read_text()
        ops = [d for d in parse(text).definitions if isinstance(d, OperationDefinitionNode)]
        if any(op.operation != OperationType.QUERY for op in ops):
            continue  # a mutation: the bench only reads
        if len(ops) != 1 or ops[0].name is None:
            skipped.append(f"{path.stem} (not one named operation)")
            continue
        op, name = ops[0], ops[0].name.value
        variables = op.variable_definitions or ()
        names = {v.variable.name.value for v in variables}
        required = {v.variable.name.value for v in variables
                    if v.type.kind == "non_null_type" and v.default_value is None}
        given = ids.get(name, {})
        if required - set(given):
            skipped.append(f"{name} (needs {', '.join(sorted(required - set(given)))})")
            continue
        found.append(Document(name, text, "first" in names, given))
    return found, skipped


async def profile(url: str, token: str, calls: dict[Any, tuple[str, Call]]) -> dict[Any, tuple[float, float]]:
    """Per call, in this process: (SQL statements per request, traced peak MiB of one request).
    `calls` maps a key to (the app that serves it, the call)."""
    from server.app import create_app as graphql_app
    from tests.bench.handwritten import create_app as handwritten_app

    settings = Settings(database_url=url, **BENCH_LIMITS)  # as tests/bench/serve.py serves it
    apps: dict[str, Any] = {"graphql": graphql_app(settings), "handwritten": handwritten_app(settings)}
    try:
        return {key: await _measure(apps[kind], call, token) for key, (kind, call) in calls.items()}
    finally:
        for engine in (apps["graphql"].app.state.revampd.engine, apps["handwritten"].app.state.engine):
            if engine is not None:
                await engine.dispose()


async def _measure(app: Any, call: Call, token: str) -> tuple[float, float]:
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
        def send() -> Awaitable[httpx.Response]:
            return http.request(call.method, call.path, content=call.body, headers=call.headers(token))

        for _ in range(3):  # warm up: caches, pool, compiled statements
            answer = await send()
            assert answer.status_code == 200, answer.text
        event.listen(Engine, "before_cursor_execute", count)
        try:
            for _ in range(5):
                await send()
        finally:
            event.remove(Engine, "before_cursor_execute", count)
        tracemalloc.start()
        try:
            await send()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return statements / 5, peak / 2**20


def wire_bytes(port: int, call: Call, token: str) -> tuple[int, int]:
    """The bytes of one response's body as sent: without and with `Accept-Encoding: gzip`."""
    sizes = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        for encoding in ("identity", "gzip"):
            answer = http.request(call.method, call.path, content=call.body,
                                  headers=call.headers(token, **{"Accept-Encoding": encoding}))
            answer.read()
            sizes.append(answer.num_bytes_downloaded)
    return sizes[0], sizes[1]


def executions(port: int) -> dict[tuple[str, str], float] | None:
    """The server's executions counted by (operation, engine), or None without the counter."""
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        if answer.status_code != 200:
            return None
        counts = {
            (sample.labels.get("operation", ""), sample.labels.get("engine", "")): sample.value
            for family in text_string_to_metric_families(answer.text) for sample in family.samples
            if sample.name == EXECUTIONS
        }
    except (httpx.HTTPError, ValueError):
        return None
    return counts or None


def engine_of(name: str, before: dict[tuple[str, str], float] | None,
              after: dict[tuple[str, str], float] | None) -> str:
    """Which engine ran `name` between two readings of the counter: "?" when the server has no
    such counter, "none" when it counted no execution of `name` (a server that answers from a
    cache, say)."""
    if after is None:
        return "?"
    ran = sorted(engine for (op, engine), n in after.items()
                 if op == name and n > (before or {}).get((op, engine), 0.0))
    return "+".join(ran) or "none"


# ---- processes ----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    side: str
    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def peak_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_server(side: str, url: str, stack: ExitStack) -> Server:
    return started(Server, side, lambda port: [sys.executable, "-m", "tests.bench.serve", side, url, str(port)], None,
                   stack)


S = TypeVar("S", bound=Server)


def started(kind: type[S], name: str, argv: Callable[[int], list[str]], env: dict[str, str] | None,
            stack: ExitStack) -> S:
    """The server `argv(port)` runs on a free port, its output kept, stopped when `stack` closes;
    once its /healthz answers."""
    port = free_port()
    log = stack.enter_context(tempfile.TemporaryFile())
    process = subprocess.Popen(argv(port), cwd=ROOT, env=env, stdout=log, stderr=log)
    stack.callback(stop, process)
    server = kind(name, port, process, log)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the {name} server exited ({process.returncode}):\n{server.output()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the {name} server did not start in 60 s:\n{server.output()}")
        time.sleep(0.1)


class LoadGen:
    def __init__(self, stack: ExitStack) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(LOADGEN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        stack.callback(stop, self.process)

    def run(self, port: int, request: bytes, connections: int, seconds: float) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        cmd = {"port": port, "request": request.decode("latin-1"), "connections": connections, "seconds": seconds}
        self.process.stdin.write(json.dumps(cmd) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the load generator exited")
        return dict(json.loads(line))


# ---- measuring ----------------------------------------------------------------------

@dataclass
class Side:
    """One side's rounds at one setting. Throughput and CPU per request count the
    requests answered 200 only: a refusal (503 when no pooled connection came within
    DB_POOL_TIMEOUT_SECONDS) is cheap, and must not make an overloaded side look fast."""

    requests: int = 0
    ok: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0
    errors: int = 0
    latencies: list[int] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_ms(self) -> float:
        return self.cpu * 1000 / self.ok if self.ok else float("nan")

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] / 1000


    def add(self, server: "Server", loadgen: "LoadGen", request: bytes, connections: int, seconds: float) -> None:
        """One round of load on `server`, added to what this side has measured."""
        cpu = server.cpu_seconds()
        result = loadgen.run(server.port, request, connections, seconds)
        self.cpu += server.cpu_seconds() - cpu
        self.requests += result["requests"]
        self.ok += result["ok"]
        self.elapsed += result["elapsed"]
        self.latencies += result["latencies_us"]
        self.errors += result["error_count"]
        if result["error_count"]:
            print(f"  {server.side}: {result['error_count']} errors, e.g. {result['errors']}", flush=True)


@dataclass
class Row:
    """The dashboard at one setting, on each side."""

    database: str
    first: int
    connections: int
    sides: dict[str, Side]
    statements: dict[str, float]
    traced_mib: dict[str, float]
    wire: dict[str, tuple[int, int]]
    engine: str = "?"
    peak_mib: dict[str, float] = field(default_factory=dict)

    def ratio(self, side: str = "graphql") -> float:
        hw = self.sides["handwritten"].rps
        return self.sides[side].rps / hw if hw else float("nan")

    @property
    def goal(self) -> str:
        cpu = self.sides["graphql"].cpu_ms <= CPU_GOAL * self.sides["handwritten"].cpu_ms
        ok = self.ratio() >= RATIO_GOAL and cpu
        return "yes" if ok else "no"


@dataclass
class DocRow:
    """One document of operations/ at one page size (None: it takes no `$first`)."""

    database: str
    name: str
    first: int | None
    side: Side
    statements: float
    wire: tuple[int, int]
    engine: str


def _without_cost(body: bytes) -> bytes:
    """The graph's answer less its `extensions` (the rate limit's cost, which the hand-written
    page does not report)."""
    answer = orjson.loads(body)
    answer.pop("extensions", None)
    return orjson.dumps(answer)


def check_identical(servers: dict[str, Server], token: str, firsts: list[int]) -> None:
    for first in sorted({10, 100, *firsts}):
        answers = {}
        for side in ("graphql", "handwritten"):
            call = dashboard_call(side, first)
            answers[side] = httpx.request(call.method, f"http://127.0.0.1:{servers[side].port}{call.path}",
                                          content=call.body, headers=call.headers(token), timeout=30)
        g, h = answers["graphql"], answers["handwritten"]
        if g.status_code != 200 or h.status_code != 200 or _without_cost(g.content) != h.content:
            def lines(r: httpx.Response) -> list[str]:
                try:
                    return json.dumps(r.json(), indent=2).splitlines()
                except ValueError:
                    return r.text.splitlines()
            diff = "\n".join(difflib.unified_diff(lines(g), lines(h), "graphql", "handwritten", lineterm=""))
            raise SystemExit(
                f"first={first}: GraphQL ({g.status_code}, {len(g.content)} bytes) and hand-written "
                f"({h.status_code}, {len(h.content)} bytes) differ:\n{diff or '(only in bytes: key order or spacing)'}"
            )


def bench_database(label: str, url: str, args: argparse.Namespace, stack: ExitStack) -> tuple[list[Row], list[DocRow]]:
    started = time.monotonic()
    token, sizes = asyncio.run(build(url))
    docs, skipped = documents(asyncio.run(page_variables(url))) if not args.no_documents else ([], [])
    print(f"\n{label}: built in {time.monotonic() - started:.0f} s; Northwind has "
          + ", ".join(f"{n} {what}" for what, n in sizes.items()), flush=True)
    if skipped:
        print(f"{label}: documents left out: {', '.join(skipped)}", flush=True)
    calls: dict[Any, tuple[str, Call]] = {
        (side, first): (app_of(side), dashboard_call(side, first)) for first in args.first for side in SIDES
    }
    doc_sizes = {d.name: list(args.first) if d.takes_first else [None] for d in docs}
    calls.update({(d.name, n): ("graphql", d.call(n)) for d in docs for n in doc_sizes[d.name]})
    profiles = asyncio.run(profile(url, token, calls))
    with ExitStack() as servers_stack:
        servers = {side: start_server(side, url, servers_stack) for side in SIDES}
        check_identical(servers, token, args.first)
        print(f"{label}: GraphQL and hand-written answer the same bytes for first="
              + ", ".join(str(f) for f in sorted({10, 100, *args.first})), flush=True)
        loadgen = LoadGen(servers_stack)
        rows = [row for first in args.first for row in _load_dashboard(label, first, servers, loadgen, token,
                                                                       profiles, args)]
        doc_rows = [_load_document(label, d, n, servers["graphql"], loadgen, token, profiles, args)
                    for d in docs for n in doc_sizes[d.name]]
        for row in rows:
            row.peak_mib = {side: servers[side].peak_mib() for side in SIDES}
    return rows, doc_rows


def _load_dashboard(label: str, first: int, servers: dict[str, Server], loadgen: LoadGen, token: str,
                    profiles: dict[Any, tuple[float, float]], args: argparse.Namespace) -> list[Row]:
    requests = {side: dashboard_call(side, first).raw(servers[side].port, token) for side in SIDES}
    wire = {side: wire_bytes(servers[side].port, dashboard_call(side, first), token) for side in SIDES}
    for side in SIDES:  # warm up every side at this size
        loadgen.run(servers[side].port, requests[side], 2, min(1.0, args.seconds))
    rows = []
    for connections in args.connections:
        sides = {side: Side() for side in SIDES}
        before = executions(servers["graphql"].port)
        for _ in range(args.rounds):
            for side in SIDES:
                sides[side].add(servers[side], loadgen, requests[side], connections, args.seconds)
        engine = engine_of("DashboardOverview", before, executions(servers["graphql"].port))
        row = Row(label, first, connections, sides, {side: profiles[(side, first)][0] for side in SIDES},
                  {side: profiles[(side, first)][1] for side in SIDES}, wire, engine)
        rows.append(row)
        print("  " + plain_line(row), flush=True)
    return rows


def _load_document(label: str, doc: Document, first: int | None, server: Server, loadgen: LoadGen, token: str,
                   profiles: dict[Any, tuple[float, float]], args: argparse.Namespace) -> DocRow:
    call = doc.call(first)
    answer = httpx.request(call.method, f"http://127.0.0.1:{server.port}{call.path}", content=call.body,
                           headers=call.headers(token), timeout=30)
    if answer.status_code != 200 or b'"errors"' in answer.content:
        print(f"  {doc.name} first={first}: answered {answer.status_code} {answer.text[:300]}", flush=True)
    side = Side()
    before = executions(server.port)
    side.add(server, loadgen, call.raw(server.port, token), 1, args.doc_seconds)
    row = DocRow(label, doc.name, first, side, profiles[(doc.name, first)][0], wire_bytes(server.port, call, token),
                 engine_of(doc.name, before, executions(server.port)))
    print(f"  {doc.name:<18} first={first!s:<4} {side.cpu_ms:5.1f} ms CPU/req  {side.rps:5.0f} req/s  "
          f"engine {row.engine}", flush=True)
    return row


# ---- reporting ----------------------------------------------------------------------

def plain_line(r: Row) -> str:
    return f"first={r.first:<3} conns={r.connections:<2} " + "  ".join(
        f"{LABELS[side]} {s.rps:5.0f} req/s {s.cpu_ms:5.1f} ms CPU" for side, s in r.sides.items()
    ) + f"  ratio {r.ratio():4.2f}"


COLUMNS = ("Database", "Items", "Conns", "Side", "req/s", "vs hand-written", "CPU/req ms", "p50 / p99 ms",
           "Statements/req", "Bytes (plain / gzip)", "Peak RSS MiB", "Not 200", "Goal met")
TEXT = ("Database", "Side", "Document", "Engine")  # left-aligned; the rest are numbers
DOC_COLUMNS = ("Database", "Document", "Items", "Engine", "CPU/req ms", "req/s", "p50 / p99 ms", "Statements/req",
               "Bytes (plain / gzip)", "Not 200")


def cells(r: Row) -> list[list[str]]:
    lines = []
    for side, s in r.sides.items():
        name = LABELS[side] + (f" ({r.engine})" if side == "graphql" else "")
        lines.append([
            r.database, str(r.first), str(r.connections), name, f"{s.rps:.0f}", f"{r.ratio(side):.2f}",
            f"{s.cpu_ms:.1f}", f"{s.percentile(0.5):.1f} / {s.percentile(0.99):.1f}", f"{r.statements[side]:.0f}",
            f"{r.wire[side][0]:,} / {r.wire[side][1]:,}" if side != "datalayer" else "-",
            f"{r.peak_mib.get(side, float('nan')):.0f}",
            str(s.errors), r.goal if side == "graphql" else "",
        ])
    return lines


def doc_cells(r: DocRow) -> list[str]:
    s = r.side
    return [r.database, r.name, "-" if r.first is None else str(r.first), r.engine, f"{s.cpu_ms:.1f}",
            f"{s.rps:.0f}", f"{s.percentile(0.5):.1f} / {s.percentile(0.99):.1f}", f"{r.statements:.0f}",
            f"{r.wire[0]:,} / {r.wire[1]:,}", str(s.errors)]


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


def report(rows: list[Row], doc_rows: list[DocRow], markdown: bool, args: argparse.Namespace) -> None:
    print(f"\nDashboardOverview: GraphQL, the lean hand-written endpoint and the data layer alone; {args.rounds} "
          f"rounds of {args.seconds:g} s per side and setting, {os.cpu_count()} CPUs. 'vs hand-written' is the "
          f"side's req/s over the hand-written endpoint's. Goal: GraphQL ratio >= {RATIO_GOAL}, CPU/req <= "
          f"{CPU_GOAL} x the hand-written endpoint's.\n")
    table(COLUMNS, [line for r in rows for line in cells(r)], markdown)
    print()
    for r in rows:
        if r.connections == rows[0].connections:
            print(f"{r.database}, first={r.first}: traced Python peak of one request " + ", ".join(
                f"{r.traced_mib[side]:.2f} MiB {LABELS[side]}" for side in SIDES))
    if doc_rows:
        print(f"\nEvery query document of operations/ through GraphQL, one connection, {args.doc_seconds:g} s each; "
              "Engine: which executor answered (the server's revampd_graphql_executions_total; ? when it has "
              "no such counter).\n")
        table(DOC_COLUMNS, [doc_cells(r) for r in doc_rows], markdown)
    errors = sum(s.errors for r in rows for s in r.sides.values()) + sum(r.side.errors for r in doc_rows)
    if errors:
        print(f"\n{errors} requests were not answered 200 (see 'Not 200'): throughput and CPU per request "
              "count the 200s only; 503s mean the pool gave no connection within its timeout.")


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run in well under a minute: SQLite "
                        "(unless --only postgresql), one round of 0.4 s, one connection, 0.2 s per document")
    parser.add_argument("--seconds", type=float, help="length of one round of one side (3)")
    parser.add_argument("--rounds", type=int, help="(3)")
    parser.add_argument("--first", type=_ints, default=[10, 100], help="page sizes, e.g. 10,100")
    parser.add_argument("--connections", type=_ints, help="e.g. 1,8,32 (the default)")
    parser.add_argument("--doc-seconds", type=float, help="load on each document at each size (1)")
    parser.add_argument("--no-documents", action="store_true", help="the dashboard only, not every document")
    parser.add_argument("--database-url", help="a PostgreSQL server (postgresql+asyncpg://user@host/any): "
                        "the bench makes and drops the database --bench-database on it")
    parser.add_argument("--bench-database", default=PG_DATABASE, help=f"(default {PG_DATABASE})")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    args = parser.parse_args()
    quick = {"seconds": 0.4, "rounds": 1, "connections": [1], "doc_seconds": 0.2}
    full = {"seconds": 3.0, "rounds": 3, "connections": [1, 8, 32], "doc_seconds": 1.0}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick and args.only is None:
        args.only = "sqlite"
    pg = args.database_url or os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if pg and not pg.startswith("postgresql"):
        parser.error(f"--database-url must be a PostgreSQL URL, got {pg!r}")
    if args.only == "postgresql" and not pg:
        parser.error("--only postgresql needs --database-url, BENCH_DATABASE_URL or TEST_DATABASE_URL")
    rows: list[Row] = []
    doc_rows: list[DocRow] = []
    with ExitStack() as stack:
        if args.only != "postgresql":
            tmp = tempfile.mkdtemp(prefix="revampd-bench-")
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
            found = bench_database("SQLite", f"sqlite+aiosqlite:///{tmp}/bench.db", args, stack)
            rows, doc_rows = rows + found[0], doc_rows + found[1]
        if pg and args.only != "sqlite":
            name = args.bench_database
            url = make_url(pg).set(database=name).render_as_string(hide_password=False)
            asyncio.run(pg_admin(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            asyncio.run(pg_admin(pg, f'CREATE DATABASE "{name}"'))
            stack.callback(lambda: asyncio.run(pg_admin(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
            found = bench_database("PostgreSQL", url, args, stack)
            rows, doc_rows = rows + found[0], doc_rows + found[1]
    report(rows, doc_rows, args.markdown, args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # everything started is stopped and removed by then
        sys.exit("interrupted")
