"""Invoice mutations: a Partner pays from its wallet; Revampd billing issues, voids and
writes off. Who may do what, and every rule of money, is decided in services.invoices."""

from __future__ import annotations

from typing import Awaitable, Callable, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import models as m
from resolvers.common import no_ids, run_write, run_writes
from schema.base import MutationInput, UserError, ctx, decode_id, mutation
from schema.invoices import (
    CreditNote,
    Invoice,
    InvoicePayment,
    IssueInvoiceInput,
    IssueInvoicePayload,
    MarkInvoiceUncollectibleInput,
    MarkInvoiceUncollectiblePayload,
    PayInvoiceByCardInput,
    PayInvoiceInput,
    PayInvoicePayload,
    RefundInvoiceInput,
    RefundInvoicePayload,
    VoidInvoiceInput,
    VoidInvoicePayload,
)
from services import card_payments, invoices, refunds
from services.errors import DomainError, ErrorCode
from services.payments import gateway_named


def _invoice_id(gid: strawberry.ID) -> int:
    return decode_id(gid, "Invoice", "invoiceId")


P = TypeVar("P", VoidInvoicePayload, RefundInvoicePayload)


async def _credit(
    info: strawberry.Info, invoice_gid: strawberry.ID, work: Callable[[AsyncSession, int], Awaitable[refunds.Credited]],
    payload: type[P], client_mutation_id: str | None,
) -> P:
    """A credit note made in one transaction, then its card refunds asked of the processor with
    no transaction open, each answer recorded in a transaction of its own."""

    async def made(writes: async_sessionmaker[AsyncSession], invoice_id: int) -> refunds.Credited:
        async with writes() as session, session.begin():
            credited = await work(session, invoice_id)
        settings = ctx(info).settings
        await refunds.complete(writes, gateway_named(settings.payment_gateway, settings.payment_sandbox_lag),
                               credited.refunds)
        return credited

    credited, errors = await run_writes(info, lambda: _invoice_id(invoice_gid), made)
    return payload(
        invoice=Invoice.of(credited.invoice) if credited else None,
        credit_note=CreditNote.of(credited.credit_note) if credited else None,
        user_errors=errors, client_mutation_id=client_mutation_id,
    )


