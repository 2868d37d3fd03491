"""The HTTP edge under hostile input: every client mistake is a clear 4xx, never a fault."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from sqlalchemy import func, select

from db import models as m
from tests.conftest import Api

OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"

SUBMIT = """mutation($title: String!) { submitTicket(input: {title: $title, description: "d", priority: LOW}) {
    ticket { id } userErrors { field code message } } }"""
SEARCH = """query($q: String) { viewer { partner { revampdConnection {
    tickets(filter: {search: $q}) { edges { node { id } } } } } } }"""


async def _raw(api: Api, body: bytes, *, as_: str = OWNER, content_type: str = "application/json") -> Any:
    return await api.http.post(
        "/graphql",
        content=body,
        headers={"Authorization": f"Bearer {api.tokens[as_]}", "Content-Type": content_type},
    )


def _one_error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert body["data"] is None
    [error] = body["errors"]
    return dict(error)


@pytest.mark.parametrize(
    "body",
    [b"123", b'"x"', b"null", b"[]", b"true", b'{"query": 5}', b'{"query": "{ plans { code } }", "variables": [1]}',
     b'{"query": "{ plans { code } }", "operationName": 7}', b"{not json", b"\xff\xfe{}", b"[" * 1000 + b"]" * 1000,
     b'{"query": "{ plans { code } }", "variables": {"a": NaN}}', b""],
    ids=["number", "string", "null", "array", "true", "query-not-string", "variables-not-object",
         "operation-name-not-string", "broken-json", "invalid-utf8", "nested-1000", "nan", "empty"],
)
async def test_a_body_that_is_not_a_graphql_request_is_a_400(ro_api: Api, body: bytes) -> None:
    response = await _raw(ro_api, body)
    assert response.status_code == 400, response.text
    error = _one_error(response)
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "Internal" not in error["message"]


async def test_variables_nested_deeper_than_any_input_are_refused(ro_api: Api) -> None:
    deep: Any = "x"
    for _ in range(100):
        deep = {"a": deep}
    body = json.dumps({"query": "{ plans { code } }", "variables": {"v": deep}}).encode()
    response = await _raw(ro_api, body)
    assert response.status_code == 400
    assert "nested deeper" in _one_error(response)["message"]


async def test_a_body_that_is_not_json_is_refused_with_415(ro_api: Api) -> None:
    response = await _raw(ro_api, b"query { plans { code } }", content_type="text/plain")
    assert response.status_code == 415
    assert _one_error(response)["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize("text", ["a\ud800", "\udfff tail"])
async def test_a_lone_surrogate_in_a_title_is_refused_naming_it_and_writes_nothing(api: Api, text: str) -> None:
    before = await api.rows(select(func.count()).select_from(m.Ticket))
    body = json.dumps({"query": SUBMIT, "variables": {"title": text}}).encode()  # ensure_ascii keeps \\ud800
    response = await _raw(api, body, as_=MEMBER)
    assert response.status_code == 400
    assert "variables.title" in _one_error(response)["message"]
    assert await api.rows(select(func.count()).select_from(m.Ticket)) == before


async def test_a_lone_surrogate_in_a_search_or_in_the_document_is_refused(ro_api: Api) -> None:
    response = await _raw(ro_api, json.dumps({"query": SEARCH, "variables": {"q": "a\ud800"}}).encode())
    assert response.status_code == 400 and "variables.q" in _one_error(response)["message"]
    literal = '{ viewer { partner { revampdConnection { tickets(filter: {search: "a\ud800"}) { edges { cursor } } } } } }'
    response = await _raw(ro_api, json.dumps({"query": literal}).encode())
    assert response.status_code == 400 and "query" in _one_error(response)["message"]


async def test_nul_in_a_search_is_a_client_error_on_every_database(ro_api: Api) -> None:
    response = await _raw(ro_api, json.dumps({"query": SEARCH, "variables": {"q": "a\x00b"}}).encode())
    assert response.status_code == 400 and "NUL" in _one_error(response)["message"]
    literal = '{ viewer { partner { revampdConnection { tickets(filter: {search: "a\\u0000b"}) { edges { cursor } } } } } }'
    errors = await ro_api.errors(literal, as_=OWNER)
    assert "NUL" in errors[0]["message"] and "Internal" not in errors[0]["message"]


async def test_two_operations_need_an_operation_name(ro_api: Api) -> None:
    doc = "query A { plans { code } } query B { viewer { user { email } } }"
    errors = await ro_api.errors(doc, as_=OWNER)
    assert errors[0]["extensions"]["code"] == "OPERATION_NAME_REQUIRED"
    named = await ro_api.http.post(
        "/graphql", json={"query": doc, "operationName": "B"},
        headers={"Authorization": f"Bearer {ro_api.tokens[OWNER]}"},
    )
    assert named.json()["data"] == {"viewer": {"user": {"email": OWNER}}}
    unknown = await ro_api.http.post(
        "/graphql", json={"query": doc, "operationName": "C"},
        headers={"Authorization": f"Bearer {ro_api.tokens[OWNER]}"},
    )
    assert unknown.status_code == 400 and "C" in _one_error(unknown)["message"]


async def test_a_mutation_over_get_is_refused(ro_api: Api) -> None:
    response = await ro_api.http.get(
        "/graphql", params={"query": "mutation { withdrawPlanChange(input: {}) { userErrors { code } } }"},
        headers={"Authorization": f"Bearer {ro_api.tokens[OWNER]}"},
    )
    assert response.status_code == 405 and response.headers["allow"] == "POST"


async def test_a_query_over_get_answers(ro_api: Api) -> None:
    response = await ro_api.http.get(
        "/graphql", params={"query": "query($id: ID!) { node(id: $id) { id } }", "variables": '{"id": "UGxhbjoy"}'},
        headers={"Authorization": f"Bearer {ro_api.tokens[OWNER]}"},
    )
    assert response.status_code == 200 and response.json()["data"] == {"node": {"id": "UGxhbjoy"}}


async def test_faults_stay_masked_when_requests_overlap(ro_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from services import plans

    async def broken(session: Any) -> Any:
        await session.execute(select(1))  # let the other requests run meanwhile
        raise RuntimeError("secret connection string postgres://admin:pw@db")

    monkeypatch.setattr(plans, "catalogue", broken)
    faulty = [ro_api.post("{ plans { code } }", as_=OWNER) for _ in range(40)]
    fine = [ro_api.post("{ viewer { user { email } } }", as_=OWNER) for _ in range(40)]
    responses = await asyncio.gather(*[r for pair in zip(faulty, fine, strict=True) for r in pair])
    bodies = [r.json() for r in responses]
    assert all("secret" not in json.dumps(b) and "RuntimeError" not in json.dumps(b) for b in bodies)
    assert [b["errors"][0]["message"] for b in bodies[0::2]] == ["Internal server error."] * 40
    assert [b["data"]["viewer"]["user"]["email"] for b in bodies[1::2]] == [OWNER] * 40


async def test_a_fault_logs_its_traceback_at_error_and_a_client_mistake_one_info_line(
    ro_api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from services import plans

    async def broken(session: Any) -> Any:
        raise RuntimeError("boom")

    caplog.set_level(logging.INFO)
    await ro_api.errors('{ viewer { partner { revampdConnection { invoices(after: "bad") { edges { cursor } } } } } }',
                        as_=OWNER)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    client = [r for r in caplog.records if r.name == "revampd.graphql"]
    assert len(client) == 1 and client[0].levelno == logging.INFO and client[0].exc_info is None
    caplog.clear()
    monkeypatch.setattr(plans, "catalogue", broken)
    await ro_api.errors("{ plans { code } }", as_=OWNER)
    [fault] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert fault.exc_info is not None and "boom" in str(fault.exc_info[1])


async def test_a_client_that_hangs_up_before_its_body_is_logged_at_info(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """Through a real HTTP server: the client promises a body, sends part, and goes."""
    import uvicorn

    caplog.set_level(logging.INFO)
    server = uvicorn.Server(uvicorn.Config(api.app, host="127.0.0.1", port=0, log_config=None, lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + api.tokens[OWNER].encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"query\""
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        for _ in range(500):  # until the server has logged the request
            if any("status=499" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.01)
    finally:
        server.should_exit = True
        await serving
    assert any("status=499" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]


def test_documents_kept_for_reuse_are_bounded_by_their_size() -> None:
    """A client cannot make the server keep unbounded text: the Operations kept are capped in
    characters, and a document that does not parse or validate is not kept at all."""
    from resolvers.engine import graphql_schema
    from resolvers.operation import Operations
    from resolvers.schema import build_schema
    from server.settings import Settings

    settings = Settings()
    operations = Operations(graphql_schema(build_schema(settings)), settings, max_chars=10_000)
    for i in range(50):
        operations.get(f"query Q{i} {{ viewer {{ roles }} }}" + " " * 1000, None)
    assert operations.chars <= 10_000 and 0 < len(operations.known) < 50
    operations.get("query { nope }", None)
    operations.get("query {", None)
    assert all("nope" not in text and text != "query {" for text, _ in operations.known)
    # The newest stays, and asking again answers the same value.
    latest = operations.get("query Q49 { viewer { roles } }" + " " * 1000, None)
    assert operations.get("query Q49 { viewer { roles } }" + " " * 1000, None) is latest
