"""Builds the executable schema with the limits and masking that settings ask for."""

from __future__ import annotations

from typing import Any, Callable

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)

from resolvers.query import Query
from schema.base import node_types  # every Node type, so that `node` can return any of them
from server.settings import Settings


class RecordOperation(SchemaExtension):
    """Puts the operation name on the context for the request log line."""

    def on_operation(self):  # type: ignore[no-untyped-def]
        yield
        context = self.execution_context.context
        if context is not None and hasattr(context, "log"):
            context.log["operation"] = self.execution_context.operation_name


def _unexpected(error: GraphQLError) -> bool:
    """Mask faults of ours; keep errors that describe the client's own request."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


def _shared(extension: SchemaExtension) -> Callable[[], SchemaExtension]:
    """One instance for every request. These extensions keep no per-request state, and
    a validation rule made once keeps ValidationCache's key the same for each request."""
    return lambda: extension


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or Settings()
    extensions: list[Any] = [
        RecordOperation,
        _shared(QueryDepthLimiter(max_depth=settings.max_query_depth)),
        _shared(MaxAliasesLimiter(max_alias_count=settings.max_aliases)),
        _shared(MaxTokensLimiter(max_token_count=settings.max_tokens)),
        # Clients send the same few documents: parse and validate each once.
        _shared(ParserCache(maxsize=256)),
        _shared(ValidationCache(maxsize=256)),
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    if settings.mask_errors:
        extensions.append(
            _shared(MaskErrors(should_mask_error=_unexpected, error_message="Internal server error."))
        )
    from resolvers.mutation import Mutation

    return strawberry.Schema(
        query=Query, mutation=Mutation, types=list(node_types().values()), extensions=extensions
    )
