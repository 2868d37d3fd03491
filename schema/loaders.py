"""Per-request DataLoaders: every nested field reads through one of these.

Each loader turns the keys gathered in one tick of the event loop into one
statement, and returns results in key order with a miss as None. Loaders know
the caller: each statement carries `services.visibility`'s condition for the
rows it reads, so a row the caller may not see is never returned, nor primed.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Generic, Sequence, TypeVar, cast

from aiodataloader import DataLoader
from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from db import models as m
from db.rows import Layout, columns, found, read
from services import ledger, lists
from services import visibility as vis
from services.access import Principal
from services.errors import DomainError
from services.pagination import Along, Listing, Page, PageArgs, count_rows, fetch_pages
from services.visibility import visible

T = TypeVar("T")

# Each loader's statement, built once per kind of caller (staff or Partner user) and
# run with the keys and the caller's ids as bound parameters (services.visibility).
_STATEMENTS: dict[Any, Any] = {}


def _statement(key: Any, principal: Principal, build: Callable[[Principal], Any]) -> Any:
    shape = vis.shape_of(principal)
    stmt = _STATEMENTS.get((key, shape))
    if stmt is None:
        stmt = _STATEMENTS[(key, shape)] = build(shape)
    return stmt


def _params(principal: Principal, keys: Sequence[Any]) -> dict[str, Any]:
    return {"keys": list(set(keys)), **vis.params(principal)}


def _in_keys(column: Any) -> Any:
    return column.in_(bindparam("keys", expanding=True))


MISSING: Any = object()

# A connection's clawbacks, newest first: made once, as the statements are cached by their order.
_NEWEST_CLAWBACKS = (m.Clawback.created_at.desc(), m.Clawback.id.desc())


class Loader(DataLoader[Any, Any]):
    """A DataLoader that can say what it already holds, so that a resolver whose row a
    page has loaded answers at once instead of awaiting (schema.base.now_or_later)."""

    def __init__(self) -> None:
        self.known: dict[Any, Any] = {}
        super().__init__(cache_map=self.known)

    async def fill(self, keys: Sequence[Any]) -> None:
        """Load the keys not loaded yet in one batch, straight into the cache: what a page
        primes for its items, without a future and a callback per key."""
        missing = [k for k in dict.fromkeys(keys) if k not in self.known]
        if missing:
            for key, value in zip(missing, await self.batch_load_fn(missing), strict=True):
                self.prime(key, value)

    def loaded(self, key: Any) -> Any:
        """The value for `key` if it has been loaded (None included), else MISSING."""
        future = self.known.get(key)
        if future is None or not future.done() or future.cancelled() or future.exception() is not None:
            return MISSING
        return future.result()


class ByColumn(Loader, Generic[T]):
    """One row per key (or None) where `column` equals the key and the caller may see it."""

    def __init__(
        self,
        session: AsyncSession,
        principal: Principal,
        model: type[T],
        column: InstrumentedAttribute[Any],
        by_id: "ByColumn[T] | None" = None,
    ):
        super().__init__()
        self.session, self.principal, self.model, self.column = session, principal, model, column
        self.by_id = by_id

    async def batch_load_fn(self, keys: Sequence[Any]) -> list[T | None]:
        stmt = _statement(
            ("by", self.model, self.column.key), self.principal,
            lambda p: select(*columns(self.model)).where(_in_keys(self.column), visible(self.model, p)),
        )
        # Rows read as T (db.rows): the model's columns under its attributes' names.
        rows = await read(self.session, stmt, _params(self.principal, keys))
        if self.by_id is not None:  # a row found by another key is now known by id too
            for r in rows:
                self.by_id.prime(r.id, r)
        by_key = {getattr(r, self.column.key): r for r in rows}
        return cast("list[T | None]", [by_key.get(k) for k in keys])


class ListByColumn(Loader, Generic[T]):
    """All rows per key where `column` equals the key, in `order`."""

    def __init__(
        self,
        session: AsyncSession,
        principal: Principal,
        model: type[T],
        column: InstrumentedAttribute[Any],
        *order: Any,
        with_parent: tuple[InstrumentedAttribute[Any], ByColumn[Any]] | None = None,
    ):
        """`with_parent=(foreign key, loader of what it points to)` reads those rows in the
        same statement, where the caller may see them, and primes their loader, saving
        the next round trip."""
        super().__init__()
        self.session, self.principal, self.model, self.column = session, principal, model, column
        self.order, self.with_parent = order, with_parent

    async def batch_load_fn(self, keys: Sequence[Any]) -> list[list[T]]:
        def build(p: Principal) -> Any:
            if self.with_parent is None:
                stmt = select(*columns(self.model)).where(_in_keys(self.column), visible(self.model, p))
                return stmt.order_by(*self.order), None
            fk, parents = self.with_parent
            layout = Layout(self.model, parents.model)
            return (
                select(*layout.columns)
                .select_from(self.model)
                .where(_in_keys(self.column), visible(self.model, p))
                .order_by(*self.order)
                .outerjoin(
                    parents.model, and_(parents.column == fk, visible(parents.model, p))
                )
            ), layout

        parent_key = None if self.with_parent is None else (self.with_parent[0], self.with_parent[1].model)
        stmt, layout = _statement(("list", self.model, self.column.key, self.order, parent_key), self.principal, build)
        params = _params(self.principal, keys)
        grouped: dict[Any, list[Any]] = defaultdict(list)  # rows read as T (db.rows)
        rows = await read(self.session, stmt, params)
        if self.with_parent is None:
            for r in rows:
                grouped[getattr(r, self.column.key)].append(r)
        else:
            parents = self.with_parent[1]
            for r, parent in map(layout.split, rows):
                if found(parent, parents.model) is not None:
                    parents.prime(getattr(parent, parents.column.key), parent)
                grouped[getattr(r, self.column.key)].append(r)
        return [grouped.get(k, []) for k in keys]


class PageLoader(DataLoader[tuple[Any, ...], Page[Any]]):
    """Pages keyed by (parent id, filter, page args[, along]); one statement per distinct
    filter+args+along (services.pagination.Along: what the statement brings with the items).
    `counts` answers each (parent id, filter)'s whole count, one statement per filter."""

    def __init__(self, session: AsyncSession, listing: Callable[[Any], Listing[Any]]):
        super().__init__()
        self.session, self.listing = session, listing
        self.counts = CountLoader(session, listing)

    async def batch_load_fn(  # type: ignore[override]  # an Exception fails its key's load
        self, keys: Sequence[tuple[Any, ...]]
    ) -> list[Page[Any] | DomainError]:
        groups: dict[tuple[Any, PageArgs, Along | None], list[Any]] = defaultdict(list)
        for parent, extra, args, *rest in keys:
            groups[(extra, args, rest[0] if rest else None)].append(parent)
        results: dict[tuple[Any, Any, PageArgs, Along | None], Page[Any] | DomainError] = {}
        for (extra, args, along), parents in groups.items():
            try:
                pages: dict[Any, Page[Any] | DomainError] = dict(
                    await fetch_pages(self.session, self.listing(extra), parents, args, along)
                )
            except DomainError as err:  # a bad cursor or filter fails its own lists, not the others
                pages = dict.fromkeys(parents, err)
            for parent in parents:
                page = pages[parent]
                if isinstance(page, Page):
                    page.total = functools.partial(self.counts.load, (parent, extra))
                results[(parent, extra, args, along)] = page
        return [results[(k[0], k[1], k[2], k[3] if len(k) > 3 else None)] for k in keys]


