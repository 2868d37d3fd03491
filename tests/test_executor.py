"""The plan engine (resolvers.engine) answers exactly what graphql-core answers.

Every document in operations/ runs through two apps on the same database, one with
the plan engine and one with graphql-core alone, as each kind of user and at several
page sizes (and the next page, from the first page's cursor): the responses must be
equal byte for byte, and the plan must not cost more statements (it keeps the
loaders' batching). Queries with errors on the way, directives, introspection and
abstract types are compared the same way, and a query whose later field fails runs
each resolver once.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from pathlib import Path
from typing import Any, AsyncIterator, Callable, cast

import pytest
from graphql import FieldNode, NameNode, SelectionSetNode, Visitor, parse, print_ast, visit
from sqlalchemy import event, func, select
from strawberry.types import get_object_definition

from db import models as m
from resolvers.query import Query
from schema.base import to_global_id
from tests import golden
from tests.conftest import Api, Databases, make_api

OPERATIONS = [golden.OPERATIONS / f"{name}.graphql" for name in golden.documents()]  # the queries
USERS = ["owner@northwind.example", "member@northwind.example", "owner@bluebird.example", "support@revampd.example"]
SIZES = [None, 1, 3, 10, 100]


@pytest.fixture(scope="module")
async def pair(databases: Databases) -> AsyncIterator[tuple[Api, Api]]:
    url = await databases.clone()
    fast, general = await make_api(url), await make_api(url, plan=False)
    yield fast, general
    for api in (fast, general):
        await api.http.aclose()
        await api.engine.dispose()


async def _answer(api: Api, body: dict[str, Any], user: str) -> tuple[int, bytes, int]:
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(api.engine.sync_engine, "before_cursor_execute", count)
    try:
        response = await api.http.post(
            "/graphql", json=body, headers={"Authorization": f"Bearer {api.tokens[user]}"}
        )
    finally:
        event.remove(api.engine.sync_engine, "before_cursor_execute", count)
    return response.status_code, response.content, statements


async def _same(pair: tuple[Api, Api], body: dict[str, Any], user: str) -> dict[str, Any]:
    fast, general = pair
    got = await _answer(fast, body, user)
    want = await _answer(general, body, user)
    assert got[:2] == want[:2], f"{body.get('variables')} as {user}:\nshort path: {got[1]!r}\ngraphql-core: {want[1]!r}"
    assert got[2] <= want[2], f"the short path ran {got[2]} statements, graphql-core {want[2]}"
    return dict(json.loads(got[1]))


def _end_cursors(value: Any) -> dict[str, str]:
    """Each list's endCursor in a response, by the name of the field holding the list."""
    found: dict[str, str] = {}
    if isinstance(value, dict):
        for key, v in value.items():
            if isinstance(v, dict) and isinstance(v.get("pageInfo"), dict) and v["pageInfo"].get("endCursor"):
                found.setdefault(key, v["pageInfo"]["endCursor"])
            found.update({k: c for k, c in _end_cursors(v).items() if k not in found})
    elif isinstance(value, list):
        for v in value:
            found.update({k: c for k, c in _end_cursors(v).items() if k not in found})
    return found


@pytest.mark.parametrize("document", OPERATIONS, ids=lambda p: p.stem)
@pytest.mark.parametrize("user", USERS)
async def test_every_operation_answers_the_same_on_both_paths(
    pair: tuple[Api, Api], document: Path, user: str
) -> None:
    query = document.read_text()
    for size in SIZES:
        variables = {} if size is None else {"first": size}
        if size is not None and "$first" not in query:
            continue
        body = await _same(pair, {"query": query, "variables": variables}, user)
        if "$after" in query and size is not None:
            for cursor in list(_end_cursors(body.get("data")).values())[:2]:
                await _same(pair, {"query": query, "variables": {**variables, "after": cursor}}, user)


