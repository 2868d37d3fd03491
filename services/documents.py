"""PDF documents: invoices, credit notes, receipts and payout statements, drawn from plain data.

The caller reads the rows and fills the frozen dataclasses here; this module only draws them on
A4 with fpdf2 and returns the PDF's bytes (no database, nothing async). Amounts are integer
minor units, each printed by money.format, so every amount carries its currency code. Dates
print as ISO dates in UTC; a naive datetime is taken as UTC.

The same document gives the same bytes on every call and every day: the PDF's creation date is
the document's own (issued, paid, or the period's end), and fpdf2 makes the file's /ID from an
MD5 of the bytes written and that date (FPDF._default_file_id), so no wall clock gets in. The
author, creator and producer are "Revampd" (no fpdf2 version), the title the document's name
and number.

Text is in Helvetica, a PDF core font: nothing embedded and no font file to ship, but it shows
Windows-1252 only (Latin-1 and a few more, such as the euro sign and curly quotes). `_text`,
the one place text goes through, prints any other character as its unaccented letter where
Unicode has one ("ő" as "o") and as "?" otherwise: "Zoë Ülker 株式会社" prints "Zoë Ülker ????".
No small, maintained font wheel covers CJK too, so names in other scripts lose their letters,
never the document.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from fpdf import FPDF
from fpdf.fonts import CoreFont

from services import money

# -- the documents' data ----------------------------------------------------------------------


@dataclass(frozen=True)
class Party:
    name: str
    address: tuple[str, ...] = ()
    tax_id: str | None = None


@dataclass(frozen=True)
class Line:
    description: str
    quantity: int
    unit_amount: int
    amount: int


@dataclass(frozen=True)
class Payment:
    at: datetime
    method: str  # "Card", "Wallet", ...
    amount: int
    reference: str  # the processor's charge id, "Payment #12", ...


@dataclass(frozen=True)
class Refund:
    at: datetime
    credit_note: str
    method: str
    amount: int
    status: str


@dataclass(frozen=True)
class InvoiceDoc:
    seller: Party
    buyer: Party
    number: str
    status: str
    issued_at: datetime
    due_at: datetime | None
    period: tuple[datetime, datetime] | None
    currency: str
    lines: tuple[Line, ...]
    total: int
    payments: tuple[Payment, ...]
    refunds: tuple[Refund, ...]
    amount_paid: int
    amount_refunded: int
    amount_due: int
    void_reason: str | None = None


@dataclass(frozen=True)
class CreditNoteDoc:
    seller: Party
    buyer: Party
    number: str
    invoice_number: str
    issued_at: datetime
    reason: str
    currency: str
    lines: tuple[Line, ...]
    total: int
    # Where the credit went: ("Refunded to card", 1200), ("Taken off the amount due", 500), ...
    settlement: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class ReceiptDoc:
    seller: Party
    buyer: Party
    number: str
    invoice_number: str
    paid_at: datetime
    method: str
    reference: str
    currency: str
    amount: int
    invoice_total: int
    amount_due_after: int


@dataclass(frozen=True)
class PayoutItem:
    at: datetime
    sub_org: str
    reference: str
    gross: int
    fee: int
    net: int


@dataclass(frozen=True)
class PayoutTransfer:
    at: datetime
    bank: str
    amount: int
    status: str
    trace_id: str | None


@dataclass(frozen=True)
class PayoutStatementDoc:
    seller: Party
    buyer: Party
    number: str
    period: tuple[datetime, datetime]
    currency: str
    items: tuple[PayoutItem, ...]
    gross: int
    fees: int
    net: int
    to_wallet: int
    to_bank: tuple[PayoutTransfer, ...]
    available: int
    clawed_back: int = 0  # taken back for Sub-Org transactions refunded or charged back


# -- rendering --------------------------------------------------------------------------------


def render_invoice(doc: InvoiceDoc) -> bytes:
    pdf = _Pdf("Invoice", doc.number, doc.seller.name, doc.issued_at)
    meta = [("Issued", _date(doc.issued_at))]
    if doc.due_at is not None:
        meta.append(("Due", _date(doc.due_at)))
    if doc.period is not None:
        meta.append(("Period", _period(doc.period)))
    meta.append(("Status", _label(doc.status)))
    _head(pdf, doc.seller, "Bill to", doc.buyer, meta)
    if doc.void_reason is not None:
        _note(pdf, f"This invoice is void: {doc.void_reason}")
    _lines_table(pdf, doc.lines, doc.currency)
    totals = [("Total", doc.total, False), ("Amount paid", doc.amount_paid, False)]
    if doc.amount_refunded or doc.refunds:
        totals.append(("Amount refunded", doc.amount_refunded, False))
    _totals(pdf, [*totals, ("Amount due", doc.amount_due, True)], doc.currency)
    c = doc.currency
    if doc.payments:
        _section(pdf, "Payments")
        _table(
            pdf, _PAYMENT_COLS, [(_date(p.at), p.method, p.reference, money.format(p.amount, c)) for p in doc.payments]
        )
    if doc.refunds:
        _section(pdf, "Refunds")
        _table(
            pdf,
            _REFUND_COLS,
            [(_date(r.at), r.credit_note, r.method, _label(r.status), money.format(r.amount, c)) for r in doc.refunds],
        )
    return pdf.render()


def render_credit_note(doc: CreditNoteDoc) -> bytes:
    pdf = _Pdf("Credit note", doc.number, doc.seller.name, doc.issued_at)
    _head(pdf, doc.seller, "Bill to", doc.buyer, [("Issued", _date(doc.issued_at)), ("Invoice", doc.invoice_number)])
    _note(pdf, f"Reason: {doc.reason}")
    _lines_table(pdf, doc.lines, doc.currency)
    _totals(pdf, [("Total credited", doc.total, True)], doc.currency)
    if doc.settlement:
        _section(pdf, "Settlement")
        _table(pdf, _SETTLEMENT_COLS, [(label, money.format(amount, doc.currency)) for label, amount in doc.settlement])
    return pdf.render()


def render_receipt(doc: ReceiptDoc) -> bytes:
    pdf = _Pdf("Receipt", doc.number, doc.seller.name, doc.paid_at)
    meta = [("Paid on", _date(doc.paid_at)), ("Invoice", doc.invoice_number), ("Method", doc.method)]
    _head(pdf, doc.seller, "Bill to", doc.buyer, [*meta, ("Reference", doc.reference)])
    _banner(pdf, "Amount paid", money.format(doc.amount, doc.currency))
    _totals(
        pdf,
        [
            (f"Invoice {doc.invoice_number} total", doc.invoice_total, False),
            ("This payment", doc.amount, False),
            ("Amount due after this payment", doc.amount_due_after, True),
        ],
        doc.currency,
    )
    return pdf.render()


def render_payout_statement(doc: PayoutStatementDoc) -> bytes:
    pdf = _Pdf("Payout statement", doc.number, doc.seller.name, doc.period[1])
    _head(pdf, doc.seller, "Paid to", doc.buyer, [("Period", _period(doc.period)), ("Items", f"{len(doc.items):,}")])
    c = doc.currency
    _table(
        pdf,
        _PAYOUT_COLS,
        [
            (
                _date(i.at),
                i.sub_org,
                i.reference,
                money.format(i.gross, c),
                money.format(i.fee, c),
                money.format(i.net, c),
            )
            for i in doc.items
        ],
    )
    _totals(
        pdf,
        [
            ("Gross", doc.gross, False),
            ("Fees", doc.fees, False),
            ("Net payout", doc.net, True),
            ("Credited to wallet", doc.to_wallet, False),
            *([("Clawed back (refunds, chargebacks)", doc.clawed_back, False)] if doc.clawed_back else []),
            ("Still available", doc.available, False),
        ],
        c,
    )
    if doc.to_bank:
        _section(pdf, "Bank transfers")
        _table(
            pdf,
            _TRANSFER_COLS,
            [
                (_date(t.at), t.bank, t.trace_id or "-", _label(t.status), money.format(t.amount, c))
                for t in doc.to_bank
            ],
        )
    return pdf.render()


# -- text -------------------------------------------------------------------------------------


def _text(s: str) -> str:
    """`s` as Helvetica can show it (Windows-1252): another character as its unaccented letter
    where Unicode has one, else "?"; control characters and odd spaces as a space."""
    s = unicodedata.normalize("NFC", s)
    try:
        s.encode("cp1252")
        if s.isprintable():
            return s
    except UnicodeEncodeError:
        pass
    out = []
    for ch in s:
        if not ch.isprintable():
            ch = " "
        else:
            try:
                ch.encode("cp1252")
            except UnicodeEncodeError:
                base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
                shown = base.isprintable() and base.encode("cp1252", "replace").decode("cp1252") == base
                ch = base if base and shown else "?"
        out.append(ch)
    return "".join(out)


def _utc(at: datetime) -> datetime:
    """`at` in UTC; a naive datetime is taken as UTC already."""
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def _date(at: datetime) -> str:
    return _utc(at).date().isoformat()


def _period(period: tuple[datetime, datetime]) -> str:
    return f"{_date(period[0])} \u2013 {_date(period[1])}"


def _label(status: str) -> str:
    """A status in words: "IN_TRANSIT" -> "In transit"; one already in words stays as it is."""
    return status.replace("_", " ").capitalize() if status.isupper() else status


# -- layout -----------------------------------------------------------------------------------

_FONT = "Helvetica"
_MARGIN = 18.0
_WIDTH = 210.0 - 2 * _MARGIN
_BOTTOM = 20.0  # the footer sits in it
_SIZE, _SMALL = 9.0, 8.5  # pt: body text, tables
_LH = 4.2  # mm: one line of table text
_PAD = 1.3  # mm: above and below a row's text
_INK, _MUTED, _ACCENT = (33, 37, 41), (108, 117, 125), (23, 43, 77)
_RULE, _SHADE = (222, 226, 230), (241, 243, 246)


class _Pdf(FPDF):
    """An A4 page with Revampd's running header (after the first page) and footer."""

    def __init__(self, title: str, number: str, seller: str, dated: datetime) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.doc_title, self.doc_number, self.seller = title, _text(number), _text(seller)
        self.core_fonts_encoding = "cp1252"
        self.set_margins(_MARGIN, _MARGIN, _MARGIN)
        self.set_auto_page_break(True, _BOTTOM)
        self.set_creation_date(_utc(dated))
        self.set_title(f"{title} {self.doc_number}")
        self.set_author("Revampd")
        self.set_creator("Revampd")
        self.set_producer("Revampd")
        self.set_text_color(*_INK)
        self.set_draw_color(*_RULE)
        self.set_line_width(0.2)
        self.add_page()

    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_font(_FONT, "", 8)
        self.set_text_color(*_MUTED)
        self.cell(_WIDTH / 2, 5, self.wrap(self.seller, _WIDTH / 2)[0], align="L")
        self.cell(_WIDTH / 2, 5, f"{self.doc_title} {self.doc_number} (continued)", align="R")
        self.line(_MARGIN, self.y + 6.5, _MARGIN + _WIDTH, self.y + 6.5)
        self.set_y(self.y + 10)
        self.set_text_color(*_INK)

    def footer(self) -> None:
        self.set_y(-14)
        self.set_draw_color(*_RULE)
        self.line(_MARGIN, self.y, _MARGIN + _WIDTH, self.y)
        self.set_font(_FONT, "", 7.5)
        self.set_text_color(*_MUTED)
        self.set_y(self.y + 1.5)
        # The page count last on its line: fpdf2 writes it in after laying the line out, in the
        # space of three digits, so text after it or a right alignment would be out of place.
        self.cell(_WIDTH * 0.6, 5, f"{self.doc_title} {self.doc_number} \u00b7 Page {self.page_no()} of {{nb}}")
        self.cell(_WIDTH * 0.4, 5, self.wrap(self.seller, _WIDTH * 0.4)[0], align="R")
        self.set_text_color(*_INK)

    def render(self) -> bytes:
        return bytes(self.output())

    def room(self, height: float) -> bool:
        """Whether `height` more millimetres fit on this page, above the footer."""
        return self.y + height <= self.page_break_trigger

    def width(self, s: str) -> float:
        """The width of `s` (already `_text`) in the current font: get_string_width's sum
        without its text shaping, which would take most of a long table's time."""
        assert isinstance(self.current_font, CoreFont)
        cw = self.current_font.cw
        return sum(cw[c] for c in s.encode("cp1252").decode("latin-1")) * self.font_size / 1000

    def put(self, x: float, y: float, w: float, s: str, align: str = "L") -> None:
        """`s` (already `_text`) on one line of the box at x..x+w whose top is y."""
        if align == "R":
            x += w - self.c_margin - self.width(s)
        else:
            x += self.c_margin
        self.text(x, y + 0.72 * self.font_size + (_LH - self.font_size) / 2, s)

    def wrap(self, s: str, w: float) -> list[str]:
        """`s` (already `_text`) in lines of at most `w` mm (less the cell margins), broken
        at spaces, and inside a word only when the word alone is wider."""
        room = w - 2 * self.c_margin
        if self.width(s) <= room:
            return [s]
        lines: list[str] = []
        line = ""
        for word in s.split():
            candidate = f"{line} {word}" if line else word
            if self.width(candidate) <= room:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for ch in word:
                if line and self.width(line + ch) > room:
                    lines.append(line)
                    line = ""
                line += ch
        return [*lines, line] if line or not lines else lines


