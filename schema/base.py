"""Shapes every part of the graph shares: Node and global IDs, Money, pages, errors."""

from __future__ import annotations

import base64
import binascii
import functools
import importlib
import pkgutil
from decimal import Decimal
from enum import Enum
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Awaitable,
    Callable,
    ClassVar,
    Generic,
    Mapping,
    Optional,
    Self,
    TypeVar,
    cast,
)

import strawberry
from graphql import GraphQLError
from strawberry.types import get_object_definition

from schema.loaders import MISSING
from services import money, visibility
from services.errors import DESCRIPTIONS, DomainError, ErrorCode
from services.pagination import Page, PageArgs

if TYPE_CHECKING:
    from schema.context import Context
    from schema.partners import RevampdConnection

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def ctx(info: strawberry.Info) -> "Context":
    return cast("Context", info.context)


# Strawberry types the decorator `strawberry.field(description=...)` returns as Any
# (strawberry-graphql/strawberry#1929), which leaves every resolver it decorates unchecked:
# these are the same decorators, typed to keep the resolver's signature.
def field(description: str) -> Callable[[F], F]:
    """`@field(description=...)`."""
    return cast("Callable[[F], F]", strawberry.field(description=description))


def mutation(description: str) -> Callable[[F], F]:
    """`@mutation(description=...)`."""
    return cast("Callable[[F], F]", strawberry.mutation(description=description))


def subscription(description: str) -> Callable[[F], F]:
    """`@subscription(description=...)`."""
    return cast("Callable[[F], F]", strawberry.subscription(description=description))


# ---- Global IDs --------------------------------------------------------------

# A page shows the same objects request after request: remember the IDs of the last
# few thousand (about 2 MiB) rather than encode them again each time.
@functools.lru_cache(maxsize=16384)
def to_global_id(type_name: str, pk: int) -> strawberry.ID:
    raw = f"{type_name}:{pk}".encode()
    return strawberry.ID(base64.urlsafe_b64encode(raw).decode().rstrip("="))


# Longer than any type name and an 18-digit key encode to; anything longer is not ours.
MAX_ID_LENGTH = 64


def from_global_id(gid: str) -> tuple[str, int] | None:
    """(type name, primary key), or None for anything that is not one of our IDs.

    Only the exact text `to_global_id` makes is accepted, so each object has one ID
    (no padding, no leading zeros, no non-ASCII digits)."""
    if len(gid) > MAX_ID_LENGTH:
        return None
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
        raise DomainError(ErrorCode.NOT_FOUND, f"No {expected} with this ID.", field)
    return parsed[1]


