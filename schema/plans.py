"""Plans, the comparison table, the subscription and what a change would do."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Self

import strawberry

from db import models as m
from schema.base import (
    Money,
    Node,
    UserError,
    changed_connection,
    client_mutation_id_echo,
    client_mutation_id_field,
    ctx,
    field,
    to_global_id,
    user_errors_field,
)
from schema.enums import PlanChangeKind, SubscriptionStatus
from services import addons as addon_service
from services import plans as svc


@strawberry.type(
    description="Feature limits of a plan; null means unlimited. It has no id: clients cache it with its plan."
)
class PlanLimits:
    sub_orgs: int | None = strawberry.field(description="The most Sub-Orgs; null for unlimited.")
    campaigns: int | None = strawberry.field(description="The most campaigns; null for unlimited.")
    workflows: int | None = strawberry.field(description="The most workflows; null for unlimited.")


@strawberry.type(description="A subscription tier: its price, transaction fee and feature limits.")
class Plan(Node, model=m.Plan):
    code: str = strawberry.field(description="A stable machine-readable code, such as GROWTH.")
    name: str = strawberry.field(description="The tier's name, for display.")
    monthly_price: Money = strawberry.field(description="The subscription price per month.")
    transaction_fee_percent: Decimal = strawberry.field(
        description="Fee on Sub-Org transactions, in percent (2.5 = 2.5 %)."
    )
    limits: PlanLimits = strawberry.field(description="What a connection on this plan may have at most.")
    retired: bool = strawberry.field(
        description="No longer offered: connections already on it keep it, but no one can move to it."
    )
    model: strawberry.Private[m.Plan]

    @classmethod
    def of(cls, p: m.Plan) -> "Plan":
        return cls(
            id=to_global_id("Plan", p.id),
            code=p.code,
            name=p.name,
            monthly_price=Money.of(p.monthly_price, p.currency_code),
            transaction_fee_percent=svc.fee_percent(p),
            limits=PlanLimits(
                **{lim.key: svc.limit_of(p, lim) for lim in svc.LIMITS}
            ),
            retired=p.retired,
            model=p,
        )


@strawberry.type(description="A row of the plan comparison table. It has no id: clients cache it with the table.")
class PlanComparisonRow:
    feature: str = strawberry.field(description="The Plan field it shows: monthlyPrice, transactionFeePercent, subOrgs...")
    label: str = strawberry.field(description="The feature's name, for display, such as \"Transaction fee\".")
    values: list[str] = strawberry.field(description="One value per plan, in the order of `plans`.")


@strawberry.type(description="The feature table of the tiers, from the data that enforces the limits. It has no id.")
class PlanComparison:
    plans: list[Plan] = strawberry.field(
        description="The plans that can be chosen, cheapest first: the table's columns."
    )
    rows: list[PlanComparisonRow] = strawberry.field(
        description="One per feature (price, fee, then each limit), each with a display value per plan."
    )


@strawberry.type(
    description="An upgrade, downgrade or cancellation scheduled for the end of the current period. It has no "
    "id: clients cache it with its subscription."
)
class PendingPlanChange:
    kind: PlanChangeKind = strawberry.field(description="UPGRADE, DOWNGRADE or CANCEL.")
    effective_at: datetime = strawberry.field(description="When it takes effect: the end of the current period.")
    requested_at: datetime | None = strawberry.field(description="When it was requested; null when not recorded.")
    target_plan_id: strawberry.Private[int | None]

    @field(description="The plan from effectiveAt; null for a cancellation.")
    async def target_plan(self, info: strawberry.Info) -> Plan | None:
        return await Plan.load(info, self.target_plan_id)

    @classmethod
    def of(cls, s: m.Subscription) -> "PendingPlanChange | None":
        return cls.of_change(svc.pending_change(s))

    @classmethod
    def of_change(cls, c: svc.PendingChange | None) -> "PendingPlanChange | None":
        if c is None:
            return None
        return cls(
            kind=c.kind,
            effective_at=c.effective_at,
            requested_at=c.requested_at,
            target_plan_id=c.plan_id,
        )


@strawberry.type(description="The connection's subscription to a plan, billed each period.")
class PlanSubscription(Node, model=m.Connection):
    status: SubscriptionStatus = strawberry.field(description="ACTIVE, or CANCELED once a cancellation took effect.")
    current_period_start: datetime = strawberry.field(description="The start of the period being billed.")
    current_period_end: datetime = strawberry.field(
        description="The end of the current period: the next invoice, and when pending changes take effect."
    )
    pending_change: PendingPlanChange | None = strawberry.field(
        description="The scheduled upgrade, downgrade or cancellation; null when none."
    )
    model: strawberry.Private[m.Subscription]

    @field(description="The plan billed now (a pending change's plan starts at its effectiveAt).")
    async def plan(self, info: strawberry.Info) -> Plan:
        plan = await Plan.load(info, self.model.plan_id)
        assert plan is not None
        return plan

    @classmethod
    def of(cls, s: m.Subscription) -> "PlanSubscription":
        """A connection has one subscription: its ID is the connection's."""
        return cls(
            id=to_global_id("PlanSubscription", s.connection_id),
            status=SubscriptionStatus(s.status),
            current_period_start=s.current_period_start,
            current_period_end=s.current_period_end,
            pending_change=PendingPlanChange.of(s),
            model=s,
        )

    @classmethod
    async def from_model(cls, info: strawberry.Info, c: m.Connection) -> "PlanSubscription":
        s = (await ctx(info).loaders.connection_state.load(c.id)).subscription
        assert s is not None, "every connection has a subscription"
        return cls.of(s)