def _party(pdf: _Pdf, x: float, y: float, w: float, party: Party, size: float) -> float:
    """The party's name, address and tax ID from (x, y) down; the y below them."""
    pdf.set_font(_FONT, "B", size)
    pdf.set_text_color(*_INK)
    for line in pdf.wrap(_text(party.name), w):
        pdf.set_xy(x, y)
        pdf.cell(w, size * 0.5, line)
        y += size * 0.5
    pdf.set_font(_FONT, "", _SIZE)
    pdf.set_text_color(*_MUTED)
    extra = [*party.address, *([f"Tax ID: {party.tax_id}"] if party.tax_id else [])]
    for line in (piece for text in extra for piece in pdf.wrap(_text(text), w)):
        pdf.set_xy(x, y)
        pdf.cell(w, 4.3, line)
        y += 4.3
    pdf.set_text_color(*_INK)
    return y


def _head(pdf: _Pdf, seller: Party, buyer_label: str, buyer: Party, meta: Sequence[tuple[str, str]]) -> None:
    """Seller (left) and the title and number (right); then the buyer (left) and `meta` (right)."""
    label_w, value_w = 24.0, 58.0
    top, half = pdf.y, _WIDTH - label_w - value_w - 8
    left_end = _party(pdf, _MARGIN, top, half, seller, 12)
    pdf.set_font(_FONT, "B", 22)
    pdf.set_text_color(*_ACCENT)
    right = _MARGIN + _WIDTH - 70
    pdf.set_xy(right, top - 1)
    pdf.cell(70, 9, pdf.doc_title, align="R")
    pdf.set_font(_FONT, "", 10)
    pdf.set_text_color(*_MUTED)
    pdf.set_xy(right, top + 9)
    pdf.cell(70, 5, f"No. {pdf.doc_number}", align="R")
    pdf.set_text_color(*_INK)
    top = max(left_end, top + 16) + 9
    pdf.set_font(_FONT, "B", 7.5)
    pdf.set_text_color(*_MUTED)
    pdf.set_xy(_MARGIN, top)
    pdf.cell(half, 4, buyer_label.upper())
    left_end = _party(pdf, _MARGIN, top + 5, half, buyer, 10)
    y = top
    x = _MARGIN + _WIDTH - label_w - value_w
    for label, value in meta:
        pdf.set_font(_FONT, "", _SIZE)
        pdf.set_text_color(*_MUTED)
        pdf.put(x, y, label_w, label)
        pdf.set_text_color(*_INK)
        pdf.set_font(_FONT, "B" if label == "Status" else "", _SIZE)
        for line in pdf.wrap(_text(value), value_w):
            pdf.put(x + label_w, y, value_w, line, "R")
            y += 4.6
    pdf.set_y(max(left_end, y) + 8)


