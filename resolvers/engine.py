"""The plan engine: answers a query without graphql-core's general executor, decided before
anything runs.

graphql-core completes every field of every list item through the same general machinery
(a resolve info, a path, an awaitable check, a task per awaitable); for a dashboard page that
is most of the request. Strawberry lets an extension answer an operation itself: `on_execute`
setting `execution_context.result` (its guide's cached-execution example). This engine does that
for queries:

- **A plan per document.** Before anything runs, the operation is worked out once (and kept
  while its parsed document lives): for each field, and for each object type its value can
  have, the fields to show and how each is read. A field with no resolver of its own (most
  of them) is read with `getattr`, as Strawberry's default resolver would; a resolver with no
  arguments is called without Strawberry's wrapping; leaves are serialized by type. What the
  plan cannot take (mutations, introspection, directives) goes to graphql-core whole; that is
  decided from the document alone, so nothing ever runs twice.
- **Readers compiled per selection.** Each object type a planned selection reaches is read
  by one generated function (`_reader`), as graphql-jit compiles queries: attributes and
  the fields a type says it reads off its row (`schema.base.Read`) in line, resolvers
  without arguments called in line; everything else by the general route.
- **Eager coroutines.** A resolver's coroutine is started at once and usually finishes on the
  spot (its loader already holds the row: a page brings along what its items show). Only one that
  really waits is kept, and those are resumed round by round in the request's own task, each
  once the future it waits on is done (`_awaited`, no task apiece), so loaders batch as under
  graphql-core.
- **Errors as graphql-core reports them.** A resolver that raises, a null where the schema
  promises a value, a value of the wrong type: the error is located at its path and nulls the
  nearest nullable parent, and an error inside a part already nulled is dropped, as graphql-core
  3.3 does. Everything started is awaited before the answer, so no resolver is left running on
  the request's session. `tests/test_executor.py` compares the two document by document.

Internals this module relies on (pyproject.toml bounds strawberry-graphql and graphql-core):
- asyncio: a future's `_asyncio_future_blocking` flag, the protocol between a Task and the
  future it awaits (`_Resume`); Python 3.12's eager tasks would do this publicly.
- Strawberry: its DateTime and Decimal scalar definitions (`strawberry.schema.types.base_scalars`),
  copied with our descriptions (`SCALARS`); the `strawberry-definition` key of a GraphQL field's
  and object type's `extensions` (a type definition's `origin` and `concrete_of`, and how its
  `is_type_of` treats an instance of `origin`: `_exact_class`); a field's
  `base_resolver.wrapped_func` and its `self/parent/root/info_parameter`; `_is_default` on the
  default resolver Strawberry wraps; `Info._raw_info` (made lazily by `LazyInfo`); a Strawberry
  schema's `_schema` (`graphql_schema`); its unexported `StrawberryGraphQLCoreExecutionContext`,
  whose resolve infos both engines give resolvers.
- graphql-core 3.3: `Executor.build_resolve_info` (documented `:meta private:`), and, for the
  operations it answers itself, `Executor.background_futures` (`GraphQLCoreExecutor`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import keyword
from collections.abc import Coroutine
from datetime import datetime
from decimal import Decimal
from types import GeneratorType
from typing import Any, AsyncIterator, Callable, Generator, Iterable, Mapping, Protocol

from graphql import (
    ExecutionResult,
    Executor,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLError,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_operation_ast,
    located_error,
)
from graphql.execution import get_argument_values
from graphql.pyutils import Path, Undefined, inspect
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.types.base_scalars import DateTimeDefinition, DecimalDefinition
from strawberry.types.scalar import ScalarDefinition

from resolvers.caches import ByIdentity
from schema.base import MoneyRead, Read
from schema.context import Context
from schema.live import shared_execution
from schema.loaders import MISSING

DEFINITION = "strawberry-definition"

# Strawberry's DateTime and Decimal, described as this service answers them (for the schema's
# `scalar_overrides`).
DATETIME: ScalarDefinition = dataclasses.replace(
    DateTimeDefinition,
    description="An instant: an RFC 3339 (ISO 8601) date-time string with its UTC offset. The service always "
    "answers in UTC, as \"2025-06-16T18:00:00+00:00\" (with microseconds when the instant has them: "
    "\"2025-06-16T18:00:00.250000+00:00\"). As input, give the offset (\"2025-06-16T20:00:00+02:00\" or "
    "\"...Z\"); a field that takes a time without one says so.",
    specified_by_url="https://datatracker.ietf.org/doc/html/rfc3339",
)
DECIMAL: ScalarDefinition = dataclasses.replace(
    DecimalDefinition,
    description="An exact decimal number as a JSON string, never a float. A money amount has exactly its "
    "currency's decimals (ISO 4217 minor unit): \"1499.00\" USD, \"1500\" JPY, \"12.500\" BHD; a negative "
    "one starts with \"-\" (\"-25.00\"). A percentage has the decimals it is kept with (\"2.50\" = 2.5 %). "
    "Read it with a decimal type (e.g. decimal.js, BigDecimal), not a binary float.",
)
SCALARS: dict[object, ScalarDefinition] = {datetime: DATETIME, Decimal: DECIMAL}

PLAN, GRAPHQL_CORE = "plan", "graphql-core"


def graphql_schema(schema: Any) -> GraphQLSchema:
    """The graphql-core schema of a Strawberry schema (Strawberry keeps it as `_schema`)."""
    found: GraphQLSchema = schema._schema
    return found


class _NotPlanned(Exception):
    """The document asks for something the plan does not do: graphql-core answers it."""


class _Resume:
    """The rest of a coroutine that was started eagerly and is now waiting on `waiting`
    (a future it yielded): awaiting this hands that future to the awaiting task and
    carries on with the coroutine from there, as a task would have."""

    __slots__ = ("coro", "waiting")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting: Any) -> None:
        self.coro, self.waiting = coro, waiting

    def __await__(self) -> Generator[Any, None, Any]:
        coro, waiting = self.coro, self.waiting
        if waiting is not None:
            waiting._asyncio_future_blocking = True  # what the task expects of a future yielded to it
        while True:
            try:
                yield waiting
            except BaseException as exc:  # noqa: BLE001 - thrown into the task: pass it on
                try:
                    waiting = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    waiting = coro.send(None)
                except StopIteration as stop:
                    return stop.value


def _start(value: Any) -> tuple[bool, Any]:
    """(True, result) when an awaitable is already done or finishes without waiting;
    else (False, what is left of it to await). A coroutine that raises at once raises here."""
    if isinstance(value, Coroutine):
        try:
            waiting = value.send(None)
        except StopIteration as stop:
            return True, stop.value
        if waiting is not None:
            # As a task does on receiving it: another coroutine may await the same
            # future (a loader's, for a key asked for twice) before ours is resumed.
            waiting._asyncio_future_blocking = False
        return False, _Resume(value, waiting)
    if isinstance(value, asyncio.Future) and value.done() and not value.cancelled():
        return True, value.result()
    return False, value


async def _awaited(awaitables: list[Any]) -> list[Any]:
    """What each awaitable gives, or the exception it raises: `asyncio.gather(...,
    return_exceptions=True)` without a task for each coroutine that was started eagerly
    (`_Resume`). Such a coroutine is resumed here, in the request's task, once the future
    it waits on is done, as a task of its own would have resumed it; anything else gets its task."""
    values: list[Any] = [None] * len(awaitables)
    inline: dict[int, _Resume] = {}
    tasks: dict[int, asyncio.Future[Any]] = {}
    for i, awaitable in enumerate(awaitables):
        if type(awaitable) is _Resume and isinstance(awaitable.waiting, asyncio.Future):
            inline[i] = awaitable
        else:
            tasks[i] = asyncio.ensure_future(awaitable)
    try:
        while inline or tasks:
            waits = {resume.waiting for resume in inline.values()}
            await asyncio.wait([*waits, *tasks.values()], return_when=asyncio.FIRST_COMPLETED)
            for i, task in list(tasks.items()):
                if task.done():
                    del tasks[i]
                    values[i] = asyncio.CancelledError() if task.cancelled() else task.exception() or task.result()
            for i, resume in list(inline.items()):
                if not resume.waiting.done():
                    continue
                try:
                    waiting = resume.coro.send(None)  # it reads the future's result (or raises its error)
                except StopIteration as stop:
                    del inline[i]
                    values[i] = stop.value
                except (Exception, asyncio.CancelledError) as exc:
                    del inline[i]
                    values[i] = exc
                else:
                    if isinstance(waiting, asyncio.Future):
                        waiting._asyncio_future_blocking = False  # as a task does on receiving it
                        resume.waiting = waiting
                    else:  # a bare yield (asyncio.sleep(0)): a task carries it on
                        del inline[i]
                        tasks[i] = asyncio.ensure_future(_Resume(resume.coro, waiting))
    finally:  # cancelled: nothing is left running on the request's session
        for task in tasks.values():
            task.cancel()
        for resume in inline.values():
            resume.coro.close()
    return values


# What a value of an output type is completed as.
LEAF, LIST, OBJECT, ABSTRACT = range(4)


def _serializer(kind: Any) -> Callable[[Any], Any]:
    """`kind.serialize`, except that an enum's answers are kept by value once worked out (its own
    serialize scans every value for each call): a row holds the value's string, a service the
    Python enum member."""
    serialize: Callable[[Any], Any] = kind.serialize
    if not isinstance(kind, GraphQLEnumType):
        return serialize
    known: dict[Any, Any] = {}

    def enum(value: Any) -> Any:
        found = known.get(value)
        if found is None:
            found = serialize(value)
            if len(known) < 4 * len(kind.values) + 16:  # the members and their strings, no more
                known[value] = found
        return found

    return enum


class _Kind:
    """How to complete the values of one output type."""

    __slots__ = ("tag", "required", "serialize", "item", "type", "cls")

    def __init__(self, engine: Engine, graphql_type: Any) -> None:
        self.required = isinstance(graphql_type, GraphQLNonNull)
        named = graphql_type.of_type if self.required else graphql_type
        self.type = named
        self.serialize: Callable[[Any], Any] = repr  # a leaf's, below
        self.item: _Kind | None = None
        self.cls: type | None = None  # an object type's: a value of exactly this class is of the type
        if isinstance(named, GraphQLList):
            self.tag, self.item = LIST, engine.kind(named.of_type)
        elif isinstance(named, GraphQLObjectType):
            self.tag, self.cls = OBJECT, _exact_class(named)
        elif isinstance(named, GraphQLAbstractType):
            self.tag = ABSTRACT
        else:
            self.tag, self.serialize = LEAF, _serializer(named)

    def named(self) -> Any:
        kind = self
        while kind.item is not None:
            kind = kind.item
        return kind.type


class _Field:
    """How to read one field of one object type, and what to show of its value."""

    __slots__ = (
        "name", "definition", "nodes", "attribute", "resolve", "arguments", "kind", "parent",
        "direct", "pass_self", "pass_source", "pass_info", "strawberry", "children", "null_message", "readers",
        "loaded",
    )

    def __init__(self, engine: Engine, parent: GraphQLObjectType, nodes: list[FieldNode]) -> None:
        self.nodes, self.parent = nodes, parent
        self.attribute = self.direct = self.strawberry = self.loaded = None
        self.children: dict[GraphQLObjectType, list[tuple[str, _Field]]] = {}
        self.readers: dict[GraphQLObjectType, Reader] = {}
        self.name = nodes[0].name.value
        self.null_message = f"Cannot return null for non-nullable field {parent.name}.{self.name}."
        if self.name == "__typename":
            return
        if self.name.startswith("__"):
            raise _NotPlanned("introspection")
        definition = self.definition = parent.fields[self.name]
        self.kind = engine.kind(definition.type)
        self.resolve = definition.resolve
        self.arguments = bool(definition.args)
        field = self.strawberry = (definition.extensions or {}).get(DEFINITION)
        if field is None or field.extensions or getattr(definition.resolve, "_is_default", None) is None:
            return
        resolver = field.base_resolver
        if resolver is None:
            if field.default_resolver is getattr and definition.resolve._is_default:
                self.attribute = field.python_name
        elif not resolver.arguments and not definition.args:
            # What Strawberry's wrapper would do for a resolver with no arguments, less
            # the wrapping: the object as self, root or parent, and the info if asked.
            self.direct = resolver.wrapped_func
            self.loaded = getattr(resolver.wrapped_func, "from_loader", None)
            self.pass_self = resolver.self_parameter is not None
            self.pass_source = [p.name for p in (resolver.parent_parameter, resolver.root_parameter) if p is not None]
            self.pass_info = None if resolver.info_parameter is None else resolver.info_parameter.name


def _exact_class(graphql_type: GraphQLObjectType) -> type | None:
    """The Python class whose instances are values of this object type without asking its
    `is_type_of`: Strawberry's own class for the type (for a generic one, the class it
    specializes, which is what such values are made of, when the type accepts any value).
    An object of a subclass, or one given a `strawberry.cast`, takes the general route."""
    definition = (graphql_type.extensions or {}).get(DEFINITION)
    if definition is None:
        return None
    if definition.concrete_of is not None:
        return definition.concrete_of.origin if graphql_type.is_type_of is None else None
    origin: type = definition.origin
    return origin


# One selection of one object type, compiled: (run, the object, its path, its anchor) -> the
# answer's object. Made once per plan (`_reader`) and kept on the field that selects it.
Reader = Callable[["_Run", Any, "Path | None", "Anchor"], dict[str, Any]]


class _Slow(Exception):
    """A compiled read met what only the general route answers right (it reads the field again)."""


def _unchanged(kind: _Kind) -> str | None:
    """A test on `v` under which the leaf's own serialize would give back `v` unchanged."""
    if kind.type is GraphQLString or kind.type is GraphQLID:
        return "type(v) is str"
    if kind.type is GraphQLBoolean:
        return "type(v) is bool"
    if kind.type is GraphQLInt:
        return "type(v) is int and -2147483648 <= v <= 2147483647"
    return None


