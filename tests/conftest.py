"""Test fixtures: a migrated, seeded database per test (cloned from a template), and a client.

SQLite by default. Set TEST_DATABASE_URL (postgresql+asyncpg://...) to run the
same suite on PostgreSQL; with REQUIRE_POSTGRES=1 (as CI sets) a test that
needs PostgreSQL fails instead of skipping. Tests marked `redis` use the Redis at
TEST_REDIS_URL (redis://127.0.0.1:6379/0); with REQUIRE_REDIS=1 they fail instead of skipping.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, cast

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from db import models as m
from db.engine import create_engine, read_sessions
from db.migrate import upgrade
from server.app import create_app
from server.auth import user_token
from server.settings import Settings
from services.demo import seed_demo
from tests import clock
from tests.pg import pg_admin

_TRAVEL = pytest.StashKey[Any]()
PG_URL = os.environ.get("TEST_DATABASE_URL", "")
REQUIRE_PG = os.environ.get("REQUIRE_POSTGRES") == "1"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
REQUIRE_REDIS = os.environ.get("REQUIRE_REDIS") == "1"
# The demo data's "today": the pinned date (tests/clock.py), never the real one.
TODAY = clock.TEST_DATE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("postgres") and not PG_URL:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: set TEST_DATABASE_URL"))
        if item.get_closest_marker("redis") and not REDIS_URL:
            item.add_marker(pytest.mark.skip(reason="needs Redis: set TEST_REDIS_URL=redis://127.0.0.1:6379/0"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under REQUIRE_POSTGRES=1 / REQUIRE_REDIS=1 (CI), a PostgreSQL / Redis test that skips has failed."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_PG and report.skipped and item.get_closest_marker("postgres"):
        report.outcome = "failed"
        report.longrepr = f"PostgreSQL test skipped under REQUIRE_POSTGRES=1: {report.longrepr}"
    # (A test needing both skips in the SQLite run for want of PostgreSQL, as it should.)
    needs_missing_pg = bool(item.get_closest_marker("postgres")) and not PG_URL
    if REQUIRE_REDIS and report.skipped and item.get_closest_marker("redis") and not needs_missing_pg:
        report.outcome = "failed"
        report.longrepr = f"Redis test skipped under REQUIRE_REDIS=1: {report.longrepr}"


def pytest_configure(config: pytest.Config) -> None:
    # The wall clock of this process (and its server threads) reads the pinned date.
    config.stash[_TRAVEL] = clock.pin()
    config.addinivalue_line("markers", "postgres: needs PostgreSQL (TEST_DATABASE_URL)")
    config.addinivalue_line("markers", "redis: needs Redis (TEST_REDIS_URL)")
    if REQUIRE_PG and not PG_URL:
        raise pytest.UsageError("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")
    if REQUIRE_REDIS and not REDIS_URL:
        raise pytest.UsageError("REQUIRE_REDIS=1 but TEST_REDIS_URL is not set")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _TRAVEL in config.stash:
        config.stash[_TRAVEL].stop()


async def _pg_admin(sql: str) -> None:
    await pg_admin(PG_URL, sql)


async def _build(url: str, today: date = TODAY) -> None:
    """Migrates the database at `url` and seeds the demo data for `today`."""
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        async with read_sessions(engine)() as session:
            await seed_demo(session, today)
    finally:
        await engine.dispose()


class Databases:
    """Makes databases cloned from one migrated and seeded template."""

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.prefix = f"revampd_t{uuid.uuid4().hex[:8]}"
        self.template = ""
        self.made: list[str] = []
        self.count = 0

    async def setup(self) -> None:
        if PG_URL:
            self.template = f"{self.prefix}_tpl"
            await _pg_admin(f'CREATE DATABASE "{self.template}"')
            self.made.append(self.template)
            await _build(str(make_url(PG_URL).set(database=self.template).render_as_string(hide_password=False)))
        else:
            self.template = os.path.join(self.tmp, "template.db")
            await _build(f"sqlite+aiosqlite:///{self.template}")

    async def clone(self) -> str:
        self.count += 1
        name = f"{self.prefix}_{self.count}"
        if PG_URL:
            await _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
            self.made.append(name)
            return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        path = os.path.join(self.tmp, f"{name}.db")
        shutil.copyfile(self.template, path)
        return f"sqlite+aiosqlite:///{path}"

    async def teardown(self) -> None:
        for name in reversed(self.made):
            await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def databases(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Databases]:
    dbs = Databases(str(tmp_path_factory.mktemp("db")))
    await dbs.setup()
    yield dbs
    await dbs.teardown()


@dataclass
class Api:
    """A client of the running app, with a token per demo user."""

    http: httpx.AsyncClient
    settings: Settings
    app: Any
    tokens: dict[str, str]
    ids: dict[str, int]

    async def post(self, query: str, variables: dict[str, Any] | None = None, *, as_: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[as_]}"} if as_ else {}
        return await self.http.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)

    async def gql(self, query: str, variables: dict[str, Any] | None = None, *, as_: str) -> dict[str, Any]:
        """Run a query as a demo user; fails the test on any top-level error."""
        response = await self.post(query, variables, as_=as_)
        assert response.status_code == 200, response.text
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return cast("dict[str, Any]", body["data"])

    async def errors(self, query: str, variables: dict[str, Any] | None = None, *, as_: str) -> list[dict[str, Any]]:
        response = await self.post(query, variables, as_=as_)
        body = response.json()
        assert body.get("errors"), body
        return cast("list[dict[str, Any]]", body["errors"])

    async def rows(self, stmt: Any) -> list[Any]:
        """Rows straight from the database, to check what the API says against."""
        engine = create_engine(self.settings.database_url)
        try:
            async with read_sessions(engine)() as session:
                return list((await session.execute(stmt)).all())
        finally:
            await engine.dispose()

    async def connection_id(self, email: str) -> int:
        rows = await self.rows(
            select(m.Connection.id)
            .join(m.User, m.User.partner_id == m.Connection.partner_id)
            .where(m.User.email == email)
        )
        return int(rows[0][0])

    @property
    def engine(self) -> Any:
        return self.app.app.state.revampd.db


async def make_api(url: str, *, plan: bool = True, **settings_: Any) -> Api:
    """A client of an app on `url`, with these settings changed (rate limits off unless asked
    for: tests send many requests as one user at once; and a pool that waits up to a minute for a
    connection: the concurrency tests send 100 requests at once to check what they change, and
    on a busy machine some would wait past the service's 5 seconds and be answered 503, which
    tests/test_concurrency.py checks on its own)."""
    settings = Settings(database_url=url, **{"rate_limit_enabled": False, "db_pool_timeout": 60.0, **settings_})
    app = create_app(settings, plan=plan)
    engine = create_engine(url)
    try:
        async with read_sessions(engine)() as session:
            users = list(await session.scalars(select(m.User)))
    finally:
        await engine.dispose()
    tokens = {u.email: user_token(settings, u) for u in users}
    ids = {u.email: u.id for u in users}
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return Api(http, settings, app, tokens, ids)


@pytest.fixture
async def api(databases: Databases) -> AsyncIterator[Api]:
    """A fresh copy of the demo database: for tests that change data."""
    client = await make_api(await databases.clone())
    yield client
    await client.http.aclose()
    await client.engine.dispose()


@pytest.fixture(scope="session")
async def ro_api(databases: Databases) -> AsyncIterator[Api]:
    """One shared copy of the demo database: for tests that only read."""
    client = await make_api(await databases.clone())
    yield client
    await client.http.aclose()
    await client.engine.dispose()


def _pytests(handler: logging.Handler) -> bool:
    """pytest's own handlers (caplog's, the report's): pytest adds and removes them around each phase."""
    return type(handler).__module__.startswith("_pytest")


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """The root logger's level and handlers as they were before the test: what a command run
    in-process or the server set up (LOG_LEVEL, a handler on standard error) does not go on
    into the tests after it."""
    root = logging.getLogger()
    level, before = root.level, [h for h in root.handlers if not _pytests(h)]
    yield
    for handler in root.handlers[:]:
        if handler not in before and not _pytests(handler):
            root.removeHandler(handler)
            handler.close()
    for handler in before:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


# ---- Redis ------------------------------------------------------------------------------------

@pytest.fixture
def redis_prefix() -> str:
    return f"revampd-test:{uuid.uuid4().hex}:"


@pytest.fixture
async def redis_keys(redis_prefix: str) -> AsyncIterator[Callable[[], Awaitable[list[str]]]]:
    """The keys the test wrote (under its prefix, `redis_prefix`: a prefix of its own); removed after it."""
    from redis.asyncio import from_url

    client = from_url(REDIS_URL, decode_responses=True)

    async def keys() -> list[str]:
        return sorted(cast("list[str]", await client.keys(redis_prefix + "*")))  # decode_responses: str keys

    yield keys
    for key in await keys():
        await client.delete(key)
    await client.aclose()


def closed_port() -> int:
    """A port nothing listens on (a server out of reach)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
