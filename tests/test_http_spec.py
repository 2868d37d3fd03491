"""GraphQL over HTTP (graphql.github.io/graphql-over-http): the media type a client asks for,
and what a request error answers with it. application/json behaves as it always did."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Api, Databases, make_api
from tests.node import node
from tests.served import served

OWNER = "owner@northwind.example"
GRAPHQL_RESPONSE = "application/graphql-response+json"


async def _post(api: Api, body: Any, accept: str | None, *, token: bool = True) -> Any:
    headers = {"Content-Type": "application/json"}
    if accept is not None:
        headers["Accept"] = accept
    if token:
        headers["Authorization"] = f"Bearer {api.tokens[OWNER]}"
    return await api.http.post("/graphql", content=json.dumps(body), headers=headers)


REQUEST_ERRORS = {
    "parse": {"query": "{ viewer {"},
    "validation": {"query": "{ viewer { noSuchField } }"},
    "variables": {"query": "query Q($id: ID!) { node(id: $id) { id } }", "variables": {"id": None}},
    "cost": {"query": "{ viewer { partner { revampdConnection { tickets(first: 100) { edges { node { "
                      "messages(first: 100) { edges { node { id } } } } } } } } } }"},
}


@pytest.mark.parametrize("case", sorted(REQUEST_ERRORS))
async def test_a_request_error_is_a_400_with_no_data_as_graphql_response_json(ro_api: Api, case: str) -> None:
    response = await _post(ro_api, REQUEST_ERRORS[case], GRAPHQL_RESPONSE)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8"
    body = response.json()
    assert "data" not in body and body["errors"][0]["message"]


@pytest.mark.parametrize("case", sorted(REQUEST_ERRORS))
async def test_a_request_error_is_a_200_with_null_data_as_application_json(ro_api: Api, case: str) -> None:
    for accept in ("application/json", None, "*/*"):
        response = await _post(ro_api, REQUEST_ERRORS[case], accept)
        assert response.status_code == 200, (accept, response.text)
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["data"] is None and body["errors"], body


async def test_a_field_error_keeps_its_data_and_a_200(ro_api: Api) -> None:
    """Execution began: data is there (here a partial answer), so the status is 2xx."""
    response = await _post(ro_api, {"query": '{ plans { code } node(id: "not-an-id") { id } '
                                             'viewer { partner { revampdConnection { tickets(first: -1) '
                                             "{ edges { node { id } } } } } } }"}, GRAPHQL_RESPONSE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"]["plans"] and body["errors"], body


async def test_the_client_preference_wins(ro_api: Api) -> None:
    query = {"query": "{ __typename }"}
    cases = {
        f"{GRAPHQL_RESPONSE}, application/json;q=0.9": GRAPHQL_RESPONSE,
        f"application/json, {GRAPHQL_RESPONSE};q=0.5": "application/json",
        f"application/json, {GRAPHQL_RESPONSE}": GRAPHQL_RESPONSE,
        "text/html, */*;q=0.8": "application/json",
        f"{GRAPHQL_RESPONSE};q=0, application/*": "application/json",
    }
    for accept, media in cases.items():
        response = await _post(ro_api, query, accept)
        assert response.status_code == 200 and response.headers["content-type"].startswith(media), accept
        assert response.json() == {"data": {"__typename": "Query"}}
        assert "Accept" in response.headers["vary"]


async def test_an_accept_that_allows_neither_json_type_is_a_406(ro_api: Api) -> None:
    response = await _post(ro_api, {"query": "{ __typename }"}, "text/csv, application/xml")
    assert response.status_code == 406
    assert "Accept" in response.json()["errors"][0]["message"]


async def test_refusals_before_execution_follow_the_media_type(ro_api: Api) -> None:
    """No token, a body that is not JSON, extensions that are not an object: refused with the
    same status either way, and no data entry as application/graphql-response+json."""
    cases: list[tuple[Any, bool, int, str]] = [
        ({"query": "{ viewer { roles } }"}, False, 401, "Authentication required."),
        ({"query": "{ __typename }", "extensions": "yes"}, True, 400, "extensions must be an object or null."),
        ({"query": "{ __typename }", "extensions": [1]}, True, 400, "extensions must be an object or null."),
    ]
    for body, token, status, message in cases:
        for accept in (GRAPHQL_RESPONSE, "application/json"):
            response = await _post(ro_api, body, accept, token=token)
            assert response.status_code == status, response.text
            answer = response.json()
            assert answer["errors"][0]["message"] == message
            assert ("data" in answer) == (accept == "application/json")
    response = await ro_api.http.post("/graphql", content=b'{ "not a JSON', headers={
        "Content-Type": "application/json", "Accept": GRAPHQL_RESPONSE, "Authorization": f"Bearer {ro_api.tokens[OWNER]}"})
    assert response.status_code == 400 and "data" not in response.json()


async def test_extensions_are_accepted_as_an_object_in_post_and_get(ro_api: Api) -> None:
    response = await _post(ro_api, {"query": "{ __typename }", "extensions": {"some": "value"}}, GRAPHQL_RESPONSE)
    assert response.json() == {"data": {"__typename": "Query"}}
    headers = {"Authorization": f"Bearer {ro_api.tokens[OWNER]}"}
    got = await ro_api.http.get("/graphql", params={"query": "{ __typename }", "extensions": '{"a": 1}'}, headers=headers)
    assert got.json() == {"data": {"__typename": "Query"}}
    bad = await ro_api.http.get("/graphql", params={"query": "{ __typename }", "extensions": "[1"}, headers=headers)
    assert bad.status_code == 400 and "extensions" in bad.json()["errors"][0]["message"]


async def test_the_graphql_http_audit_passes_every_check(databases: Databases) -> None:
    """The graphql-http package's audit of a real server: 61 checks, none failed or warned."""
    api = await make_api(await databases.clone())
    await api.http.aclose()
    with served(api.app) as port:
        done = node("http-audit.mjs", env={"GRAPHQL_URL": f"http://127.0.0.1:{port}/graphql", "TOKEN": api.tokens[OWNER]})
    await api.engine.dispose()
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert len(results) == 61
    assert [r for r in results if r["status"] != "ok"] == []
