"""The dashboard as a skilled engineer would hand-write it: the baseline GraphQL is measured against.

`GET /dashboard?first=N` answers, byte for byte, what `operations/DashboardOverview.graphql`
answers through `POST /graphql` with `{"first": N}` (tests/test_bench_baseline.py checks it).
On the same stack as the real app: Starlette, the request log and gzip middleware, the
engine and driver of db.engine, the bearer token checked by server.auth.TokenVerifier and
the caller read by server.endpoint.load_caller. Then SQLAlchemy Core, no ORM entities: one
statement for the subscription, plan, usage and wallet, one per list (add-ons, invoices,
tickets with assignee and last message, payouts with their transfers), each built once and
run with bound parameters; rows become dicts and orjson writes them.

Every statement carries services.visibility's condition for each model it reads (with the
caller's ids as bound parameters, as schema.loaders runs them), so another Partner's row
cannot appear, and no internal note.

`GET /dashboard/loaders?first=N` is the data layer alone (tests/bench/datalayer.py): the
loaders' calls the page makes, ORM as the graph reads it, without GraphQL. Not for
production; `uvicorn --factory tests.bench.handwritten:app_from_env` serves it with DATABASE_URL.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

import orjson
from sqlalchemy import Integer, and_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
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
from server.graphql_http import graphql_error
from server.settings import Settings
from services import money
from services.invoices import amount_due
from services.lists import WAITING
from services.pagination import encode_cursor
from services.plans import fee_percent
from services.visibility import ANY_PARTNER_USER, params, sees_email, visible

# The statements are built once, for any Partner user (staff have no dashboard: their
# viewer has no Partner), and run with the caller's ids (services.visibility.params).
P = ANY_PARTNER_USER
CID, LIMIT = bindparam("cid", type_=Integer), bindparam("limit", type_=Integer)


def _user_name(user_id: Any, of: Any) -> Any:
    """The name of the user `user_id` (a column of `of`), where the caller may see that user (else NULL)."""
    return select(m.User.name).where(m.User.id == user_id, visible(m.User, P)).correlate(of).scalar_subquery()


S, PLAN, W = m.Subscription, m.Plan, m.LedgerAccount
HEAD = (
    select(
        S.status, S.current_period_start, S.current_period_end, S.pending_kind, S.pending_plan_id,
        S.pending_effective_at, S.pending_requested_at,
        PLAN.id.label("plan_id"), PLAN.code, PLAN.name, PLAN.currency_code, PLAN.monthly_price,
        PLAN.transaction_fee_bps, PLAN.max_sub_orgs, PLAN.max_campaigns, PLAN.max_workflows,
        select(PLAN.name).where(PLAN.id == S.pending_plan_id, visible(PLAN, P)).correlate(S)
        .scalar_subquery().label("target"),
        m.Usage.sub_orgs, m.Usage.campaigns, m.Usage.workflows, W.balance,
    )
    .select_from(m.Connection)
    .join(S, S.connection_id == m.Connection.id)
    .join(PLAN, and_(PLAN.id == S.plan_id, visible(PLAN, P)))
    .outerjoin(m.Usage, m.Usage.connection_id == m.Connection.id)
    .outerjoin(W, and_(W.connection_id == m.Connection.id, W.kind == "WALLET", visible(W, P)))
    .where(m.Connection.id == CID, visible(m.Connection, P))
)

A, PRODUCT = m.AddOn, m.AddOnProduct
ADDONS = (
    select(A.id, A.quantity, PRODUCT.name, PRODUCT.monthly_price, PRODUCT.currency_code, PRODUCT.is_phone_number)
    .join(PRODUCT, and_(PRODUCT.id == A.product_id, visible(PRODUCT, P)))
    .where(A.connection_id == CID, visible(A, P))
    .order_by(A.created_at, A.id)
)

INV = m.Invoice
INVOICES = (
    select(INV.id, INV.number, INV.type, INV.status, INV.issued_at, INV.due_at, INV.total, INV.amount_paid,
           INV.currency_code, INV.payment_method)
    .where(INV.connection_id == CID, visible(INV, P))
    .order_by(INV.issued_at.desc(), INV.id.desc())
    .limit(LIMIT)
)

T, MSG = m.Ticket, m.TicketMessage
# The newest message, joined under a name of its own: the visibility rules' subqueries
# over ticket_messages must not correlate with it.
LAST = aliased(m.TicketMessage, name="last_message")
_TICKET_PAGE = (
    select(T.id, T.number, T.title, T.status, T.priority, T.last_activity_at, T.assigned_to_id)
    .where(T.connection_id == CID, T.status.in_([s.value for s in WAITING]), visible(T, P))
    .order_by(T.last_activity_at.desc(), T.id.desc())
    .limit(LIMIT)
    .subquery("page")
)


def _with_last_message(page: Any, joined: Any, n: Any, last_id: Any) -> Any:
    """The page's tickets (`joined` to what gives `n` and `last_id`) with their assignee's
    name, `n` (how many messages the caller may see) and the newest of those messages
    (`last_id`), with its author's name."""
    return (
        select(
            *(c for c in page.c if c.key not in ("n", "last_id")),
            _user_name(page.c.assigned_to_id, page).label("assignee"),
            n.label("n"), LAST.body, LAST.created_at, _user_name(LAST.author_id, LAST).label("author"),
        )
        .select_from(joined)
        .outerjoin(LAST, LAST.id == last_id)
        .order_by(page.c.last_activity_at.desc(), page.c.id.desc())
    )


