"""Bank account mutations: link one, choose the default, unlink one.

Who may do what, and every rule, is services.bank_accounts; these fields only decode and map.
"""

from __future__ import annotations

import strawberry

from resolvers.common import no_ids, run_write, run_writes
from schema.bank_accounts import (
    LinkBankAccountInput,
    LinkBankAccountPayload,
    SetDefaultBankAccountInput,
    SetDefaultBankAccountPayload,
    UnlinkBankAccountInput,
    UnlinkBankAccountPayload,
)
from schema.base import MutationInput, ctx, decode_id, mutation
from services import bank_accounts as svc
from services.bank_gateway import bank_gateway_named


@strawberry.type
class BankAccountMutations:
    @mutation(
        description="PARTNER_ADMIN: link a bank account for payouts. The processor keeps the account number; "
        "only its last four digits are kept here. The first account becomes the default."
    )
    async def link_bank_account(
        self, info: strawberry.Info, input: MutationInput[LinkBankAccountInput]
    ) -> LinkBankAccountPayload:
        context = ctx(info)
        gateway = bank_gateway_named(context.settings.bank_gateway, context.settings.bank_sandbox_lag)
        result, errors = await run_writes(info, no_ids, lambda writes, _: svc.link(
            writes, context.principal, gateway,
            holder_name=input.holder_name,
            routing_number=input.routing_number,
            account_number=input.account_number,
            bank_name=input.bank_name,
            make_default=input.make_default,
            idempotency_key=input.idempotency_key,
        ))
        return LinkBankAccountPayload.of(result, errors, input.client_mutation_id)

    @mutation(
        description="PARTNER_ADMIN: the account payouts go to when none is named (and the payout preference's)."
    )
    async def set_default_bank_account(
        self, info: strawberry.Info, input: MutationInput[SetDefaultBankAccountInput]
    ) -> SetDefaultBankAccountPayload:
        principal = ctx(info).principal
        result, errors = await run_write(
            info, lambda: decode_id(input.bank_account_id, "BankAccount", "bankAccountId"),
            lambda session, bank_account_id: svc.set_default(session, principal, bank_account_id),
        )
        return SetDefaultBankAccountPayload.of(result, errors, input.client_mutation_id)

    @mutation(
        description="PARTNER_ADMIN: unlink an account no transfer is on its way to; if it was the default, "
        "the oldest remaining account becomes the default."
    )
    async def unlink_bank_account(
        self, info: strawberry.Info, input: MutationInput[UnlinkBankAccountInput]
    ) -> UnlinkBankAccountPayload:
        principal = ctx(info).principal
        result, errors = await run_write(
            info, lambda: decode_id(input.bank_account_id, "BankAccount", "bankAccountId"),
            lambda session, bank_account_id: svc.unlink(session, principal, bank_account_id),
        )
        return UnlinkBankAccountPayload.of(result, errors, input.client_mutation_id)
