"""Emails from committed changes (services/notifications.py), read back from a real SMTP server
(aiosmtpd) running in the test's process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from db import models as m
from db.engine import create_engine, write_sessions
from schema.base import to_global_id
from services import notifications
from tests.clock import NOW
from tests.conftest import Api, closed_port
from tests.test_serve import free_port

OWNER = "owner@northwind.example"  # PARTNER_ADMIN
MEMBER = "member@northwind.example"  # PARTNER_MEMBER
CEDAR = "owner@cedar.example"
SUPPORT = "support@revampd.example"
BILLING = "billing@revampd.example"
SENDER = "Revampd <no-reply@revampd.example>"


class Inbox:
    """What the SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, email: str) -> list[Message]:
        return [msg for msg in self.messages if msg["To"] == email]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def _run(api: Api, port: int, now: datetime = NOW) -> notifications.Sent:
    """One run of `notifications send`: plan what the new events call for, send what is due."""
    engine = create_engine(api.settings.database_url)
    writes = write_sessions(engine)
    try:
        async with writes() as session, session.begin():
            await notifications.plan(session, now)
        return await notifications.send(writes, notifications.SmtpMailer(f"smtp://127.0.0.1:{port}", SENDER),
                                        SENDER, now)
    finally:
        await engine.dispose()


SUBMIT = "mutation($input: SubmitTicketInput!) { submitTicket(input: $input) { ticket { id } } }"
REPLY = "mutation($input: ReplyToTicketInput!) { replyToTicket(input: $input) { userErrors { code } } }"
NOTE = "mutation($input: AddTicketNoteInput!) { addTicketNote(input: $input) { userErrors { code } } }"
ISSUE = """mutation($input: IssueInvoiceInput!) { issueInvoice(input: $input) {
  invoice { number } userErrors { code message } } }"""
SET = """mutation($input: SetNotificationSettingInput!) { setNotificationSetting(input: $input) {
  setting { kind enabled walletLowThreshold { amount } } userErrors { field code } } }"""
ADJUST = "mutation($input: AdjustWalletInput!) { adjustWallet(input: $input) { userErrors { code message } } }"


async def _ticket(api: Api, title: str) -> str:
    data = await api.gql(SUBMIT, {"input": {"title": title, "description": "d", "priority": "LOW"}}, as_=MEMBER)
    return str(data["submitTicket"]["ticket"]["id"])


async def _issue(api: Api, email: str, key: str) -> str:
    cid = await api.connection_id(email)
    data = await api.gql(ISSUE, {"input": {
        "connectionId": to_global_id("RevampdConnection", cid), "dueAt": (NOW + timedelta(days=14)).isoformat(),
        "lineItems": [{"description": "Onboarding session", "quantity": 1, "unitAmount": "150.00"}],
        "idempotencyKey": key}}, as_=BILLING)
    assert data["issueInvoice"]["userErrors"] == [], data
    return str(data["issueInvoice"]["invoice"]["number"])


