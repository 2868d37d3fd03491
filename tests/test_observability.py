"""What an operator sees: /metrics, OTLP traces, JSON log lines, and settings refused at start."""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from db import models as m
from db.engine import create_engine, write_sessions
from db.states import AccountKind, TransferKind
from server import cli, observability
from server.settings import Settings
from services import ledger
from tests.conftest import Api, Databases, make_api
from tests.test_wallet import BILLING, OWNER, adjust

WHO = "query Who { viewer { user { email } partner { name } } }"


async def metrics(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of GET /metrics, by name and labels."""
    r = await api.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text) for s in family.samples
    }


def sample(values: dict[Any, float], name: str, **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


# ---- /metrics ---------------------------------------------------------------------

async def test_metrics_count_requests_by_operation_and_status_with_their_latency(api: Api) -> None:
    before = await metrics(api)
    for _ in range(3):
        r = await api.http.post("/graphql", json={"query": WHO, "operationName": "Who"},
                                headers={"Authorization": f"Bearer {api.tokens[OWNER]}"})
        assert r.status_code == 200
    assert (await api.http.post("/graphql", json={"query": WHO})).status_code == 401
    after = await metrics(api)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("revampd_http_requests_total", path="/graphql", operation="Who", status="200") == 3
    assert delta("revampd_http_request_duration_seconds_count", path="/graphql", operation="Who") == 3
    assert delta("revampd_http_request_duration_seconds_bucket", path="/graphql", operation="Who", le="+Inf") == 3
    assert delta("revampd_http_request_duration_seconds_sum", path="/graphql", operation="Who") > 0
    assert delta("revampd_http_requests_total", path="/graphql", operation="", status="401") == 1
    # The pool of this app's engine: its size, and nothing left checked out between requests.
    assert sample(after, "revampd_db_pool_size") == api.settings.db_pool_size
    assert sample(after, "revampd_db_pool_checked_out") == 0
    assert sample(after, "revampd_db_pool_overflow") == 0


async def test_metrics_count_graphql_errors_by_code(api: Api) -> None:
    before = await metrics(api)
    errors = await api.errors("{ viewer { nope } }", as_=OWNER)
    assert "nope" in errors[0]["message"]
    await api.errors("{ viewer {", as_=OWNER)
    after = await metrics(api)
    for code in ("GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED"):
        assert sample(after, "revampd_graphql_errors_total", code=code) - sample(
            before, "revampd_graphql_errors_total", code=code) == 1, code


async def test_operation_names_from_clients_are_bounded(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client can name operations at will: past MAX_OPERATIONS names per process (and any
    name that is not a GraphQL name) the label is "other", so /metrics cannot grow without end."""
    monkeypatch.setattr(observability, "_operations", {"Who"})
    monkeypatch.setattr(observability, "MAX_OPERATIONS", 1)
    before = await metrics(api)
    for name in ("Who", "Fresh", "no such; name"):
        await api.http.post("/graphql", json={"query": f"query {name if name.isidentifier() else 'X'} {{ plans {{ code }} }}",
                                              "operationName": name},
                            headers={"Authorization": f"Bearer {api.tokens[OWNER]}"})
    after = await metrics(api)
    operations = {dict(labels)["operation"] for (name, labels), _ in after.items()
                  if name == "revampd_http_requests_total" and dict(labels)["path"] == "/graphql"}
    assert "Fresh" not in operations and "no such; name" not in operations
    assert sum(v - sample(before, n, **dict(labels)) for (n, labels), v in after.items()
               if n == "revampd_http_requests_total" and dict(labels)["operation"] == "other") == 2


async def test_metrics_can_be_turned_off(databases: Databases) -> None:
    api = await make_api(await databases.clone(), metrics=False)
    try:
        assert (await api.http.get("/metrics")).status_code == 404
    finally:
        await api.http.aclose()


def moved(values: dict[Any, float], kind: str = "MANUAL_ADJUSTMENT") -> tuple[float, float]:
    return (sample(values, "revampd_ledger_moved_minor_units_total", kind=kind, currency="USD"),
            sample(values, "revampd_ledger_transfers_total", kind=kind, currency="USD"))


async def test_money_moved_is_counted_once_when_it_commits(api: Api) -> None:
    start = moved(await metrics(api))
    payload = await adjust(api, as_=BILLING, amount="25.00", idempotencyKey="metrics-1")
    assert payload["userErrors"] == []
    assert moved(await metrics(api)) == (start[0] + 2500, start[1] + 1)
    # The same request again (same idempotency key) moves nothing, and counts nothing.
    assert (await adjust(api, as_=BILLING, amount="25.00", idempotencyKey="metrics-1"))["userErrors"] == []
    assert moved(await metrics(api)) == (start[0] + 2500, start[1] + 1)


async def test_money_posted_in_a_transaction_that_rolls_back_is_not_counted(api: Api) -> None:
    start = moved(await metrics(api))
    cid = await api.connection_id(OWNER)
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as session:
            connection = await session.get(m.Connection, cid)
            assert connection is not None
            wallet = await ledger.wallet_account(session, connection)
            adjustments = await ledger.system_account(session, AccountKind.ADJUSTMENTS, "USD", cid)
            debit, credited = adjustments.id, wallet.id

            def credit(key: str, amount: int) -> list[ledger.Transfer]:
                return [ledger.Transfer(key, TransferKind.MANUAL_ADJUSTMENT, debit, credited, amount)]

            await ledger.post(session, credit("metrics:rolled-back", 700))
            await session.rollback()
            # A savepoint released inside a transaction that then rolls back counts nothing either.
            async with session.begin_nested():
                await ledger.post(session, credit("metrics:savepoint", 900))
            await session.rollback()
            assert moved(await metrics(api)) == start
            # A savepoint rolled back inside a transaction that commits: only the rest counts.
            async with session.begin():
                await ledger.post(session, credit("metrics:kept", 300))
                savepoint = await session.begin_nested()
                await ledger.post(session, credit("metrics:undone", 5000))
                await savepoint.rollback()
    finally:
        await engine.dispose()
    assert moved(await metrics(api)) == (start[0] + 300, start[1] + 1)


# ---- Traces ---------------------------------------------------------------------

class Collector:
    """An OTLP/HTTP receiver on a free port: keeps every ExportTraceServiceRequest posted to it."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    collector.requests.append(ExportTraceServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[Any]:
        return [span for request in self.requests for resource in request.resource_spans
                for scope in resource.scope_spans for span in scope.spans]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


@pytest.fixture
async def traced(databases: Databases, collector: Collector) -> AsyncIterator[Api]:
    api = await make_api(await databases.clone(), otel_endpoint=collector.url + "/")
    yield api
    await api.http.aclose()
    await api.engine.dispose()


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


async def test_a_request_is_traced_over_otlp_continuing_the_callers_trace(
    traced: Api, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "revampd.request")
    r = await traced.http.post(
        "/graphql", json={"query": WHO, "operationName": "Who"},
        headers={"Authorization": f"Bearer {traced.tokens[OWNER]}", "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
    )
    assert r.status_code == 200 and r.json()["data"]["viewer"]["user"]["email"] == OWNER
    state = traced.app.app.state.revampd
    assert state.tracing.provider.force_flush()

    spans = [s for s in collector.spans() if s.trace_id.hex() == TRACE_ID]
    names = [s.name for s in spans]
    server = [s for s in spans if s.parent_span_id.hex() == PARENT_ID]
    assert [s.name for s in server] == ["POST /graphql"], names
    assert "GraphQL Query: Who" in names
    assert any(n.startswith("GraphQL Resolving: ") for n in names), names
    sql = [s for s in spans if any(a.key == "db.system.name" or a.key == "db.system" for a in s.attributes)]
    assert sql, names
    assert any(n.startswith("SELECT") for n in (s.name for s in sql)), [s.name for s in sql]
    # The request's log line carries the same trace.
    line = next(rec for rec in caplog.records if rec.name == "revampd.request" and "operation=Who" in rec.getMessage())
    request = vars(line)["request"]  # the log call's extra=
    assert request["trace_id"] == TRACE_ID and request["span_id"] == server[0].span_id.hex()


async def test_nothing_of_opentelemetry_is_used_without_an_endpoint(api: Api) -> None:
    assert api.app.app.state.revampd.tracing is None
    assert api.settings.otel_endpoint is None


# ---- Logs -----------------------------------------------------------------------

@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the root logger writes with LOG_FORMAT=json."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(observability.JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


async def test_json_logs_are_one_object_a_line_with_the_request_fields(ro_api: Api, json_lines: io.StringIO) -> None:
    r = await ro_api.http.post("/graphql", json={"query": WHO, "operationName": "Who"},
                               headers={"Authorization": f"Bearer {ro_api.tokens[OWNER]}", "X-Request-ID": "req-json-1"})
    assert r.status_code == 200
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    mine = [line for line in lines if line.get("request_id") == "req-json-1"]
    assert len(mine) == 1, lines
    line = mine[0]
    assert line["level"] == "INFO" and line["logger"] == "revampd.request" and line["message"] == "POST /graphql 200"
    assert {k: line[k] for k in ("method", "path", "operation", "user", "status")} == {
        "method": "POST", "path": "/graphql", "operation": "Who", "user": ro_api.ids[OWNER], "status": 200}
    assert isinstance(line["duration_ms"], float) and re.match(r"\d{4}-\d\d-\d\dT", line["time"])


def test_a_traceback_in_json_mode_is_inside_the_object(json_lines: io.StringIO) -> None:
    token = observability.REQUEST_ID.set("req-fault")
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("revampd.test").exception("unexpected fault")
    finally:
        observability.REQUEST_ID.reset(token)
    (line,) = [json.loads(text) for text in json_lines.getvalue().splitlines()]
    assert line["message"] == "unexpected fault" and line["level"] == "ERROR" and line["request_id"] == "req-fault"
    assert "Traceback" in line["traceback"] and "RuntimeError: boom" in line["traceback"]


def _configured_while_stderr_is(stream: io.StringIO, configure: Any, monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Logging configured while sys.stderr is `stream` (as in a test, where it is pytest's capture),
    which is then closed (as pytest closes a test's capture at its end): what standard error is now."""
    monkeypatch.setattr(sys, "stderr", stream)
    configure()
    stream.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    return now


def test_log_lines_go_to_standard_error_as_it_is_when_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not to the stream that was sys.stderr when logging was configured: once that is closed, each
    line would be "--- Logging error --- ... ValueError: I/O operation on closed file"."""
    now = _configured_while_stderr_is(
        io.StringIO(), lambda: observability.configure_logging("INFO", "text"), monkeypatch
    )
    logging.getLogger("revampd.test").info("logged after")
    assert "Logging error" not in now.getvalue() and "closed file" not in now.getvalue(), now.getvalue()
    assert now.getvalue().endswith(" INFO revampd.test logged after\n"), now.getvalue()


def test_a_command_run_in_process_leaves_no_handler_on_a_closed_stream(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = _configured_while_stderr_is(io.StringIO(), lambda: cli.main(["export-schema"]), monkeypatch)
    assert "type Query" in capsys.readouterr().out
    logging.getLogger("httpx").info("HTTP Request: POST http://test/graphql")
    assert "Logging error" not in now.getvalue() and "HTTP Request" in now.getvalue(), now.getvalue()


def test_configuring_logging_again_replaces_its_handler_and_keeps_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server configures logging once per process and a command once per run; `serve` does both
    in one process, and a test may run several commands: one line a record all the same, and a
    handler someone else put on the root logger (pytest's caplog here) still gets every record."""
    root = logging.getLogger()
    before = root.handlers[:]
    observability.configure_logging("INFO", "text")
    observability.configure_logging("WARNING", "json")
    added = [h for h in root.handlers if h not in before]
    assert len(added) == 1 and isinstance(added[0].formatter, observability.JsonFormatter), root.handlers
    assert caplog.handler in root.handlers and root.level == logging.WARNING
    logging.getLogger("revampd.test").warning("still seen by caplog")
    assert [r.getMessage() for r in caplog.records] == ["still seen by caplog"]


# ---- Settings ---------------------------------------------------------------------

# (variable, a bad value, what the message says it must be)
BAD_SETTINGS = [
    ("LIVE_MAX_SUBSCRIPTIONS_PER_CONNECTION", "0", "must be at least 1"),
    ("LIVE_MAX_SUBSCRIPTIONS_PER_USER", "many", "must be a whole number"),
    ("LIVE_QUEUE_SIZE", "-5", "must be at least 1"),
    ("LIVE_POLL_SECONDS", "0", "must be at least 1"),
    ("LIVE_INIT_TIMEOUT_SECONDS", "1.5", "must be a whole number"),
    ("LIVE_READS_AT_ONCE", "0", "must be at least 1"),
    ("SMTP_URL", "mail.example.com:25", "must be a URL starting with smtp:// or smtps://"),
    ("SMTP_FROM", None, None),
    ("WORKER_SCHEDULE", "billing=15 * * * *", "must name only the jobs billing-run, payouts-close-period"),
    ("WORKER_SCHEDULE", "billing-run=hourly", "must give each job a cron expression or off (not 'hourly' for billing-run)"),
    ("WORKER_STALLED_SECONDS", "2", "must be at least 3"),
    ("WORKER_METRICS_PORT", "-1", "must be at least 0"),
    ("DATABASE_URL", "mysql://u:hunter2@db/revampd", "must start with sqlite+aiosqlite:// or postgresql+asyncpg://"),
    ("JWT_ALGORITHMS", "HS512", "must be HS256 and/or RS256"),
    ("JWT_SECRET", "short", "must be at least 32 bytes long"),
    ("JWT_PUBLIC_KEY", "not a key", "must be a PEM public key"),
    ("JWT_JWKS_URL", "keys.example.com/jwks.json", "must be a URL starting with http:// or https://"),
    ("JWT_ISSUER", None, None),
    ("JWT_AUDIENCE", None, None),
    ("JWT_TTL_SECONDS", "12h", "must be a whole number"),
    ("GRAPHIQL", "maybe", "must be true or false"),
    ("INTROSPECTION", "2", "must be true or false"),
    ("MASK_ERRORS", "nope", "must be true or false"),
    ("MAX_QUERY_DEPTH", "0", "must be at least 1"),
    ("MAX_ALIASES", "-3", "must be at least 1"),
    ("MAX_TOKENS", "many", "must be a whole number"),
    ("MAX_PAGE_SIZE", "1.5", "must be a whole number"),
    ("MAX_BODY_BYTES", "1MB", "must be a whole number"),
    ("GZIP_MIN_BYTES", "-1", "must be at least 0"),
    ("MAX_QUERY_NODES", "0", "must be at least 1"),
    ("DB_POOL_SIZE", "0", "must be at least 1"),
    ("DB_MAX_OVERFLOW", "-1", "must be at least 0"),
    ("DB_POOL_TIMEOUT_SECONDS", "5s", "must be a whole number"),
    ("DB_LOCK_TIMEOUT_MS", "ten", "must be a whole number"),
    ("TICKET_AUTO_CLOSE_DAYS", "0", "must be at least 1"),
    ("IDEMPOTENCY_RETENTION_DAYS", "a month", "must be a whole number"),
    ("PAYMENT_GATEWAY", "paypal", "must be one of"),
    ("BILLING_PAY_FROM_WALLET", "sometimes", "must be true or false"),
    ("BILLING_RETRY_DAYS", "1,x", "must be whole days separated by commas"),
    ("BILLING_BATCH_SIZE", "0", "must be at least 1"),
    ("PAYMENT_SANDBOX_LATENCY_MS", "-1", "must be at least 0"),
    ("PAYMENT_SANDBOX_JITTER_MS", "fast", "must be a whole number"),
    ("PAYMENT_SANDBOX_FAILURE_RATE", "10%", "must be a number from 0 to 1"),
    ("PAYMENT_SANDBOX_LOST_ANSWER_RATE", "1.5", "must be a number from 0 to 1"),
    ("BANK_SANDBOX_LATENCY_MS", "-5", "must be at least 0"),
    ("BANK_SANDBOX_JITTER_MS", "slow", "must be a whole number"),
    ("BANK_SANDBOX_FAILURE_RATE", "-0.1", "must be a number from 0 to 1"),
    ("BANK_SANDBOX_LOST_ANSWER_RATE", "2", "must be a number from 0 to 1"),
    ("PAYMENTS_RECONCILE_AFTER_SECONDS", "0", "must be at least 1"),
    ("BANK_GATEWAY", "swift", "must be one of"),
    ("BANK_WEBHOOK_SECRET", None, None),
    ("FILES_SIGNING_KEY", "short", "must be at least 32 bytes long"),
    ("FILES_URL_SECONDS", "5m", "must be a whole number"),
    ("LOG_LEVEL", "verbose", "must be one of"),
    ("CORS_ORIGINS", "dashboard.example.com", "must be origins such as https://dashboard.example.com"),
    ("METRICS", "public", "must be true or false"),
    ("LOG_FORMAT", "xml", "must be one of text, json"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318", "must be a URL starting with http:// or https://"),
    ("TRUSTED_DOCUMENTS", "sometimes", "must be one of off, only"),
    ("TRUSTED_DOCUMENTS_MANIFEST", None, None),  # read when the app is made (tests/test_persisted.py)
    ("REDIS_URL", "http://u:hunter2@cache:6379", "must start with redis://, rediss:// or unix://"),
    ("REDIS_KEY_PREFIX", None, None),
    ("RATE_LIMIT_ENABLED", "sometimes", "must be true or false"),
    ("RATE_LIMIT_MAX_COST", "5000", "must be at least MAX_QUERY_NODES (10000)"),
    ("RATE_LIMIT_RESTORE_RATE", "0", "must be at least 1"),
    ("DEVELOPMENT", "sometimes", "must be true or false"),
]


def test_every_setting_read_from_the_environment_is_in_the_table_below() -> None:
    """A new setting gets a row in BAD_SETTINGS (with None when any text is accepted)."""
    source = Path(Settings.__module__.replace(".", "/") + ".py").read_text()
    read = set(re.findall(r'(?:env\.get\(|\(env, )"([A-Z][A-Z0-9_]+)"', source))
    assert len(read) > 30
    assert read - {name for name, _, _ in BAD_SETTINGS} == set()


@pytest.mark.parametrize(("name", "bad", "must"), [row for row in BAD_SETTINGS if row[1] is not None])
def test_a_bad_setting_stops_any_command_with_one_line_naming_it(
    name: str, bad: str, must: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(name, bad)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["export-schema"])
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    # A password or a secret is never repeated.
    shown = {"DATABASE_URL": "'mysql://u:***@db/revampd'", "REDIS_URL": "'http://u:***@cache:6379'",
             "JWT_SECRET": "one of 5", "FILES_SIGNING_KEY": "one of 5"}.get(name, repr(bad))
    assert err == f"configuration error: {name} {must}{err.split(must, 1)[-1]}"
    assert err.count("\n") == 1 and err.rstrip().endswith(f"got {shown}"), err
    assert out == "" and "hunter2" not in err


def test_good_values_are_taken() -> None:
    s = Settings.from_env({
        "METRICS": "false", "LOG_FORMAT": "json", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "CORS_ORIGINS": "https://dashboard.example.com, http://localhost:5173",
        "DATABASE_URL": "postgresql+asyncpg://u:p@db/revampd",
    })
    assert (s.metrics, s.log_format, s.otel_endpoint) == (False, "json", "http://collector:4318")
    assert s.cors_origins == ("https://dashboard.example.com", "http://localhost:5173")
    assert Settings.from_env({}) == Settings()
