"""The Partner and its one Revampd connection: the root of everything it sees."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from db import models as m
from schema.addons import AddOn, ProjectedInvoice
from schema.bank_accounts import BankAccount
from schema.base import (
    After,
    Before,
    Connection,
    CurrencyCode,
    First,
    Last,
    Money,
    Node,
    bad_request,
    ctx,
    decode_id,
    field,
    item_fields,
    load_page,
    page_args,
    prime,
    to_global_id,
)
from schema.billing import PaymentCard
from schema.earnings import SubOrgTransactionFilter
from schema.invoices import Invoice, InvoiceFilter
from schema.payouts import (
    Clawback,
    Payout,
    PayoutFilter,
    PayoutPreference,
    SubOrgTransaction,
    clawback_outstanding,
    connection_clawbacks,
)
from schema.plans import PendingPlanChange, PlanChangePreview, PlanSubscription, Usage
from schema.tickets import Ticket, TicketFilter
from schema.wallet import AffiliatePayout, Wallet
from services import lists
from services import plans as plan_service
from services.errors import DomainError


@strawberry.type(description="A Partner's direct connection with Revampd: plan, billing, wallet, payouts.")
class RevampdConnection(Node, model=m.Connection):
    currency_code: str = strawberry.field(
        description="The currency the connection is billed and paid in; every amount of the connection is in it.",
        graphql_type=CurrencyCode,
    )
    created_at: datetime = strawberry.field(description="When the Partner's connection with Revampd began.")
    model: strawberry.Private[m.Connection]

    @classmethod
    def of(cls, c: m.Connection) -> "RevampdConnection":
        return cls(
            id=to_global_id("RevampdConnection", c.id),
            currency_code=c.currency_code,
            created_at=c.created_at,
            model=c,
        )

    @field(description="The Partner this connection belongs to.")
    async def partner(self, info: strawberry.Info) -> "Partner":
        partner = await Partner.load(info, self.model.partner_id)
        assert partner is not None
        return partner

    async def _subscription(self, info: strawberry.Info) -> m.Subscription:
        s = (await ctx(info).loaders.connection_state.load(self.model.id)).subscription
        assert s is not None, "every connection has a subscription"
        return s

    @field(description="The subscription to a plan, with its current period and any pending change.")
    async def subscription(self, info: strawberry.Info) -> PlanSubscription:
        return PlanSubscription.of(await self._subscription(info))

    @field(description="The scheduled upgrade, downgrade or cancellation, if any.")
    async def pending_change(self, info: strawberry.Info) -> PendingPlanChange | None:
        return PendingPlanChange.of(await self._subscription(info))

    @field(description="What moving to planId would do; schedules nothing.")
    async def plan_change_preview(
        self, info: strawberry.Info,
        plan_id: Annotated[strawberry.ID, strawberry.argument(
            description="A Plan that can be chosen (not retired); else a NOT_FOUND or PLAN_RETIRED error."
        )],
    ) -> PlanChangePreview:
        try:
            pk = decode_id(plan_id, "Plan", "planId")
            preview = await plan_service.preview(ctx(info).db, self.model.id, pk)
        except DomainError as err:
            raise bad_request(err) from None
        return PlanChangePreview.of(preview)

    @field(description="The card the billing run charges for what the wallet does not cover; null when none.")
    def payment_method(self) -> PaymentCard | None:
        return PaymentCard.of(self.model)

    @field(description="What the connection uses now, against its plan's limits.")
    async def usage(self, info: strawberry.Info) -> Usage:
        return await Usage.from_model(info, self.model)

    @field(description="The add-ons it pays for, oldest first.")
    async def add_ons(self, info: strawberry.Info) -> list[AddOn]:
        rows = await ctx(info).loaders.addons_by_connection.load(self.model.id)
        return [AddOn.of(a) for a in rows]

    @field(description="The next invoice: plan and add-ons after every pending change.")
    async def projected_next_invoice(self, info: strawberry.Info) -> ProjectedInvoice:
        return await ProjectedInvoice.from_model(info, self.model)

    @field(description="Tickets raised by this Partner, newest activity first.")
    async def tickets(
        self,
        info: strawberry.Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        filter: Annotated[TicketFilter | None, strawberry.argument(description="Narrows the list.")] = None,
    ) -> Connection[Ticket]:
        f = lists.TicketFilter(
            status=tuple(filter.status or ()) if filter else (),
            priority=tuple(filter.priority or ()) if filter else (),
            search=filter.search if filter else None,
        )
        args = page_args(info, first, after, last, before)
        loaders = ctx(info).loaders
        along = Ticket.along(loaders, item_fields(info))
        page = await load_page(loaders.ticket_pages, (self.model.id, f, args, along))
        return Connection.of(page, Ticket.of)

    @field(description="Invoices, newest first.")
    async def invoices(
        self,
        info: strawberry.Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        filter: Annotated[InvoiceFilter | None, strawberry.argument(description="Narrows the list.")] = None,
    ) -> Connection[Invoice]:
        f = lists.InvoiceFilter(
            status=tuple(filter.status or ()) if filter else (),
            type=tuple(filter.type or ()) if filter else (),
        )
        args = page_args(info, first, after, last, before)
        page = await load_page(ctx(info).loaders.invoice_pages, (self.model.id, f, args))
        return Connection.of(page, Invoice.of)

    @field(description="The wallet: credit that pays this connection's invoices, and its statement.")
    async def wallet(self, info: strawberry.Info) -> Wallet:
        w = (await ctx(info).loaders.connection_state.load(self.model.id)).wallet
        return Wallet.of(w, self.model.currency_code, self.model.id)

    @field(description="Affiliate payouts issued by Revampd, newest period first.")
    async def affiliate_payouts(
        self,
        info: strawberry.Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[AffiliatePayout]:
        args = page_args(info, first, after, last, before)
        page = await load_page(ctx(info).loaders.affiliate_payout_pages, (self.model.id, None, args))
        cur = self.model.currency_code
        return Connection.of(page, lambda a: AffiliatePayout.of(a, cur))

    @field(description="What happens to each new payout, and how often payouts are made.")
    def payout_preference(self) -> PayoutPreference:
        return PayoutPreference.of(self.model)

    @field(description="Payouts of Sub-Org earnings, newest period first.")
    async def payouts(
        self,
        info: strawberry.Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        filter: Annotated[PayoutFilter | None, strawberry.argument(description="Narrows the list.")] = None,
    ) -> Connection[Payout]:
        f = lists.PayoutFilter(status=tuple(filter.status or ()) if filter else ())
        args = page_args(info, first, after, last, before)
        loaders, wanted = ctx(info).loaders, item_fields(info)
        page = await load_page(loaders.payout_pages, (self.model.id, f, args, Payout.along(loaders, wanted)))
        await prime(wanted, page, Payout.primes(loaders))
        return Connection.of(page, Payout.of)

    @field(description="Sub-Org transactions processed through Revampd, newest first.")
    async def sub_org_transactions(
        self,
        info: strawberry.Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        filter: Annotated[SubOrgTransactionFilter | None, strawberry.argument(description="Narrows the list.")] = None,
    ) -> Connection[SubOrgTransaction]:
        f = lists.SubOrgTransactionFilter(unpaid=filter.unpaid if filter else None)
        args = page_args(info, first, after, last, before)
        page = await load_page(ctx(info).loaders.sub_org_transaction_pages, (self.model.id, f, args))
        cur = self.model.currency_code
        return Connection.of(page, lambda t: SubOrgTransaction.of(t, cur))

    @field(description="Sub-Org transactions refunded or charged back after they were recorded (clawbacks of the "
           "Partner's share), newest first.")
    async def clawbacks(self, info: strawberry.Info) -> list[Clawback]:
        return await connection_clawbacks(info, self.model.id)

    @field(description="What the next payouts will be reduced by: the clawbacks not yet taken from a payout.")
    async def clawback_outstanding(self, info: strawberry.Info) -> Money:
        return await clawback_outstanding(info, self.model.id, self.model.currency_code)

    @field(description="The linked bank accounts payouts can go to, oldest first (unlinked ones left out).")
    async def bank_accounts(self, info: strawberry.Info) -> list[BankAccount]:
        rows = await ctx(info).loaders.bank_accounts_by_connection.load(self.model.id)
        return [BankAccount.of(b) for b in rows if b.removed_at is None]


@strawberry.type(description="A Partner organization: a customer of Revampd with Sub-Orgs of its own.")
class Partner(Node, model=m.Partner):
    name: str = strawberry.field(description="The organization's name.")
    model: strawberry.Private[m.Partner]

    @classmethod
    def of(cls, p: m.Partner) -> "Partner":
        return cls(id=to_global_id("Partner", p.id), name=p.name, model=p)

    @field(description="Its direct connection with Revampd: plan, billing, wallet and payouts.")
    async def revampd_connection(self, info: strawberry.Info) -> RevampdConnection:
        c = await ctx(info).loaders.connection_by_partner.load(self.model.id)
        assert c is not None, "every Partner has a Revampd connection"
        return RevampdConnection.of(c)
