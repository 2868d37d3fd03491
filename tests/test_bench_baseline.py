"""The benchmark's baseline (tests/bench/handwritten.py) answers what the graph answers.

`make bench` compares DashboardOverview with a lean hand-written endpoint; the comparison
means something only while both return the same bytes, for every caller: a change to the
graph's output that the baseline does not follow, or a baseline that shows a row the graph
hides (another Partner's, an internal note, a user the caller may not see), fails here,
not silently in the benchmark. On the benchmark's own data (tests/bench/data.py: pages of
100 are full), on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from tests.bench.dashboard import OPERATIONS, documents
from tests.bench.data import prepare
from tests.bench.handwritten import create_app as handwritten_app
from tests.conftest import PG_URL, TODAY, Api, make_api
from tests.pg import pg_admin

QUERY = (Path(__file__).parent.parent / "operations" / "DashboardOverview.graphql").read_text()
# A Partner's owner (the bench rows), another Partner (must see none of them), staff (no Partner).
VIEWERS = ("owner@northwind.example", "owner@bluebird.example", "support@revampd.example")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def bench_api(request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    """The graph on a database with the bench rows (one per backend, shared: read only)."""
    if request.param == "sqlite":
        tmp = tempfile.mkdtemp(prefix="revampd-baseline-")
        url, drop = f"sqlite+aiosqlite:///{tmp}/bench.db", None
    else:
        name = f"revampd_baseline_{uuid.uuid4().hex[:8]}"
        await pg_admin(PG_URL, f'CREATE DATABASE "{name}"')
        url, drop = make_url(PG_URL).set(database=name).render_as_string(hide_password=False), name
    try:
        await prepare(url, TODAY)
        api = await make_api(url)
        yield api
        await api.http.aclose()
        await api.engine.dispose()
    finally:
        if drop:
            await pg_admin(PG_URL, f'DROP DATABASE IF EXISTS "{drop}" WITH (FORCE)')
        else:
            shutil.rmtree(tmp, ignore_errors=True)


async def _handwritten(api: Api, path: str, **headers: str) -> httpx.Response:
    app: Any = handwritten_app(api.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
        try:
            return await http.get(path, headers=headers)
        finally:
            await app.app.state.engine.dispose()


@pytest.mark.parametrize("viewer", VIEWERS)
@pytest.mark.parametrize("first", [10, 100])
async def test_handwritten_dashboard_is_the_graphs_byte_for_byte(bench_api: Api, first: int, viewer: str) -> None:
    graph = await bench_api.post(QUERY, {"first": first}, as_=viewer)
    assert graph.status_code == 200 and b'"errors"' not in graph.content, graph.text
    token = bench_api.tokens[viewer]
    baseline = await _handwritten(bench_api, f"/dashboard?first={first}", Authorization=f"Bearer {token}")
    assert baseline.status_code == 200, baseline.text
    assert baseline.content == graph.content
    assert baseline.headers["content-type"] == graph.headers["content-type"]
    if viewer == VIEWERS[0] and first == 100:  # the bench's page: every list full, and more behind it
        conn = graph.json()["data"]["viewer"]["partner"]["revampdConnection"]
        assert [len(conn[k]["edges"]) for k in ("invoices", "tickets", "payouts")] == [100, 100, 100]
        assert all(conn[k]["pageInfo"]["hasNextPage"] for k in ("invoices", "tickets", "payouts"))


@contextlib.contextmanager
def _statements(engine: Any) -> Iterator[list[str]]:
    """The statements run on `engine` while inside."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)


@pytest.mark.parametrize("viewer", VIEWERS)
@pytest.mark.parametrize("first", [10, 100])
async def test_the_graphs_page_runs_no_more_statements_than_the_handwritten_one(
    bench_api: Api, first: int, viewer: str
) -> None:
    """Each list's items come with the list's own statement (services.pagination.Along), as
    the hand-written page joins them: no list costs the graph a statement more."""
    with _statements(bench_api.engine) as graph:
        assert (await bench_api.post(QUERY, {"first": first}, as_=viewer)).status_code == 200
    app: Any = handwritten_app(bench_api.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
        try:
            with _statements(app.app.state.engine) as handwritten:
                answer = await http.get(f"/dashboard?first={first}",
                                        headers={"Authorization": f"Bearer {bench_api.tokens[viewer]}"})
        finally:
            await app.app.state.engine.dispose()
    assert answer.status_code == 200
    assert len(graph) <= len(handwritten), ([s[:60] for s in graph], [s[:60] for s in handwritten])


async def test_handwritten_dashboard_refuses_what_the_graph_refuses(bench_api: Api) -> None:
    graph = await bench_api.http.post("/graphql", json={"query": QUERY}, headers={"Authorization": "Bearer nope"})
    baseline = await _handwritten(bench_api, "/dashboard", Authorization="Bearer nope")
    assert graph.status_code == 401
    assert (baseline.status_code, baseline.content) == (graph.status_code, graph.content)


async def test_data_layer_endpoint_loads_the_pages_rows(bench_api: Api) -> None:
    token = bench_api.tokens[VIEWERS[0]]
    answer = await _handwritten(bench_api, "/dashboard/loaders?first=100", Authorization=f"Bearer {token}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] >= 300  # three full pages of 100, and the add-ons


def test_bench_runs_every_query_document_of_operations() -> None:
    """`make bench` times every page: a new query document whose required variables the bench
    does not fill (tests/bench/dashboard.py, page_variables) would be left out, and says so."""
    ids = {"Invoice": {"id": "x"}, "Ticket": {"id": "x"}, "PlanChangePreview": {"planId": "x"}}
    docs, skipped = documents(ids)
    manifest = json.loads((OPERATIONS / "manifest.json").read_text())["operations"]
    assert skipped == []
    assert sorted(d.name for d in docs) == sorted(op["name"] for op in manifest if op["type"] == "query")
    assert {d.name for d in docs if not d.takes_first} == {"Invoice", "PlanChangePreview"}
