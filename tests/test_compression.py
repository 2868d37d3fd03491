"""Answers travel compressed to clients that accept it: the same JSON, a fraction of the bytes."""

from __future__ import annotations

import gzip
from typing import Any

from server.graphiql import assets, sri
from tests import golden
from tests.conftest import Api

OWNER = "owner@northwind.example"


async def _wire(api: Api, encoding: str | None, body: dict[str, Any] | None = None) -> tuple[dict[str, str], bytes]:
    """The headers and the bytes as sent (not decompressed by the client)."""
    headers = {"Authorization": f"Bearer {api.tokens[OWNER]}", "Accept-Encoding": encoding or "identity"}
    body = body or {"query": golden.documents()["DashboardOverview"], "variables": {"first": 100}}
    async with api.http.stream("POST", "/graphql", json=body, headers=headers) as response:
        assert response.status_code == 200
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
        return dict(response.headers), raw


async def test_a_client_accepting_gzip_gets_the_same_json_compressed(ro_api: Api) -> None:
    plain_headers, plain = await _wire(ro_api, None)
    headers, packed = await _wire(ro_api, "gzip, deflate, br")
    assert "content-encoding" not in plain_headers
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(packed) == plain
    assert len(packed) * 3 < len(plain), (len(packed), len(plain))
    vary = {v.strip() for v in headers["vary"].split(",")}
    assert {"Accept", "Accept-Encoding"} <= vary
    assert headers["cache-control"] == "no-store"


async def test_a_small_answer_is_not_compressed(ro_api: Api) -> None:
    headers, raw = await _wire(ro_api, "gzip", {"query": "{ viewer { roles } }"})
    assert "content-encoding" not in headers
    assert raw.startswith(b'{"data":')


async def test_graphiqls_files_are_served_compressed_once_and_intact(ro_api: Api) -> None:
    asset = assets()[0]
    async with ro_api.http.stream("GET", f"/graphiql/{asset.path}", headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    assert response.headers["content-encoding"] == "gzip"
    assert sri(gzip.decompress(raw)) == asset.integrity
    plain = await ro_api.http.get(f"/graphiql/{asset.path}", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and sri(plain.content) == asset.integrity
