"""The `revampd-bff` command line: serve, migrate, seed-demo, token, and operations."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, cast

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from server.settings import (
    JOB_SCHEDULE,
    JOBS_IN_PROCESS,
    SERVE_HOST,
    Settings,
    SettingsError,
    from_env_or_exit,
    refuse_unsafe,
)

if TYPE_CHECKING:
    from db import models as m
    from services import refunds
    from services.bank_gateway import GatewayEvent
    from services.card_payments import Reconciled
    from services.earnings import Closed, Imported


def _settings() -> Settings:
    return from_env_or_exit()


@asynccontextmanager
async def _session(settings: Settings, *, write: bool = False) -> AsyncIterator[AsyncSession]:
    """A session on a short-lived engine, for one command."""
    from db.engine import create_engine, read_sessions, write_sessions

    engine = create_engine(settings.database_url)
    try:
        async with (write_sessions if write else read_sessions)(engine)() as session:
            yield session
    finally:
        await engine.dispose()


# Where the workers of `serve --workers N` keep their metrics (prometheus_client's multiprocess mode).
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

# How `serve` runs uvicorn: its fast event loop and HTTP parser (the tests serve the same way);
# the parser's protocol is uvicorn's, made to notice a hang-up during pipelined requests.
# WebSockets decline permessage-deflate: an event is a few hundred bytes, and each socket's
# compressor would hold about 40 KiB for as long as it is open (make bench-live).
UVICORN_OPTIONS: dict[str, Any] = {"loop": "uvloop", "http": "server.protocol:HangUpAwareHttpToolsProtocol",
                                   "ws_per_message_deflate": False}


def cmd_serve(args: argparse.Namespace) -> None:
    """uvicorn runs server.app:factory in this process, or in each of `--workers` processes (which
    share the port). Access logs are off: server.app.RequestLog logs each request once."""
    import uvicorn

    from server.persisted import load_manifest

    settings = _settings()
    try:  # the app is made in each worker: refuse what it would refuse here, once
        refuse_unsafe(settings, args.host)
        load_manifest(settings.trusted_documents_manifest)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    os.environ[SERVE_HOST] = args.host  # for the factory in each worker
    # The embedded SQLite has no shared job queue: one server process runs the jobs itself.
    sqlite = make_url(settings.database_url).get_backend_name() == "sqlite"
    if sqlite and not args.no_jobs and args.workers == 1:
        os.environ[JOBS_IN_PROCESS] = "1"
    elif sqlite and not args.no_jobs:
        logging.getLogger("revampd").warning(
            "with several workers no process runs the background jobs: run `revampd-bff worker` beside them "
            "(or serve with one worker)")
    options: dict[str, Any] = dict(
        host=args.host, port=args.port, workers=args.workers, factory=True, log_level=settings.log_level.lower(),
        log_config=None, access_log=False, **UVICORN_OPTIONS,
    )
    if args.workers == 1 or MULTIPROC_DIR in os.environ:
        uvicorn.run("server.app:factory", **options)
        return
    # Workers count into files in one folder, which /metrics in any worker adds up.
    with tempfile.TemporaryDirectory(prefix="revampd-metrics-") as folder:
        os.environ[MULTIPROC_DIR] = folder
        try:
            uvicorn.run("server.app:factory", **options)
        finally:
            del os.environ[MULTIPROC_DIR]


def cmd_worker(args: argparse.Namespace) -> None:
    from prometheus_client import start_http_server

    from server import worker

    settings = _settings()
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port)
    logging.getLogger("revampd.worker").info(
        "worker started: %s", "running queued jobs only (--no-schedule)" if args.no_schedule else
        "scheduling " + ", ".join(f"{name} ({cron})" for name, cron in settings.worker_schedule if cron))
    asyncio.run(worker.work(settings, schedule=not args.no_schedule))


def cmd_jobs_defer(args: argparse.Namespace) -> None:
    from server import worker

    settings = _settings()
    if make_url(settings.database_url).get_backend_name() != "postgresql":
        sys.exit("jobs defer: the job queue is in PostgreSQL (DATABASE_URL); with the embedded SQLite, `serve` runs "
                 "each job on its schedule in its own process, and each command (`billing run --now ...`) runs once")
    if args.until <= args.since:
        sys.exit(f"jobs defer: --until ({args.until.isoformat()}) must be after --from ({args.since.isoformat()})")
    queued, again = asyncio.run(worker.defer_between(settings, args.since, args.until, args.job))
    print(f"jobs defer: queued {queued} run{'' if queued == 1 else 's'} due from {args.since.isoformat()} to "
          f"{args.until.isoformat()}; {again} left alone (queued already: the schedule had reached them)")


def cmd_migrate(_: argparse.Namespace) -> None:
    from db.migrate import upgrade

    upgrade(_settings().database_url)
    print("database is at the latest migration")


async def _seed() -> bool:
    from services.demo import seed_demo

    async with _session(_settings()) as session:
        return await seed_demo(session, datetime.now(timezone.utc).date())


def cmd_seed_demo(_: argparse.Namespace) -> None:
    loaded = asyncio.run(_seed())
    print("demo data loaded" if loaded else "demo data already present; nothing changed")


async def _tokens(emails: list[str] | None) -> list[tuple[str, str, str]]:
    from db import models as m
    from server.auth import demo_users, user_token

    settings = _settings()
    async with _session(settings) as session:
        stmt = demo_users()
        if emails is not None:
            stmt = stmt.where(m.User.email.in_(emails))
        users = list(await session.scalars(stmt))
    return [(u.email, u.role, user_token(settings, u)) for u in users]


def cmd_token(args: argparse.Namespace) -> None:
    rows = asyncio.run(_tokens([args.email]))
    if not rows:
        sys.exit(f"no user with email {args.email!r} (run `revampd-bff seed-demo` for the demo users)")
    print(rows[0][2])


def cmd_demo_tokens(_: argparse.Namespace) -> None:
    rows = asyncio.run(_tokens(None))
    print("\nDemo users (send as the header  Authorization: Bearer <token>):\n")
    for email, role, token in rows:
        print(f"  {email:<28} {role}\n    {token}\n")
    who = f"it opens as {rows[0][0]}; to be another user, put" if rows and _settings().uses_dev_secret else "put"
    print(f"GraphiQL: http://127.0.0.1:8000/graphql  ({who} {{\"Authorization\": \"Bearer <token>\"}} in its "
          "Headers pane)\n")


def cmd_export_schema(_: argparse.Namespace) -> None:
    from resolvers.schema import build_schema

    print(build_schema(Settings()).as_str())


def cmd_export_manifest(_: argparse.Namespace) -> None:
    from pathlib import Path

    from server.persisted import build_manifest, manifest_json

    operations = Path(__file__).resolve().parent.parent / "operations"
    try:
        sys.stdout.write(manifest_json(build_manifest(operations)))
    except (ValueError, KeyError) as exc:
        sys.exit(f"cannot build the manifest of {operations}: {exc}")


def _now(args: argparse.Namespace) -> datetime:
    """--now, or the wall clock."""
    return cast(datetime, args.now) if args.now else datetime.now(timezone.utc)


def _iso_datetime(value: str) -> datetime:
    """An ISO 8601 instant; one without a zone is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def cmd_tickets_auto_close(args: argparse.Namespace) -> None:
    from server import jobs

    settings = _settings()
    print(jobs.describe_auto_close(settings, asyncio.run(jobs.tickets_auto_close(settings, _now(args)))))


