"""Keyset (cursor) pagination, batched across parents.

One query answers the same page of many parents at once (ROW_NUMBER over a
partition), so a list of tickets each showing its first messages costs one
statement, not one per ticket. Cursors hold the sort key of a row, never an
offset, so pages stay stable while rows are added.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Sequence, TypeVar

from sqlalchemy import Select, and_, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from services.errors import DomainError

T = TypeVar("T")

# (column, descending)
Order = Sequence[tuple[InstrumentedAttribute[Any], bool]]


@dataclass(frozen=True)
class PageArgs:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None

    def validated(self, max_size: int, default_size: int) -> "PageArgs":
        if self.first is not None and self.last is not None:
            raise DomainError("INVALID_PAGINATION", "Pass first or last, not both.", "first")
        for name in ("first", "last"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise DomainError("INVALID_PAGINATION", f"{name} must not be negative.", name)
            if value is not None and value > max_size:
                raise DomainError(
                    "INVALID_PAGINATION", f"{name} must be at most {max_size}, got {value}.", name
                )
        if self.first is None and self.last is None:
            if self.before is not None:
                return PageArgs(last=default_size, before=self.before)
            return PageArgs(first=default_size, after=self.after)
        return self

    @property
    def forward(self) -> bool:
        return self.last is None

    @property
    def size(self) -> int:
        size = self.first if self.forward else self.last
        assert size is not None
        return size


@dataclass
class Page(Generic[T]):
    items: list[tuple[T, str]]  # (row, cursor)
    has_next_page: bool
    has_previous_page: bool


def encode_cursor(values: Sequence[Any]) -> str:
    plain = [{"dt": v.isoformat()} if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


_BIGINT = 2**63


def _cursor_value(raw: Any, column: InstrumentedAttribute[Any]) -> Any:
    """One sort-key value of a cursor, of exactly the column's type, or ValueError."""
    kind = column.type.python_type
    if kind is datetime:
        if not isinstance(raw, dict) or set(raw) != {"dt"} or not isinstance(raw["dt"], str):
            raise ValueError
        value = datetime.fromisoformat(raw["dt"])
        if value.tzinfo is None:
            raise ValueError
        return value
    if kind is int:
        if type(raw) is not int or not -_BIGINT <= raw < _BIGINT:
            raise ValueError
        return raw
    raise ValueError  # no list sorts by another type; a cursor cannot name one


def decode_cursor(cursor: str, order: Order, field: str) -> list[Any]:
    """The sort key in a cursor, checked value by value against the list's order:
    a cursor made for another list, or by hand, is INVALID_CURSOR, never a fault."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != len(order):
            raise ValueError
        return [_cursor_value(v, column) for v, (column, _) in zip(raw, order, strict=True)]
    except (ValueError, TypeError, RecursionError):
        raise DomainError("INVALID_CURSOR", f"{field} is not a valid cursor.", field) from None


def _beyond(order: Order, values: list[Any], after: bool) -> Any:
    """Rows strictly after (or before) the row whose sort key is `values`."""
    clauses = []
    for i, (column, descending) in enumerate(order):
        smaller = descending == after
        step = column < values[i] if smaller else column > values[i]
        clauses.append(and_(*[order[j][0] == values[j] for j in range(i)], step))
    return or_(*clauses)


async def fetch_pages(
    session: AsyncSession,
    stmt: Select[Any],
    model: type[T],
    partition: InstrumentedAttribute[Any] | None,
    parent_ids: Sequence[Any],
    order: Order,
    args: PageArgs,
) -> dict[Any, Page[T]]:
    """The page `args` of `stmt`'s rows for each parent, keyed by parent id.

    With no `partition`, the whole of `stmt` is one list, keyed by parent_ids[0].
    """
    pages: dict[Any, Page[T]] = {
        pid: Page(
            [],
            has_next_page=not args.forward and args.before is not None,
            has_previous_page=args.forward and args.after is not None,
        )
        for pid in parent_ids
    }
    if args.size == 0 or not parent_ids:
        return pages
    # Walking backwards is walking forwards over the reversed order.
    walk = list(order) if args.forward else [(c, not d) for c, d in order]
    cursor = args.after if args.forward else args.before
    if partition is None:
        key: Any = literal(parent_ids[0])
    else:
        key = partition
        stmt = stmt.where(partition.in_(list(parent_ids)))
    if cursor is not None:
        values = decode_cursor(cursor, order, "after" if args.forward else "before")
        stmt = stmt.where(_beyond(walk, values, after=True))
    rank = func.row_number().over(
        partition_by=partition, order_by=[c.desc() if d else c.asc() for c, d in walk]
    )
    inner = stmt.add_columns(key.label("page_key"), rank.label("page_rank")).subquery()
    row = aliased(model, inner)
    rows = await session.execute(
        select(row, inner.c.page_key)
        .where(inner.c.page_rank <= args.size + 1)
        .order_by(inner.c.page_key, inner.c.page_rank)
    )
    grouped: dict[Any, list[T]] = {}
    for item, pid in rows.all():
        grouped.setdefault(pid, []).append(item)
    for pid, items in grouped.items():
        more = len(items) > args.size
        items = items[: args.size]
        if not args.forward:
            items.reverse()
        page = pages[pid]
        page.items = [(i, encode_cursor([getattr(i, c.key) for c, _ in order])) for i in items]
        if args.forward:
            page.has_next_page = more
        else:
            page.has_previous_page = more
    return pages
