"""Support tickets and their conversations. Internal notes reach staff only."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from db import models as m
from schema.base import (
    After,
    Before,
    Connection,
    First,
    FromRow,
    Last,
    Node,
    UserError,
    by_id,
    changed_connection,
    client_mutation_id_echo,
    client_mutation_id_field,
    column,
    ctx,
    field,
    from_loader,
    global_id,
    load_page,
    page_args,
    to_global_id,
    user_errors_field,
)
from schema.enums import TicketPriority, TicketStatus
from schema.idempotency import idempotency_key_field
from schema.users import User

if TYPE_CHECKING:
    from schema.partners import Partner


SEARCH = (
    "Text the title or description contains, ignoring case: at most 200 characters (more is an INVALID_SEARCH "
    "error)."
)


@strawberry.input(description="Narrows RevampdConnection.tickets; a field left out or empty does not narrow.")
class TicketFilter:
    status: list[TicketStatus] | None = strawberry.field(
        default=None, description="Only tickets in one of these statuses."
    )
    priority: list[TicketPriority] | None = strawberry.field(
        default=None, description="Only tickets of one of these priorities."
    )
    search: str | None = strawberry.field(default=None, description=SEARCH)


@strawberry.input(description="Narrows Query.supportTickets; a field left out does not narrow (except status).")
class SupportTicketFilter:
    status: list[TicketStatus] | None = strawberry.field(
        default=None, description="Only tickets in one of these statuses; left out, OPEN and IN_PROGRESS."
    )
    priority: list[TicketPriority] | None = strawberry.field(
        default=None, description="Only tickets of one of these priorities."
    )
    search: str | None = strawberry.field(default=None, description=SEARCH)
    assignee_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only tickets assigned to this User."
    )
    partner_id: strawberry.ID | None = strawberry.field(default=None, description="Only this Partner's tickets.")
    unassigned: bool | None = strawberry.field(
        default=None, description="true: only tickets assigned to no one; false: only assigned ones."
    )


@strawberry.type(description="A message in a ticket's conversation, or an internal note of Revampd staff.")
class TicketMessage(Node, model=m.TicketMessage):
    body: str = strawberry.field(description="The text, as written (plain text).")
    internal: bool = strawberry.field(description="An internal note; only Revampd staff see these.")
    created_at: datetime = strawberry.field(description="When it was written.")
    model: strawberry.Private[m.TicketMessage]

    @classmethod
    def of(cls, msg: m.TicketMessage) -> "TicketMessage":
        return cls(
            id=to_global_id("TicketMessage", msg.id),
            body=msg.body,
            internal=msg.internal,
            created_at=msg.created_at,
            model=msg,
        )

    @from_loader(by_id(m.User), lambda s: s.model.author_id, "Who wrote it; null where the viewer may not see that user.")
    def author(self, row: m.User | None) -> User | None:
        return User.of(row) if row is not None else None


@strawberry.type(description="A support request from a Partner to Revampd, with its conversation.")
class Ticket(FromRow, Node, model=m.Ticket):
    title: str = strawberry.field(description="A one-line summary, as the Partner wrote it.")
    description: str = strawberry.field(description="The full description of the issue, as the Partner wrote it.")
    status: TicketStatus = strawberry.field(description="Where it is: OPEN, IN_PROGRESS, RESOLVED or CLOSED.")
    priority: TicketPriority = strawberry.field(description="How urgent the Partner says it is.")
    created_at: datetime = strawberry.field(description="When it was submitted.")
    updated_at: datetime = strawberry.field(
        description="When it last changed: a message, a note, its status or assignee."
    )
    last_activity_at: datetime = strawberry.field(
        description="When it last changed, like updatedAt; ticket lists are ordered by it."
    )
    resolved_at: datetime | None = strawberry.field(description="When it was last RESOLVED; null when it is not.")
    closed_at: datetime | None = strawberry.field(description="When it was CLOSED; null until then.")
    model: strawberry.Private[m.Ticket]

    from_row = {
        "id": global_id("Ticket"),
        "title": column("title"),
        "description": column("description"),
        "status": column("status", TicketStatus),
        "priority": column("priority", TicketPriority),
        "created_at": column("created_at"),
        "updated_at": column("updated_at"),
        "last_activity_at": column("last_activity_at"),
        "resolved_at": column("resolved_at"),
        "closed_at": column("closed_at"),
    }

    @classmethod
    def of(cls, t: m.Ticket) -> "Ticket":
        return cls.made(model=t)

    @staticmethod
    def along(loaders: Any, wanted: set[str]) -> Any:
        """What a page of tickets brings along in its statement for the item fields asked
        (schema.loaders.Loaders.tickets_along)."""
        return loaders.tickets_along(
            stats=not wanted.isdisjoint(("messageCount", "lastMessage")),
            users=not wanted.isdisjoint(("assignedTo", "createdBy")),
        )

    @from_loader(lambda loaders: loaders.connection, lambda s: s.model.connection_id,
                 "Readable number, unique per connection (RVP-1042).")
    def number(self, conn: m.Connection) -> str:
        return f"{conn.ticket_prefix}-{self.model.number}"

    @from_loader(by_id(m.User), lambda s: s.model.assigned_to_id, "The Revampd support representative working on it.")
    def assigned_to(self, row: m.User | None) -> User | None:
        return User.of(row) if row is not None else None

    @from_loader(by_id(m.User), lambda s: s.model.created_by_id,
                 "Who submitted it; null where the viewer may not see that user.")
    def created_by(self, row: m.User | None) -> User | None:
        return User.of(row) if row is not None else None

    @field(description="The Partner that raised it.")
    async def partner(
        self, info: strawberry.Info
    ) -> Annotated["Partner", strawberry.lazy("schema.partners")] | None:
        from schema.partners import Partner

        conn = await ctx(info).loaders.connection.load(self.model.connection_id)
        return await Partner.load(info, conn.partner_id) if conn else None

    @from_loader(lambda loaders: loaders.message_stats, lambda s: s.model.id,
                 "Messages visible to the viewer (internal notes for staff only).")
    def message_count(self, stats: Any) -> int:
        return int(stats[0])

    @from_loader(lambda loaders: loaders.message_stats, lambda s: s.model.id,
                 "The newest message the viewer may see; null when there is none.")
    def last_message(self, stats: Any) -> TicketMessage | None:
        return TicketMessage.of(stats[1]) if stats[1] is not None else None

    @field(description="The conversation, oldest first.")
    async def messages(
        self,
        info: strawberry.Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[TicketMessage]:
        c = ctx(info)
        args = page_args(info, first, after, last, before)
        page = await load_page(
            c.loaders.message_pages, (self.model.id, c.principal.sees_internal_notes, args)
        )
        return Connection.of(page, TicketMessage.of)

    @field(description="The Invoice or Payout this ticket is about, if any.")
    async def subject(self, info: strawberry.Info) -> Node | None:
        from schema.invoices import Invoice
        from schema.payouts import Payout

        t = self.model
        if t.subject_type == "invoice" and t.subject_id is not None:
            return await Invoice.load(info, t.subject_id)
        if t.subject_type == "payout" and t.subject_id is not None:
            return await Payout.load(info, t.subject_id)
        return None



# ---- Mutations: inputs and payloads -------------------------------------------

@strawberry.input(description="The input of submitTicket.")
class SubmitTicketInput:
    title: str = strawberry.field(description="1 to 200 characters, trimmed.")
    description: str = strawberry.field(description="The full description: 1 to 10,000 characters, trimmed.")
    priority: TicketPriority = strawberry.field(description="How urgent it is: LOW, MEDIUM or HIGH.")
    subject_id: strawberry.ID | None = strawberry.field(
        default=None, description="The Invoice or Payout of this connection the ticket is about."
    )
    idempotency_key: str | None = idempotency_key_field()
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.input(description="The input of replyToTicket.")
class ReplyToTicketInput:
    ticket_id: strawberry.ID = strawberry.field(description="A ticket you may see.")
    body: str = strawberry.field(description="1 to 10,000 characters, trimmed.")
    idempotency_key: str | None = idempotency_key_field()
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.input(description="The input of closeTicket.")
class CloseTicketInput:
    ticket_id: strawberry.ID = strawberry.field(description="A ticket you may see.")
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.input(description="The input of assignTicket.")
class AssignTicketInput:
    ticket_id: strawberry.ID = strawberry.field(description="A ticket you may see.")
    assignee_id: strawberry.ID = strawberry.field(description="A user with the SUPPORT role.")
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.input(description="The input of updateTicketStatus.")
class UpdateTicketStatusInput:
    ticket_id: strawberry.ID = strawberry.field(description="A ticket you may see.")
    status: TicketStatus = strawberry.field(
        description="OPEN -> IN_PROGRESS or CLOSED; IN_PROGRESS -> RESOLVED or CLOSED; "
        "RESOLVED -> IN_PROGRESS or CLOSED. CLOSED is final."
    )
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.input(description="The input of addTicketNote.")
class AddTicketNoteInput:
    ticket_id: strawberry.ID = strawberry.field(description="A ticket you may see.")
    body: str = strawberry.field(description="1 to 10,000 characters; never shown to the Partner.")
    idempotency_key: str | None = idempotency_key_field()
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type
class TicketPayload:
    ticket: Ticket | None = strawberry.field(description="The ticket as it now stands; null when refused.")
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()


@strawberry.type
class TicketMessagePayload(TicketPayload):
    message: TicketMessage | None = strawberry.field(description="The message added; null when refused.")


@strawberry.type(description="The result of submitTicket.")
class SubmitTicketPayload(TicketPayload):
    revampd_connection = changed_connection(lambda p: p.ticket and p.ticket.model.connection_id, "tickets")


@strawberry.type(description="The result of replyToTicket.")
class ReplyToTicketPayload(TicketMessagePayload):
    pass


@strawberry.type(description="The result of closeTicket.")
class CloseTicketPayload(TicketPayload):
    pass


@strawberry.type(description="The result of assignTicket.")
class AssignTicketPayload(TicketPayload):
    pass


@strawberry.type(description="The result of updateTicketStatus.")
class UpdateTicketStatusPayload(TicketPayload):
    pass


@strawberry.type(description="The result of addTicketNote.")
class AddTicketNotePayload(TicketMessagePayload):
    pass
