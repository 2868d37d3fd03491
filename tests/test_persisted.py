"""Persisted operations as Apollo's clients use them, trusted documents, documents shared
through Redis, and HTTP caching of the public catalogue (server/persisted.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx
import pytest

from resolvers.engine import graphql_schema
from resolvers.schema import build_schema
from server.app import create_app
from server.persisted import PUBLIC_FIELDS, MemoryStore, build_manifest, manifest_json
from server.settings import Settings, SettingsError
from tests.conftest import REDIS_URL, Api, Databases, closed_port, make_api
from tests.node import node

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "operations" / "manifest.json"
OWNER = "owner@northwind.example"
ME = "query Me { viewer { user { email } } }"
PLANS = "query Plans { plans { id code name monthlyPrice { amount currencyCode } __typename } }"

MakeApi = Callable[..., Awaitable[Api]]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def pq(digest: str, version: Any = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": digest}}


def auth(api: Api, email: str = OWNER) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.tokens[email]}"}


async def post(api: Api, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await api.http.post("/graphql", json=body, headers={**auth(api), **headers})


async def get(api: Api, params: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    """A GET as Apollo's HttpLink builds it: variables and extensions as JSON parameters."""
    encoded = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
    return await api.http.get("/graphql", params=encoded, headers={**auth(api), **(headers or {})})


