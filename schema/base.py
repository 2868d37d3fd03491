"""Shapes every part of the graph shares: Node and global IDs, Money, pages, errors."""

from __future__ import annotations

import base64
import binascii
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Generic, TypeVar, cast

import strawberry
from graphql import GraphQLError

from services import money
from services.errors import DomainError
from services.pagination import Page, PageArgs

if TYPE_CHECKING:
    from resolvers.context import Context

T = TypeVar("T")


def ctx(info: strawberry.Info) -> "Context":
    return cast("Context", info.context)


# ---- Global IDs --------------------------------------------------------------

def to_global_id(type_name: str, pk: int) -> strawberry.ID:
    raw = f"{type_name}:{pk}".encode()
    return strawberry.ID(base64.urlsafe_b64encode(raw).decode().rstrip("="))


def from_global_id(gid: str) -> tuple[str, int] | None:
    """(type name, primary key), or None for anything that is not one of our IDs.

    Only the exact text `to_global_id` makes is accepted, so each object has one ID
    (no padding, no leading zeros, no non-ASCII digits)."""
    try:
        raw = base64.urlsafe_b64decode(gid + "=" * (-len(gid) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    type_name, _, pk = raw.partition(":")
    if not type_name or not pk.isascii() or not pk.isdigit() or len(pk) > 18:
        return None
    if to_global_id(type_name, int(pk)) != gid:
        return None
    return type_name, int(pk)


def decode_id(gid: str, expected: str, field: str) -> int:
    """The primary key of an ID of type `expected`; a wrong or foreign ID is NOT_FOUND."""
    parsed = from_global_id(gid)
    if parsed is None or parsed[0] != expected:
        raise DomainError("NOT_FOUND", f"No {expected} with this ID.", field)
    return parsed[1]


Loader = Callable[[strawberry.Info, int], Awaitable[Any]]
NODE_LOADERS: dict[str, Loader] = {}


@strawberry.interface(description="An object with a global ID, fetchable with `node(id:)`.")
class Node:
    id: strawberry.ID


def node_type(name: str) -> Callable[[type[T]], type[T]]:
    """Register a type's `load(info, pk)` (which checks access) for `node`/`nodes`."""

    def register(cls: type[T]) -> type[T]:
        NODE_LOADERS[name] = cls.load  # type: ignore[attr-defined]
        return cls

    return register


async def resolve_node(info: strawberry.Info, gid: str) -> Any:
    parsed = from_global_id(gid)
    if parsed is None or parsed[0] not in NODE_LOADERS:
        return None
    return await NODE_LOADERS[parsed[0]](info, parsed[1])


# ---- Money -------------------------------------------------------------------

@strawberry.type(description="An amount of money; `amount` is a decimal string, never a float.")
class Money:
    amount: Decimal
    currency_code: str

    @classmethod
    def of(cls, minor: int, currency: str) -> "Money":
        return cls(amount=money.to_decimal(minor, currency), currency_code=currency)


# ---- Errors ------------------------------------------------------------------

@strawberry.type(description="A business rule refused the input; `field` is the path to it.")
class UserError:
    field: list[str] | None
    code: str
    message: str

    @classmethod
    def of(cls, err: DomainError) -> "UserError":
        field = ["input", *err.field] if err.field else None
        return cls(field=field, code=err.code, message=err.message)


def bad_request(err: DomainError) -> GraphQLError:
    """For queries (not mutations): a bad argument is a top-level error naming it."""
    return GraphQLError(err.message, extensions={"code": err.code, "field": err.field})


# ---- Pages -------------------------------------------------------------------

@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type(description="A Relay cursor connection (keyset: stable while rows are added).")
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo

    @strawberry.field(description="The nodes of `edges`, for clients that need no cursors.")
    def nodes(self) -> list[T]:
        return [e.node for e in self.edges]

    @classmethod
    def of(cls, page: Page[Any], wrap: Callable[[Any], T]) -> "Connection[T]":
        edges = [Edge(cursor=c, node=wrap(item)) for item, c in page.items]
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
        )


def page_args(
    info: strawberry.Info,
    first: int | None,
    after: str | None,
    last: int | None = None,
    before: str | None = None,
) -> PageArgs:
    settings = ctx(info).settings
    try:
        return PageArgs(first, after, last, before).validated(
            settings.max_page_size, settings.default_page_size
        )
    except DomainError as err:
        raise bad_request(err) from None


async def load_page(loader: Any, key: Any) -> Page[Any]:
    """Load a page; a bad cursor is the client's error and says so."""
    try:
        return cast(Page[Any], await loader.load(key))
    except DomainError as err:
        raise bad_request(err) from None
