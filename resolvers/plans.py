"""Plan mutations: schedule an upgrade, downgrade or cancellation, or withdraw it."""

from __future__ import annotations

import strawberry

from resolvers.common import run_write
from schema.base import ctx, decode_id
from schema.plans import (
    CancelSubscriptionInput,
    CancelSubscriptionPayload,
    DowngradePlanInput,
    DowngradePlanPayload,
    UpgradePlanInput,
    UpgradePlanPayload,
    WithdrawPlanChangeInput,
    WithdrawPlanChangePayload,
)
from services import plans as svc
from services.enums import PlanChangeKind

NEXT_CYCLE = " Takes effect at the end of the current billing period; replaces any pending change."


@strawberry.type
class PlanMutations:
    @strawberry.mutation(description="Move to a higher tier." + NEXT_CYCLE)
    async def upgrade_plan(self, info: strawberry.Info, input: UpgradePlanInput) -> UpgradePlanPayload:
        principal = ctx(info).principal
        result, errors = await run_write(info, lambda session: svc.change_plan(
            session, principal, decode_id(input.plan_id, "Plan", "planId"), PlanChangeKind.UPGRADE
        ))
        return UpgradePlanPayload.of(result, errors, input.client_mutation_id)

    @strawberry.mutation(description="Move to a lower tier whose limits fit current usage." + NEXT_CYCLE)
    async def downgrade_plan(self, info: strawberry.Info, input: DowngradePlanInput) -> DowngradePlanPayload:
        principal = ctx(info).principal
        result, errors = await run_write(info, lambda session: svc.change_plan(
            session, principal, decode_id(input.plan_id, "Plan", "planId"), PlanChangeKind.DOWNGRADE
        ))
        return DowngradePlanPayload.of(result, errors, input.client_mutation_id)

    @strawberry.mutation(description="End the subscription." + NEXT_CYCLE)
    async def cancel_subscription(
        self, info: strawberry.Info, input: CancelSubscriptionInput
    ) -> CancelSubscriptionPayload:
        principal = ctx(info).principal
        result, errors = await run_write(info, lambda session: svc.cancel(session, principal))
        return CancelSubscriptionPayload.of(result, errors, input.client_mutation_id)

    @strawberry.mutation(description="Drop the pending upgrade, downgrade or cancellation.")
    async def withdraw_plan_change(
        self, info: strawberry.Info, input: WithdrawPlanChangeInput
    ) -> WithdrawPlanChangePayload:
        principal = ctx(info).principal
        result, errors = await run_write(info, lambda session: svc.withdraw(session, principal))
        return WithdrawPlanChangePayload.of(result, errors, input.client_mutation_id)