def _ranked() -> Any:
    """PostgreSQL: the page's messages numbered newest first in one pass (window functions)."""
    ranked = (
        select(
            MSG.id, MSG.ticket_id,
            func.count().over(partition_by=MSG.ticket_id).label("n"),
            func.row_number().over(
                partition_by=MSG.ticket_id, order_by=[MSG.created_at.desc(), MSG.id.desc()]
            ).label("r"),
        )
        .where(MSG.ticket_id.in_(select(_TICKET_PAGE.c.id)), visible(MSG, P))
        .subquery("ranked")
    )
    joined = _TICKET_PAGE.outerjoin(ranked, and_(ranked.c.ticket_id == _TICKET_PAGE.c.id, ranked.c.r == 1))
    return _with_last_message(_TICKET_PAGE, joined, ranked.c.n, ranked.c.id)


def _looked_up() -> Any:
    """SQLite: each ticket's count and newest message looked up by the (ticket_id, created_at, id)
    index; twice as fast there as the window functions (and half as fast on PostgreSQL)."""
    seen = visible(MSG, P)
    of_ticket = MSG.ticket_id == _TICKET_PAGE.c.id
    n = select(func.count()).where(of_ticket, seen).correlate(_TICKET_PAGE).scalar_subquery()
    newest = (
        select(MSG.id).where(of_ticket, seen).order_by(MSG.created_at.desc(), MSG.id.desc()).limit(1)
        .correlate(_TICKET_PAGE).scalar_subquery()
    )
    page = select(_TICKET_PAGE, n.label("n"), newest.label("last_id")).subquery("tickets_page")
    return _with_last_message(page, page, page.c.n, page.c.last_id)


# Per ticket of the page: its assignee, how many messages the caller may see and the newest of them.
TICKETS = {"postgresql": _ranked(), "sqlite": _looked_up()}

PO, BT, BA = m.Payout, m.BankTransfer, m.BankAccount
_PAYOUT_PAGE = (
    select(PO.id, PO.period_start, PO.period_end, PO.status, PO.disposition, PO.amount, PO.available_amount,
           PO.currency_code)
    .where(PO.connection_id == CID, visible(PO, P))
    .order_by(PO.period_end.desc(), PO.id.desc())
    .limit(LIMIT)
    .subquery("page")
)
# A row per transfer (one with NULLs for a payout without any), oldest transfer first.
PAYOUTS = (
    select(_PAYOUT_PAGE, BT.id.label("transfer_id"), BT.status.label("transfer_status"),
           BT.amount.label("transfer_amount"), BA.bank_name, BA.account_last4)
    .select_from(_PAYOUT_PAGE)
    .outerjoin(BT, and_(BT.payout_id == _PAYOUT_PAGE.c.id, visible(BT, P)))
    .outerjoin(BA, and_(BA.id == BT.bank_account_id, visible(BA, P)))
    .order_by(_PAYOUT_PAGE.c.period_end.desc(), _PAYOUT_PAGE.c.id.desc(), BT.created_at, BT.id)
)