class CountLoader(DataLoader[tuple[Any, Any], int]):
    """How many rows each (parent id, filter)'s whole list holds; one statement per filter."""

    def __init__(self, session: AsyncSession, listing: Callable[[Any], Listing[Any]]):
        super().__init__()
        self.session, self.listing = session, listing

    async def batch_load_fn(self, keys: Sequence[tuple[Any, Any]]) -> list[int]:
        groups: dict[Any, list[Any]] = defaultdict(list)
        for parent, extra in keys:
            groups[extra].append(parent)
        found: dict[tuple[Any, Any], int] = {}
        for extra, parents in groups.items():
            counts = await count_rows(self.session, self.listing(extra), parents)
            found.update({(parent, extra): n for parent, n in counts.items()})
        return [found[k] for k in keys]


class MessageStats(Loader):
    """(count, last message) per ticket, of the messages the caller may see; the last
    message's author comes along and is primed into the user loader."""

    def __init__(self, session: AsyncSession, principal: Principal, users: ByColumn[m.User]):
        super().__init__()
        self.session, self.principal, self.users = session, principal, users

    async def batch_load_fn(self, keys: Sequence[int]) -> list[tuple[int, m.TicketMessage | None]]:
        sqlite = _on_sqlite(self.session)
        stmt, layout = _statement(("message_stats", sqlite), self.principal, lambda p: self._build(p, sqlite))
        stats = {}
        for msg, n, author in map(layout.split, await read(self.session, stmt, _params(self.principal, keys))):
            if found(author, m.User) is not None:  # the author is shown with the message
                self.users.prime(author.id, author)
            stats[msg.ticket_id] = (n, msg)
        return [stats.get(k, (0, None)) for k in keys]

    @staticmethod
    def _build(p: Principal, sqlite: bool) -> Any:
        """As a page of tickets brings them along (`_page_message_stats`), for the tickets asked."""
        asked = select(m.Ticket.id).where(_in_keys(m.Ticket.id)).subquery("asked")
        joined, on, n, newest = _page_message_stats(p, asked, sqlite)
        last, author = aliased(m.TicketMessage, name="last_message"), _visible(m.User, p, "author")
        layout = Layout(("last_message", [getattr(last, str(c.key)) for c in columns(m.TicketMessage)]), n,
                        ("author", author.c))
        return (
            select(*layout.columns)
            .select_from(asked)
            .join(joined, on)
            .join(last, last.id == newest)
            .outerjoin(author, author.c.id == last.author_id)
        ), layout


