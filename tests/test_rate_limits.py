"""Cost-based rate limits (server/limits.py): each viewer's leaky bucket of query cost points, in
this process or shared by every worker through Redis."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import event

from server.limits import REDIS_RETRY_SECONDS, CostLimiter, cost_limiter
from server.settings import Settings, SettingsError
from tests.clock import NOW
from tests.conftest import REDIS_URL, Api, Databases, closed_port, make_api

T = NOW.timestamp()
MakeLimiter = Callable[..., CostLimiter]


@pytest.fixture
async def limiters(redis_prefix: str) -> AsyncIterator[Callable[..., CostLimiter]]:
    made: list[CostLimiter] = []

    def make(maximum: int = 100, restore_rate: int = 10, redis_url: str | None = None) -> CostLimiter:
        made.append(CostLimiter(maximum, restore_rate, redis_url, redis_prefix))
        return made[-1]

    yield make
    for limiter in made:
        await limiter.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def where(request: pytest.FixtureRequest) -> str | None:
    """Where the buckets live: in this process, or in Redis (the test's keys removed after it)."""
    if request.param == "memory":
        return None
    request.getfixturevalue("redis_keys")
    return REDIS_URL


@pytest.fixture
def limiter(limiters: MakeLimiter, where: str | None) -> CostLimiter:
    """A bucket of 100 points restoring 10 a second."""
    return limiters(redis_url=where)


# --- One bucket, in this process and in Redis --------------------------------------------------


async def test_a_request_costing_more_than_is_left_is_throttled_and_takes_nothing(limiter: CostLimiter) -> None:
    first = await limiter.take("alice", 60, T)
    assert (first.allowed, first.currently_available, first.retry_after) == (True, 40, 0)
    throttled = await limiter.take("alice", 50, T)
    assert (throttled.allowed, throttled.currently_available) == (False, 40)
    assert throttled.retry_after == 1  # 10 points missing at 10 a second
    assert (await limiter.take("alice", 40, T)).currently_available == 0
    assert (await limiter.take("alice", 95, T)).retry_after == 10


async def test_points_come_back_with_time_up_to_the_maximum(limiter: CostLimiter) -> None:
    await limiter.take("alice", 100, T)
    later = await limiter.take("alice", 30, T + 2.5)
    assert (later.allowed, later.currently_available, later.retry_after) == (False, 25, 1)
    assert (await limiter.take("alice", 30, T + 3)).allowed
    rested = await limiter.take("alice", 0, T + 3600)
    assert (rested.maximum_available, rested.currently_available, rested.restore_rate) == (100, 100, 10)


async def test_a_refund_gives_back_what_was_not_used_up_to_the_maximum(limiter: CostLimiter) -> None:
    await limiter.take("alice", 100, T)
    assert (await limiter.refund("alice", 70, T)).currently_available == 70
    assert (await limiter.refund("alice", 70, T)).currently_available == 100
    assert (await limiter.take("alice", 100, T)).allowed


async def test_each_viewer_has_a_bucket_of_their_own(limiter: CostLimiter) -> None:
    await limiter.take("alice", 100, T)
    assert not (await limiter.take("alice", 1, T)).allowed
    assert (await limiter.take("bob", 100, T)).allowed


async def test_a_clock_behind_the_last_take_restores_nothing(limiter: CostLimiter) -> None:
    """Workers' clocks differ a little: one behind another gives no points away, nor takes any."""
    await limiter.take("alice", 100, T)
    assert (await limiter.take("alice", 0, T - 60)).currently_available == 0
    assert (await limiter.take("alice", 0, T + 1)).currently_available == 10


async def test_100_concurrent_requests_of_one_viewer_never_overspend(limiters: MakeLimiter, where: str | None) -> None:
    """Each worker takes from the same bucket (in Redis), or one process from its own."""
    workers = [limiters(1000, 1, where), limiters(1000, 1, where)] if where else [limiters(1000, 1)]
    answers = await asyncio.gather(*(workers[i % len(workers)].take("alice", 15, T) for i in range(100)))
    assert sum(a.allowed for a in answers) == 66  # 66 x 15 = 990 of 1000
    assert min(a.currently_available for a in answers) == 10
    assert all(a.retry_after == 5 for a in answers if not a.allowed)


async def test_a_request_costing_more_than_the_bucket_is_our_fault(limiter: CostLimiter) -> None:
    with pytest.raises(ValueError, match="a request costs from 0 to 100 points, not 101"):
        await limiter.take("alice", 101, T)


# --- Shopify's extensions.cost -----------------------------------------------------------------


async def test_the_extension_has_shopifys_shape(limiter: CostLimiter) -> None:
    ran = await limiter.take("alice", 60, T)
    assert ran.extension(60, 12) == {
        "requestedQueryCost": 60, "actualQueryCost": 12,
        "throttleStatus": {"maximumAvailable": 100, "currentlyAvailable": 40, "restoreRate": 10},
    }
    throttled = await limiter.take("alice", 50, T)
    assert throttled.extension(50, None)["actualQueryCost"] is None


# --- In this process ---------------------------------------------------------------------------


async def test_one_process_forgets_full_buckets_and_the_least_recently_used(limiters: MakeLimiter) -> None:
    limiter = limiters()
    limiter.memory.max_viewers = 2
    for viewer in ("alice", "bob", "carol"):
        await limiter.take(viewer, 100, T)
    assert list(limiter.memory.buckets) == ["bob", "carol"]
    assert (await limiter.take("alice", 100, T)).allowed  # forgotten: full again
    await limiter.refund("carol", 100, T)
    assert list(limiter.memory.buckets) == ["alice"]


# --- Shared by every worker through Redis ------------------------------------------------------


@pytest.mark.redis
async def test_two_workers_spend_one_budget(
    limiters: MakeLimiter, redis_prefix: str, redis_keys: Callable[[], Awaitable[list[str]]]
) -> None:
    one, two = limiters(redis_url=REDIS_URL), limiters(redis_url=REDIS_URL)
    await one.take("alice", 70, T)
    throttled = await two.take("alice", 40, T)
    assert (throttled.allowed, throttled.currently_available, throttled.retry_after) == (False, 30, 1)
    await two.refund("alice", 50, T)
    assert (await one.take("alice", 80, T)).allowed
    assert await redis_keys() == [f"{redis_prefix}cost:alice"]


@pytest.mark.redis
async def test_a_bucket_key_expires_when_the_bucket_would_be_full(
    limiters: MakeLimiter, redis_prefix: str, redis_keys: Callable[[], Awaitable[list[str]]]
) -> None:
    from redis.asyncio import from_url

    limiter = limiters(redis_url=REDIS_URL)
    await limiter.take("alice", 25, T)
    client = from_url(REDIS_URL)
    try:
        assert 2000 <= await client.pttl(f"{redis_prefix}cost:alice") <= 2500  # 25 points at 10 a second
        await limiter.refund("alice", 25, T)
        assert await redis_keys() == []
    finally:
        await client.aclose()


async def test_redis_out_of_reach_counts_in_this_process_with_one_warning(
    limiters: MakeLimiter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="revampd.limits")
    limiter = limiters(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    assert (await limiter.take("alice", 60, T)).allowed
    assert not (await limiter.take("alice", 60, T)).allowed
    assert (await limiter.take("alice", 60, T + REDIS_RETRY_SECONDS + 2)).allowed  # Redis tried again
    records = [r for r in caplog.records if r.name == "revampd.limits"]
    assert [r.levelname for r in records] == ["WARNING"]
    assert records[0].getMessage().startswith(
        "Redis out of reach, rate limits are counted in each process until it is back: ConnectionError"
    )
    assert records[0].exc_info is None


class Proxy:
    """A TCP proxy in front of the test Redis, to take it out of reach and bring it back."""

    def __init__(self) -> None:
        self.port = closed_port()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = urlsplit(REDIS_URL)
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port or 6379)
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


@pytest.mark.redis
async def test_redis_back_shares_the_buckets_again_with_one_info_line(
    limiters: MakeLimiter, redis_keys: Callable[[], Awaitable[list[str]]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="revampd.limits")
    proxy = Proxy()
    await proxy.start()
    db = urlsplit(REDIS_URL).path
    limiter, other = limiters(redis_url=f"redis://127.0.0.1:{proxy.port}{db}"), limiters(redis_url=REDIS_URL)
    await limiter.take("alice", 60, T)
    assert (await other.take("alice", 0, T)).currently_available == 40  # shared
    await proxy.stop()
    assert (await limiter.take("alice", 10, T)).currently_available == 90  # this process's bucket
    assert (await limiter.take("alice", 10, T)).currently_available == 80
    await proxy.start()
    back = await limiter.take("alice", 10, T + REDIS_RETRY_SECONDS)
    assert back.currently_available == 40  # the shared one again: 40 + 10 restored - 10
    assert [(r.levelname, r.getMessage()[:15]) for r in caplog.records if r.name == "revampd.limits"] == [
        ("WARNING", "Redis out of re"), ("INFO", "Redis is back, ")
    ]
    await proxy.stop()


# --- Settings ----------------------------------------------------------------------------------


def test_the_default_bucket_holds_two_of_the_costliest_queries_allowed() -> None:
    s = Settings.from_env({})
    assert (s.rate_limit_enabled, s.rate_limit_max_cost, s.rate_limit_restore_rate) == (True, 20_000, 1000)
    assert Settings.from_env({"MAX_QUERY_NODES": "50000"}).rate_limit_max_cost == 100_000
    limiter = cost_limiter(Settings.from_env({"RATE_LIMIT_MAX_COST": "12000", "RATE_LIMIT_RESTORE_RATE": "50"}))
    assert limiter is not None and (limiter.maximum, limiter.restore_rate, limiter.redis) == (12_000, 50, None)
    assert cost_limiter(Settings.from_env({"RATE_LIMIT_ENABLED": "false"})) is None


@pytest.mark.parametrize(("env", "message"), [
    ({"RATE_LIMIT_MAX_COST": "9999"}, "RATE_LIMIT_MAX_COST must be at least MAX_QUERY_NODES (10000), the cost of the "
                                      "costliest query allowed, got '9999'"),
    ({"RATE_LIMIT_MAX_COST": "50", "MAX_QUERY_NODES": "100"}, "at least MAX_QUERY_NODES (100)"),
    ({"RATE_LIMIT_MAX_COST": "lots"}, "RATE_LIMIT_MAX_COST must be a whole number, got 'lots'"),
    ({"RATE_LIMIT_RESTORE_RATE": "0"}, "RATE_LIMIT_RESTORE_RATE must be at least 1, got '0'"),
    ({"RATE_LIMIT_RESTORE_RATE": "1.5"}, "RATE_LIMIT_RESTORE_RATE must be a whole number, got '1.5'"),
    ({"RATE_LIMIT_ENABLED": "maybe"}, "RATE_LIMIT_ENABLED must be true or false, got 'maybe'"),
])
def test_bad_rate_limit_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert message in str(refused.value)


# --- Through /graphql: what a client sees ------------------------------------------------------

INVOICES = "query($n: Int) { viewer { partner { revampdConnection { invoices(first: $n) { edges { node { id } } } } } } }"
OWNER = "owner@northwind.example"


@pytest.fixture
async def limited(databases: Databases, redis_prefix: str) -> AsyncIterator[Callable[..., Awaitable[Api]]]:
    """Apps (think: workers) on one database whose every user has a bucket of 50 points,
    restoring 1 a second, and whose costliest query may cost 50."""
    url, made = await databases.clone(), []

    async def make(**settings: Any) -> Api:
        made.append(await make_api(url, rate_limit_enabled=True, max_query_nodes=50, rate_limit_max_cost=50,
                                   rate_limit_restore_rate=1, redis_key_prefix=redis_prefix, **settings))
        return made[-1]

    yield make
    for api in made:
        await api.http.aclose()
        await api.app.app.state.limiter.close()
        await api.app.app.state.documents.close()


async def _invoices(api: Api, n: int, **headers: str) -> httpx.Response:
    return await api.http.post("/graphql", json={"query": INVOICES, "variables": {"n": n}},
                               headers={"Authorization": f"Bearer {api.tokens[OWNER]}", **headers})


async def test_every_answer_says_what_it_cost_and_what_is_left(limited: Callable[..., Awaitable[Api]]) -> None:
    api = await limited()
    answer = await _invoices(api, 10)
    assert answer.status_code == 200
    cost = answer.json()["extensions"]["cost"]
    shown = len(answer.json()["data"]["viewer"]["partner"]["revampdConnection"]["invoices"]["edges"])
    assert (cost["requestedQueryCost"], cost["actualQueryCost"]) == (10, shown)
    status = cost["throttleStatus"]
    assert (status["maximumAvailable"], status["restoreRate"]) == (50, 1)
    # What the answer did not use was given back (and a second may have restored one more).
    assert 50 - shown <= status["currentlyAvailable"] <= 50 - shown + 1


async def test_over_the_budget_is_throttled_with_retry_after_and_nothing_runs(
    limited: Callable[..., Awaitable[Api]]
) -> None:
    api = await limited()
    assert (await _invoices(api, 10)).status_code == 200
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(api.engine.sync_engine, "before_cursor_execute", seen)
    try:
        throttled = await _invoices(api, 50, Accept="application/graphql-response+json")
    finally:
        event.remove(api.engine.sync_engine, "before_cursor_execute", seen)
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    body = throttled.json()
    assert "data" not in body and body["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert body["extensions"]["cost"]["requestedQueryCost"] == 50
    assert body["extensions"]["cost"]["actualQueryCost"] is None
    assert statements == []


@pytest.mark.redis
async def test_two_workers_share_one_budget_through_redis(
    limited: Callable[..., Awaitable[Api]], redis_keys: Callable[[], Awaitable[list[str]]]
) -> None:
    one, other = await limited(redis_url=REDIS_URL), await limited(redis_url=REDIS_URL)
    assert (await _invoices(one, 10)).status_code == 200
    assert (await _invoices(other, 50)).status_code == 429  # spent on the first worker
    apart, alone = await limited(), await limited()  # each process its own bucket
    assert (await _invoices(apart, 10)).status_code == 200
    assert (await _invoices(alone, 50)).status_code == 200


async def test_redis_out_of_reach_still_answers_with_one_warning(
    limited: Callable[..., Awaitable[Api]], caplog: pytest.LogCaptureFixture
) -> None:
    api = await limited(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    caplog.set_level("WARNING", logger="revampd.limits")
    answers = [await _invoices(api, 1) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all("cost" in a.json()["extensions"] for a in answers)
    warnings = [r for r in caplog.records if r.name == "revampd.limits" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


def _listed(value: Any) -> int:
    """The objects an answer holds in lists, counted by hand."""
    if isinstance(value, dict):
        return sum(_listed(v) for v in value.values())
    if isinstance(value, list):
        return sum(isinstance(v, dict) + _listed(v) for v in value)
    return 0


@pytest.mark.parametrize("plan", [True, False], ids=["plan engine", "graphql-core"])
async def test_the_actual_cost_is_the_objects_the_answer_lists(databases: Databases, redis_prefix: str, plan: bool) -> None:
    """Every page, and a query with an error on the way: what is given back is what the
    answer did not show, whichever engine answered (the plan engine counts as it goes)."""
    from tests import golden

    api = await make_api(await databases.clone(), plan=plan, rate_limit_enabled=True, rate_limit_max_cost=10**9,
                         rate_limit_restore_rate=10**9, redis_key_prefix=redis_prefix)
    bad_cursor = ("query { viewer { partner { revampdConnection { invoices(first: 3) { edges { node { id } } }"
                  " tickets(first: 2, after: \"bm90IGEgY3Vyc29y\") { edges { node { id } } } } } } }")
    try:
        for query in [*golden.documents().values(), bad_cursor]:
            for first in (3, 100):
                answer = await api.http.post("/graphql", json={"query": query, "variables": {"first": first}},
                                             headers={"Authorization": f"Bearer {api.tokens[OWNER]}"})
                cost = answer.json()["extensions"]["cost"]
                shown = _listed(answer.json().get("data"))
                assert cost["actualQueryCost"] == min(cost["requestedQueryCost"], max(1, shown)), query
    finally:
        await api.http.aclose()
        await api.app.app.state.limiter.close()
        await api.app.app.state.documents.close()
