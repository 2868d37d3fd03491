"""Emails from committed changes: how a Partner learns of money (and of support's replies) when
the dashboard is closed.

The events a transaction writes (db/events.py) are the outbox: a change that rolled back has
none, so it is never told of. `plan` reads each connection's new events in commit order (from
its `NotificationCursor`) and writes one `Notification` per user to tell and thing to tell of
(`key`: the database holds one per user and key, so an invoice changed three times while open is
told of once), worded from the committed rows. `send` then takes the due ones and hands them to
the SMTP server outside any transaction: it marks them taken (`sending_at`) first, then calls,
then records SENT, or the failure with the next attempt (backoff doubling from a minute, at most
an hour; FAILED after MAX_ATTEMPTS). A sender that dies between the call and the record leaves
the email to be sent again after TAKEN_FOR; each email carries a Message-ID made from its row, so
a duplicate is recognisable as one.

Who is told: a Partner's administrators of its money (invoice issued, card declined, payout made,
a bank transfer paid, failed or returned, the wallet below the threshold they set), and a
ticket's submitter of support's replies (never an internal note); each only if their setting for
the kind is on (on by default, but for WALLET_LOW, which needs a threshold), and only users of
the connection's own Partner.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import unquote, urlsplit

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import models as m
from db.states import (
    PARTNER_ROLES,
    AccountKind,
    InvoiceStatus,
    NotificationKind,
    NotificationStatus,
    Role,
    TransferStatus,
)
from services import money
from services.access import Principal
from services.clock import now_or
from services.errors import DomainError, ErrorCode, InvalidInput

log = logging.getLogger("revampd.notifications")

Kind = NotificationKind
MAX_ATTEMPTS = 8
TAKEN_FOR = timedelta(minutes=10)
BATCH = 200
TOLD = (TransferStatus.PAID, TransferStatus.FAILED, TransferStatus.RETURNED)


# ---- settings -----------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    kind: Kind
    enabled: bool
    threshold: int | None  # WALLET_LOW: minor units


def _default(kind: Kind) -> bool:
    return kind is not Kind.WALLET_LOW  # told of a low balance only once a threshold is set


async def settings(session: AsyncSession, principal: Principal) -> list[Setting]:
    """The user's setting for every kind (the default where none was chosen); none for Revampd
    staff, who receive none of these emails."""
    if not principal.has(*PARTNER_ROLES) or principal.connection_id is None:
        return []
    chosen = {s.kind: s for s in await session.scalars(
        select(m.NotificationSetting).where(m.NotificationSetting.user_id == principal.user_id))}
    found = []
    for kind in Kind:
        row = chosen.get(kind.value)
        found.append(Setting(kind, row.enabled if row else _default(kind), row.threshold if row else None))
    return found


async def choose(
    session: AsyncSession, principal: Principal, kind: Kind, enabled: bool, threshold: str | None,
    now: datetime | None = None,
) -> tuple[Setting, str]:
    """A Partner user's choice for one kind (WALLET_LOW: on needs `threshold`, in the
    connection's currency); the setting and that currency."""
    if not principal.has(*PARTNER_ROLES) or principal.connection_id is None:
        raise DomainError(ErrorCode.FORBIDDEN, "Only a Partner's users receive these emails.")
    currency = await session.scalar(select(m.Connection.currency_code).where(m.Connection.id == principal.connection_id))
    assert currency is not None
    minor = None
    if threshold is not None:
        if kind is not Kind.WALLET_LOW:
            raise InvalidInput([DomainError(ErrorCode.INVALID_AMOUNT, "Only WALLET_LOW takes a threshold.",
                                            "walletLowThreshold")])
        minor = money.parse(threshold, currency, "walletLowThreshold")
    if kind is Kind.WALLET_LOW and enabled and minor is None:
        raise InvalidInput([DomainError(ErrorCode.INVALID_AMOUNT, "Give the balance to be told of falling below.",
                                        "walletLowThreshold")])
    row = await session.get(m.NotificationSetting, (principal.user_id, kind.value))
    if row is None:
        row = m.NotificationSetting(user_id=principal.user_id, kind=kind.value, enabled=enabled)
        session.add(row)
    row.enabled, row.threshold, row.updated_at = enabled, minor, now_or(now)
    await session.flush()
    return Setting(kind, enabled, minor), currency


