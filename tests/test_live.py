"""Live updates over graphql-transport-ws: what a viewer hears of committed changes, and when."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from db import models as m
from db.engine import create_engine, read_sessions, write_sessions
from db.states import Role
from schema.base import to_global_id
from schema.live import TICKET_SUBJECTS as TICKETS
from schema.live import FellBehind
from server.live import Hub
from services import tickets as ticket_service
from services.access import Principal
from tests import clock
from tests.clock import NOW
from tests.conftest import REDIS_URL, Api, Databases, closed_port, make_api
from tests.live import hub, post, socket
from tests.served import served, until
from tests.test_serve import free_port, get, until_up

OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"
CEDAR = "owner@cedar.example"
SUPPORT = "support@revampd.example"

EVENT = """cursor action occurredAt node {
  __typename id
  ... on Ticket { status title assignedTo { email } }
  ... on TicketMessage { body internal author { email } }
  ... on Invoice { invoiceStatus: status amountDue { amount } }
  ... on Wallet { balance { amount } }
  ... on WalletEntry { amount { amount } }
}"""
CONNECTION_EVENTS = f"subscription($after: String) {{ connectionEvents(after: $after) {{ {EVENT} }} }}"
TICKET_EVENTS = f"subscription($id: ID!) {{ ticketEvents(ticketId: $id) {{ {EVENT} }} }}"
QUEUE = f"subscription {{ supportQueueEvents {{ {EVENT} }} }}"

SUBMIT = """mutation($input: SubmitTicketInput!) { submitTicket(input: $input) { ticket { id } userErrors { code } } }"""
REPLY = """mutation($input: ReplyToTicketInput!) { replyToTicket(input: $input) { message { id } userErrors { code } } }"""
NOTE = """mutation($input: AddTicketNoteInput!) { addTicketNote(input: $input) { message { id } userErrors { code } } }"""


async def _submit(port: int, api: Api, title: str, *, as_: str = MEMBER) -> str:
    data = await post(port, api, SUBMIT, {"input": {"title": title, "description": "d", "priority": "LOW"}}, as_=as_)
    assert data["submitTicket"]["userErrors"] == []
    return str(data["submitTicket"]["ticket"]["id"])


async def _reply(port: int, api: Api, ticket: str, body: str, *, as_: str) -> None:
    data = await post(port, api, REPLY, {"input": {"ticketId": ticket, "body": body}}, as_=as_)
    assert data["replyToTicket"]["userErrors"] == []


async def _note(port: int, api: Api, ticket: str, body: str) -> None:
    data = await post(port, api, NOTE, {"input": {"ticketId": ticket, "body": body}}, as_=SUPPORT)
    assert data["addTicketNote"]["userErrors"] == []


def _node(message: dict[str, Any]) -> dict[str, Any]:
    assert message["type"] == "next" and not message["payload"].get("errors"), message
    node: dict[str, Any] = message["payload"]["data"]
    return next(iter(node.values()))["node"]  # type: ignore[no-any-return]


async def test_a_partner_hears_of_support_s_reply_and_never_of_an_internal_note(api: Api) -> None:
    with served(api.app) as port:
        ticket = await _submit(port, api, "Webhook retries")
        async with socket(port, api.tokens[MEMBER]) as ws:
            sid = await ws.subscribe(TICKET_EVENTS, {"id": ticket}, api=api)
            await _note(port, api, ticket, "Looks like their firewall")  # staff only
            await _reply(port, api, ticket, "We are on it.", as_=SUPPORT)
            node = _node(await ws.next(sid))
            # The note, committed first, never reaches the Partner: the reply is the first it hears,
            # shown as a query shows it to a Partner (support's email is not the Partner's to read).
            assert node == {"__typename": "TicketMessage", "id": node["id"], "body": "We are on it.",
                            "internal": False, "author": {"email": None}}
            node = _node(await ws.next(sid))  # the reply moved the ticket along
            assert node["__typename"] == "Ticket" and node["id"] == ticket


async def test_support_s_queue_hears_of_every_partner_s_tickets_and_notes(api: Api) -> None:
    with served(api.app) as port:
        async with socket(port, api.tokens[SUPPORT]) as ws:
            sid = await ws.subscribe(QUEUE, api=api)
            ticket = await _submit(port, api, "Invoice question", as_=CEDAR)
            created = await ws.next(sid)
            assert created["payload"]["data"]["supportQueueEvents"]["action"] == "CREATED"
            assert _node(created) == {"__typename": "Ticket", "id": ticket, "status": "OPEN",
                                      "title": "Invoice question", "assignedTo": None}
            await _note(port, api, ticket, "Check the card on file")
            assert _node(await ws.next(sid))["internal"] is True


async def test_another_partner_hears_nothing_of_a_change_it_may_not_read(api: Api) -> None:
    with served(api.app) as port:
        async with socket(port, api.tokens[CEDAR]) as cedar, socket(port, api.tokens[OWNER]) as northwind:
            c = await cedar.subscribe(CONNECTION_EVENTS, api=api)
            n = await northwind.subscribe(CONNECTION_EVENTS, api=api)
            await _submit(port, api, "Northwind's own")  # announced first: it would reach Cedar first
            await _submit(port, api, "Cedar's own", as_=CEDAR)
            assert _node(await cedar.next(c))["title"] == "Cedar's own"
            assert _node(await northwind.next(n))["title"] == "Northwind's own"


@pytest.mark.parametrize("token", ["not-a-token", None])
async def test_a_socket_without_a_good_token_is_closed_as_the_protocol_says(api: Api, token: str | None) -> None:
    with served(api.app) as port:
        async with socket(port) as ws:
            await ws.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"} if token else {}})
            assert await ws.closed() == (4403, "Forbidden")
        async with socket(port) as ws:  # subscribing before connection_init
            await ws.subscribe(CONNECTION_EVENTS)
            assert await ws.closed() == (4401, "Unauthorized")


async def test_a_refused_change_is_never_heard_of(api: Api) -> None:
    with served(api.app) as port:
        async with socket(port, api.tokens[OWNER]) as ws:
            sid = await ws.subscribe(CONNECTION_EVENTS, api=api)
            refused = await post(port, api, SUBMIT, {"input": {"title": "", "description": "d", "priority": "LOW"}},
                                 as_=MEMBER)
            assert refused["submitTicket"]["userErrors"] == [{"code": "INVALID_TITLE"}]
            await _submit(port, api, "After the refusal")
            assert _node(await ws.next(sid))["title"] == "After the refusal"


async def test_a_subscriber_back_with_its_cursor_gets_what_it_missed_in_order(api: Api) -> None:
    with served(api.app) as port:
        async with socket(port, api.tokens[OWNER]) as ws:
            sid = await ws.subscribe(CONNECTION_EVENTS, api=api)
            await _submit(port, api, "Seen")
            cursor = (await ws.next(sid))["payload"]["data"]["connectionEvents"]["cursor"]
        for title in ("Missed 1", "Missed 2"):  # while it was away
            await _submit(port, api, title)
        async with socket(port, api.tokens[OWNER]) as ws:
            sid = await ws.subscribe(CONNECTION_EVENTS, {"after": cursor})
            assert [_node(await ws.next(sid))["title"] for _ in range(2)] == ["Missed 1", "Missed 2"]
            await _submit(port, api, "Live again")
            assert _node(await ws.next(sid))["title"] == "Live again"
        async with socket(port, api.tokens[CEDAR]) as ws:  # another connection's cursor
            sid = await ws.subscribe(CONNECTION_EVENTS, {"after": cursor})
            message = await ws.next(sid)
            assert message["payload"]["errors"][0]["extensions"]["code"] == "INVALID_CURSOR", message


async def test_a_subscription_ends_when_its_token_expires(api: Api) -> None:
    from server.auth import issue_dev_token

    short = api.settings.__class__(**{**api.settings.__dict__, "jwt_ttl_seconds": 2})
    (partner_id,) = (await api.rows(select(m.User.partner_id).where(m.User.email == OWNER)))[0]
    token = issue_dev_token(short, api.ids[OWNER], partner_id, ["PARTNER_ADMIN"])
    with served(api.app) as port:
        async with socket(port, token) as ws:
            sid = await ws.subscribe(CONNECTION_EVENTS)
            message = await ws.next(sid)
            assert message["type"] == "next" and message["payload"]["errors"][0]["extensions"]["code"] == \
                "UNAUTHENTICATED", message
            assert (await ws.next(sid))["type"] == "complete"


async def test_subscriptions_are_capped_per_socket_and_per_user(databases: Databases) -> None:
    api = await make_api(await databases.clone(), live_max_subscriptions_per_connection=2,
                         live_max_subscriptions_per_user=3)
    try:
        with served(api.app) as port:
            async with socket(port, api.tokens[OWNER]) as one, socket(port, api.tokens[OWNER]) as two:
                for _ in range(2):
                    await one.subscribe(CONNECTION_EVENTS, api=api)
                third = await one.subscribe(CONNECTION_EVENTS)
                assert (await one.next(third))["payload"][0]["message"] == "Subscription limit reached"
                await two.subscribe(CONNECTION_EVENTS, api=api)  # the user's third
                fourth = await two.subscribe(CONNECTION_EVENTS)
                message = await two.next(fourth)
                assert message["payload"]["errors"][0]["extensions"]["code"] == "SUBSCRIPTION_LIMIT", message
                async with socket(port, api.tokens[MEMBER]) as other:  # another user is not held back
                    await other.subscribe(CONNECTION_EVENTS, api=api)
    finally:
        await api.http.aclose()
        await api.engine.dispose()


async def test_queries_and_mutations_go_over_http_and_bad_documents_are_refused(api: Api) -> None:
    with served(api.app) as port:
        async with socket(port, api.tokens[OWNER]) as ws:
            sid = await ws.subscribe("{ viewer { id } }")
            message = await ws.next(sid)
            assert message["type"] == "error" and "subscription" in message["payload"][0]["message"].lower(), message
            sid = await ws.subscribe("subscription { connectionEvents { nope } }")
            message = await ws.next(sid)
            assert message["type"] == "error" and "nope" in message["payload"][0]["message"], message
            await ws.send({"type": "subscribe"})  # no id, no payload
            assert (await ws.closed())[0] == 4400


async def test_a_subscriber_too_slow_is_dropped_not_buffered(api: Api) -> None:
    """Its queue holds LIVE_QUEUE_SIZE events; past that it is dropped (and told why), while
    the change itself and other subscribers carry on."""
    cid = await api.connection_id(MEMBER)
    (partner_id,) = (await api.rows(select(m.User.partner_id).where(m.User.email == MEMBER)))[0]
    member = Principal(api.ids[MEMBER], partner_id, cid, frozenset({Role.PARTNER_MEMBER}))
    (ticket_id,) = (await api.rows(select(m.Ticket.id).where(m.Ticket.connection_id == cid,
                                                               m.Ticket.status == "OPEN").limit(1)))[0]
    engine = create_engine(api.settings.database_url)
    hub = Hub(read_sessions(engine), queue_size=3, poll_seconds=3600)
    writes = write_sessions(engine, announce=hub.announce)
    try:
        async with hub.follow(cid, member.user_id, None) as slow, hub.follow(cid, 99, None) as reader:
            for i in range(3):  # each reply is two events: the message, and the ticket it moved
                async with writes() as session, session.begin():
                    await ticket_service.reply(session, member, ticket_id, f"reply {i}", NOW + timedelta(minutes=i + 1))
                got = [await asyncio.wait_for(reader.queue.get(), 20) for _ in range(2)]  # read as they come
                assert [e.subject for e in got] == ["ticket_messages", "tickets"]
            assert slow.dropped and slow.queue.qsize() == 1
            assert isinstance(slow.queue.get_nowait(), FellBehind)
    finally:
        await hub.stop()
        await engine.dispose()


async def test_with_redis_out_of_reach_changes_still_commit_and_this_worker_s_subscribers_hear_of_them(
    databases: Databases, caplog: pytest.LogCaptureFixture,
) -> None:
    api = await make_api(await databases.clone(), redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    try:
        with served(api.app) as port:
            async with socket(port, api.tokens[OWNER]) as ws:
                sid = await ws.subscribe(CONNECTION_EVENTS, api=api)
                for title in ("First", "Second"):
                    await _submit(port, api, title)
                    assert _node(await ws.next(sid))["title"] == title
    finally:
        await api.http.aclose()
        await api.engine.dispose()
    warnings = [r for r in caplog.records if r.name == "revampd.live" and r.levelname == "WARNING"]
    assert len(warnings) == 1 and "Redis out of reach" in warnings[0].getMessage()


@pytest.mark.redis
async def test_a_change_made_through_one_server_reaches_a_subscriber_of_another(
    databases: Databases, redis_prefix: str, redis_keys: Any,
) -> None:
    """Two `serve` processes sharing the database and Redis (and polling only once an hour, so
    only Redis can tell the second in time)."""
    url = await databases.clone()
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": redis_prefix,
           "LIVE_POLL_SECONDS": "3600"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    ports = [free_port(), free_port()]
    # --no-jobs: the background jobs' own events (a bank transfer synced) are not this test's.
    servers = [subprocess.Popen(clock.command("server.cli", "serve", "--no-jobs", "--port", str(p)), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in ports]
    api = await make_api(url)
    try:
        for p, server in zip(ports, servers, strict=True):
            until_up(f"http://127.0.0.1:{p}/healthz", server)
        async with socket(ports[0], api.tokens[OWNER]) as ws:
            sid = await ws.subscribe(CONNECTION_EVENTS)
            until(lambda: _open_subscriptions(ports[0]) == 1, "the first server to follow the subscription")
            await _submit(ports[1], api, "Through the other server")
            assert _node(await ws.next(sid))["title"] == "Through the other server"
    finally:
        for server in servers:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=20)
        await api.http.aclose()
        await api.engine.dispose()


def _open_subscriptions(port: int) -> float:
    _, body = get(f"http://127.0.0.1:{port}/metrics")
    found = re.search(rb"^revampd_live_subscriptions (\S+)$", body, re.M)
    return float(found.group(1)) if found else 0.0


async def test_server_sent_events_carry_the_same_events_as_graphql_sse_s_distinct_connections(api: Api) -> None:
    with served(api.app) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            refused = await http.post("/graphql", json={"query": CONNECTION_EVENTS},
                                      headers={"Accept": "text/event-stream"})
            assert refused.status_code == 401
            before = hub(api).open_subscriptions
            async with http.stream("POST", "/graphql", json={"query": CONNECTION_EVENTS, "variables": {}},
                                   headers={"Accept": "text/event-stream",
                                            "Authorization": f"Bearer {api.tokens[OWNER]}"}) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                until(lambda: hub(api).open_subscriptions > before, "the subscription to be followed")
                await _submit(port, api, "Over SSE")
                lines = stream.aiter_lines()
                event = [await anext(lines) for _ in range(2)]
                assert event[0] == "event: next"
                data = json.loads(event[1].removeprefix("data: "))
                assert data["data"]["connectionEvents"]["node"]["title"] == "Over SSE"
            until(lambda: hub(api).open_subscriptions == before, "the subscription to end with its stream")


async def test_every_kind_of_object_a_connection_event_names_is_sent_as_it_now_stands(api: Api) -> None:
    """Each followed table's change reaches the Partner as its node: a bank transfer (which needs
    its payout's currency), a wallet entry and the wallet, an invoice, a plan subscription."""
    from db.events import SUBJECTS, note

    cid = await api.connection_id(OWNER)
    rows = {
        "bank_transfers": select(m.BankTransfer.id).join(m.Payout).where(m.Payout.connection_id == cid),
        "ledger_entries": select(m.LedgerEntry.id).join(m.LedgerAccount)
        .where(m.LedgerAccount.connection_id == cid, m.LedgerAccount.kind == "WALLET"),
        "invoices": select(m.Invoice.id).where(m.Invoice.connection_id == cid),
        "payouts": select(m.Payout.id).where(m.Payout.connection_id == cid),
        "addons": select(m.AddOn.id).where(m.AddOn.connection_id == cid),
        "affiliate_payouts": select(m.AffiliatePayout.id).where(m.AffiliatePayout.connection_id == cid),
    }
    subjects = {subject: (await api.rows(stmt.limit(1)))[0][0] for subject, stmt in rows.items()}
    subjects |= {"subscriptions": cid, "wallets": cid}
    assert set(subjects) | set(TICKETS) == set(SUBJECTS.values())
    expected = {"bank_transfers": "BankTransfer", "ledger_entries": "WalletEntry", "invoices": "Invoice",
                "payouts": "Payout", "addons": "AddOn", "affiliate_payouts": "AffiliatePayout",
                "subscriptions": "PlanSubscription", "wallets": "Wallet"}
    engine = create_engine(api.settings.database_url)
    with served(api.app) as port:
        async with socket(port, api.tokens[OWNER]) as ws:
            sid = await ws.subscribe("subscription { connectionEvents { node { __typename id } } }", api=api)
            try:
                async with write_sessions(engine, announce=hub(api).announce)() as session, session.begin():
                    for subject, pk in subjects.items():
                        note(session, cid, subject, pk)
            finally:
                await engine.dispose()
            got = [(await ws.next(sid))["payload"]["data"]["connectionEvents"]["node"] for _ in subjects]
    assert [n["__typename"] for n in got] == [expected[s] for s in subjects]
    assert [n["id"] for n in got] == [to_global_id(expected[s], pk) for s, pk in subjects.items()]


