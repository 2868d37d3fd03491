"""The ASGI application: GraphQL (with GraphiQL), authentication, health and request logs."""

from __future__ import annotations

import gc
import logging
import os
import re
import sys
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, AsyncIterator, Callable

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from db import models as m
from db.engine import create_engine, is_busy, read_sessions, write_sessions
from resolvers.context import Context
from resolvers.loaders import Loaders
from resolvers.schema import BUSY_ERROR, INTERNAL_ERROR, build_schema
from server import observability, webhooks
from server.auth import AuthError, Claims, TokenVerifier
from server.graphiql import GraphiQL
from server.graphql_http import (
    GRAPHQL_RESPONSE,
    JSON,
    RETRY_AFTER,
    BadRequest,
    graphql_error,
    negotiate,
    read_request,
    result_response,
)
from server.introspection import PublicIntrospection
from server.persisted import NO_STORE, Documents, PublicQueries, public_catalogue
from server.settings import SERVE_HOST, Settings, SettingsError, from_env_or_exit, refuse_unsafe
from services.access import Principal, Role

log = logging.getLogger("revampd.request")
auth_log = logging.getLogger("revampd.auth")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
QUERIES_ONLY = frozenset({OperationType.QUERY})
# Set in a request's scope when its client hangs up before the response is all sent
# (server.protocol); the request is logged with this status, nginx's "client closed request".
CLIENT_GONE = "revampd.client_gone"
CLIENT_CLOSED_REQUEST = 499


def unauthorized(media: str = JSON) -> Response:
    return graphql_error(401, "UNAUTHENTICATED", "Authentication required.", media=media, **{"WWW-Authenticate": "Bearer"})


def busy(media: str = JSON) -> Response:
    return graphql_error(503, "SERVICE_UNAVAILABLE", BUSY_ERROR, media=media, **{"Retry-After": RETRY_AFTER})


@dataclass(frozen=True)
class Caller:
    """The authenticated caller, with the rows read to authenticate it."""

    principal: Principal
    user: m.User
    partner: m.Partner | None
    connection: m.Connection | None

    def prime(self, loaders: Loaders) -> None:
        """Every request reads these first; the loaders need not read them again."""
        loaders.user.prime(self.user.id, self.user)
        if self.partner is not None:
            loaders.partner.prime(self.partner.id, self.partner)
        if self.connection is not None:
            loaders.connection.prime(self.connection.id, self.connection)
            loaders.connection_by_partner.prime(self.connection.partner_id, self.connection)


# Built once; run with the token's user id.
_CALLER = (
    select(m.User, m.Partner, m.Connection)
    .outerjoin(m.Partner, m.Partner.id == m.User.partner_id)
    .outerjoin(m.Connection, m.Connection.partner_id == m.User.partner_id)
    .where(m.User.id == bindparam("user_id"))
)


async def load_caller(session: AsyncSession, claims: Claims) -> Caller | None:
    """The caller, if the token's user exists and belongs to the token's Partner."""
    row = (await session.execute(_CALLER, {"user_id": claims.user_id})).first()
    if row is None:
        return None
    user, partner, connection = row
    if user.partner_id != claims.partner_id:
        return None
    # A token may narrow what the user may do, never widen it.
    roles = frozenset(Role(r) for r in claims.roles if r in Role.__members__) & {Role(user.role)}
    if not roles:
        return None
    principal = Principal(user.id, user.partner_id, connection.id if connection else None, roles)
    return Caller(principal, user, partner, connection)


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
            observability.observe_request(path if path in self.paths else "other", operation, final, seconds)
            observability.update_pool(self.engine())
            observability.REQUEST_ID.reset(reset)


