"""What the people running the service see: Prometheus metrics, OpenTelemetry traces and log lines.

Metrics are always counted (a few increments per request) and served at GET /metrics unless
METRICS=false. Under `serve --workers N` each worker writes its numbers to files in
PROMETHEUS_MULTIPROC_DIR (set up by `serve`) and /metrics adds up every worker's.

Traces are sent over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is set; without it none of
OpenTelemetry is imported.

Logs are one line per event, as text or as one JSON object (LOG_FORMAT=json) with the request id,
the trace and span ids when tracing, and a traceback inside the object.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, TextIO

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from services import ledger

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# No *_created series: half the lines, and nothing a dashboard reads.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated

# ---- Metrics --------------------------------------------------------------------

REQUESTS = Counter(
    "revampd_http_requests", "HTTP requests answered, by route, GraphQL operation name and status.",
    ["path", "operation", "status"],
)
LATENCY = Histogram(
    "revampd_http_request_duration_seconds", "Time from a request's arrival to the end of its response.",
    ["path", "operation"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GRAPHQL_ERRORS = Counter(
    "revampd_graphql_errors", "Errors in GraphQL responses' `errors`, by extensions.code.", ["code"],
)
EXECUTIONS = Counter(
    "revampd_graphql_executions", "GraphQL operations run, by operation name and the engine that answered "
    "(plan: resolvers.engine; graphql-core: what the plan does not take).", ["operation", "engine"],
)
POOL_SIZE = Gauge(
    "revampd_db_pool_size", "Connections the database pool keeps (DB_POOL_SIZE), summed over workers.",
    multiprocess_mode="livesum",
)
POOL_CHECKED_OUT = Gauge(
    "revampd_db_pool_checked_out", "Pooled connections in use, summed over workers.", multiprocess_mode="livesum",
)
POOL_OVERFLOW = Gauge(
    "revampd_db_pool_overflow", "Connections open beyond the pool size (up to DB_MAX_OVERFLOW), summed over workers.",
    multiprocess_mode="livesum",
)
LIVE_SUBSCRIPTIONS = Gauge(
    "revampd_live_subscriptions", "Open GraphQL subscriptions (server/live.py), summed over workers.",
    multiprocess_mode="livesum",
)
LIVE_EVENTS = Counter(
    "revampd_live_events", "Committed events handed to subscriptions (delivered), and subscriptions dropped for "
    "reading too slowly (dropped).", ["outcome"],
)
MONEY_MOVED = Counter(
    "revampd_ledger_moved_minor_units",
    "Money moved by committed ledger transfers, in minor units (cents), by transfer kind and currency.",
    ["kind", "currency"],
)
TRANSFERS = Counter(
    "revampd_ledger_transfers", "Committed ledger transfers that moved money, by kind and currency.",
    ["kind", "currency"],
)


def _moved(kind: str, currency: str, amount: int) -> None:
    MONEY_MOVED.labels(kind, currency).inc(amount)
    TRANSFERS.labels(kind, currency).inc()


if _moved not in ledger.ON_MOVED:
    ledger.ON_MOVED.append(_moved)

# Operation names come from clients: a label per name, for the first MAX_OPERATIONS names a
# process sees; any later name, or one that is not a GraphQL name, counts as "other".
MAX_OPERATIONS = 200
_GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,99}")
_operations: set[str] = set()


def operation_label(name: str | None) -> str:
    if not name:
        return ""
    if name in _operations:
        return name
    if len(_operations) < MAX_OPERATIONS and _GRAPHQL_NAME.fullmatch(name):
        _operations.add(name)
        return name
    return "other"


def observe_request(path: str, operation: str | None, status: int, seconds: float) -> None:
    label = operation_label(operation)
    REQUESTS.labels(path, label, str(status)).inc()
    LATENCY.labels(path, label).observe(seconds)


def count_error(code: str) -> None:
    GRAPHQL_ERRORS.labels(code).inc()


def count_execution(operation: str | None, engine: str) -> None:
    EXECUTIONS.labels(operation_label(operation), engine).inc()


def watch_pool(engine: AsyncEngine) -> None:
    """Keeps the pool gauges current: at each checkout, and after each request (update_pool)."""
    pool = engine.sync_engine.pool
    if not isinstance(pool, QueuePool):  # a pool without a size (SQLite in memory)
        return
    POOL_SIZE.set(pool.size())
    event.listen(engine.sync_engine, "checkout", lambda *_: update_pool(engine))


def update_pool(engine: AsyncEngine | None) -> None:
    pool = engine.sync_engine.pool if engine is not None else None
    if isinstance(pool, QueuePool):
        POOL_CHECKED_OUT.set(pool.checkedout())
        POOL_OVERFLOW.set(max(0, pool.overflow()))


def metrics_endpoint(engine: Callable[[], AsyncEngine | None]) -> Callable[[Request], Any]:
    async def metrics(_: Request) -> Response:
        update_pool(engine())
        if MULTIPROC_DIR in os.environ:  # every worker's numbers
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated
            body = generate_latest(registry)
        else:
            body = generate_latest(REGISTRY)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics


def worker_stopped() -> None:
    """A worker that stops takes its gauges with it (its counters stay in the sums)."""
    if MULTIPROC_DIR in os.environ:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]  # unannotated


# ---- Logs -----------------------------------------------------------------------

# The id of the request being handled (server.app.RequestLog), for every line logged meanwhile.
REQUEST_ID: ContextVar[str | None] = ContextVar("revampd_request_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_tracing = False


def trace_ids() -> dict[str, str]:
    """The current trace and span ids, when tracing."""
    if not _tracing:
        return {}
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line. A request's line (RequestLog) carries its fields in `request`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # which worker, under serve --workers N
            "message": getattr(record, "summary", None) or record.getMessage(),
        }
        fields = getattr(record, "request", None)
        if fields:
            out.update(fields)
        else:
            request_id = REQUEST_ID.get()
            if request_id:
                out["request_id"] = request_id
            out.update(trace_ids())
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


class StandardErrorHandler(logging.StreamHandler[TextIO]):
    """Writes to sys.stderr as it is when a record is logged (as logging.lastResort does), not to
    the stream it was when logging was configured: that one may since have been replaced and closed
    (pytest's capture of a test that ran a command in-process), and every line after would be
    "--- Logging error --- ... ValueError: I/O operation on closed file"."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)  # not StreamHandler's: it would bind self.stream

    @property
    def stream(self) -> TextIO:  # type: ignore[override]  # read-only: it is always sys.stderr
        return sys.stderr


def configure_logging(level: str, log_format: str) -> None:
    """Every logger (uvicorn's too) writes through one handler on standard error. Configuring again
    (`serve` configures for the command, then the app for its process) replaces that handler: one
    line a record still. Handlers put on the root logger by others (pytest's) are left in place."""
    handler = StandardErrorHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, StandardErrorHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)


