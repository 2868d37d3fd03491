"""The PDF documents (services/documents.py), read back as text with pypdf: every amount as
money.format prints it, the same bytes on every call and every day, any name, and a payout
statement of thousands of items over many pages.

    UPDATE_DOCS_IMAGES=1 pytest tests/test_documents.py   # redraws docs/images/invoice.png

(redrawing needs pypdfium2, which is no dependency: `pip install pypdfium2` first)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import time_machine
from pypdf import PdfReader

from services import money
from services.documents import (
    CreditNoteDoc,
    InvoiceDoc,
    Line,
    Party,
    Payment,
    PayoutItem,
    PayoutStatementDoc,
    PayoutTransfer,
    ReceiptDoc,
    Refund,
    render_credit_note,
    render_invoice,
    render_payout_statement,
    render_receipt,
)

ROOT = Path(__file__).resolve().parent.parent
PICTURE = ROOT / "docs" / "images" / "invoice.png"
AT = datetime(2025, 3, 5, 9, 30, tzinfo=timezone.utc)
SELLER = Party(
    "Revampd Inc.", ("100 Market Street, Suite 300", "San Francisco, CA 94105", "United States"), "US 12-3456789"
)
BUYER = Party("Northwind Studio GmbH", ("Marienplatz 1", "80331 München", "Germany"), "DE 123456789")


def sample_invoice(currency: str = "USD") -> InvoiceDoc:
    """An invoice with a wrapped line, two payments and a refund; no two amounts alike."""
    lines = (
        Line("Revampd Growth plan, monthly (March 2025)", 1, 49_900, 49_900),
        Line(
            "Additional seats for the partner dashboard, billed per seat for the whole period, "
            "including seats added during the month, prorated from the day they were added",
            12,
            1_525,
            18_300,
        ),
        Line("SMS reminders add-on", 3, 2_999, 8_997),
    )
    return InvoiceDoc(
        seller=SELLER,
        buyer=BUYER,
        number="INV-2025-000123",
        status="OPEN",
        issued_at=AT,
        due_at=AT + timedelta(days=14),
        period=(datetime(2025, 3, 1, tzinfo=timezone.utc), datetime(2025, 3, 31, tzinfo=timezone.utc)),
        currency=currency,
        lines=lines,
        total=77_197,
        payments=(
            Payment(AT + timedelta(days=2), "Card", 50_000, "ch_3QxYzAbCdEfGhIjK0a1b2c3d"),
            Payment(AT + timedelta(days=3), "Wallet", 10_000, "Payment #12"),
        ),
        refunds=(Refund(AT + timedelta(days=4), "CN-2025-000007", "Card", 1_200, "SUCCEEDED"),),
        amount_paid=60_000,
        amount_refunded=1_200,
        amount_due=18_397,
    )


def payout(items: int) -> PayoutStatementDoc:
    end = datetime(2025, 3, 31, 23, 59, tzinfo=timezone.utc)
    rows = tuple(
        PayoutItem(
            end - timedelta(minutes=7 * i),
            f"Studio {i % 37}",
            f"ch_{i:08d}",
            10_000 + i,
            290 + i % 7,
            9_710 + i - i % 7,
        )
        for i in range(items)
    )
    gross, fees, net = (sum(getattr(r, f) for r in rows) for f in ("gross", "fee", "net"))
    return PayoutStatementDoc(
        seller=SELLER,
        buyer=BUYER,
        number="PS-2025-0003",
        period=(datetime(2025, 3, 1, tzinfo=timezone.utc), end),
        currency="USD",
        items=rows,
        gross=gross,
        fees=fees,
        net=net,
        to_wallet=100_001,
        to_bank=(PayoutTransfer(end, "Chase checking 4242", net - 100_001 - 12_345, "PAID", "TRC-77123"),),
        available=12_345,
    )


def pages(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def text(pdf: bytes) -> str:
    return "\n".join(pages(pdf))


def test_an_invoice_prints_every_number_as_money_formats_it() -> None:
    doc = sample_invoice()
    shown = text(render_invoice(doc))
    f = money.format
    wanted = [
        doc.number,
        "BILL TO",
        "Issued 2025-03-05",
        "Due 2025-03-19",
        "Period 2025-03-01 \u2013 2025-03-31",
        "Status Open",
    ]
    wanted += [f"Tax ID: {SELLER.tax_id}", f"Tax ID: {BUYER.tax_id}", *BUYER.address]
    for li in doc.lines:
        wanted.append(f"{li.quantity} {f(li.unit_amount, 'USD')} {f(li.amount, 'USD')}")
    wanted += [f"{p.method} {p.reference} {f(p.amount, 'USD')}" for p in doc.payments]
    wanted += [f"{r.credit_note} Card Succeeded {f(r.amount, 'USD')}" for r in doc.refunds]
    wanted += [f"Total {f(doc.total, 'USD')}", f"Amount paid {f(doc.amount_paid, 'USD')}"]
    wanted += [f"Amount refunded {f(doc.amount_refunded, 'USD')}", f"Amount due {f(doc.amount_due, 'USD')}"]
    assert [w for w in wanted if w not in shown] == []
    assert str(doc.total) not in shown  # never the minor units themselves
    assert "Page 1 of 1" in shown


def test_an_invoice_leaves_out_what_it_does_not_have() -> None:
    """No tax ID line for a party without one, no payments or refunds table when there are
    none, no due date or period; the amount due is there all the same, and a void reason."""
    doc = replace(
        sample_invoice(),
        buyer=Party("Cedar Dental"),
        due_at=None,
        period=None,
        payments=(),
        refunds=(),
        amount_paid=0,
        amount_refunded=0,
        amount_due=0,
        status="VOID",
        void_reason="Issued to the wrong clinic",
    )
    shown = text(render_invoice(doc))
    assert shown.count("Tax ID:") == 1
    assert "Payments" not in shown and "Refunds" not in shown and "Amount refunded" not in shown
    assert "Due" not in shown and "Period" not in shown
    assert "Amount due 0.00 USD" in shown
    assert "void: Issued to the wrong clinic" in shown


def test_a_credit_note_prints_its_lines_total_and_settlement() -> None:
    settlement = (("Refunded to card", 1_200), ("Credited to wallet", 300), ("Taken off the amount due", 500))
    doc = CreditNoteDoc(
        SELLER,
        BUYER,
        "CN-2025-000007",
        "INV-2025-000123",
        AT,
        "Seats billed twice in the first week",
        "EUR",
        (Line("Additional seats, credited", 2, 1_000, 2_000),),
        2_000,
        settlement,
    )
    shown = text(render_credit_note(doc))
    wanted = ["Credit note", doc.number, f"Invoice {doc.invoice_number}", doc.reason, "Issued 2025-03-05"]
    wanted += [
        f"2 {money.format(1_000, 'EUR')} {money.format(2_000, 'EUR')}",
        f"Total credited {money.format(2_000, 'EUR')}",
    ]
    wanted += [f"{label} {money.format(amount, 'EUR')}" for label, amount in settlement]
    assert [w for w in wanted if w not in shown] == []


def test_a_receipt_prints_the_payment_and_what_is_left() -> None:
    doc = ReceiptDoc(
        SELLER,
        BUYER,
        "RCT-2025-000045",
        "INV-2025-000123",
        AT,
        "Card",
        "ch_3QxYzAbCdEfGhIjK0a1b2c3d",
        "USD",
        50_125,
        77_197,
        27_072,
    )
    shown = text(render_receipt(doc))
    wanted = ["Receipt", doc.number, doc.invoice_number, doc.reference, "Card", "2025-03-05"]
    wanted += [money.format(a, "USD") for a in (doc.amount, doc.invoice_total, doc.amount_due_after)]
    assert [w for w in wanted if w not in shown] == []


def test_a_payout_statement_prints_items_totals_and_transfers() -> None:
    doc = payout(5)
    shown = text(render_payout_statement(doc))
    wanted = ["Payout statement", doc.number, "2025-03-01", "2025-03-31", "TRC-77123", "Paid"]
    for item in doc.items:
        wanted += [item.reference, *(money.format(a, "USD") for a in (item.gross, item.fee, item.net))]
    wanted += [
        money.format(a, "USD")
        for a in (doc.gross, doc.fees, doc.net, doc.to_wallet, doc.available, doc.to_bank[0].amount)
    ]
    assert [w for w in wanted if w not in shown] == []


@pytest.mark.parametrize(
    ("currency", "minor", "printed", "not_printed"),
    [("KWD", 1_234_567, "1,234.567 KWD", "12,345.67 KWD"), ("JPY", 1_234_567, "1,234,567 JPY", "12,345.67 JPY")],
)
def test_amounts_have_their_currencys_decimals(currency: str, minor: int, printed: str, not_printed: str) -> None:
    doc = replace(
        sample_invoice(currency), lines=(Line("Annual plan", 1, minor, minor),), total=minor, amount_due=minor
    )
    shown = text(render_invoice(doc))
    assert printed == money.format(minor, currency) and printed in shown
    assert not_printed not in shown
    assert money.format(doc.amount_paid, currency) in shown


def test_the_same_document_gives_the_same_bytes_every_call_and_every_day() -> None:
    first = render_invoice(sample_invoice())
    assert render_invoice(sample_invoice()) == first
    with time_machine.travel(datetime(2031, 7, 9, 3, 4, 5, tzinfo=timezone.utc)):
        assert render_invoice(sample_invoice()) == first
    # Another process: another hash seed, the machine's own clock.
    script = "import sys; from tests.test_documents import render_invoice as r, sample_invoice as s; sys.stdout.buffer.write(r(s()))"
    other = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, check=True).stdout
    assert other == first
    info = PdfReader(io.BytesIO(first))
    assert info.metadata is not None and info.metadata.creation_date == AT
    assert (info.metadata.author, info.metadata.producer) == ("Revampd", "Revampd")
    # The /ID is the document's: another number gives another one.
    other_id = PdfReader(io.BytesIO(render_invoice(replace(sample_invoice(), number="INV-2025-000124")))).trailer["/ID"]
    assert info.trailer["/ID"] != other_id


def test_names_in_any_script_print_what_the_font_can_show() -> None:
    buyer = Party("Zoë Ülker 株式会社", ("Łódź, ul. Piotrkowska 1",), "PL 😀 123")
    invoice = replace(sample_invoice(), buyer=buyer, lines=(Line("Консультация 相談", 1, 100, 100),))
    shown = text(render_invoice(invoice))
    assert "Zoë Ülker ????" in shown and "?ódz" in shown and "Tax ID: PL ? 123" in shown
    receipt = ReceiptDoc(SELLER, buyer, "RCT-1", "INV-1", AT, "Картой", "支払い", "USD", 100, 100, 0)
    assert "Zoë Ülker" in text(render_receipt(receipt))
    assert "Zoë Ülker" in text(render_payout_statement(replace(payout(3), buyer=buyer)))


def test_a_long_payout_statement_runs_over_pages_with_the_header_on_each() -> None:
    doc = payout(2_000)
    shown = pages(render_payout_statement(doc))
    assert len(shown) >= 10
    for n, page in enumerate(shown, 1):
        assert f"Page {n} of {len(shown)}" in page
    for page in shown[1:-1]:
        assert "Sub-organization" in page and page.index("Sub-organization") < page.index("ch_"), page[:300]
        assert "(continued)" in page
    assert "Sub-organization" in shown[-1]
    # No row lost or drawn twice at a break.
    assert sum(page.count("ch_") for page in shown) == 2_000
    totals = [money.format(a, "USD") for a in (doc.gross, doc.fees, doc.net, doc.to_wallet, doc.available)]
    assert [t for t in totals if t not in shown[-1]] == []
    assert [t for t in totals if t in shown[0]] == []


def test_sample_invoice_picture() -> None:
    """docs/images/invoice.png is page 1 of the sample invoice; UPDATE_DOCS_IMAGES=1 redraws it."""
    if os.environ.get("UPDATE_DOCS_IMAGES") == "1":
        pdfium = pytest.importorskip(
            "pypdfium2", reason="redrawing the picture needs pypdfium2 (pip install pypdfium2)"
        )
        page = pdfium.PdfDocument(render_invoice(sample_invoice()))[0]
        PICTURE.parent.mkdir(parents=True, exist_ok=True)
        page.render(scale=150 / 72).to_pil().save(PICTURE, optimize=True)
    head = PICTURE.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(head[16:20], "big") > 1000  # wide enough to read