def _reader(engine: Engine, owner: _Field, parent: GraphQLObjectType) -> Reader:
    """Compile the fields `owner` selects on `parent` into one function, as graphql-jit does.
    A field read by attribute is read in line: a leaf serialized by its type, an object by its
    own reader. A field its type reads off the row (schema.base.Read) is worked out from the
    row in line, for an object of exactly that type made from a row. Anything else (a
    resolver, a list, a null where none may be, a value of another class, an error) goes
    through `_Run.field`, the general route, which reads it again: reading an attribute or a
    row has no effect to repeat."""
    cls = _exact_class(parent)
    reads = {name: read for name, read in (getattr(cls, "from_row", None) or {}).items() if isinstance(read, Read)}
    reader = _compile(engine, owner, parent, {})
    if any(field.attribute in reads for _, field in owner.children[parent]):
        reader = _compile(engine, owner, parent, reads, [
            "if type(src) is not CLS or (m := src.__dict__.get('model')) is None:",
            "    return PLAIN(run, src, path, anchor)",
        ], CLS=cls, PLAIN=reader)
    owner.readers[parent] = reader
    return reader


def _compile(
    engine: Engine, owner: _Field, parent: GraphQLObjectType, reads: dict[str, Read], start: list[str] = [],  # noqa: B006 - never changed
    **names: Any,
) -> Reader:
    ns: dict[str, Any] = {"Path": Path, "Undefined": Undefined, "_Slow": _Slow, "N": parent.name, "P": parent, **names}
    lines = ["def read(run, src, path, anchor):", *_indent(start), "    r = {}"]
    for i, (key, field) in enumerate(owner.children[parent]):
        ns[f"F{i}"], ns[f"K{i}"] = field, key
        read = reads.get(field.attribute or "")
        found = _read_source(i, field, read, ns) if read is not None else None
        lines += _indent(found if found is not None else _field_source(engine, i, field, parent, ns))
    lines.append("    return r")
    exec(compile("\n".join(lines), f"<reader of {parent.name}>", "exec"), ns)  # noqa: S102 - our own text
    reader: Reader = ns["read"]
    return reader