class ASGIEndpoint:
    """Marks a plain ASGI callable as such for Starlette's router."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


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
        return write_sessions(self.db)


def create_app(settings: Settings, *, fast_executor: bool = True) -> ASGIApp:
    state = State(settings)
    verifier = TokenVerifier(settings)
    if state.tracing is None:
        schema = build_schema(settings, fast_executor=fast_executor)
    else:  # the fast executor calls no resolver hooks: graphql-core's own gives each resolver its span
        schema = build_schema(settings, fast_executor=False, extensions=[state.tracing.schema_extension()])
    graphiql = GraphiQL(settings, lambda: state.reads) if settings.graphiql else None
    # Introspection needs no token (GraphiQL and codegen ask for the schema before they have one).
    public = PublicIntrospection(schema, settings) if settings.introspection else None
    documents = Documents(settings)
    is_public_catalogue = PublicQueries(schema._schema)

    async def graphql(scope: Scope, receive: Receive, send: Send) -> None:
        response = await answer(Request(scope, receive), scope.setdefault("revampd.log", {}))
        if response is not None:
            response.headers.append("Vary", "Accept")  # the media type answered depends on it
            # Only the public catalogue may be kept by a cache (server/persisted.py).
            response.headers.setdefault("Cache-Control", NO_STORE)
            await response(scope, receive, send)

    async def answer(request: Request, log_info: dict[str, Any]) -> Response | None:
        """The response; the request's one read connection is given back before it is sent."""
        if request.method == "GET" and "text/html" in request.headers.get("accept", "") and not request.query_params.get("query"):
            return await graphiql.page() if graphiql else PlainTextResponse("Not Found", 404)
        media = negotiate(request.headers.get("accept"))
        if media is None:
            log.info("not acceptable: Accept %r", request.headers.get("accept"))
            return graphql_error(
                406, "NOT_ACCEPTABLE",
                f"Accept must allow {GRAPHQL_RESPONSE} or {JSON}, got {request.headers.get('accept')!r}.",
            )
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return (public and await public.answer(request, log_info, media)) or unauthorized(media)
        try:
            claims = await verifier.verify_async(token.strip())
        except AuthError as exc:
            auth_log.info("token refused: %s", exc)
            return unauthorized(media)
        # The body is read before a connection is taken: a slow client holds none.
        try:
            gql = await read_request(request, settings.max_body_bytes)
            # A persisted document is looked up (maybe in Redis) before a connection is taken.
            document = await documents.resolve(gql)
        except BadRequest as exc:
            log.info("bad request: %s", exc.message)
            return exc.response(media)
        except ClientDisconnect:  # the client hung up before its whole body: nothing to answer
            log_info["status"] = CLIENT_CLOSED_REQUEST
            return None
        log_info["operation"] = gql.operation_name
        try:
            async with state.reads() as session:
                caller = await load_caller(session, claims)
                if caller is None:
                    auth_log.info("token refused: unknown user, partner or roles (sub=%s)", claims.user_id)
                    return unauthorized(media)
                log_info["user"] = caller.user.id
                context = Context(
                    settings=settings,
                    principal=caller.principal,
                    db=session,
                    writes=state.writes,
                    request_id=log_info.get("request_id", ""),
                    operation_name=gql.operation_name,
                    log=log_info,
                )
                caller.prime(context.loaders)
                result = await schema.execute(
                    document.query,
                    variable_values=gql.variables,
                    context_value=context,
                    operation_name=gql.operation_name,
                    allowed_operation_types=QUERIES_ONLY if request.method == "GET" else None,
                )
        except InvalidOperationTypeError:
            return graphql_error(405, "METHOD_NOT_ALLOWED", "Mutations must be sent with POST.", media=media, Allow="POST")
        except CannotGetOperationTypeError as exc:
            return graphql_error(400, "UNKNOWN_OPERATION", exc.as_http_error_reason(), media=media)
        except MissingQueryError:
            return graphql_error(400, "BAD_REQUEST", "The document holds no operation to run.", media=media)
        except Exception as exc:
            if is_busy(exc):
                log.warning("database busy before execution: %s", type(exc).__name__)
                return busy(media)
            log.error("unexpected fault before execution", exc_info=exc)
            return graphql_error(500, "INTERNAL_SERVER_ERROR", INTERNAL_ERROR, media=media)
        if result.data is not None and not context.busy:  # it parsed, validated and ran: clients may name it by hash
            await documents.register(document)
        response = result_response(result, media, context.busy)
        if request.method == "GET" and response.status_code == 200 and not result.errors \
                and is_public_catalogue(document.query, gql.operation_name):
            return public_catalogue(request, response)
        return response

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        try:
            async with state.db.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            logging.getLogger("revampd").warning("database not reachable: %s", exc)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await documents.close()
        if state.engine is not None:
            await state.engine.dispose()
        if state.tracing is not None:
            state.tracing.shutdown()
        observability.worker_stopped()

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
    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/graphql", ASGIEndpoint(graphql), methods=["GET", "POST"]),
        *(graphiql.routes if graphiql else []),
        Route("/webhooks/bank-transfers", webhooks.endpoint(settings.bank_webhook_secret, lambda: state.writes),
              methods=["POST"]),
    ]
    if settings.metrics:  # for Prometheus inside the network: keep it off the public internet
        routes.append(Route("/metrics", observability.metrics_endpoint(lambda: state.engine)))
    app = Starlette(middleware=middleware, routes=routes, lifespan=lifespan)
    app.state.revampd = state
    app.state.documents = documents
    return RequestLog(app, frozenset(r.path for r in routes), lambda: state.engine)


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
        app = create_app(settings)
    except SettingsError as exc:  # e.g. a TRUSTED_DOCUMENTS_MANIFEST that is not a manifest
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # Everything made at start-up (modules, the schema, caches) lives as long as the
    # process: move it out of the collector's reach so that collections triggered by
    # each request's garbage walk only what requests made.
    gc.collect()
    gc.freeze()
    return app
