"""The paginated lists of a connection: what each holds, filtered and in which order.

Each function answers one page for many parents in one statement (see
services.pagination), so DataLoaders can batch them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db import models as m
from services.access import Principal
from services.enums import (
    InvoiceStatus,
    InvoiceType,
    PayoutStatus,
    TicketPriority,
    TicketStatus,
)
from services.errors import DomainError, Forbidden
from services.pagination import Page, PageArgs, fetch_pages


@dataclass(frozen=True)
class InvoiceFilter:
    status: tuple[InvoiceStatus, ...] = ()
    type: tuple[InvoiceType, ...] = ()


WAITING = (TicketStatus.OPEN, TicketStatus.IN_PROGRESS)
# Longer search text finds nothing a person would type, and costs a scan per character.
MAX_SEARCH = 200


@dataclass(frozen=True)
class TicketFilter:
    status: tuple[TicketStatus, ...] = ()
    priority: tuple[TicketPriority, ...] = ()
    search: str | None = None
    assignee_id: int | None = None
    partner_id: int | None = None
    unassigned: bool | None = None


@dataclass(frozen=True)
class PayoutFilter:
    status: tuple[PayoutStatus, ...] = ()


@dataclass(frozen=True)
class SubOrgTransactionFilter:
    unpaid: bool | None = None


async def invoices(
    session: AsyncSession, connection_ids: Sequence[int], f: InvoiceFilter, args: PageArgs
) -> dict[int, Page[m.Invoice]]:
    """Newest issued first."""
    stmt = select(m.Invoice)
    if f.status:
        stmt = stmt.where(m.Invoice.status.in_([s.value for s in f.status]))
    if f.type:
        stmt = stmt.where(m.Invoice.type.in_([t.value for t in f.type]))
    order = [(m.Invoice.issued_at, True), (m.Invoice.id, True)]
    return await fetch_pages(session, stmt, m.Invoice, m.Invoice.connection_id, connection_ids, order, args)


def _ticket_filter(stmt: Any, f: TicketFilter) -> Any:
    if f.status:
        stmt = stmt.where(m.Ticket.status.in_([s.value for s in f.status]))
    if f.priority:
        stmt = stmt.where(m.Ticket.priority.in_([p.value for p in f.priority]))
    if f.assignee_id is not None:
        stmt = stmt.where(m.Ticket.assigned_to_id == f.assignee_id)
    if f.unassigned is not None:
        stmt = stmt.where(
            m.Ticket.assigned_to_id.is_(None) if f.unassigned else m.Ticket.assigned_to_id.is_not(None)
        )
    if f.search and f.search.strip():
        words = f.search.strip().lower()
        if len(words) > MAX_SEARCH:
            raise DomainError(
                "INVALID_SEARCH", f"search must be at most {MAX_SEARCH} characters, got {len(words):,}.", ["filter", "search"]
            )
        # Escape the escape character first, so a trailing backslash stays literal.
        for char in ("\\", "%", "_"):
            words = words.replace(char, "\\" + char)
        pattern = f"%{words}%"
        stmt = stmt.where(
            or_(
                m.Ticket.title.ilike(pattern, escape="\\"),
                m.Ticket.description.ilike(pattern, escape="\\"),
            )
        )
    return stmt


async def connection_tickets(
    session: AsyncSession, connection_ids: Sequence[int], f: TicketFilter, args: PageArgs
) -> dict[int, Page[m.Ticket]]:
    """A Partner's tickets, newest activity first."""
    order = [(m.Ticket.last_activity_at, True), (m.Ticket.id, True)]
    stmt = _ticket_filter(select(m.Ticket), f)
    return await fetch_pages(session, stmt, m.Ticket, m.Ticket.connection_id, connection_ids, order, args)


async def support_queue(
    session: AsyncSession, principal: Principal, f: TicketFilter, args: PageArgs
) -> Page[m.Ticket]:
    """Every Partner's tickets for Revampd staff, oldest waiting first.

    With no status filter the queue holds the tickets waiting on support
    (OPEN, IN_PROGRESS); ask for RESOLVED or CLOSED ones by status."""
    if not principal.is_staff:
        raise Forbidden("Only Revampd staff can read the support queue.")
    if not f.status:
        f = replace(f, status=WAITING)
    stmt = _ticket_filter(select(m.Ticket), f)
    if f.partner_id is not None:
        stmt = stmt.where(
            exists().where(
                m.Connection.id == m.Ticket.connection_id, m.Connection.partner_id == f.partner_id
            )
        )
    order = [(m.Ticket.last_activity_at, False), (m.Ticket.id, False)]
    pages = await fetch_pages(session, stmt, m.Ticket, None, [0], order, args)
    return pages[0]


async def ticket_messages(
    session: AsyncSession, ticket_ids: Sequence[int], include_internal: bool, args: PageArgs
) -> dict[int, Page[m.TicketMessage]]:
    """Oldest first, as a conversation reads."""
    stmt = select(m.TicketMessage)
    if not include_internal:
        stmt = stmt.where(m.TicketMessage.internal.is_(False))
    order = [(m.TicketMessage.created_at, False), (m.TicketMessage.id, False)]
    return await fetch_pages(
        session, stmt, m.TicketMessage, m.TicketMessage.ticket_id, ticket_ids, order, args
    )


async def wallet_entries(
    session: AsyncSession, account_ids: Sequence[int], args: PageArgs
) -> dict[int, Page[m.LedgerEntry]]:
    """A wallet account's entries (its statement), newest first."""
    order = [(m.LedgerEntry.created_at, True), (m.LedgerEntry.id, True)]
    return await fetch_pages(
        session, select(m.LedgerEntry), m.LedgerEntry, m.LedgerEntry.account_id, account_ids, order, args
    )


async def affiliate_payouts(
    session: AsyncSession, connection_ids: Sequence[int], args: PageArgs
) -> dict[int, Page[m.AffiliatePayout]]:
    order = [(m.AffiliatePayout.period_end, True), (m.AffiliatePayout.id, True)]
    return await fetch_pages(
        session,
        select(m.AffiliatePayout),
        m.AffiliatePayout,
        m.AffiliatePayout.connection_id,
        connection_ids,
        order,
        args,
    )


async def payouts(
    session: AsyncSession, connection_ids: Sequence[int], f: PayoutFilter, args: PageArgs
) -> dict[int, Page[m.Payout]]:
    stmt = select(m.Payout)
    if f.status:
        stmt = stmt.where(m.Payout.status.in_([s.value for s in f.status]))
    order = [(m.Payout.period_end, True), (m.Payout.id, True)]
    return await fetch_pages(session, stmt, m.Payout, m.Payout.connection_id, connection_ids, order, args)


async def sub_org_transactions(
    session: AsyncSession, connection_ids: Sequence[int], f: SubOrgTransactionFilter, args: PageArgs
) -> dict[int, Page[m.SubOrgTransaction]]:
    """Newest first (by when they occurred)."""
    stmt = select(m.SubOrgTransaction)
    if f.unpaid is not None:
        paid_by = m.SubOrgTransaction.payout_id
        stmt = stmt.where(paid_by.is_(None) if f.unpaid else paid_by.is_not(None))
    order = [(m.SubOrgTransaction.occurred_at, True), (m.SubOrgTransaction.id, True)]
    return await fetch_pages(
        session, stmt, m.SubOrgTransaction, m.SubOrgTransaction.connection_id, connection_ids, order, args
    )