async def test_support_s_reply_is_emailed_once_to_the_submitter_and_an_internal_note_never(
    api: Api, smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    ticket = await _ticket(api, "Webhook retries")
    await api.gql(NOTE, {"input": {"ticketId": ticket, "body": "Secret: their firewall"}}, as_=SUPPORT)
    await api.gql(REPLY, {"input": {"ticketId": ticket, "body": "We are on it."}}, as_=SUPPORT)
    await api.gql(REPLY, {"input": {"ticketId": ticket, "body": "Thanks!"}}, as_=MEMBER)  # the Partner's own
    assert (await _run(api, port)).sent == 1
    (mail,) = inbox.messages
    assert mail["To"] == MEMBER and mail["From"] == SENDER and "Webhook retries" in mail["Subject"]
    text = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "We are on it." in text and "firewall" not in text
    assert (await _run(api, port)).sent == 0 and len(inbox.messages) == 1  # never twice


async def test_money_emails_reach_the_partner_s_administrators_who_want_them_and_nobody_else(
    api: Api, smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    number = await _issue(api, OWNER, "notify-1")
    await _issue(api, CEDAR, "notify-cedar")
    assert (await _run(api, port)).sent == 2
    (mail,) = inbox.to(OWNER)
    assert number in mail["Subject"] and "150.00 USD due" in mail["Subject"]
    assert inbox.to(MEMBER) == [] and len(inbox.to(CEDAR)) == 1  # a member is not told of money; Cedar of its own
    # The owner turns invoice emails off: the next invoice is not emailed to it.
    data = await api.gql(SET, {"input": {"kind": "INVOICE_ISSUED", "enabled": False}}, as_=OWNER)
    assert data["setNotificationSetting"] == {
        "setting": {"kind": "INVOICE_ISSUED", "enabled": False, "walletLowThreshold": None}, "userErrors": []}
    await _issue(api, OWNER, "notify-2")
    assert (await _run(api, port)).sent == 0 and len(inbox.to(OWNER)) == 1
    settings = (await api.gql("{ viewer { notificationSettings { kind enabled } } }", as_=OWNER))["viewer"]
    assert {"kind": "INVOICE_ISSUED", "enabled": False} in settings["notificationSettings"]
    assert {"kind": "WALLET_LOW", "enabled": False} in settings["notificationSettings"]  # off until a threshold
    staff = (await api.gql("{ viewer { notificationSettings { kind } } }", as_=SUPPORT))["viewer"]
    assert staff["notificationSettings"] == []  # Revampd staff receive none of these emails


async def test_a_low_wallet_is_told_once_as_it_crosses_the_owner_s_threshold(api: Api, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    refused = await api.gql(SET, {"input": {"kind": "WALLET_LOW", "enabled": True}}, as_=OWNER)
    assert refused["setNotificationSetting"]["userErrors"] == [{"field": ["input", "walletLowThreshold"],
                                                                 "code": "INVALID_AMOUNT"}]
    balance = (await api.gql("{ viewer { partner { revampdConnection { wallet { balance { amount } } } } } }",
                             as_=OWNER))["viewer"]["partner"]["revampdConnection"]["wallet"]["balance"]["amount"]
    threshold = f"{float(balance) - 10:.2f}"  # 10.00 below today's balance
    data = await api.gql(SET, {"input": {"kind": "WALLET_LOW", "enabled": True, "walletLowThreshold": threshold}},
                         as_=OWNER)
    assert data["setNotificationSetting"]["setting"]["walletLowThreshold"] == {"amount": threshold}
    cid = to_global_id("RevampdConnection", await api.connection_id(OWNER))
    for i, amount in enumerate(["-5.00", "-10.00", "-1.00"]):  # above, across, already below
        done = await api.gql(ADJUST, {"input": {"connectionId": cid, "amount": amount, "kind": "MANUAL_ADJUSTMENT",
                                                "memo": "test", "idempotencyKey": f"low-{i}"}}, as_=BILLING)
        assert done["adjustWallet"]["userErrors"] == []
    assert (await _run(api, port)).sent == 1
    (mail,) = inbox.to(OWNER)
    assert "Wallet balance" in mail["Subject"]


async def test_with_the_smtp_server_down_then_back_nothing_is_lost_and_nothing_sent_twice(
    api: Api, smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    await _ticket(api, "Down and back")
    ticket = (await api.rows(select(m.Ticket.id).where(m.Ticket.title == "Down and back")))[0][0]
    await api.gql(REPLY, {"input": {"ticketId": to_global_id("Ticket", ticket), "body": "Hello"}}, as_=SUPPORT)
    down = await _run(api, closed_port())
    assert (down.sent, down.retried) == (0, 1)
    (row,) = await api.rows(select(m.Notification.status, m.Notification.attempts, m.Notification.next_attempt_at))
    assert (row.status, row.attempts) == ("PENDING", 1) and row.next_attempt_at == NOW + timedelta(minutes=1)
    assert (await _run(api, port)).sent == 0  # not due yet
    assert (await _run(api, port, NOW + timedelta(minutes=1))).sent == 1
    assert (await _run(api, port, NOW + timedelta(minutes=2))).sent == 0 and len(inbox.messages) == 1


async def test_two_senders_at_once_send_each_email_once(api: Api, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    ticket = await _ticket(api, "Many replies")
    for i in range(20):
        await api.gql(REPLY, {"input": {"ticketId": ticket, "body": f"Reply {i}"}}, as_=SUPPORT)
    await asyncio.gather(_run(api, port), _run(api, port))
    assert len(inbox.messages) == 20
    assert len({msg["Message-ID"] for msg in inbox.messages}) == 20
    assert len(await api.rows(select(m.Notification.id).where(m.Notification.status == "SENT"))) == 20


async def test_the_billing_run_s_declined_card_is_emailed_with_its_invoice(api: Api, smtp: tuple[Inbox, int]) -> None:
    """The billing run (a process of its own) issues Cedar's invoice and the card is declined:
    Cedar's owner hears of both, once, each worded from the committed invoice."""
    from tests.test_billing import DAY, billing_run, period_end, set_card, set_wallet

    inbox, port = smtp
    await set_card(api, CEDAR, "tok_chargeDeclined_0002")
    await set_wallet(api, CEDAR, 1000)
    now = await period_end(api, CEDAR) + DAY
    assert (await billing_run(api, now)).code == 0
    assert (await _run(api, port, now)).sent == 2
    subjects = sorted(str(msg["Subject"]) for msg in inbox.to(CEDAR))
    assert subjects[0].startswith("Invoice ") and subjects[0].endswith(": 39.00 USD due")
    assert subjects[1].startswith("Your card was declined for invoice ")
    body = inbox.to(CEDAR)[[str(s["Subject"]) for s in inbox.to(CEDAR)].index(subjects[1])].get_payload(decode=True)
    assert isinstance(body, bytes) and b"Your card was declined." in body and b"Pay it now" in body
    assert (await _run(api, port, now)).sent == 0