ODD_QUERIES = [
    # fragments, aliases, __typename, a list of objects through a named fragment
    """
    fragment Money on Money { amount currencyCode }
    query { viewer { __typename me: user { id name } partner { ... on Partner { id name }
      revampdConnection { invoices(first: 3) { edges { node { __typename id total { ...Money } due: amountDue { ...Money } } }
        nodes { number } } } } } }
    """,
    # an interface: node(id) and nodes(ids), with one ID of another Partner and one that is no ID
    """
    query { n: node(id: "SW52b2ljZToyOQ") { __typename id ... on Invoice { number } ... on Ticket { title } }
      ns: nodes(ids: ["SW52b2ljZToy", "VGlja2V0OjE", "bm90aGluZw", "SW52b2ljZTo5OTk5"]) { __typename id
        ... on Invoice { number status } ... on Ticket { title assignedTo { name } } } }
    """,
    # a bad cursor deep in the tree: an error with its path, the rest answered
    """
    query { viewer { partner { revampdConnection { invoices(first: 2) { edges { node { id } } }
      tickets(first: 2, after: "bm90IGEgY3Vyc29y") { edges { node { id } } } } } } }
    """,
    # a page too large: an error naming the argument
    "query { viewer { partner { revampdConnection { invoices(first: 100000) { edges { node { id } } } } } } }",
    # directives and introspection: graphql-core's path
    """
    query($with: Boolean = false) { viewer { user { id name @include(if: $with) } } __schema { queryType { name } } }
    """,
    "query { __typename viewer { roles } }",
    # __typename where a row's fields are read in line (an object of the row, and its Money)
    """
    query { viewer { partner { revampdConnection { invoices(first: 2) { nodes { __typename number
      total { __typename amount } amountDue { currencyCode t: __typename } } } } } } }
    """,
    # enums from plain strings (CurrencyCode), counts, and the objects keyed by their connection
    """
    query { viewer { id partner { revampdConnection { currencyCode invoices(first: 2) { totalCount nodes { total { currencyCode } } }
      tickets(first: 2) { totalCount nodes { messages(first: 1) { totalCount } } }
      subscription { id } usage { id } payoutPreference { id } projectedNextInvoice { id }
      wallet { id entries(first: 1) { totalCount } } } } } }
    """,
]


@pytest.mark.parametrize("query", ODD_QUERIES)
@pytest.mark.parametrize("user", ["owner@northwind.example", "support@revampd.example"])
async def test_partial_and_failing_queries_answer_the_same(pair: tuple[Api, Api], query: str, user: str) -> None:
    await _same(pair, {"query": query}, user)


def _with_typenames(query: str) -> str:
    """The document with `__typename` selected in every selection set (as Apollo Client
    sends it), so that an answer names the type of each object in it."""

    class AddTypename(Visitor):
        def enter_selection_set(self, node: SelectionSetNode, *_: Any) -> SelectionSetNode:
            typename = FieldNode(name=NameNode(value="__typename"), arguments=(), directives=())
            return SelectionSetNode(selections=(*node.selections, typename))

    return print_ast(visit(parse(query), AddTypename()))


