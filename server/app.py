"""The ASGI application: GraphQL (with GraphiQL), authentication, health and request logs."""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, AsyncIterator

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.asgi import GraphQL

from db import models as m
from db.engine import create_engine, read_sessions, write_sessions
from resolvers.context import Context
from resolvers.loaders import Loaders
from resolvers.schema import build_schema
from server.auth import AuthError, Claims, TokenVerifier
from server.settings import Settings
from services.access import Principal, Role

log = logging.getLogger("revampd.request")
auth_log = logging.getLogger("revampd.auth")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def graphql_error(status: int, code: str, message: str, **headers: str) -> Response:
    body = {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status_code=status, headers=headers or None)


class BodyTooLarge(Exception):
    pass


def limit_body(receive: Receive, limit: int) -> Receive:
    """A receive that refuses a request body (chunked or not) larger than `limit` bytes."""
    seen = 0

    async def limited() -> Any:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
        return message

    return limited


def unauthorized() -> Response:
    return graphql_error(401, "UNAUTHENTICATED", "Authentication required.", **{"WWW-Authenticate": "Bearer"})


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


async def load_caller(session: AsyncSession, claims: Claims) -> Caller | None:
    """The caller, if the token's user exists and belongs to the token's Partner."""
    row = (
        await session.execute(
            select(m.User, m.Partner, m.Connection)
            .outerjoin(m.Partner, m.Partner.id == m.User.partner_id)
            .outerjoin(m.Connection, m.Connection.partner_id == m.User.partner_id)
            .where(m.User.id == claims.user_id)
        )
    ).first()
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


class GraphQLView(GraphQL):  # type: ignore[type-arg]
    async def get_context(self, request: Any, response: Any) -> Context:
        context: Context = request.scope["revampd.context"]
        context.request, context.response = request, response
        return context


class RequestLog:
    """One log line per request: request id, operation name, status and duration."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        info: dict[str, Any] = {"request_id": request_id, "operation": None, "user": None}
        scope["revampd.log"] = info
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "request_id=%s method=%s path=%s user=%s operation=%s status=%s duration_ms=%.1f",
                request_id,
                scope.get("method"),
                scope.get("path"),
                info["user"] or "-",
                info["operation"] or "-",
                status,
                (time.perf_counter() - started) * 1000,
            )


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

    @cached_property
    def db(self) -> AsyncEngine:
        self.engine = create_engine(self.settings.database_url)
        return self.engine

    @cached_property
    def reads(self) -> async_sessionmaker[AsyncSession]:
        return read_sessions(self.db)

    @cached_property
    def writes(self) -> async_sessionmaker[AsyncSession]:
        return write_sessions(self.db)


def create_app(settings: Settings) -> ASGIApp:
    state = State(settings)
    verifier = TokenVerifier(settings)
    view = GraphQLView(build_schema(settings), graphql_ide="graphiql" if settings.graphiql else None)

    async def graphql(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if request.method == "GET" and "text/html" in request.headers.get("accept", "") and not request.query_params.get("query"):
            page = HTMLResponse(view.graphql_ide_html) if settings.graphiql else PlainTextResponse("Not Found", 404)
            await page(scope, receive, send)
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await unauthorized()(scope, receive, send)
            return
        try:
            claims = await verifier.verify_async(token.strip())
        except AuthError as exc:
            auth_log.info("token refused: %s", exc)
            await unauthorized()(scope, receive, send)
            return
        async with state.reads() as session:
            caller = await load_caller(session, claims)
            if caller is None:
                auth_log.info("token refused: unknown user, partner or roles (sub=%s)", claims.user_id)
                await unauthorized()(scope, receive, send)
                return
            log_info = scope.get("revampd.log", {})
            log_info["user"] = caller.user.id
            context = Context(
                settings=settings,
                principal=caller.principal,
                db=session,
                writes=state.writes,
                request_id=log_info.get("request_id", ""),
                log=log_info,
            )
            caller.prime(context.loaders)
            scope["revampd.context"] = context
            try:
                await view(scope, limit_body(receive, settings.max_body_bytes), send)
            except BodyTooLarge:
                message = f"The request body is larger than {settings.max_body_bytes} bytes."
                await graphql_error(413, "REQUEST_TOO_LARGE", message)(scope, receive, send)

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
        if state.engine is not None:
            await state.engine.dispose()

    middleware = []
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                expose_headers=["X-Request-ID"],
                max_age=600,
            )
        )
    app = Starlette(
        middleware=middleware,
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/graphql", ASGIEndpoint(graphql), methods=["GET", "POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.revampd = state
    return RequestLog(app)