@strawberry.interface(description="An object with a global ID, fetchable with `node(id:)`.")
class Node:
    """`class Invoice(Node, model=m.Invoice)`: a Node type names the model whose rows it
    shows, and reads them only through the caller's loaders, which apply that model's
    rule in services.visibility. A model without a rule cannot back a Node type."""

    id: strawberry.ID = strawberry.field(
        description="The object's global ID: opaque, stable, and unique across every type. "
        "Pass it to `node(id:)` or to a mutation."
    )
    node_model: ClassVar[type[Any]]
    # Each Node type's own: the object of one of its rows (some take more than the row).
    of: ClassVar[Callable[..., Any]]

    def __init_subclass__(cls, model: type[Any] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if model is None:
            raise TypeError(f"{cls.__name__} must name its model: class {cls.__name__}(Node, model=...)")
        if not visibility.has_rule(model):
            raise TypeError(f"{cls.__name__} shows {model.__name__}, which has no rule in services/visibility.py")
        cls.node_model = model

    @classmethod
    async def load(cls, info: strawberry.Info, pk: int | None) -> Self | None:
        """The object, if it exists and the caller may see it."""
        if pk is None:
            return None
        row = await ctx(info).loaders.by_id(cls.node_model).load(pk)
        return None if row is None else await cls.from_model(info, row)

    @classmethod
    async def from_model(cls, info: strawberry.Info, row: Any) -> Self:
        """Wrap a row the caller may see; a type that needs more than the row (its
        currency) reads it here."""
        return cast(Self, cls.of(row))


def now_or_later(loader: Any, key: Any, then: Callable[[Any], T]) -> T | Awaitable[T]:
    """then(the loader's value for key): at once when the loader holds it (a page
    primed it), else an awaitable that loads it first. A resolver returning this is
    answered without a coroutine in the common case; graphql-core awaits the rest. (Such
    a resolver declares T, the field's type to Strawberry: `# type: ignore[return-value]`.)"""
    value = loader.loaded(key)
    if value is not MISSING:
        return then(value)

    async def later() -> T:
        return then(await loader.load(key))

    return later()


class FromLoader:
    """What a field made by `from_loader` reads: `then(obj, loader(loaders).load(key(obj)))`,
    said so that the plan engine (resolvers.engine) reads it in line when the loader holds it."""

    __slots__ = ("loader", "key", "then")

    def __init__(self, loader: Callable[[Any], Any], key: Callable[[Any], Any], then: Callable[[Any, Any], Any]) -> None:
        self.loader, self.key, self.then = loader, key, then


def from_loader(
    loader: Callable[[Any], Any], key: Callable[[Any], Any], description: str
) -> Callable[[Callable[[Any, Any], T]], T]:
    """A field worked out from one value a loader holds: decorates `then(self, value)`, where
    value is what `loader(loaders)` has for `key(self)`; a null key is a null field. Its
    resolver answers at once when a page has loaded the value (`now_or_later`)."""

    def decorate(then: Callable[[Any, Any], T]) -> T:
        def resolve(self: Any, info: strawberry.Info) -> Any:
            k = key(self)
            if k is None:
                return None
            return now_or_later(loader(ctx(info).loaders), k, lambda value: then(self, value))

        resolve.__name__, resolve.__qualname__, resolve.__module__ = then.__name__, then.__qualname__, then.__module__
        # Strawberry reads the type from these, in then's module (the strings of its annotations).
        resolve.__annotations__ = {"info": "strawberry.Info", "return": then.__annotations__["return"]}
        resolve.from_loader = FromLoader(loader, key, then)  # type: ignore[attr-defined]  # read by the engine
        return cast(T, strawberry.field(description=description)(resolve))

    return decorate


def by_id(model: type) -> Callable[[Any], Any]:
    """`from_loader`'s loader of `model`'s visible rows by id."""
    return lambda loaders: loaders.by_id(model)


@functools.cache
def node_types() -> dict[str, type[Node]]:
    """Every Node type by name: Node's subclasses once each module of `schema` is imported."""
    import schema

    for module in pkgutil.iter_modules(schema.__path__):
        importlib.import_module(f"schema.{module.name}")
    found: dict[str, type[Node]] = {}
    todo = Node.__subclasses__()
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        found[get_object_definition(cls, strict=True).name] = cls
    return found


async def resolve_node(info: strawberry.Info, gid: str) -> Node | None:
    parsed = from_global_id(gid)
    if parsed is None or parsed[0] not in node_types():
        return None
    return await node_types()[parsed[0]].load(info, parsed[1])


# ---- Types read off a row -----------------------------------------------------

class _FromRow:
    """A field worked out from the object the first time it is read, then kept on the
    object (whose own attribute then hides this descriptor)."""

    __slots__ = ("name", "make")

    def __init__(self, name: str, make: Callable[[Any], Any]) -> None:
        self.name, self.make = name, make

    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.make(obj)
        return value


_READY: set[type[Any]] = set()


class Read:
    """A field of a FromRow type worked out from its row alone, said so that the plan engine
    (resolvers.engine) can read it in line: `value(obj)` is the field's Python value (what the
    descriptor keeps), and `source` says the same as a Python expression over the row `m`
    (and the object `src`), whose `{name}`s stand for `names`. A leaf's expression may give
    what its type serializes (an enum's value string for the enum)."""

    __slots__ = ("value", "source", "names")

    def __init__(self, value: Callable[[Any], Any], source: str, **names: Any) -> None:
        self.value, self.source, self.names = value, source, names

    def __call__(self, obj: Any) -> Any:
        return self.value(obj)


class MoneyRead(Read):
    """A Money field: `source` gives its minor units and `currency` its currency code;
    `decimal(minor, currency)` the amount (services.money.to_decimal)."""

    __slots__ = ("currency",)
    decimal = staticmethod(money.to_decimal)

    def __init__(self, value: Callable[[Any], Any], source: str, currency: str, **names: Any) -> None:
        super().__init__(value, source, **names)
        self.currency = currency


def column(name: str, enum: type[Enum] | None = None) -> Read:
    """The row's column `name` (as the member of `enum` when it names one; null stays null)."""
    if enum is None:
        return Read(lambda s: getattr(s.model, name), f"m.{name}")
    as_member = enum

    def value(s: Any) -> Any:
        raw = getattr(s.model, name)
        return None if raw is None else as_member(raw)

    return Read(value, f"m.{name}")


def global_id(type_name: str) -> Read:
    """The global ID of the row, as a `type_name`."""
    return Read(lambda s: to_global_id(type_name, s.model.id), "{gid}({type}, m.id)", gid=to_global_id, type=type_name)


def money_from(minor: str | Callable[[Any], int], currency: str = "currency_code", *, of_object: bool = False) -> MoneyRead:
    """Money of the row: `minor` units (a column's name, or a function of the row) in the
    currency of the row's column `currency` (or, `of_object`, the object's attribute)."""
    get_minor = (lambda row: getattr(row, minor)) if isinstance(minor, str) else minor
    source = f"m.{minor}" if isinstance(minor, str) else "{minor}(m)"
    if of_object:
        return MoneyRead(lambda s: Money.of(get_minor(s.model), getattr(s, currency)), source, f"src.{currency}",
                         minor=minor)
    return MoneyRead(lambda s: Money.of(get_minor(s.model), getattr(s.model, currency)), source, f"m.{currency}",
                     minor=minor)


class FromRow:
    """A type shown from one row, made in no time: `made(model=row, ...)` keeps the
    row, and each field in `from_row` is worked out from the object the first time it
    is read (then kept), so a page of a hundred pays only for the fields a query
    selects. A field left out of `from_row` must be given to `made`, and one in it may
    not be (the engine reads a `Read` off the row, not off the object)."""

    from_row: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    @classmethod
    def made(cls, **given: Any) -> Self:
        if cls not in _READY:
            cls._ready()
        if not given.keys().isdisjoint(cls.from_row):
            raise TypeError(f"{cls.__name__}: {sorted(given.keys() & cls.from_row.keys())} are read off the row")
        obj = object.__new__(cls)
        obj.__dict__.update(given)
        return obj

    @classmethod
    def _ready(cls) -> None:
        """Put each field of `from_row` on the class as a descriptor, once Strawberry and
        dataclasses are done with it (a class attribute there would be a default)."""
        for name, make in cls.from_row.items():
            if name in cls.__dict__ and not isinstance(cls.__dict__[name], _FromRow):
                raise TypeError(f"{cls.__name__}.{name} has a default; a field read off the row cannot")
            setattr(cls, name, _FromRow(name, make))
        _READY.add(cls)


# Said of each object type without an id.
VALUE = " A value (no id): a client caches it within the object holding it."


# ---- Scalars and shared enums -------------------------------------------------

E = TypeVar("E", bound=Enum)


def described_enum(cls: type[E], name: str, description: str, values: Mapping[Any, str]) -> None:
    """`cls` as a GraphQL enum with a description for each value (every member needs one)."""
    missing = [member.name for member in cls if member not in values]
    if missing:
        raise TypeError(f"{name} has values without a description: {', '.join(missing)}")
    strawberry.enum(cls, name=name, description=description)
    for value in cls.__strawberry_definition__.values:  # type: ignore[attr-defined]  # set by strawberry.enum
        value.description = values[cls(value.value)]


UserErrorCode = ErrorCode
described_enum(
    UserErrorCode, "UserErrorCode",
    "Why a mutation (or a query's argument) was refused: stable codes to branch on; `message` says the "
    "same for a person.",
    DESCRIPTIONS,
)

CurrencyCode = money.Currency
described_enum(
    CurrencyCode, "CurrencyCode",
    "An ISO 4217 currency code, among those Revampd keeps amounts in. Its amounts have the currency's "
    "decimals (its minor unit).",
    {code: f"{name}: {places} decimal{'' if places == 1 else 's'}." for code, (name, places) in money.CURRENCIES.items()},
)


# ---- Money -------------------------------------------------------------------

@strawberry.type(description="An amount of money; `amount` is a decimal string, never a float." + VALUE)
class Money:
    amount: Decimal = strawberry.field(
        description='The amount in the currency\'s precision, as a string: "1499.00" USD, "1500" JPY; '
        "negative for a debit where the field says so."
    )
    # The code as the row holds it (a str); the engine answers it as the enum's value.
    currency_code: str = strawberry.field(
        description="The currency of `amount` (ISO 4217).", graphql_type=CurrencyCode
    )

    @classmethod
    def of(cls, minor: int, currency: str) -> "Money":
        return cls(amount=money.to_decimal(minor, currency), currency_code=currency)


# ---- Errors ------------------------------------------------------------------

@strawberry.type(description="A business rule refused the input; `field` is the path to it." + VALUE)
class UserError:
    field: list[str] | None = strawberry.field(
        description='The path to the input field at fault, from the mutation\'s argument: ["input", "planId"]; '
        "null when the refusal is not about one field."
    )
    code: UserErrorCode = strawberry.field(description="Why, as a stable code a client can branch on.")
    message: str = strawberry.field(description="Why, in English, fit to show the user.")

    @classmethod
    def of(cls, err: DomainError) -> "UserError":
        field = ["input", *err.field] if err.field else None
        return cls(field=field, code=err.code, message=err.message)


# The fields every mutation's input and payload share.
def user_errors_field() -> Any:
    return strawberry.field(
        description="Why the request was refused, one entry per problem (FORBIDDEN when your roles may not do "
        "this); empty when it succeeded. When there are any, nothing was changed."
    )


def client_mutation_id_field() -> Any:
    return strawberry.field(
        default=None, description="Any string you choose (Relay): the payload returns it unchanged."
    )


def client_mutation_id_echo() -> Any:
    return strawberry.field(description="The input's clientMutationId, unchanged; null when none was sent.")


# `input: MutationInput[UpgradePlanInput]`: every mutation's one argument.
MutationInput = Annotated[
    T, strawberry.argument(description="What to change; each field is described on the input type.")
]




def changed_connection(connection_id: Callable[[Any], int | None], what: str) -> Any:
    """A payload's `revampdConnection`: the connection whose `what` the mutation changed, as it now
    stands, so that a client's cache updates those fields from the payload (its ID is on it).
    `connection_id(payload)` says which; null when refused."""

    async def resolve(
        root: strawberry.Parent[Any], info: strawberry.Info
    ) -> Optional[Annotated["RevampdConnection", strawberry.lazy("schema.partners")]]:
        from schema.partners import RevampdConnection

        return await RevampdConnection.load(info, connection_id(root))

    return strawberry.field(
        resolver=resolve,
        description=f"The connection as it now stands, with its {what}; null when refused.",
    )


def bad_request(err: DomainError) -> GraphQLError:
    """For queries (not mutations): a bad argument is a top-level error naming it."""
    return GraphQLError(err.message, extensions={"code": err.code, "field": err.field})


# ---- Pages -------------------------------------------------------------------

@strawberry.type(
    description="Where a page sits in its list (Relay). It has no id: clients cache it with its connection."
)
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="True when more items follow this page: ask for them with `after: endCursor`."
    )
    has_previous_page: bool = strawberry.field(
        description="True when items come before this page: ask for them with `last` and `before: startCursor`."
    )
    start_cursor: str | None = strawberry.field(
        description="The cursor of the first item; null when the page is empty."
    )
    end_cursor: str | None = strawberry.field(description="The cursor of the last item; null when the page is empty.")


