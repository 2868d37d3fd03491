"""Per-request DataLoaders: every nested field reads through one of these.

Each loader turns the keys gathered in one tick of the event loop into one
statement, and returns results in key order with a miss as None.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Generic, Sequence, TypeVar

from aiodataloader import DataLoader
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from db import models as m
from services import lists
from services.errors import DomainError
from services.pagination import Page, PageArgs

T = TypeVar("T")


class ByColumn(DataLoader[Any, Any], Generic[T]):
    """One row per key (or None) where `column` equals the key."""

    def __init__(
        self,
        session: AsyncSession,
        model: type[T],
        column: InstrumentedAttribute[Any],
        by_id: "ByColumn[T] | None" = None,
    ):
        super().__init__()
        self.session, self.model, self.column, self.by_id = session, model, column, by_id

    async def batch_load_fn(self, keys: Sequence[Any]) -> list[T | None]:
        rows = list(await self.session.scalars(select(self.model).where(self.column.in_(set(keys)))))
        if self.by_id is not None:  # a row found by another key is now known by id too
            for r in rows:
                self.by_id.prime(r.id, r)  # type: ignore[attr-defined]
        found = {getattr(r, self.column.key): r for r in rows}
        return [found.get(k) for k in keys]


class ListByColumn(DataLoader[Any, Any], Generic[T]):
    """All rows per key where `column` equals the key, in `order`."""

    def __init__(
        self,
        session: AsyncSession,
        model: type[T],
        column: InstrumentedAttribute[Any],
        *order: Any,
        with_parent: tuple[InstrumentedAttribute[Any], ByColumn[Any]] | None = None,
    ):
        """`with_parent=(foreign key, loader of what it points to)` reads those rows in the
        same statement and primes their loader, saving the next round trip."""
        super().__init__()
        self.session, self.model, self.column, self.order = session, model, column, order
        self.with_parent = with_parent

    async def batch_load_fn(self, keys: Sequence[Any]) -> list[list[T]]:
        stmt = select(self.model).where(self.column.in_(set(keys))).order_by(*self.order)
        grouped: dict[Any, list[T]] = defaultdict(list)
        if self.with_parent is None:
            for r in await self.session.scalars(stmt):
                grouped[getattr(r, self.column.key)].append(r)
        else:
            fk, parents = self.with_parent
            stmt = stmt.add_columns(parents.model).join(parents.model, parents.column == fk)
            for r, parent in (await self.session.execute(stmt)).all():
                parents.prime(getattr(parent, parents.column.key), parent)
                grouped[getattr(r, self.column.key)].append(r)
        return [grouped.get(k, []) for k in keys]


PageFetch = Callable[[AsyncSession, Sequence[Any], Any, PageArgs], Awaitable[dict[Any, Page[Any]]]]


class PageLoader(DataLoader[tuple[Any, Any, PageArgs], Page[Any]]):
    """Pages keyed by (parent id, filter, page args); one statement per distinct filter+args."""

    def __init__(self, session: AsyncSession, fetch: PageFetch):
        super().__init__()
        self.session, self.fetch = session, fetch

    async def batch_load_fn(self, keys: Sequence[tuple[Any, Any, PageArgs]]) -> list[Page[Any] | DomainError]:
        groups: dict[tuple[Any, PageArgs], list[Any]] = defaultdict(list)
        for parent, extra, args in keys:
            groups[(extra, args)].append(parent)
        results: dict[tuple[Any, Any, PageArgs], Page[Any] | DomainError] = {}
        for (extra, args), parents in groups.items():
            try:
                pages: dict[Any, Page[Any] | DomainError] = dict(
                    await self.fetch(self.session, parents, extra, args)
                )
            except DomainError as err:  # a bad cursor or filter fails its own lists, not the others
                pages = dict.fromkeys(parents, err)
            for parent in parents:
                results[(parent, extra, args)] = pages[parent]
        return [results[k] for k in keys]


class MessageStats(DataLoader[tuple[int, bool], tuple[int, m.TicketMessage | None]]):
    """(count, last message) per (ticket id, include internal notes)."""

    def __init__(self, session: AsyncSession, users: ByColumn[m.User]):
        super().__init__()
        self.session, self.users = session, users

    async def batch_load_fn(
        self, keys: Sequence[tuple[int, bool]]
    ) -> list[tuple[int, m.TicketMessage | None]]:
        out: dict[tuple[int, bool], tuple[int, m.TicketMessage | None]] = {}
        for internal in {k[1] for k in keys}:
            ids = {k[0] for k in keys if k[1] == internal}
            visible = [m.TicketMessage.ticket_id.in_(ids)]
            if not internal:
                visible.append(m.TicketMessage.internal.is_(False))
            ranked = (
                select(
                    m.TicketMessage.id,
                    func.count().over(partition_by=m.TicketMessage.ticket_id).label("n"),
                    func.row_number()
                    .over(
                        partition_by=m.TicketMessage.ticket_id,
                        order_by=[m.TicketMessage.created_at.desc(), m.TicketMessage.id.desc()],
                    )
                    .label("r"),
                )
                .where(*visible)
                .subquery()
            )
            rows = await self.session.execute(
                select(m.TicketMessage, ranked.c.n, m.User)
                .join(ranked, ranked.c.id == m.TicketMessage.id)
                .join(m.User, m.User.id == m.TicketMessage.author_id)
                .where(ranked.c.r == 1)
            )
            found = {}
            for msg, n, author in rows.all():
                self.users.prime(author.id, author)  # the author is shown with the message
                found[msg.ticket_id] = (n, msg)
            for tid in ids:
                out[(tid, internal)] = found.get(tid, (0, None))
        return [out[k] for k in keys]


@dataclass(frozen=True)
class ConnectionState:
    """The rows a connection has exactly one of."""

    subscription: m.Subscription | None
    usage: m.Usage | None
    wallet: m.Wallet | None


class StateByConnection(DataLoader[int, ConnectionState]):
    """Subscription, usage and wallet of each connection in one statement; the
    subscription's plan comes along and is primed into the plan loader."""

    def __init__(self, session: AsyncSession, plans: ByColumn[m.Plan]):
        super().__init__()
        self.session, self.plans = session, plans

    async def batch_load_fn(self, keys: Sequence[int]) -> list[ConnectionState]:
        rows = await self.session.execute(
            select(m.Connection.id, m.Subscription, m.Plan, m.Usage, m.Wallet)
            .outerjoin(m.Subscription, m.Subscription.connection_id == m.Connection.id)
            .outerjoin(m.Plan, m.Plan.id == m.Subscription.plan_id)
            .outerjoin(m.Usage, m.Usage.connection_id == m.Connection.id)
            .outerjoin(m.Wallet, m.Wallet.connection_id == m.Connection.id)
            .where(m.Connection.id.in_(set(keys)))
        )
        found = {}
        for cid, subscription, plan, usage, wallet in rows.all():
            if plan is not None:
                self.plans.prime(plan.id, plan)
            found[cid] = ConnectionState(subscription, usage, wallet)
        return [found.get(k, ConnectionState(None, None, None)) for k in keys]


