"""The plan catalogue, its comparison table, and what a plan change would do.

LIMITS is the single description of what a plan limits: the comparison table
and the downgrade check both read it, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db import models as m
from db.states import PlanChangeKind, SubscriptionStatus
from services import money
from services.access import Principal, Role
from services.clock import now_or
from services.errors import DomainError, ErrorCode, NotFound


@dataclass(frozen=True)
class Limit:
    key: str  # usage attribute
    field: str  # its name in the graph (PlanLimits, Usage)
    label: str  # "Sub-orgs"
    noun: str  # "sub-orgs", as in "12 sub-orgs in use"
    column: str  # Plan attribute holding the limit (None = unlimited)


LIMITS = (
    Limit("sub_orgs", "subOrgs", "Sub-orgs", "sub-orgs", "max_sub_orgs"),
    Limit("campaigns", "campaigns", "Campaigns", "campaigns", "max_campaigns"),
    Limit("workflows", "workflows", "Workflows", "workflows", "max_workflows"),
)


def limit_of(plan: m.Plan, limit: Limit) -> int | None:
    value: int | None = getattr(plan, limit.column)
    return value


def fee_percent(plan: m.Plan) -> Decimal:
    return Decimal(plan.transaction_fee_bps).scaleb(-2)


@dataclass(frozen=True)
class ComparisonRow:
    feature: str
    label: str
    values: list[str]


def comparison_rows(plans: list[m.Plan]) -> list[ComparisonRow]:
    rows = [
        ComparisonRow(
            "monthlyPrice",
            "Monthly price",
            [f"{money.to_decimal(p.monthly_price, p.currency_code)} {p.currency_code}" for p in plans],
        ),
        ComparisonRow("transactionFeePercent", "Transaction fee", [f"{fee_percent(p)}%" for p in plans]),
    ]
    for limit in LIMITS:
        values = []
        for p in plans:
            value = limit_of(p, limit)
            values.append("Unlimited" if value is None else str(value))
        rows.append(ComparisonRow(limit.field, limit.label, values))
    return rows


async def catalogue(session: AsyncSession) -> list[m.Plan]:
    """Plans that can be chosen, cheapest first."""
    rows = await session.scalars(select(m.Plan).where(m.Plan.retired.is_(False)).order_by(m.Plan.rank))
    return list(rows)


@dataclass(frozen=True)
class Blocker:
    limit: Limit
    in_use: int
    allowed: int
    plan_name: str

    @property
    def message(self) -> str:
        return (
            f"{self.in_use} {self.limit.noun} in use; {self.plan_name} allows {self.allowed}."
        )


def blockers(plan: m.Plan, usage: m.Usage | None) -> list[Blocker]:
    """The limits of `plan` that current usage exceeds."""
    found = []
    for limit in LIMITS:
        allowed = limit_of(plan, limit)
        in_use = getattr(usage, limit.key, 0) if usage is not None else 0
        if allowed is not None and in_use > allowed:
            found.append(Blocker(limit, in_use, allowed, plan.name))
    return found


def direction(current: m.Plan, target: m.Plan) -> PlanChangeKind | None:
    """UPGRADE to a dearer tier, DOWNGRADE to a cheaper one (rank breaks a tie in price);
    None when it is the same plan. Price, not rank, so a retired plan sorts where it costs."""
    if target.id == current.id:
        return None
    dearer = (target.monthly_price, target.rank) > (current.monthly_price, current.rank)
    return PlanChangeKind.UPGRADE if dearer else PlanChangeKind.DOWNGRADE


async def _target(session: AsyncSession, plan_id: int) -> m.Plan:
    """A plan that can be chosen now."""
    plan = await session.get(m.Plan, plan_id)
    if plan is None:
        raise NotFound("Plan", "planId")
    if plan.retired:
        raise DomainError(
            ErrorCode.PLAN_RETIRED, f"{plan.name} is retired and can no longer be chosen.", "planId"
        )
    return plan


@dataclass(frozen=True)
class Preview:
    target: m.Plan
    kind: PlanChangeKind | None  # None: it is the current plan
    effective_at: datetime
    blockers: list[Blocker]


async def preview(session: AsyncSession, connection_id: int, plan_id: int) -> Preview:
    """What moving to `plan_id` would do, before anything is scheduled."""
    subscription = await session.scalar(
        select(m.Subscription).where(m.Subscription.connection_id == connection_id)
    )
    if subscription is None:
        raise NotFound("Subscription")
    target = await _target(session, plan_id)
    current = await session.get(m.Plan, subscription.plan_id)
    assert current is not None
    kind = direction(current, target)
    usage = await session.get(m.Usage, connection_id)
    return Preview(
        target=target,
        kind=kind,
        effective_at=subscription.current_period_end,
        blockers=blockers(target, usage) if kind is PlanChangeKind.DOWNGRADE else [],
    )


# ---- Scheduling changes ------------------------------------------------------

@dataclass(frozen=True)
class PendingChange:
    """A change scheduled for the end of the current period; CANCEL has no plan."""

    kind: PlanChangeKind
    plan_id: int | None
    effective_at: datetime
    requested_at: datetime | None


def pending_change(s: m.Subscription) -> PendingChange | None:
    if s.pending_kind is None or s.pending_effective_at is None:
        return None
    return PendingChange(
        PlanChangeKind(s.pending_kind), s.pending_plan_id, s.pending_effective_at,
        s.pending_requested_at,
    )


def next_plan_id(s: m.Subscription) -> int | None:
    """The plan the next period runs on, after the pending change; None once canceled."""
    if s.status == SubscriptionStatus.CANCELED.value or s.pending_kind == PlanChangeKind.CANCEL.value:
        return None
    return s.pending_plan_id if s.pending_plan_id is not None else s.plan_id


@dataclass(frozen=True)
class PlanChange:
    subscription: m.Subscription
    # What the request replaced (or, for a withdrawal, dropped); None if nothing.
    previous: PendingChange | None


async def _locked_subscription(session: AsyncSession, principal: Principal) -> m.Subscription:
    """The caller's own subscription, row-locked; only a Partner admin changes it."""
    principal.require(Role.PARTNER_ADMIN)
    subscription = await session.scalar(
        select(m.Subscription)
        .where(m.Subscription.connection_id == principal.connection_id)
        .with_for_update()
    )
    if subscription is None:
        raise NotFound("Subscription")
    if subscription.status != SubscriptionStatus.ACTIVE.value:
        raise DomainError(ErrorCode.SUBSCRIPTION_CANCELED, "The subscription has already ended.")
    return subscription