@strawberry.type(description="An item of a page, with its cursor.")
class Edge(FromRow, Generic[T]):
    cursor: str = strawberry.field(
        description="Opaque: pass it as `after` or `before` to page on from this item. It stays valid while "
        "items are added."
    )
    node: T = strawberry.field(description="The item.")
    from_row = {"cursor": lambda s: s.page.cursor(s.row)}


@strawberry.type(description="A Relay cursor connection (keyset: stable while rows are added).")
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(
        description="The items of this page, each with its cursor, in the list's order."
    )
    page_info: PageInfo = strawberry.field(description="Whether more pages follow or come before, and their cursors.")
    total: strawberry.Private[Callable[[], Awaitable[int]] | None]

    @field(description="The nodes of `edges`, for clients that need no cursors.")
    def nodes(self) -> list[T]:
        return [e.node for e in self.edges]

    @field(
        description="How many items the whole list holds, on every page, with the same filter (and only "
        "those the viewer may see); counted only when asked for."
    )
    async def total_count(self) -> int:
        return 0 if self.total is None else await self.total()

    @classmethod
    def of(cls, page: Page[Any], wrap: Callable[[Any], T]) -> "Connection[T]":
        rows = page.rows
        edges: list[Edge[T]] = [Edge.made(node=wrap(row), page=page, row=row) for row in rows]
        return cls(
            edges=edges,
            total=page.total,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
        )


