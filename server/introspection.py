"""Introspection for everyone: an operation that asks only about the schema needs no token.

GraphiQL, codegen and editors fetch the schema before any token is set. When INTROSPECTION is
on, a query whose fields at its root are all `__schema`, `__type` or `__typename` (through
fragments too) is answered without a token and without a database connection; anything else
still needs one. With INTROSPECTION off this is never used (the schema refuses introspection).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import strawberry
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationType,
    SelectionSetNode,
    get_operation_ast,
    parse,
)
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from strawberry.types.graphql import OperationType as StrawberryOperationType

from resolvers.schema import INTERNAL_ERROR
from server.graphql_http import BadRequest, graphql_error, read_request, result_response
from server.settings import Settings

log = logging.getLogger("revampd.request")

INTROSPECTION_FIELDS = frozenset({"__schema", "__type", "__typename"})


def introspection_only(document: DocumentNode, operation_name: str | None) -> bool:
    """Whether the operation to run is a query whose root fields are all introspection fields."""
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation != OperationType.QUERY:
        return False
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    seen: set[str] = set()

    def only(selection_set: SelectionSetNode) -> bool:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value not in INTROSPECTION_FIELDS:
                    return False
            elif isinstance(selection, InlineFragmentNode):
                if not only(selection.selection_set):
                    return False
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in seen:  # checked already, or being checked (a cycle, which validation refuses)
                    continue
                seen.add(name)
                fragment = fragments.get(name)
                if fragment is None or not only(fragment.selection_set):
                    return False
        return True

    return only(operation.selection_set)


@dataclass
class Anonymous:
    """The context of an introspection answered without a token: what the schema's extensions read."""

    operation_name: str | None
    log: dict[str, Any] = field(default_factory=dict)
    busy: bool = False


class PublicIntrospection:
    def __init__(self, schema: strawberry.Schema, settings: Settings) -> None:
        self.schema = schema
        self.settings = settings

    async def answer(self, request: Request, log_info: dict[str, Any], media: str) -> Response | None:
        """The answer to a request without a token if it only introspects; None (401) otherwise."""
        try:
            gql = await read_request(request, self.settings.max_body_bytes)
            if gql.query is None:  # named by hash (server/persisted.py): that needs a token
                return None
            document = parse(gql.query, max_tokens=self.settings.max_tokens)
        except (BadRequest, ClientDisconnect, GraphQLError):
            return None
        if not introspection_only(document, gql.operation_name):
            return None
        log_info["operation"] = gql.operation_name
        try:
            result = await self.schema.execute(
                gql.query,
                variable_values=gql.variables,
                context_value=Anonymous(gql.operation_name, log_info),
                operation_name=gql.operation_name,
                allowed_operation_types=frozenset({StrawberryOperationType.QUERY}),
            )
        except Exception as exc:
            log.error("unexpected fault before execution", exc_info=exc)
            return graphql_error(500, "INTERNAL_SERVER_ERROR", INTERNAL_ERROR, media=media)
        return result_response(result, media, db_busy=False)
