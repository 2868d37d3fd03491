"""A request's document, worked out once: the `Operation` every step of a request reads.

The text is parsed once (with the token limit), validated once (graphql-core's rules, our
limits), and each of its definitions is walked once with graphql-core's `TypeInfo`, noting
which fields of which types it selects, the fragments it spreads and where its lists are.
From that, for the operation a request names: whether it only asks about the schema (needs no
token), whether it selects only given fields (the public catalogue), and its cost. Persisted
documents, the introspection gate, the cost limit, the rate limit, Cache-Control and the
engine all read this value; none walks the document again. Operations are kept by text (a
client sends the same few documents), so a request that repeats a document does none of it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    TypeInfo,
    TypeInfoVisitor,
    ValidationRule,
    Visitor,
    get_named_type,
    parse,
    specified_rules,
    validate,
    visit,
)
from graphql.execution import get_argument_values, get_variable_values
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule

INTROSPECTION_FIELDS = frozenset({"__schema", "__type", "__typename"})


class Limits(Protocol):
    """The settings an Operation is checked against (server.settings.Settings has them)."""

    @property
    def max_tokens(self) -> int: ...
    @property
    def max_query_depth(self) -> int: ...
    @property
    def max_aliases(self) -> int: ...
    @property
    def introspection(self) -> bool: ...
    @property
    def default_page_size(self) -> int: ...
    @property
    def max_page_size(self) -> int: ...
    @property
    def max_query_nodes(self) -> int: ...


class NoNulInStrings(ValidationRule):
    """No stored text can hold NUL (PostgreSQL refuses it): refuse it in literals too.
    (Variables are checked where the request body is read.)"""

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        if "\x00" in node.value:
            self.report_error(GraphQLError("String values must not contain NUL (\\u0000).", node))


def _client_error(message: str, code: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


@dataclass
class _List:
    """A field that returns many objects (a cursor connection, or `nodes`), with the lists and
    fragment spreads below it up to the next list: a part of the cost."""

    definition: Any
    node: FieldNode
    lists: list[_List] = field(default_factory=list)
    spreads: list[str] = field(default_factory=list)


@dataclass
class _Definition:
    """What one definition (an operation or a fragment) selects, read in one walk."""

    fields: set[tuple[str, str]] = field(default_factory=set)  # (type, field)
    spreads: set[str] = field(default_factory=set)
    lists: list[_List] = field(default_factory=list)  # at its top, with the spreads beside them
    top_spreads: list[str] = field(default_factory=list)


def _is_list(named: GraphQLNamedType | None, name: str) -> bool:
    """A cursor connection, or `nodes`: the fields whose size a client chooses."""
    if name == "nodes":
        return True
    return isinstance(named, GraphQLObjectType) and "edges" in named.fields and "pageInfo" in named.fields


class _Walk(Visitor):
    def __init__(self, type_info: TypeInfo, into: _Definition) -> None:
        super().__init__()
        self.type_info, self.into = type_info, into
        self.open: list[_List | None] = []  # per field entered: the list it opened, if any

    def _here(self) -> tuple[list[_List], list[str]]:
        for opened in reversed(self.open):
            if opened is not None:
                return opened.lists, opened.spreads
        return self.into.lists, self.into.top_spreads

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        parent, definition = self.type_info.get_parent_type(), self.type_info.get_field_def()
        name = node.name.value
        if parent is not None:
            self.into.fields.add((parent.name, name))
        opened = None
        if definition is not None and not name.startswith("__") and _is_list(get_named_type(definition.type), name):
            opened = _List(definition, node)
            self._here()[0].append(opened)
        self.open.append(opened)

    def leave_field(self, *_: Any) -> None:
        self.open.pop()

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
        self.into.spreads.add(node.name.value)
        self._here()[1].append(node.name.value)


@dataclass(eq=False)
class Operation:
    """One operation of a parsed, valid document (or the errors that stop it)."""

    text: str
    name: str | None
    document: DocumentNode | None = None
    definition: OperationDefinitionNode | None = None
    # A syntax or validation error, or an operation a document with several must name: the
    # answer is these errors and nothing runs.
    errors: list[GraphQLError] = field(default_factory=list)
    # The document has no operation of this name (a request error, not a GraphQL one).
    unknown_name: bool = False
    fields: frozenset[tuple[str, str]] = frozenset()
    # The document's fragments by name (what the engine plans the operation with).
    fragments: dict[str, FragmentDefinitionNode] = field(default_factory=dict)
    _lists: list[_List] = field(default_factory=list)
    _fragments: dict[str, _Definition] = field(default_factory=dict)
    _top_spreads: list[str] = field(default_factory=list)
    _schema: GraphQLSchema | None = None
    _costs: dict[str, int | None] = field(default_factory=dict)
    _items: dict[tuple[str, ...], frozenset[str]] | None = None

    @property
    def kind(self) -> OperationType | None:
        return self.definition.operation if self.definition is not None else None

    @property
    def introspection_only(self) -> bool:
        """A query whose root fields are all `__schema`, `__type` or `__typename`: it asks only
        about the schema."""
        root = {f for t, f in self.fields if t == "Query"}
        return self.kind is OperationType.QUERY and bool(root) and root <= INTROSPECTION_FIELDS

    def selects_only(self, allowed: dict[str, frozenset[str]]) -> bool:
        """Whether this query selects, at any depth, only `allowed` fields (and `__typename`)."""
        return self.kind is OperationType.QUERY and all(
            f == "__typename" or f in allowed.get(t, ()) for t, f in self.fields
        )

    def cost(self, variables: dict[str, Any] | None, limits: Limits) -> int | None:
        """The most objects the operation can return: each list (a cursor connection, or
        `nodes(ids:)`) counts its page size times the sizes of the lists around it, as GitHub's
        node limit does. A page size over the maximum counts as the maximum (asking for it is an
        error of its own). None when the variables do not coerce (execution says why)."""
        try:
            key = json.dumps(variables or {}, sort_keys=True)
        except (TypeError, ValueError):
            key = None
        if key is not None and key in self._costs:
            return self._costs[key]
        cost = self._cost(variables, limits)
        if key is not None:
            if len(self._costs) >= 64:
                self._costs.clear()
            self._costs[key] = cost
        return cost

    def _cost(self, variables: dict[str, Any] | None, limits: Limits) -> int | None:
        assert self._schema is not None and self.definition is not None
        coerced = get_variable_values(self._schema, self.definition.variable_definitions or (), variables or {})
        if isinstance(coerced, list):
            return None

        def size(item: _List) -> int:
            args = get_argument_values(item.definition, item.node, coerced)
            if "ids" in args:
                return len(args["ids"] or ())
            asked = args.get("first", args.get("last"))
            return limits.default_page_size if asked is None else max(0, min(int(asked), limits.max_page_size))

        def under(lists: list[_List], spreads: list[str]) -> int:
            """The cost below one object (costs are linear in the number of objects)."""
            total = sum(s * (1 + under(item.lists, item.spreads)) for item in lists if (s := size(item)))
            return total + sum(under(self._fragments[n].lists, self._fragments[n].top_spreads) for n in spreads)

        try:
            return under(self._lists, self._top_spreads)
        except GraphQLError:  # an argument execution will refuse with its own message
            return None

    def item_fields(self, path: tuple[str, ...]) -> frozenset[str]:
        """The names of the fields asked of the items of the list at `path` (the response keys
        from the root, list indices left out) under `edges { node }` or `nodes`, through
        fragments: what a page brings along for its items. Directives are not looked at, so
        this may name more than runs, never less. Worked out once per document."""
        if self._items is None:
            self._items = {} if self.definition is None else _items(self.definition.selection_set, self.fragments)
        return self._items.get(path, frozenset())

    def too_complex(self, variables: dict[str, Any] | None, limits: Limits) -> GraphQLError | None:
        cost = self.cost(variables, limits)
        if cost is None or cost <= limits.max_query_nodes:
            return None
        return _client_error(
            f"This query could return up to {cost:,} objects; the limit is {limits.max_query_nodes:,}. "
            "Ask for smaller pages (first/last) or fewer nested lists.",
            "QUERY_TOO_COMPLEX", cost=cost, limit=limits.max_query_nodes,
        )


def _items(selections: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]) -> dict[tuple[str, ...], frozenset[str]]:
    """Operation.item_fields for every path of the selection that holds `edges { node }` or `nodes`."""

    def fields(selection_set: SelectionSetNode | None, seen: frozenset[str] = frozenset()) -> list[FieldNode]:
        found: list[FieldNode] = []
        for selection in selection_set.selections if selection_set is not None else ():
            if isinstance(selection, FieldNode):
                found.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                found += fields(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                fragment = fragments.get(selection.name.value)
                if fragment is not None:
                    found += fields(fragment.selection_set, seen | {selection.name.value})
        return found

    items: dict[tuple[str, ...], set[str]] = {}

    def walk(selection_set: SelectionSetNode | None, path: tuple[str, ...]) -> None:
        for node in fields(selection_set):
            if node.selection_set is None:
                continue
            here = (*path, (node.alias or node.name).value)
            for child in fields(node.selection_set):
                if child.name.value == "nodes":
                    items.setdefault(here, set()).update(f.name.value for f in fields(child.selection_set))
                elif child.name.value == "edges":
                    for edge in fields(child.selection_set):
                        if edge.name.value == "node":
                            items.setdefault(here, set()).update(f.name.value for f in fields(edge.selection_set))
            walk(node.selection_set, here)

    walk(selections, ())
    return {path: frozenset(names) for path, names in items.items()}


class Operations:
    """Operations by document text and name, worked out on first use. Kept: at most `remember`
    valid ones, of at most `max_chars` characters of text in all (least recently used go first);
    a document that does not parse or validate is worked out again each time it is sent."""

    def __init__(
        self, schema: GraphQLSchema, limits: Limits, remember: int = 256, max_chars: int = 4_000_000
    ) -> None:
        self.schema, self.limits, self.remember, self.max_chars = schema, limits, remember, max_chars
        self.chars = 0
        self.rules = [
            *specified_rules,
            max_depth_rule(limits.max_query_depth, None),
            max_aliases_rule(limits.max_aliases),
            NoNulInStrings,
            *([] if limits.introspection else [NoSchemaIntrospectionCustomRule]),
        ]
        self.known: OrderedDict[tuple[str, str | None], Operation] = OrderedDict()

    def get(self, text: str, name: str | None) -> Operation:
        key = (text, name)
        found = self.known.get(key)
        if found is not None:
            self.known.move_to_end(key)
            return found
        found = self._make(text, name)
        if found.errors or found.unknown_name:
            return found
        self.known[key], self.chars = found, self.chars + len(text)
        while len(self.known) > self.remember or self.chars > self.max_chars:
            (dropped, _), _ = self.known.popitem(last=False)
            self.chars -= len(dropped)
        return found

    def _make(self, text: str, name: str | None) -> Operation:
        try:
            document = parse(text, max_tokens=self.limits.max_tokens)
        except GraphQLError as syntax_error:
            return Operation(text, name, errors=[syntax_error])
        errors = validate(self.schema, document, self.rules)
        if errors:
            return Operation(text, name, document, errors=list(errors))
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        chosen = [op for op in operations if name is None or (op.name is not None and op.name.value == name)]
        if not chosen:
            return Operation(text, name, document, unknown_name=True)
        if len(chosen) > 1:
            error = _client_error(
                "The document holds several operations: name the one to run in operationName.",
                "OPERATION_NAME_REQUIRED",
            )
            return Operation(text, name, document, chosen[0], errors=[error])
        return self._analysed(Operation(text, name, document, chosen[0]))

    def _analysed(self, operation: Operation) -> Operation:
        assert operation.document is not None and operation.definition is not None
        fragments: dict[str, _Definition] = {}
        own = _Definition()
        for definition in operation.document.definitions:
            if definition is operation.definition or isinstance(definition, FragmentDefinitionNode):
                found = own if definition is operation.definition else _Definition()
                type_info = TypeInfo(self.schema)
                visit(definition, TypeInfoVisitor(type_info, _Walk(type_info, found)))
                if isinstance(definition, FragmentDefinitionNode):
                    fragments[definition.name.value] = found
                    operation.fragments[definition.name.value] = definition
        fields, seen, todo = set(own.fields), set(), list(own.spreads)
        while todo:
            spread = todo.pop()
            if spread not in seen:
                seen.add(spread)
                fields |= fragments[spread].fields
                todo += fragments[spread].spreads
        operation.fields = frozenset(fields)
        operation._lists, operation._top_spreads = own.lists, own.top_spreads
        operation._fragments, operation._schema = fragments, self.schema
        return operation
