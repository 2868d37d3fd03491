"""Builds the executable schema with the error policy settings ask for, and the engines that run it.

Strawberry sets `execution_context` on each extension instance it runs, so every
extension here is made anew for each request (a factory, never a shared instance); what
spans requests (the Operations, the engine's plans) is made once per schema.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterable
from typing import Any, Iterator, Protocol, Sequence

import strawberry
from graphql import GraphQLError
from graphql.error import GraphQLSyntaxError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from db.engine import is_busy
from resolvers.engine import SCALARS, Engine, GraphQLCoreExecutor, Trace, graphql_schema, plan_extension
from resolvers.operation import Limits, Operation, Operations
from resolvers.query import Query
from schema.base import node_types  # every Node type, so that `node` can return any of them
from schema.live import LiveContext, Subscription, end_event
from services.errors import DomainError

log = logging.getLogger("revampd.graphql")

INTERNAL_ERROR = "Internal server error."
BUSY_ERROR = "The service is busy; retry in a moment."


class UseOperation(SchemaExtension):
    """The request's Operation (resolvers.operation) is the document the schema runs: parsed and
    validated once, before the request reached the schema. (A caller that gives none gets one
    from `operations`.)"""

    def __init__(self, operations: Operations) -> None:
        self.operations = operations
        self.operation: Operation | None = None

    def on_parse(self) -> Iterator[None]:
        ec = self.execution_context
        operation = getattr(ec.context, "operation", None)
        if operation is None and ec.query:
            operation = self.operations.get(ec.query, ec.operation_name)
        if operation is not None and operation.document is not None:
            ec.graphql_document, self.operation = operation.document, operation
        yield

    def on_validate(self) -> Iterator[None]:
        if self.operation is not None:
            self.execution_context.pre_execution_errors = list(self.operation.errors)
        yield


# ---- After execution: what the client is told ----------------------------------

def _fault(error: GraphQLError) -> BaseException | None:
    """The exception behind an error that is our fault (or the database's), if any."""
    original = error.original_error
    if original is None or isinstance(original, (GraphQLError, DomainError)):
        return None
    return original


class ErrorPolicy(SchemaExtension):
    """A DomainError that reaches here is the client's and says so; a busy database
    answers SERVICE_UNAVAILABLE (and the response 503); any other fault is masked
    when `mask` is set."""

    def __init__(self, mask: bool) -> None:
        self.mask = mask

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [self._public(e) for e in result.errors]

    def on_stream_result(self, result: Any) -> Iterator[None]:
        """Each event of a subscription, as each query's answer."""
        if getattr(result, "errors", None):
            result.errors = [self._public(e) for e in result.errors]
        yield

    def _public(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, DomainError):
            return GraphQLError(
                original.message, error.nodes, path=error.path,
                extensions={"code": original.code, "field": original.field},
            )
        fault = _fault(error)
        if fault is None:
            return error
        if is_busy(fault):
            context = self.execution_context.context
            if context is not None:
                context.busy = True
            return GraphQLError(BUSY_ERROR, error.nodes, path=error.path, extensions={"code": "SERVICE_UNAVAILABLE"})
        if self.mask:
            return GraphQLError(INTERNAL_ERROR, error.nodes, path=error.path, extensions={"code": "INTERNAL_SERVER_ERROR"})
        return error


class LiveReads(SchemaExtension):
    """A subscription's event gives back its read session once executed, before it is sent
    (schema.live): an open subscription holds no connection while the client reads."""

    async def on_stream_result(self, result: Any) -> AsyncIterator[None]:
        await end_event()
        yield


class SchemaSettings(Limits, Protocol):
    """What the schema reads of the settings (server.settings.Settings has it)."""

    @property
    def mask_errors(self) -> bool: ...


class Observer(Protocol):
    """Where the schema reports what it saw (server.observability's metrics)."""

    def count_error(self, code: str) -> None: ...
    def count_execution(self, operation: str | None, engine: str) -> None: ...


class _Unobserved:
    def count_error(self, code: str) -> None:
        pass

    def count_execution(self, operation: str | None, engine: str) -> None:
        pass


NO_OBSERVER: Observer = _Unobserved()


class Schema(strawberry.Schema):
    observer: Observer = NO_OBSERVER
    operations: Operations

    async def stream(  # the same call, for a subscription's transports
        self, query: str | None, variable_values: dict[str, Any] | None = None, context_value: Any | None = None,
        root_value: Any | None = None, operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None, allowed_operation_types: Iterable[OperationType] | None = None,
    ) -> Any:
        """Over a live transport (a LiveContext): subscriptions only, each document refused as a
        query's would be, and each operation with a context of its own (its Operation)."""
        if isinstance(context_value, LiveContext):
            operation = self.operations.get(query or "", operation_name)
            refusals = list(operation.errors) or context_value.check(operation, variable_values)
            if not refusals and (operation.kind is None or operation.kind.value != "subscription"):
                refusals = [GraphQLError("Only subscriptions run here: send queries and mutations over HTTP.",
                                         extensions={"code": "OPERATION_NOT_SUPPORTED"})]
            if refusals:
                self.process_errors(refusals)
                return _once(PreExecutionError(data=None, errors=refusals))
            context_value = context_value.for_operation(operation, operation_name)
            allowed_operation_types = {OperationType.SUBSCRIPTION}
        return await super().stream(query, variable_values, context_value, root_value, operation_name,
                                    operation_extensions, allowed_operation_types)

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Our faults at ERROR with their traceback; the client's mistakes one INFO line each."""
        for error in errors:
            fault = _fault(error)
            where = ".".join(str(p) for p in error.path) if error.path else "-"
            if fault is None:
                log.info("client error at %s: %s", where, _redacted(error.message))
            elif is_busy(fault):
                log.warning("database busy at %s: %s", where, type(fault).__name__)
            else:
                log.error("unexpected fault at %s", where, exc_info=fault)
            self.observer.count_error(_code(error, fault))


async def _once(result: Any) -> AsyncIterator[Any]:
    yield result


def _code(error: GraphQLError, fault: BaseException | None) -> str:
    """The extensions.code the client is sent for `error` (ErrorPolicy), for the error metric."""
    if isinstance(error.original_error, DomainError):
        return error.original_error.code
    if fault is not None:
        return "SERVICE_UNAVAILABLE" if is_busy(fault) else "INTERNAL_SERVER_ERROR"
    code = (error.extensions or {}).get("code")
    if isinstance(code, str):
        return code
    return "GRAPHQL_PARSE_FAILED" if isinstance(error, GraphQLSyntaxError) else "GRAPHQL_VALIDATION_FAILED"


# graphql-core repeats a refused value in its message; a run of digits there may be an account or card
# number a client sent as a number (accountNumber: 000123456789). The log never keeps one.
_DIGITS = re.compile(r"\d{5,}")


def _redacted(message: str) -> str:
    return _DIGITS.sub(lambda d: f"[{len(d.group())} digits]", message)


def build_schema(
    settings: SchemaSettings, *, plan: bool = True, extensions: Sequence[Any] = (),
    observer: Observer = NO_OBSERVER, trace: Trace | None = None,
) -> Schema:
    """`plan=False` runs every operation through graphql-core's executor alone (the plan engine,
    resolvers.engine, leaves to it what it does not take); tests compare the two. `extensions`
    are added last (server.observability's tracing); `trace` gives each resolver the plan engine
    calls its span."""
    operations: list[Operations] = []
    extensions_: list[Any] = [
        lambda: UseOperation(operations[0]),
        lambda: ErrorPolicy(mask=settings.mask_errors),
        LiveReads,
        *extensions,
    ]
    engine: list[Engine] = []
    if plan:  # last: the checks above have run when it answers
        extensions_.append(plan_extension(lambda: engine[0], observer.count_execution))
    from resolvers.mutation import Mutation

    schema = Schema(
        query=Query, mutation=Mutation, subscription=Subscription, types=list(node_types().values()), extensions=extensions_,
        execution_context_class=GraphQLCoreExecutor, scalar_overrides=SCALARS,
    )
    schema.observer = observer
    operations.append(Operations(graphql_schema(schema), settings))
    schema.operations = operations[0]
    engine.append(Engine(graphql_schema(schema), schema.config.info_class, trace))
    return schema
