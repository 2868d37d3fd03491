"""Add-on mutations: add a product, change its quantity, remove it."""

from __future__ import annotations

import strawberry

from resolvers.common import run_write
from schema.addons import (
    AddAddOnInput,
    AddAddOnPayload,
    RemoveAddOnInput,
    RemoveAddOnPayload,
    UpdateAddOnInput,
    UpdateAddOnPayload,
)
from schema.base import MutationInput, ctx, decode_id
from services import addons as svc


@strawberry.type
class AddOnMutations:
    @strawberry.mutation(
        description="PARTNER_ADMIN: start paying for a product: usable at once, billed from the next invoice. "
        "Errors: NOT_FOUND, ALREADY_ADDED, INVALID_QUANTITY."
    )
    async def add_add_on(self, info: strawberry.Info, input: MutationInput[AddAddOnInput]) -> AddAddOnPayload:
        principal = ctx(info).principal
        result, errors = await run_write(info, lambda session: svc.add(
            session, principal, decode_id(input.product_id, "AddOnProduct", "productId"), input.quantity,
            idempotency_key=input.idempotency_key,
        ))
        return AddAddOnPayload.of(result, errors, input.client_mutation_id)

    @strawberry.mutation(
        description="PARTNER_ADMIN: set the quantity: more is usable at once; less takes effect at the end of the "
        "period. Errors: NOT_FOUND, INVALID_QUANTITY."
    )
    async def update_add_on(self, info: strawberry.Info, input: MutationInput[UpdateAddOnInput]) -> UpdateAddOnPayload:
        principal = ctx(info).principal
        result, errors = await run_write(info, lambda session: svc.update(
            session, principal, decode_id(input.add_on_id, "AddOn", "addOnId"), input.quantity
        ))
        return UpdateAddOnPayload.of(result, errors, input.client_mutation_id)

    @strawberry.mutation(
        description="PARTNER_ADMIN: remove an add-on at the end of the period; usable until then. Errors: NOT_FOUND."
    )
    async def remove_add_on(self, info: strawberry.Info, input: MutationInput[RemoveAddOnInput]) -> RemoveAddOnPayload:
        principal = ctx(info).principal
        result, errors = await run_write(info, lambda session: svc.remove(
            session, principal, decode_id(input.add_on_id, "AddOn", "addOnId")
        ))
        return RemoveAddOnPayload.of(result, errors, input.client_mutation_id)