def _read_source(i: int, field: _Field, read: Read, ns: dict[str, Any]) -> list[str] | None:
    """Lines that set r[K{i}] from the row `m` as `read` says, or None where they cannot."""
    K, kind, general = f"K{i}", field.kind, f"run.field(r, K{i}, F{i}, P, src, path, anchor)"

    def expression(source: str) -> str:
        ns.update({f"X{i}_{name}": value for name, value in read.names.items()})
        return source.format(**{name: f"X{i}_{name}" for name in read.names})

    if kind.tag == LEAF and not isinstance(read, MoneyRead):
        ns[f"S{i}"] = kind.serialize
        serialized = [f"s = S{i}(v)", "if s is None or s is Undefined:", "    raise _Slow", f"r[{K}] = s"]
        return ["try:", f"    v = {expression(read.source)}", *_indent(_leaf_source(i, kind, "raise _Slow", serialized)),
                "except Exception:", f"    {general}"]
    if kind.tag != OBJECT or not isinstance(read, MoneyRead):
        return None
    parts = []  # the Money object's fields, in the order asked
    for j, (key, money_field) in enumerate(field.children[kind.type]):
        ns[f"K{i}_{j}"] = key
        if money_field.name == "__typename":
            parts.append(f"K{i}_{j}: {kind.type.name!r}")
            continue
        ns[f"S{i}_{j}"] = money_field.kind.serialize
        if money_field.name == "amount":
            parts.append(f"K{i}_{j}: S{i}_{j}(D{i}(a, c))")
        elif money_field.name == "currencyCode":
            parts.append(f"K{i}_{j}: S{i}_{j}(c)")
        else:
            return None
    ns[f"D{i}"] = read.decimal
    return [
        "try:",
        f"    a, c = {expression(read.source)}, {read.currency}",
        "    if a is None or c is None:",
        "        raise _Slow",
        f"    r[{K}] = {{{', '.join(parts)}}}",
        "except Exception:",
        f"    {general}",
    ]