# The arguments of every connection field (checked by page_args).
First = Annotated[int | None, strawberry.argument(
    description="Return the first n items after `after`: 0 up to MAX_PAGE_SIZE (100 unless configured); more is an "
    "INVALID_PAGINATION error. Without `first` or `last`, a page holds DEFAULT_PAGE_SIZE items (20 unless configured)."
)]
After = Annotated[str | None, strawberry.argument(
    description="Return the items after this cursor (a page's `endCursor` or an edge's `cursor`)."
)]
Last = Annotated[int | None, strawberry.argument(
    description="Return the last n items before `before`: 0 up to MAX_PAGE_SIZE; not together with `first`."
)]
Before = Annotated[str | None, strawberry.argument(
    description="Return the items before this cursor (a page's `startCursor` or an edge's `cursor`)."
)]


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


def item_fields(info: strawberry.Info) -> set[str]:
    """The names of the fields asked of a page's items (under `edges { node }` or `nodes`),
    through fragments, as the request's Operation worked them out (resolvers.operation); may
    name more than will run, never less."""
    path = tuple(key for key in info.path.as_list() if isinstance(key, str))
    return set(ctx(info).operation.item_fields(path))


async def prime(wanted: set[str], page: Page[Any], loads: dict[str, Callable[[list[Any]], Any]]) -> None:
    """Load for all of a page's rows at once what its items will ask their loaders for:
    `loads` maps an item field (of those `wanted`: item_fields) to the loads it needs
    (given the rows). The items then find their data loaded and resolve without waiting,
    one task for the page instead of one per item and field. (What a page's own statement
    can bring along, it does: services.pagination.Along.)"""
    rows = page.rows
    if rows:
        # One after the other (they share the request's connection anyway), each once.
        for load in dict.fromkeys(load for name, load in loads.items() if name in wanted):
            await load(rows)


async def load_page(loader: Any, key: Any) -> Page[Any]:
    """Load a page; a bad cursor is the client's error and says so."""
    try:
        return cast(Page[Any], await loader.load(key))
    except DomainError as err:
        raise bad_request(err) from None