def _money(minor: int, currency: str) -> dict[str, Any]:
    return {"amount": str(money.to_decimal(minor, currency)), "currencyCode": currency}


def _time(at: Any) -> str | None:
    return at.isoformat() if at is not None else None


def _page(rows: Sequence[Any], first: int, key: Callable[[Any], list[Any]]) -> tuple[Sequence[Any], dict[str, Any]]:
    """The page's rows (of the first + 1 read) and its pageInfo."""
    shown = rows[:first]
    end = encode_cursor(key(shown[-1])) if shown else None
    return shown, {"hasNextPage": len(rows) > first, "endCursor": end}


async def dashboard(db: AsyncConnection, caller: Caller, first: int) -> dict[str, Any]:
    user = caller.user
    return {"data": {"viewer": {
        "id": to_global_id("Viewer", user.id),
        "user": {"id": to_global_id("User", user.id), "name": user.name,
                 "email": user.email if sees_email(caller.principal, user) else None},
        "roles": sorted(r.value for r in caller.principal.roles),
        "partner": await _partner(db, caller, first) if caller.partner is not None else None,
    }}}


async def _partner(db: AsyncConnection, caller: Caller, first: int) -> dict[str, Any]:
    partner, conn = caller.partner, caller.connection
    assert partner is not None and conn is not None, "every Partner has a Revampd connection"
    cid, cur = conn.id, conn.currency_code
    bound = {"cid": cid, "limit": first + 1 if first else 0, **params(caller.principal)}
    head = (await db.execute(HEAD, bound)).one()
    addons = (await db.execute(ADDONS, bound)).all()
    return {
        "id": to_global_id("Partner", partner.id),
        "name": partner.name,
        "revampdConnection": {
            "id": to_global_id("RevampdConnection", cid),
            "currencyCode": cur,
            "subscription": _subscription(cid, head),
            "usage": {
                "id": to_global_id("Usage", cid),
                "subOrgs": head.sub_orgs or 0,
                "campaigns": head.campaigns or 0,
                "workflows": head.workflows or 0,
                "phoneNumbers": sum(a.quantity for a in addons if a.is_phone_number),
            },
            "addOns": [
                {
                    "id": to_global_id("AddOn", a.id),
                    "quantity": a.quantity,
                    "product": {"name": a.name},
                    "monthlyTotal": _money(a.monthly_price * a.quantity, a.currency_code),
                }
                for a in addons
            ],
            "wallet": {"id": to_global_id("Wallet", cid), "balance": _money(head.balance or 0, cur)},
            "invoices": _invoices((await db.execute(INVOICES, bound)).all(), first),
            "tickets": _tickets((await db.execute(TICKETS[db.dialect.name], bound)).all(), first, conn.ticket_prefix),
            "payouts": _payouts((await db.execute(PAYOUTS, bound)).all(), first),
        },
    }


def _subscription(cid: int, h: Any) -> dict[str, Any]:
    pending = None
    if h.pending_kind is not None and h.pending_effective_at is not None:
        pending = {
            "kind": h.pending_kind,
            "effectiveAt": _time(h.pending_effective_at),
            "requestedAt": _time(h.pending_requested_at),
            "targetPlan": {"id": to_global_id("Plan", h.pending_plan_id), "name": h.target}
            if h.target is not None else None,
        }
    return {
        "id": to_global_id("PlanSubscription", cid),
        "status": h.status,
        "currentPeriodStart": _time(h.current_period_start),
        "currentPeriodEnd": _time(h.current_period_end),
        "plan": {
            "id": to_global_id("Plan", h.plan_id),
            "code": h.code,
            "name": h.name,
            "monthlyPrice": _money(h.monthly_price, h.currency_code),
            "transactionFeePercent": str(fee_percent(h)),
            "limits": {"subOrgs": h.max_sub_orgs, "campaigns": h.max_campaigns, "workflows": h.max_workflows},
        },
        "pendingChange": pending,
    }