def _on_sqlite(session: AsyncSession) -> bool:
    """Whether the session's database is SQLite (some statements are written for each)."""
    return bool(session.get_bind().dialect.name == "sqlite")


def _ranked_messages(p: Principal, of_tickets: Any) -> Any:
    """The messages the caller may see of the tickets `of_tickets` names, each with its
    ticket's count of them (`n`) and its rank, newest first (`r`: 1 is the newest)."""
    TM = m.TicketMessage
    return (
        select(
            TM.id, TM.ticket_id,
            func.count().over(partition_by=TM.ticket_id).label("n"),
            func.row_number().over(partition_by=TM.ticket_id, order_by=[TM.created_at.desc(), TM.id.desc()]).label("r"),
        )
        .where(of_tickets, visible(TM, p))
        .subquery("ranked")
    )


class FundedBy(Loader):
    """services.ledger.funded_by_many of wallet debit entries, keyed by the entry; one
    statement for all the entries asked about together."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__()
        self.session = session

    def get_cache_key(self, entry: m.LedgerEntry) -> int:
        return entry.id

    async def batch_load_fn(self, entries: Sequence[m.LedgerEntry]) -> list[list[tuple[int, int]]]:
        found = await ledger.funded_by_many(self.session, entries)
        return [found[e.id] for e in entries]


@dataclass(frozen=True)
class ConnectionState:
    """The rows a connection has exactly one of."""

    subscription: m.Subscription | None
    usage: m.Usage | None
    wallet: m.LedgerAccount | None


class StateByConnection(DataLoader[int, ConnectionState]):
    """Subscription, usage and wallet of each connection in one statement; the
    subscription's plan, and the plan of its pending change, come along and are primed
    into the plan loader."""

    def __init__(self, session: AsyncSession, principal: Principal, plans: ByColumn[m.Plan]):
        super().__init__()
        self.session, self.principal, self.plans = session, principal, plans

    async def batch_load_fn(self, keys: Sequence[int]) -> list[ConnectionState]:
        stmt, layout = _statement("connection_state", self.principal, self._build)
        states = {}
        rows = await read(self.session, stmt, _params(self.principal, keys))
        for cid, subscription, plan, pending, usage, wallet in map(layout.split, rows):
            for known in (plan, pending):
                if found(known, m.Plan) is not None:
                    self.plans.prime(known.id, known)
            states[cid] = ConnectionState(
                found(subscription, m.Subscription), found(usage, m.Usage), found(wallet, m.LedgerAccount)
            )
        return [states.get(k, ConnectionState(None, None, None)) for k in keys]

    @staticmethod
    def _build(p: Principal) -> Any:
        pending = _visible(m.Plan, p, "pending_plan")
        layout = Layout(m.Connection.id, m.Subscription, m.Plan, ("pending_plan", pending.c), m.Usage, m.LedgerAccount)
        return (
            select(*layout.columns)
            .select_from(m.Connection)
            .outerjoin(m.Subscription, m.Subscription.connection_id == m.Connection.id)
            .outerjoin(m.Plan, and_(m.Plan.id == m.Subscription.plan_id, visible(m.Plan, p)))
            .outerjoin(pending, pending.c.id == m.Subscription.pending_plan_id)
            .outerjoin(m.Usage, m.Usage.connection_id == m.Connection.id)
            .outerjoin(
                m.LedgerAccount,
                and_(m.LedgerAccount.connection_id == m.Connection.id, m.LedgerAccount.kind == "WALLET"),
            )
            .where(_in_keys(m.Connection.id), visible(m.Connection, p))
        ), layout


def _visible(model: type[Any], p: Principal, name: str) -> Any:
    """The model's rows the caller may see, under a name of their own (a statement may join
    them twice, and the visibility rule's subqueries must not correlate with the join)."""
    return select(*columns(model)).where(visible(model, p)).subquery(name)


