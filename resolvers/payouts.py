"""Payout mutations: credit to the wallet, transfer to a bank, split, cancel a transfer, the preference;
and Revampd billing's clawbacks of Sub-Org transactions refunded or charged back (services.clawbacks).

Every rule of money is services.payouts; these fields decode IDs, run the work in one
transaction, and then hand a new bank transfer to the processor in a second one, so
that nothing refused ever reaches a bank.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from resolvers.common import no_ids, run_write, run_writes
from schema.base import MutationInput, ctx, decode_id, mutation
from schema.payouts import (
    CancelBankTransferInput,
    CancelBankTransferPayload,
    CreditPayoutInput,
    DisposePayoutPayload,
    RecordClawbacksInput,
    RecordClawbacksPayload,
    SetPayoutPreferenceInput,
    SetPayoutPreferencePayload,
    SplitPayoutInput,
    TransferPayoutInput,
)
from services import clawbacks, payouts
from services.bank_gateway import bank_gateway_named

log = logging.getLogger("revampd.payouts")
D = TypeVar("D")


async def _dispose(
    info: strawberry.Info,
    decode: Callable[[], D],
    work: Callable[[AsyncSession, D], Awaitable[payouts.Disposed]],
    cmid: str | None,
) -> DisposePayoutPayload:
    result, errors = await run_write(info, decode, work)
    if result is not None and result.bank_transfer is not None and result.bank_transfer.gateway_ref is None:
        context = ctx(info)
        gateway = bank_gateway_named(context.settings.bank_gateway, context.settings.bank_sandbox_lag)
        transfer_id = result.bank_transfer.id
        await context.release_reads()
        try:  # two short transactions; none open, no connection held, while the processor answers
            await payouts.submit(context.writes, gateway, transfer_id)
        except Exception:  # the disposition stands; `payouts sync` sends it
            log.exception("bank transfer %s was recorded but not sent to the processor", transfer_id)
        result = await payouts.reread(context.db, result)
    return DisposePayoutPayload.of(result, errors, cmid)


def _payout_id(gid: strawberry.ID) -> int:
    return decode_id(gid, "Payout", "payoutId")


def _payout_and_bank_account_ids(payout: strawberry.ID, bank_account: strawberry.ID | None) -> tuple[int, int | None]:
    return _payout_id(payout), None if bank_account is None else decode_id(bank_account, "BankAccount", "bankAccountId")


@strawberry.type
class PayoutMutations:
    @mutation(
        description="PARTNER_ADMIN: credit a payout (all that is available, or `amount`) to the wallet."
    )
    async def credit_payout(
        self, info: strawberry.Info, input: MutationInput[CreditPayoutInput]
    ) -> DisposePayoutPayload:
        p = ctx(info).principal
        return await _dispose(info, lambda: _payout_id(input.payout_id), lambda s, payout_id: payouts.credit(
            s, p, payout_id, amount=input.amount, idempotency_key=input.idempotency_key,
        ), input.client_mutation_id)

    @mutation(
        description="PARTNER_ADMIN: send a payout (all that is available, or `amount`) to a linked bank account."
    )
    async def transfer_payout(
        self, info: strawberry.Info, input: MutationInput[TransferPayoutInput]
    ) -> DisposePayoutPayload:
        p = ctx(info).principal
        return await _dispose(
            info, lambda: _payout_and_bank_account_ids(input.payout_id, input.bank_account_id),
            lambda s, ids: payouts.transfer(
                s, p, ids[0], bank_account_id=ids[1], amount=input.amount, idempotency_key=input.idempotency_key,
            ), input.client_mutation_id)

    @mutation(
        description="PARTNER_ADMIN: `walletAmount` to the wallet and the rest of what is available to a bank "
        "account, together or not at all."
    )
    async def split_payout(self, info: strawberry.Info, input: MutationInput[SplitPayoutInput]) -> DisposePayoutPayload:
        p = ctx(info).principal
        return await _dispose(
            info, lambda: _payout_and_bank_account_ids(input.payout_id, input.bank_account_id),
            lambda s, ids: payouts.split(
                s, p, ids[0], wallet_amount=input.wallet_amount, bank_account_id=ids[1],
                idempotency_key=input.idempotency_key,
            ), input.client_mutation_id)

    @mutation(
        description="PARTNER_ADMIN: cancel a PENDING bank transfer; its amount is available on the payout again."
    )
    async def cancel_bank_transfer(
        self, info: strawberry.Info, input: MutationInput[CancelBankTransferInput]
    ) -> CancelBankTransferPayload:
        p = ctx(info).principal
        gateway = bank_gateway_named(ctx(info).settings.bank_gateway, ctx(info).settings.bank_sandbox_lag)
        result, errors = await run_writes(
            info, lambda: decode_id(input.bank_transfer_id, "BankTransfer", "bankTransferId"),
            lambda writes, transfer_id: payouts.cancel(writes, p, gateway, transfer_id),
        )
        return CancelBankTransferPayload.of(result, errors, input.client_mutation_id)

    @mutation(description="PARTNER_ADMIN: what happens to each new payout, and how often they are made.")
    async def set_payout_preference(
        self, info: strawberry.Info, input: MutationInput[SetPayoutPreferenceInput]
    ) -> SetPayoutPreferencePayload:
        p = ctx(info).principal
        result, errors = await run_write(info, no_ids, lambda s, _: payouts.set_preference(
            s, p, mode=input.mode.value, wallet_percent=input.wallet_percent,
            period_type=input.period_type.value if input.period_type else None,
        ))
        return SetPayoutPreferencePayload.of(result, errors, input.client_mutation_id)

    @mutation(
        description="BILLING_ADMIN: record Sub-Org transactions of a connection refunded or charged back after they "
        "were recorded. The Partner's share reversed is taken from the payout each was counted in while money is "
        "available there; the rest is outstanding and taken from the connection's next payouts, never from the "
        "wallet. Each externalId is recorded once."
    )
    async def record_clawbacks(
        self, info: strawberry.Info, input: MutationInput[RecordClawbacksInput]
    ) -> RecordClawbacksPayload:
        principal = ctx(info).principal
        items = [
            clawbacks.ClawbackInput(c.transaction_external_id, c.external_id, c.kind.value, c.amount, c.reason)
            for c in input.clawbacks
        ]
        result, errors = await run_write(
            info, lambda: decode_id(input.connection_id, "RevampdConnection", "connectionId"),
            lambda session, connection_id: clawbacks.record(
                session, principal, connection_id, items, idempotency_key=input.idempotency_key
            ),
        )
        return RecordClawbacksPayload.of(result, errors, input.client_mutation_id)
