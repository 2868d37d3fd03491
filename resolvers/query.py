"""The root Query."""

from __future__ import annotations

import asyncio
from typing import Annotated

import strawberry
from graphql import GraphQLError

from schema.addons import AddOnProduct
from schema.base import (
    After,
    Before,
    Connection,
    First,
    Last,
    Node,
    bad_request,
    ctx,
    decode_id,
    field,
    page_args,
    resolve_node,
    to_global_id,
)
from schema.plans import Plan, PlanComparison, PlanComparisonRow
from schema.tickets import SupportTicketFilter, Ticket
from schema.users import User, Viewer
from services import addons as addon_service
from services import lists
from services import plans as plan_service
from services.errors import DomainError
from services.pagination import count_rows, fetch_pages

MAX_NODES = 100


@strawberry.type(description="Everything a client can read. Every field needs a valid token.")
class Query:
    @field(description="The authenticated caller.")
    async def viewer(self, info: strawberry.Info) -> Viewer:
        p = ctx(info).principal
        user = await User.load(info, p.user_id)
        assert user is not None
        return Viewer(id=to_global_id("Viewer", p.user_id), user=user, roles=sorted(p.roles, key=lambda r: r.value))

    @field(description="Any object by global ID; null if it does not exist or is not yours.")
    async def node(
        self, info: strawberry.Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The global ID of any Node.")],
    ) -> Node | None:
        return await resolve_node(info, id)

    @field(description=f"Objects by global ID, in order; at most {MAX_NODES}.")
    async def nodes(
        self, info: strawberry.Info,
        ids: Annotated[list[strawberry.ID], strawberry.argument(
            description=f"Up to {MAX_NODES} global IDs; more is a TOO_MANY_IDS error."
        )],
    ) -> list[Node | None]:
        if len(ids) > MAX_NODES:
            raise GraphQLError(f"ids may hold at most {MAX_NODES} IDs.", extensions={"code": "TOO_MANY_IDS"})
        return list(await asyncio.gather(*(resolve_node(info, i) for i in ids)))

    @field(description="The tier catalogue, cheapest first.")
    async def plans(self, info: strawberry.Info) -> list[Plan]:
        return [Plan.of(p) for p in await plan_service.catalogue(ctx(info).db)]

    @field(description="A row per feature with one value per plan.")
    async def plan_comparison(self, info: strawberry.Info) -> PlanComparison:
        plans = await plan_service.catalogue(ctx(info).db)
        return PlanComparison(
            plans=[Plan.of(p) for p in plans],
            rows=[
                PlanComparisonRow(feature=r.feature, label=r.label, values=r.values)
                for r in plan_service.comparison_rows(plans)
            ],
        )

    @field(description="The add-on products that can be added now (none retired), in catalogue order.")
    async def add_on_products(self, info: strawberry.Info) -> list[AddOnProduct]:
        return [AddOnProduct.of(p) for p in await addon_service.catalogue(ctx(info).db)]

    @field(
        description="Revampd staff: the ticket queue across Partners, oldest waiting first. "
        "Without a status filter it holds the tickets waiting on support (OPEN, IN_PROGRESS)."
    )
    async def support_tickets(
        self,
        info: strawberry.Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        filter: Annotated[SupportTicketFilter | None, strawberry.argument(
            description="Narrows the queue; without a status it holds OPEN and IN_PROGRESS tickets."
        )] = None,
    ) -> Connection[Ticket]:
        c = ctx(info)
        try:
            f = filter or SupportTicketFilter()
            service_filter = lists.TicketFilter(
                status=tuple(f.status or ()),
                priority=tuple(f.priority or ()),
                search=f.search,
                assignee_id=decode_id(f.assignee_id, "User", "assigneeId") if f.assignee_id else None,
                partner_id=decode_id(f.partner_id, "Partner", "partnerId") if f.partner_id else None,
                unassigned=f.unassigned,
            )
            args = page_args(info, first, after, last, before)
            listing = lists.support_queue(c.principal, service_filter)
            page = (await fetch_pages(c.db, listing, [0], args))[0]
        except DomainError as err:
            raise bad_request(err) from None

        async def total() -> int:
            return (await count_rows(c.db, listing, [0]))[0]

        page.total = total
        return Connection.of(page, Ticket.of)