# ---- Traces ---------------------------------------------------------------------

class Tracing:
    """Spans of each request (ASGI), its GraphQL operation and resolvers, and its SQL statements,
    sent in batches to `endpoint`/v1/traces. A `traceparent` header continues the caller's trace."""

    def __init__(self, endpoint: str) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        global _tracing
        _tracing = True
        name = os.environ.get("OTEL_SERVICE_NAME") or "revampd-bff"
        self.provider: TracerProvider = TracerProvider(resource=Resource.create({"service.name": name}))
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces"))
        )

    def middleware(self) -> Middleware:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        return Middleware(
            OpenTelemetryMiddleware, tracer_provider=self.provider, exclude_spans=["receive", "send"],
            excluded_urls="/healthz$,/readyz$,/metrics$",
        )

    def instrument(self, engine: AsyncEngine) -> None:
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
        from opentelemetry.metrics import NoOpMeterProvider

        usage = NoOpMeterProvider().get_meter(__name__).create_up_down_counter("db.client.connections.usage")
        tracer = self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
        EngineTracer(tracer, engine.sync_engine, usage)  # type: ignore[no-untyped-call]  # unannotated

    def schema_extension(self) -> Callable[[], Any]:
        """Strawberry's spans: the operation, parsing, validation and each resolver graphql-core
        calls (the plan engine's own are `resolver_span`) (without its
        arguments, which may hold personal data)."""
        from strawberry.extensions.tracing import OpenTelemetryExtension

        return lambda: OpenTelemetryExtension(tracer_provider=self.provider, arg_filter=lambda _args, _info: {})

    def resolver_span(self, name: str) -> Any:
        """A started span for one resolver the plan engine calls (resolvers.engine), in the
        request's trace; the engine ends it when the resolver's value is in."""
        return self.provider.get_tracer("strawberry").start_span(name)

    def shutdown(self) -> None:
        """Sends the spans still waiting."""
        self.provider.shutdown()
