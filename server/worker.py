"""`revampd-bff worker`: every background job (server/jobs.py) on a schedule, on procrastinate.

- **The queue** is procrastinate's, in PostgreSQL (migration 0011): no other server. Every worker
  defers each job's due runs (procrastinate's periodic deferrer; the database keeps one run per
  job and scheduled time, however many workers on however many hosts defer it) and runs what is
  queued. The runs of one job share a lock (the job's name): one at a time, in the order they
  were due. With the embedded SQLite (`make run`), `serve` runs the same jobs in its own process
  on procrastinate's in-memory queue (its "for testing" connector: runs queued there end with
  the process, and the schedule queues the next ones when it starts again).
- **A run's clock** is the time it was due (procrastinate's `timestamp`): the job's `now`.
  `revampd-bff jobs defer --from --until` queues the runs due between two times, as the schedule
  would have: to redo an outage's runs, or to rehearse a month in minutes.
- **A crashed run is run again**: a worker that dies mid-run (killed, its host lost) stops its
  heartbeat; after WORKER_STALLED_SECONDS the next worker to look (every few seconds, the
  `retry-stalled` run) puts the run back in the queue, and a free worker runs it from the start
  (each job is safe to run again: server/jobs.py). A run that fails, or leaves some of its work
  failed, is tried again after 1, 2, 3 and 4 minutes, then recorded as failed.
- **Metrics**: runs succeeded and failed, and how late each started, by job; on `serve`'s
  /metrics when the jobs run in process, on the worker's own when WORKER_METRICS_PORT is set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import procrastinate
from croniter import croniter
from procrastinate.testing import InMemoryConnector
from prometheus_client import Counter, Histogram
from sqlalchemy.engine import make_url

from db.engine import create_engine, read_sessions
from db.events import Announce
from server import jobs
from server.live import Hub
from server.settings import JOB_SCHEDULE, Settings

log = logging.getLogger("revampd.worker")
# procrastinate tells of each task it registers and each job it runs at INFO: the worker logs one
# line per run itself (below), and procrastinate's warnings and errors.
logging.getLogger("procrastinate").setLevel(logging.WARNING)

QUEUE = "revampd"
# A run that fails is tried again after 1, 2, 3 and 4 minutes (procrastinate: wait + linear_wait * attempts).
RETRY = procrastinate.RetryStrategy(max_attempts=4, wait=60, linear_wait=60)
# A run started this long after it was due counts as late.
LATE_SECONDS = 60

RUNS = Counter("revampd_jobs", "Background job runs that ended (server/worker.py), by job and outcome "
               "(succeeded, failed: tried again later while attempts remain).", ["job", "outcome"])
LATE = Counter("revampd_jobs_late", f"Background job runs that started more than {LATE_SECONDS} s after they "
               "were due, by job.", ["job"])
LATENESS = Histogram("revampd_job_lateness_seconds", "From when a background job run was due to when it "
                     "started, by job.", ["job"], buckets=(1, 5, 15, 60, 300, 900, 3600, 21600))
EMAILS = Counter("revampd_emails", "Emails handed to the SMTP server (sent), failed and to be tried again "
                 "(retried), and given up on (failed).", ["outcome"])


class RunIncomplete(Exception):
    """A run finished with part of its work failed (each part logged with its traceback): the run
    is tried again, which redoes only what is left."""


# A job: a run at `now` gives its summary line and how many parts of it failed.
Job = Callable[[Settings, datetime], Awaitable[tuple[str, int]]]


async def _billing(settings: Settings, now: datetime) -> tuple[str, int]:
    s = await jobs.billing_run(settings, now)
    return jobs.describe_billing(now, s), len(s.failed)


async def _close(settings: Settings, now: datetime) -> tuple[str, int]:
    s = await jobs.payouts_close_period(settings, now)
    return jobs.describe_close(now, s), len(s.failed)


async def _sync(settings: Settings, now: datetime) -> tuple[str, int]:
    return jobs.describe_sync(await jobs.payouts_sync(settings, now)), 0


async def _auto_close(settings: Settings, now: datetime) -> tuple[str, int]:
    return jobs.describe_auto_close(settings, await jobs.tickets_auto_close(settings, now)), 0


async def _emails(settings: Settings, now: datetime) -> tuple[str, int]:
    done = await jobs.notifications_send(settings, now)
    for outcome in ("sent", "retried", "failed"):
        EMAILS.labels(outcome).inc(getattr(done.sent, outcome))
    return jobs.describe_emails(settings, now, done), 0


async def _purge(settings: Settings, now: datetime) -> tuple[str, int]:
    removed = await jobs.idempotency_purge(settings, jobs.purge_before(settings, now))
    return f"idempotency purge at {now.isoformat()}: removed {removed} idempotency keys", 0


# What each does: README "The background worker".
JOBS: dict[str, Job] = {
    "billing-run": _billing,
    "payouts-close-period": _close,
    "payouts-sync": _sync,
    "tickets-auto-close": _auto_close,
    "notifications-send": _emails,
    "idempotency-purge": _purge,
}
assert JOBS.keys() == JOB_SCHEDULE.keys(), "each job has its default schedule in server/settings.py"


def _task(app: procrastinate.App, name: str, job: Job, settings: Settings) -> Any:
    async def run(timestamp: int) -> None:
        due = datetime.fromtimestamp(timestamp, UTC)
        lateness = max(0.0, time.time() - timestamp)
        LATENESS.labels(name).observe(lateness)
        if lateness > LATE_SECONDS:
            LATE.labels(name).inc()
        try:
            summary, failed = await job(settings, due)
            if failed:
                raise RunIncomplete(f"{summary}: the parts that failed are tried again")
        except Exception:
            RUNS.labels(name, "failed").inc()
            raise  # procrastinate logs it with its traceback, and retries it (RETRY)
        RUNS.labels(name, "succeeded").inc()
        log.info("%s (due %s, started %.0f s later)", summary, due.isoformat(), lateness)

    return app.task(name=name, queue=QUEUE, lock=name, retry=RETRY)(run)


def make_app(settings: Settings, *, schedule: bool = True) -> procrastinate.App:
    """The job queue: PostgreSQL's (DATABASE_URL) or, on SQLite, one in this process's memory.
    Every job is a task; with `schedule`, each is deferred on its cron. `retry-stalled` is
    scheduled on every worker."""
    url = make_url(settings.database_url)
    connector: Any
    if url.get_backend_name() == "postgresql":
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        connector = procrastinate.PsycopgConnector(conninfo=conninfo)
    else:
        connector = InMemoryConnector()
    app = procrastinate.App(connector=connector)
    crons = dict(settings.worker_schedule)
    for name, job in JOBS.items():
        task = _task(app, name, job, settings)
        cron = crons[name]
        if schedule and cron is not None:
            app.periodic(cron=cron, periodic_id=name)(task)

    stalled = settings.worker_stalled_seconds

    @app.periodic(cron=f"* * * * * */{max(1, stalled // 3)}", periodic_id="retry-stalled")
    @app.task(name="retry-stalled", queue=QUEUE, queueing_lock="retry-stalled")
    async def retry_stalled(timestamp: int) -> None:
        for run in await app.job_manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=stalled):
            log.warning("job %s (%s, run %s) was left running by a worker that stopped: queued again",
                        run.task_name, run.task_kwargs.get("timestamp"), run.id)
            await app.job_manager.retry_job(run)

    return app


def worker_options(settings: Settings) -> dict[str, Any]:
    """How `worker` and `serve` (jobs in process) run procrastinate's worker."""
    return dict(
        queues=[QUEUE], concurrency=len(JOBS) + 1, delete_jobs="successful",
        update_heartbeat_interval=max(1.0, settings.worker_stalled_seconds / 4),
        stalled_worker_timeout=settings.worker_stalled_seconds,
    )


