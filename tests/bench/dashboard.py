"""Benchmark: DashboardOverview through the full ASGI stack.

Usage: make bench  (or: python -m tests.bench.dashboard [--requests N] [--database-url URL])
Builds a fresh migrated, seeded database (SQLite in a temp dir unless a URL is
given), then sends the dashboard query N times as the Northwind owner and
prints latency percentiles, CPU time per request (steadier than wall time on a
shared machine), SQL statements per request and peak Python memory.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

import httpx
from sqlalchemy import event, select

from db import models as m
from db.engine import create_engine, read_sessions
from db.migrate import upgrade
from db.seed import seed_demo
from server.app import create_app
from server.auth import issue_dev_token
from server.settings import Settings

QUERY = (Path(__file__).parents[2] / "operations" / "DashboardOverview.graphql").read_text()


async def main(requests: int, url: str | None, first: int) -> None:
    tmp = tempfile.TemporaryDirectory()
    url = url or f"sqlite+aiosqlite:///{tmp.name}/bench.db"
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    async with read_sessions(engine)() as session:
        await seed_demo(session, datetime.now(timezone.utc).date())
        owner = await session.scalar(select(m.User).where(m.User.email == "owner@northwind.example"))
    await engine.dispose()
    assert owner is not None

    settings = Settings(database_url=url)
    app = create_app(settings)
    token = issue_dev_token(settings, owner.id, owner.partner_id, [owner.role])
    headers = {"Authorization": f"Bearer {token}"}
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
        body = {"query": QUERY, "variables": {"first": first}}
        for _ in range(5):  # warm up
            assert (await http.post("/graphql", json=body, headers=headers)).status_code == 200
        event.listen(app.app.state.revampd.db.sync_engine, "before_cursor_execute", count)
        times = []
        cpu_started = time.process_time()
        for _ in range(requests):
            started = time.perf_counter()
            r = await http.post("/graphql", json=body, headers=headers)
            times.append((time.perf_counter() - started) * 1000)
            assert r.status_code == 200 and "errors" not in r.json(), r.text
        cpu_ms = (time.process_time() - cpu_started) * 1000 / requests
        # Memory in a separate pass: tracing slows every allocation.
        tracemalloc.start()
        for _ in range(10):
            await http.post("/graphql", json=body, headers=headers)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    await app.app.state.revampd.db.dispose()
    times.sort()
    print(f"DashboardOverview (first={first}) x {requests} on {url.split(':')[0]}")
    print(f"  p50 {statistics.median(times):.1f} ms  p95 {times[int(len(times) * 0.95) - 1]:.1f} ms  max {times[-1]:.1f} ms")
    print(f"  CPU per request (all threads): {cpu_ms:.1f} ms")
    print(f"  SQL statements per request: {statements / (requests + 10):.0f}")
    print(f"  peak traced Python memory: {peak / 1024 / 1024:.1f} MiB")
    tmp.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--first", type=int, default=10)
    parser.add_argument("--database-url")
    a = parser.parse_args()
    asyncio.run(main(a.requests, a.database_url, a.first))
