"""Rows for reads that need no ORM object.

What a request only reads (the graph's loaders and pages) it reads as SQLAlchemy Rows of
the model's columns, whose attributes are named as the model's: a Row is made in a
fraction of an entity's time and nothing is kept in the session's identity map. Writes
load entities, as they change them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, inspect
from sqlalchemy.orm import Bundle

_COLUMNS: dict[type[Any], tuple[ColumnElement[Any], ...]] = {}
_BUNDLES: dict[type[Any], Bundle[Any]] = {}
_KEYS: dict[type[Any], str] = {}


def columns(model: type[Any]) -> tuple[ColumnElement[Any], ...]:
    """The model's columns: `select(*columns(M))` gives rows read as an M is."""
    found = _COLUMNS.get(model)
    if found is None:
        found = _COLUMNS[model] = tuple(model.__table__.c)
    return found


def bundle(model: type[Any]) -> Bundle[Any]:
    """The model's columns as one element of a row, beside other models' (their columns may share names)."""
    found = _BUNDLES.get(model)
    if found is None:
        found = _BUNDLES[model] = Bundle(model.__tablename__, *model.__table__.c)
    return found


def found(row: Any, model: type[Any]) -> Any | None:
    """An outer-joined `bundle(model)`: the row, or None where the join found none."""
    key = _KEYS.get(model)
    if key is None:
        key = _KEYS[model] = inspect(model).primary_key[0].key
    return None if getattr(row, key) is None else row
