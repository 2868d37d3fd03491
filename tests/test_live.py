"""Live updates over graphql-transport-ws: what a viewer hears of committed changes, and when."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from db import models as m
from tests.conftest import Api, Databases, make_api
from tests.live import post, socket
from tests.served import served

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
