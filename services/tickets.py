"""Support tickets: a Partner and Revampd support in one conversation.

The status machine is OPEN -> IN_PROGRESS -> RESOLVED -> CLOSED (see MOVES);
a Partner's reply reopens a RESOLVED ticket, and CLOSED is final. Internal
notes are messages only staff read; adding one changes nothing a Partner can
see, not even the ticket's timestamps.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import events
from db import models as m
from db.states import SubjectKind as SubjectKind
from db.states import TicketPriority, TicketStatus
from services import idempotency
from services.access import Principal, Role
from services.clock import now_or
from services.errors import DomainError, ErrorCode, NotFound

MAX_TITLE = 200
MAX_TEXT = 10_000

S = TicketStatus
# Where support may move a ticket with updateTicketStatus.
MOVES: dict[TicketStatus, tuple[TicketStatus, ...]] = {
    S.OPEN: (S.IN_PROGRESS, S.CLOSED),
    S.IN_PROGRESS: (S.RESOLVED, S.CLOSED),
    S.RESOLVED: (S.IN_PROGRESS, S.CLOSED),
    S.CLOSED: (),
}


_SUBJECTS: dict[SubjectKind, tuple[type[m.Invoice] | type[m.Payout], str]] = {
    "invoice": (m.Invoice, "Invoice"),
    "payout": (m.Payout, "Payout"),
}


def _text(value: str, *, field: str, code: ErrorCode, what: str, max_len: int) -> str:
    """Trimmed text of 1..max_len characters."""
    text = value.strip()
    if not text:
        raise DomainError(code, f"{what} must not be blank.", field)
    if len(text) > max_len:
        raise DomainError(
            code, f"{what} must be at most {max_len:,} characters, got {len(text):,}.", field
        )
    if "\x00" in text:
        raise DomainError(code, f"{what} must not contain NUL characters.", field)
    return text


def _touch(ticket: m.Ticket, now: datetime) -> None:
    ticket.updated_at = now
    ticket.last_activity_at = now


def _set_status(ticket: m.Ticket, status: TicketStatus, now: datetime) -> None:
    """The one place a status changes, with the timestamps that go with it."""
    ticket.status = status.value
    if status is S.RESOLVED:
        ticket.resolved_at = now
    elif status is S.CLOSED:
        ticket.closed_at = now
    else:
        ticket.resolved_at = None
    _touch(ticket, now)


def _refuse_if_closed(ticket: m.Ticket, action: str) -> None:
    if ticket.status == S.CLOSED.value:
        raise DomainError(
            ErrorCode.TICKET_CLOSED,
            f"This ticket is closed and {action}; open a new ticket instead.",
            "ticketId",
        )


async def _locked_ticket(session: AsyncSession, principal: Principal, ticket_id: int) -> m.Ticket:
    """The ticket, row-locked; another Partner's reads exactly like a missing one."""
    ticket = await session.scalar(
        select(m.Ticket).where(m.Ticket.id == ticket_id).with_for_update()
    )
    if ticket is None or not principal.sees_connection(ticket.connection_id):
        raise NotFound("Ticket", "ticketId")
    return ticket


async def _message(
    session: AsyncSession, ticket: m.Ticket, principal: Principal, body: str, *, internal: bool,
    now: datetime,
) -> m.TicketMessage:
    text = _text(body, field="body", code=ErrorCode.INVALID_BODY, what="The message", max_len=MAX_TEXT)
    message = m.TicketMessage(
        ticket_id=ticket.id, author_id=principal.user_id, body=text, internal=internal, created_at=now
    )
    session.add(message)
    await session.flush()
    return message


async def _visible_ticket(session: AsyncSession, principal: Principal, ticket_id: int) -> m.Ticket:
    ticket = await session.get(m.Ticket, ticket_id)
    if ticket is None or not principal.sees_connection(ticket.connection_id):
        raise NotFound("Ticket")
    return ticket


async def _replay_message(
    session: AsyncSession, principal: Principal, message_id: int
) -> tuple[m.Ticket, m.TicketMessage]:
    """A reply or note made earlier under the same idempotency key, and its ticket as it now is."""
    message = await session.get(m.TicketMessage, message_id)
    if message is None or (message.internal and not principal.sees_internal_notes):
        raise NotFound("Ticket message")
    return await _visible_ticket(session, principal, message.ticket_id), message