def cmd_idempotency_purge(args: argparse.Namespace) -> None:
    from server import jobs

    settings = _settings()
    days = args.days or settings.idempotency_retention_days
    before = jobs.purge_before(settings, _now(args), days)
    terminal = sys.stdout.isatty()

    def progress(removed: int) -> None:
        sys.stdout.write(f"\ridempotency purge: {removed:,} removed so far")
        sys.stdout.flush()

    removed = asyncio.run(jobs.idempotency_purge(settings, before, progress if terminal else None))
    if terminal and removed:
        sys.stdout.write("\n")
    print(f"idempotency purge: removed {removed:,} idempotency key{'' if removed == 1 else 's'} created before "
          f"{before.isoformat()} (kept {days} days); a request sent again with one of them is a new request")


async def _payments_reconcile(now: datetime, older_than: timedelta) -> "tuple[Reconciled, refunds.Reconciled]":
    from db.engine import create_engine, read_sessions, write_sessions
    from services import refunds  # noqa: F811  # at run time too
    from services.card_payments import reconcile
    from services.payments import gateway_named

    settings = _settings()
    engine = create_engine(settings.database_url, lock_timeout_ms=settings.db_lock_timeout_ms)
    try:
        gateway = gateway_named(settings.payment_gateway, settings.payment_sandbox_lag)
        reads, writes = read_sessions(engine), write_sessions(engine)
        charged = await reconcile(reads, writes, gateway, now, older_than, settings.billing_retry_days)
        return charged, await refunds.reconcile(reads, writes, gateway, now, older_than)
    finally:
        await engine.dispose()


