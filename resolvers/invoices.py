"""Invoice mutations: a Partner pays from its wallet; Revampd billing issues, voids and
writes off. Who may do what, and every rule of money, is decided in services.invoices."""

from __future__ import annotations

import strawberry

from resolvers.common import run_write
from schema.base import MutationInput, ctx, decode_id
from schema.invoices import (
    IssueInvoiceInput,
    IssueInvoicePayload,
    MarkInvoiceUncollectibleInput,
    MarkInvoiceUncollectiblePayload,
    PayInvoiceInput,
    PayInvoicePayload,
    VoidInvoiceInput,
    VoidInvoicePayload,
)
from services import invoices


@strawberry.type
class InvoiceMutations:
    @strawberry.mutation(
        description="PARTNER_ADMIN: pay an OPEN invoice of your connection from its wallet, in part or in full."
    )
    async def pay_invoice(self, info: strawberry.Info, input: MutationInput[PayInvoiceInput]) -> PayInvoicePayload:
        p = ctx(info).principal
        paid, errors = await run_write(info, lambda s: invoices.pay_from_wallet(
            s, p, decode_id(input.invoice_id, "Invoice", "invoiceId"), input.amount, input.idempotency_key,
        ))
        return PayInvoicePayload.of(paid, errors, input.client_mutation_id)

    @strawberry.mutation(
        description="BILLING_ADMIN: an OPEN invoice is void and owed no more; what the wallet paid into it "
        "goes back to the wallet."
    )
    async def void_invoice(self, info: strawberry.Info, input: MutationInput[VoidInvoiceInput]) -> VoidInvoicePayload:
        p = ctx(info).principal
        invoice, errors = await run_write(info, lambda s: invoices.void(
            s, p, decode_id(input.invoice_id, "Invoice", "invoiceId"), input.reason,
        ))
        return VoidInvoicePayload.of(invoice, errors, input.client_mutation_id)

    @strawberry.mutation(
        description="BILLING_ADMIN: an OPEN invoice will not be paid; what is still due is written off, "
        "what was paid stays paid."
    )
    async def mark_invoice_uncollectible(
        self, info: strawberry.Info, input: MutationInput[MarkInvoiceUncollectibleInput]
    ) -> MarkInvoiceUncollectiblePayload:
        p = ctx(info).principal
        invoice, errors = await run_write(info, lambda s: invoices.mark_uncollectible(
            s, p, decode_id(input.invoice_id, "Invoice", "invoiceId"),
        ))
        return MarkInvoiceUncollectiblePayload.of(invoice, errors, input.client_mutation_id)

    @strawberry.mutation(
        description="BILLING_ADMIN: a ONE_TIME invoice for a connection, OPEN at once, numbered after its last."
    )
    async def issue_invoice(
        self, info: strawberry.Info, input: MutationInput[IssueInvoiceInput]
    ) -> IssueInvoicePayload:
        p = ctx(info).principal
        lines = [invoices.LineInput(li.description, li.quantity, li.unit_amount) for li in input.line_items]
        invoice, errors = await run_write(info, lambda s: invoices.issue(
            s, p, decode_id(input.connection_id, "RevampdConnection", "connectionId"), lines, input.due_at,
            input.idempotency_key,
        ))
        return IssueInvoicePayload.of(invoice, errors, input.client_mutation_id)
