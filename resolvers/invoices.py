"""Invoice mutations: a Partner pays from its wallet; Revampd billing issues, voids and
writes off. Who may do what, and every rule of money, is decided in services.invoices."""

from __future__ import annotations

import strawberry

from resolvers.common import run_write
from schema.base import ctx, decode_id
from schema.invoices import PayInvoiceInput, PayInvoicePayload
from services import invoices


@strawberry.type
class InvoiceMutations:
    @strawberry.mutation(
        description="PARTNER_ADMIN: pay an OPEN invoice of your connection from its wallet, in part or in full."
    )
    async def pay_invoice(self, info: strawberry.Info, input: PayInvoiceInput) -> PayInvoicePayload:
        p = ctx(info).principal
        paid, errors = await run_write(info, lambda s: invoices.pay_from_wallet(
            s, p, decode_id(input.invoice_id, "Invoice", "invoiceId"), input.amount, input.idempotency_key,
        ))
        return PayInvoicePayload.of(paid, errors, input.client_mutation_id)