def _page_message_stats(p: Principal, page: Any, sqlite: bool) -> tuple[Any, Any, Any, Any]:
    """Per ticket of `page`: (what to join, its join condition, how many messages the caller
    may see, the newest one's id). PostgreSQL numbers the page's messages in one pass
    (window functions); SQLite looks each ticket's up by the (ticket_id, created_at, id)
    index, twice as fast there (and half as fast on PostgreSQL)."""
    TM = m.TicketMessage
    if not sqlite:
        ranked = _ranked_messages(p, TM.ticket_id.in_(select(page.c.id)))
        return ranked, and_(ranked.c.ticket_id == page.c.id, ranked.c.r == 1), ranked.c.n, ranked.c.id
    of_ticket, seen = TM.ticket_id == page.c.id, visible(TM, p)
    n = select(func.count()).where(of_ticket, seen).correlate(page).scalar_subquery()
    newest = (
        select(TM.id).where(of_ticket, seen).order_by(TM.created_at.desc(), TM.id.desc()).limit(1)
        .correlate(page).scalar_subquery()
    )
    looked_up = select(page.c.id.label("ticket_id"), n.label("n"), newest.label("newest_id")).subquery("looked_up")
    return looked_up, looked_up.c.ticket_id == page.c.id, looked_up.c.n, looked_up.c.newest_id


