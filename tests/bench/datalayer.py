"""The dashboard's data layer alone: the loader calls DashboardOverview makes, without GraphQL.

`loads` replays, on a request's schema.loaders.Loaders, what the page's resolvers ask
of them (schema/partners.py, plans.py, tickets.py, payouts.py): the connection's state,
its add-ons with their products, the three pages with what comes along in their
statements for the items (message stats and users for tickets, transfers with their
bank accounts for payouts), then the products and the pending plan. Same batching (the
first five are asked together, as sibling fields are), same rows, same statements; no parsing, no validation, no
resolvers, no serialization. Served by tests/bench/handwritten.py at /dashboard/loaders,
it answers how many rows it loaded, so that `make bench` can set the graph's cost against
the cost of the data it reads.
"""

from __future__ import annotations

import asyncio

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from schema.loaders import Loaders
from server.endpoint import Caller
from services import lists
from services.pagination import PageArgs


async def loads(session: AsyncSession, caller: Caller, first: int) -> bytes:
    loaders = Loaders(session, caller.principal)
    caller.prime(loaders)
    if caller.connection is None:  # staff: the viewer alone
        return orjson.dumps({"rows": 0})
    cid, args = caller.connection.id, PageArgs(first=first)
    state, addons, invoices, tickets, payouts = await asyncio.gather(
        loaders.connection_state.load(cid),
        loaders.addons_by_connection.load(cid),
        loaders.invoice_pages.load((cid, lists.InvoiceFilter(), args)),
        # What the pages' items show comes along in their statements (services.pagination.Along).
        loaders.ticket_pages.load((cid, lists.TicketFilter(status=lists.WAITING), args, loaders.tickets_along(True, True))),
        loaders.payout_pages.load((cid, lists.PayoutFilter(), args, loaders.payouts_along(True))),
    )
    await loaders.addon_product.load_many([a.product_id for a in addons])
    if state.subscription is not None and state.subscription.pending_plan_id is not None:
        await loaders.plan.load(state.subscription.pending_plan_id)
    rows = len(addons) + len(invoices.rows) + len(tickets.rows) + len(payouts.rows)
    return orjson.dumps({"rows": rows})
