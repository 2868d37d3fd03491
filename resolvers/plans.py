"""Plan mutations: schedule an upgrade, downgrade or cancellation, or withdraw it."""

from __future__ import annotations

import strawberry

from db.states import PlanChangeKind
from resolvers.common import no_ids, run_write
from schema.base import MutationInput, UserError, ctx, decode_id, mutation
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

NEXT_CYCLE = " Takes effect at the end of the current billing period; replaces any pending change."
PLAN_ERRORS = " Errors: NOT_FOUND, PLAN_RETIRED, SAME_PLAN, SUBSCRIPTION_CANCELED"


async def _change(
    info: strawberry.Info, plan_gid: strawberry.ID, kind: PlanChangeKind
) -> tuple[svc.PlanChange | None, list[UserError]]:
    principal = ctx(info).principal
    return await run_write(
        info, lambda: decode_id(plan_gid, "Plan", "planId"),
        lambda session, plan_id: svc.change_plan(session, principal, plan_id, kind),
    )


@strawberry.type
class PlanMutations:
    @mutation(
        description="PARTNER_ADMIN: move to a higher tier." + NEXT_CYCLE + PLAN_ERRORS + ", NOT_AN_UPGRADE."
    )
    async def upgrade_plan(self, info: strawberry.Info, input: MutationInput[UpgradePlanInput]) -> UpgradePlanPayload:
        result, errors = await _change(info, input.plan_id, PlanChangeKind.UPGRADE)
        return UpgradePlanPayload.of(result, errors, input.client_mutation_id)

    @mutation(
        description="PARTNER_ADMIN: move to a lower tier whose limits fit current usage." + NEXT_CYCLE
        + PLAN_ERRORS + ", NOT_A_DOWNGRADE, USAGE_EXCEEDS_LIMIT."
    )
    async def downgrade_plan(
        self, info: strawberry.Info, input: MutationInput[DowngradePlanInput]
    ) -> DowngradePlanPayload:
        result, errors = await _change(info, input.plan_id, PlanChangeKind.DOWNGRADE)
        return DowngradePlanPayload.of(result, errors, input.client_mutation_id)

    @mutation(
        description="PARTNER_ADMIN: end the subscription." + NEXT_CYCLE + " Errors: SUBSCRIPTION_CANCELED."
    )
    async def cancel_subscription(
        self, info: strawberry.Info, input: MutationInput[CancelSubscriptionInput]
    ) -> CancelSubscriptionPayload:
        principal = ctx(info).principal
        result, errors = await run_write(info, no_ids, lambda session, _: svc.cancel(session, principal))
        return CancelSubscriptionPayload.of(result, errors, input.client_mutation_id)

    @mutation(
        description="PARTNER_ADMIN: drop the pending upgrade, downgrade or cancellation. "
        "Errors: NO_PENDING_CHANGE, SUBSCRIPTION_CANCELED."
    )
    async def withdraw_plan_change(
        self, info: strawberry.Info, input: MutationInput[WithdrawPlanChangeInput]
    ) -> WithdrawPlanChangePayload:
        principal = ctx(info).principal
        result, errors = await run_write(info, no_ids, lambda session, _: svc.withdraw(session, principal))
        return WithdrawPlanChangePayload.of(result, errors, input.client_mutation_id)
