"""Long lists cut into statements of a bounded size: bound parameters stay well under every
database's limits (SQLite's 32,766, asyncpg's 32,767)."""

from __future__ import annotations

from typing import Iterable, Sequence, TypeVar

T = TypeVar("T")

SIZE = 500  # rows per INSERT or UPDATE, values per IN (...)


def chunks(items: Sequence[T], size: int = SIZE) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