class Loaders:
    """Created per request; never shared between requests or users."""

    def __init__(self, session: AsyncSession) -> None:
        s = session
        self.user = ByColumn(s, m.User, m.User.id)
        self.partner = ByColumn(s, m.Partner, m.Partner.id)
        self.connection = ByColumn(s, m.Connection, m.Connection.id)
        self.connection_by_partner = ByColumn(
            s, m.Connection, m.Connection.partner_id, by_id=self.connection
        )
        self.plan = ByColumn(s, m.Plan, m.Plan.id)
        self.connection_state = StateByConnection(s, self.plan)
        self.wallet = ByColumn(s, m.Wallet, m.Wallet.id)
        self.addon_product = ByColumn(s, m.AddOnProduct, m.AddOnProduct.id)
        self.addon = ByColumn(s, m.AddOn, m.AddOn.id)
        self.addons_by_connection = ListByColumn(
            s, m.AddOn, m.AddOn.connection_id, m.AddOn.created_at, m.AddOn.id,
            with_parent=(m.AddOn.product_id, self.addon_product),
        )
        self.invoice = ByColumn(s, m.Invoice, m.Invoice.id)
        self.line_items_by_invoice = ListByColumn(
            s, m.InvoiceLineItem, m.InvoiceLineItem.invoice_id, m.InvoiceLineItem.id
        )
        self.payments_by_invoice = ListByColumn(
            s, m.InvoicePayment, m.InvoicePayment.invoice_id, m.InvoicePayment.created_at, m.InvoicePayment.id
        )
        self.wallet_entry = ByColumn(s, m.WalletEntry, m.WalletEntry.id)
        self.affiliate_payout = ByColumn(s, m.AffiliatePayout, m.AffiliatePayout.id)
        self.payout = ByColumn(s, m.Payout, m.Payout.id)
        self.bank_account = ByColumn(s, m.BankAccount, m.BankAccount.id)
        self.transfers_by_payout = ListByColumn(
            s, m.BankTransfer, m.BankTransfer.payout_id, m.BankTransfer.created_at, m.BankTransfer.id,
            with_parent=(m.BankTransfer.bank_account_id, self.bank_account),
        )
        self.transactions_by_payout = ListByColumn(
            s, m.SubOrgTransaction, m.SubOrgTransaction.payout_id,
            m.SubOrgTransaction.occurred_at, m.SubOrgTransaction.id,
        )
        self.bank_transfer = ByColumn(s, m.BankTransfer, m.BankTransfer.id)
        self.bank_accounts_by_connection = ListByColumn(
            s, m.BankAccount, m.BankAccount.connection_id, m.BankAccount.created_at, m.BankAccount.id
        )
        self.ticket = ByColumn(s, m.Ticket, m.Ticket.id)
        self.ticket_message = ByColumn(s, m.TicketMessage, m.TicketMessage.id)
        self.message_stats = MessageStats(s, self.user)
        self.sub_org_transaction = ByColumn(s, m.SubOrgTransaction, m.SubOrgTransaction.id)

        self.invoice_pages = PageLoader(s, lists.invoices)
        self.ticket_pages = PageLoader(s, lists.connection_tickets)
        self.message_pages = PageLoader(s, lists.ticket_messages)
        self.wallet_entry_pages = PageLoader(
            s, lambda sess, ids, _extra, args: lists.wallet_entries(sess, ids, args)
        )
        self.affiliate_payout_pages = PageLoader(
            s, lambda sess, ids, _extra, args: lists.affiliate_payouts(sess, ids, args)
        )
        self.payout_pages = PageLoader(s, lists.payouts)
