"""Benchmark: DashboardOverview through GraphQL against the same page hand-written.

Usage: make bench  (or: python -m tests.bench.dashboard [--seconds 3] [--rounds 3]
[--first 10,100] [--connections 1,8,32] [--database-url URL] [--only sqlite|postgresql]
[--markdown])

For each database (SQLite in a temporary directory; PostgreSQL as well when
--database-url, BENCH_DATABASE_URL or TEST_DATABASE_URL names a server, on which a
database `revampd_bench` is made and dropped afterwards; the named database itself
is never touched) it:

1. migrates, loads the demo data and the benchmark's rows (tests/bench/data.py:
   Northwind gets more than 110 invoices, waiting tickets and payouts);
2. measures in this process, through httpx's ASGI transport, the SQL statements of
   one request and the Python memory it allocates at its peak (tracemalloc);
3. starts two servers as `revampd-bff serve` runs (tests/bench/serve.py: one uvicorn
   worker, uvloop, httptools, gc.freeze()): the GraphQL app and the hand-written
   endpoint (tests/bench/handwritten.py), and checks that both answer the same
   bytes for first=10 and first=100 (a diff, and no numbers, if not);
4. for each page size and number of connections, runs rounds of load on each side in
   turn (GraphQL, hand-written, GraphQL, ...) from a separate lean process
   (tests/bench/loadgen.py: keep-alive HTTP/1.1, one request in flight per
   connection), as the Northwind owner.

It reports requests per second, the GraphQL / hand-written ratio, CPU time of the
server process per request (utime + stime from /proc over the run, all threads,
divided by the requests it served), p50 and p99 latency, statements per request
and each server's peak resident memory (VmHWM). The issue's goal: a ratio of at
least 0.7, and at most 6 ms of CPU per request at 10 items and 20 ms at 100.
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
from typing import IO, Any

import httpx
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Engine, make_url

from db import models as m
from db.engine import create_engine, read_sessions, write_sessions
from db.migrate import upgrade
from server.auth import user_token
from server.settings import Settings
from services.demo import seed_demo
from tests.bench.data import OWNER, add_bench_rows
from tests.pg import pg_admin

ROOT = Path(__file__).parents[2]
QUERY = (ROOT / "operations" / "DashboardOverview.graphql").read_text()
LOADGEN = Path(__file__).with_name("loadgen.py")
PG_DATABASE = "revampd_bench"
CPU_GOAL_MS = {10: 6.0, 100: 20.0}
RATIO_GOAL = 0.7
SIDES = ("graphql", "handwritten")
TICK = os.sysconf("SC_CLK_TCK")


# ---- the database -------------------------------------------------------------------

async def build(url: str) -> tuple[str, dict[str, int]]:
    """Migrate, seed, add the bench rows; the owner's token and Northwind's list sizes."""
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    today = datetime.now(timezone.utc).date()
    try:
        async with read_sessions(engine)() as session:
            await seed_demo(session, today)
        async with write_sessions(engine)() as session:
            await add_bench_rows(session, today)
        # Planner statistics, as a database in service has them (autovacuum would
        # gather them later): without them PostgreSQL plans the rows just loaded badly.
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
            await conn.commit()
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


# ---- requests -----------------------------------------------------------------------

def graphql_body(first: int) -> bytes:
    return json.dumps(
        {"query": QUERY, "variables": {"first": first}, "operationName": "DashboardOverview"}
    ).encode()


def raw_request(side: str, port: int, token: str, first: int) -> bytes:
    head = f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
    if side == "graphql":
        body = graphql_body(first)
        return (f"POST /graphql HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    return f"GET /dashboard?first={first} HTTP/1.1\r\n{head}\r\n".encode()


async def profile(url: str, token: str, first: int) -> dict[str, tuple[float, float]]:
    """Per side, in this process: (SQL statements per request, traced peak MiB of one request)."""
    from server.app import create_app as graphql_app
    from tests.bench.handwritten import create_app as handwritten_app

    settings = Settings(database_url=url)
    headers = {"Authorization": f"Bearer {token}"}
    found: dict[str, tuple[float, float]] = {}

    async def send(http: httpx.AsyncClient, side: str) -> httpx.Response:
        if side == "graphql":
            return await http.post("/graphql", content=graphql_body(first),
                                   headers={**headers, "Content-Type": "application/json"})
        return await http.get(f"/dashboard?first={first}", headers=headers)

    for side in SIDES:
        app: Any = graphql_app(settings) if side == "graphql" else handwritten_app(settings)
        statements = 0

        def count(*_: Any) -> None:
            nonlocal statements
            statements += 1

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
            for _ in range(3):  # warm up: caches, pool, compiled statements
                assert (await send(http, side)).status_code == 200
            event.listen(Engine, "before_cursor_execute", count)
            try:
                for _ in range(5):
                    await send(http, side)
            finally:
                event.remove(Engine, "before_cursor_execute", count)
            tracemalloc.start()
            try:
                await send(http, side)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        engine = app.app.state.revampd.engine if side == "graphql" else app.app.state.engine
        if engine is not None:
            await engine.dispose()
        found[side] = (statements / 5, peak / 2**20)
    return found


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
    port = free_port()
    log = stack.enter_context(tempfile.TemporaryFile())
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.serve", side, url, str(port)], cwd=ROOT, stdout=log, stderr=log,
    )
    stack.callback(stop, process)
    server = Server(side, port, process, log)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the {side} server exited ({process.returncode}):\n{server.output()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the {side} server did not start in 60 s:\n{server.output()}")
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


@dataclass
class Row:
    database: str
    first: int
    connections: int
    sides: dict[str, Side]
    statements: dict[str, float]
    traced_mib: dict[str, float]
    peak_mib: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        hw = self.sides["handwritten"].rps
        return self.sides["graphql"].rps / hw if hw else float("nan")

    @property
    def goal(self) -> str:
        limit = CPU_GOAL_MS.get(self.first)
        ok = self.ratio >= RATIO_GOAL and (limit is None or self.sides["graphql"].cpu_ms <= limit)
        return "yes" if ok else "no"


def check_identical(servers: dict[str, Server], token: str, firsts: list[int]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for first in sorted({10, 100, *firsts}):
        g = httpx.post(f"http://127.0.0.1:{servers['graphql'].port}/graphql", content=graphql_body(first),
                       headers={**headers, "Content-Type": "application/json"}, timeout=30)
        h = httpx.get(f"http://127.0.0.1:{servers['handwritten'].port}/dashboard?first={first}",
                      headers=headers, timeout=30)
        if g.status_code != 200 or h.status_code != 200 or g.content != h.content:
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


def bench_database(label: str, url: str, args: argparse.Namespace, stack: ExitStack) -> list[Row]:
    started = time.monotonic()
    token, sizes = asyncio.run(build(url))
    print(f"\n{label}: built in {time.monotonic() - started:.0f} s; Northwind has "
          + ", ".join(f"{n} {what}" for what, n in sizes.items()), flush=True)
    profiles = {first: asyncio.run(profile(url, token, first)) for first in args.first}
    with ExitStack() as servers_stack:
        servers = {side: start_server(side, url, servers_stack) for side in SIDES}
        check_identical(servers, token, args.first)
        print(f"{label}: GraphQL and hand-written answer the same bytes for first="
              + ", ".join(str(f) for f in sorted({10, 100, *args.first})), flush=True)
        loadgen = LoadGen(servers_stack)
        rows = []
        for first in args.first:
            requests = {side: raw_request(side, servers[side].port, token, first) for side in SIDES}
            for side in SIDES:  # warm up both at this size
                loadgen.run(servers[side].port, requests[side], 2, min(1.0, args.seconds))
            for connections in args.connections:
                sides = {side: Side() for side in SIDES}
                for _ in range(args.rounds):
                    for side in SIDES:
                        server, acc = servers[side], sides[side]
                        cpu = server.cpu_seconds()
                        result = loadgen.run(server.port, requests[side], connections, args.seconds)
                        acc.cpu += server.cpu_seconds() - cpu
                        acc.requests += result["requests"]
                        acc.ok += result["ok"]
                        acc.elapsed += result["elapsed"]
                        acc.latencies += result["latencies_us"]
                        acc.errors += result["error_count"]
                        if result["error_count"]:
                            print(f"  {side}: {result['error_count']} errors, e.g. {result['errors']}", flush=True)
                statements = {side: profiles[first][side][0] for side in SIDES}
                traced = {side: profiles[first][side][1] for side in SIDES}
                row = Row(label, first, connections, sides, statements, traced)
                rows.append(row)
                print("  " + plain_line(row), flush=True)
        for row in rows:
            row.peak_mib = {side: servers[side].peak_mib() for side in SIDES}
    return rows


# ---- reporting ----------------------------------------------------------------------

def plain_line(r: Row) -> str:
    g, h = r.sides["graphql"], r.sides["handwritten"]
    return (f"first={r.first:<3} conns={r.connections:<2}  GraphQL {g.rps:6.0f} req/s  hand-written "
            f"{h.rps:6.0f} req/s  ratio {r.ratio:4.2f}  CPU/req {g.cpu_ms:5.1f} / {h.cpu_ms:5.1f} ms  "
            f"p50/p99 {g.percentile(0.5):5.1f}/{g.percentile(0.99):5.1f} vs "
            f"{h.percentile(0.5):5.1f}/{h.percentile(0.99):5.1f} ms")


COLUMNS = ("Database", "Items", "Conns", "GraphQL req/s", "Hand-written req/s", "Ratio",
           "CPU/req ms (G / HW)", "p50 / p99 ms GraphQL", "p50 / p99 ms hand-written",
           "Statements/req (G / HW)", "Peak RSS MiB (G / HW)", "Not 200 (G / HW)", "Goal met")


def cells(r: Row) -> list[str]:
    g, h = r.sides["graphql"], r.sides["handwritten"]
    return [
        r.database, str(r.first), str(r.connections), f"{g.rps:.0f}", f"{h.rps:.0f}", f"{r.ratio:.2f}",
        f"{g.cpu_ms:.1f} / {h.cpu_ms:.1f}", f"{g.percentile(0.5):.1f} / {g.percentile(0.99):.1f}",
        f"{h.percentile(0.5):.1f} / {h.percentile(0.99):.1f}",
        f"{r.statements['graphql']:.0f} / {r.statements['handwritten']:.0f}",
        f"{r.peak_mib['graphql']:.0f} / {r.peak_mib['handwritten']:.0f}", f"{g.errors} / {h.errors}", r.goal,
    ]


def report(rows: list[Row], markdown: bool, args: argparse.Namespace) -> None:
    table = [list(COLUMNS)] + [cells(r) for r in rows]
    print(f"\nDashboardOverview vs hand-written: {args.rounds} rounds of {args.seconds:g} s per side and "
          f"setting, {os.cpu_count()} CPUs. Goal: ratio >= {RATIO_GOAL}, CPU/req <= "
          + ", ".join(f"{ms:g} ms at {n}" for n, ms in CPU_GOAL_MS.items()) + ".\n")
    if markdown:
        print("| " + " | ".join(table[0]) + " |")
        print("|" + "|".join("---" if i < 1 else "--:" for i in range(len(COLUMNS))) + "|")
        for line in table[1:]:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        for n, line in enumerate(table):
            print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))))
            if n == 0:
                print("  ".join("-" * w for w in widths))
    seen = set()
    print()
    for r in rows:
        if (r.database, r.first) not in seen:
            seen.add((r.database, r.first))
            print(f"{r.database}, first={r.first}: traced Python peak of one request "
                  f"{r.traced_mib['graphql']:.2f} MiB GraphQL, {r.traced_mib['handwritten']:.2f} MiB hand-written")
    errors = sum(s.errors for r in rows for s in r.sides.values())
    if errors:
        print(f"\n{errors} requests were not answered 200 (see 'Not 200'): throughput and CPU per request "
              "count the 200s only; 503s mean the pool gave no connection within its timeout.")


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round of one side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--first", type=_ints, default=[10, 100], help="page sizes, e.g. 10,100")
    parser.add_argument("--connections", type=_ints, default=[1, 8, 32], help="e.g. 1,8,32")
    parser.add_argument("--database-url", help="a PostgreSQL server (postgresql+asyncpg://user@host/any): "
                        f"the bench makes and drops the database {PG_DATABASE} on it")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = parser.parse_args()
    pg = args.database_url or os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if pg and not pg.startswith("postgresql"):
        parser.error(f"--database-url must be a PostgreSQL URL, got {pg!r}")
    if args.only == "postgresql" and not pg:
        parser.error("--only postgresql needs --database-url, BENCH_DATABASE_URL or TEST_DATABASE_URL")
    rows: list[Row] = []
    with ExitStack() as stack:
        if args.only != "postgresql":
            tmp = tempfile.mkdtemp(prefix="revampd-bench-")
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
            rows += bench_database("SQLite", f"sqlite+aiosqlite:///{tmp}/bench.db", args, stack)
        if pg and args.only != "sqlite":
            url = make_url(pg).set(database=PG_DATABASE).render_as_string(hide_password=False)
            asyncio.run(pg_admin(pg, f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)'))
            asyncio.run(pg_admin(pg, f'CREATE DATABASE "{PG_DATABASE}"'))
            stack.callback(lambda: asyncio.run(
                pg_admin(pg, f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')))
            rows += bench_database("PostgreSQL", url, args, stack)
    report(rows, args.markdown, args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # everything started is stopped and removed by then
        sys.exit("interrupted")