def _note(pdf: _Pdf, text: str) -> None:
    """A paragraph across the page, before the table."""
    pdf.set_font(_FONT, "", _SIZE)
    for line in pdf.wrap(_text(text), _WIDTH):
        if not pdf.room(_LH):
            pdf.add_page()
        pdf.put(_MARGIN, pdf.y, _WIDTH, line)
        pdf.set_y(pdf.y + 4.6)
    pdf.set_y(pdf.y + 4)


def _banner(pdf: _Pdf, label: str, amount: str) -> None:
    """A shaded band with one amount in large type."""
    y = pdf.y
    pdf.set_fill_color(*_SHADE)
    pdf.rect(_MARGIN, y, _WIDTH, 18, style="F")
    pdf.set_font(_FONT, "", 10)
    pdf.set_text_color(*_MUTED)
    pdf.set_xy(_MARGIN + 2, y + 3)
    pdf.cell(80, 5, label)
    pdf.set_font(_FONT, "B", 18)
    pdf.set_text_color(*_ACCENT)
    pdf.set_xy(_MARGIN + 2, y + 8.5)
    pdf.cell(120, 8, amount)
    pdf.set_text_color(*_INK)
    pdf.set_y(y + 24)


def _section(pdf: _Pdf, title: str) -> None:
    """A table's heading, on the page its first rows fit on."""
    pdf.set_y(pdf.y + 6)
    if not pdf.room(6 + 2 * (_LH + 2 * _PAD)):
        pdf.add_page()
    pdf.set_font(_FONT, "B", 10)
    pdf.set_xy(_MARGIN, pdf.y)
    pdf.cell(_WIDTH, 5, title)
    pdf.set_y(pdf.y + 6.5)


