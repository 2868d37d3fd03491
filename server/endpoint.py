"""POST and GET /graphql: one request's path from the socket to the services and back.

    media type → token → body → document (persisted?) → Operation → checks → run → response

Each step is one method below. A step that refuses the request raises a `BadRequest` (or a
subclass); `HANDLERS` maps those to responses, as Starlette's `exception_handlers` do, and the
app installs them. Introspection without a token takes the same path, without a connection.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import strawberry
from graphql import ExecutionResult
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from strawberry.types.graphql import OperationType

from db import models as m
from db.engine import is_busy
from resolvers.operation import Operation, Operations
from resolvers.schema import BUSY_ERROR, INTERNAL_ERROR
from schema.context import Context
from schema.loaders import Loaders
from server.auth import AuthError, Claims, TokenVerifier
from server.graphiql import GraphiQL
from server.graphql_http import (
    GRAPHQL_RESPONSE,
    JSON,
    RETRY_AFTER,
    BadRequest,
    GraphQLRequest,
    negotiate,
    read_request,
    result_response,
    wants_events,
)
from server.limits import CostLimiter, Throttle
from server.persisted import NO_STORE, PUBLIC_FIELDS, Document, Documents, public_catalogue
from server.settings import Settings
from services.access import Principal, Role

log = logging.getLogger("revampd.request")
auth_log = logging.getLogger("revampd.auth")

# Set in a request's scope when its client hangs up before the response is all sent
# (server.protocol); the request is logged with this status, nginx's "client closed request".
CLIENT_GONE = "revampd.client_gone"
CLIENT_CLOSED_REQUEST = 499


class Unauthorized(BadRequest):
    def __init__(self) -> None:
        super().__init__("Authentication required.", status=401, code="UNAUTHENTICATED",
                         **{"WWW-Authenticate": "Bearer"})


class NotAcceptable(BadRequest):
    def __init__(self, accept: str | None) -> None:
        super().__init__(f"Accept must allow {GRAPHQL_RESPONSE} or {JSON}, got {accept!r}.", status=406,
                         code="NOT_ACCEPTABLE")


class Busy(BadRequest):
    """The database could not answer in time (our side, not the client's): try again."""

    def __init__(self) -> None:
        super().__init__(BUSY_ERROR, status=503, code="SERVICE_UNAVAILABLE", **{"Retry-After": RETRY_AFTER})


class Fault(BadRequest):
    """A fault of ours before execution (its traceback is logged where it is raised)."""

    def __init__(self) -> None:
        super().__init__(INTERNAL_ERROR, status=500, code="INTERNAL_SERVER_ERROR")


class Throttled(BadRequest):
    """Over the caller's cost budget (server.limits): nothing ran."""

    def __init__(self, throttle: Throttle, requested: int) -> None:
        super().__init__(
            f"Throttled: this query costs {requested} and {throttle.currently_available} of "
            f"{throttle.maximum_available} is left; it restores {throttle.restore_rate} per second.",
            status=429, code="THROTTLED", **{"Retry-After": str(throttle.retry_after)},
        )
        self.extensions = {"cost": throttle.extension(requested, None)}


def _media(request: Request) -> str:
    return negotiate(request.headers.get("accept")) or JSON


def _graphql_headers(response: Response) -> Response:
    response.headers.append("Vary", "Accept")  # the media type answered depends on it
    response.headers.setdefault("Cache-Control", NO_STORE)  # only the public catalogue is cached
    return response


async def refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    if exc.status >= 500:
        log.warning("refused with %s: %s", exc.status, exc.message)
    else:
        log.info("refused %s %s: %s", exc.status, exc.code, exc.message)
    media = JSON if isinstance(exc, NotAcceptable) else _media(request)
    return _graphql_headers(exc.response(media))


async def hung_up(request: Request, _: Exception) -> Response:
    """The client hung up before its whole body: nothing to answer."""
    request.scope.setdefault("revampd.log", {})["status"] = CLIENT_CLOSED_REQUEST
    return Response(status_code=CLIENT_CLOSED_REQUEST)


HANDLERS: dict[Any, Any] = {BadRequest: refused, ClientDisconnect: hung_up}


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


@dataclass
class Anonymous:
    """The context of an introspection answered without a token: what the schema's extensions read."""

    operation: Operation
    operation_name: str | None
    log: dict[str, Any] = field(default_factory=dict)
    busy: bool = False


@dataclass
class Costed:
    """What a request was charged (server.limits), for `extensions.cost`."""

    viewer: str
    requested: int
    throttle: Throttle


def _objects_in_lists(data: Any) -> int:
    """The objects an answer holds in lists: its actual cost, as the requested cost counts them."""
    count, todo = 0, [data]
    while todo:
        value = todo.pop()
        if isinstance(value, dict):
            todo.extend(v for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    count += 1
                    todo.append(item)
                elif isinstance(item, list):
                    todo.append(item)
    return count


class GraphQLEndpoint:
    """The /graphql endpoint: `answer` reads as the request's steps."""

    def __init__(
        self, settings: Settings, schema: strawberry.Schema, operations: Operations, documents: Documents,
        reads: Any, writes: Any, limiter: CostLimiter | None, graphiql: GraphiQL | None, sse: Any = None,
    ) -> None:
        self.settings, self.schema, self.operations, self.documents = settings, schema, operations, documents
        self.reads, self.writes = reads, writes  # callables giving the app's session factories
        self.limiter, self.graphiql = limiter, graphiql
        # A subscription over Server-Sent Events (server.subscriptions.Subscriptions.sse).
        self.sse = sse
        self.verifier = TokenVerifier(settings)

    async def answer(self, request: Request) -> Response:
        if self._wants_page(request):
            return await self.graphiql.page() if self.graphiql else PlainTextResponse("Not Found", 404)
        if self.sse is not None and wants_events(request):
            return await self._subscription(request)
        media = self._media(request)
        claims = await self._claims(request)
        gql, document, operation = await self._operation(request, claims)
        refusal = operation.errors or [e for e in [operation.too_complex(gql.variables, self.settings)] if e]
        if refusal:
            return self._answer(request, ExecutionResult(None, refusal), media, operation, ran=False)
        costed = await self._charge(claims, operation, gql)
        if claims is None:  # introspection (_operation refused anything else): no connection
            anonymous = Anonymous(operation, gql.operation_name, self._log(request))
            result, busy, listed = await self._run(operation, gql, anonymous), False, None
        else:
            result, busy, listed = await self._run_as(request, claims, operation, gql)
        if result.data is not None and not busy:  # it ran: clients may name it by hash from now on
            await self.documents.register(document)
        await self._settle(costed, result, listed)
        return self._answer(request, result, media, operation, busy)

    async def _subscription(self, request: Request) -> Response:
        """A subscription over Server-Sent Events: the token, the body and the document as for a
        query; the rest is the subscription's (server.subscriptions)."""
        claims = await self._claims(request)
        if claims is None:
            raise Unauthorized
        gql = await read_request(request, self.settings.max_body_bytes)
        document = await self.documents.resolve(gql)
        self._log(request)["operation"] = gql.operation_name
        response: Response = await self.sse(request, claims, gql, document.query)
        return response

    # ---- the steps ----------------------------------------------------------

    @staticmethod
    def _wants_page(request: Request) -> bool:
        accept = request.headers.get("accept", "")
        return request.method == "GET" and "text/html" in accept and not request.query_params.get("query")

    @staticmethod
    def _media(request: Request) -> str:
        media = negotiate(request.headers.get("accept"))
        if media is None:
            raise NotAcceptable(request.headers.get("accept"))
        return media

    async def _claims(self, request: Request) -> Claims | None:
        """The token's claims; None without a token (only introspection may go on)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            return await self.verifier.verify_async(token.strip())
        except AuthError as exc:
            auth_log.info("token refused: %s", exc)
            raise Unauthorized from None

    async def _operation(self, request: Request, claims: Claims | None) -> tuple[GraphQLRequest, Document, Operation]:
        """The request, its document and the Operation. Without a token only an introspection
        goes on; anything else (a bad body included) is refused as unauthenticated."""
        if claims is None and not self.settings.introspection:
            raise Unauthorized
        try:
            gql = await read_request(request, self.settings.max_body_bytes)
            document = await self.documents.resolve(gql)
            operation = self._checked(request, gql, document)
        except BadRequest:
            if claims is None:
                raise Unauthorized from None
            raise
        if claims is None and (operation.errors or not operation.introspection_only):
            raise Unauthorized
        return gql, document, operation

    def _checked(self, request: Request, gql: GraphQLRequest, document: Document) -> Operation:
        operation = self.operations.get(document.query, gql.operation_name)
        self._log(request)["operation"] = gql.operation_name
        if operation.unknown_name:
            raise BadRequest(f'Unknown operation named "{gql.operation_name}".', code="UNKNOWN_OPERATION")
        self.documents.check_trusted(document, operation.introspection_only)
        if request.method == "GET" and operation.kind is not None and operation.kind.value != "query":
            raise BadRequest("Mutations must be sent with POST.", status=405, code="METHOD_NOT_ALLOWED", Allow="POST")
        return operation

    async def _charge(self, claims: Claims | None, operation: Operation, gql: GraphQLRequest) -> Costed | None:
        """Take the operation's cost (at least 1) from the caller's budget (server.limits);
        refuse it when the budget cannot pay. Introspection without a token is not charged."""
        if self.limiter is None or claims is None:
            return None
        requested = max(1, operation.cost(gql.variables, self.settings) or 0)
        viewer = f"user:{claims.user_id}"
        throttle = await self.limiter.take(viewer, requested, time.time())
        if not throttle.allowed:
            raise Throttled(throttle, requested)
        return Costed(viewer, requested, throttle)

    async def _settle(self, costed: Costed | None, result: ExecutionResult, listed: int | None) -> None:
        """Give back what the answer did not use, and say what it cost (`extensions.cost`):
        the objects it holds in lists, as the engine counted them (`listed`) or counted here."""
        if costed is None or self.limiter is None:
            return
        actual = min(costed.requested, max(1, _objects_in_lists(result.data) if listed is None else listed))
        throttle = costed.throttle
        if actual < costed.requested:
            throttle = await self.limiter.refund(costed.viewer, costed.requested - actual, time.time())
        result.extensions = {"cost": throttle.extension(costed.requested, actual)}

    async def _run(self, operation: Operation, gql: GraphQLRequest, context: Any) -> ExecutionResult:
        result = await self.schema.execute(
            operation.text,
            variable_values=gql.variables,
            context_value=context,
            operation_name=gql.operation_name,
            allowed_operation_types=frozenset({OperationType.QUERY, OperationType.MUTATION}),
        )
        return ExecutionResult(result.data, result.errors)

    async def _run_as(
        self, request: Request, claims: Claims, operation: Operation, gql: GraphQLRequest
    ) -> tuple[ExecutionResult, bool, int | None]:
        """Run as the token's user, on one read session given back before the answer is sent:
        the result, whether the database was busy, and the objects in lists the engine counted."""
        log_info = self._log(request)
        try:
            async with self.reads()() as session:
                caller = await load_caller(session, claims)
                if caller is None:
                    auth_log.info("token refused: unknown user, partner or roles (sub=%s)", claims.user_id)
                    raise Unauthorized
                log_info["user"] = caller.user.id
                context = Context(
                    settings=self.settings, principal=caller.principal, db=session, writes=self.writes(),
                    request_id=log_info.get("request_id", ""), operation_name=gql.operation_name, log=log_info,
                    operation=operation, base_url=str(request.base_url).rstrip("/"),
                )
                caller.prime(context.loaders)
                return await self._run(operation, gql, context), context.busy, context.objects_in_lists
        except BadRequest:
            raise
        except Exception as exc:
            if is_busy(exc):
                log.warning("database busy before execution: %s", type(exc).__name__)
                raise Busy from None
            log.error("unexpected fault before execution", exc_info=exc)
            raise Fault from None

    def _answer(
        self, request: Request, result: ExecutionResult, media: str, operation: Operation,
        busy: bool = False, ran: bool = True,
    ) -> Response:
        if not ran and result.errors:
            self.schema.process_errors(result.errors)  # logged and counted as execution's errors are
        response = result_response(result, media, busy)
        if request.method == "GET" and response.status_code == 200 and not result.errors \
                and operation.selects_only(PUBLIC_FIELDS):
            response = public_catalogue(request, response)
        return _graphql_headers(response)

    @staticmethod
    def _log(request: Request) -> dict[str, Any]:
        found: dict[str, Any] = request.scope.setdefault("revampd.log", {})
        return found
