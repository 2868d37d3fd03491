"""A connection's billing history as CSV, for any period, streamed as it is read.

Four exports: invoices, credit notes, the wallet statement (every entry with the balance after
it) and payouts (each payout, then each of its bank transfers). However long the history, the
rows are read a page at a time by keyset (`PAGE` rows, each page on a short read session of its
own that gives its connection back before the page is sent), so memory stays flat and no pooled
connection waits on a slow download. Amounts are decimal strings in the row's currency
(services.money), times ISO 8601 in UTC: what a spreadsheet reads without guessing.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from sqlalchemy import ColumnElement, and_, case, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import models as m
from db.states import AccountKind, PaymentMethod, RefundStatus
from services import money
from services.invoices import amount_due

PAGE = 1000


def _amount(minor: int | None, currency: str) -> str:
    return "" if minor is None else str(money.to_decimal(minor, currency))


def _time(at: datetime | None) -> str:
    return "" if at is None else at.isoformat()


def _between(column: Any, start: datetime | None, end: datetime | None) -> ColumnElement[bool]:
    return and_(true(), *([column >= start] if start else []), *([column < end] if end else []))


# A page: (session, connection, start, end, after: the last key of the page before or None)
#   -> (rows, the last key of this page)
Reader = Callable[[AsyncSession, int, datetime | None, datetime | None, Any], Awaitable[tuple[list[list[str]], Any]]]


@dataclass(frozen=True)
class Export:
    header: tuple[str, ...]
    page: Reader


async def _invoices(
    session: AsyncSession, connection_id: int, start: datetime | None, end: datetime | None, after: Any
) -> tuple[list[list[str]], Any]:
    Inv = m.Invoice
    found = (await session.scalars(
        select(Inv).where(Inv.connection_id == connection_id, _between(Inv.issued_at, start, end),
                          *([Inv.id > after] if after else [])).order_by(Inv.id).limit(PAGE))).all()
    return [[
        i.number, i.type, i.status, _time(i.issued_at), _time(i.due_at), _time(i.paid_at), i.currency_code,
        _amount(i.total, i.currency_code), _amount(i.amount_paid, i.currency_code),
        _amount(i.amount_refunded, i.currency_code), _amount(amount_due(i), i.currency_code), i.payment_method or "",
    ] for i in found], found[-1].id if found else None


async def _credit_notes(
    session: AsyncSession, connection_id: int, start: datetime | None, end: datetime | None, after: Any
) -> tuple[list[list[str]], Any]:
    C, R = m.CreditNote, m.Refund
    to_card = func.sum(case((and_(R.method == PaymentMethod.CARD, R.status != RefundStatus.FAILED), R.amount), else_=0))
    to_wallet = func.sum(case((and_(R.method == PaymentMethod.CARD, R.status != RefundStatus.FAILED), 0), else_=R.amount))
    settled = select(R.credit_note_id, to_card.label("card"), to_wallet.label("wallet")).group_by(R.credit_note_id).subquery()
    found = (await session.execute(
        select(C, m.Invoice.number, settled.c.card, settled.c.wallet)
        .join(m.Invoice, m.Invoice.id == C.invoice_id).outerjoin(settled, settled.c.credit_note_id == C.id)
        .where(C.connection_id == connection_id, _between(C.created_at, start, end), *([C.id > after] if after else []))
        .order_by(C.id).limit(PAGE))).all()
    return [[
        c.number, number, c.kind, _time(c.created_at), c.currency_code, _amount(c.total, c.currency_code),
        _amount(c.due_reduced, c.currency_code), _amount(card or 0, c.currency_code),
        _amount(wallet or 0, c.currency_code), c.reason,
    ] for c, number, card, wallet in found], found[-1][0].id if found else None


async def _wallet(
    session: AsyncSession, connection_id: int, start: datetime | None, end: datetime | None, after: Any
) -> tuple[list[list[str]], Any]:
    E, T, A = m.LedgerEntry, m.LedgerTransfer, m.LedgerAccount
    wallet = await session.scalar(select(A.id).where(A.connection_id == connection_id, A.kind == AccountKind.WALLET))
    if wallet is None:
        return [], None
    found = (await session.execute(
        select(E.sequence, E.created_at, T.kind, T.memo, E.amount, E.balance_after, A.currency_code, m.Invoice.number,
               T.payout_id)
        .join(T, T.id == E.transfer_id).join(A, A.id == E.account_id).outerjoin(m.Invoice, m.Invoice.id == T.invoice_id)
        .where(E.account_id == wallet, _between(E.created_at, start, end), *([E.sequence > after] if after else []))
        .order_by(E.sequence).limit(PAGE))).all()
    return [[
        str(seq), _time(at), kind, memo, _amount(amount, cur), _amount(after_, cur), cur, number or "",
        str(payout_id) if payout_id else "",
    ] for seq, at, kind, memo, amount, after_, cur, number, payout_id in found], found[-1][0] if found else None


async def _payouts(
    session: AsyncSession, connection_id: int, start: datetime | None, end: datetime | None, after: Any
) -> tuple[list[list[str]], Any]:
    P, B = m.Payout, m.BankTransfer
    found = (await session.scalars(
        select(P).where(P.connection_id == connection_id, _between(P.period_end, start, end),
                        *([P.id > after] if after else [])).order_by(P.id).limit(PAGE))).all()
    transfers: dict[int, list[tuple[m.BankTransfer, m.BankAccount]]] = {}
    for b, account in await session.execute(
        select(B, m.BankAccount).join(m.BankAccount, m.BankAccount.id == B.bank_account_id)
        .where(B.payout_id.in_([p.id for p in found])).order_by(B.created_at, B.id)
    ):
        transfers.setdefault(b.payout_id, []).append((b, account))
    rows: list[list[str]] = []
    for p in found:
        cur = p.currency_code
        rows.append([
            "payout", str(p.id), _time(p.period_start), _time(p.period_end), p.status, cur,
            _amount(p.gross_amount, cur), _amount(p.fee_amount, cur), _amount(p.amount, cur),
            _amount(p.wallet_amount, cur), _amount(p.bank_paid_amount, cur), _amount(p.clawed_back_amount, cur),
            _amount(p.available_amount, cur), "", "", "", "",
        ])
        rows += [[
            "bank transfer", str(p.id), "", "", b.status, cur, "", "", _amount(b.amount, cur), "", "", "", "",
            f"{a.bank_name} ...{a.account_last4}", _time(b.created_at), _time(b.paid_at), b.gateway_ref or "",
        ] for b, a in transfers.get(p.id, [])]
    return rows, found[-1].id if found else None


KINDS: dict[str, Export] = {
    "invoices": Export(("number", "type", "status", "issued_at", "due_at", "paid_at", "currency", "total",
                        "amount_paid", "amount_refunded", "amount_due", "payment_method"), _invoices),
    "credit-notes": Export(("number", "invoice", "kind", "issued_at", "currency", "total", "amount_off_due",
                            "refunded_to_card", "credited_to_wallet", "reason"), _credit_notes),
    "wallet-statement": Export(("entry", "at", "kind", "memo", "amount", "balance_after", "currency", "invoice",
                                "payout"), _wallet),
    "payouts": Export(("record", "payout", "period_start", "period_end", "status", "currency", "gross", "fees", "amount",
                       "to_wallet", "paid_to_bank", "clawed_back", "available", "bank_account", "sent_at", "paid_at",
                       "trace_id"), _payouts),
}


def _csv(rows: Sequence[Sequence[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


async def csv_stream(
    reads: async_sessionmaker[AsyncSession], kind: str, connection_id: int, start: datetime | None,
    end: datetime | None,
) -> AsyncIterator[bytes]:
    """The export's CSV, a page at a time: the header, then each page as it is read."""
    export = KINDS[kind]
    yield _csv([export.header])
    after: Any = None
    while True:
        async with reads() as session:
            rows, after = await export.page(session, connection_id, start, end, after)
        if after is None:  # the page before was the last
            return
        yield _csv(rows)