# ---- planning: events -> notifications ------------------------------------------------------

@dataclass(frozen=True)
class Notice:
    kind: Kind
    key: str
    subject: str
    body: str
    to: Sequence[int] | None = None  # users told; None: the connection's money administrators


async def plan(session: AsyncSession, now: datetime, batch: int = BATCH) -> int:
    """Turn the events committed since the last plan into notifications, in one transaction
    (the caller's); returns how many were written. Run by one sender at a time per connection:
    each connection's cursor is locked while its events are read."""
    behind = (await session.execute(
        select(m.EventSequence.connection_id, m.EventSequence.last_seq, m.NotificationCursor.last_seq)
        .outerjoin(m.NotificationCursor, m.NotificationCursor.connection_id == m.EventSequence.connection_id)
        .where(or_(m.NotificationCursor.last_seq.is_(None), m.NotificationCursor.last_seq < m.EventSequence.last_seq))
        .order_by(m.EventSequence.connection_id)
    )).all()
    written = 0
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for connection_id, last, _ in behind:
        # Made if need be (a planner at the same time waits for it), then locked: one planner per connection.
        await session.execute(insert(m.NotificationCursor).values(connection_id=connection_id, last_seq=0)
                              .on_conflict_do_nothing(index_elements=["connection_id"]))
        cursor = await session.scalar(select(m.NotificationCursor).where(
            m.NotificationCursor.connection_id == connection_id).with_for_update()
            .execution_options(populate_existing=True))
        assert cursor is not None
        events = list(await session.scalars(
            select(m.Event).where(m.Event.connection_id == connection_id, m.Event.seq > cursor.last_seq,
                                  m.Event.seq <= last).order_by(m.Event.seq).limit(batch)))
        for event in events:
            written += await _write(session, event, await _notices(session, event), now)
        if events:
            cursor.last_seq = events[-1].seq
        await session.flush()
    return written


async def _notices(session: AsyncSession, event: m.Event) -> list[Notice]:
    """What an event is worth telling, from the rows as committed."""
    if event.subject == "invoices":
        invoice = await session.get(m.Invoice, event.subject_id)
        if invoice is None or invoice.status != InvoiceStatus.OPEN:
            return []
        due = money.format(invoice.total - invoice.amount_paid, invoice.currency_code)
        found = [Notice(Kind.INVOICE_ISSUED, f"invoice-issued:{invoice.id}", f"Invoice {invoice.number}: {due} due",
                        f"Revampd issued invoice {invoice.number}; {due} is due"
                        + (f" by {invoice.due_at:%Y-%m-%d}." if invoice.due_at else "."))]
        if invoice.payment_error:
            found.append(Notice(
                Kind.CHARGE_DECLINED, f"card-declined:{invoice.id}:{invoice.payment_attempts}",
                f"Your card was declined for invoice {invoice.number}",
                f"The card on file was declined for invoice {invoice.number} ({due}): {invoice.payment_error}. "
                "Pay it now from the Invoices page, by card or from the wallet."))
        return found
    if event.subject == "payouts" and event.action == "CREATED":
        payout = await session.get(m.Payout, event.subject_id)
        if payout is None:
            return []
        amount = money.format(payout.amount, payout.currency_code)
        return [Notice(Kind.PAYOUT_MADE, f"payout-made:{payout.id}", f"Your payout of {amount} is ready",
                       f"Your earnings from {payout.period_start:%Y-%m-%d} to {payout.period_end:%Y-%m-%d}: "
                       f"{amount}, now {payout.status.lower().replace('_', ' ')}.")]
    if event.subject == "bank_transfers":
        return await _transfer(session, event.subject_id)
    if event.subject == "ledger_entries" and event.action == "CREATED":
        return await _wallet(session, event.subject_id)
    if event.subject == "ticket_messages" and event.action == "CREATED":
        return await _reply(session, event.subject_id)
    return []


