"""GraphiQL as a user meets it: its files come from the service itself (each matching the hash
its manifest and the page name), its docs need no token, and in development the page opens
with a working demo token. The browser itself: tests/test_graphiql_browser.py."""

from __future__ import annotations

import json
import re
from typing import Any, AsyncIterator, cast

import httpx
import pytest

from server.app import create_app
from server.graphiql import IMMUTABLE, assets, sri
from server.settings import Settings
from tests.conftest import Api, Databases, make_api

OWNER = "owner@northwind.example"
REAL_SECRET = "a-real-secret-set-by-the-operator-0123456789"
SCHEMA = "{ __schema { queryType { name } } }"


def _config(html: str) -> dict[str, Any]:
    found = re.search(r'<script id="graphiql-config" type="application/json">(.*?)</script>', html, re.S)
    assert found, "the page holds no GraphiQL configuration"
    return cast("dict[str, Any]", json.loads(found.group(1)))


async def _page(http: httpx.AsyncClient) -> httpx.Response:
    return await http.get("/graphql", headers={"Accept": "text/html"})


async def test_every_file_the_page_loads_is_served_here_and_matches_its_hash(ro_api: Api) -> None:
    page = await _page(ro_api.http)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    # Nothing from another host: every src and href is relative to the service (or inline data).
    urls = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert urls and all(not re.match(r"[a-z]+://|//", u) for u in urls if not u.startswith("data:")), urls
    for asset in assets():
        tag = re.search(rf'(?:src|href)="graphiql/{re.escape(asset.path)}" integrity="([^"]+)"', page.text)
        assert tag, f"the page does not load {asset.path} with its integrity"
        response = await ro_api.http.get(f"/graphiql/{asset.path}")
        assert response.status_code == 200, asset.path
        assert sri(response.content) == asset.integrity == tag.group(1), f"{asset.path} does not match its hash"
        assert response.headers["content-type"] == (
            "text/css; charset=utf-8" if asset.path.endswith(".css") else "text/javascript; charset=utf-8"
        )
        assert response.headers["cache-control"] == IMMUTABLE
    assert {a.package for a in assets()} == {"graphiql", "graphql-ws", "react", "react-dom"}
    assert (await ro_api.http.get("/graphiql/graphiql@0.0.1/graphiql.min.js")).status_code == 404


async def test_in_development_the_page_holds_a_demo_token_that_works(ro_api: Api) -> None:
    assert ro_api.settings.uses_dev_secret
    config = _config((await _page(ro_api.http)).text)
    assert OWNER in config["query"]
    headers = json.loads(config["headers"])
    answer = await ro_api.http.post("/graphql", json={"query": config["query"]}, headers=headers)
    assert answer.status_code == 200 and not answer.json().get("errors"), answer.text
    assert answer.json()["data"]["viewer"]["user"]["email"] == OWNER


@pytest.fixture
async def real_secret(databases: Databases) -> AsyncIterator[Api]:
    api = await make_api(await databases.clone(), jwt_secret=REAL_SECRET)
    yield api
    await api.http.aclose()
    await api.engine.dispose()


async def test_with_a_real_secret_the_page_holds_no_token(real_secret: Api) -> None:
    assert not real_secret.settings.uses_dev_secret
    page = await _page(real_secret.http)
    assert page.status_code == 200
    assert _config(page.text)["headers"] is None
    assert "Bearer ey" not in page.text


async def test_graphiql_off_serves_neither_the_page_nor_its_files() -> None:
    app = create_app(Settings(graphiql=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert (await _page(http)).status_code == 404
        assert (await http.get(f"/graphiql/{assets()[0].path}")).status_code == 404


# ---- Introspection without a token ----------------------------------------------------------

INTROSPECTION_ONLY = [
    ({"query": SCHEMA}, "__schema"),
    ({"query": "{ __typename }"}, "__typename"),
    ({"query": 'query Q($n: String!) { __type(name: $n) { name } }', "variables": {"n": "Viewer"}}, "__type"),
    ({"query": "query { ...Meta } fragment Meta on Query { __schema { types { name } } ... on Query { __typename } }"},
     "__schema"),
    ({"query": "query A { __typename } query B { viewer { roles } }", "operationName": "A"}, "__typename"),
]

NOT_ONLY = [
    "{ __typename viewer { roles } }",
    "query { ...Meta } fragment Meta on Query { __typename ... on Query { viewer { roles } } }",
    "query { ...A } fragment A on Query { ...B } fragment B on Query { plans { code } }",
    "mutation { __typename }",
    "query A { __typename } query B { viewer { roles } }",  # no operationName: not one operation
    "{ __schema { ",  # not GraphQL
]


@pytest.mark.parametrize("body,field", INTROSPECTION_ONLY)
async def test_introspection_needs_no_token_nor_a_database(body: dict[str, Any], field: str) -> None:
    # A database that cannot be opened: the answer must not need one.
    app: Any = create_app(Settings(database_url="sqlite+aiosqlite:////nonexistent/dir/revampd.db"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.post("/graphql", json=body)
    assert response.status_code == 200, response.text
    assert field in response.json()["data"], response.json()
    assert app.app.state.revampd.engine is None, "a database engine was made"


@pytest.mark.parametrize("query", NOT_ONLY)
async def test_anything_else_still_needs_a_token(ro_api: Api, query: str) -> None:
    response = await ro_api.http.post("/graphql", json={"query": query, "operationName": None})
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_introspection_off_is_refused_with_or_without_a_token(ro_api: Api) -> None:
    app: Any = create_app(Settings(database_url=ro_api.settings.database_url, introspection=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert (await http.post("/graphql", json={"query": SCHEMA})).status_code == 401
        with_token = await http.post("/graphql", json={"query": SCHEMA},
                                     headers={"Authorization": f"Bearer {ro_api.tokens[OWNER]}"})
        assert "introspection has been disabled" in with_token.json()["errors"][0]["message"].lower()
    await app.app.state.revampd.db.dispose()


async def test_introspection_by_get_needs_no_token(ro_api: Api) -> None:
    response = await ro_api.http.get("/graphql", params={"query": SCHEMA})
    assert response.status_code == 200
    assert response.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
