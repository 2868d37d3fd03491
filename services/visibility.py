"""Which rows a caller may read: one SQL condition per model, and nowhere else.

The request's loaders put `visible(model, principal)` in the WHERE clause of the
statement that reads the rows, so another Partner's row never leaves the
database. Revampd staff read everything; a Partner user reads what hangs off
its own connection. A model without a rule here cannot be read through a loader.
"""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import ColumnElement, Integer, and_, bindparam, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute

from db import models as m
from db.states import AccountKind
from services.access import STAFF_ROLES, Principal

Rule = Callable[[Principal], ColumnElement[bool]]


def visible(model: type[Any], principal: Principal) -> ColumnElement[bool]:
    """The condition on `model`'s rows that `principal` may read."""
    rule = RULES[model]
    return and_(shown(model), true() if principal.is_staff else rule(principal))


def shown(model: type[Any]) -> ColumnElement[bool]:
    """The rows of `model` the graph shows at all, whoever asks."""
    return SHOWN[model]() if model in SHOWN else true()


def has_rule(model: type[Any]) -> bool:
    return model in RULES


# The caller's ids enter every condition as these bound parameters, so that a loader
# can build its statement once and run it for any caller with `params(principal)`.
# A statement run without them compares with NULL and reads nothing.
def _is(column: InstrumentedAttribute[Any], key: str, value: int | None) -> ColumnElement[bool]:
    return column == bindparam(key, value, type_=Integer)


def params(principal: Principal) -> dict[str, int | None]:
    """The values of the bound parameters in `visible(model, principal)`."""
    return {"vis_partner": principal.partner_id, "vis_connection": principal.connection_id}


# Stand-ins for any staff / any Partner caller: a statement built with one of these
# is the same for every caller of its kind (run it with `params(principal)`).
ANY_STAFF = Principal(user_id=0, partner_id=None, connection_id=None, roles=STAFF_ROLES)
ANY_PARTNER_USER = Principal(user_id=0, partner_id=None, connection_id=None, roles=frozenset())


def shape_of(principal: Principal) -> Principal:
    return ANY_STAFF if principal.is_staff else ANY_PARTNER_USER


def _public(_: Principal) -> ColumnElement[bool]:
    """The catalogue: the same for every caller."""
    return true()


def _own_connection(column: InstrumentedAttribute[Any]) -> Rule:
    """Rows of the caller's own connection."""
    return lambda p: _is(column, "vis_connection", p.connection_id)


def _via(foreign_key: InstrumentedAttribute[Any], parent: type[Any]) -> Rule:
    """Rows whose parent (through `foreign_key`) the caller may read."""
    return lambda p: foreign_key.in_(select(parent.id).where(visible(parent, p)))


def _ticket_message(p: Principal) -> ColumnElement[bool]:
    """Messages of its own tickets, never an internal note."""
    return and_(_via(m.TicketMessage.ticket_id, m.Ticket)(p), m.TicketMessage.internal.is_(False))


def _user(p: Principal) -> ColumnElement[bool]:
    """The users of its own Partner; a Revampd staff member only where they appear on its
    own tickets: assigned to one, or author of a message it may read (not an internal note)."""
    on_its_tickets = or_(
        m.User.id.in_(
            select(m.Ticket.assigned_to_id).where(visible(m.Ticket, p), m.Ticket.assigned_to_id.is_not(None))
        ),
        m.User.id.in_(select(m.TicketMessage.author_id).where(visible(m.TicketMessage, p))),
    )
    return or_(_is(m.User.partner_id, "vis_partner", p.partner_id), and_(m.User.partner_id.is_(None), on_its_tickets))


def sees_email(principal: Principal, user: m.User) -> bool:
    """Staff see every user's email; a Partner user those of its own Partner's users only,
    so a staff member it may see shows by name alone."""
    return principal.is_staff or (user.partner_id is not None and user.partner_id == principal.partner_id)


# Of the ledger's entries the graph shows the wallets' (as WalletEntry); the other
# accounts' entries are Revampd's books, read by `revampd-bff ledger verify`.
SHOWN: dict[type[Any], Callable[[], ColumnElement[bool]]] = {
    m.LedgerEntry: lambda: m.LedgerEntry.account_id.in_(
        select(m.LedgerAccount.id).where(m.LedgerAccount.kind == AccountKind.WALLET)
    ),
}

RULES: dict[type[Any], Rule] = {
    m.Plan: _public,
    m.AddOnProduct: _public,
    m.Partner: lambda p: _is(m.Partner.id, "vis_partner", p.partner_id),
    m.Connection: lambda p: _is(m.Connection.id, "vis_connection", p.connection_id),
    m.User: _user,
    m.AddOn: _own_connection(m.AddOn.connection_id),
    m.Invoice: _own_connection(m.Invoice.connection_id),
    m.InvoiceLineItem: _via(m.InvoiceLineItem.invoice_id, m.Invoice),
    m.InvoicePayment: _via(m.InvoicePayment.invoice_id, m.Invoice),
    m.CreditNote: _own_connection(m.CreditNote.connection_id),
    m.Refund: _via(m.Refund.invoice_id, m.Invoice),
    m.LedgerAccount: _own_connection(m.LedgerAccount.connection_id),
    m.LedgerEntry: _via(m.LedgerEntry.account_id, m.LedgerAccount),
    m.LedgerTransfer: lambda p: or_(
        _via(m.LedgerTransfer.debit_account_id, m.LedgerAccount)(p),
        _via(m.LedgerTransfer.credit_account_id, m.LedgerAccount)(p),
    ),
    m.AffiliatePayout: _own_connection(m.AffiliatePayout.connection_id),
    m.Payout: _own_connection(m.Payout.connection_id),
    m.BankAccount: _own_connection(m.BankAccount.connection_id),
    m.BankTransfer: _via(m.BankTransfer.payout_id, m.Payout),
    m.PayoutDisposition: _via(m.PayoutDisposition.payout_id, m.Payout),
    m.SubOrgTransaction: _own_connection(m.SubOrgTransaction.connection_id),
    m.Clawback: _own_connection(m.Clawback.connection_id),
    m.ClawbackRecovery: _via(m.ClawbackRecovery.clawback_id, m.Clawback),
    m.Ticket: _own_connection(m.Ticket.connection_id),
    m.TicketMessage: _ticket_message,
}
