"""A faster path through graphql-core for queries that resolve without an error.

graphql-core completes every field of every list item through the same general
machinery: a resolve info, a path, an awaitable check, a task per awaitable. For a
dashboard page that is most of the request. This executor runs a query the short
way:

- a field with no resolver of its own (most of them: the data is on the object) is
  read with `getattr`, as Strawberry's default resolver would, with no info or path;
- a resolver's coroutine is started at once and usually finishes on the spot: its
  loader already holds the row (pages prime what their items show). Only one that
  really waits for the database is handed to a task, and those are gathered per
  round, so loaders still batch as they do under graphql-core.

It handles only the success path. Anything else (a resolver raising, a null where
the schema promises a value, a type check failing, introspection, mutations,
subscriptions, directives) gives up and runs the operation again through
graphql-core, which then produces exactly its own data, errors and paths. A query
reads and never writes, so running it again changes nothing; `tests/test_executor.py`
compares the two executors document by document.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine
from types import GeneratorType
from typing import Any, Callable, Generator, Iterable, Mapping

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    InlineFragmentNode,
    OperationType,
    SelectionSetNode,
)
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from resolvers.caches import ByIdentity

DEFINITION = "strawberry-definition"


class _GiveUp(Exception):
    """This operation is not for the short path: run it through graphql-core."""


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
    else (False, what is left of it to await)."""
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


# What is worked out once per type is kept on the type object itself, so that it
# lives exactly as long as the schema that holds the type.
_SERIALIZE, _KIND = "_revampd_serialize", "_revampd_kind"


def _serializer(kind: GraphQLScalarType | GraphQLEnumType) -> Callable[[Any], Any]:
    """`kind.serialize`, except that a Strawberry enum's members, and the strings that are their
    values (what a row holds, e.g. a currency code), are looked up in a table made once (its
    own serialize scans every value for each call)."""
    found: Callable[[Any], Any] | None = getattr(kind, _SERIALIZE, None)
    if found is None:
        serialize = kind.serialize
        members = getattr(kind, "wrapped_cls", None)
        if members is None:
            found = serialize
        else:
            names = {member: serialize(member) for member in members}
            names.update({member.value: names[member] for member in members if isinstance(member.value, str)})

            def found(value: Any) -> Any:
                name = names.get(value) if type(value) is members or type(value) is str else None
                return serialize(value) if name is None else name

        setattr(kind, _SERIALIZE, found)
    return found


# What a value of an output type is completed as.
LEAF, LIST, OBJECT, ABSTRACT = range(4)


class _Kind:
    """How to complete the values of one output type (made once per type)."""

    __slots__ = ("tag", "required", "serialize", "item", "type")

    def __init__(self, graphql_type: Any) -> None:
        self.required = isinstance(graphql_type, GraphQLNonNull)
        named = graphql_type.of_type if self.required else graphql_type
        self.type = named
        self.serialize: Callable[[Any], Any] | None = None
        self.item: _Kind | None = None
        if isinstance(named, (GraphQLScalarType, GraphQLEnumType)):
            self.tag, self.serialize = LEAF, _serializer(named)
        elif isinstance(named, GraphQLList):
            self.tag, self.item = LIST, _kind(named.of_type)
        elif isinstance(named, GraphQLObjectType):
            self.tag = OBJECT
        elif isinstance(named, GraphQLAbstractType):
            self.tag = ABSTRACT
        else:
            raise _GiveUp


def _kind(graphql_type: Any) -> _Kind:
    found: _Kind | None = getattr(graphql_type, _KIND, None)
    if found is None:
        found = _Kind(graphql_type)
        setattr(graphql_type, _KIND, found)
    return found


class _Field:
    """How to read one field of one object type, worked out once per operation."""

    __slots__ = (
        "name", "definition", "nodes", "attribute", "resolve", "arguments", "kind", "leaf",
        "direct", "pass_self", "pass_source", "pass_info", "strawberry", "children",
    )

    def __init__(self, parent: GraphQLObjectType | None, nodes: list[Any]) -> None:
        self.nodes = nodes
        self.attribute = self.direct = self.leaf = None
        # The fields of its value, by the value's runtime type.
        self.children: dict[GraphQLObjectType, list[tuple[str, _Field]]] = {}
        if parent is None:  # the operation itself
            self.name = ""
            return
        self.name = nodes[0].name.value
        if self.name == "__typename":
            return
        if self.name.startswith("__"):
            raise _GiveUp  # introspection
        definition = parent.fields[self.name]
        self.definition = definition
        self.kind = _kind(definition.type)
        if self.kind.tag == LEAF:
            self.leaf = self.kind
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
            self.pass_self = resolver.self_parameter is not None
            self.pass_source = [p.name for p in (resolver.parent_parameter, resolver.root_parameter) if p is not None]
            self.pass_info = None if resolver.info_parameter is None else resolver.info_parameter.name