def _field_source(engine: Engine, i: int, field: _Field, parent: GraphQLObjectType, ns: dict[str, Any]) -> list[str]:
    """The lines that set r[K{i}] from `src` (see `_reader`)."""
    K, general = f"K{i}", f"run.field(r, K{i}, F{i}, P, src, path, anchor)"
    if field.name == "__typename":
        return [f"r[{K}] = N"]
    attribute, kind = field.attribute, field.kind
    if attribute is not None and attribute.isidentifier() and not keyword.iskeyword(attribute):
        if kind.tag == LEAF:
            ns[f"S{i}"] = kind.serialize
            serialized = [f"s = S{i}(v)", "if s is None or s is Undefined:", "    raise _Slow", f"r[{K}] = s"]
            return ["try:", f"    v = src.{attribute}", *_indent(_leaf_source(i, kind, "raise _Slow", serialized)),
                    "except Exception:", f"    {general}"]
        if kind.tag == OBJECT and kind.cls is not None:
            return ["try:", f"    v = src.{attribute}", "except Exception:", "    v = _Slow", f"h = Path(path, {K}, N)",
                    *_object_source(engine, i, field, ns, general)]
    if field.direct is None or engine.trace is not None:
        return [general]
    if field.loaded is not None:
        return _loaded_source(engine, i, field, ns, general)
    # A resolver without arguments, called as the general route calls it (`_Run.resolve`);
    # what it gives that is not read in line is settled by the general route.
    ns[f"D{i}"] = field.direct
    given = ["src"] if field.pass_self else []
    given += [f"{name}=src" for name in field.pass_source]
    if field.pass_info is not None:
        given.append(f"{field.pass_info}=run.lazy_info(run, F{i}, P, h)")
    settle = f"run.settle(r, {K}, F{i}, h, v, anchor)"
    lines = [f"h = Path(path, {K}, N)", "try:", f"    v = D{i}({', '.join(given)})",
             "except Exception as e:", f"    run.failed(r, {K}, F{i}, h, e)", "else:"]
    if kind.tag == OBJECT and kind.cls is not None:
        return lines + _indent(_object_source(engine, i, field, ns, settle))
    if kind.tag == LEAF:
        return lines + _indent(_leaf_source(i, kind, settle, [settle]))
    return lines + [f"    {settle}"]


