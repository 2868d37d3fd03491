"""The paginated lists of a connection: what each holds, filtered and in which order.

Each function says what a list holds for any of its parents (a Listing), so that
services.pagination answers one page, or the count, of many parents in one
statement, and DataLoaders can batch them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from sqlalchemy import String, bindparam, exists, or_, select

from db import models as m
from db.states import (
    InvoiceStatus,
    InvoiceType,
    PayoutStatus,
    TicketPriority,
    TicketStatus,
)
from services.access import Principal
from services.errors import DomainError, ErrorCode, Forbidden
from services.pagination import Listing


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


def invoices(f: InvoiceFilter) -> Listing[m.Invoice]:
    """Newest issued first."""
    def build() -> Any:
        stmt = select(m.Invoice)
        if f.status:
            stmt = stmt.where(m.Invoice.status.in_(bindparam("status", expanding=True)))
        if f.type:
            stmt = stmt.where(m.Invoice.type.in_(bindparam("type", expanding=True)))
        return stmt

    params = {"status": [s.value for s in f.status], "type": [t.value for t in f.type]}
    order = [(m.Invoice.issued_at, True), (m.Invoice.id, True)]
    return Listing(("invoices", bool(f.status), bool(f.type)), build, params, m.Invoice, m.Invoice.connection_id, order)


def _ticket_filter(f: TicketFilter) -> tuple[Any, dict[str, Any], Callable[[Any], Any]]:
    """(shape, parameters, where) of a ticket filter: `where` adds its conditions to a statement."""
    params: dict[str, Any] = {
        "status": [s.value for s in f.status],
        "priority": [p.value for p in f.priority],
        "assignee": f.assignee_id,
    }
    search = bool(f.search and f.search.strip())
    if search:
        assert f.search is not None
        words = f.search.strip().lower()
        if len(words) > MAX_SEARCH:
            raise DomainError(
                ErrorCode.INVALID_SEARCH, f"search must be at most {MAX_SEARCH} characters, got {len(words):,}.", ["filter", "search"]
            )
        # Escape the escape character first, so a trailing backslash stays literal.
        for char in ("\\", "%", "_"):
            words = words.replace(char, "\\" + char)
        params["pattern"] = f"%{words}%"
    shape = (bool(f.status), bool(f.priority), f.assignee_id is not None, f.unassigned, search)

    def where(stmt: Any) -> Any:
        if f.status:
            stmt = stmt.where(m.Ticket.status.in_(bindparam("status", expanding=True)))
        if f.priority:
            stmt = stmt.where(m.Ticket.priority.in_(bindparam("priority", expanding=True)))
        if f.assignee_id is not None:
            stmt = stmt.where(m.Ticket.assigned_to_id == bindparam("assignee"))
        if f.unassigned is not None:
            stmt = stmt.where(
                m.Ticket.assigned_to_id.is_(None) if f.unassigned else m.Ticket.assigned_to_id.is_not(None)
            )
        if search:
            pattern = bindparam("pattern", type_=String)
            stmt = stmt.where(
                or_(
                    m.Ticket.title.ilike(pattern, escape="\\"),
                    m.Ticket.description.ilike(pattern, escape="\\"),
                )
            )
        return stmt

    return shape, params, where


def connection_tickets(f: TicketFilter) -> Listing[m.Ticket]:
    """A Partner's tickets, newest activity first."""
    order = [(m.Ticket.last_activity_at, True), (m.Ticket.id, True)]
    shape, params, where = _ticket_filter(f)
    return Listing(("tickets", shape), lambda: where(select(m.Ticket)), params, m.Ticket, m.Ticket.connection_id, order)


def support_queue(principal: Principal, f: TicketFilter) -> Listing[m.Ticket]:
    """Every Partner's tickets for Revampd staff, oldest waiting first: one list (no parent).

    With no status filter the queue holds the tickets waiting on support
    (OPEN, IN_PROGRESS); ask for RESOLVED or CLOSED ones by status."""
    if not principal.is_staff:
        raise Forbidden("Only Revampd staff can read the support queue.")
    if not f.status:
        f = replace(f, status=WAITING)
    shape, params, where = _ticket_filter(f)

    def build() -> Any:
        stmt = where(select(m.Ticket))
        if f.partner_id is not None:
            stmt = stmt.where(
                exists().where(
                    m.Connection.id == m.Ticket.connection_id, m.Connection.partner_id == bindparam("partner")
                )
            )
        return stmt

    params["partner"] = f.partner_id
    order = [(m.Ticket.last_activity_at, False), (m.Ticket.id, False)]
    return Listing(("support_queue", shape, f.partner_id is not None), build, params, m.Ticket, None, order)


def ticket_messages(include_internal: bool) -> Listing[m.TicketMessage]:
    """Oldest first, as a conversation reads."""
    def build() -> Any:
        stmt = select(m.TicketMessage)
        return stmt if include_internal else stmt.where(m.TicketMessage.internal.is_(False))

    order = [(m.TicketMessage.created_at, False), (m.TicketMessage.id, False)]
    return Listing(("ticket_messages", include_internal), build, {}, m.TicketMessage, m.TicketMessage.ticket_id, order)


def wallet_entries(_: None = None) -> Listing[m.LedgerEntry]:
    """A wallet account's entries (its statement), newest first."""
    order = [(m.LedgerEntry.created_at, True), (m.LedgerEntry.id, True)]
    return Listing("wallet_entries", lambda: select(m.LedgerEntry), {}, m.LedgerEntry, m.LedgerEntry.account_id, order)


def affiliate_payouts(_: None = None) -> Listing[m.AffiliatePayout]:
    order = [(m.AffiliatePayout.period_end, True), (m.AffiliatePayout.id, True)]
    return Listing(
        "affiliate_payouts", lambda: select(m.AffiliatePayout), {},
        m.AffiliatePayout, m.AffiliatePayout.connection_id, order,
    )


def payouts(f: PayoutFilter) -> Listing[m.Payout]:
    def build() -> Any:
        stmt = select(m.Payout)
        return stmt.where(m.Payout.status.in_(bindparam("status", expanding=True))) if f.status else stmt

    order = [(m.Payout.period_end, True), (m.Payout.id, True)]
    return Listing(
        ("payouts", bool(f.status)), build, {"status": [s.value for s in f.status]},
        m.Payout, m.Payout.connection_id, order,
    )


def sub_org_transactions(f: SubOrgTransactionFilter) -> Listing[m.SubOrgTransaction]:
    """Newest first (by when they occurred)."""
    def build() -> Any:
        stmt = select(m.SubOrgTransaction)
        if f.unpaid is None:
            return stmt
        paid_by = m.SubOrgTransaction.payout_id
        return stmt.where(paid_by.is_(None) if f.unpaid else paid_by.is_not(None))

    order = [(m.SubOrgTransaction.occurred_at, True), (m.SubOrgTransaction.id, True)]
    return Listing(
        ("sub_org_transactions", f.unpaid), build, {},
        m.SubOrgTransaction, m.SubOrgTransaction.connection_id, order,
    )