@functools.cache
def _lazy_info(info_class: type[Any]) -> type[Any]:
    """Strawberry's Info whose graphql-core resolve info is made only if it is read:
    most resolvers read only `info.context`."""

    class LazyInfo(info_class):  # type: ignore[misc, valid-type]
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


# Types none of whose values can be awaited (a generator's flags are its own).
_NEVER_AWAITED: set[type[Any]] = set()


class _Run:
    """One execution of one operation on the short path."""

    def __init__(self, executor: StrawberryGraphQLCoreExecutionContext) -> None:
        self.executor = executor
        self.schema = executor.schema
        self.variables = executor.variable_values
        self.is_awaitable = executor.is_awaitable
        strawberry_schema = executor.schema._strawberry_schema  # type: ignore[attr-defined]
        self.lazy_info = _lazy_info(strawberry_schema.config.info_class)
        # (awaitable, container, key, field, path): what is left to fill in.
        self.pending: list[tuple[Any, Any, Any, _Field, Path]] = []

    def awaitable(self, value: Any) -> bool:
        kind = type(value)
        if kind in _NEVER_AWAITED:
            return False
        if self.is_awaitable(value):
            return True
        if kind is not GeneratorType:
            _NEVER_AWAITED.add(kind)
        return False

    # ---- fields ---------------------------------------------------------------

    def fields_of(self, parent: GraphQLObjectType, field: _Field) -> list[tuple[str, _Field]]:
        """The fields to run on an object of type `parent` that `field` returned, by response key."""
        grouped: dict[str, list[FieldNode]] = {}
        for node in field.nodes:
            if node.selection_set is not None:
                self._collect(parent, node.selection_set, grouped, set())
        found = field.children[parent] = [(k, _Field(parent, group)) for k, group in grouped.items()]
        return found

    def _collect(
        self, parent: GraphQLObjectType, selections: SelectionSetNode,
        grouped: dict[str, list[FieldNode]], visited: set[str],
    ) -> None:
        for selection in selections.selections:
            if selection.directives:
                raise _GiveUp  # @skip, @include, @defer...
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                grouped.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is None or self._applies(condition.name.value, parent):
                    self._collect(parent, selection.selection_set, grouped, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in visited:
                    continue
                visited.add(name)
                fragment = self.executor.fragment_definitions[name]
                if self._applies(fragment.type_condition.name.value, parent):
                    self._collect(parent, fragment.selection_set, grouped, visited)
            else:
                raise _GiveUp

    def _applies(self, condition: str, parent: GraphQLObjectType) -> bool:
        wanted = self.schema.get_type(condition)
        if wanted is parent:
            return True
        return isinstance(wanted, GraphQLAbstractType) and self.schema.is_sub_type(wanted, parent)

    def object(self, parent: GraphQLObjectType, source: Any, owner: _Field, path: Path | None) -> dict[str, Any]:
        result: dict[str, Any] = {}
        fields = owner.children.get(parent)
        if fields is None:
            fields = self.fields_of(parent, owner)
        for key, field in fields:
            if field.attribute is not None:
                value = getattr(source, field.attribute)
                leaf = field.leaf
                if leaf is None:
                    result[key] = self.complete(field.kind, field, value, Path(path, key, parent.name))
                elif value is None:
                    if leaf.required:
                        raise _GiveUp
                    result[key] = None
                else:
                    serialized = leaf.serialize(value)  # type: ignore[misc]
                    if serialized is None or serialized is Undefined:
                        raise _GiveUp
                    result[key] = serialized
                continue
            if field.name == "__typename":
                result[key] = parent.name
                continue
            here = Path(path, key, parent.name)
            if field.direct is not None:
                kwargs = {name: source for name in field.pass_source}
                if field.pass_info is not None:
                    kwargs[field.pass_info] = self.lazy_info(self, field, parent, here)
                value = field.direct(source, **kwargs) if field.pass_self else field.direct(**kwargs)
            else:
                info = self.executor.build_resolve_info(field.definition, field.nodes, parent, here)
                arguments = (
                    get_argument_values(field.definition, field.nodes[0], self.variables) if field.arguments else {}
                )
                resolve = field.resolve or self.executor.field_resolver
                value = resolve(source, info, **arguments)
            if self.awaitable(value):
                done, value = _start(value)
                if not done:
                    result[key] = None
                    self.pending.append((value, result, key, field, here))
                    continue
            result[key] = self.complete(field.kind, field, value, here)
        return result

    # ---- values ---------------------------------------------------------------

    def complete(self, kind: _Kind, field: _Field, value: Any, path: Path) -> Any:
        if value is None:
            if kind.required:
                raise _GiveUp  # graphql-core reports it, and nulls the parent
            return None
        if isinstance(value, Exception):
            raise _GiveUp
        tag = kind.tag
        if tag == LEAF:
            serialized = kind.serialize(value)  # type: ignore[misc]
            if serialized is None or serialized is Undefined:
                raise _GiveUp
            return serialized
        if tag == LIST:
            if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
                raise _GiveUp
            item = kind.item
            assert item is not None
            completed = []
            for i, v in enumerate(value):
                if self.awaitable(v):
                    raise _GiveUp
                completed.append(self.complete(item, field, v, Path(path, i, None)))
            return completed
        runtime = kind.type
        if tag == ABSTRACT:
            info = self.executor.build_resolve_info(field.definition, field.nodes, self._parent(path), path)
            resolve_type = runtime.resolve_type or self.executor.type_resolver
            runtime = resolve_type(value, info, kind.type)
            if isinstance(runtime, str):
                runtime = self.schema.get_type(runtime)
            if not isinstance(runtime, GraphQLObjectType) or not self.schema.is_sub_type(kind.type, runtime):
                raise _GiveUp
        if runtime.is_type_of is not None and runtime.is_type_of(value, None) is not True:
            raise _GiveUp  # Strawberry's checks read only the value
        return self.object(runtime, value, field, path)

    def _parent(self, path: Path) -> GraphQLObjectType:
        while path.typename is None:  # a list index: the field is further up
            assert path.prev is not None
            path = path.prev
        parent = self.schema.get_type(path.typename)
        assert isinstance(parent, GraphQLObjectType)
        return parent

    # ---- waiting --------------------------------------------------------------

    async def finish(self) -> None:
        """Await what is left, round by round (each round may start more)."""
        while self.pending:
            batch, self.pending = self.pending, []
            values = await asyncio.gather(*(aw for aw, *_ in batch), return_exceptions=True)
            if any(isinstance(v, BaseException) for v in values):
                raise _GiveUp
            for (_, container, key, field, path), value in zip(batch, values, strict=True):
                container[key] = self.complete(field.kind, field, value, path)

    async def settle(self) -> None:
        """Let what was started finish before graphql-core starts again: never cancel
        it, as a loader's future it waits on would be cancelled for graphql-core too,
        and never close it, as it may be in the middle of a statement."""
        while self.pending:
            batch, self.pending = self.pending, []
            await asyncio.gather(*(aw for aw, *_ in batch), return_exceptions=True)


# Plans by operation (its syntax tree, which the parser cache keeps for each document).
_PLANS: ByIdentity[tuple[dict[str, Any], _Field]] = ByIdentity(256)


class FastExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, with queries taking the short path when they can."""

    def execute_operation(self, serially: bool | None = None) -> Any:
        general: Callable[[], Any] = lambda: self._settled(  # noqa: E731
            StrawberryGraphQLCoreExecutionContext.execute_operation(self, serially)
        )
        if (
            self.operation.operation is not OperationType.QUERY
            or serially
            or (self.middleware_manager is not None and self.middleware_manager.middlewares)
            or self.abort_signal is not None
            or self.operation.directives
        ):
            return general()
        root = self.schema.query_type
        assert root is not None
        run = _Run(self)

        async def again() -> Any:
            await run.settle()
            result = general()
            return await result if self.is_awaitable(result) else result

        try:
            data = run.object(root, self.root_value, self._plan(), None)
        except Exception:
            return again() if run.pending else general()
        if not run.pending:
            return self.build_response(data)

        async def rest() -> Any:
            try:
                await run.finish()
            except Exception:
                return await again()
            return self.build_response(data)

        return rest()

    def _plan(self) -> _Field:
        """The operation's plan: which fields each object shows and how each is read,
        made on first use and kept while the (parsed and cached) document lives."""
        operation, fragments = self.operation, self.fragment_definitions
        found = _PLANS.get(operation)
        if found is not None and found[0].keys() == fragments.keys() and all(
            found[0][name] is fragment for name, fragment in fragments.items()
        ):
            return found[1]
        return _PLANS.put(operation, (dict(fragments), _Field(None, [operation])))[1]

    def _settled(self, result: Any) -> Any:
        """The result once no resolver is still running. When an error nulls a parent,
        graphql-core answers at once and leaves the parent's other fields running in
        the background; they still use the request's session, which must not be
        closed under them (on PostgreSQL that failed the whole request)."""
        if not self.is_awaitable(result) and not self.background_futures:
            return result

        async def settled() -> Any:
            value = await result if self.is_awaitable(result) else result
            while self.background_futures:
                await asyncio.wait(list(self.background_futures))
            return value

        return settled()

