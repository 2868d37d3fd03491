"""Every document in operations/ answers as its golden says, field for field.

The goldens (tests/golden/<Document>.json) hold the answers of each document, as
several users, at several page sizes, on later pages through cursors and, for the
documents that take an id, for ids the user may see and ids it may not. The same
database is rebuilt here (migrated, seeded for tests.golden.FIXED_DATE), once per
backend: SQLite always, PostgreSQL too when TEST_DATABASE_URL is set; both must
give the goldens exactly. No field is normalized: no answer depends on the wall
clock (see tests/golden/__init__.py).

After an intended change of what a document returns, or a new document, run
`python -m tests.golden capture` and review the diff of the goldens.
"""

from __future__ import annotations

import uuid
from typing import Any, AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from db import models as m
from schema.base import to_global_id
from tests import golden
from tests.conftest import PG_URL, _pg_admin, make_api
from tests.test_observability import Collector

DOCUMENTS = sorted(golden.documents())


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[
        tuple[str, str]]:
    """(backend, url) of the demo database seeded for FIXED_DATE, built once per backend."""
    if request.param == "sqlite":
        url = golden.sqlite_url(str(tmp_path_factory.mktemp("golden")))
        await golden.build_database(url)
        yield "sqlite", url
        return
    name = f"revampd_golden_{uuid.uuid4().hex[:8]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        await golden.build_database(url)
        yield "postgres", url
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=["tracing off", "tracing on"])
async def answers(
    database: tuple[str, str], request: pytest.FixtureRequest
) -> AsyncIterator[tuple[str, dict[str, list[dict[str, Any]]]]]:
    """Every case of every document, run once per backend, with tracing off and on (spans sent
    to a collector): the same engine answers the same either way."""
    backend, url = database
    if request.param == "tracing off":
        yield backend, await golden.run_all(url)
        return
    collector = Collector()
    try:
        results = await golden.run_all(url, otel_endpoint=collector.url + "/")
        resolving = [s.name for s in collector.spans() if s.name.startswith("GraphQL Resolving: ")]
        assert "GraphQL Resolving: Query.viewer" in resolving, "the plan engine made no resolver spans"
        yield f"{backend}, {request.param}", results
    finally:
        collector.close()


def test_every_document_has_a_golden_and_every_golden_a_document() -> None:
    missing = sorted(set(DOCUMENTS) - golden.golden_names())
    stale = sorted(golden.golden_names() - set(DOCUMENTS))
    assert not missing, (
        f"no golden answers for operations/{missing}: run `{golden.CAPTURE_COMMAND}` "
        "(after adding its cases in tests/golden/__init__.py) and commit tests/golden/")
    assert not stale, f"goldens without a document in operations/: {stale}; run `{golden.CAPTURE_COMMAND}`"


@pytest.mark.parametrize("name", DOCUMENTS)
def test_document_answers_as_its_golden(answers: tuple[str, dict[str, list[dict[str, Any]]]], name: str) -> None:
    backend, results = answers
    assert golden.golden_path(name).exists(), (
        f"operations/{name}.graphql has no golden: run `{golden.CAPTURE_COMMAND}` and commit tests/golden/")
    assert name in results, f"no cases ran for operations/{name}.graphql"
    difference = golden.compare_cases(name, golden.load_golden(name), results[name])
    assert difference is None, f"[{backend}] {difference}"


@pytest.mark.parametrize("plan", [True, False], ids=["short path", "graphql-core"])
async def test_a_field_error_beside_running_siblings_answers_200(database: tuple[str, str], plan: bool) -> None:
    """An error that nulls a parent while the parent's other fields are still reading:
    the request waits for them before it gives its session back (it used to close the
    session under them: a 500 on PostgreSQL, a leaked connection on SQLite)."""
    backend, url = database
    api = await make_api(url, plan=plan)
    try:
        (pk,), = await api.rows(select(m.Plan.id).where(m.Plan.retired.is_(True)).order_by(m.Plan.id).limit(1))
        document = golden.documents()["PlanChangePreview"]
        answers = []
        for _ in range(20):
            response = await api.post(document, {"planId": to_global_id("Plan", pk)}, as_=golden.OWNERS[0])
            answers.append((response.status_code, response.json()["errors"][0]["extensions"]["code"],
                            api.engine.sync_engine.pool.checkedout()))
    finally:
        await api.http.aclose()
        await api.engine.dispose()
    assert answers == [(200, "PLAN_RETIRED", 0)] * 20, f"[{backend}] {answers}"