def _kinds(value: Any, path: str = "") -> set[str]:
    """The kinds of objects in an answer: where each sits (its path, list positions left
    out) and its type, e.g. `...entries.edges.node.source: Invoice`."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "__typename" in value:
            found.add(f"{path}: {value['__typename']}")
        for key, v in value.items():
            found |= _kinds(v, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for v in value:
            found |= _kinds(v, path)
    return found


SMALL, LARGE = (1, 3, 10, 20), (50, 100)


@pytest.mark.parametrize("document", [p for p in OPERATIONS if "$first" in p.read_text()], ids=lambda p: p.stem)
async def test_statements_per_operation_do_not_grow_with_the_page_size(pair: tuple[Api, Api], document: Path) -> None:
    """A page of a hundred costs no more statements than the pages of up to twenty, but
    for one per kind of nested data that first shows on it: every list's items are read
    in the list's statements, never one by one (an N+1 costs a statement per item).

    A kind is a type at a place in the answer (a wallet entry's `source` that is a
    Payout, a `createdBy` User, ...): each nested field reads its rows through a loader,
    one statement for all the rows of a kind, so a page that shows a kind the smaller
    pages do not (which depends on the demo data's date) may cost that one statement
    more. The kinds come from the same document with `__typename` added everywhere."""
    fast, _ = pair
    query, typed = document.read_text(), _with_typenames(document.read_text())
    counts: dict[int, int] = {}
    kinds: dict[int, set[str]] = {}
    variables: dict[str, Any] = {}
    if "$id" in query:  # the Ticket page: the user's ticket with the longest conversation
        ((ticket,),) = await fast.rows(
            select(m.TicketMessage.ticket_id).join(m.Ticket, m.Ticket.id == m.TicketMessage.ticket_id)
            .join(m.Connection, m.Connection.id == m.Ticket.connection_id)
            .join(m.User, m.User.partner_id == m.Connection.partner_id).where(m.User.email == USERS[0])
            .group_by(m.TicketMessage.ticket_id).order_by(func.count().desc(), m.TicketMessage.ticket_id).limit(1))
        variables["id"] = to_global_id("Ticket", ticket)
    for size in (*SMALL, *LARGE):
        status, body, statements = await _answer(fast, {"query": query, "variables": {**variables, "first": size}},
                                                 USERS[0])
        assert (status, json.loads(body).get("errors")) == (200, None), body
        counts[size] = statements
        status, body, _ = await _answer(fast, {"query": typed, "variables": {**variables, "first": size}}, USERS[0])
        assert status == 200
        kinds[size] = _kinds(json.loads(body).get("data"))
    # Small pages may show fewer kinds of nested data (and so need fewer statements).
    base = max(counts[s] for s in SMALL)
    seen = set().union(*(kinds[s] for s in SMALL))
    for size in LARGE:
        new = sorted(kinds[size] - seen)
        assert counts[size] <= base + len(new), (
            f"{document.stem}: {counts[size]} statements for a page of {size}, more than the most for a page "
            f"of up to {SMALL[-1]} ({base}) plus one per kind of nested data new on it ({len(new)}: {new}); "
            f"statements by page size {counts}, kinds by page size {dict((s, len(k)) for s, k in kinds.items())}"
        )


async def test_a_field_that_fails_after_others_ran_runs_each_resolver_once(
    pair: tuple[Api, Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later field's error does not run the query again: the resolvers that ran before it
    (here `viewer`'s) ran once, the error names the failing field, and what they read is in the
    answer."""
    query = """query OnceEach { viewer {
      read: partner { revampdConnection { invoices(first: 2) { edges { node { id number } } } } }
      failed: partner { revampdConnection { tickets(first: 2, after: "bm90IGEgY3Vyc29y") { edges { node { id } } } } } } }"""
    (viewer,) = [f for f in get_object_definition(Query, strict=True).fields if f.name == "viewer"]
    resolver = viewer.base_resolver
    assert resolver is not None
    calls: list[str] = []
    resolve = cast("Callable[..., Any]", resolver.wrapped_func)  # a plain function: no static or class method

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append("viewer")
        return resolve(*args, **kwargs)

    monkeypatch.setattr(resolver, "wrapped_func", counted)
    for api in pair:
        calls.clear()
        response = await api.post(query, as_=USERS[0])
        body = response.json()
        assert [e["path"] for e in body["errors"]] == [["viewer", "failed", "revampdConnection", "tickets"]]
        assert body["data"]["viewer"]["failed"] is None
        assert len(body["data"]["viewer"]["read"]["revampdConnection"]["invoices"]["edges"]) == 2
        assert calls == ["viewer"]


async def _paused(resolve: Any, *args: Any, **kwargs: Any) -> Any:
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    loop.call_soon(future.set_result, None)
    await future  # waits on a future, then
    await asyncio.sleep(0)  # yields to the loop bare: no future to wait on
    value = resolve(*args, **kwargs)
    return await value if inspect.isawaitable(value) else value


async def _failed_later(resolve: Any, *args: Any, **kwargs: Any) -> Any:
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    loop.call_soon(future.set_exception, RuntimeError("the backend went away"))
    await future  # fails once the loop has run on


@pytest.mark.parametrize("wrap, name", [(_paused, "Paused"), (_failed_later, "FailedLater")])
async def test_a_resolver_that_yields_to_the_loop_or_fails_later_answers_the_same(
    pair: tuple[Api, Api], monkeypatch: pytest.MonkeyPatch, wrap: Any, name: str
) -> None:
    """The plan resumes a waiting resolver itself rather than in a task of its own: one that
    yields without a future, or whose future fails, is answered as graphql-core answers it."""
    query = f"query {name} {{ viewer {{ id partner {{ name }} }} }}"
    (viewer,) = [f for f in get_object_definition(Query, strict=True).fields if f.name == "viewer"]
    resolver = viewer.base_resolver
    assert resolver is not None
    resolve = resolver.wrapped_func

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        return await wrap(resolve, *args, **kwargs)

    monkeypatch.setattr(resolver, "wrapped_func", wrapped)
    body = await _same(pair, {"query": query}, USERS[0])
    if wrap is _paused:
        assert body["data"]["viewer"]["partner"]["name"] == "Northwind Agency"
    else:
        assert body["data"] is None  # viewer may not be null
        assert [(e["message"], e["path"]) for e in body["errors"]] == [("Internal server error.", ["viewer"])]