@dataclass(frozen=True)
class _Col:
    title: str
    align: str = "L"
    wrap: bool = False  # shares the width the other columns leave, and wraps in it
    grow: bool = False  # takes the width the table has to spare (one wrapping column a table)


_LINE_COLS = (_Col("Description", wrap=True, grow=True), _Col("Qty", "R"), _Col("Unit price", "R"), _Col("Amount", "R"))
_PAYMENT_COLS = (_Col("Date"), _Col("Method", wrap=True), _Col("Reference", wrap=True, grow=True), _Col("Amount", "R"))
_REFUND_COLS = (
    _Col("Date"),
    _Col("Credit note", wrap=True, grow=True),
    _Col("Method", wrap=True),
    _Col("Status", wrap=True),
    _Col("Amount", "R"),
)
_SETTLEMENT_COLS = (_Col("Settled by", wrap=True, grow=True), _Col("Amount", "R"))
_PAYOUT_COLS = (
    _Col("Date"),
    _Col("Sub-organization", wrap=True, grow=True),
    _Col("Reference", wrap=True),
    _Col("Gross", "R"),
    _Col("Fee", "R"),
    _Col("Net", "R"),
)
_TRANSFER_COLS = (
    _Col("Date"),
    _Col("Bank account", wrap=True, grow=True),
    _Col("Trace ID", wrap=True),
    _Col("Status", wrap=True),
    _Col("Amount", "R"),
)