async def _transfer(session: AsyncSession, transfer_id: int) -> list[Notice]:
    row = (await session.execute(
        select(m.BankTransfer, m.Payout.currency_code, m.BankAccount.bank_name, m.BankAccount.account_last4)
        .join(m.Payout, m.Payout.id == m.BankTransfer.payout_id)
        .join(m.BankAccount, m.BankAccount.id == m.BankTransfer.bank_account_id)
        .where(m.BankTransfer.id == transfer_id))).first()
    if row is None or row[0].status not in TOLD:
        return []
    transfer, currency, bank, last4 = row
    amount, status = money.format(transfer.amount, currency), transfer.status.lower()
    why = {TransferStatus.PAID: "arrived at", TransferStatus.FAILED: "failed to reach",
           TransferStatus.RETURNED: "was returned by"}[TransferStatus(transfer.status)]
    detail = f" ({transfer.failure_code or transfer.return_code})" if (transfer.failure_code or transfer.return_code) else ""
    again = "" if transfer.status == TransferStatus.PAID else " The amount is available on the payout again."
    return [Notice(Kind.BANK_TRANSFER_UPDATE, f"bank-transfer:{transfer.id}:{transfer.status}",
                   f"Bank transfer of {amount} {status}",
                   f"Your bank transfer of {amount} {why} {bank} ending {last4}{detail}.{again}")]


async def _wallet(session: AsyncSession, entry_id: int) -> list[Notice]:
    row = (await session.execute(
        select(m.LedgerEntry, m.LedgerAccount.currency_code).join(m.LedgerAccount)
        .where(m.LedgerEntry.id == entry_id, m.LedgerAccount.kind == AccountKind.WALLET))).first()
    if row is None:
        return []
    entry, currency = row
    before = entry.balance_after - entry.amount
    # Told once, as the balance crosses below each user's own threshold.
    return [Notice(Kind.WALLET_LOW, f"wallet-low:{entry.id}", f"Wallet balance {money.format(entry.balance_after, currency)}",
                   f"Your Revampd wallet went from {money.format(before, currency)} to "
                   f"{money.format(entry.balance_after, currency)}.", to=None)] if entry.amount < 0 else []


async def _reply(session: AsyncSession, message_id: int) -> list[Notice]:
    row = (await session.execute(
        select(m.TicketMessage, m.Ticket, m.User.role, m.Connection.ticket_prefix)
        .join(m.Ticket, m.Ticket.id == m.TicketMessage.ticket_id)
        .join(m.User, m.User.id == m.TicketMessage.author_id)
        .join(m.Connection, m.Connection.id == m.Ticket.connection_id)
        .where(m.TicketMessage.id == message_id))).first()
    if row is None:
        return []
    message, ticket, role, prefix = row
    if message.internal or role != Role.SUPPORT:
        return []
    return [Notice(Kind.TICKET_REPLY, f"ticket-reply:{message.id}", f"Support replied to {prefix}-{ticket.number}: {ticket.title}",
                   f"{message.body}\n\n(Reply from the Tickets page.)", to=[ticket.created_by_id])]


async def _write(session: AsyncSession, event: m.Event, notices: list[Notice], now: datetime) -> int:
    if not notices:
        return 0
    users = (await session.execute(
        select(m.User.id, m.User.role, m.NotificationSetting.kind, m.NotificationSetting.enabled,
               m.NotificationSetting.threshold)
        .join(m.Connection, m.Connection.partner_id == m.User.partner_id)
        .outerjoin(m.NotificationSetting, m.NotificationSetting.user_id == m.User.id)
        .where(m.Connection.id == event.connection_id))).all()
    roles = {u.id: u.role for u in users}
    chosen = {(u.id, u.kind): (u.enabled, u.threshold) for u in users if u.kind is not None}
    rows = []
    for notice in notices:
        to = notice.to if notice.to is not None else [u for u, r in roles.items() if r == Role.PARTNER_ADMIN]
        for user_id in to:
            if user_id not in roles:  # not (or no longer) a user of this connection's Partner
                continue
            enabled, threshold = chosen.get((user_id, notice.kind.value), (_default(notice.kind), None))
            if not enabled or (notice.kind is Kind.WALLET_LOW and not await _crossed(session, event, threshold)):
                continue
            rows.append({"user_id": user_id, "event_id": event.id, "kind": notice.kind.value, "key": notice.key,
                         "subject": notice.subject[:200], "body": notice.body, "status": NotificationStatus.PENDING.value,
                         "attempts": 0, "next_attempt_at": now, "created_at": now})
    if not rows:
        return 0
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(m.Notification).on_conflict_do_nothing(index_elements=["user_id", "key"]).returning(m.Notification.id)
    return len((await session.execute(stmt, rows)).all())  # those already written are not again


