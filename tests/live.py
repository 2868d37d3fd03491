"""A graphql-transport-ws client for the tests (the `websockets` library's client), and a
served app to subscribe to."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import Api

PROTOCOL = "graphql-transport-ws"
WAIT = 20.0  # seconds an expected message may take (a missing one fails the test then)


class Socket:
    """One WebSocket speaking graphql-transport-ws."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.count = 0

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), WAIT)
        message: dict[str, Any] = json.loads(raw)
        return message

    async def init(self, token: str | None) -> dict[str, Any]:
        await self.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"} if token else {}})
        return await self.receive()

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None, *, api: Api | None = None) -> str:
        """Start a subscription; with `api`, return once the served app's hub follows it (the
        protocol acknowledges no subscription, and a change committed before would not be sent)."""
        self.count += 1
        sid = str(self.count)
        before = hub(api).open_subscriptions if api is not None else 0
        await self.send({"id": sid, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})
        if api is not None:
            end = asyncio.get_running_loop().time() + WAIT
            while hub(api).open_subscriptions <= before:
                assert asyncio.get_running_loop().time() < end, "the subscription was never followed"
                await asyncio.sleep(0.005)
        return sid

    async def next(self, sid: str) -> dict[str, Any]:
        """The next message of subscription `sid` (a `next`, `error` or `complete`)."""
        while True:
            message = await self.receive()
            if message.get("type") == "ping":
                await self.send({"type": "pong"})
                continue
            if message.get("id") == sid:
                return message

    async def closed(self) -> tuple[int | None, str | None]:
        """The close code and reason the server closed with."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), WAIT)
        except Exception:  # noqa: BLE001 - closed: read the code
            pass
        return self.ws.close_code, self.ws.close_reason


def hub(api: Api) -> Any:
    return api.app.app.state.revampd.hub


@asynccontextmanager
async def socket(port: int, token: str | None = None) -> AsyncIterator[Socket]:
    """A WebSocket to /graphql, acknowledged with `token` when given."""
    async with connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=[PROTOCOL]) as ws:  # type: ignore[list-item]
        s = Socket(ws)
        if token is not None:
            ack = await s.init(token)
            assert ack["type"] == "connection_ack", ack
        yield s


async def post(port: int, api: Api, query: str, variables: dict[str, Any] | None = None, *, as_: str) -> dict[str, Any]:
    """A GraphQL request to the served app (whose commits its hub announces); fails on errors."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
        response = await http.post("/graphql", json={"query": query, "variables": variables or {}},
                                   headers={"Authorization": f"Bearer {api.tokens[as_]}"})
    body: dict[str, Any] = response.json()
    assert response.status_code == 200 and not body.get("errors"), body
    data: dict[str, Any] = body["data"]
    return data
