"""Caches keyed by an object's identity, for the parsed documents of requests.

The parser cache hands back the same document object for the same query text, so
what is worked out from a document (its validation, the executor's plan) can be
kept with that object. Keying on the object itself, not its content, matters:
graphql-core's syntax nodes hash by content, walking the whole tree on every
lookup, which costs more than what is cached is worth on a small query.
"""

from __future__ import annotations

import weakref
from typing import Any, Generic, TypeVar

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
