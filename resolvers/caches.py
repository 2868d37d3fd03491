"""Caches keyed by an object's identity, for the parsed documents of requests.

The parser cache hands back the same document object for the same query text, so
what is worked out from a document (its validation, the executor's plan) can be
kept with that object. Keying on the object itself, not its content, matters:
graphql-core's syntax nodes hash by content, walking the whole tree on every
lookup, which costs more than what is cached is worth on a small query.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Generic, Iterator, TypeVar

from strawberry.extensions import SchemaExtension

V = TypeVar("V")


class ByIdentity(Generic[V]):
    """Values kept for objects while the objects live (and at most `maxsize` of them)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: dict[int, tuple[weakref.ref[Any], V]] = {}

    def get(self, obj: Any) -> V | None:
        entry = self._entries.get(id(obj))
        return entry[1] if entry is not None and entry[0]() is obj else None

    def put(self, obj: Any, value: V) -> V:
        key = id(obj)
        if key not in self._entries and len(self._entries) >= self.maxsize:
            del self._entries[next(iter(self._entries))]  # the oldest

        def forget(ref: weakref.ref[Any]) -> None:
            if self._entries.get(key, (None,))[0] is ref:
                del self._entries[key]

        self._entries[key] = (weakref.ref(obj, forget), value)
        return value


def _validate() -> Callable[..., Any]:
    from strawberry.schema.schema import validate_document  # imported late: a cycle otherwise

    return validate_document


_VALIDATED: ByIdentity[tuple[Any, list[Any], list[Any]]] = ByIdentity(256)


class ValidationCacheByDocument(SchemaExtension):
    """Strawberry's ValidationCache, keyed by the document object rather than its
    content (see the module's docstring): each parsed document is validated once per
    schema and set of rules."""

    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        schema, document, rules = ec.schema._schema, ec.graphql_document, list(ec.validation_rules)
        found = _VALIDATED.get(document)
        if found is None or found[0] is not schema or found[1] != rules:
            found = _VALIDATED.put(document, (schema, rules, _validate()(schema, document, rules)))
        ec.pre_execution_errors = found[2]
        yield
