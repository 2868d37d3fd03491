"""Rows for reads that need no ORM object.

What a request only reads (the graph's loaders and pages) it reads as rows of the model's
columns whose attributes are named as the model's, run on the session's connection (Core):
a row is made in a fraction of an entity's time, nothing is kept in the session's identity
map, and the ORM's execution is skipped. Writes load entities, as they change them.

A statement that reads several models' rows side by side (a row and what is joined to
it) selects their columns one after the other (`Layout`), and each result row is cut back
into one row per model.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any, Callable, Iterable

from sqlalchemy import ColumnElement, inspect
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import SerialSession

_COLUMNS: dict[type[Any], tuple[ColumnElement[Any], ...]] = {}
_KEYS: dict[type[Any], str] = {}


def columns(model: type[Any]) -> tuple[ColumnElement[Any], ...]:
    """The model's columns: `select(*columns(M))` gives rows read as an M is."""
    found = _COLUMNS.get(model)
    if found is None:
        found = _COLUMNS[model] = tuple(model.__table__.c)
    return found


def found(row: Any, model: type[Any]) -> Any | None:
    """A row of `model` read through an outer join: the row, or None where the join found none."""
    key = _KEYS.get(model)
    if key is None:
        key = _KEYS[model] = inspect(model).primary_key[0].key
    return None if getattr(row, key) is None else row


class Layout:
    """Several parts side by side in one statement's rows. A part is a model's columns (read
    back as a row of that model), `(name, columns)` (read back as a row with the columns'
    keys: an alias's, a subquery's) or one column (read back as its value)."""

    def __init__(self, *parts: Any) -> None:
        self.columns: list[Any] = []
        cuts: list[tuple[int, int, Callable[[Iterable[Any]], Any] | None]] = []
        for part in parts:
            if isinstance(part, type):
                model: Any = part
                name, cols = model.__tablename__, list(model.__table__.c)
            elif isinstance(part, tuple):
                name, cols = part[0], list(part[1])
            else:
                cuts.append((len(self.columns), len(self.columns) + 1, None))
                self.columns.append(part)
                continue
            keys = [str(c.key) for c in cols]
            row_type: Any = namedtuple(f"{name}_row", keys)  # type: ignore[misc]  # fields known at run time
            made: Callable[[Iterable[Any]], Any] = row_type._make
            cuts.append((len(self.columns), len(self.columns) + len(cols), made))
            self.columns += cols
        self.cuts = cuts

    def split(self, row: Any) -> tuple[Any, ...]:
        return tuple(row[a] if made is None else made(row[a:b]) for a, b, made in self.cuts)


async def read(session: AsyncSession, statement: Any, params: dict[str, Any]) -> list[Any]:
    """The rows of a read statement, run as Core on the session's connection (its transaction),
    one at a time with the session's other statements. Only a read session serializes its
    statements so (db.engine.SerialSession): on any other a rollback could meet a statement
    still running, so it is refused."""
    if not isinstance(session, SerialSession):
        raise TypeError(f"reads run on a read session (db.engine.read_sessions), not a {type(session).__name__}")
    return await session.rows(statement, params)