BILLING = "billing@revampd.example"
ADJUST = """mutation($input: AdjustWalletInput!) { adjustWallet(input: $input) { userErrors { code } } }"""


async def test_billing_hears_where_money_moved_for_every_partner_and_others_may_not_listen(api: Api) -> None:
    cedar = await api.connection_id(CEDAR)
    with served(api.app) as port:
        async with socket(port, api.tokens[BILLING]) as ws:
            sid = await ws.subscribe(f"subscription {{ billingEvents {{ {EVENT} }} }}", api=api)
            await _submit(port, api, "Not money")  # a ticket: not billing's to hear of
            data = await post(port, api, ADJUST, {"input": {
                "connectionId": to_global_id("RevampdConnection", cedar), "amount": "25.00",
                "kind": "MANUAL_ADJUSTMENT", "memo": "Goodwill credit", "idempotencyKey": "live-1"}}, as_=BILLING)
            assert data["adjustWallet"]["userErrors"] == []
            nodes = [_node(await ws.next(sid)) for _ in range(2)]
            assert {n["__typename"] for n in nodes} == {"WalletEntry", "Wallet"}
            assert {n["id"] for n in nodes} >= {to_global_id("Wallet", cedar)}
            entry = next(n for n in nodes if n["__typename"] == "WalletEntry")
            assert entry["amount"]["amount"] == "25.00"
        for who in (SUPPORT, OWNER):
            async with socket(port, api.tokens[who]) as ws:
                sid = await ws.subscribe("subscription { billingEvents { cursor } }")
                message = await ws.next(sid)
                assert message["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN", message


@pytest.mark.redis
async def test_redis_away_and_back_loses_nothing(databases: Databases) -> None:
    """Two workers (apps) sharing a Redis of the test's own, polling only hourly: a change made
    while Redis is down still commits, and reaches the other worker's subscriber once Redis is back."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("needs redis-server (Debian: apt-get install redis-server)")
    port = free_port()

    def start() -> subprocess.Popen[bytes]:
        server = subprocess.Popen([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until(lambda: _answers(port), "redis-server to start")
        return server

    redis = start()
    url = await databases.clone()
    a, b = [await make_api(url, redis_url=f"redis://127.0.0.1:{port}/0", live_poll_seconds=3600) for _ in range(2)]
    try:
        with served(a.app) as on_a, served(b.app) as on_b:
            async with socket(on_a, a.tokens[OWNER]) as ws:
                sid = await ws.subscribe(CONNECTION_EVENTS, api=a)
                await _submit(on_b, b, "Before")
                assert _node(await ws.next(sid))["title"] == "Before"
                redis.terminate()
                redis.wait(timeout=20)
                await _submit(on_b, b, "While Redis was away")  # commits all the same
                redis = start()
                assert _node(await ws.next(sid))["title"] == "While Redis was away"
                await _submit(on_b, b, "After")
                assert _node(await ws.next(sid))["title"] == "After"
    finally:
        redis.terminate()
        redis.wait(timeout=20)
        for api in (a, b):
            await api.http.aclose()
            await api.engine.dispose()


def _answers(port: int) -> bool:
    import socket as sockets

    try:
        with sockets.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


POOL_WAIT = 0.05


async def _each(ws: Any, ids: list[str]) -> list[dict[str, Any]]:
    """The first message of each of these subscriptions of one socket, whatever their order."""
    got: dict[str, dict[str, Any]] = {}
    while len(got) < len(ids):
        message = await ws.receive()
        if message.get("id") in ids:
            got.setdefault(message["id"], message)
    return [got[i] for i in ids]


async def test_a_change_fanned_out_wider_than_the_pool_ends_no_subscription(databases: Databases) -> None:
    """One pooled connection that a reader waits 50 ms for at most: 30 subscribers read their
    event one at a time (LIVE_READS_AT_ONCE=1) and none is ended as busy. (Read all at once, the
    pool's timeout ended some of them when this was written; that depends on the machine's speed,
    so it is not a test.)"""
    api = await make_api(await databases.clone(), db_pool_size=1, db_max_overflow=0, db_pool_timeout=POOL_WAIT,
                         live_reads_at_once=1)
    try:
        with served(api.app) as port:
            async with socket(port, api.tokens[OWNER]) as ws:
                ids = [await ws.subscribe("subscription { connectionEvents { node { id } } }", api=api)
                       for _ in range(15)]
                async with socket(port, api.tokens[MEMBER]) as other:
                    more = [await other.subscribe("subscription { connectionEvents { node { id } } }", api=api)
                            for _ in range(15)]
                    await _submit(port, api, "Fanned out")
                    got = [*(await _each(ws, ids)), *(await _each(other, more))]
        busy = [g for g in got if g["type"] != "next" or g["payload"].get("errors")]
        assert busy == [] and len(got) == 30, busy[:2]
    finally:
        await api.http.aclose()
        await api.engine.dispose()


async def test_a_viewers_subscriptions_read_an_event_once_between_them(api: Api) -> None:
    """Twelve subscriptions of one user on two sockets cost the database what one does: the
    event is read once for them all (one session, the user checked again once, the ticket loaded
    once), and each executes its own selection on that read."""
    from sqlalchemy import event

    engine = api.app.app.state.revampd.db.sync_engine
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    async def delivered(port: int, sockets: int, each: int, title: str) -> int:
        nonlocal statements
        async with socket(port, api.tokens[OWNER]) as a, socket(port, api.tokens[OWNER]) as b:
            subscribed = [(ws, [await ws.subscribe(CONNECTION_EVENTS, api=api) for _ in range(each)])
                          for ws in (a, b)[:sockets]]
            statements = 0
            event.listen(engine, "before_cursor_execute", count)
            try:
                await _submit(port, api, title)
                for ws, ids in subscribed:
                    assert {_node(m)["title"] for m in await _each(ws, ids)} == {title}
            finally:
                event.remove(engine, "before_cursor_execute", count)
        return statements

    with served(api.app) as port:
        await delivered(port, 1, 1, "Warming up")
        one = await delivered(port, 1, 1, "To one")
        twelve = await delivered(port, 2, 6, "To twelve")
    assert twelve == one, f"{twelve} statements for twelve subscriptions, {one} for one"