def _loaded_source(engine: Engine, i: int, field: _Field, ns: dict[str, Any], general: str) -> list[str]:
    """The lines that set r[K{i}] for a field made by `schema.base.from_loader`, from what its
    loader holds (a page loaded it along); the general route, which loads it, where it holds
    nothing yet (or the key or loader fails)."""
    K, kind, loaded = f"K{i}", field.kind, field.loaded
    assert loaded is not None
    ns.update({f"L{i}": loaded.loader, f"Y{i}": loaded.key, f"T{i}": loaded.then, "MISSING": MISSING})
    settle = f"run.settle(r, {K}, F{i}, h, v, anchor)"
    lines = ["try:", f"    k = Y{i}(src)", f"    v = None if k is None else L{i}(run.loaders).loaded(k)",
             "except Exception:", "    k, v = 0, MISSING"]
    if not kind.required:
        lines += ["if k is None:", f"    r[{K}] = None", "elif v is MISSING:"]
    else:
        lines += ["if k is None or v is MISSING:"]
    lines += [f"    {general}", "else:", f"    h = Path(path, {K}, N)", "    try:", f"        v = T{i}(src, v)",
              "    except Exception as e:", f"        run.failed(r, {K}, F{i}, h, e)", "    else:"]
    if kind.tag == OBJECT and kind.cls is not None:
        return lines + _indent(_indent(_object_source(engine, i, field, ns, settle)))
    if kind.tag == LEAF:
        return lines + _indent(_indent(_leaf_source(i, kind, settle, [settle])))
    return lines + [f"        {settle}"]


def _indent(lines: list[str]) -> list[str]:
    return [f"    {line}" for line in lines]


def _leaf_source(i: int, kind: _Kind, if_null: str, otherwise: list[str]) -> list[str]:
    """Lines that set r[K{i}] from a leaf's value `v`: null, a value its serialize gives back
    unchanged, or `otherwise`. A null where none may be does `if_null`."""
    K, same = f"K{i}", _unchanged(kind)
    return [
        "if v is None:",
        f"    {if_null if kind.required else f'r[{K}] = None'}",
        *([f"elif {same}:", f"    r[{K}] = v"] if same else []),
        "else:",
        *_indent(otherwise),
    ]


def _object_source(engine: Engine, i: int, field: _Field, ns: dict[str, Any], otherwise: str) -> list[str]:
    """Lines that set r[K{i}] from an object value `v` at path `h` by its own reader, or do `otherwise`."""
    K, kind = f"K{i}", field.kind
    ns[f"C{i}"], ns[f"R{i}"] = kind.cls, field.readers.get(kind.type) or _reader(engine, field, kind.type)
    return [
        f"if type(v) is C{i}:",
        "    try:",
        f"        r[{K}] = R{i}(run, v, h, {'anchor' if kind.required else f'(r, {K}, h)'})",
        "    except Exception as e:",
        f"        run.failed(r, {K}, F{i}, h, e)",
        *([] if kind.required else ["elif v is None:", f"    r[{K}] = None"]),
        "else:",
        f"    {otherwise}",
    ]


@functools.cache
def _lazy_info(info_class: type) -> type:
    """Strawberry's Info whose graphql-core resolve info is made only if it is read:
    most resolvers read only `info.context`."""

    class LazyInfo(info_class):  # type: ignore[misc]  # the schema's Info class, known at run time
        def __init__(self, run: _Run, field: _Field, parent: GraphQLObjectType, path: Path) -> None:
            self._run, self._where = run, (field, parent, path)
            self._field = field.strawberry

        @property
        def context(self) -> Any:
            return self._run.executor.context_value

        def __getattr__(self, name: str) -> Any:
            if name != "_raw_info":
                raise AttributeError(name)
            field, parent, path = self._where
            raw = self._raw_info = self._run.executor.build_resolve_info(field.definition, field.nodes, parent, path)
            return raw

    return LazyInfo


class Span(Protocol):
    def end(self) -> None: ...


# Starts a span named for a resolver ("GraphQL Resolving: Type.field"), when tracing is on.
Trace = Callable[[str], Span]


async def _traced(value: Any, span: Span) -> Any:
    try:
        return await value
    finally:
        span.end()


