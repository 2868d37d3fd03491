"""Keyset (cursor) pagination, batched across parents.

One query answers the same page of many parents at once (ROW_NUMBER over a
partition), so a list of tickets each showing its first messages costs one
statement, not one per ticket; one more counts each parent's whole list, when a
client asks. Cursors hold the sort key of a row, never an offset, so pages stay
stable while rows are added.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, Generic, Hashable, Sequence, TypeVar

from sqlalchemy import Integer, Select, and_, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from db.rows import Layout, columns, read
from services.errors import DomainError, ErrorCode

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
            raise DomainError(ErrorCode.INVALID_PAGINATION, "Pass first or last, not both.", "first")
        for name in ("first", "last"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise DomainError(ErrorCode.INVALID_PAGINATION, f"{name} must not be negative.", name)
            if value is not None and value > max_size:
                raise DomainError(
                    ErrorCode.INVALID_PAGINATION, f"{name} must be at most {max_size}, got {value}.", name
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
    rows: list[T]
    has_next_page: bool
    has_previous_page: bool
    order: Order = ()
    # How many rows the whole list holds (all its pages), counted when first awaited.
    total: Callable[[], Awaitable[int]] | None = field(default=None, repr=False)

    def cursor(self, row: T) -> str:
        """The cursor of one of its rows (made when asked for: most are never shown)."""
        return encode_cursor([getattr(row, c.key) for c, _ in self.order])


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
        raise DomainError(ErrorCode.INVALID_CURSOR, f"{field} is not a valid cursor.", field) from None


def _beyond(order: Order, values: list[Any], after: bool) -> Any:
    """Rows strictly after (or before) the row whose sort key is `values`."""
    clauses = []
    for i, (column, descending) in enumerate(order):
        smaller = descending == after
        step = column < values[i] if smaller else column > values[i]
        clauses.append(and_(*[order[j][0] == values[j] for j in range(i)], step))
    return or_(*clauses)


# Statements by shape, built once: a page of the same list with other parents, cursor
# values, filter values or size is the same statement with other bound parameters.
# Building a statement (and its cache key) costs more than running it on SQLite.
_STATEMENTS: dict[Any, Select[Any]] = {}
# The same for pages, with how their rows are cut when something comes along.
_PAGES: dict[Any, tuple[Select[Any], Layout | None]] = {}


@dataclass(frozen=True, eq=False)
class Listing(Generic[T]):
    """What a list holds, and in which order, for any of its parents.

    `build()` makes the list's statement with `bindparam`s for whatever varies (its
    values in `params`), and `shape` names that statement: one `shape` always builds
    the same statement. `partition` is the column holding the parent's id; with none,
    the whole list is one list."""

    shape: Hashable
    build: Callable[[], Select[Any]]
    params: dict[str, Any]
    model: type[T]
    partition: InstrumentedAttribute[Any] | None
    order: Order


@dataclass(frozen=True, eq=False)
class Along:
    """What a page's statement brings along for its items, so that they need no statement
    of their own (as a hand-written page joins what it shows of each row).

    `extend(page, order)` is given the page as a CTE (its rows: the model's columns, and
    `page_key` where several parents share the statement) and the page's order over it, and
    makes the statement, of LEFT JOINs that keep every page row in that order (a row may
    repeat, once per row joined to it), and its layout: what cuts each of its rows into
    (the page's row, what comes along...) (db.rows.Layout).
    `shape` names what `extend` makes (one shape, one statement: it is built once);
    `params` are its bound parameters. `take(rows)` keeps what came along (it primes the
    loaders that answer the items' fields) and gives the page's rows, each once, in order."""

    shape: Hashable
    extend: Callable[[Any, list[Any]], tuple[Select[Any], Layout]]
    params: dict[str, Any]
    take: Callable[[list[Any]], list[Any]]


async def fetch_pages(
    session: AsyncSession, listing: Listing[T], parent_ids: Sequence[Any], args: PageArgs, along: Along | None = None,
) -> dict[Any, Page[T]]:
    """The page `args` of the listing for each parent, keyed by parent id (with no
    partition, the one list keyed by parent_ids[0]). One parent (the common case)
    reads `LIMIT size + 1` rows of it; several read their pages together, numbered by
    ROW_NUMBER over the parent. `along` brings more with them in the same statement.
    """
    shape, build, model, partition, order = (
        listing.shape, listing.build, listing.model, listing.partition, listing.order
    )
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
    cursor = args.after if args.forward else args.before
    single = partition is None or len(parent_ids) == 1
    key = (shape, model, partition, tuple(order), args.forward, cursor is not None, single, along and along.shape)
    found = _PAGES.get(key)
    if found is None:
        stmt, layout = _page_statement(build(), model, partition, order, args.forward, cursor, single), None
        if along is not None:
            cte = stmt.cte("page")
            walk = [(cte.c[str(c.key)], d == args.forward) for c, d in order]
            by = ([] if single else [cte.c.page_key]) + [c.desc() if d else c.asc() for c, d in walk]
            stmt, layout = along.extend(cte, by)
        found = _PAGES[key] = (stmt, layout)
    stmt, layout = found
    params = {**listing.params, **(along.params if along else {}), "page_limit": args.size + 1}
    if cursor is not None:
        values = decode_cursor(cursor, order, "after" if args.forward else "before")
        params.update({f"page_cursor_{i}": v for i, v in enumerate(values)})
    if single and partition is not None:
        params["page_parent"] = parent_ids[0]
    elif not single:
        params["page_parents"] = list(parent_ids)
    rows = await read(session, stmt, params)
    if along is not None and layout is not None:
        rows = along.take([layout.split(row) for row in rows])
    grouped: dict[Any, list[T]] = {}
    if single:
        grouped[parent_ids[0]] = rows
    else:
        for item in rows:
            grouped.setdefault(item.page_key, []).append(item)
    for pid, items in grouped.items():
        if not items:
            continue
        more = len(items) > args.size
        items = items[: args.size]
        if not args.forward:
            items.reverse()
        page = pages[pid]
        page.rows, page.order = items, order
        if args.forward:
            page.has_next_page = more
        else:
            page.has_previous_page = more
    return pages


async def count_rows(session: AsyncSession, listing: Listing[Any], parent_ids: Sequence[Any]) -> dict[Any, int]:
    """How many rows the listing holds for each parent (every page, the same filter and
    the same rows as its pages): one statement for all the parents."""
    partition = listing.partition
    key = (listing.shape, listing.model, partition, "count")
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        base = listing.build()
        if partition is None:
            stmt = base.with_only_columns(func.count(), maintain_column_froms=True)
        else:
            stmt = (
                base.where(partition.in_(bindparam("page_parents", expanding=True)))
                .with_only_columns(partition, func.count(), maintain_column_froms=True)
                .group_by(partition)
            )
        _STATEMENTS[key] = stmt
    if partition is None:
        return {pid: int(await session.scalar(stmt, listing.params) or 0) for pid in parent_ids[:1]}
    rows = await session.execute(stmt, {**listing.params, "page_parents": list(parent_ids)})
    found = {parent: n for parent, n in rows.all()}
    return {pid: int(found.get(pid, 0)) for pid in parent_ids}


def _page_statement(
    listed: Select[Any],
    model: type[Any],
    partition: InstrumentedAttribute[Any] | None,
    order: Order,
    forward: bool,
    cursor: str | None,
    single: bool,
) -> Select[Any]:
    # Rows of the model's columns, not ORM objects (db.rows): a page is only read.
    stmt: Select[Any] = listed.with_only_columns(*columns(model), maintain_column_froms=True)
    # Walking backwards is walking forwards over the reversed order.
    walk = list(order) if forward else [(c, not d) for c, d in order]
    if cursor is not None:
        values = [bindparam(f"page_cursor_{i}", type_=c.type) for i, (c, _) in enumerate(order)]
        stmt = stmt.where(_beyond(walk, values, after=True))
    by = [c.desc() if d else c.asc() for c, d in walk]
    limit = bindparam("page_limit", type_=Integer)
    if single:
        if partition is not None:
            stmt = stmt.where(partition == bindparam("page_parent"))
        return stmt.order_by(*by).limit(limit)
    assert partition is not None
    stmt = stmt.where(partition.in_(bindparam("page_parents", expanding=True)))
    rank = func.row_number().over(partition_by=partition, order_by=by)
    inner = stmt.add_columns(partition.label("page_key"), rank.label("page_rank")).subquery()
    return (
        select(*(inner.c[str(c.key)] for c in columns(model)), inner.c.page_key)
        .where(inner.c.page_rank <= limit)
        .order_by(inner.c.page_key, inner.c.page_rank)
    )
