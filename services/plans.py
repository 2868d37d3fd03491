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
from services import money
from services.enums import PlanChangeKind
from services.errors import NotFound


@dataclass(frozen=True)
class Limit:
    key: str  # usage attribute and GraphQL field name
    label: str  # "Sub-orgs"
    noun: str  # "sub-orgs", as in "12 sub-orgs in use"
    column: str  # Plan attribute holding the limit (None = unlimited)


LIMITS = (
    Limit("sub_orgs", "Sub-orgs", "sub-orgs", "max_sub_orgs"),
    Limit("campaigns", "Campaigns", "campaigns", "max_campaigns"),
    Limit("workflows", "Workflows", "workflows", "max_workflows"),
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
            "monthly_price",
            "Monthly price",
            [f"{money.to_decimal(p.monthly_price, p.currency_code)} {p.currency_code}" for p in plans],
        ),
        ComparisonRow("transaction_fee", "Transaction fee", [f"{fee_percent(p)}%" for p in plans]),
    ]
    for limit in LIMITS:
        values = []
        for p in plans:
            value = limit_of(p, limit)
            values.append("Unlimited" if value is None else str(value))
        rows.append(ComparisonRow(limit.key, limit.label, values))
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
    target = await session.get(m.Plan, plan_id)
    if subscription is None:
        raise NotFound("Subscription")
    if target is None or target.retired:
        raise NotFound("Plan", "planId")
    current = await session.get(m.Plan, subscription.plan_id)
    assert current is not None
    usage = await session.get(m.Usage, connection_id)
    if target.id == current.id:
        kind = None
    elif target.rank > current.rank:
        kind = PlanChangeKind.UPGRADE
    else:
        kind = PlanChangeKind.DOWNGRADE
    return Preview(
        target=target,
        kind=kind,
        effective_at=subscription.current_period_end,
        blockers=blockers(target, usage) if kind is PlanChangeKind.DOWNGRADE else [],
    )

