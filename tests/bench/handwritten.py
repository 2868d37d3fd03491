"""The dashboard as a hand-written endpoint: the baseline GraphQL is measured against.

`GET /dashboard?first=N` answers, byte for byte, what `operations/DashboardOverview.graphql`
answers through `POST /graphql` with `{"first": N}`: the same `{"data": ...}` body, key
order, global IDs, cursors, decimal strings and ISO dates, serialized by the same
response class (server.graphql_http.GraphQLResponse). On the same stack as the real app: Starlette, the request log middleware,
the bearer token checked by server.auth and the caller read by server.app.load_caller,
the engine and session factory of db.engine, and the same visibility: only the caller's
connection's rows, no internal notes.

Written as a REST endpoint would be: one statement per thing the page shows (about
eight), rows turned into dicts. Not for production; `uvicorn --factory
tests.bench.handwritten:app_from_env` serves it with DATABASE_URL.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any, AsyncIterator

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from db import models as m
from db.engine import create_engine, read_sessions
from schema.base import to_global_id
from server.app import RequestLog
from server.auth import AuthError, TokenVerifier
from server.endpoint import Caller, Unauthorized, load_caller
from server.graphql_http import GraphQLResponse, graphql_error
from server.settings import Settings
from services import money
from services.invoices import amount_due
from services.pagination import encode_cursor

WAITING = ("OPEN", "IN_PROGRESS")


def _money(minor: int, currency: str) -> dict[str, Any]:
    return {"amount": str(money.to_decimal(minor, currency)), "currencyCode": currency}


def _time(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _page_info(has_next: bool, cursors: list[str]) -> dict[str, Any]:
    return {"hasNextPage": has_next, "endCursor": cursors[-1] if cursors else None}


async def _page(session: AsyncSession, stmt: Any, first: int) -> tuple[list[Any], bool]:
    """The first `first` rows of `stmt` and whether there are more."""
    if first == 0:
        return [], False
    rows = list((await session.execute(stmt.limit(first + 1))).all())
    return rows[:first], len(rows) > first


async def dashboard(session: AsyncSession, caller: Caller, first: int) -> dict[str, Any]:
    user = caller.user
    return {"data": {"viewer": {
        "id": to_global_id("Viewer", user.id),
        "user": {"id": to_global_id("User", user.id), "name": user.name, "email": user.email},
        "roles": sorted(r.value for r in caller.principal.roles),
        "partner": await _partner(session, caller, first) if caller.partner is not None else None,
    }}}


async def _partner(session: AsyncSession, caller: Caller, first: int) -> dict[str, Any]:
    partner, conn = caller.partner, caller.connection
    assert partner is not None and conn is not None, "every Partner has a Revampd connection"
    cid, cur = conn.id, conn.currency_code
    # Users the caller may see next to a ticket of its own: its Partner's, and Revampd staff
    # (who appear on its tickets only as their assignee or as authors of their messages).
    visible_user = or_(m.User.partner_id == caller.principal.partner_id, m.User.partner_id.is_(None))

    # The subscription with its plan and pending plan, usage and the wallet.
    target = aliased(m.Plan)
    sub, plan, target_plan, usage, wallet = (await session.execute(
        select(m.Subscription, m.Plan, target, m.Usage, m.LedgerAccount)
        .select_from(m.Connection)
        .join(m.Subscription, m.Subscription.connection_id == m.Connection.id)
        .join(m.Plan, m.Plan.id == m.Subscription.plan_id)
        .outerjoin(target, target.id == m.Subscription.pending_plan_id)
        .outerjoin(m.Usage, m.Usage.connection_id == m.Connection.id)
        .outerjoin(m.LedgerAccount, and_(m.LedgerAccount.connection_id == m.Connection.id,
                                         m.LedgerAccount.kind == "WALLET"))
        .where(m.Connection.id == cid)
    )).one()

    addons = (await session.execute(
        select(m.AddOn, m.AddOnProduct).join(m.AddOnProduct, m.AddOnProduct.id == m.AddOn.product_id)
        .where(m.AddOn.connection_id == cid).order_by(m.AddOn.created_at, m.AddOn.id)
    )).all()

    invoices, more_invoices = await _page(session, (
        select(m.Invoice).where(m.Invoice.connection_id == cid)
        .order_by(m.Invoice.issued_at.desc(), m.Invoice.id.desc())
    ), first)

    assignee = aliased(m.User)
    tickets, more_tickets = await _page(session, (
        select(m.Ticket, assignee)
        .outerjoin(assignee, and_(assignee.id == m.Ticket.assigned_to_id,
                                  or_(assignee.partner_id == caller.principal.partner_id,
                                      assignee.partner_id.is_(None))))
        .where(m.Ticket.connection_id == cid, m.Ticket.status.in_(WAITING))
        .order_by(m.Ticket.last_activity_at.desc(), m.Ticket.id.desc())
    ), first)

    # Per ticket: how many messages it has and the newest, with its author (no internal notes).
    messages: dict[int, tuple[int, m.TicketMessage, m.User | None]] = {}
    if tickets:
        ranked = (
            select(
                m.TicketMessage.id,
                func.count().over(partition_by=m.TicketMessage.ticket_id).label("n"),
                func.row_number().over(
                    partition_by=m.TicketMessage.ticket_id,
                    order_by=[m.TicketMessage.created_at.desc(), m.TicketMessage.id.desc()],
                ).label("r"),
            )
            .where(m.TicketMessage.ticket_id.in_([t.id for t, _ in tickets]), m.TicketMessage.internal.is_(False))
            .subquery()
        )
        for msg, n, author in (await session.execute(
            select(m.TicketMessage, ranked.c.n, m.User)
            .join(ranked, ranked.c.id == m.TicketMessage.id)
            .outerjoin(m.User, and_(m.User.id == m.TicketMessage.author_id, visible_user))
            .where(ranked.c.r == 1)
        )).all():
            messages[msg.ticket_id] = (n, msg, author)

    payouts, more_payouts = await _page(session, (
        select(m.Payout).where(m.Payout.connection_id == cid)
        .order_by(m.Payout.period_end.desc(), m.Payout.id.desc())
    ), first)

    transfers: dict[int, list[tuple[m.BankTransfer, m.BankAccount | None]]] = {p.id: [] for p, in payouts}
    if payouts:
        for t, account in (await session.execute(
            select(m.BankTransfer, m.BankAccount)
            .outerjoin(m.BankAccount, and_(m.BankAccount.id == m.BankTransfer.bank_account_id,
                                           m.BankAccount.connection_id == cid))
            .where(m.BankTransfer.payout_id.in_(list(transfers)))
            .order_by(m.BankTransfer.created_at, m.BankTransfer.id)
        )).all():
            transfers[t.payout_id].append((t, account))

    pending = None
    if sub.pending_kind is not None and sub.pending_effective_at is not None:
        pending = {
            "kind": sub.pending_kind,
            "effectiveAt": _time(sub.pending_effective_at),
            "requestedAt": _time(sub.pending_requested_at),
            "targetPlan": {"id": to_global_id("Plan", target_plan.id), "name": target_plan.name}
            if target_plan is not None else None,
        }
    invoice_cursors = [encode_cursor([i.issued_at, i.id]) for i, in invoices]
    ticket_cursors = [encode_cursor([t.last_activity_at, t.id]) for t, _ in tickets]
    payout_cursors = [encode_cursor([p.period_end, p.id]) for p, in payouts]
    return {
        "id": to_global_id("Partner", partner.id),
        "name": partner.name,
        "revampdConnection": {
            "id": to_global_id("RevampdConnection", cid),
            "currencyCode": cur,
            "subscription": {
                "id": to_global_id("PlanSubscription", cid),
                "status": sub.status,
                "currentPeriodStart": _time(sub.current_period_start),
                "currentPeriodEnd": _time(sub.current_period_end),
                "plan": {
                    "id": to_global_id("Plan", plan.id),
                    "code": plan.code,
                    "name": plan.name,
                    "monthlyPrice": _money(plan.monthly_price, plan.currency_code),
                    "transactionFeePercent": str(Decimal(plan.transaction_fee_bps).scaleb(-2)),
                    "limits": {
                        "subOrgs": plan.max_sub_orgs,
                        "campaigns": plan.max_campaigns,
                        "workflows": plan.max_workflows,
                    },
                },
                "pendingChange": pending,
            },
            "usage": {
                "id": to_global_id("Usage", cid),
                "subOrgs": usage.sub_orgs if usage else 0,
                "campaigns": usage.campaigns if usage else 0,
                "workflows": usage.workflows if usage else 0,
                "phoneNumbers": sum(a.quantity for a, p in addons if p.is_phone_number),
            },
            "addOns": [
                {
                    "id": to_global_id("AddOn", a.id),
                    "quantity": a.quantity,
                    "product": {"name": p.name},
                    "monthlyTotal": _money(p.monthly_price * a.quantity, p.currency_code),
                }
                for a, p in addons
            ],
            "wallet": {"id": to_global_id("Wallet", cid), "balance": _money(wallet.balance if wallet else 0, cur)},
            "invoices": {
                "edges": [
                    {
                        "cursor": cursor,
                        "node": {
                            "id": to_global_id("Invoice", i.id),
                            "number": i.number,
                            "type": i.type,
                            "status": i.status,
                            "issuedAt": _time(i.issued_at),
                            "dueAt": _time(i.due_at),
                            "total": _money(i.total, i.currency_code),
                            "amountDue": _money(amount_due(i), i.currency_code),
                            "paymentMethod": i.payment_method,
                        },
                    }
                    for (i,), cursor in zip(invoices, invoice_cursors, strict=True)
                ],
                "pageInfo": _page_info(more_invoices, invoice_cursors),
            },
            "tickets": {
                "edges": [_ticket(t, who, messages.get(t.id), conn.ticket_prefix) for t, who in tickets],
                "pageInfo": _page_info(more_tickets, ticket_cursors),
            },
            "payouts": {
                "edges": [
                    {
                        "node": {
                            "id": to_global_id("Payout", p.id),
                            "periodStart": _time(p.period_start),
                            "periodEnd": _time(p.period_end),
                            "status": p.status,
                            "disposition": p.disposition,
                            "amount": _money(p.amount, p.currency_code),
                            "availableAmount": _money(p.available_amount, p.currency_code),
                            "transfers": [
                                {
                                    "id": to_global_id("BankTransfer", t.id),
                                    "status": t.status,
                                    "amount": _money(t.amount, p.currency_code),
                                    "bankAccount": {"bankName": account.bank_name, "last4": account.account_last4}
                                    if account is not None else None,
                                }
                                for t, account in transfers[p.id]
                            ],
                        }
                    }
                    for p, in payouts
                ],
                "pageInfo": _page_info(more_payouts, payout_cursors),
            },
        },
    }


def _ticket(
    t: m.Ticket, assignee: m.User | None, stats: tuple[int, m.TicketMessage, m.User | None] | None, prefix: str
) -> dict[str, Any]:
    count, last, author = stats if stats is not None else (0, None, None)
    return {"node": {
        "id": to_global_id("Ticket", t.id),
        "number": f"{prefix}-{t.number}",
        "title": t.title,
        "status": t.status,
        "priority": t.priority,
        "lastActivityAt": _time(t.last_activity_at),
        "messageCount": count,
        "assignedTo": {"id": to_global_id("User", assignee.id), "name": assignee.name} if assignee else None,
        "lastMessage": {
            "body": last.body,
            "createdAt": _time(last.created_at),
            "author": {"name": author.name} if author is not None else None,
        } if last is not None else None,
    }}


def create_app(settings: Settings) -> ASGIApp:
    verifier = TokenVerifier(settings)
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        lock_timeout_ms=settings.db_lock_timeout_ms,
    )
    sessions = read_sessions(engine)

    async def get_dashboard(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Unauthorized().response()
        try:
            claims = await verifier.verify_async(token.strip())
        except AuthError:
            return Unauthorized().response()
        raw = request.query_params.get("first", "10")
        if not raw.isdigit() or int(raw) > settings.max_page_size:
            return graphql_error(400, "INVALID_PAGINATION", f"first must be 0 to {settings.max_page_size}.")
        async with sessions() as session:
            caller = await load_caller(session, claims)
            if caller is None:
                return Unauthorized().response()
            body = await dashboard(session, caller, int(raw))
        return GraphQLResponse(body)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = Starlette(
        routes=[Route("/dashboard", get_dashboard, methods=["GET"]), Route("/healthz", healthz)],
        lifespan=lifespan,
    )
    app.state.engine = engine
    return RequestLog(app)


def app_from_env() -> ASGIApp:
    return create_app(Settings.from_env())