async def work(settings: Settings, *, schedule: bool = True) -> None:
    """`revampd-bff worker`: runs until SIGINT or SIGTERM (a run in progress finishes first).
    With REDIS_URL, the events its runs commit are announced to every server at once (a hub
    that only announces); without, the servers find them by polling."""
    app = make_app(settings, schedule=schedule)
    engine = create_engine(settings.database_url)  # the hub's reads: none, it follows nothing
    hub = Hub(read_sessions(engine), redis_url=settings.redis_url, redis_prefix=settings.redis_key_prefix)
    announcing = jobs.ANNOUNCE.set(hub.announce if settings.redis_url else None)
    try:
        async with app.open_async():
            await app.run_worker_async(**worker_options(settings))
    finally:
        jobs.ANNOUNCE.reset(announcing)
        await hub.stop()  # its Redis client
        await engine.dispose()


async def in_process(settings: Settings, announce: Announce) -> None:
    """`serve` on SQLite: the schedule and its runs in the server's own event loop, their events
    announced to its own hub."""
    app = make_app(settings)
    announcing = jobs.ANNOUNCE.set(announce)
    try:
        async with app.open_async():
            await app.run_worker_async(**worker_options(settings), install_signal_handlers=False)
    finally:
        jobs.ANNOUNCE.reset(announcing)


def due_between(since: datetime, until: datetime, only: Iterable[str] | None,
                schedule: dict[str, str | None]) -> Iterator[tuple[int, str]]:
    """(timestamp, job) of every scheduled run in (since, until], in time order."""
    runs = []
    for name, cron in schedule.items():
        if cron is None or (only is not None and name not in only):
            continue
        times = croniter(cron, since)
        while (at := times.get_next(datetime)) <= until:
            runs.append((int(at.timestamp()), name))
    return iter(sorted(runs))


async def defer_between(settings: Settings, since: datetime, until: datetime,
                        only: Iterable[str] | None = None) -> tuple[int, int]:
    """`jobs defer`: queues each job's runs due in (since, until], each at its own time, in time
    order. The schedule only moves forward: runs due no later than the newest a worker's schedule
    (or an earlier `jobs defer`) queued for that job are left alone. Returns (queued, left alone)."""
    app = make_app(settings)
    queued = left = 0
    async with app.open_async():
        # How far each job's schedule got: procrastinate keeps the newest deferred time per job in
        # its table procrastinate_periodic_defers (its periodic deferrer reads it the same way).
        reached = {row["periodic_id"]: row["at"] for row in await app.connector.execute_query_all_async(
            "SELECT periodic_id, max(defer_timestamp) AS at FROM procrastinate_periodic_defers GROUP BY periodic_id")}
        tasks = app.tasks
        for timestamp, name in due_between(since, until, only, dict(settings.worker_schedule)):
            if timestamp <= reached.get(name, 0):
                left += 1
                continue
            job = tasks[name].configure(task_kwargs={"timestamp": timestamp}).job
            # What procrastinate's periodic deferrer does for a due run (JobManager.defer_periodic_job):
            # the database queues one job per (job, time) however many defer it at once.
            if await app.job_manager.defer_periodic_job(job, periodic_id=name, defer_timestamp=timestamp):
                queued += 1
            else:
                left += 1
    return queued, left
