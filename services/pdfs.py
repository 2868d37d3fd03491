"""The billing documents a Partner's accountant files, made once and kept.

An invoice, a credit note, a receipt (one per payment) and a payout statement are read from
the database into services.documents' data and drawn as PDFs. Each is kept in `documents`
under a revision, the digest of all it shows: the first request for an object in a given state
makes it, every later one serves those bytes again, so the same invoice always gives the same
bytes, even after the renderer changes; an invoice that was paid since is a new revision (its
payments and amount due are on it). An issued invoice's lines never change.

Reading, drawing and keeping are three steps: a read session gives its connection back before
the PDF is drawn (in a thread: it is CPU work), and the row is written in a short transaction
of its own; two first requests at once keep one (the unique revision), and both serve it.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import models as m
from db.states import CreditNoteKind, DocumentKind, PaymentMethod, RefundStatus
from services import card_payments, refunds
from services import documents as d
from services.invoices import amount_due

# Revampd's details, as they head every document.
SELLER = d.Party("Revampd, Inc.", ("548 Market Street, Suite 300", "San Francisco, CA 94104", "United States"),
                 "US 82-4918273")

METHODS = {PaymentMethod.WALLET: "Wallet", PaymentMethod.CARD: "Card", PaymentMethod.BANK_TRANSFER: "Bank transfer"}


def receipt_number(invoice_number: str, payment_id: int) -> str:
    return f"{invoice_number}-R{payment_id:05d}"


def statement_number(payout: m.Payout) -> str:
    return f"PO-{payout.connection_id:04d}-{payout.period_end:%Y%m%d}"


@dataclass(frozen=True)
class Kind:
    """A kind of document: its row kind, its model, how it is named and read."""

    kind: DocumentKind
    model: type[Any]
    read: Callable[[AsyncSession, Any], Any]
    render: Callable[[Any], bytes]


@dataclass(frozen=True)
class File:
    filename: str
    content: bytes
    sha256: str
    created_at: datetime


async def _buyer(session: AsyncSession, connection_id: int) -> d.Party:
    partner = await session.scalar(
        select(m.Partner).join(m.Connection, m.Connection.partner_id == m.Partner.id)
        .where(m.Connection.id == connection_id))
    assert partner is not None
    return d.Party(partner.name, tuple((partner.address or "").splitlines()), partner.tax_id)


def _payment(p: m.InvoicePayment, charges: dict[int, str]) -> d.Payment:
    return d.Payment(p.created_at, METHODS[PaymentMethod(p.method)], p.amount, charges.get(p.id, f"Payment #{p.id}"))


async def _invoice(session: AsyncSession, inv: m.Invoice) -> tuple[str, d.InvoiceDoc]:
    items = (await session.scalars(select(m.InvoiceLineItem).where(m.InvoiceLineItem.invoice_id == inv.id)
                                   .order_by(m.InvoiceLineItem.id))).all()
    payments = (await session.scalars(select(m.InvoicePayment).where(m.InvoicePayment.invoice_id == inv.id)
                                      .order_by(m.InvoicePayment.created_at, m.InvoicePayment.id))).all()
    charges = await card_payments.charges_of(session, [p.id for p in payments])
    given_back = await session.execute(
        select(m.Refund, m.CreditNote.number).join(m.CreditNote, m.CreditNote.id == m.Refund.credit_note_id)
        .where(m.Refund.invoice_id == inv.id).order_by(m.Refund.id))
    doc = d.InvoiceDoc(
        seller=SELLER, buyer=await _buyer(session, inv.connection_id), number=inv.number, status=inv.status,
        issued_at=inv.opened_at or inv.issued_at, due_at=inv.due_at,
        period=(inv.period_start, inv.period_end) if inv.period_start and inv.period_end else None,
        currency=inv.currency_code,
        lines=tuple(d.Line(i.description, i.quantity, i.unit_amount, i.amount) for i in items), total=inv.total,
        payments=tuple(_payment(p, charges) for p in payments),
        refunds=tuple(d.Refund(r.created_at, number, _refunded_by(r), r.amount, r.status) for r, number in given_back),
        amount_paid=inv.amount_paid, amount_refunded=inv.amount_refunded, amount_due=amount_due(inv),
        void_reason=inv.void_reason,
    )
    return f"{inv.number}.pdf", doc


def _refunded_by(r: m.Refund) -> str:
    if r.method == PaymentMethod.WALLET or r.status == RefundStatus.FAILED:
        return "Wallet"
    return "Card"


def _settlement(note: m.CreditNote, given_back: list[m.Refund]) -> tuple[tuple[str, int], ...]:
    rows: dict[str, int] = {}
    if note.due_reduced:
        rows["Taken off the amount due"] = note.due_reduced
    for r in given_back:
        label = {("CARD", "SUCCEEDED"): "Refunded to card", ("CARD", "PENDING"): "Refund to card in progress"}.get(
            (r.method, r.status), "Credited to wallet")
        rows[label] = rows.get(label, 0) + r.amount
    return tuple(rows.items())


async def _credit_note(session: AsyncSession, note: m.CreditNote) -> tuple[str, d.CreditNoteDoc]:
    inv = await session.get(m.Invoice, note.invoice_id)
    assert inv is not None
    if note.kind == CreditNoteKind.REFUND:
        lines = [refunds.Line(f"Refund: {note.reason}", 1, note.total)]
    else:
        items = list((await session.scalars(select(m.InvoiceLineItem).where(m.InvoiceLineItem.invoice_id == inv.id)
                                            .order_by(m.InvoiceLineItem.id))).all())
        earlier = list((await session.scalars(select(m.CreditNote).where(
            m.CreditNote.invoice_id == inv.id, m.CreditNote.id < note.id).order_by(m.CreditNote.id))).all())
        lines = refunds.void_lines(items, earlier)
    given_back = list((await session.scalars(select(m.Refund).where(m.Refund.credit_note_id == note.id)
                                             .order_by(m.Refund.id))).all())
    doc = d.CreditNoteDoc(
        seller=SELLER, buyer=await _buyer(session, note.connection_id), number=note.number,
        invoice_number=inv.number, issued_at=note.created_at, reason=note.reason, currency=note.currency_code,
        lines=tuple(d.Line(li.description, li.quantity, li.unit_amount, li.quantity * li.unit_amount) for li in lines),
        total=note.total, settlement=_settlement(note, given_back),
    )
    return f"{note.number}.pdf", doc


async def _receipt(session: AsyncSession, payment: m.InvoicePayment) -> tuple[str, d.ReceiptDoc]:
    inv = await session.get(m.Invoice, payment.invoice_id)
    assert inv is not None
    paid_by_then = await session.scalar(select(func.sum(m.InvoicePayment.amount)).where(
        m.InvoicePayment.invoice_id == inv.id, m.InvoicePayment.id <= payment.id)) or 0
    charges = await card_payments.charges_of(session, [payment.id])
    shown = _payment(payment, charges)
    number = receipt_number(inv.number, payment.id)
    doc = d.ReceiptDoc(
        seller=SELLER, buyer=await _buyer(session, inv.connection_id), number=number, invoice_number=inv.number,
        paid_at=payment.created_at, method=shown.method, reference=shown.reference, currency=inv.currency_code,
        amount=payment.amount, invoice_total=inv.total, amount_due_after=max(inv.total - paid_by_then, 0),
    )
    return f"{number}.pdf", doc


async def _payout_statement(session: AsyncSession, payout: m.Payout) -> tuple[str, d.PayoutStatementDoc]:
    items = (await session.scalars(select(m.SubOrgTransaction).where(m.SubOrgTransaction.payout_id == payout.id)
                                   .order_by(m.SubOrgTransaction.occurred_at, m.SubOrgTransaction.id))).all()
    transfers = await session.execute(
        select(m.BankTransfer, m.BankAccount).join(m.BankAccount, m.BankAccount.id == m.BankTransfer.bank_account_id)
        .where(m.BankTransfer.payout_id == payout.id).order_by(m.BankTransfer.created_at, m.BankTransfer.id))
    number = statement_number(payout)
    doc = d.PayoutStatementDoc(
        seller=SELLER, buyer=await _buyer(session, payout.connection_id), number=number,
        period=(payout.period_start, payout.period_end), currency=payout.currency_code,
        items=tuple(d.PayoutItem(t.occurred_at, t.sub_org_name, t.external_id, t.gross_amount, t.fee_amount,
                                 t.partner_amount) for t in items),
        gross=payout.gross_amount, fees=payout.fee_amount, net=payout.amount, to_wallet=payout.wallet_amount,
        to_bank=tuple(d.PayoutTransfer(b.created_at, f"{a.bank_name} ...{a.account_last4}", b.amount, b.status,
                                       b.gateway_ref) for b, a in transfers),
        available=payout.available_amount, clawed_back=payout.clawed_back_amount,
    )
    return f"{number}.pdf", doc


KINDS: dict[str, Kind] = {
    "invoice": Kind(DocumentKind.INVOICE, m.Invoice, _invoice, d.render_invoice),
    "credit-note": Kind(DocumentKind.CREDIT_NOTE, m.CreditNote, _credit_note, d.render_credit_note),
    "receipt": Kind(DocumentKind.RECEIPT, m.InvoicePayment, _receipt, d.render_receipt),
    "payout-statement": Kind(DocumentKind.PAYOUT_STATEMENT, m.Payout, _payout_statement, d.render_payout_statement),
}


async def connection_of(session: AsyncSession, kind: Kind, row: Any) -> int:
    if kind.model is m.InvoicePayment:
        connection_id = await session.scalar(select(m.Invoice.connection_id).where(m.Invoice.id == row.invoice_id))
        assert connection_id is not None
        return connection_id
    return int(row.connection_id)


async def document(
    reads: async_sessionmaker[AsyncSession], writes: async_sessionmaker[AsyncSession], name: str, object_id: int,
    connection_id: int, now: datetime,
) -> File | None:
    """The PDF of the object, made now if this state of it has none yet; None when there is no
    such object of that connection (the caller answers that as it answers any refusal)."""
    kind = KINDS[name]
    async with reads() as session:
        row = await session.get(kind.model, object_id)
        if row is None or await connection_of(session, kind, row) != connection_id:
            return None
        filename, doc = await kind.read(session, row)
        revision = hashlib.sha256(repr(doc).encode()).hexdigest()
        kept = await _kept(session, kind, object_id, revision)
    if kept is None:
        content = await asyncio.to_thread(kind.render, doc)
        async with writes() as session, session.begin():
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            await session.execute(insert(m.Document).values(
                kind=kind.kind.value, object_id=object_id, connection_id=connection_id, revision=revision,
                content=content, sha256=hashlib.sha256(content).hexdigest(), created_at=now,
            ).on_conflict_do_nothing(index_elements=["kind", "object_id", "revision"]))
            kept = await _kept(session, kind, object_id, revision)
        assert kept is not None
    return File(filename, kept.content, kept.sha256, kept.created_at)


async def _kept(session: AsyncSession, kind: Kind, object_id: int, revision: str) -> m.Document | None:
    return await session.scalar(select(m.Document).where(
        m.Document.kind == kind.kind, m.Document.object_id == object_id, m.Document.revision == revision))