@strawberry.type
class InvoiceMutations:
    @mutation(
        description="PARTNER_ADMIN: pay an OPEN invoice of your connection from its wallet, in part or in full."
    )
    async def pay_invoice(self, info: strawberry.Info, input: MutationInput[PayInvoiceInput]) -> PayInvoicePayload:
        p = ctx(info).principal
        paid, errors = await run_write(info, lambda: _invoice_id(input.invoice_id), lambda s, invoice_id: (
            invoices.pay_from_wallet(s, p, invoice_id, input.amount, input.idempotency_key)
        ))
        return PayInvoicePayload.of(paid, errors, input.client_mutation_id)

    @mutation(
        description="PARTNER_ADMIN: pay all that is due on an OPEN invoice of your connection with the card on "
        "file, at once (the way out of a declined charge that does not wait for the billing run's next try). "
        "A decline answers CARD_DECLINED with the processor's reason, also kept on the invoice as paymentError; "
        "if the processor's answer is lost, PAYMENT_PENDING: the charge is settled with the processor shortly, "
        "never made twice. The same idempotencyKey again answers the same charge."
    )
    async def pay_invoice_by_card(
        self, info: strawberry.Info, input: MutationInput[PayInvoiceByCardInput]
    ) -> PayInvoicePayload:
        context = ctx(info)
        p, mid = context.principal, input.client_mutation_id
        charge, errors = await run_write(info, lambda: _invoice_id(input.invoice_id), lambda s, invoice_id: (
            card_payments.start(s, p, invoice_id, input.idempotency_key)
        ))
        if charge is None:
            return PayInvoicePayload(invoice=None, payment=None, wallet=None, user_errors=errors, client_mutation_id=mid)
        if charge.status == card_payments.PENDING:
            # No transaction is open and no connection held while the processor answers.
            gateway = gateway_named(context.settings.payment_gateway, context.settings.payment_sandbox_lag)
            result = await card_payments.ask(gateway, charge)
            if result is not None:
                charge_id = charge.id
                settled, _ = await run_write(info, no_ids, lambda s, _: card_payments.settle(s, charge_id, result))
                charge = settled or charge
        invoice = await context.db.get(m.Invoice, charge.invoice_id, populate_existing=True)
        assert invoice is not None
        payment = None if charge.payment_id is None else await context.db.get(m.InvoicePayment, charge.payment_id)
        refusals: dict[str, DomainError] = {
            card_payments.DECLINED: DomainError(ErrorCode.CARD_DECLINED, charge.decline_reason or "", "invoiceId"),
            card_payments.PENDING: DomainError(
                ErrorCode.PAYMENT_PENDING,
                "The card processor's answer did not arrive; the charge is being settled with it and will not be "
                "made twice. Read the invoice again shortly.", "invoiceId"),
        }
        refused = refusals.get(charge.status)
        return PayInvoicePayload(
            invoice=Invoice.of(invoice),
            payment=InvoicePayment.of(payment, invoice.currency_code) if payment else None,
            wallet=None, user_errors=[UserError.of(refused)] if refused else [], client_mutation_id=mid,
        )

    @mutation(
        description="BILLING_ADMIN: an OPEN invoice is void and owed no more, by a credit note; what was paid "
        "into it goes back to where it came from (the wallet, or the card through the processor)."
    )
    async def void_invoice(self, info: strawberry.Info, input: MutationInput[VoidInvoiceInput]) -> VoidInvoicePayload:
        p = ctx(info).principal
        return await _credit(info, input.invoice_id, lambda s, invoice_id: refunds.void(s, p, invoice_id, input.reason),
                             VoidInvoicePayload, input.client_mutation_id)

    @mutation(
        description="BILLING_ADMIN: give back all or part of what was paid into an invoice, by a credit note: "
        "newest payment first, each to where it came from (a wallet payment to the wallet, a card payment to the "
        "card through the processor). A card refund the processor refuses is credited to the wallet instead; one "
        "whose answer is lost stays PENDING and is settled with the processor shortly, never made twice. The same "
        "idempotencyKey again answers the same credit note."
    )
    async def refund_invoice(
        self, info: strawberry.Info, input: MutationInput[RefundInvoiceInput]
    ) -> RefundInvoicePayload:
        p = ctx(info).principal
        return await _credit(info, input.invoice_id, lambda s, invoice_id: refunds.refund(
            s, p, invoice_id, input.amount, input.reason, input.idempotency_key,
        ), RefundInvoicePayload, input.client_mutation_id)

    @mutation(
        description="BILLING_ADMIN: an OPEN invoice will not be paid; what is still due is written off, "
        "what was paid stays paid."
    )
    async def mark_invoice_uncollectible(
        self, info: strawberry.Info, input: MutationInput[MarkInvoiceUncollectibleInput]
    ) -> MarkInvoiceUncollectiblePayload:
        p = ctx(info).principal
        invoice, errors = await run_write(info, lambda: _invoice_id(input.invoice_id), lambda s, invoice_id: (
            invoices.mark_uncollectible(s, p, invoice_id)
        ))
        return MarkInvoiceUncollectiblePayload.of(invoice, errors, input.client_mutation_id)

    @mutation(
        description="BILLING_ADMIN: a ONE_TIME invoice for a connection, OPEN at once, numbered after its last."
    )
    async def issue_invoice(
        self, info: strawberry.Info, input: MutationInput[IssueInvoiceInput]
    ) -> IssueInvoicePayload:
        p = ctx(info).principal
        lines = [invoices.LineInput(li.description, li.quantity, li.unit_amount) for li in input.line_items]
        invoice, errors = await run_write(
            info, lambda: decode_id(input.connection_id, "RevampdConnection", "connectionId"),
            lambda s, connection_id: invoices.issue(s, p, connection_id, lines, input.due_at, input.idempotency_key),
        )
        return IssueInvoicePayload.of(invoice, errors, input.client_mutation_id)