def _lines_table(pdf: _Pdf, lines: Sequence[Line], currency: str) -> None:
    _table(
        pdf,
        _LINE_COLS,
        [
            (
                li.description,
                f"{li.quantity:,}",
                money.format(li.unit_amount, currency),
                money.format(li.amount, currency),
            )
            for li in lines
        ],
    )


def _widths(pdf: _Pdf, cols: Sequence[_Col], rows: Sequence[Sequence[str]]) -> list[float]:
    """Each column as wide as its widest cell, and the width left to the `grow` column; when
    the cells do not all fit, the wrapping columns share what the others leave, in proportion
    to their widest cells."""
    pdf.set_font(_FONT, "B", _SMALL)
    widths = [pdf.width(c.title) for c in cols]
    pdf.set_font(_FONT, "", _SMALL)
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], pdf.width(cell))
    widths = [w + 2 * pdf.c_margin + 3 for w in widths]
    wrapping = [i for i, c in enumerate(cols) if c.wrap]
    left = max(_WIDTH - sum(w for i, w in enumerate(widths) if i not in wrapping), 15.0 * len(wrapping))
    wanted = sum(widths[i] for i in wrapping)
    if wanted > left:
        for i in wrapping:
            widths[i] = left * widths[i] / wanted
    else:
        widths[next(i for i, c in enumerate(cols) if c.grow)] += left - wanted
    return widths


