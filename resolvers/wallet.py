"""Wallet mutations: Revampd billing adjusts a wallet and applies affiliate payouts to it.

Who may do what, and every rule of money, is services.wallet; these fields only decode and map.
"""

from __future__ import annotations

import strawberry

from db.states import WalletAdjustmentKind
from resolvers.common import run_write
from schema.base import MutationInput, ctx, decode_id, mutation
from schema.wallet import (
    AdjustWalletInput,
    AdjustWalletPayload,
    ApplyAffiliatePayoutInput,
    ApplyAffiliatePayoutPayload,
)
from services import wallet as svc


@strawberry.type
class WalletMutations:
    @mutation(
        description="BILLING_ADMIN: credit (positive amount) or debit (negative) a connection's wallet."
    )
    async def adjust_wallet(
        self, info: strawberry.Info, input: MutationInput[AdjustWalletInput]
    ) -> AdjustWalletPayload:
        principal = ctx(info).principal
        result, errors = await run_write(
            info, lambda: decode_id(input.connection_id, "RevampdConnection", "connectionId"),
            lambda session, connection_id: svc.adjust(
                session, principal, connection_id=connection_id, amount=input.amount,
                kind=WalletAdjustmentKind(input.kind), memo=input.memo, idempotency_key=input.idempotency_key,
            ),
        )
        return AdjustWalletPayload.of(result, errors, input.client_mutation_id)

    @mutation(
        description="BILLING_ADMIN: credit a PENDING affiliate payout to its connection's wallet, once."
    )
    async def apply_affiliate_payout(
        self, info: strawberry.Info, input: MutationInput[ApplyAffiliatePayoutInput]
    ) -> ApplyAffiliatePayoutPayload:
        principal = ctx(info).principal
        result, errors = await run_write(
            info, lambda: decode_id(input.affiliate_payout_id, "AffiliatePayout", "affiliatePayoutId"),
            lambda session, affiliate_payout_id: svc.apply_affiliate_payout(
                session, principal, affiliate_payout_id, idempotency_key=input.idempotency_key
            ),
        )
        return ApplyAffiliatePayoutPayload.of(result, errors, input.client_mutation_id)
