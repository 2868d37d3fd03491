"""The background worker (server/worker.py): every job on its schedule, on procrastinate's queue in
PostgreSQL shared by every worker; with the embedded SQLite, in `serve`'s own process.

The month test is the one an operator cares about: two worker processes take a month of runs
(queued by `jobs defer`, each run with its own time as `now`), one of them is killed while a run
of its is in the middle of a transaction, and at the end every period was billed once, every
payout period closed once and every email sent once, and the killed run was finished by the
other worker.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from db import models as m
from db.engine import create_engine, read_sessions
from server.cli import main
from tests import clock
from tests.conftest import REDIS_URL, Databases, _build, make_api
from tests.live import socket
from tests.served import until
from tests.test_calendar import _problems, database_at  # noqa: F401 - database_at is a fixture
from tests.test_live import _open_subscriptions
from tests.test_notifications import smtp  # noqa: F401 - a fixture
from tests.test_serve import free_port, get, until_up

# The month's runs, coarser than the default schedule (a run every minute would be 44,640 of
# them) but the same jobs: billing and the bank every 6 hours, payout periods closed daily.
SCHEDULE = ("billing-run=0 */6 * * *; payouts-close-period=5 0 * * *; payouts-sync=10 */6 * * *; "
            "tickets-auto-close=0 12 * * *; notifications-send=30 */6 * * *; idempotency-purge=off")
MONTH = timedelta(days=31)
PENDING = ("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') "
           "AND task_name <> 'retry-stalled'")


def _env(url: str, **more: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": url, "WORKER_SCHEDULE": SCHEDULE, "LOG_LEVEL": "INFO", **more}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def _defer(env: dict[str, str]) -> str:
    since, until_ = clock.NOW, clock.NOW + MONTH
    done = subprocess.run(clock.command("server.cli", "jobs", "defer", "--from", since.isoformat(),
                                        "--until", until_.isoformat()),
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def _succeeded(port: int, job: str) -> float:
    _, body = get(f"http://127.0.0.1:{port}/metrics")
    found = re.search(rb'^revampd_jobs_total\{job="%s",outcome="succeeded"\} (\S+)$' % job.encode(), body, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.postgres
async def test_two_workers_run_a_month_once_and_one_finishes_the_run_of_the_other_killed_mid_run(
    database_at: Any, smtp: Any, tmp_path: Path,  # noqa: F811 - fixtures
) -> None:
    inbox, smtp_port = smtp
    url = await database_at(clock.TEST_DATE)
    # DB_LOCK_TIMEOUT_MS: the run held up below waits for the lock rather than failing.
    env = _env(url, SMTP_URL=f"smtp://127.0.0.1:{smtp_port}", WORKER_STALLED_SECONDS="3",
               DB_LOCK_TIMEOUT_MS="600000")
    ports = [free_port(), free_port()]
    logs = [tmp_path / "worker-0.log", tmp_path / "worker-1.log"]
    engine = create_engine(url)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        # Every run that changes what a Partner follows writes its events at commit: with their
        # table locked, the first such run stops there, in the middle of its transaction.
        async with engine.connect() as held:
            await held.execute(text("LOCK TABLE event_sequences IN EXCLUSIVE MODE"))
            for port, log in zip(ports, logs, strict=True):
                with log.open("wb") as out:
                    workers.append(subprocess.Popen(
                        clock.command("server.cli", "worker", "--no-schedule"),
                        env={**env, "WORKER_METRICS_PORT": str(port)}, stdout=out, stderr=subprocess.STDOUT))
            for port, worker in zip(ports, workers, strict=True):
                until_up(f"http://127.0.0.1:{port}/metrics", worker)
            assert re.search(r"jobs defer: queued [1-9]\d* runs", _defer(env))
            # A second `jobs defer` of the same month (another operator, a retried deploy) queues nothing.
            assert "queued 0 runs" in _defer(env)

            pids = {w.pid for w in workers}
            stuck: set[int] = set()

            async def waiting() -> None:
                async with engine.connect() as conn:
                    names = await conn.scalars(text(
                        "SELECT application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"))
                    stuck.update(int(n.rsplit(" ", 1)[1]) for n in names if n.startswith("revampd-bff pid "))

            deadline = time.monotonic() + 60
            while not stuck & pids:
                assert time.monotonic() < deadline, "no worker's run reached the events"
                await waiting()
            victim = next(w for w in workers if w.pid in stuck)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=20)
            await held.rollback()  # the lock goes: the killed run's transaction never commits
        survivor = next(w for w in workers if w is not victim)
        survivor_log = logs[workers.index(survivor)]

        async def pending() -> int:
            async with engine.connect() as conn:
                return int(await conn.scalar(text(PENDING)) or 0)

        deadline = time.monotonic() + 300
        while await pending():
            assert survivor.poll() is None, survivor_log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the month's runs did not finish"
        assert "left running by a worker that stopped: queued again" in survivor_log.read_text(), (
            survivor_log.read_text()[-3000:])

        end = clock.NOW + MONTH
        async with read_sessions(engine)() as session:
            failed = (await session.execute(text(
                "SELECT task_name, args FROM procrastinate_jobs WHERE status = 'failed'"))).all()
            assert failed == [], f"runs that failed: {failed}\n{survivor_log.read_text()[-3000:]}"
            # Every period billed once (no gap, no overlap), every payout period closed once, the ledger clean.
            assert await _problems(session, end) == []
            billed = await session.scalar(select(func.count()).select_from(m.Invoice).where(
                m.Invoice.type == "SUBSCRIPTION", m.Invoice.issued_at > clock.NOW))
            subscriptions = await session.scalar(select(func.count()).select_from(m.Subscription).where(
                m.Subscription.status == "ACTIVE"))
            assert billed and subscriptions and billed >= subscriptions, "the month's first of the month was billed"
            paid_out = await session.scalar(select(func.count()).select_from(m.Payout).where(
                m.Payout.created_at > clock.NOW))
            assert paid_out, "a payout period ended in the month and was paid out"
            sent = set(await session.scalars(select(m.Notification.id).where(m.Notification.status == "SENT")))
        # Every email sent once: what the SMTP server received is the emails recorded as sent, each once.
        received = [msg["Message-ID"] for msg in inbox.messages]
        assert sent and sorted(received) == sorted(f"<notification-{n}@revampd>" for n in sent)
        assert _succeeded(ports[workers.index(survivor)], "billing-run") > 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=30)
        await engine.dispose()


async def test_serve_on_sqlite_runs_the_jobs_in_its_own_process(
    smtp: Any, tmp_path: Path,  # noqa: F811 - a fixture
) -> None:
    """`make run`: no worker to start; a support reply reaches the Partner's inbox (a run of
    notifications-send every second here)."""
    inbox, smtp_port = smtp
    url = f"sqlite+aiosqlite:///{tmp_path}/jobs.db"  # on either suite: this is the embedded database's way
    await _build(url)
    port = free_port()
    env = _env(url, SMTP_URL=f"smtp://127.0.0.1:{smtp_port}", WORKER_SCHEDULE="notifications-send=* * * * * *")
    server = subprocess.Popen(clock.command("server.cli", "serve", "--port", str(port)), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = await make_api(url)
    try:
        until_up(f"http://127.0.0.1:{port}/healthz", server)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            async def gql(query: str, variables: dict[str, Any], who: str) -> dict[str, Any]:
                answer = (await http.post("/graphql", json={"query": query, "variables": variables},
                                          headers={"Authorization": f"Bearer {api.tokens[who]}"})).json()
                assert not answer.get("errors"), answer
                return answer["data"]  # type: ignore[no-any-return]

            ticket = (await gql("mutation($i: SubmitTicketInput!) { submitTicket(input: $i) { ticket { id } } }",
                                {"i": {"title": "Jobs in process", "description": "Hello", "priority": "LOW"}},
                                "owner@northwind.example"))["submitTicket"]["ticket"]["id"]
            await gql("mutation($i: ReplyToTicketInput!) { replyToTicket(input: $i) { userErrors { code } } }",
                      {"i": {"ticketId": ticket, "body": "Answered by support"}}, "support@revampd.example")
        until(lambda: any("Jobs in process" in msg["Subject"] for msg in inbox.to("owner@northwind.example")),
              "the reply's email", deadline=60)
        # The run that sent it counts itself when it ends, just after.
        until(lambda: _succeeded(port, "notifications-send") > 0, "the run counted on /metrics")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        await api.http.aclose()
        await api.engine.dispose()


def test_jobs_defer_says_the_queue_is_in_postgresql(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/x.db")
    with pytest.raises(SystemExit) as stopped:
        main(["jobs", "defer", "--from", "2027-01-01T00:00Z", "--until", "2027-02-01T00:00Z"])
    assert "the job queue is in PostgreSQL" in str(stopped.value)


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_workers_run_reaches_a_servers_subscriber_through_redis_at_once(
    databases: Databases, redis_prefix: str,
) -> None:
    """A `worker` and a `serve` sharing Redis, the server polling only hourly: the tickets a run
    of tickets-auto-close closes reach support's queue subscription on the server through the
    worker's announcement, not the poll."""
    url = await databases.clone()
    env = _env(url, REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=redis_prefix, LIVE_POLL_SECONDS="3600")
    port = free_port()
    server = subprocess.Popen(clock.command("server.cli", "serve", "--port", str(port)), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen(clock.command("server.cli", "worker", "--no-schedule"), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = await make_api(url)
    try:
        until_up(f"http://127.0.0.1:{port}/healthz", server)
        async with socket(port, api.tokens["support@revampd.example"]) as ws:
            sid = await ws.subscribe("subscription { supportQueueEvents { action node { __typename "
                                     "... on Ticket { status } } } }")
            until(lambda: _open_subscriptions(port) == 1, "the server to follow the subscription")
            # The run due at the suite's noon (tickets-auto-close=0 12 * * * here).
            done = subprocess.run(clock.command("server.cli", "jobs", "defer", "--job", "tickets-auto-close",
                                                "--from", (clock.NOW - timedelta(hours=1)).isoformat(),
                                                "--until", clock.NOW.isoformat()),
                                  env=env, capture_output=True, text=True, timeout=120, check=True)
            assert "queued 1 run " in done.stdout, done.stdout
            event = (await asyncio.wait_for(ws.next(sid), 60))["payload"]["data"]["supportQueueEvents"]
            assert (event["action"], event["node"]["__typename"], event["node"]["status"]) == (
                "UPDATED", "Ticket", "CLOSED")
    finally:
        for process in (worker, server):
            process.send_signal(signal.SIGTERM if process is worker else signal.SIGINT)
            process.wait(timeout=30)
        await api.http.aclose()
        await api.engine.dispose()