def cmd_payments_reconcile(args: argparse.Namespace) -> None:
    settings = _settings()
    seconds = args.older_than or settings.payments_reconcile_after_seconds
    now = _now(args)
    done, refunded = asyncio.run(_payments_reconcile(now, timedelta(seconds=seconds)))
    for charge in [*done.succeeded, *done.declined]:
        what = f"charged ({charge.charge_id})" if charge.status == "SUCCEEDED" else f"declined: {charge.decline_reason}"
        print(f"card charge {charge.id} of invoice {charge.invoice_id}, {charge.amount} minor units of "
              f"{charge.currency_code}: {what}")
    for refund in [*refunded.refunded, *refunded.refused]:
        what = (f"refunded ({refund.processor_refund_id})" if refund.status == "SUCCEEDED"
                else f"refused: {refund.failure_reason}; credited to the wallet")
        print(f"card refund {refund.id} of invoice {refund.invoice_id}, {refund.amount} minor units of "
              f"{refund.currency_code}: {what}")
    settled = len(refunded.refunded) + len(refunded.refused)
    print(f"payments reconcile: settled {len(done.succeeded) + len(done.declined)} card charge"
          f"{'' if len(done.succeeded) + len(done.declined) == 1 else 's'} asked for more than {seconds} s ago "
          f"({len(done.succeeded)} charged, {len(done.declined)} declined) and {settled} card refund"
          f"{'' if settled == 1 else 's'} ({len(refunded.refunded)} refunded, {len(refunded.refused)} refused); "
          f"{done.unanswered + refunded.unanswered} still unanswered")
    unanswered = done.unanswered + refunded.unanswered
    if unanswered:
        sys.exit(f"payments reconcile: the processor did not answer about {unanswered} charge"
                 f"{'' if unanswered == 1 else 's'} or refund{'' if unanswered == 1 else 's'}; run it again later "
                 "(nothing is charged or refunded twice)")


async def _verify_ledger() -> list[str]:
    from services.ledger import verify

    async with _session(_settings()) as session:
        return await verify(session)


def cmd_ledger_verify(_: argparse.Namespace) -> None:
    problems = asyncio.run(_verify_ledger())
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(f"ledger verify: {len(problems)} problem{'' if len(problems) == 1 else 's'}")
    print("ledger verify: every balance, sum, invoice, affiliate payout, payout and bank transfer agrees with the entries")


async def _system_totals() -> list[Any]:
    from services.ledger import system_totals

    async with _session(_settings()) as session:
        return list(await system_totals(session))


def cmd_ledger_totals(_: argparse.Namespace) -> None:
    from services import money

    def amount(minor: int, currency: str) -> str:
        return f"{money.to_decimal(minor, currency):,.{money.exponent(currency)}f}"

    rows = [(t.kind, t.currency, amount(t.balance, t.currency), amount(t.pending, t.currency), str(t.accounts))
            for t in asyncio.run(_system_totals())]
    head = ("account", "currency", "balance", "pending", "parts")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))))


