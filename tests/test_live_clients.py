"""Live updates as real clients meet them: clients/live-check.mjs subscribes with the
dashboard's documents (operations/ConnectionEvents.graphql, TicketEvents.graphql) over
graphql-transport-ws, with graphql-ws's own `createClient` or with Apollo Client
(GraphQLWsLink beside its HttpLink), or over Server-Sent Events with graphql-sse's
`createClient` (distinct connections mode), to a served app on a fresh copy of the demo data.

The script makes no change itself and prints one JSON line per observation. The test waits
until the server follows the script's subscriptions (its hub's count of open subscriptions
grows: the protocol acknowledges no subscription, and a change committed before would not be
sent), then makes the change over HTTP as another user and reads what the script saw.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api
from tests.live import WAIT, post
from tests.node import ROOT, npm_project
from tests.served import served

CLIENTS = ROOT / "clients"
OPERATIONS = ROOT / "operations"
OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"
SUPPORT = "support@revampd.example"

Line = dict[str, Any]


def _document(name: str) -> str:
    return (OPERATIONS / f"{name}.graphql").read_text()


class LiveCheck:
    """clients/live-check.mjs running: the JSON lines it printed, read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[Line] = []

    async def _line(self) -> Line:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), WAIT)
        if not raw:
            await self.process.wait()
            assert self.process.stderr is not None
            err = (await self.process.stderr.read()).decode()
            raise AssertionError(f"live-check.mjs ended (exit {self.process.returncode}) after {self.lines}:\n{err}")
        line: Line = json.loads(raw)
        self.lines.append(line)
        return line

    async def until(self, done: Callable[[list[Line]], bool], what: str) -> list[Line]:
        """Reads lines until `done(every line so far)` holds (for WAIT seconds at most for each)."""
        while not done(self.lines):
            try:
                await self._line()
            except TimeoutError:
                raise AssertionError(f"timed out waiting for {what}; live-check.mjs printed {self.lines}") from None
        return self.lines

    async def end(self) -> Line:
        """Closes its stdin: it prints its "end" line (cache, warnings) and exits 0."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        (end,) = [line for line in await self.until(lambda lines: lines[-1:] != [] and lines[-1]["type"] == "end",
                                                    "the end line") if line["type"] == "end"]
        assert await asyncio.wait_for(self.process.wait(), WAIT) == 0
        return end


@asynccontextmanager
async def live_check(port: int, token: str, mode: str, **env: str) -> AsyncIterator[LiveCheck]:
    """clients/live-check.mjs in `mode`, on the served app at `port`, as `token`'s user."""
    process = await asyncio.create_subprocess_exec(
        "node", "live-check.mjs", cwd=CLIENTS,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "GRAPHQL_URL": f"http://127.0.0.1:{port}/graphql", "TOKEN": token, "MODE": mode,
             "NODE_OPTIONS": "--conditions=development", **env},  # Apollo's warnings are in its development build
    )
    try:
        yield LiveCheck(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _hub_count(api: Api) -> int:
    count: int = api.app.app.state.revampd.hub.open_subscriptions
    return count


async def _followed(api: Api, count: int) -> None:
    """Until the served app's hub follows `count` subscriptions (polled, with a deadline)."""
    end = asyncio.get_running_loop().time() + WAIT
    while _hub_count(api) < count:
        assert asyncio.get_running_loop().time() < end, f"the server followed {_hub_count(api)} subscriptions, not {count}"
        await asyncio.sleep(0.005)


async def _let_go(api: Api, count: int) -> None:
    """Until the served app's hub follows no more than `count` subscriptions (polled, with a deadline)."""
    end = asyncio.get_running_loop().time() + WAIT
    while _hub_count(api) > count:
        assert asyncio.get_running_loop().time() < end, f"the server still follows {_hub_count(api)} subscriptions"
        await asyncio.sleep(0.005)


async def _submit(port: int, api: Api, title: str) -> str:
    data = await post(port, api, _document("CreateTicket"),
                      {"input": {"title": title, "description": "Since this morning.", "priority": "HIGH"}}, as_=MEMBER)
    assert data["submitTicket"]["userErrors"] == []
    return str(data["submitTicket"]["ticket"]["id"])


def _events(lines: list[Line], operation: str) -> list[dict[str, Any]]:
    """The events of `operation` the script received (each must have come without errors)."""
    found = []
    for line in lines:
        if line["type"] == "next" and line["operation"] == operation:
            payload = line["payload"]
            assert not payload.get("errors") and not payload.get("error"), line
            (event,) = payload["data"].values()
            found.append(event)
    return found


def _trouble(lines: list[Line]) -> list[Line]:
    """What no user should meet: a subscription ended by an error, or the socket closed."""
    return [line for line in lines if line["type"] in ("error", "closed", "complete")]


def _requires_node() -> Path:
    return npm_project(CLIENTS)  # skips (or, with REQUIRE_NODE=1, fails) without Node.js and npm


@pytest.mark.parametrize("mode", ["graphql-ws", "graphql-sse"])
async def test_a_client_hears_of_a_ticket_a_colleague_submits(api: Api, mode: str) -> None:
    """graphql-ws's client over a WebSocket, and graphql-sse's over Server-Sent Events (it POSTs
    the subscription with the bearer token and reads the event stream): the same event; when the
    client goes away, so does the subscription."""
    _requires_node()
    title = f"Webhook retries fail ({mode})"
    with served(api.app) as port:
        before = _hub_count(api)
        async with live_check(port, api.tokens[OWNER], mode) as check:
            await _followed(api, before + 1)
            ticket = await _submit(port, api, title)
            lines = await check.until(lambda lines: _events(lines, "ConnectionEvents") != [], "the event")
            (event,) = _events(lines, "ConnectionEvents")
            assert event["action"] == "CREATED" and event["cursor"], event
            node = event["node"]
            assert (node["__typename"], node["id"], node["title"], node["status"]) == (
                "Ticket", ticket, title, "OPEN"), node
            assert node["createdBy"]["email"] == MEMBER
            assert _trouble(lines) == []
            end = await check.end()  # the client closes its socket, or aborts its request
            assert end["logged"] == []
            await _let_go(api, before)


async def test_apollo_client_s_cache_shows_support_s_status_change_and_reply(api: Api) -> None:
    """The Ticket page, open in Apollo Client, changes as support works on the ticket: the
    subscription's events update the Ticket and add the message in the normalized cache."""
    _requires_node()
    with served(api.app) as port:
        ticket = await _submit(port, api, "Invoice total looks wrong")
        before = _hub_count(api)
        async with live_check(port, api.tokens[OWNER], "apollo", TICKET_ID=ticket) as check:
            (loaded,) = await check.until(lambda lines: lines != [], "the Ticket page to load")
            assert loaded["type"] == "loaded" and loaded["status"] == "OPEN", loaded
            await _followed(api, before + 2)  # ConnectionEvents and TicketEvents

            moved = await post(port, api, _document("UpdateTicketStatus"),
                               {"input": {"ticketId": ticket, "status": "IN_PROGRESS"}}, as_=SUPPORT)
            assert moved["updateTicketStatus"]["userErrors"] == []
            replied = await post(port, api, _document("ReplyToTicket"),
                                 {"input": {"ticketId": ticket, "body": "We are on it."}}, as_=SUPPORT)
            assert replied["replyToTicket"]["userErrors"] == []
            reply = replied["replyToTicket"]["message"]["id"]

            def heard(lines: list[Line]) -> bool:
                pages = [line for line in lines if line["type"] == "page"]
                return (any(p["status"] == "IN_PROGRESS" and p["lastMessageId"] == reply for p in pages)
                        and all(any(e["node"]["id"] == reply for e in _events(lines, op))
                                for op in ("TicketEvents", "ConnectionEvents")))

            lines = await check.until(heard, "the page to show the new status and the reply")
            assert _trouble(lines) == []
            for operation in ("TicketEvents", "ConnectionEvents"):
                nodes = [e["node"] for e in _events(lines, operation)]
                assert {"__typename": "TicketMessage", "id": reply, "body": "We are on it."}.items() <= next(
                    n for n in nodes if n["id"] == reply).items(), nodes
                assert any(n["__typename"] == "Ticket" and n["id"] == ticket and n["status"] == "IN_PROGRESS"
                           for n in nodes), nodes

            end = await check.end()
            cached = end["cache"]["ticket"]
            assert cached["status"] == "IN_PROGRESS", cached
            assert cached["lastMessage"] == {"__ref": f"TicketMessage:{reply}"}, cached
            assert {"id": reply, "body": "We are on it.", "internal": False} in end["cache"]["messages"], end["cache"]
            assert end["logged"] == [], "\n".join(end["logged"])


async def test_graphql_ws_client_sees_a_bad_token_closed_with_4403(api: Api) -> None:
    _requires_node()
    with served(api.app) as port:
        async with live_check(port, "not-a-token", "graphql-ws") as check:
            lines = await check.until(lambda lines: any(line["type"] == "error" for line in lines),
                                      "the subscription to fail")
            closed = [line for line in lines if line["type"] == "closed"]
            assert closed == [{"type": "closed", "code": 4403, "reason": "Forbidden"}], lines
            errors = [line for line in lines if line["type"] == "error"]
            assert errors == [{"type": "error", "operation": "ConnectionEvents",
                               "error": {"closed": {"code": 4403, "reason": "Forbidden"}}}], lines
            assert not [line for line in lines if line["type"] == "next"], lines
            await check.end()


async def test_graphql_sse_client_reports_a_bad_token_s_401(api: Api) -> None:
    _requires_node()
    with served(api.app) as port:
        before = _hub_count(api)
        async with live_check(port, "not-a-token", "graphql-sse") as check:
            lines = await check.until(lambda lines: any(line["type"] == "error" for line in lines),
                                      "the subscription to fail")
            assert lines == [{"type": "error", "operation": "ConnectionEvents",
                              "error": {"message": "Server responded with 401: Unauthorized", "status": 401}}], lines
            end = await check.end()
            assert end["logged"] == []
        assert _hub_count(api) == before
