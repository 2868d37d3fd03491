"""Builds the executable schema with the limits, checks and error policy settings ask for.

Strawberry sets `execution_context` on each extension instance it runs, so every
extension here is made anew for each request (a factory, never a shared instance).
Parse and validation caches still span requests: they live at module level (resolvers.caches), and the
validation rules are made once so the cache key stays the same.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Iterator, Sequence

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValidationRule,
    get_named_type,
)
from graphql.error import GraphQLSyntaxError
from graphql.execution.values import get_argument_values, get_variable_values
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
)
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule
from strawberry.types import ExecutionContext

from db.engine import is_busy
from resolvers.caches import ByIdentity, ValidationCacheByDocument
from resolvers.executor import FastExecutionContext
from resolvers.query import Query
from schema.base import SCALARS, node_types  # every Node type, so that `node` can return any of them
from server import observability
from server.settings import Settings
from services.errors import DomainError

log = logging.getLogger("revampd.graphql")

INTERNAL_ERROR = "Internal server error."
BUSY_ERROR = "The service is busy; retry in a moment."


class RecordOperation(SchemaExtension):
    """Puts the operation name on the context for the request log line."""

    def on_operation(self) -> Iterator[None]:
        yield
        context = self.execution_context.context
        if context is not None and hasattr(context, "log"):
            context.log["operation"] = self.execution_context.operation_name


class NoNulInStrings(ValidationRule):
    """No stored text can hold NUL (PostgreSQL refuses it): refuse it in literals too.
    (Variables are checked where the request body is read.)"""

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        if "\x00" in node.value:
            self.report_error(GraphQLError("String values must not contain NUL (\\u0000).", node))


def _client_error(message: str, code: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


# ---- Before execution: one operation, within the cost budget ------------------

def _selected_operation(ec: ExecutionContext) -> OperationDefinitionNode | GraphQLError:
    assert ec.graphql_document is not None
    operations = [d for d in ec.graphql_document.definitions if isinstance(d, OperationDefinitionNode)]
    wanted = getattr(ec.context, "operation_name", None)
    if wanted is None:
        if len(operations) > 1:
            return _client_error(
                "The document holds several operations: name the one to run in operationName.",
                "OPERATION_NAME_REQUIRED",
            )
        return operations[0]
    for op in operations:
        if op.name is not None and op.name.value == wanted:
            return op
    return _client_error(f"The document has no operation named {wanted!r}.", "UNKNOWN_OPERATION")


def _is_connection(named: Any) -> bool:
    return isinstance(named, GraphQLObjectType) and "edges" in named.fields and "pageInfo" in named.fields


def query_cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
    default_page: int,
    max_page: int,
) -> int:
    """The most objects the operation can return: each list (a cursor connection, or
    `nodes(ids:)`) counts its page size times the sizes of the lists around it, as
    GitHub's node limit does. A page size over the maximum counts as the maximum
    (asking for it is an error of its own)."""
    total = 0
    root = schema.get_root_type(operation.operation)
    assert root is not None

    def walk(selection_set: SelectionSetNode, parent: Any, multiplier: int) -> None:
        nonlocal total
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                field = getattr(parent, "fields", {}).get(sel.name.value)
                if field is None:  # __typename and introspection
                    continue
                named = get_named_type(field.type)
                size = None
                if _is_connection(named) or sel.name.value == "nodes":
                    args = get_argument_values(field, sel, variables)
                    if "ids" in args:
                        size = len(args["ids"] or ())
                    else:
                        asked = args.get("first", args.get("last"))
                        size = default_page if asked is None else max(0, min(int(asked), max_page))
                inner = multiplier
                if size is not None:
                    inner = multiplier * size
                    total += inner
                if sel.selection_set is not None:
                    walk(sel.selection_set, named, inner)
            elif isinstance(sel, InlineFragmentNode):
                cond = schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent
                walk(sel.selection_set, cond, multiplier)
            elif isinstance(sel, FragmentSpreadNode):
                fragment = fragments[sel.name.value]
                walk(fragment.selection_set, schema.get_type(fragment.type_condition.name.value), multiplier)

    walk(operation.selection_set, root, 1)
    return total


class RequestChecks(SchemaExtension):
    """After the (cached) validation: the operation to run is unambiguous, and its
    worst-case size is within the budget. Listed after ValidationCacheByDocument, whose
    validation has run by the time this one starts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        if not ec.pre_execution_errors:
            error = self._check(ec)
            if error is not None:
                ec.pre_execution_errors = [error]
        yield

    def _check(self, ec: ExecutionContext) -> GraphQLError | None:
        operation = _selected_operation(ec)
        if isinstance(operation, GraphQLError):
            return operation
        s = self.settings
        cost = self._cost(ec, operation)
        if cost is not None and cost > s.max_query_nodes:
            return _client_error(
                f"This query could return up to {cost:,} objects; the limit is {s.max_query_nodes:,}. "
                "Ask for smaller pages (first/last) or fewer nested lists.",
                "QUERY_TOO_COMPLEX",
                cost=cost,
                limit=s.max_query_nodes,
            )
        return None


    def _cost(self, ec: ExecutionContext, operation: OperationDefinitionNode) -> int | None:
        """query_cost of the operation with these variables (None when execution will
        refuse them), worked out once per document, variables and page settings."""
        s, schema, document = self.settings, ec.schema._schema, ec.graphql_document
        try:
            key = (id(schema), operation.name.value if operation.name else None, s.default_page_size,
                   s.max_page_size, json.dumps(ec.variables or {}, sort_keys=True))
        except (TypeError, ValueError):
            key = None
        known = _COSTS.get(document) or _COSTS.put(document, {})
        if key is not None and key in known:
            return known[key]
        cost: int | None = None
        coerced = get_variable_values(schema, operation.variable_definitions or (), ec.variables or {})
        if not isinstance(coerced, list):  # else bad variables: execution reports them
            assert document is not None
            fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
            try:
                cost = query_cost(schema, operation, fragments, coerced, s.default_page_size, s.max_page_size)
            except GraphQLError:  # an argument execution will refuse with its own message
                pass
        if key is not None:
            if len(known) >= 64:
                known.clear()
            known[key] = cost
        return cost


