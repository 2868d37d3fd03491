"""Ticket mutations: Partners submit, reply and close; support assigns, moves and notes.

Who may do what is decided in services.tickets; these fields only decode and map.
"""

from __future__ import annotations

from typing import Any, TypeVar

import strawberry

from db import models as m
from resolvers.common import run_write
from schema.base import MutationInput, UserError, ctx, decode_id, from_global_id, mutation
from schema.tickets import (
    AddTicketNoteInput,
    AddTicketNotePayload,
    AssignTicketInput,
    AssignTicketPayload,
    CloseTicketInput,
    CloseTicketPayload,
    ReplyToTicketInput,
    ReplyToTicketPayload,
    SubmitTicketInput,
    SubmitTicketPayload,
    Ticket,
    TicketMessage,
    TicketMessagePayload,
    TicketPayload,
    UpdateTicketStatusInput,
    UpdateTicketStatusPayload,
)
from services import tickets
from services.errors import NotFound

P = TypeVar("P", bound=TicketPayload)
M = TypeVar("M", bound=TicketMessagePayload)

_SUBJECT_KINDS: dict[str, tickets.SubjectKind] = {"Invoice": "invoice", "Payout": "payout"}


def _subject(gid: strawberry.ID | None) -> tuple[tickets.SubjectKind, int] | None:
    if gid is None:
        return None
    parsed = from_global_id(gid)
    if parsed is None or parsed[0] not in _SUBJECT_KINDS:
        raise NotFound("Invoice or Payout", "subjectId")
    return _SUBJECT_KINDS[parsed[0]], parsed[1]


def _ticket_id(input: Any) -> int:
    return decode_id(input.ticket_id, "Ticket", "ticketId")


def _payload(cls: type[P], input: Any, ticket: m.Ticket | None, errors: list[UserError]) -> P:
    return cls(
        ticket=Ticket.of(ticket) if ticket is not None else None,
        user_errors=errors,
        client_mutation_id=input.client_mutation_id,
    )


def _message_payload(
    cls: type[M],
    input: Any,
    result: tuple[m.Ticket, m.TicketMessage] | None,
    errors: list[UserError],
) -> M:
    ticket, message = result if result is not None else (None, None)
    return cls(
        ticket=Ticket.of(ticket) if ticket is not None else None,
        message=TicketMessage.of(message) if message is not None else None,
        user_errors=errors,
        client_mutation_id=input.client_mutation_id,
    )


@strawberry.type
class TicketMutations:
    @mutation(
        description="PARTNER_ADMIN or PARTNER_MEMBER: open a support request with Revampd, OPEN and unassigned. "
        "Errors: INVALID_TITLE, INVALID_DESCRIPTION, NOT_FOUND (subjectId)."
    )
    async def submit_ticket(
        self, info: strawberry.Info, input: MutationInput[SubmitTicketInput]
    ) -> SubmitTicketPayload:
        p = ctx(info).principal
        ticket, errors = await run_write(
            info,
            lambda: _subject(input.subject_id),
            lambda s, subject: tickets.submit(
                s,
                p,
                title=input.title,
                description=input.description,
                priority=input.priority,
                subject=subject,
                idempotency_key=input.idempotency_key,
            ),
        )
        return _payload(SubmitTicketPayload, input, ticket, errors)

    @mutation(
        description="A Partner user of the ticket, or staff: add a message. A Partner's reply reopens a RESOLVED "
        "ticket; a CLOSED one takes none. Errors: NOT_FOUND, INVALID_BODY, TICKET_CLOSED."
    )
    async def reply_to_ticket(
        self, info: strawberry.Info, input: MutationInput[ReplyToTicketInput]
    ) -> ReplyToTicketPayload:
        p = ctx(info).principal
        result, errors = await run_write(
            info,
            lambda: _ticket_id(input),
            lambda s, ticket_id: tickets.reply(s, p, ticket_id, input.body, idempotency_key=input.idempotency_key),
        )
        return _message_payload(ReplyToTicketPayload, input, result, errors)

    @mutation(
        description="A Partner user of the ticket, or staff: close it, whatever its status. Closed is final. "
        "Errors: NOT_FOUND, TICKET_CLOSED."
    )
    async def close_ticket(self, info: strawberry.Info, input: MutationInput[CloseTicketInput]) -> CloseTicketPayload:
        p = ctx(info).principal
        ticket, errors = await run_write(
            info, lambda: _ticket_id(input), lambda s, ticket_id: tickets.close(s, p, ticket_id)
        )
        return _payload(CloseTicketPayload, input, ticket, errors)

    @mutation(
        description="SUPPORT: give a ticket to a support representative. "
        "Errors: NOT_FOUND, ASSIGNEE_NOT_SUPPORT, TICKET_CLOSED."
    )
    async def assign_ticket(
        self, info: strawberry.Info, input: MutationInput[AssignTicketInput]
    ) -> AssignTicketPayload:
        p = ctx(info).principal
        ticket, errors = await run_write(
            info,
            lambda: (_ticket_id(input), decode_id(input.assignee_id, "User", "assigneeId")),
            lambda s, ids: tickets.assign(s, p, *ids),
        )
        return _payload(AssignTicketPayload, input, ticket, errors)

    @mutation(
        description="SUPPORT: move a ticket along OPEN -> IN_PROGRESS -> RESOLVED -> CLOSED. "
        "Errors: NOT_FOUND, ILLEGAL_STATUS_CHANGE."
    )
    async def update_ticket_status(
        self, info: strawberry.Info, input: MutationInput[UpdateTicketStatusInput]
    ) -> UpdateTicketStatusPayload:
        p = ctx(info).principal
        ticket, errors = await run_write(
            info,
            lambda: _ticket_id(input),
            lambda s, ticket_id: tickets.update_status(s, p, ticket_id, input.status),
        )
        return _payload(UpdateTicketStatusPayload, input, ticket, errors)

    @mutation(
        description="SUPPORT: add an internal note, never shown to the Partner. Errors: NOT_FOUND, INVALID_BODY."
    )
    async def add_ticket_note(
        self, info: strawberry.Info, input: MutationInput[AddTicketNoteInput]
    ) -> AddTicketNotePayload:
        p = ctx(info).principal
        result, errors = await run_write(
            info,
            lambda: _ticket_id(input),
            lambda s, ticket_id: tickets.add_note(s, p, ticket_id, input.body, idempotency_key=input.idempotency_key),
        )
        return _message_payload(AddTicketNotePayload, input, result, errors)