SUBMIT = idempotency.Operation[m.Ticket]("submitTicket", "Ticket", lambda t: t.id, _visible_ticket)
REPLY = idempotency.Operation[tuple[m.Ticket, m.TicketMessage]](
    "replyToTicket", "TicketMessage", lambda r: r[1].id, _replay_message
)
NOTE = idempotency.Operation[tuple[m.Ticket, m.TicketMessage]](
    "addTicketNote", "TicketMessage", lambda r: r[1].id, _replay_message
)


async def submit(
    session: AsyncSession,
    principal: Principal,
    *,
    title: str,
    description: str,
    priority: TicketPriority,
    subject: tuple[SubjectKind, int] | None = None,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> m.Ticket:
    """A new OPEN, unassigned ticket numbered from its connection's counter.

    A retry with the same idempotency key gets the same ticket back."""
    request = {
        "title": title,
        "description": description,
        "priority": priority.value,
        "subject": list(subject) if subject is not None else None,
    }
    return await idempotency.once(
        session, principal, SUBMIT, idempotency_key, request,
        lambda: _open(session, principal, title, description, priority, subject, now), now=now,
    )


async def _open(
    session: AsyncSession,
    principal: Principal,
    title: str,
    description: str,
    priority: TicketPriority,
    subject: tuple[SubjectKind, int] | None,
    now: datetime | None,
) -> m.Ticket:
    principal.require(Role.PARTNER_ADMIN, Role.PARTNER_MEMBER)
    connection_id = principal.connection_id
    if connection_id is None:
        raise NotFound("RevampdConnection")
    clean_title = _text(title, field="title", code=ErrorCode.INVALID_TITLE, what="The title", max_len=MAX_TITLE)
    clean_description = _text(
        description, field="description", code=ErrorCode.INVALID_DESCRIPTION, what="The description",
        max_len=MAX_TEXT,
    )
    if subject is not None:
        model, name = _SUBJECTS[subject[0]]
        row: m.Invoice | m.Payout | None = await session.get(model, subject[1])
        if row is None or row.connection_id != connection_id:
            raise NotFound(name, "subjectId")
    # The row lock makes concurrent submits take numbers one after another.
    connection = await session.scalar(
        select(m.Connection).where(m.Connection.id == connection_id).with_for_update()
    )
    if connection is None:
        raise NotFound("RevampdConnection")
    number = connection.next_ticket_number
    connection.next_ticket_number = number + 1
    now = now_or(now)
    ticket = m.Ticket(
        connection_id=connection_id,
        number=number,
        title=clean_title,
        description=clean_description,
        status=S.OPEN.value,
        priority=priority.value,
        assigned_to_id=None,
        created_by_id=principal.user_id,
        subject_type=subject[0] if subject else None,
        subject_id=subject[1] if subject else None,
        created_at=now,
        updated_at=now,
        last_activity_at=now,
    )
    session.add(ticket)
    await session.flush()
    return ticket


async def reply(
    session: AsyncSession,
    principal: Principal,
    ticket_id: int,
    body: str,
    now: datetime | None = None,
    *,
    idempotency_key: str | None = None,
) -> tuple[m.Ticket, m.TicketMessage]:
    """A message in the conversation; a Partner's reply reopens a RESOLVED ticket.

    A retry with the same idempotency key gets the same message back."""
    return await idempotency.once(
        session, principal, REPLY, idempotency_key, {"ticket": ticket_id, "body": body},
        lambda: _reply(session, principal, ticket_id, body, now), now=now,
    )


async def _reply(
    session: AsyncSession, principal: Principal, ticket_id: int, body: str, now: datetime | None
) -> tuple[m.Ticket, m.TicketMessage]:
    ticket = await _locked_ticket(session, principal, ticket_id)
    _refuse_if_closed(ticket, "takes no more replies")
    now = now_or(now)
    message = await _message(session, ticket, principal, body, internal=False, now=now)
    if ticket.status == S.RESOLVED.value and not principal.is_staff:
        _set_status(ticket, S.OPEN, now)
    else:
        _touch(ticket, now)
    return ticket, message


async def close(
    session: AsyncSession, principal: Principal, ticket_id: int, now: datetime | None = None
) -> m.Ticket:
    """The Partner (or staff) is done with it, whatever its status."""
    ticket = await _locked_ticket(session, principal, ticket_id)
    _refuse_if_closed(ticket, "cannot be closed again")
    _set_status(ticket, S.CLOSED, now_or(now))
    return ticket


async def assign(
    session: AsyncSession,
    principal: Principal,
    ticket_id: int,
    assignee_id: int,
    now: datetime | None = None,
) -> m.Ticket:
    """Give the ticket to a support representative."""
    principal.require(Role.SUPPORT)
    ticket = await _locked_ticket(session, principal, ticket_id)
    _refuse_if_closed(ticket, "cannot be reassigned")
    assignee = await session.get(m.User, assignee_id)
    if assignee is None:
        raise NotFound("User", "assigneeId")
    if assignee.role != Role.SUPPORT.value:
        raise DomainError(
            ErrorCode.ASSIGNEE_NOT_SUPPORT,
            f"{assignee.name} is not a Revampd support representative; "
            "tickets can only be assigned to users with the SUPPORT role.",
            "assigneeId",
        )
    ticket.assigned_to_id = assignee_id
    _touch(ticket, now_or(now))
    return ticket


def _names(statuses: tuple[TicketStatus, ...]) -> str:
    return " or ".join(s.value for s in statuses)


async def update_status(
    session: AsyncSession,
    principal: Principal,
    ticket_id: int,
    status: TicketStatus,
    now: datetime | None = None,
) -> m.Ticket:
    principal.require(Role.SUPPORT)
    ticket = await _locked_ticket(session, principal, ticket_id)
    current = S(ticket.status)
    allowed = MOVES[current]
    if status not in allowed:
        if not allowed:
            message = f"A ticket that is {current.value} is final; open a new ticket instead."
        else:
            message = (
                f"A ticket that is {current.value} can move to {_names(allowed)}, not {status.value}."
            )
        raise DomainError(ErrorCode.ILLEGAL_STATUS_CHANGE, message, "status")
    _set_status(ticket, status, now_or(now))
    return ticket


async def add_note(
    session: AsyncSession,
    principal: Principal,
    ticket_id: int,
    body: str,
    now: datetime | None = None,
    *,
    idempotency_key: str | None = None,
) -> tuple[m.Ticket, m.TicketMessage]:
    """An internal note. It leaves the ticket's timestamps alone: a Partner must not
    be able to tell that one was written. A retry with the same idempotency key gets
    the same note back."""
    return await idempotency.once(
        session, principal, NOTE, idempotency_key, {"ticket": ticket_id, "body": body},
        lambda: _note(session, principal, ticket_id, body, now), now=now,
    )


async def _note(
    session: AsyncSession, principal: Principal, ticket_id: int, body: str, now: datetime | None
) -> tuple[m.Ticket, m.TicketMessage]:
    principal.require(Role.SUPPORT)
    ticket = await _locked_ticket(session, principal, ticket_id)
    message = await _message(session, ticket, principal, body, internal=True, now=now_or(now))
    return ticket, message


async def auto_close(session: AsyncSession, *, now: datetime, days: int) -> int:
    """Close tickets RESOLVED for more than `days` days; returns how many.

    One UPDATE claims the rows: a second worker running at the same time waits
    for the row locks, re-checks `status` and finds them already CLOSED.
    """
    cutoff = now - timedelta(days=days)
    closed = (await session.execute(
        update(m.Ticket)
        .where(m.Ticket.status == S.RESOLVED.value, m.Ticket.resolved_at < cutoff)
        .values(status=S.CLOSED.value, closed_at=now, updated_at=now, last_activity_at=now)
        .returning(m.Ticket.id, m.Ticket.connection_id)
        .execution_options(synchronize_session=False)
    )).all()
    for ticket_id, connection_id in closed:
        events.note(session, connection_id, "tickets", ticket_id, ticket_id=ticket_id)
    return len(closed)