@strawberry.type(description="What the connection uses now, to compare with its plan's limits.")
class Usage(Node, model=m.Connection):
    sub_orgs: int = strawberry.field(description="Sub-Orgs in use.")
    campaigns: int = strawberry.field(description="Campaigns in use.")
    workflows: int = strawberry.field(description="Workflows in use.")
    phone_numbers: int = strawberry.field(description="Phone numbers in use: the quantities of phone-number add-ons.")

    @classmethod
    async def from_model(cls, info: strawberry.Info, c: m.Connection) -> "Usage":
        """What the connection uses now; one per connection, so its ID is the connection's."""
        loaders = ctx(info).loaders
        u = (await loaders.connection_state.load(c.id)).usage
        addons = await loaders.addons_by_connection.load(c.id)
        products = await loaders.addon_product.load_many([a.product_id for a in addons])
        return cls(
            id=to_global_id("Usage", c.id),
            sub_orgs=u.sub_orgs if u else 0,
            campaigns=u.campaigns if u else 0,
            workflows=u.workflows if u else 0,
            phone_numbers=addon_service.phone_numbers(list(zip(addons, products, strict=True))),
        )


@strawberry.type(description="A limit of the target plan that current usage exceeds. It has no id.")
class PlanChangeBlocker:
    limit: str = strawberry.field(description="The PlanLimits field exceeded: subOrgs, campaigns or workflows.")
    in_use: int = strawberry.field(description="How many are in use now.")
    allowed: int = strawberry.field(description="How many the target plan allows.")
    message: str = strawberry.field(description="The blocker in words, for display.")


@strawberry.type(description="What moving to a plan would do; nothing is scheduled. It has no id.")
class PlanChangePreview:
    target_plan: Plan = strawberry.field(description="The plan asked about.")
    direction: PlanChangeKind | None = strawberry.field(
        description="UPGRADE or DOWNGRADE; null when it is the current plan."
    )
    effective_at: datetime = strawberry.field(
        description="When the change would take effect: the end of the current period."
    )
    new_monthly_price: Money = strawberry.field(description="The target plan's monthly price.")
    new_transaction_fee_percent: Decimal = strawberry.field(
        description="The target plan's fee on Sub-Org transactions, in percent (2.5 = 2.5 %)."
    )
    blockers: list[PlanChangeBlocker] = strawberry.field(
        description="For a downgrade, each limit current usage exceeds; empty when none (and for an upgrade)."
    )

    @field(description="True when the change could be requested now.")
    def allowed(self) -> bool:
        return self.direction is not None and not self.blockers

    @classmethod
    def of(cls, p: svc.Preview) -> "PlanChangePreview":
        return cls(
            target_plan=Plan.of(p.target),
            direction=p.kind,
            effective_at=p.effective_at,
            new_monthly_price=Money.of(p.target.monthly_price, p.target.currency_code),
            new_transaction_fee_percent=svc.fee_percent(p.target),
            blockers=[
                PlanChangeBlocker(
                    limit=b.limit.field, in_use=b.in_use, allowed=b.allowed, message=b.message
                )
                for b in p.blockers
            ],
        )


# ---- Mutations: inputs and payloads ------------------------------------------

@strawberry.input(description="The input of upgradePlan.")
class UpgradePlanInput:
    plan_id: strawberry.ID = strawberry.field(description="A plan above the current one.")
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.input(description="The input of downgradePlan.")
class DowngradePlanInput:
    plan_id: strawberry.ID = strawberry.field(
        description="A plan below the current one whose limits fit current usage."
    )
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.input(description="The input of cancelSubscription.")
class CancelSubscriptionInput:
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.input(description="The input of withdrawPlanChange.")
class WithdrawPlanChangeInput:
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type
class PlanChangePayload:
    subscription: PlanSubscription | None = strawberry.field(
        description="The subscription with its pending change; null when refused."
    )
    replaced_change: PendingPlanChange | None = strawberry.field(
        description="The pending change this request replaced; null if there was none "
        "or the same change was already pending."
    )
    revampd_connection = changed_connection(
        lambda p: p.subscription and p.subscription.model.connection_id, "pendingChange and projectedNextInvoice"
    )
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()

    @classmethod
    def of(
        cls, result: svc.PlanChange | None, errors: list[UserError], client_mutation_id: str | None
    ) -> Self:
        return cls(
            subscription=PlanSubscription.of(result.subscription) if result else None,
            replaced_change=PendingPlanChange.of_change(result.previous) if result else None,
            user_errors=errors,
            client_mutation_id=client_mutation_id,
        )


@strawberry.type(description="The result of upgradePlan.")
class UpgradePlanPayload(PlanChangePayload):
    pass


@strawberry.type(description="The result of downgradePlan.")
class DowngradePlanPayload(PlanChangePayload):
    pass


@strawberry.type(description="The result of cancelSubscription.")
class CancelSubscriptionPayload(PlanChangePayload):
    pass


@strawberry.type(description="The result of withdrawPlanChange.")
class WithdrawPlanChangePayload:
    subscription: PlanSubscription | None = strawberry.field(
        description="The subscription with no pending change; null when refused."
    )
    withdrawn_change: PendingPlanChange | None = strawberry.field(
        description="The pending change that was dropped."
    )
    revampd_connection = changed_connection(
        lambda p: p.subscription and p.subscription.model.connection_id, "pendingChange and projectedNextInvoice"
    )
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()

    @classmethod
    def of(
        cls, result: svc.PlanChange | None, errors: list[UserError], client_mutation_id: str | None
    ) -> "WithdrawPlanChangePayload":
        return cls(
            subscription=PlanSubscription.of(result.subscription) if result else None,
            withdrawn_change=PendingPlanChange.of_change(result.previous) if result else None,
            user_errors=errors,
            client_mutation_id=client_mutation_id,
        )