def _table(pdf: _Pdf, cols: Sequence[_Col], rows: Sequence[Sequence[str]]) -> None:
    """A table across the page; on a page break its header row is drawn again."""
    rows = [[_text(cell) for cell in row] for row in rows]
    widths = _widths(pdf, cols, rows)
    header_h = _LH + 2 * _PAD

    def header() -> None:
        pdf.set_font(_FONT, "B", _SMALL)
        pdf.set_fill_color(*_SHADE)
        pdf.rect(_MARGIN, pdf.y, _WIDTH, header_h, style="F")
        x = _MARGIN
        for col, w in zip(cols, widths, strict=True):
            pdf.put(x, pdf.y + _PAD, w, col.title, col.align)
            x += w
        pdf.set_y(pdf.y + header_h)
        pdf.set_font(_FONT, "", _SMALL)

    if not pdf.room(header_h + _LH + 2 * _PAD):
        pdf.add_page()
    header()
    for row in rows:
        cells = [pdf.wrap(cell, w) if col.wrap else [cell] for cell, col, w in zip(row, cols, widths, strict=True)]
        height = max(len(lines) for lines in cells) * _LH + 2 * _PAD
        if not pdf.room(height):
            pdf.add_page()
            header()
        y, x = pdf.y, _MARGIN
        for lines, col, w in zip(cells, cols, widths, strict=True):
            for k, line in enumerate(lines):
                pdf.put(x, y + _PAD + k * _LH, w, line, col.align)
            x += w
        pdf.line(_MARGIN, y + height, _MARGIN + _WIDTH, y + height)
        pdf.set_y(y + height)


def _totals(pdf: _Pdf, rows: Sequence[tuple[str, int, bool]], currency: str) -> None:
    """Label and amount rows at the right, kept together on one page; bold rows ruled above."""
    texts = [(_text(label), money.format(amount, currency), bold) for label, amount, bold in rows]
    pdf.set_font(_FONT, "B", _SIZE)
    amount_w = max(pdf.width(amount) for _, amount, _ in texts) + 2 * pdf.c_margin + 2
    label_w = max(pdf.width(label) for label, _, _ in texts) + 2 * pdf.c_margin + 6
    label_w = min(max(label_w, 40.0), _WIDTH - amount_w)
    pdf.set_y(pdf.y + 4)
    if not pdf.room(len(texts) * 6.2 + 2):
        pdf.add_page()
    x = _MARGIN + _WIDTH - amount_w - label_w
    for label, amount, bold in texts:
        y = pdf.y
        if bold:
            pdf.set_draw_color(*_INK)
            pdf.line(x + pdf.c_margin, y + 0.5, _MARGIN + _WIDTH, y + 0.5)
            pdf.set_draw_color(*_RULE)
            y += 1.2
        pdf.set_font(_FONT, "B" if bold else "", _SIZE + (1 if bold else 0))
        pdf.put(x, y + 0.8, label_w, label)
        pdf.put(x + label_w, y + 0.8, amount_w, amount, "R")
        pdf.set_y(y + 6.2)