class Progress:
    """How a long job is getting on. On a terminal, `billing [#######.......] 350/1000  41.2/s  0:15 left`
    redrawn in place; elsewhere (a log, cron) a log line a minute. The command prints its summary."""

    WIDTH = 30

    def __init__(self, what: str, *, terminal: bool | None = None, every: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.every, self.clock = what, every, clock
        self.terminal = sys.stdout.isatty() if terminal is None else terminal
        self.started = self.logged = clock()
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        rate = done / (now - self.started) if now > self.started else 0.0
        left = f"{int((total - done) / rate) // 60}:{int((total - done) / rate) % 60:02d} left" if rate else "?"
        if self.terminal:
            filled = self.WIDTH * done // total if total else self.WIDTH
            sys.stdout.write(f"\r{self.what} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total}"
                             f"  {rate:.1f}/s  {left}")
            sys.stdout.flush()
            self.drawn = True
        elif now - self.logged >= self.every:
            self.logged = now
            logging.getLogger("revampd.progress").info("%s: %d of %d done, %.1f/s, %s", self.what, done, total,
                                                       rate, left)

    def close(self) -> None:
        if self.drawn:
            sys.stdout.write("\n")


def cmd_billing_run(args: argparse.Namespace) -> None:
    from server import jobs

    now = _now(args)
    bar = Progress("billing")
    try:
        s = asyncio.run(jobs.billing_run(_settings(), now, workers=args.workers, progress=bar))
    finally:
        bar.close()
    print(jobs.describe_billing(now, s))
    if s.reconciled:
        print(f"billing run: first settled {s.reconciled} card charge{'' if s.reconciled == 1 else 's'} whose answer "
              "was lost (as `payments reconcile` does)")
    if s.unanswered:
        print(f"billing run: the processor's answer about {s.unanswered} card charge"
              f"{'' if s.unanswered == 1 else 's'} was lost; each stays PENDING (its invoice OPEN) until "
              "`payments reconcile` or the next billing run settles it, never charged twice")
    if s.failed:
        what = ", ".join(f"{kind} {pk}" for kind, pk in s.failed[:20]) + (", ..." if len(s.failed) > 20 else "")
        sys.exit(f"billing run: {len(s.failed)} failed ({what}); everything else was billed. "
                 "The log has each failure with its traceback; the next run tries them again.")


def cmd_payouts_sync(args: argparse.Namespace) -> None:
    from server import jobs

    print(jobs.describe_sync(asyncio.run(jobs.payouts_sync(_settings(), _now(args)))))


async def _sandbox_events(transfer: int | None, database_url: str | None = None) -> list[tuple[str, "GatewayEvent"]]:
    """(processor id, event) for each event the sandbox has still to send about transfers in flight."""
    from db import models as m
    from db import states
    from services.bank_gateway import SandboxBankGateway
    from services.payouts import RANK

    sandbox = SandboxBankGateway()
    settings = _settings()
    if database_url is not None:
        settings = replace(settings, database_url=database_url)
    async with _session(settings) as session:
        stmt = select(m.BankTransfer).where(
            m.BankTransfer.status.in_(states.IN_FLIGHT), m.BankTransfer.gateway_ref.like("sbt_sandbox_%")
        ).order_by(m.BankTransfer.id)
        if transfer is not None:
            stmt = stmt.where(m.BankTransfer.id == transfer)
        rows = list(await session.scalars(stmt))
    return [
        (t.gateway_ref, event) for t in rows if t.gateway_ref
        for event in sandbox.events(t.gateway_ref) if RANK[event.status] > RANK[t.status]
    ]


def sandbox_webhook(secret: str, ref: str, event: "GatewayEvent", now: int) -> tuple[bytes, str]:
    """The body and signature header the sandbox processor sends for `event` of transfer `ref`."""
    import json

    from server.webhooks import sign

    body = json.dumps({
        "id": f"evt_{ref}_{event.status.lower()}", "type": event.type, "created": now,
        "data": {"object": {"id": ref, "failure_code": event.failure_code, "failure_message": event.failure_reason}},
    }).encode()
    return body, sign(secret, now, body)


def cmd_payouts_sandbox_webhooks(args: argparse.Namespace) -> None:
    """Send the signed webhooks the sandbox processor would send for the transfers in flight."""
    import time
    import urllib.error
    import urllib.request

    from schema.base import from_global_id
    from server.webhooks import SIGNATURE_HEADER

    transfer = None
    if args.transfer:
        parsed = from_global_id(args.transfer)
        if parsed and parsed[0] == "BankTransfer":
            transfer = parsed[1]
        elif args.transfer.isdigit():
            transfer = int(args.transfer)
        else:
            sys.exit(f"--transfer must be a BankTransfer's ID, got {args.transfer!r}")
    settings = _settings()
    events = asyncio.run(_sandbox_events(transfer))
    if not events:
        print("no sandbox bank transfer in flight" + (" with that ID" if args.transfer else ""))
        return
    for ref, event in events:
        body, header = sandbox_webhook(settings.bank_webhook_secret, ref, event, int(time.time()))
        request = urllib.request.Request(args.url, data=body, method="POST", headers={
            "Content-Type": "application/json", SIGNATURE_HEADER: header})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = f"{response.status} {response.read().decode()}"
        except urllib.error.HTTPError as exc:
            answer = f"{exc.code} {exc.read().decode()}"
        except urllib.error.URLError as exc:
            sys.exit(f"could not reach {args.url}: {exc.reason} (is `revampd-bff serve` running?)")
        print(f"{event.type} for {ref} -> {answer}")
def _connection_pk(gid: str) -> int | None:
    """A RevampdConnection's global ID in a feed, as its number."""
    from schema.base import from_global_id

    parsed = from_global_id(gid)
    return parsed[1] if parsed is not None and parsed[0] == "RevampdConnection" else None


async def _payouts_import(lines: list[str]) -> "Imported":
    from services.earnings import import_feed

    settings = _settings()
    async with _session(settings, write=True) as session, session.begin():
        return await import_feed(session, lines, connection_id_of=_connection_pk)


def cmd_payouts_import(args: argparse.Namespace) -> None:
    from services.earnings import FeedRefused

    name = "standard input" if args.file == "-" else args.file
    try:
        if args.file == "-":
            text = sys.stdin.buffer.read().decode("utf-8")
        else:
            with open(args.file, encoding="utf-8") as feed:
                text = feed.read()
    except (OSError, UnicodeDecodeError) as exc:
        sys.exit(f"payouts import: cannot read {name}: {exc}")
    try:
        # Lines end at \n only: JSON strings may hold U+2028 and the like, which splitlines() splits at.
        done = asyncio.run(_payouts_import([line.removesuffix("\r") for line in text.split("\n")]))
    except FeedRefused as refused:
        for error in refused.errors:
            print(error, file=sys.stderr)
        n = len(refused.errors)
        sys.exit(f"payouts import: {n} error{'' if n == 1 else 's'} in {name}; nothing was recorded")
    recorded, duplicates = len(done.recorded), len(done.duplicates)
    reversals = ""
    if done.clawbacks or done.clawback_duplicates:
        n, d = len(done.clawbacks), len(done.clawback_duplicates)
        reversals = (f"; recorded {n} reversal{'' if n == 1 else 's'} as clawbacks, "
                     f"{d} duplicate{'' if d == 1 else 's'} ignored")
    print(f"payouts import: {name}: recorded {recorded} transaction{'' if recorded == 1 else 's'}, "
          f"{duplicates} duplicate{'' if duplicates == 1 else 's'} ignored{reversals}")
    for line, external_id in sorted(done.duplicates + done.clawback_duplicates):
        print(f"  duplicate, already recorded: line {line}: {external_id}")
    for line, clawback in done.clawbacks:
        print(f"  {_clawback_taken(clawback, done.recoveries)} (line {line})")


def _clawback_taken(clawback: "m.Clawback", recoveries: "list[m.ClawbackRecovery]") -> str:
    """`clawback re_1: 10.00 USD, 6.00 USD taken from payout 34, 4.00 USD outstanding`."""
    from services import money

    cur = clawback.currency_code
    parts = [f"{money.format(r.amount, cur)} taken from payout {r.payout_id}" for r in recoveries
             if r.clawback_id == clawback.id]
    parts.append(f"{money.format(clawback.outstanding, cur)} outstanding")
    return f"clawback {clawback.external_id}: {money.format(clawback.amount, cur)}, {', '.join(parts)}"


def cmd_payouts_close_period(args: argparse.Namespace) -> None:
    from server import jobs

    now = _now(args)
    bar = Progress("payouts")

    def report(closed: "Closed") -> None:
        print(("\n" if bar.drawn else "") + closed.describe(), flush=True)

    try:
        s = asyncio.run(jobs.payouts_close_period(_settings(), now, report=report, progress=bar))
    finally:
        bar.close()
    print(jobs.describe_close(now, s))
    if s.failed:
        what = ", ".join(str(cid) for cid in s.failed[:20]) + (", ..." if len(s.failed) > 20 else "")
        sys.exit(f"payouts close-period: {len(s.failed)} connection{'' if len(s.failed) == 1 else 's'} failed "
                 f"({what}); the log has each with its traceback, and the next run tries them again.")


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="revampd-bff", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _service_commands(sub)
    _money_commands(sub)
    _upkeep_commands(sub)
    return parser


def _with_now(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--now", type=_iso_datetime, help="the current time, ISO 8601 (default: now)")
    return parser


def _service_commands(sub: Any) -> None:
    """Serving, setting up and the documents clients build from."""
    serve = sub.add_parser("serve", help="serve GraphQL (and GraphiQL) over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=_positive, default=1, help="processes serving the port (default 1); /metrics adds up all of them"
    )
    serve.add_argument("--no-jobs", action="store_true", help="with the embedded SQLite, do not run the background "
                       "jobs in this process (they run in it by default; with PostgreSQL, `worker` runs them)")
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="run every background job on its schedule (WORKER_SCHEDULE), on the "
                            "job queue in PostgreSQL shared by every worker on every host; until SIGTERM")
    worker.add_argument("--no-schedule", action="store_true", help="run queued jobs only: other workers (or "
                        "`jobs defer`) queue them")
    worker.set_defaults(func=cmd_worker)
    jobs = sub.add_parser("jobs", help="the background worker's jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    defer = jobs_sub.add_parser(
        "defer", help="queue every scheduled run due between two times, each with its own time as `now` (to "
        "redo the runs an outage missed, or rehearse a month in minutes); a run queued already is not queued again")
    defer.add_argument("--from", dest="since", type=_iso_datetime, required=True, help="after this time (ISO 8601)")
    defer.add_argument("--until", type=_iso_datetime, required=True, help="up to this time (ISO 8601)")
    defer.add_argument("--job", action="append", choices=list(JOB_SCHEDULE), help="only this job (repeatable)")
    defer.set_defaults(func=cmd_jobs_defer)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("seed-demo", help="load demo data (safe to repeat)").set_defaults(func=cmd_seed_demo)
    token = sub.add_parser("token", help="print a bearer token for a user (development secret)")
    token.add_argument("email")
    token.set_defaults(func=cmd_token)
    sub.add_parser("demo-tokens", help="list every user with a bearer token").set_defaults(func=cmd_demo_tokens)
    sub.add_parser("export-schema", help="print the GraphQL SDL").set_defaults(func=cmd_export_schema)
    sub.add_parser(
        "export-manifest", help="print Apollo's persisted query manifest of operations/*.graphql (trusted documents)"
    ).set_defaults(func=cmd_export_manifest)


def _money_commands(sub: Any) -> None:
    """The jobs that move money, and the ledger's checks."""
    billing = sub.add_parser("billing", help="subscription billing")
    billing_sub = billing.add_subparsers(dest="billing_command", required=True)
    billing_run = billing_sub.add_parser(
        "run",
        help="bill every subscription whose period has ended and retry declined charges that are due; "
        "safe to run in several processes at once, and again",
    )
    _with_now(billing_run)
    billing_run.add_argument(
        "--workers", type=_positive, default=4,
        help="batches of BILLING_BATCH_SIZE connections billed at once in this process (default 4)"
    )
    billing_run.set_defaults(func=cmd_billing_run)
    payouts = sub.add_parser("payouts", help="payouts of Sub-Org earnings and their bank transfers")
    payouts_sub = payouts.add_subparsers(dest="payouts_command", required=True)
    sync = payouts_sub.add_parser(
        "sync", help="ask the bank transfer processor about every transfer in flight (a fallback for "
        "missed webhooks) and send any never sent"
    )
    _with_now(sync)
    sync.set_defaults(func=cmd_payouts_sync)
    hooks = payouts_sub.add_parser(
        "sandbox-webhooks", help="send the signed webhooks the sandbox processor would send for the "
        "transfers in flight (development)"
    )
    hooks.add_argument("--url", default="http://127.0.0.1:8000/webhooks/bank-transfers")
    hooks.add_argument("--transfer", help="only this BankTransfer (its ID)")
    hooks.set_defaults(func=cmd_payouts_sandbox_webhooks)
    feed = payouts_sub.add_parser(
        "import", help="record the Sub-Org transactions of a JSON-lines feed, all or nothing (README: "
        "\"Earnings and payouts\"); a transaction already recorded is ignored"
    )
    feed.add_argument("file", help="the feed, one JSON object per line; - reads standard input")
    feed.set_defaults(func=cmd_payouts_import)
    close = payouts_sub.add_parser(
        "close-period", help="make each connection's payout of its last completed period (monthly or weekly) "
        "and apply its payout preference; safe to run in several processes at once, and again",
    )
    _with_now(close)
    close.set_defaults(func=cmd_payouts_close_period)
    payments = sub.add_parser("payments", help="card payments")
    payments_sub = payments.add_subparsers(dest="payments_command", required=True)
    reconcile = payments_sub.add_parser(
        "reconcile", help="settle every card charge whose outcome is still unknown (the processor's answer was "
        "lost) after PAYMENTS_RECONCILE_AFTER_SECONDS, asking the processor again with the same key",
    )
    _with_now(reconcile)
    reconcile.add_argument("--older-than", type=_positive, help="seconds (default PAYMENTS_RECONCILE_AFTER_SECONDS)")
    reconcile.set_defaults(func=cmd_payments_reconcile)
    ledger = sub.add_parser("ledger", help="the money ledger")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    ledger_sub.add_parser(
        "verify", help="check every ledger invariant; exits non-zero and prints what is wrong if any fails"
    ).set_defaults(func=cmd_ledger_verify)
    ledger_sub.add_parser(
        "totals", help="Revampd's own accounts: the balance of each kind and currency, summed over its parts "
        "(one per connection)"
    ).set_defaults(func=cmd_ledger_totals)


def cmd_notifications_send(args: argparse.Namespace) -> None:
    from server import jobs

    settings, now = _settings(), _now(args)
    print(jobs.describe_emails(settings, now, asyncio.run(jobs.notifications_send(settings, now))))


def _upkeep_commands(sub: Any) -> None:
    """Jobs that keep the data tidy."""
    notifications = sub.add_parser("notifications", help="emails about committed changes")
    notifications_sub = notifications.add_subparsers(dest="notifications_command", required=True)
    send = notifications_sub.add_parser(
        "send", help="write the emails the changes committed since the last run call for, and send the due ones "
        "(SMTP_URL; run it every minute or so)")
    _with_now(send)
    send.set_defaults(func=cmd_notifications_send)
    tickets = sub.add_parser("tickets", help="support ticket operations")
    tickets_sub = tickets.add_subparsers(dest="tickets_command", required=True)
    auto_close = tickets_sub.add_parser(
        "auto-close", help="close tickets RESOLVED for more than TICKET_AUTO_CLOSE_DAYS days"
    )
    _with_now(auto_close)
    auto_close.set_defaults(func=cmd_tickets_auto_close)
    idempotency = sub.add_parser("idempotency", help="the API's idempotency keys")
    idempotency_sub = idempotency.add_subparsers(dest="idempotency_command", required=True)
    purge = idempotency_sub.add_parser(
        "purge", help="remove the idempotency keys older than IDEMPOTENCY_RETENTION_DAYS (run it daily); "
        "a request sent again with a removed key is a new request",
    )
    _with_now(purge)
    purge.add_argument("--days", type=_positive, help="keep this many days instead of IDEMPOTENCY_RETENTION_DAYS")
    purge.set_defaults(func=cmd_idempotency_purge)

def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # Every setting is checked before any command runs: a bad one stops it with one line and status 2.
    settings = _settings()
    from server.observability import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    from sqlalchemy.exc import DBAPIError

    try:
        args.func(args)
    except DBAPIError as exc:
        # SQLite: "no such table: users"; PostgreSQL: relation "users" does not exist (42P01)
        if "no such table" not in str(exc) and getattr(exc.orig, "sqlstate", None) != "42P01":
            raise
        print("the database (DATABASE_URL) has no tables yet: run `revampd-bff migrate` first "
              "(`make run` does)", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
