"""GraphiQL in headless Chromium, with the network off: a real uvicorn serves the page and its
files, every request to another host than 127.0.0.1 is aborted, and the page must render, show
the Query type's fields in its docs and run a query (tests/js/graphiql.mjs drives the browser).

Once as in production (a real JWT secret: the docs load without a token, the user puts one in
the Headers pane) and once as in development (the page opens with a demo token and just runs).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, AsyncIterator, Iterator

import pytest
from sqlalchemy import select

from db import models as m
from tests.conftest import Api, Databases, make_api
from tests.node import chromium, node
from tests.served import served

OWNER = "owner@northwind.example"  # the demo user of the development page
MEMBER = "member@northwind.example"
REAL_SECRET = "a-real-secret-set-by-the-operator-0123456789"


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """The app served by uvicorn (as `revampd-bff serve` runs it) on a free port; its GraphQL URL."""
    with served(app) as port:
        yield f"http://127.0.0.1:{port}/graphql"


@pytest.fixture
async def database(databases: Databases) -> AsyncIterator[str]:
    yield await databases.clone()


async def _names(api: Api) -> dict[str, str]:
    return {email: name for email, name in await api.rows(select(m.User.email, m.User.name))}


def _graphiql(url: str, token: str | None = None) -> dict[str, Any]:
    """What the browser saw: the Query fields in the docs, the Headers pane, the result."""
    browser = chromium()
    done = node("graphiql.mjs", browser, url, *([token] if token else []), timeout=120)
    assert done.returncode == 0, f"GraphiQL in Chromium failed:\n{done.stdout}\n{done.stderr}"
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["aborted"] == [], f"the page asked for something from another host: {seen['aborted']}"
    assert seen["problems"] == [], seen["problems"]
    assert {"viewer", "plans", "supportTickets"} <= set(seen["fields"]), seen["fields"]
    return seen


async def test_graphiql_offline_with_a_real_secret_shows_docs_without_a_token_and_runs_a_query(
    database: str,
) -> None:
    api = await make_api(database, jwt_secret=REAL_SECRET)
    names = await _names(api)
    await api.http.aclose()
    with serving(api.app) as url:
        seen = _graphiql(url, api.tokens[MEMBER])
    assert "Bearer" not in seen["headers"], "a page served with a real secret must hold no token"
    assert seen["result"] == {"data": {"viewer": {"user": {"name": names[MEMBER]}}}}
    _heard_a_ticket(seen)


async def test_graphiql_offline_in_development_opens_ready_to_use_as_a_demo_user(database: str) -> None:
    api = await make_api(database)
    names = await _names(api)
    await api.http.aclose()
    with serving(api.app) as url:
        seen = _graphiql(url)
    assert "Bearer ey" in seen["headers"]
    assert seen["result"] == {"data": {"viewer": {"user": {"name": names[OWNER]}}}}
    _heard_a_ticket(seen)


def _heard_a_ticket(seen: dict[str, Any]) -> None:
    """The subscription GraphiQL ran (over graphql-transport-ws) showed a ticket submitted meanwhile."""
    event = (seen["event"] or {}).get("data", {}).get("connectionEvents")
    assert event is not None, f"GraphiQL's subscription heard nothing: {seen['event']}"
    assert event["action"] == "CREATED" and event["node"]["__typename"] == "Ticket"
    assert event["node"]["title"].startswith("From GraphiQL")