# The costs of each (cached, parsed) document, by schema, operation, page settings and variables.
_COSTS: ByIdentity[dict[Any, int | None]] = ByIdentity(256)


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


class Schema(strawberry.Schema):
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
            observability.count_error(_code(error, fault))


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
    settings: Settings | None = None, *, fast_executor: bool = True, extensions: Sequence[Any] = ()
) -> strawberry.Schema:
    """`fast_executor=False` runs every operation through graphql-core's executor alone
    (resolvers.executor gives up to it where it must); tests compare the two. `extensions` are
    added last (server.observability's tracing)."""
    settings = settings or Settings()
    # Made once: ValidationCacheByDocument keys on the rules, so they must be the same objects.
    rules = [
        max_depth_rule(settings.max_query_depth, None),
        max_aliases_rule(settings.max_aliases),
        NoNulInStrings,
    ]
    extensions_: list[Any] = [
        RecordOperation,
        lambda: AddValidationRules(rules),
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        # Clients send the same few documents: parse and validate each once.
        lambda: ParserCache(maxsize=256),
        ValidationCacheByDocument,
        lambda: RequestChecks(settings),
        lambda: ErrorPolicy(mask=settings.mask_errors),
    ]
    if not settings.introspection:
        extensions_.append(DisableIntrospection)
    extensions_ += extensions
    from resolvers.mutation import Mutation

    return Schema(
        query=Query, mutation=Mutation, types=list(node_types().values()), extensions=extensions_,
        execution_context_class=FastExecutionContext if fast_executor else None,
        scalar_overrides=SCALARS,
    )
