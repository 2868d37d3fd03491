"""The ASGI application: GraphQL (with GraphiQL), authentication, health and request logs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import sys
import time
import uuid
from contextlib import asynccontextmanager
from functools import cached_property
from typing import Any, AsyncIterator, Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from db.engine import create_engine, read_sessions, write_sessions
from resolvers.schema import build_schema
from server import files, observability, webhooks
from server.endpoint import CLIENT_CLOSED_REQUEST, CLIENT_GONE, HANDLERS, GraphQLEndpoint
from server.graphiql import GraphiQL
from server.limits import CostLimiter, cost_limiter
from server.live import Hub
from server.persisted import Documents
from server.settings import JOBS_IN_PROCESS, SERVE_HOST, Settings, SettingsError, from_env_or_exit, refuse_unsafe
from server.subscriptions import Subscriptions

log = logging.getLogger("revampd.request")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestLog:
    """One log line per request: request id, operation name, user, status and duration; and the
    request's metrics (server.observability). Paths other than `paths` are counted as "other".

    A request whose client hung up before its response was all sent is logged with status 499
    and "client disconnected", whatever the app answered (nobody received it).
    """

    def __init__(
        self, app: ASGIApp, paths: frozenset[str] = frozenset(), engine: Callable[[], AsyncEngine | None] = lambda: None
    ) -> None:
        self.app = app
        self.paths = paths
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        info: dict[str, Any] = {"request_id": request_id, "operation": None, "user": None}
        scope["revampd.log"] = info
        status: int | None = None
        trace: dict[str, str] = {}
        started = time.perf_counter()
        reset = observability.REQUEST_ID.set(request_id)

        async def send_with_id(message: Any) -> None:
            nonlocal status, trace
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
                trace = observability.trace_ids()  # the request's span is current here, not after
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            final = CLIENT_CLOSED_REQUEST if scope.get(CLIENT_GONE) else status or info.get("status", 500)
            path, method, user, operation = scope.get("path", ""), scope.get("method"), info["user"], info["operation"]
            gone = " client disconnected" if final == CLIENT_CLOSED_REQUEST else ""
            fields = {
                "request_id": request_id, "method": method, "path": path, "operation": operation, "user": user,
                "status": final, "duration_ms": round(seconds * 1000, 1), **trace,
            }
            log.info(
                "request_id=%s method=%s path=%s user=%s operation=%s status=%s duration_ms=%.1f%s",
                request_id, method, path, user or "-", operation or "-", final, seconds * 1000, gone,
                extra={"request": fields, "summary": f"{method} {path} {final}{gone}"},
            )
            observability.observe_request(
                path if path in self.paths else "/files" if path.startswith("/files/") else "other", operation, final,
                seconds)
            observability.update_pool(self.engine())
            observability.REQUEST_ID.reset(reset)


class State:
    """The app's engine and session factories, made on first use (no I/O at import)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: AsyncEngine | None = None
        self.tracing = observability.Tracing(settings.otel_endpoint) if settings.otel_endpoint else None

    @cached_property
    def db(self) -> AsyncEngine:
        s = self.settings
        self.engine = create_engine(
            s.database_url,
            pool_size=s.db_pool_size,
            max_overflow=s.db_max_overflow,
            pool_timeout=s.db_pool_timeout,
            lock_timeout_ms=s.db_lock_timeout_ms,
        )
        observability.watch_pool(self.engine)
        if self.tracing is not None:
            self.tracing.instrument(self.engine)
        return self.engine

    @cached_property
    def reads(self) -> async_sessionmaker[AsyncSession]:
        return read_sessions(self.db)

    @cached_property
    def writes(self) -> async_sessionmaker[AsyncSession]:
        return write_sessions(self.db, announce=self.hub.announce)

    @cached_property
    def hub(self) -> Hub:
        s = self.settings
        return Hub(self.reads, redis_url=s.redis_url, redis_prefix=s.redis_key_prefix, queue_size=s.live_queue_size, poll_seconds=s.live_poll_seconds,
                   max_per_user=s.live_max_subscriptions_per_user)


class _LazyHub:
    """The app's hub, made (with its engine) when the first subscription follows."""

    def __init__(self, state: State) -> None:
        self.state = state

    def follow(self, connection_id: int, user_id: int, after: int | None) -> Any:
        return self.state.hub.follow(connection_id, user_id, after)