def _invoices(rows: Sequence[Any], first: int) -> dict[str, Any]:
    shown, info = _page(rows, first, lambda i: [i.issued_at, i.id])
    return {
        "edges": [
            {
                "cursor": encode_cursor([i.issued_at, i.id]),
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
            for i in shown
        ],
        "pageInfo": info,
    }


def _tickets(rows: Sequence[Any], first: int, prefix: str) -> dict[str, Any]:
    shown, info = _page(rows, first, lambda t: [t.last_activity_at, t.id])
    return {
        "edges": [
            {"node": {
                "id": to_global_id("Ticket", t.id),
                "number": f"{prefix}-{t.number}",
                "title": t.title,
                "status": t.status,
                "priority": t.priority,
                "lastActivityAt": _time(t.last_activity_at),
                "messageCount": t.n or 0,
                "assignedTo": {"id": to_global_id("User", t.assigned_to_id), "name": t.assignee}
                if t.assignee is not None else None,
                "lastMessage": {
                    "body": t.body,
                    "createdAt": _time(t.created_at),
                    "author": {"name": t.author} if t.author is not None else None,
                } if t.n else None,
            }}
            for t in shown
        ],
        "pageInfo": info,
    }


def _payouts(rows: Sequence[Any], first: int) -> dict[str, Any]:
    payouts: dict[int, tuple[Any, list[dict[str, Any]]]] = {}
    for r in rows:
        _, transfers = payouts.setdefault(r.id, (r, []))
        if r.transfer_id is not None:
            transfers.append({
                "id": to_global_id("BankTransfer", r.transfer_id),
                "status": r.transfer_status,
                "amount": _money(r.transfer_amount, r.currency_code),
                "bankAccount": {"bankName": r.bank_name, "last4": r.account_last4}
                if r.bank_name is not None else None,
            })
    shown, info = _page(list(payouts.values()), first, lambda p: [p[0].period_end, p[0].id])
    return {
        "edges": [
            {"node": {
                "id": to_global_id("Payout", p.id),
                "periodStart": _time(p.period_start),
                "periodEnd": _time(p.period_end),
                "status": p.status,
                "disposition": p.disposition,
                "amount": _money(p.amount, p.currency_code),
                "availableAmount": _money(p.available_amount, p.currency_code),
                "transfers": transfers,
            }}
            for p, transfers in shown
        ],
        "pageInfo": info,
    }


Page = Callable[[AsyncSession, Caller, int], Awaitable[bytes]]


async def lean(session: AsyncSession, caller: Caller, first: int) -> bytes:
    return orjson.dumps(await dashboard(await session.connection(), caller, first))


def create_app(settings: Settings) -> ASGIApp:
    from tests.bench.datalayer import loads

    verifier = TokenVerifier(settings)
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        lock_timeout_ms=settings.db_lock_timeout_ms,
    )
    sessions = read_sessions(engine)

    def endpoint(page: Page) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
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
                body = await page(session, caller, int(raw))
            return Response(body, media_type="application/json")

        return answer

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = Starlette(
        routes=[
            Route("/dashboard", endpoint(lean), methods=["GET"]),
            Route("/dashboard/loaders", endpoint(loads), methods=["GET"]),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
        middleware=[Middleware(GZipMiddleware, minimum_size=settings.gzip_min_bytes, compresslevel=6)],
    )
    app.state.engine = engine
    return RequestLog(app)


def app_from_env() -> ASGIApp:
    return create_app(Settings.from_env())
