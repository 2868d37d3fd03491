"""Invoices of the connection, their line items and payments."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry

from db import models as m
from schema.base import (
    VALUE,
    FromRow,
    Money,
    Node,
    UserError,
    changed_connection,
    client_mutation_id_echo,
    client_mutation_id_field,
    column,
    ctx,
    field,
    global_id,
    money_from,
    user_errors_field,
)
from schema.enums import CreditNoteKind, InvoiceStatus, InvoiceType, PaymentMethod, RefundStatus
from schema.files import URL_DESCRIPTION, download_url
from schema.idempotency import required_idempotency_key_field
from schema.users import User
from schema.wallet import Wallet, WalletEntry
from services import invoices, pdfs, refunds


@strawberry.type(description="A line of an invoice. It has no id: clients cache it with its invoice.")
class InvoiceLineItem:
    description: str = strawberry.field(description="What is billed, such as \"Growth plan\" or an add-on's name.")
    quantity: int = strawberry.field(description="How many units.")
    unit_amount: Money = strawberry.field(description="The price of one unit.")
    amount: Money = strawberry.field(description="quantity x unitAmount.")


@strawberry.type(description="Money paid into an invoice: from the wallet, a card or a bank. It has no id: "
    "clients cache it with its invoice.")
class InvoicePayment:
    amount: Money = strawberry.field(description="How much was paid, in the invoice's currency.")
    method: PaymentMethod = strawberry.field(description="How it was paid: WALLET, CARD or BANK_TRANSFER.")
    created_at: datetime = strawberry.field(description="When it was paid.")
    model: strawberry.Private[m.InvoicePayment]

    @classmethod
    def of(cls, p: m.InvoicePayment, currency: str) -> "InvoicePayment":
        return cls(
            amount=Money.of(p.amount, currency), method=PaymentMethod(p.method), created_at=p.created_at, model=p
        )

    @field(
        description="Who paid: the Partner user who paid from the wallet; null for an automatic charge."
    )
    async def created_by(self, info: strawberry.Info) -> User | None:
        return await User.load(info, self.model.created_by_id)

    @field(description="A link to the payment's receipt as a PDF." + URL_DESCRIPTION)
    async def receipt_url(self, info: strawberry.Info) -> str | None:
        invoice = await ctx(info).loaders.by_id(m.Invoice).load(self.model.invoice_id)
        if invoice is None:
            return None
        number = pdfs.receipt_number(invoice.number, self.model.id)
        return download_url(info, ["receipt", str(self.model.id), f"{number}.pdf"], invoice.connection_id)[0]

    @field(
        description="For a payment from the wallet, its line on the wallet's statement; its `fundedBy` leads "
        "back to the credits (and payouts) that paid it. Null for a card payment."
    )
    async def wallet_entry(self, info: strawberry.Info) -> WalletEntry | None:
        return await WalletEntry.of_transfer(info, self.model.transfer_id)


@strawberry.input(description="Narrows RevampdConnection.invoices; a field left out or empty does not narrow.")
class InvoiceFilter:
    status: list[InvoiceStatus] | None = strawberry.field(
        default=None, description="Only invoices in one of these statuses."
    )
    type: list[InvoiceType] | None = strawberry.field(default=None, description="Only invoices of one of these types.")


@strawberry.type(description="A bill from Revampd to the connection, in the connection's currency.")
class Invoice(FromRow, Node, model=m.Invoice):
    number: str = strawberry.field(
        description="Its number: the connection's prefix and a sequence, such as NW-0007; unique per connection."
    )
    type: InvoiceType = strawberry.field(description="What it bills: the subscription, add-ons or a one-time service.")
    status: InvoiceStatus = strawberry.field(description="Where it is: DRAFT, OPEN (due), PAID, VOID or UNCOLLECTIBLE.")
    total: Money = strawberry.field(description="The sum of its line items.")
    amount_paid: Money = strawberry.field(description="What has been paid into it so far, by every method.")
    amount_due: Money = strawberry.field(description="total - amountPaid; zero once PAID, VOID or UNCOLLECTIBLE.")
    amount_refunded: Money = strawberry.field(
        description="What was paid into it and given back by its credit notes (a card refund still waiting for "
        "the processor included); never more than amountPaid. A refund does not change amountDue."
    )
    payment_method: PaymentMethod | None = strawberry.field(
        description="How it was paid; MIXED when by more than one method."
    )
    period_start: datetime | None = strawberry.field(
        description="The start of the period a SUBSCRIPTION invoice bills; null for other types."
    )
    period_end: datetime | None = strawberry.field(
        description="The end of the period a SUBSCRIPTION invoice bills; null for other types."
    )
    issued_at: datetime = strawberry.field(description="When it was made (for a DRAFT, last brought up to date).")
    opened_at: datetime | None = strawberry.field(description="When it became OPEN (due); null while a DRAFT.")
    due_at: datetime | None = strawberry.field(description="When payment is due; null when no date was set.")
    paid_at: datetime | None = strawberry.field(description="When it was paid in full; null until PAID.")
    voided_at: datetime | None = strawberry.field(description="When it was voided; null unless VOID.")
    void_reason: str | None = strawberry.field(
        description="Why it was voided, as Revampd billing gave it; null unless VOID."
    )
    uncollectible_at: datetime | None = strawberry.field(description="When it was written off as UNCOLLECTIBLE.")
    payment_error: str | None = strawberry.field(description="Why the last card charge was declined, if one was.")
    next_payment_attempt_at: datetime | None = strawberry.field(
        description="When the card is charged again; null when no charge is planned."
    )
    model: strawberry.Private[m.Invoice]

    from_row = {
        "id": global_id("Invoice"),
        "number": column("number"),
        "type": column("type", InvoiceType),
        "status": column("status", InvoiceStatus),
        "total": money_from("total"),
        "amount_paid": money_from("amount_paid"),
        "amount_due": money_from(invoices.amount_due),
        "amount_refunded": money_from("amount_refunded"),
        "payment_method": column("payment_method", PaymentMethod),
        "period_start": column("period_start"),
        "period_end": column("period_end"),
        "issued_at": column("issued_at"),
        "opened_at": column("opened_at"),
        "due_at": column("due_at"),
        "paid_at": column("paid_at"),
        "voided_at": column("voided_at"),
        "void_reason": column("void_reason"),
        "uncollectible_at": column("uncollectible_at"),
        "payment_error": column("payment_error"),
        "next_payment_attempt_at": column("next_payment_attempt_at"),
    }

    @classmethod
    def of(cls, i: m.Invoice) -> "Invoice":
        return cls.made(model=i)

    @field(description="What it bills, in the order of the invoice.")
    async def line_items(self, info: strawberry.Info) -> list[InvoiceLineItem]:
        cur = self.model.currency_code
        rows = await ctx(info).loaders.line_items_by_invoice.load(self.model.id)
        return [
            InvoiceLineItem(
                description=r.description,
                quantity=r.quantity,
                unit_amount=Money.of(r.unit_amount, cur),
                amount=Money.of(r.amount, cur),
            )
            for r in rows
        ]

    @field(description="Payments into it, oldest first.")
    async def payments(self, info: strawberry.Info) -> list[InvoicePayment]:
        rows = await ctx(info).loaders.payments_by_invoice.load(self.model.id)
        return [InvoicePayment.of(r, self.model.currency_code) for r in rows]

    @field(description="A link to the invoice as a PDF to file: Revampd's and your details, its lines, totals, "
           "payments, refunds and what is still due, as they now stand." + URL_DESCRIPTION)
    def pdf_url(self, info: strawberry.Info) -> str:
        row = self.model
        return download_url(info, ["invoice", str(row.id), f"{row.number}.pdf"], row.connection_id)[0]

    @field(description="The credit notes that reduced it (refunds, a void), oldest first.")
    async def credit_notes(self, info: strawberry.Info) -> list["CreditNote"]:
        rows = await ctx(info).loaders.credit_notes_by_invoice.load(self.model.id)
        return [CreditNote.of(r) for r in rows]

    @field(description="What was given back of its payments, oldest first: one per payment and credit note.")
    async def refunds(self, info: strawberry.Info) -> list["Refund"]:
        rows = await ctx(info).loaders.refunds_by_invoice.load(self.model.id)
        return [Refund.of(r) for r in rows]


@strawberry.type(description="Money paid into an invoice given back by a credit note, to where it came from." + VALUE)
class Refund:
    amount: Money = strawberry.field(description="How much, in the invoice's currency.")
    method: PaymentMethod = strawberry.field(
        description="Where it goes: CARD (through the card processor) or WALLET (a wallet payment, a bank "
        "payment, or a card payment whose charge is not known)."
    )
    status: RefundStatus = strawberry.field(description="PENDING while the card processor's answer is awaited.")
    failure_reason: str | None = strawberry.field(
        description="Why the card processor refused it (then it was credited to the wallet); null otherwise."
    )
    created_at: datetime = strawberry.field(description="When it was asked for.")
    settled_at: datetime | None = strawberry.field(description="When it was given back; null while PENDING.")
    model: strawberry.Private[m.Refund]

    @classmethod
    def of(cls, r: m.Refund) -> "Refund":
        return cls(
            amount=Money.of(r.amount, r.currency_code), method=PaymentMethod(r.method), status=RefundStatus(r.status),
            failure_reason=r.failure_reason, created_at=r.created_at, settled_at=r.settled_at, model=r,
        )

    @field(description="The credit note it settles.")
    async def credit_note(self, info: strawberry.Info) -> "CreditNote | None":
        return await CreditNote.load(info, self.model.credit_note_id)


@strawberry.type(description="A line of a credit note: what it takes off its invoice." + VALUE)
class CreditNoteLine:
    description: str = strawberry.field(description="What is credited.")
    quantity: int = strawberry.field(description="How many units.")
    unit_amount: Money = strawberry.field(description="The amount of one unit; negative for what an earlier credit note took.")
    amount: Money = strawberry.field(description="quantity x unitAmount.")


@strawberry.type(description="A reduction of an issued invoice, which is never edited: a refund of what was paid, "
                 "or the invoice voided. Numbered per connection without a gap, such as NW-CN-0001.")
class CreditNote(FromRow, Node, model=m.CreditNote):
    number: str = strawberry.field(description="Its number: the connection's invoice prefix, CN and a sequence.")
    kind: CreditNoteKind = strawberry.field(description="REFUND or VOID.")
    reason: str = strawberry.field(description="Why, as Revampd billing gave it.")
    total: Money = strawberry.field(description="What it takes off its invoice: amountOffDue plus what it refunds.")
    amount_off_due: Money = strawberry.field(
        description="What it took off the amount still due (a void of an unpaid or part-paid invoice); zero for a refund."
    )
    created_at: datetime = strawberry.field(description="When it was issued.")
    model: strawberry.Private[m.CreditNote]

    from_row = {
        "id": global_id("CreditNote"),
        "number": column("number"),
        "kind": column("kind", CreditNoteKind),
        "reason": column("reason"),
        "total": money_from("total"),
        "amount_off_due": money_from("due_reduced"),
        "created_at": column("created_at"),
    }

    @classmethod
    def of(cls, n: m.CreditNote) -> "CreditNote":
        return cls.made(model=n)

    @field(description="The invoice it reduces.")
    async def invoice(self, info: strawberry.Info) -> Invoice | None:
        return await Invoice.load(info, self.model.invoice_id)

    @field(description="A link to the credit note as a PDF to file." + URL_DESCRIPTION)
    def pdf_url(self, info: strawberry.Info) -> str:
        n = self.model
        return download_url(info, ["credit-note", str(n.id), f"{n.number}.pdf"], n.connection_id)[0]

    @field(description="How it was settled: each refund, to the card or the wallet.")
    async def refunds(self, info: strawberry.Info) -> list[Refund]:
        rows = await ctx(info).loaders.refunds_by_credit_note.load(self.model.id)
        return [Refund.of(r) for r in rows]

    @field(description="What it takes off its invoice, line by line: a refund is one line; a void, the invoice's "
           "lines less what earlier credit notes took.")
    async def lines(self, info: strawberry.Info) -> list[CreditNoteLine]:
        n, loaders = self.model, ctx(info).loaders
        if n.kind == CreditNoteKind.REFUND:
            found = [refunds.Line(f"Refund: {n.reason}", 1, n.total)]
        else:
            items = await loaders.line_items_by_invoice.load(n.invoice_id)
            notes = await loaders.credit_notes_by_invoice.load(n.invoice_id)
            found = refunds.void_lines(items, [c for c in notes if (c.created_at, c.id) < (n.created_at, n.id)])
        return [CreditNoteLine(description=li.description, quantity=li.quantity,
                               unit_amount=Money.of(li.unit_amount, n.currency_code),
                               amount=Money.of(li.quantity * li.unit_amount, n.currency_code)) for li in found]


# ---- Mutations: inputs and payloads -------------------------------------------

@strawberry.input(description="The input of payInvoice.")
class PayInvoiceInput:
    invoice_id: strawberry.ID = strawberry.field(description="An OPEN invoice of your connection.")
    amount: str | None = strawberry.field(
        default=None,
        description="A decimal string in the invoice's currency, such as \"12.50\": at most what is due and "
        "what the wallet holds. Without it the wallet pays all that is due, or all it holds if that is less.",
    )
    idempotency_key: str = required_idempotency_key_field()
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.input(description="The input of payInvoiceByCard.")
class PayInvoiceByCardInput:
    invoice_id: strawberry.ID = strawberry.field(description="An OPEN invoice of your connection.")
    idempotency_key: str = required_idempotency_key_field()
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type(description="The result of payInvoice and payInvoiceByCard.")
class PayInvoicePayload:
    invoice: Invoice | None = strawberry.field(description="The invoice as it now stands; null when refused.")
    payment: InvoicePayment | None = strawberry.field(description="The payment made; null when refused.")
    wallet: Wallet | None = strawberry.field(
        description="The wallet it was paid from, as it now stands; null for a card payment."
    )
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()

    @classmethod
    def of(cls, paid: invoices.Paid | None, errors: list[UserError], client_mutation_id: str | None) -> Self:
        return cls(
            invoice=Invoice.of(paid.invoice) if paid else None,
            payment=InvoicePayment.of(paid.payment, paid.invoice.currency_code) if paid else None,
            wallet=Wallet.of(paid.wallet, paid.wallet.currency_code) if paid else None,
            user_errors=errors,
            client_mutation_id=client_mutation_id,
        )


@strawberry.input(description="The input of voidInvoice.")
class VoidInvoiceInput:
    invoice_id: strawberry.ID = strawberry.field(description="An OPEN invoice.")
    reason: str = strawberry.field(description="Why it is void, shown on the invoice: 1 to 500 characters, trimmed.")
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.input(description="The input of markInvoiceUncollectible.")
class MarkInvoiceUncollectibleInput:
    invoice_id: strawberry.ID = strawberry.field(description="An OPEN invoice.")
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type
class InvoicePayload:
    invoice: Invoice | None = strawberry.field(description="The invoice as it now stands; null when refused.")
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()

    @classmethod
    def of(cls, invoice: m.Invoice | None, errors: list[UserError], client_mutation_id: str | None) -> Self:
        return cls(
            invoice=Invoice.of(invoice) if invoice is not None else None,
            user_errors=errors,
            client_mutation_id=client_mutation_id,
        )


@strawberry.input(description="The input of refundInvoice.")
class RefundInvoiceInput:
    invoice_id: strawberry.ID = strawberry.field(description="An invoice something was paid into.")
    amount: str | None = strawberry.field(
        default=None,
        description="A positive decimal string in the invoice's currency, such as \"25.00\": at most what was paid "
        "and not yet refunded (amountPaid - amountRefunded). Without it, all of that.",
    )
    reason: str = strawberry.field(description="Why, shown on the credit note: 1 to 500 characters, trimmed.")
    idempotency_key: str = required_idempotency_key_field()
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type(description="The result of refundInvoice.")
class RefundInvoicePayload(InvoicePayload):
    credit_note: CreditNote | None = strawberry.field(
        description="The credit note made, with its refunds as they now stand; null when refused."
    )

    @field(description="The wallet as it now stands, with what came back to it; null when refused.")
    async def wallet(self, info: strawberry.Info) -> Wallet | None:
        return None if self.invoice is None else await Wallet.load(info, self.invoice.model.connection_id)


@strawberry.type(description="The result of voidInvoice.")
class VoidInvoicePayload(InvoicePayload):
    credit_note: CreditNote | None = strawberry.field(
        description="The credit note that voided it, with the refunds of what was paid; null when refused."
    )

    @field(
        description="The wallet as it now stands, with what came back to it; null when refused."
    )
    async def wallet(self, info: strawberry.Info) -> Wallet | None:
        return None if self.invoice is None else await Wallet.load(info, self.invoice.model.connection_id)


@strawberry.type(description="The result of markInvoiceUncollectible.")
class MarkInvoiceUncollectiblePayload(InvoicePayload):
    pass


@strawberry.input(description="A line of an invoice to issue.")
class InvoiceLineItemInput:
    description: str = strawberry.field(description="1 to 300 characters, trimmed.")
    quantity: int = strawberry.field(description="From 1 to 10,000.")
    unit_amount: str = strawberry.field(
        description="A positive decimal string in the connection's currency, such as \"150.00\"."
    )


@strawberry.input(description="The input of issueInvoice.")
class IssueInvoiceInput:
    connection_id: strawberry.ID = strawberry.field(description="The RevampdConnection to bill.")
    line_items: list[InvoiceLineItemInput] = strawberry.field(description="1 to 100 lines.")
    due_at: datetime = strawberry.field(description="Not in the past; a time without a zone is UTC.")
    idempotency_key: str = required_idempotency_key_field()
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type(description="The result of issueInvoice.")
class IssueInvoicePayload(InvoicePayload):
    revampd_connection = changed_connection(lambda p: p.invoice and p.invoice.model.connection_id, "invoices")