def create_app(settings: Settings, *, plan: bool = True, jobs: bool = False) -> ASGIApp:
    """The service: /graphql (server.endpoint), GraphiQL's files, health, metrics and webhooks;
    with `jobs`, the background jobs run in its event loop too (server/worker.py `in_process`)."""
    state = State(settings)
    tracing = state.tracing
    schema = build_schema(
        settings, plan=plan, observer=observability, extensions=[tracing.schema_extension()] if tracing else [],
        trace=tracing.resolver_span if tracing else None,
    )
    graphiql = GraphiQL(settings, lambda: state.reads) if settings.graphiql else None
    documents = Documents(settings)
    limiter = cost_limiter(settings)
    subscriptions = Subscriptions(settings, schema, lambda: state.reads, _LazyHub(state), documents)
    endpoint = GraphQLEndpoint(
        settings, schema, schema.operations, documents, lambda: state.reads, lambda: state.writes, limiter, graphiql,
        subscriptions.sse,
    )
    routes: list[Route | WebSocketRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readiness(state)),
        Route("/graphql", endpoint.answer, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", subscriptions),
        *(graphiql.routes if graphiql else []),
        Route("/webhooks/bank-transfers", webhooks.endpoint(settings.bank_webhook_secret, lambda: state.writes),
              methods=["POST"]),
        *files.routes(settings.files_signing_key, lambda: state.reads, lambda: state.writes),
    ]
    if settings.metrics:  # for Prometheus inside the network: keep it off the public internet
        routes.append(Route("/metrics", observability.metrics_endpoint(lambda: state.engine)))
    app = Starlette(
        middleware=_middleware(settings, state), routes=routes, lifespan=_lifespan(state, documents, limiter, jobs),
        exception_handlers=HANDLERS,
    )
    app.state.revampd = state
    app.state.documents = documents
    app.state.limiter = limiter
    return RequestLog(app, frozenset(r.path for r in routes), lambda: state.engine)


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


def readiness(state: State) -> Callable[[Request], Awaitable[Response]]:
    async def readyz(_: Request) -> Response:
        try:
            async with state.db.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            logging.getLogger("revampd").warning("database not reachable: %s", exc)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    return readyz


def _lifespan(state: State, documents: Documents, limiter: CostLimiter | None, jobs: bool) -> Callable[[Starlette], Any]:
    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        background = None
        if jobs:
            from server.worker import in_process

            background = asyncio.create_task(in_process(state.settings, state.hub.announce), name="jobs")
            logging.getLogger("revampd").info("running the background jobs in this process (server/worker.py)")
        yield
        if background is not None:
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
        await documents.close()
        if "hub" in state.__dict__:
            await state.hub.stop()
        if limiter is not None:
            await limiter.close()
        if state.engine is not None:
            await state.engine.dispose()
        if state.tracing is not None:
            state.tracing.shutdown()
        observability.worker_stopped()

    return lifespan


def _middleware(settings: Settings, state: State) -> list[Middleware]:
    # Outermost first: the trace's span covers everything; answers are compressed last.
    middleware = [state.tracing.middleware()] if state.tracing is not None else []
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                # Apollo Client names itself in the first two; traceparent/tracestate carry a trace (W3C).
                allow_headers=[
                    "Authorization", "Content-Type", "X-Request-ID", "apollographql-client-name",
                    "apollographql-client-version", "traceparent", "tracestate",
                ],
                expose_headers=["X-Request-ID"],
                max_age=600,
            )
        )
    # A 100-item dashboard is over 100 KB of JSON; compressed it is a tenth of that.
    middleware.append(Middleware(GZipMiddleware, minimum_size=settings.gzip_min_bytes, compresslevel=6))
    return middleware


def factory() -> ASGIApp:
    """The app as configured by the environment, for `uvicorn --factory server.app:factory`,
    gunicorn (`server.app:factory()`) and each worker of `revampd-bff serve`."""
    settings = from_env_or_exit()
    try:
        refuse_unsafe(settings, os.environ.get(SERVE_HOST))
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    observability.configure_logging(settings.log_level, settings.log_format)
    if settings.uses_dev_secret:
        logging.getLogger("revampd").warning(
            "signing tokens with the built-in development JWT secret; set JWT_SECRET in production"
        )
    if settings.uses_dev_webhook_secret:
        logging.getLogger("revampd").warning(
            "checking bank transfer webhooks with the built-in development secret; set BANK_WEBHOOK_SECRET "
            "in production"
        )
    try:
        app = create_app(settings, jobs=os.environ.get(JOBS_IN_PROCESS) == "1")
    except SettingsError as exc:  # e.g. a TRUSTED_DOCUMENTS_MANIFEST that is not a manifest
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # Everything made at start-up (modules, the schema, caches) lives as long as the
    # process: move it out of the collector's reach so that collections triggered by
    # each request's garbage walk only what requests made.
    gc.collect()
    gc.freeze()
    return app