async def _crossed(session: AsyncSession, event: m.Event, threshold: int | None) -> bool:
    entry = await session.get(m.LedgerEntry, event.subject_id)
    return threshold is not None and entry is not None and entry.balance_after < threshold <= entry.balance_after - entry.amount


# ---- sending -----------------------------------------------------------------------------

class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class LogMailer:
    """Without SMTP_URL: each email is logged, not sent."""

    async def send(self, message: EmailMessage) -> None:
        log.info("email (no SMTP_URL, not sent) to=%s subject=%s", message["To"], message["Subject"])


class SmtpMailer:
    """SMTP_URL: smtp://[user:password@]host[:port] (STARTTLS when the server offers it), or
    smtps://... (TLS from the start). The standard library's client, in a thread."""

    def __init__(self, url: str, sender: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        self.tls, self.host = parts.scheme == "smtps", parts.hostname or "localhost"
        self.port = parts.port or (465 if self.tls else 25)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.sender, self.timeout = sender, timeout

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        client: smtplib.SMTP
        if self.tls:
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            if not self.tls and client.has_extn("starttls"):
                client.starttls(context=ssl.create_default_context())
            if self.user:
                client.login(self.user, self.password or "")
            client.send_message(message)


@dataclass
class Sent:
    sent: int = 0
    retried: int = 0
    failed: int = 0


def _backoff(attempts: int) -> timedelta:
    return min(timedelta(minutes=2 ** (attempts - 1)), timedelta(hours=1))


async def send(writes: async_sessionmaker[AsyncSession], mailer: Mailer, sender: str, now: datetime,
               batch: int = BATCH) -> Sent:
    """Send the due notifications (one batch); never inside a transaction."""
    taken = await _take(writes, now, batch)
    done = Sent()
    for notification_id, to, subject, body in taken:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = sender, to, subject
        message["Message-ID"] = f"<notification-{notification_id}@revampd>"
        message.set_content(body)
        try:
            await mailer.send(message)
            error = None
        except (OSError, smtplib.SMTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
        async with writes() as session, session.begin():
            row = await session.get(m.Notification, notification_id)
            assert row is not None
            row.sending_at = None
            if error is None:
                row.status, row.sent_at = NotificationStatus.SENT.value, now
                done.sent += 1
                continue
            row.attempts += 1
            row.last_error = error[:1000]
            if row.attempts >= MAX_ATTEMPTS:
                row.status = NotificationStatus.FAILED.value
                done.failed += 1
                log.error("email %s to %s failed for good after %s attempts: %s", notification_id, to, row.attempts, error)
            else:
                row.next_attempt_at = now + _backoff(row.attempts)
                done.retried += 1
                log.warning("email %s to %s not sent (attempt %s, next at %s): %s", notification_id, to, row.attempts,
                            row.next_attempt_at.isoformat(), error)
    return done


async def _take(writes: async_sessionmaker[AsyncSession], now: datetime, batch: int) -> list[tuple[int, str, str, str]]:
    """The due notifications, marked as taken (another sender skips them), in their own transaction."""
    async with writes() as session, session.begin():
        due = (select(m.Notification.id).where(
            m.Notification.status == NotificationStatus.PENDING.value, m.Notification.next_attempt_at <= now,
            or_(m.Notification.sending_at.is_(None), m.Notification.sending_at < now - TAKEN_FOR),
        ).order_by(m.Notification.id).limit(batch).with_for_update(skip_locked=True))
        ids = list(await session.scalars(due))
        if not ids:
            return []
        await session.execute(update(m.Notification).where(m.Notification.id.in_(ids)).values(sending_at=now)
                              .execution_options(synchronize_session=False))
        rows = (await session.execute(
            select(m.Notification.id, m.User.email, m.Notification.subject, m.Notification.body)
            .join(m.User, m.User.id == m.Notification.user_id).where(m.Notification.id.in_(ids))
            .order_by(m.Notification.id))).all()
    return [(i, e, s, b) for i, e, s, b in rows]


def mailer_of(smtp_url: str | None, sender: str) -> Mailer:
    return SmtpMailer(smtp_url, sender) if smtp_url else LogMailer()


__all__ = ["Kind", "LogMailer", "Mailer", "Sent", "Setting", "SmtpMailer", "choose", "mailer_of", "plan", "send",
           "settings"]
