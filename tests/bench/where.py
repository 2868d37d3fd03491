"""Where a server's CPU goes: `make bench-profile` (or python -m tests.bench.where).

Builds the bench database (as tests/bench/dashboard.py does), serves the GraphQL app
(or the hand-written one) as `revampd-bff serve` runs it, loads it from the lean load
generator with one connection, samples the server process with py-spy for ten
seconds and prints the share of its samples in each part of the stack.

    python -m tests.bench.where [--side graphql|handwritten|datalayer] [--first 10,100]
                                [--only sqlite|postgresql] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.bench.dashboard import LOADGEN, build, free_port, raw_request
from tests.pg import pg_admin

# The innermost frame of a sample that matches decides its part.
PARTS = [
    ("database driver and ORM", ("sqlalchemy", "aiosqlite", "asyncpg", "sqlite3", "greenlet")),
    ("GraphQL execution (executor, resolvers, the schema's types)", (
        "resolvers/engine", "resolvers/operation", "schema/", "strawberry", "graphql/", "aiodataloader",
        "services/money", "services/pagination", "enum.py", "base64", "<string>", "dataclasses")),
    ("parse, validation, cost check", ("resolvers/schema", "resolvers/caches")),
    ("JSON", ("orjson", "json/", "graphql_http")),
    ("token check", ("jwt", "server/auth", "cryptography", "hmac")),
    ("HTTP, ASGI, app", ("uvicorn", "starlette", "httptools", "server/", "h11", "tests/bench/")),
    ("event loop", ("asyncio", "uvloop", "selectors")),
]


def part(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, marks in PARTS:
            if any(mark in frame for mark in marks):
                return name
    return "other"


async def sample(side: str, first: int, url: str, seconds: int) -> collections.Counter[str]:
    token, _ = await build(url)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tests.bench.serve", side, url, str(port)])
    raw = tempfile.NamedTemporaryFile(suffix=".txt", delete=False)
    raw.close()
    try:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        load = subprocess.Popen([sys.executable, str(LOADGEN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert load.stdin is not None and load.stdout is not None
        command = {"port": port, "request": raw_request(side, port, token, first).decode("latin-1"),
                   "connections": 1, "seconds": seconds + 4}
        load.stdin.write(json.dumps(command) + "\n")
        load.stdin.flush()
        await asyncio.sleep(2)  # warm
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        subprocess.run([spy, "record", "-r", "300", "-d", str(seconds), "-f", "raw", "-o", raw.name,
                        "--pid", str(server.pid)], check=True, capture_output=True)
        load.stdout.readline()
        load.stdin.close()
        load.wait()
    finally:
        server.terminate()
        server.wait()
    shares: collections.Counter[str] = collections.Counter()
    for line in Path(raw.name).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        shares[part(stack.split(";"))] += int(count)
    os.unlink(raw.name)
    return shares


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", default="graphql", choices=["graphql", "handwritten", "datalayer"])
    parser.add_argument("--first", default="10,100")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL"))
    args = parser.parse_args()
    for first in (int(f) for f in args.first.split(",")):
        if args.only != "postgresql":
            with tempfile.TemporaryDirectory() as tmp:
                report("SQLite", args.side, first, await sample(args.side, first, f"sqlite+aiosqlite:///{tmp}/w.db", args.seconds))
        if args.only != "sqlite" and args.database_url:
            server = args.database_url
            name = "revampd_bench_where"
            await pg_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await pg_admin(server, f'CREATE DATABASE "{name}"')
            try:
                from sqlalchemy.engine import make_url

                url = make_url(server).set(database=name).render_as_string(hide_password=False)
                report("PostgreSQL", args.side, first, await sample(args.side, first, url, args.seconds))
            finally:
                await pg_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def report(database: str, side: str, first: int, shares: collections.Counter[str]) -> None:
    total = sum(shares.values()) or 1
    print(f"{database}, {side}, {first} items per list ({total} samples):")
    for name, count in shares.most_common():
        print(f"  {count / total * 100:5.1f}%  {name}")


if __name__ == "__main__":
    asyncio.run(main())
