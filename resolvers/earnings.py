"""Sub-Org earnings: Revampd billing records the transactions that payouts are made of.

Who may do what, and every rule, is services.earnings; this field only decodes and maps.
"""

from __future__ import annotations

import strawberry

from resolvers.common import run_write
from schema.base import MutationInput, ctx, decode_id, mutation
from schema.earnings import RecordSubOrgTransactionsInput, RecordSubOrgTransactionsPayload
from services import earnings as svc


@strawberry.type
class EarningsMutations:
    @mutation(
        description="BILLING_ADMIN: record Sub-Org transactions of a connection; the Partner's share of each "
        "(the gross less Revampd's fee at its plan's rate now) is paid out when its period closes. Each "
        "externalId is recorded once."
    )
    async def record_sub_org_transactions(
        self, info: strawberry.Info, input: MutationInput[RecordSubOrgTransactionsInput]
    ) -> RecordSubOrgTransactionsPayload:
        principal = ctx(info).principal
        items = [
            svc.TransactionInput(t.external_id, t.sub_org_name, t.kind.value, t.gross_amount, t.occurred_at,
                                 t.description)
            for t in input.transactions
        ]
        result, errors = await run_write(
            info, lambda: decode_id(input.connection_id, "RevampdConnection", "connectionId"),
            lambda session, connection_id: svc.record(
                session, principal, connection_id, items, idempotency_key=input.idempotency_key
            ),
        )
        return RecordSubOrgTransactionsPayload.of(result, errors, input.client_mutation_id)