def _tickets_along(p: Principal, stats: bool, users: bool, sqlite: bool) -> Callable[[Any, list[Any]], Any]:
    """A page of tickets with what their items show, in one statement: for `stats`, how many
    messages the caller may see and the newest of them with its author (as MessageStats
    reads them); for `users`, the assignee and the submitter (as the user loader reads them)."""

    def extend(page: Any, order: list[Any]) -> tuple[Any, Layout]:
        TM = m.TicketMessage
        parts: list[Any] = [("item", page.c)]
        stmt = select().select_from(page)
        if stats:
            joined, on, n, newest = _page_message_stats(p, page, sqlite)
            last, author = aliased(TM, name="last_message"), _visible(m.User, p, "author")
            parts += [n, ("last_message", [getattr(last, str(c.key)) for c in columns(TM)]), ("author", author.c)]
            stmt = (
                stmt.outerjoin(joined, on)
                .outerjoin(last, last.id == newest)
                .outerjoin(author, author.c.id == last.author_id)
            )
        if users:
            assignee, creator = _visible(m.User, p, "assignee"), _visible(m.User, p, "creator")
            parts += [("assignee", assignee.c), ("creator", creator.c)]
            stmt = (
                stmt.outerjoin(assignee, assignee.c.id == page.c.assigned_to_id)
                .outerjoin(creator, creator.c.id == page.c.created_by_id)
            )
        layout = Layout(*parts)
        return stmt.add_columns(*layout.columns).order_by(*order), layout

    return extend


def _payouts_along(p: Principal) -> Callable[[Any, list[Any]], Any]:
    """A page of payouts with their bank transfers, oldest first, and the accounts they go to
    (as transfers_by_payout reads them): a row per transfer, one for a payout with none."""

    def extend(page: Any, order: list[Any]) -> tuple[Any, Layout]:
        BT, BA = m.BankTransfer, m.BankAccount
        layout = Layout(("item", page.c), BT, BA)
        return (
            select(*layout.columns)
            .select_from(page)
            .outerjoin(BT, and_(BT.payout_id == page.c.id, visible(BT, p)))
            .outerjoin(BA, and_(BA.id == BT.bank_account_id, visible(BA, p)))
            .order_by(*order, BT.created_at, BT.id)
        ), layout

    return extend


