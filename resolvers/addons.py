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
from schema.base import MutationInput, ctx, decode_id, mutation
from services import addons as svc


def _add_on_id(gid: strawberry.ID) -> int:
    return decode_id(gid, "AddOn", "addOnId")


@strawberry.type
class AddOnMutations:
    @mutation(
        description="PARTNER_ADMIN: start paying for a product: usable at once, billed from the next invoice. "
        "Errors: NOT_FOUND, ALREADY_ADDED, INVALID_QUANTITY."
    )
    async def add_add_on(self, info: strawberry.Info, input: MutationInput[AddAddOnInput]) -> AddAddOnPayload:
        principal = ctx(info).principal
        result, errors = await run_write(
            info, lambda: decode_id(input.product_id, "AddOnProduct", "productId"),
            lambda session, product_id: svc.add(
                session, principal, product_id, input.quantity, idempotency_key=input.idempotency_key
            ),
        )
        return AddAddOnPayload.of(result, errors, input.client_mutation_id)

    @mutation(
        description="PARTNER_ADMIN: set the quantity: more is usable at once; less takes effect at the end of the "
        "period. Errors: NOT_FOUND, INVALID_QUANTITY."
    )
    async def update_add_on(self, info: strawberry.Info, input: MutationInput[UpdateAddOnInput]) -> UpdateAddOnPayload:
        principal = ctx(info).principal
        result, errors = await run_write(
            info, lambda: _add_on_id(input.add_on_id),
            lambda session, add_on_id: svc.update(session, principal, add_on_id, input.quantity),
        )
        return UpdateAddOnPayload.of(result, errors, input.client_mutation_id)

    @mutation(
        description="PARTNER_ADMIN: remove an add-on at the end of the period; usable until then. Errors: NOT_FOUND."
    )
    async def remove_add_on(self, info: strawberry.Info, input: MutationInput[RemoveAddOnInput]) -> RemoveAddOnPayload:
        principal = ctx(info).principal
        result, errors = await run_write(
            info, lambda: _add_on_id(input.add_on_id),
            lambda session, add_on_id: svc.remove(session, principal, add_on_id),
        )
        return RemoveAddOnPayload.of(result, errors, input.client_mutation_id)