def _schedule(
    s: m.Subscription, kind: PlanChangeKind, plan_id: int | None, now: datetime | None
) -> PlanChange:
    """Make (kind, plan) the one pending change; asking again for it changes nothing."""
    previous = pending_change(s)
    if previous is not None and previous.kind is kind and previous.plan_id == plan_id:
        return PlanChange(s, None)
    s.pending_kind = kind.value
    s.pending_plan_id = plan_id
    s.pending_effective_at = s.current_period_end
    s.pending_requested_at = now_or(now)
    return PlanChange(s, previous)


_WRONG_WAY = {
    PlanChangeKind.UPGRADE: (ErrorCode.NOT_AN_UPGRADE, "is not above", "downgradePlan"),
    PlanChangeKind.DOWNGRADE: (ErrorCode.NOT_A_DOWNGRADE, "is not below", "upgradePlan"),
}


async def change_plan(
    session: AsyncSession,
    principal: Principal,
    plan_id: int,
    kind: PlanChangeKind,
    now: datetime | None = None,
) -> PlanChange:
    """Schedule an UPGRADE or DOWNGRADE to `plan_id` for the end of the current period."""
    subscription = await _locked_subscription(session, principal)
    target = await _target(session, plan_id)
    current = await session.get(m.Plan, subscription.plan_id)
    assert current is not None
    actual = direction(current, target)
    if actual is None:
        raise DomainError(
            ErrorCode.SAME_PLAN,
            f"You are already on {current.name}; to keep it, withdraw the pending change.",
            "planId",
        )
    if actual is not kind:
        code, relation, other = _WRONG_WAY[kind]
        raise DomainError(
            code, f"{target.name} {relation} your current plan {current.name}; use {other}.", "planId"
        )
    if kind is PlanChangeKind.DOWNGRADE:
        found = blockers(target, await session.get(m.Usage, subscription.connection_id))
        if found:
            raise DomainError(
                ErrorCode.USAGE_EXCEEDS_LIMIT, " ".join(b.message for b in found), "planId"
            )
    return _schedule(subscription, kind, target.id, now)


async def cancel(
    session: AsyncSession, principal: Principal, now: datetime | None = None
) -> PlanChange:
    """Schedule the end of the subscription at the end of the current period."""
    subscription = await _locked_subscription(session, principal)
    return _schedule(subscription, PlanChangeKind.CANCEL, None, now)


async def withdraw(session: AsyncSession, principal: Principal) -> PlanChange:
    """Drop the pending upgrade, downgrade or cancellation."""
    subscription = await _locked_subscription(session, principal)
    previous = pending_change(subscription)
    if previous is None:
        raise DomainError(ErrorCode.NO_PENDING_CHANGE, "There is no pending plan change to withdraw.")
    subscription.pending_kind = None
    subscription.pending_plan_id = None
    subscription.pending_effective_at = None
    subscription.pending_requested_at = None
    return PlanChange(subscription, previous)
