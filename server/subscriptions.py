"""GraphQL subscriptions on /graphql: over WebSocket with the graphql-transport-ws protocol (the
one `graphql-ws` and Apollo Client's GraphQLWsLink speak), by Strawberry's own handler; and over
Server-Sent Events for clients that cannot open a WebSocket (`graphql-sse`'s distinct connections
mode: a POST with `Accept: text/event-stream` and the bearer token as on any request, answered
with a `next` event per result and a `complete` event at the end).

The client sends its bearer token in `connection_init`'s payload (`{"Authorization": "Bearer
<token>"}`, or `{"token": "<token>"}`); a missing, bad or unknown one closes the socket with
4403 Forbidden, and a `subscribe` before that with 4401 Unauthorized (the protocol's codes). Each
subscription document is refused as a query would be over HTTP (trusted documents, depth,
aliases, cost: `check`), and only subscriptions run here (queries and mutations go over HTTP).
A subscription ends when the token expires, and sends only what the caller, read again for
each event, may read (schema.live).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
from graphql import GraphQLError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from resolvers.operation import Operation
from resolvers.schema import Schema
from schema.live import EventReads, Live, LiveContext
from server.auth import AuthError, Claims, TokenVerifier
from server.endpoint import Unauthorized, load_caller
from server.graphql_http import EVENT_STREAM, BadRequest, GraphQLRequest
from server.persisted import Documents
from server.settings import Settings
from services.access import Principal

log = logging.getLogger("revampd.live")

# The caller of a socket that has not sent its token yet: no roles, so it may read nothing.
_NOBODY = Principal(0, None, None, frozenset())


class Subscriptions(GraphQL[LiveContext, None]):
    """The WebSocket side of /graphql (the endpoint answers HTTP), and subscriptions over SSE."""

    heartbeat_seconds = 12.0  # a comment line on an idle event stream, so that proxies keep it open

    def __init__(self, settings: Settings, schema: Schema, reads: Any, live: Live, documents: Documents) -> None:
        super().__init__(
            schema, graphql_ide=None, allow_queries_via_get=False,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=settings.live_init_timeout_seconds),
            max_subscriptions_per_connection=settings.live_max_subscriptions_per_connection,
            allowed_origins=settings.cors_origins,
        )
        self.settings, self.reads, self.live, self.documents = settings, reads, live, documents
        self.verifier = TokenVerifier(settings)
        # Shared by the worker's subscriptions: one read per viewer and event, at most this many at once.
        self.events = EventReads(settings.live_reads_at_once)

    def encode_json(self, data: object) -> str:
        """Each message (the protocol's frames are text): orjson, as the HTTP answers."""
        return orjson.dumps(data).decode()

    async def get_context(self, request: Any, response: Any) -> LiveContext:
        reads: async_sessionmaker[AsyncSession] = self.reads()

        async def nobody(_: AsyncSession) -> Principal | None:
            return None

        return LiveContext(settings=self.settings, principal=_NOBODY, reads=reads, live=self.live, recheck=nobody,
                           expires_at=0, check=self.check, events=self.events)

    async def on_ws_connect(self, context: LiveContext) -> None:
        """`connection_init`: the token in its payload, and the caller it names."""
        params = getattr(context, "connection_params", None) or {}
        raw = params.get("Authorization") or params.get("authorization") or params.get("token") or ""
        token = raw.partition(" ")[2] if isinstance(raw, str) and raw.lower().startswith("bearer ") else raw
        if not isinstance(token, str) or not token.strip():
            log.info("subscription refused: no token in connection_init")
            raise ConnectionRejectionError
        try:
            claims = await self.verifier.verify_async(token.strip())
        except AuthError as exc:
            log.info("subscription refused: %s", exc)
            raise ConnectionRejectionError from None
        recheck = _caller(claims)
        async with context.reads() as session:
            principal = await recheck(session)
        if principal is None:
            log.info("subscription refused: unknown user, partner or roles (sub=%s)", claims.user_id)
            raise ConnectionRejectionError
        context.principal, context.recheck, context.expires_at = principal, recheck, claims.expires_at

    def check(self, operation: Operation, variables: dict[str, Any] | None) -> list[GraphQLError]:
        """What the HTTP endpoint refuses a document for, besides its own errors."""
        refusals = [e for e in [operation.too_complex(variables, self.settings)] if e]
        try:
            self.documents.check_trusted(self.documents.of_text(operation.text), operation.introspection_only)
        except BadRequest as exc:
            refusals.append(GraphQLError(exc.message, extensions={"code": exc.code}))
        return refusals

    async def sse(self, request: Request, claims: Claims, gql: GraphQLRequest, text: str) -> Response:
        """One subscription over Server-Sent Events (the endpoint has checked the token, the
        body and the document's trust)."""
        reads: async_sessionmaker[AsyncSession] = self.reads()
        recheck = _caller(claims)
        async with reads() as session:
            principal = await recheck(session)
        if principal is None:
            log.info("subscription refused: unknown user, partner or roles (sub=%s)", claims.user_id)
            raise Unauthorized
        context = LiveContext(settings=self.settings, principal=principal, reads=reads, live=self.live,
                              recheck=recheck, expires_at=claims.expires_at, check=self.check, events=self.events)
        results = await self.schema.stream(text, gql.variables, context, operation_name=gql.operation_name)
        return StreamingResponse(_events(results, self.heartbeat_seconds), media_type=EVENT_STREAM,
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _events(results: AsyncIterator[Any], heartbeat: float) -> AsyncIterator[bytes]:
    """`next` per result, `complete` at the end; a comment line while nothing happens, so that
    proxies keep the stream open."""
    pending: asyncio.Task[Any] | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(anext(results))
            done, _ = await asyncio.wait({pending}, timeout=heartbeat)
            if not done:
                yield b":\n\n"
                continue
            try:
                result = pending.result()
            except StopAsyncIteration:
                break
            pending = None
            body: dict[str, Any] = {"data": result.data} if result.data is not None or not result.errors else {}
            if result.errors:
                body["errors"] = [e.formatted for e in result.errors]
            yield b"event: next\ndata: " + orjson.dumps(body) + b"\n\n"
        yield b"event: complete\ndata:\n\n"
    finally:  # the client went away (or the stream ended): end the subscription with it
        if pending is not None:
            pending.cancel()
        await results.aclose()  # type: ignore[attr-defined]


def _caller(claims: Claims) -> Any:
    async def recheck(session: AsyncSession) -> Principal | None:
        caller = await load_caller(session, claims)
        return None if caller is None else caller.principal

    return recheck