def not_found(response: httpx.Response) -> bool:
    body = response.json()
    return response.status_code == 200 and body["errors"] == [
        {"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}
    ]


@pytest.fixture(scope="module")
async def db_url(databases: Databases) -> str:
    """One database for the module: these tests only read."""
    return await databases.clone()


@pytest.fixture
async def apps(db_url: str) -> AsyncIterator[MakeApi]:
    """Makes apps (think: workers) on the module's database with the given settings."""
    made: list[Api] = []

    async def make(**settings: Any) -> Api:
        made.append(await make_api(db_url, **settings))
        return made[-1]

    yield make
    for api in made:
        await api.http.aclose()
        await api.app.app.state.documents.close()
        await api.engine.dispose()


# --- Apollo's automatic persisted queries ------------------------------------------------------


async def test_the_apollo_handshake_over_post(apps: MakeApi) -> None:
    api = await apps()
    first = await post(api, {"operationName": "Me", "extensions": pq(sha(ME))})
    assert not_found(first), first.text
    assert first.headers["cache-control"] == "no-store"
    registered = await post(api, {"query": ME, "operationName": "Me", "extensions": pq(sha(ME))})
    assert registered.json() == {"data": {"viewer": {"user": {"email": OWNER}}}}
    again = await post(api, {"operationName": "Me", "extensions": pq(sha(ME))})
    assert again.json() == {"data": {"viewer": {"user": {"email": OWNER}}}}


async def test_not_found_as_graphql_response_json_is_a_404_with_no_data(apps: MakeApi) -> None:
    """Apollo Client 4 asks for application/graphql-response+json first; GraphQL over HTTP answers
    a request error with a 4xx and no `data`, and Apollo's link retries on it all the same."""
    api = await apps()
    response = await post(api, {"extensions": pq(sha(ME))}, Accept="application/graphql-response+json,application/json;q=0.9")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/graphql-response+json")
    assert response.json() == {
        "errors": [{"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]
    }


async def test_hashed_queries_by_get_as_use_get_for_hashed_queries_sends_them(apps: MakeApi) -> None:
    api = await apps()
    params = {"operationName": "Me", "extensions": pq(sha(ME))}
    assert not_found(await get(api, params))
    # Apollo's link re-sends the query by POST, then keeps using GET with the hash alone.
    assert (await post(api, {"query": ME, **params})).status_code == 200
    again = await get(api, params)
    assert again.json() == {"data": {"viewer": {"user": {"email": OWNER}}}}
    # With variables too.
    query = "query Ticket($id: ID!) { node(id: $id) { id } }"
    assert (await post(api, {"query": query, "variables": {"id": "nope"}, "extensions": pq(sha(query))})).status_code == 200
    by_get = await get(api, {"variables": {"id": "nope"}, "extensions": pq(sha(query))})
    assert by_get.json() == {"data": {"node": None}}


async def test_a_hash_that_is_not_the_querys_is_refused_and_not_registered(apps: MakeApi) -> None:
    api = await apps()
    wrong = sha("something else")
    refused = await post(api, {"query": ME, "extensions": pq(wrong)})
    assert refused.status_code == 400
    error = refused.json()["errors"][0]
    assert "extensions.persistedQuery.sha256Hash" in error["message"] and sha(ME) in error["message"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert not_found(await post(api, {"extensions": pq(wrong)}))


@pytest.mark.parametrize(
    ("extensions", "named"),
    [
        (pq(sha(ME), version=2), "extensions.persistedQuery.version 2 is not supported"),
        (pq("abc"), "extensions.persistedQuery.sha256Hash must be the SHA-256"),
        ({"persistedQuery": "abc"}, "extensions.persistedQuery must be an object"),
        ("[]", "extensions must be an object"),
    ],
)
async def test_a_malformed_persisted_query_is_a_400_naming_the_field(apps: MakeApi, extensions: Any, named: str) -> None:
    api = await apps()
    for response in (await post(api, {"extensions": extensions}), await get(api, {"extensions": extensions})):
        assert response.status_code == 400, response.text
        assert named in response.json()["errors"][0]["message"]


async def test_a_document_that_does_not_validate_is_not_registered(apps: MakeApi) -> None:
    api = await apps()
    bad = "query { viewer { nothingHere } }"
    response = await post(api, {"query": bad, "extensions": pq(sha(bad))})
    assert response.json()["errors"]
    assert not_found(await post(api, {"extensions": pq(sha(bad))}))


async def test_a_hashed_query_needs_a_token_like_any_other(apps: MakeApi) -> None:
    api = await apps()
    await post(api, {"query": ME, "extensions": pq(sha(ME))})
    response = await api.http.post("/graphql", json={"extensions": pq(sha(ME))})
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_no_connection_is_held_while_a_document_is_looked_up_or_registered(apps: MakeApi) -> None:
    api = await apps()
    engine = api.engine
    seen: list[int] = []

    class Probe(MemoryStore):
        async def get(self, key: str) -> str | None:
            seen.append(engine.pool.checkedout())
            return await super().get(key)

        async def set(self, key: str, document: str) -> None:
            seen.append(engine.pool.checkedout())
            await super().set(key, document)

    api.app.app.state.documents.store = Probe()
    await post(api, {"extensions": pq(sha(ME))})
    await post(api, {"query": ME, "extensions": pq(sha(ME))})
    await post(api, {"extensions": pq(sha(ME))})
    assert seen == [0, 0, 0]  # lookup, registration, lookup


def test_the_in_process_store_is_bounded() -> None:
    import asyncio

    async def fill() -> MemoryStore:
        store = MemoryStore(max_chars=100)
        for i in range(10):
            await store.set(f"k{i}", "x" * 30)
        return store

    store = asyncio.run(fill())
    assert list(store.documents) == ["k7", "k8", "k9"] and store.chars == 90


# --- Trusted documents ------------------------------------------------------------------------


def manifest_operation(name: str) -> dict[str, Any]:
    operations = json.loads(MANIFEST.read_text())["operations"]
    return next(op for op in operations if op["name"] == name)


async def test_trusted_only_runs_the_manifests_documents_by_hash_or_exact_text(apps: MakeApi) -> None:
    api = await apps(trusted_documents="only")
    plan = manifest_operation("Plan")
    by_hash = await post(api, {"operationName": "Plan", "extensions": pq(plan["id"])})
    assert by_hash.status_code == 200 and by_hash.json()["data"]["viewer"]["partner"]["name"] == "Northwind Agency"
    by_get = await get(api, {"operationName": "Plan", "extensions": pq(plan["id"])})
    assert by_get.json() == by_hash.json()
    by_text = await post(api, {"query": plan["body"]})
    assert by_text.json() == by_hash.json()
    with_both = await post(api, {"query": plan["body"], "extensions": pq(plan["id"])})
    assert with_both.json() == by_hash.json()
    # Introspection follows INTROSPECTION alone (GraphiQL keeps its docs).
    schema = await post(api, {"query": "{ __schema { queryType { name } } }"})
    assert schema.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


async def test_trusted_only_refuses_every_other_document(apps: MakeApi) -> None:
    api = await apps(trusted_documents="only")
    source = (ROOT / "operations" / "Plan.graphql").read_text()  # as written, not as the client sends it
    for body in ({"query": ME}, {"query": source}, {"extensions": pq(sha(ME))}):
        response = await post(api, body)
        assert response.status_code == 403, response.text
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_ALLOWED"
        assert "TRUSTED_DOCUMENTS=only" in error["message"]
    # Registration (Apollo's query + hash) is refused, and registers nothing.
    registration = await post(api, {"query": ME, "extensions": pq(sha(ME))})
    assert registration.status_code == 403
    assert "Registering a document is refused" in registration.json()["errors"][0]["message"]
    assert not api.app.app.state.documents.store.documents


async def test_the_manifests_documents_run_by_hash_without_registration_in_the_default_mode(apps: MakeApi) -> None:
    api = await apps()
    wallet = manifest_operation("Wallet")
    response = await post(api, {"operationName": "Wallet", "extensions": pq(wallet["id"])})
    assert response.status_code == 200 and response.json()["data"]["viewer"]["partner"]["revampdConnection"]["wallet"]
    assert (await post(api, {"query": ME})).status_code == 200  # any document still runs


def test_the_committed_manifest_matches_operations() -> None:
    assert MANIFEST.read_text() == manifest_json(build_manifest(ROOT / "operations")), (
        "operations/manifest.json is out of date: regenerate it with `make manifest`"
    )


def test_manifest_bodies_are_the_text_apollo_client_sends(tmp_path: Path) -> None:
    """The client hashes graphql-js's print of its document (with __typename added by its cache);
    the manifest's bodies, printed here, must be byte for byte what graphql-js prints."""
    (tmp_path / "Mixed.graphql").write_text(
        'query Mixed($id: ID!, $skip: Boolean = false) {\n'
        '  node(id: $id) { id ... on Plan { code limits { subOrgs } } ...Bits @skip(if: $skip) }\n'
        '  aVeryLongAliasNameToWrapTheArguments: invoices(first: 10, after: "a cursor \\"quoted\\"",'
        ' filter: {type: [ADD_ON, SUBSCRIPTION]}) { totalCount }\n'
        '  viewer { __typename roles }\n}\n'
        'fragment Bits on Plan { name monthlyPrice { amount } }\n'
    )
    (tmp_path / "manifest.json").write_text(manifest_json(build_manifest(tmp_path)))
    body = json.loads((tmp_path / "manifest.json").read_text())["operations"][0]["body"]
    assert body.endswith("fragment Bits on Plan {\n  name\n  monthlyPrice {\n    amount\n    __typename\n  }\n  __typename\n}")
    assert "viewer {\n    __typename\n    roles\n  }" in body  # a set that selects __typename gets no second
    for manifest in (MANIFEST, tmp_path / "manifest.json"):
        done = node(ROOT / "tests" / "js" / "manifest_print.mjs", str(manifest))
        assert done.returncode == 0, done.stdout + done.stderr


def test_settings_are_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="TRUSTED_DOCUMENTS must be one of off, only, got 'strict'"):
        Settings.from_env({"TRUSTED_DOCUMENTS": "strict"})
    with pytest.raises(SettingsError, match="REDIS_URL must start with redis://, rediss:// or unix://"):
        Settings.from_env({"REDIS_URL": "http://127.0.0.1:6379"})
    with pytest.raises(SettingsError, match="REDIS_URL must start .*, got 'redis://127.0.0.1:six/0'"):
        Settings.from_env({"REDIS_URL": "redis://127.0.0.1:six/0"})
    with pytest.raises(SettingsError, match="TRUSTED_DOCUMENTS_MANIFEST=.*missing.json is not a file"):
        Settings.from_env({"TRUSTED_DOCUMENTS": "only", "TRUSTED_DOCUMENTS_MANIFEST": str(tmp_path / "missing.json")})
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({"format": "apollo-persisted-query-manifest", "version": 1,
                                  "operations": [{"id": sha("x"), "name": "Me", "type": "query", "body": ME}]}))
    settings = Settings.from_env({"TRUSTED_DOCUMENTS": "only", "TRUSTED_DOCUMENTS_MANIFEST": str(forged)})
    with pytest.raises(SettingsError, match=r"operations\[0\] must have a body and, as id, its SHA-256"):
        create_app(settings)
    assert Settings.from_env({"REDIS_URL": "rediss://cache:6380/2"}).redis_url == "rediss://cache:6380/2"


# --- Documents shared through Redis -----------------------------------------------------------


@pytest.mark.redis
async def test_two_workers_sharing_redis_see_each_others_registrations(
    apps: MakeApi, redis_prefix: str, redis_keys: Callable[[], Awaitable[list[str]]]
) -> None:
    one = await apps(redis_url=REDIS_URL, redis_key_prefix=redis_prefix)
    two = await apps(redis_url=REDIS_URL, redis_key_prefix=redis_prefix)
    assert not_found(await post(two, {"extensions": pq(sha(ME))}))
    assert (await post(one, {"query": ME, "extensions": pq(sha(ME))})).status_code == 200
    answer = await get(two, {"extensions": pq(sha(ME))})
    assert answer.json() == {"data": {"viewer": {"user": {"email": OWNER}}}}
    assert await redis_keys() == [f"{redis_prefix}apq:{sha(ME)}"]
    # Another deployment (another prefix) on the same Redis sees none of them.
    other = await apps(redis_url=REDIS_URL, redis_key_prefix=redis_prefix + "other:")
    assert not_found(await post(other, {"extensions": pq(sha(ME))}))


async def test_redis_out_of_reach_falls_back_to_sending_the_query(apps: MakeApi, caplog: pytest.LogCaptureFixture) -> None:
    api = await apps(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    caplog.set_level("WARNING", logger="revampd.persisted")
    lookup = await post(api, {"extensions": pq(sha(ME))})
    assert not_found(lookup)
    registration = await post(api, {"query": ME, "extensions": pq(sha(ME))})
    assert registration.json() == {"data": {"viewer": {"user": {"email": OWNER}}}}
    warnings = [r for r in caplog.records if r.name == "revampd.persisted"]
    assert [r.levelname for r in warnings] == ["WARNING", "WARNING"]
    assert "Redis out of reach, persisted document lookup skipped: ConnectionError" in warnings[0].getMessage()
    assert "registration skipped" in warnings[1].getMessage()
    assert all(r.exc_info is None for r in warnings)


# --- HTTP caching -----------------------------------------------------------------------------


async def test_public_catalogue_queries_by_get_are_cacheable_with_an_etag(apps: MakeApi) -> None:
    api = await apps()
    first = await get(api, {"query": PLANS})
    assert first.status_code == 200 and first.json()["data"]["plans"]
    assert first.headers["cache-control"] == "public, max-age=300"
    etag = first.headers["etag"]
    assert etag.startswith('W/"') and etag.endswith('"')  # weak: the same for the gzip-compressed answer
    again = await get(api, {"query": PLANS}, {"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag and again.headers["cache-control"] == "public, max-age=300"
    assert (await get(api, {"query": PLANS}, {"If-None-Match": f'"other", {etag.removeprefix("W/")}'})).status_code == 304
    changed = await get(api, {"query": PLANS}, {"If-None-Match": '"stale"'})
    assert changed.status_code == 200 and changed.headers["etag"] == etag and changed.content == first.content
    catalogue = (
        "{ planComparison { plans { code } rows { feature label values } } "
        "addOnProducts { id code name description maxQuantity monthlyPrice { amount } } }"
    )
    assert (await get(api, {"query": catalogue})).headers["cache-control"] == "public, max-age=300"


async def test_the_same_catalogue_query_by_hash_is_cacheable(apps: MakeApi) -> None:
    api = await apps()
    await post(api, {"query": PLANS, "extensions": pq(sha(PLANS))})
    by_hash = await get(api, {"operationName": "Plans", "extensions": pq(sha(PLANS))})
    assert by_hash.headers["cache-control"] == "public, max-age=300" and "etag" in by_hash.headers


@pytest.mark.parametrize(
    "query",
    [
        "{ viewer { user { email } } }",
        "{ plans { id } viewer { roles } }",  # one private field makes the whole answer private
        "{ plans { ... on Node { id } } }",  # through an interface: not checked, so private
        "{ __schema { queryType { name } } }",
        "{ plans { id } node(id: \"x\") { id } }",
    ],
)
async def test_everything_else_is_no_store(apps: MakeApi, query: str) -> None:
    api = await apps()
    response = await get(api, {"query": query})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store" and "etag" not in response.headers


async def test_posts_errors_and_refusals_are_no_store(apps: MakeApi) -> None:
    api = await apps()
    assert (await post(api, {"query": PLANS})).headers["cache-control"] == "no-store"
    assert (await get(api, {"query": "{ plans { nope } }"})).headers["cache-control"] == "no-store"
    unauthenticated = await api.http.get("/graphql", params={"query": PLANS})
    assert unauthenticated.status_code == 401 and unauthenticated.headers["cache-control"] == "no-store"


def test_every_public_field_is_in_the_schema() -> None:
    """A rename must not silently leave the list; a new field stays private until listed here."""
    built = build_schema(Settings())
    schema = graphql_schema(built)
    for type_name, fields in PUBLIC_FIELDS.items():
        known = schema.get_type(type_name).fields  # type: ignore[union-attr]
        assert fields <= set(known), f"{type_name}: {sorted(fields - set(known))}"

    def is_public(query: str, name: str | None) -> bool:
        operation = built.operations.get(query, name)
        return not operation.errors and operation.selects_only(PUBLIC_FIELDS)

    assert is_public("query A { plans { ...P } } fragment P on Plan { code limits { subOrgs } }", None)
    assert not is_public("query A { plans { ...P } } fragment P on Plan { ...P }", None)
    assert not is_public("query A { plans { id } } query B { viewer { roles } }", "B")
    assert is_public("query A { plans { id } } query B { viewer { roles } }", "A")