class Engine:
    """The plans of one schema's operations. Made once per schema and shared by every request:
    it holds what the schema and the documents determine, never a request's state."""

    def __init__(self, schema: GraphQLSchema, info_class: type, trace: Trace | None = None) -> None:
        self.schema, self.trace = schema, trace
        self.lazy_info = _lazy_info(info_class)
        self.kinds: dict[int, tuple[Any, _Kind]] = {}
        # By operation node (kept by the parser cache for each document): its plan, or None.
        self.plans: ByIdentity[tuple[_Field | None]] = ByIdentity(256)

    def kind(self, graphql_type: Any) -> _Kind:
        found = self.kinds.get(id(graphql_type))
        if found is None:
            found = self.kinds[id(graphql_type)] = (graphql_type, _Kind(self, graphql_type))
        return found[1]

    def plan(self, operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode]) -> _Field | None:
        """The plan of a query, or None when graphql-core must answer it."""
        if (found := self.plans.get(operation)) is not None:
            return found[0]
        plan: _Field | None = None
        if operation.operation is OperationType.QUERY and not operation.directives:
            root = self.schema.query_type
            assert root is not None
            plan = _Field.__new__(_Field)
            plan.nodes, plan.children, plan.readers, plan.name = [], {}, {}, ""
            try:
                plan.children[root] = self._fields(root, [operation.selection_set], fragments)
            except _NotPlanned:
                plan = None
        return self.plans.put(operation, (plan,))[0]

    def _fields(
        self, parent: GraphQLObjectType, selection_sets: list[SelectionSetNode], fragments: dict[str, FragmentDefinitionNode]
    ) -> list[tuple[str, _Field]]:
        grouped: dict[str, list[FieldNode]] = {}
        for selections in selection_sets:
            self._collect(parent, selections, fragments, grouped, set())
        planned = []
        for key, nodes in grouped.items():
            field = _Field(self, parent, nodes)
            if field.name != "__typename" and field.kind.tag != LEAF:
                named = field.kind.named()
                sets = [n.selection_set for n in nodes if n.selection_set is not None]
                types = self.schema.get_possible_types(named) if isinstance(named, GraphQLAbstractType) else [named]
                field.children = {t: self._fields(t, sets, fragments) for t in types}
            planned.append((key, field))
        return planned

    def _collect(
        self, parent: GraphQLObjectType, selections: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode],
        grouped: dict[str, list[FieldNode]], visited: set[str],
    ) -> None:
        for selection in selections.selections:
            if selection.directives:
                raise _NotPlanned("directives")  # @skip, @include, @defer...
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                grouped.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is None or self._applies(condition.name.value, parent):
                    self._collect(parent, selection.selection_set, fragments, grouped, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in visited:
                    continue
                visited.add(name)
                fragment = fragments[name]
                if self._applies(fragment.type_condition.name.value, parent):
                    self._collect(parent, fragment.selection_set, fragments, grouped, visited)
            else:
                raise _NotPlanned(type(selection).__name__)

    def _applies(self, condition: str, parent: GraphQLObjectType) -> bool:
        wanted = self.schema.get_type(condition)
        if wanted is parent:
            return True
        return isinstance(wanted, GraphQLAbstractType) and self.schema.is_sub_type(wanted, parent)


# Types none of whose values can be awaited (a generator's flags are its own).
_NEVER_AWAITED: set[type[Any]] = set()
# Where a null goes when a field that may not be null turns out null: the nearest nullable
# position above it (its container, key and path), or None for `data` itself.
Anchor = tuple[Any, Any, Path] | None


class _Run:
    """One execution of one planned operation."""

    def __init__(self, engine: Engine, executor: Executor[Any]) -> None:
        self.engine, self.executor = engine, executor
        self.schema = engine.schema
        self.variables = executor.variable_values
        self.is_awaitable = executor.is_awaitable
        self.lazy_info = engine.lazy_info
        self.loaders = getattr(executor.context_value, "loaders", None)
        self.errors: list[GraphQLError] = []
        self.nulled: set[Path | None] = set()
        # The objects the answer holds in lists, its actual cost (server.endpoint), counted
        # as they are made: exact while no error has nulled any of them.
        self.listed = 0
        # (awaitable, kind, field, container, key, path, anchor): what is left to fill in.
        self.pending: list[tuple[Any, _Kind, _Field, Any, Any, Path, Anchor]] = []

    async def result(self, plan: _Field, root_value: Any) -> ExecutionResult:
        root = self.schema.query_type
        assert root is not None
        data: dict[str, Any] | None
        try:
            data = self.object(root, root_value, plan, None, None)
        except GraphQLError as error:
            data = None
            self.add(error, None)
        while self.pending:  # round by round: each may start more
            batch, self.pending = self.pending, []
            values = await _awaited([entry[0] for entry in batch])
            for (_, kind, field, container, key, path, anchor), value in zip(batch, values, strict=True):
                self.fill(kind, field, container, key, path, anchor, value)
        if None in self.nulled:
            data = None
        return ExecutionResult(data, self.errors or None)

    def add(self, error: GraphQLError, path: Path | None) -> None:
        """Record an error that nulled the position at `path`, unless that position is inside
        one already nulled (graphql-core 3.3's rule)."""
        at: Path | None = path
        while at is not None:
            if at in self.nulled:
                return
            at = at.prev
        if None in self.nulled:
            return
        self.nulled.add(path)
        self.errors.append(error)

    def fill(self, kind: _Kind, field: _Field, container: Any, key: Any, path: Path, anchor: Anchor, value: Any) -> None:
        """Complete a value that was awaited, or null what its error nulls."""
        try:
            if isinstance(value, BaseException):
                if not isinstance(value, Exception):
                    raise value
                raise located_error(value, field.nodes, path.as_list())
            done = container[key] = self.complete(kind, field, value, path, (container, key, path) if not kind.required else anchor)
            if type(container) is list and done is not None and (kind.tag == OBJECT or kind.tag == ABSTRACT):
                self.listed += 1
        except Exception as exc:
            error = located_error(exc, field.nodes, path.as_list())
            if not kind.required:
                container[key] = None
                self.add(error, path)
            elif anchor is None:
                self.add(error, None)
            else:
                holder, place, where = anchor
                holder[place] = None
                self.add(error, where)

    def awaitable(self, value: Any) -> bool:
        kind = type(value)
        if kind in _NEVER_AWAITED:
            return False
        if self.is_awaitable(value):
            return True
        if kind is not GeneratorType:
            _NEVER_AWAITED.add(kind)
        return False

    def call(self, field: _Field, parent: GraphQLObjectType, source: Any, here: Path) -> Any:
        trace = self.engine.trace
        if trace is None:
            return self.resolve(field, parent, source, here)
        span = trace(f"GraphQL Resolving: {parent.name}.{field.name}")
        try:
            value = self.resolve(field, parent, source, here)
        except BaseException:
            span.end()
            raise
        if self.awaitable(value):
            return _traced(value, span)
        span.end()
        return value

    def resolve(self, field: _Field, parent: GraphQLObjectType, source: Any, here: Path) -> Any:
        if field.direct is not None:
            kwargs = {name: source for name in field.pass_source}
            if field.pass_info is not None:
                kwargs[field.pass_info] = self.lazy_info(self, field, parent, here)
            return field.direct(source, **kwargs) if field.pass_self else field.direct(**kwargs)
        info = self.executor.build_resolve_info(field.definition, field.nodes, parent, here)
        arguments = get_argument_values(field.definition, field.nodes[0], self.variables) if field.arguments else {}
        resolve = field.resolve or self.executor.field_resolver
        return resolve(source, info, **arguments)

    def object(self, parent: GraphQLObjectType, source: Any, owner: _Field, path: Path | None, anchor: Anchor) -> dict[str, Any]:
        """The fields of `owner`'s value, an object of type `parent` (read by its compiled reader).
        Raises the error of a field that may not be null and is (after recording nothing: its
        nullable parent records it)."""
        reader = owner.readers.get(parent) or _reader(self.engine, owner, parent)
        return reader(self, source, path, anchor)

    def field(
        self, result: dict[str, Any], key: str, field: _Field, parent: GraphQLObjectType, source: Any,
        path: Path | None, anchor: Anchor,
    ) -> None:
        """result[key]: one field of `source`, by the general route (a reader's fallback)."""
        here = Path(path, key, parent.name)
        try:
            value = getattr(source, field.attribute) if field.attribute is not None else self.call(field, parent, source, here)
        except Exception as exc:
            self.failed(result, key, field, here, exc)
        else:
            self.settle(result, key, field, here, value, anchor)

    def settle(self, result: dict[str, Any], key: str, field: _Field, here: Path, value: Any, anchor: Anchor) -> None:
        """result[key]: the field's value as the answer shows it, once it is had (or later)."""
        try:
            if self.awaitable(value):
                done, value = _start(value)
                if not done:
                    result[key] = None
                    self.pending.append((value, field.kind, field, result, key, here, anchor))
                    return
            inner = anchor if field.kind.required else (result, key, here)
            result[key] = self.complete(field.kind, field, value, here, inner)
        except Exception as exc:
            self.failed(result, key, field, here, exc)

    def failed(self, result: dict[str, Any], key: str, field: _Field, here: Path, exc: Exception) -> None:
        """A field's value could not be had: null it, or raise for its nullable parent to."""
        error = located_error(exc, field.nodes, here.as_list())
        if field.kind.required:
            raise error from None
        result[key] = None
        self.add(error, here)

    def complete(self, kind: _Kind, field: _Field, value: Any, path: Path, anchor: Anchor) -> Any:
        """`value` as the answer shows it; raises (an error located by the caller) when it cannot
        be. `anchor` is the nearest nullable position at or above this one."""
        if value is None:
            if kind.required:
                raise TypeError(field.null_message)
            return None
        if isinstance(value, Exception):
            raise value
        tag = kind.tag
        if tag == LEAF:
            serialized = kind.serialize(value)
            if serialized is None or serialized is Undefined:
                raise TypeError(
                    f"Expected `{inspect(kind.type)}.serialize({inspect(value)})` to return non-nullable value,"
                    f" returned: {inspect(serialized)}"
                )
            return serialized
        if tag == LIST:
            return self.list(kind, field, value, path, anchor)
        runtime = kind.type
        if tag == ABSTRACT:
            runtime = self.runtime_type(kind, field, value, path)
        if type(value) is not kind.cls and runtime.is_type_of is not None and runtime.is_type_of(value, None) is not True:
            raise GraphQLError(f"Expected value of type '{runtime.name}' but got: {inspect(value)}.", field.nodes)
        return self.object(runtime, value, field, path, anchor)

    def list(self, kind: _Kind, field: _Field, value: Any, path: Path, anchor: Anchor) -> list[Any]:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise GraphQLError(
                f"Expected Iterable, but did not find one for field '{field.parent.name}.{field.name}'."
            )
        item = kind.item
        assert item is not None
        exact = item.cls  # an item of exactly this class goes straight to its reader
        completed: list[Any] = []
        for i, v in enumerate(value):
            here = Path(path, i, None)
            completed.append(None)
            try:
                if type(v) is exact:
                    completed[i] = self.object(item.type, v, field, here, anchor if item.required else (completed, i, here))
                    continue
                if self.awaitable(v):
                    done, v = _start(v)
                    if not done:
                        self.pending.append((v, item, field, completed, i, here, anchor))
                        continue
                completed[i] = self.complete(item, field, v, here, anchor if item.required else (completed, i, here))
            except Exception as exc:
                error = located_error(exc, field.nodes, here.as_list())
                if item.required:
                    raise error from None
                self.add(error, here)
        if item.tag == OBJECT or item.tag == ABSTRACT:
            self.listed += len(completed) - completed.count(None)
        return completed

    def runtime_type(self, kind: _Kind, field: _Field, value: Any, path: Path) -> GraphQLObjectType:
        abstract = kind.type
        info = self.executor.build_resolve_info(field.definition, field.nodes, field.parent, path)
        resolve_type = abstract.resolve_type or self.executor.type_resolver
        name = resolve_type(value, info, abstract)
        runtime = self.schema.get_type(name) if isinstance(name, str) else None
        if not isinstance(runtime, GraphQLObjectType) or runtime not in field.children:
            raise GraphQLError(
                f"Abstract type '{abstract}' must resolve to an Object type at runtime for field"
                f" '{field.parent.name}.{field.name}' with value {inspect(value)}, received '{inspect(name)}'.",
                field.nodes,
            )
        return runtime


class GraphQLCoreExecutor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, for what the plan does not take, answering only once nothing it
    started is still running. When an error nulls a parent, graphql-core answers at once and
    leaves the parent's other fields running in the background; they still use the request's
    session, which must not be closed under them (on PostgreSQL that failed the whole request)."""

    def execute_operation(self, serially: bool | None = None) -> Any:
        if self.operation.operation is OperationType.SUBSCRIPTION:
            # An event's answer, shared by the viewer's subscriptions asking the same (schema.live).
            key = (id(self.operation), repr(sorted(self.variable_values.coerced.items())))

            async def executed() -> Any:
                result = self._settled(serially)
                return await result if self.is_awaitable(result) else result

            shared = shared_execution(key, executed)
            if shared is not None:
                return shared
        return self._settled(serially)

    def _settled(self, serially: bool | None) -> Any:
        result = super().execute_operation(serially)
        if not self.is_awaitable(result) and not self.background_futures:
            return result

        async def settled() -> Any:
            value = await result if self.is_awaitable(result) else result
            while self.background_futures:
                await asyncio.wait(list(self.background_futures))
            return value

        return settled()


def plan_extension(engine_of: Callable[[], Engine], executed: Callable[[str | None, str], None]) -> type[SchemaExtension]:
    """The extension that answers planned queries (made per request by Strawberry); `executed`
    is told which engine answered each operation."""

    class PlanEngine(SchemaExtension):
        async def on_execute(self) -> AsyncIterator[None]:
            ec = self.execution_context
            engine = engine_of()
            document = ec.graphql_document
            assert document is not None
            known = getattr(ec.context, "operation", None)  # the request's (resolvers.operation)
            if known is not None and known.definition is not None:
                operation, fragments = known.definition, known.fragments
            else:
                operation = get_operation_ast(document, ec.operation_name)
                assert operation is not None  # Strawberry refuses a document without it before this
                fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
            plan = engine.plan(operation, fragments)
            executed(ec.operation_name, GRAPHQL_CORE if plan is None else PLAN)
            if plan is not None:
                executor = StrawberryGraphQLCoreExecutionContext.build(
                    engine.schema, document, ec.root_value, ec.context, ec.variables, ec.operation_name
                )
                if isinstance(executor, list):
                    ec.result = ExecutionResult(None, executor)
                else:
                    run = _Run(engine, executor)
                    ec.result = await run.result(plan, ec.root_value)
                    if not run.errors and isinstance(ec.context, Context):
                        ec.context.objects_in_lists = run.listed
            yield

    return PlanEngine


__all__ = ["SCALARS", "Engine", "GraphQLCoreExecutor", "graphql_schema", "plan_extension"]