class Loaders:
    """Created per request for one caller; never shared between requests or users. Each
    loader is made the first time the request asks for it (a request uses a few of them).

    The page loaders (services.lists) are keyed by parents the caller has already
    read through a loader here, and leave out internal notes unless asked by staff."""

    def __init__(self, session: AsyncSession, principal: Principal) -> None:
        self.session, self.principal = session, principal
        self._by_id: dict[type[Any], ByColumn[Any]] = {}
        self._alongs: dict[Any, Along] = {}

    @cached_property
    def user(self) -> ByColumn[m.User]:
        return self.by_id(m.User)

    @cached_property
    def partner(self) -> ByColumn[m.Partner]:
        return self.by_id(m.Partner)

    @cached_property
    def connection(self) -> ByColumn[m.Connection]:
        return self.by_id(m.Connection)

    @cached_property
    def connection_by_partner(self) -> ByColumn[m.Connection]:
        return ByColumn(self.session, self.principal, m.Connection, m.Connection.partner_id, by_id=self.connection)

    @cached_property
    def plan(self) -> ByColumn[m.Plan]:
        return self.by_id(m.Plan)

    @cached_property
    def connection_state(self) -> StateByConnection:
        return StateByConnection(self.session, self.principal, self.plan)

    @cached_property
    def addon_product(self) -> ByColumn[m.AddOnProduct]:
        return self.by_id(m.AddOnProduct)

    @cached_property
    def addons_by_connection(self) -> ListByColumn[m.AddOn]:
        return ListByColumn(
            self.session, self.principal, m.AddOn, m.AddOn.connection_id, m.AddOn.created_at, m.AddOn.id,
            with_parent=(m.AddOn.product_id, self.addon_product),
        )

    @cached_property
    def line_items_by_invoice(self) -> ListByColumn[m.InvoiceLineItem]:
        return ListByColumn(
            self.session, self.principal, m.InvoiceLineItem, m.InvoiceLineItem.invoice_id, m.InvoiceLineItem.id
        )

    @cached_property
    def payments_by_invoice(self) -> ListByColumn[m.InvoicePayment]:
        return ListByColumn(
            self.session, self.principal, m.InvoicePayment, m.InvoicePayment.invoice_id,
            m.InvoicePayment.created_at, m.InvoicePayment.id, with_parent=(m.InvoicePayment.created_by_id, self.user),
        )

    @cached_property
    def credit_notes_by_invoice(self) -> ListByColumn[m.CreditNote]:
        return ListByColumn(
            self.session, self.principal, m.CreditNote, m.CreditNote.invoice_id, m.CreditNote.created_at, m.CreditNote.id
        )

    @cached_property
    def refunds_by_invoice(self) -> ListByColumn[m.Refund]:
        return ListByColumn(self.session, self.principal, m.Refund, m.Refund.invoice_id, m.Refund.id)

    @cached_property
    def refunds_by_credit_note(self) -> ListByColumn[m.Refund]:
        return ListByColumn(self.session, self.principal, m.Refund, m.Refund.credit_note_id, m.Refund.id)

    @cached_property
    def transfers_by_payout(self) -> ListByColumn[m.BankTransfer]:
        return ListByColumn(
            self.session, self.principal, m.BankTransfer, m.BankTransfer.payout_id, m.BankTransfer.created_at,
            m.BankTransfer.id, with_parent=(m.BankTransfer.bank_account_id, self.by_id(m.BankAccount)),
        )

    @cached_property
    def dispositions_by_payout(self) -> ListByColumn[m.PayoutDisposition]:
        return ListByColumn(
            self.session, self.principal, m.PayoutDisposition, m.PayoutDisposition.payout_id,
            m.PayoutDisposition.created_at, m.PayoutDisposition.id,
        )

    @cached_property
    def transactions_by_payout(self) -> ListByColumn[m.SubOrgTransaction]:
        return ListByColumn(
            self.session, self.principal, m.SubOrgTransaction, m.SubOrgTransaction.payout_id,
            m.SubOrgTransaction.occurred_at, m.SubOrgTransaction.id,
        )

    @cached_property
    def clawbacks_by_connection(self) -> ListByColumn[m.Clawback]:
        """Newest first."""
        return ListByColumn(self.session, self.principal, m.Clawback, m.Clawback.connection_id, *_NEWEST_CLAWBACKS)

    @cached_property
    def clawbacks_by_transaction(self) -> ListByColumn[m.Clawback]:
        return ListByColumn(
            self.session, self.principal, m.Clawback, m.Clawback.transaction_id, m.Clawback.created_at, m.Clawback.id
        )

    @cached_property
    def recoveries_by_clawback(self) -> ListByColumn[m.ClawbackRecovery]:
        return ListByColumn(
            self.session, self.principal, m.ClawbackRecovery, m.ClawbackRecovery.clawback_id,
            m.ClawbackRecovery.created_at, m.ClawbackRecovery.id,
        )

    @cached_property
    def recoveries_by_payout(self) -> ListByColumn[m.ClawbackRecovery]:
        """Each with its clawback, read in the same statement (primed into by_id(m.Clawback))."""
        return ListByColumn(
            self.session, self.principal, m.ClawbackRecovery, m.ClawbackRecovery.payout_id,
            m.ClawbackRecovery.created_at, m.ClawbackRecovery.id,
            with_parent=(m.ClawbackRecovery.clawback_id, self.by_id(m.Clawback)),
        )

    @cached_property
    def bank_accounts_by_connection(self) -> ListByColumn[m.BankAccount]:
        return ListByColumn(
            self.session, self.principal, m.BankAccount, m.BankAccount.connection_id, m.BankAccount.created_at,
            m.BankAccount.id,
        )

    @cached_property
    def message_stats(self) -> MessageStats:
        return MessageStats(self.session, self.principal, self.user)

    @cached_property
    def entries_by_transfer(self) -> ListByColumn[m.LedgerEntry]:
        return ListByColumn(
            self.session, self.principal, m.LedgerEntry, m.LedgerEntry.transfer_id, m.LedgerEntry.id
        )

    @cached_property
    def funded_by(self) -> FundedBy:
        return FundedBy(self.session)

    @cached_property
    def invoice_pages(self) -> PageLoader:
        return PageLoader(self.session, lists.invoices)

    @cached_property
    def ticket_pages(self) -> PageLoader:
        return PageLoader(self.session, lists.connection_tickets)

    @cached_property
    def message_pages(self) -> PageLoader:
        return PageLoader(self.session, lists.ticket_messages)

    @cached_property
    def wallet_entry_pages(self) -> PageLoader:
        return PageLoader(self.session, lists.wallet_entries)

    @cached_property
    def affiliate_payout_pages(self) -> PageLoader:
        return PageLoader(self.session, lists.affiliate_payouts)

    @cached_property
    def payout_pages(self) -> PageLoader:
        return PageLoader(self.session, lists.payouts)

    @cached_property
    def sub_org_transaction_pages(self) -> PageLoader:
        return PageLoader(self.session, lists.sub_org_transactions)

    def tickets_along(self, stats: bool, users: bool) -> Along | None:
        """What a page of tickets brings along for the fields its items show (or None)."""
        if not (stats or users):
            return None
        sqlite = _on_sqlite(self.session)
        key = ("tickets", stats, users, sqlite)
        if key not in self._alongs:
            p = self.principal

            def take(rows: list[Any]) -> list[Any]:
                for item, *rest in rows:
                    if stats:
                        n, last, author = rest[:3]
                        self.message_stats.prime(item.id, (n, last) if found(last, m.TicketMessage) else (0, None))
                        if found(author, m.User) is not None:
                            self.user.prime(author.id, author)
                    for user in rest[3:] if stats else rest:
                        if found(user, m.User) is not None:
                            self.user.prime(user.id, user)
                return [item for item, *_ in rows]

            extend = _statement(key, p, lambda shape: _tickets_along(shape, stats, users, sqlite))
            self._alongs[key] = Along((key, vis.shape_of(p)), extend, vis.params(p), take)
        return self._alongs[key]

    def payouts_along(self, transfers: bool) -> Along | None:
        """What a page of payouts brings along for the fields its items show (or None)."""
        if not transfers:
            return None
        if "payouts" not in self._alongs:
            p = self.principal

            def take(rows: list[Any]) -> list[Any]:
                items: dict[int, Any] = {}
                kept: dict[int, list[Any]] = {}
                for item, transfer, account in rows:
                    if item.id not in items:
                        items[item.id], kept[item.id] = item, []
                    if found(transfer, m.BankTransfer) is not None:
                        kept[item.id].append(transfer)
                        if found(account, m.BankAccount) is not None:
                            self.by_id(m.BankAccount).prime(account.id, account)
                for pid, found_transfers in kept.items():
                    self.transfers_by_payout.prime(pid, found_transfers)
                return list(items.values())

            extend = _statement("payouts_along", p, _payouts_along)
            self._alongs["payouts"] = Along(("payouts", vis.shape_of(p)), extend, vis.params(p), take)
        return self._alongs["payouts"]

    def by_id(self, model: type[T]) -> ByColumn[T]:
        """The loader of `model`'s rows by primary key (those the caller may see), made once."""
        if model not in self._by_id:
            pk = model.id  # type: ignore[attr-defined]  # every model has an integer id
            self._by_id[model] = ByColumn(self.session, self.principal, model, pk)
        return self._by_id[model]
