"""Billing mutations: the card on file."""

from __future__ import annotations

import strawberry

from resolvers.common import no_ids, run_write
from schema.base import MutationInput, ctx, mutation
from schema.billing import UpdatePaymentMethodInput, UpdatePaymentMethodPayload
from services import billing as svc
from services.payments import gateway_named


@strawberry.type
class BillingMutations:
    @mutation(
        description="PARTNER_ADMIN: put a card on file from the payment processor's token; the billing run charges it "
        "for what the wallet does not cover. Only brand, last 4 and expiry are kept."
    )
    async def update_payment_method(
        self, info: strawberry.Info, input: MutationInput[UpdatePaymentMethodInput]
    ) -> UpdatePaymentMethodPayload:
        context = ctx(info)
        gateway = gateway_named(context.settings.payment_gateway, context.settings.payment_sandbox_lag)
        result, errors = await run_write(info, no_ids, lambda session, _: svc.update_payment_method(
            session, context.principal, gateway, input.card_token
        ))
        return UpdatePaymentMethodPayload.of(result, errors, input.client_mutation_id)
