"""The ledger under random sequences of post() calls (pgledger's property test, in Python).

A hypothesis state machine posts credits and debits between the wallets of two
connections and Revampd's accounts, issues and pays invoices, posts sets of two
transfers together, replays keys, reuses keys for other transfers, tries to move
money between connections, and reserves money with pending transfers that it later
posts or voids. A plain Python model says what each attempt must do (move, move
nothing, or be refused with which code) and what every account must then hold.
After every step the database must agree with the model and `ledger.verify()` must
find nothing wrong.

Each example runs on its own copy of a freshly migrated SQLite database.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db import models as m
from db.engine import create_engine, write_sessions
from db.migrate import upgrade
from services import ledger
from services.errors import DomainError
from services.ledger import Transfer

T = TypeVar("T")
NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
CURRENCY = "USD"
CONNECTIONS = 2
# Revampd's accounts that fund or receive a wallet's money, with the kind of transfer.
FUNDING = {"ADJUSTMENTS": "MANUAL_ADJUSTMENT", "REVENUE_SHARE": "REVENUE_SHARE", "SUB_ORG_EARNINGS": "PAYOUT_CREDIT"}
SYSTEM = (*FUNDING, "BANK_OUT", "REVAMPD_REVENUE")
START = 100_000  # each wallet's credit at the start
_examples = itertools.count(1)  # names each example's copy of the template

amounts = st.integers(min_value=1, max_value=50_000)
connections = st.integers(min_value=0, max_value=CONNECTIONS - 1)
funding = st.sampled_from(sorted(FUNDING))


async def _seed(url: str) -> None:
    """Two Partners with a connection each, whose wallets start with some credit, and
    Revampd's accounts."""
    engine = create_engine(url)
    try:
        async with write_sessions(engine)() as session, session.begin():
            system = {kind: await ledger.system_account(session, kind, CURRENCY, NOW) for kind in SYSTEM}
            for n in range(CONNECTIONS):
                partner = m.Partner(name=f"Partner {n}", created_at=NOW)
                session.add(partner)
                await session.flush()
                connection = m.Connection(partner_id=partner.id, currency_code=CURRENCY, created_at=NOW)
                session.add(connection)
                await session.flush()
                wallet = await ledger.wallet_account(session, connection, NOW)
                await ledger.post(session, [Transfer(
                    f"start:{n}", "MANUAL_ADJUSTMENT", system["ADJUSTMENTS"].id, wallet.id, START,
                )], now=NOW)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ledger") / "template.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    asyncio.run(_seed(url))
    return path


def _sig(t: Transfer) -> tuple[Any, ...]:
    """What makes two transfers the same one (the memo does not)."""
    return (t.kind, t.phase, t.debit, t.credit, t.amount, t.resolves)


@dataclass
class Model:
    """What the ledger should hold: balances and reservations per account, transfers by key."""

    balance: dict[int, int] = field(default_factory=dict)
    pending: dict[int, int] = field(default_factory=dict)
    partner: set[int] = field(default_factory=set)  # may never go below zero
    owner: dict[int, int | None] = field(default_factory=dict)  # connection of the account
    transfers: dict[str, Transfer] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    pendings: dict[int, Transfer] = field(default_factory=dict)  # PENDING transfers by id
    resolved: set[int] = field(default_factory=set)

    def add_account(self, account: m.LedgerAccount) -> None:
        self.balance.setdefault(account.id, 0)
        self.pending.setdefault(account.id, 0)
        self.owner[account.id] = account.connection_id
        if not account.allow_negative:
            self.partner.add(account.id)

    def available(self, account_id: int) -> int:
        return self.balance[account_id] - self.pending[account_id]

    def outcome(self, transfers: list[Transfer]) -> str | None:
        """None if the set moves; "REPLAY" if it was posted before; else the refusal's code."""
        keys = [t.key for t in transfers]
        if len(set(keys)) != len(keys):
            return "TRANSFER_KEY_REUSED"
        if any(t.debit == t.credit for t in transfers):
            return "SAME_ACCOUNT"
        used = [t for t in transfers if t.key in self.transfers]
        if used:
            if len(used) == len(transfers) and all(_sig(t) == _sig(self.transfers[t.key]) for t in transfers):
                return "REPLAY"
            return "TRANSFER_KEY_REUSED"
        wanted = [t.resolves for t in transfers if t.resolves is not None]
        if len(set(wanted)) != len(wanted):
            return "PENDING_RESOLVED"
        if any(w not in self.pendings for w in wanted):
            return "NOT_FOUND"
        if any(w in self.resolved for w in wanted):
            return "PENDING_RESOLVED"
        for t in transfers:
            a, b = self.owner[t.debit], self.owner[t.credit]
            if a is not None and b is not None and a != b:
                return "CROSS_CONNECTION"
            if t.resolves is not None:
                p = self.pendings[t.resolves]
                if (p.debit, p.credit, p.amount) != (t.debit, t.credit, t.amount):
                    return "PENDING_MISMATCH"
        balance, pending = dict(self.balance), dict(self.pending)
        for t in transfers:
            _apply(balance, pending, t)
            # Every transfer of a set, in order: a Partner's account is never below zero,
            # not even between two transfers posted together.
            if t.debit in self.partner and balance[t.debit] - pending[t.debit] < 0:
                return "INSUFFICIENT_FUNDS"
        return None

    def record(self, transfers: list[Transfer], rows: list[m.LedgerTransfer]) -> None:
        for t, row in zip(transfers, rows, strict=True):
            _apply(self.balance, self.pending, t)
            self.transfers[t.key] = t
            self.ids[t.key] = row.id
            if t.phase == "PENDING":
                self.pendings[row.id] = t
            if t.resolves is not None:
                self.resolved.add(t.resolves)


def _apply(balance: dict[int, int], pending: dict[int, int], t: Transfer) -> None:
    if t.pending:
        pending[t.debit] += t.amount
        return
    if t.resolves is not None:
        pending[t.debit] -= t.amount
        if t.void:
            return
    balance[t.debit] -= t.amount
    balance[t.credit] += t.amount


@dataclass
class Invoice:
    id: int
    connection: int  # index into LedgerMachine.wallets
    receivable: int
    total: int
    paid: int = 0

    @property
    def due(self) -> int:
        return self.total - self.paid


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, template: Path) -> None:
        super().__init__()
        self.path = template.with_name(f"example-{next(_examples)}.db")
        shutil.copyfile(template, self.path)
        self.loop = asyncio.new_event_loop()
        self.engine = create_engine(f"sqlite+aiosqlite:///{self.path}")
        self.sessions = write_sessions(self.engine)
        self.model = Model()
        self.invoices: list[Invoice] = []
        self.keys = itertools.count(1)
        self.run(self._accounts())

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)

    def teardown(self) -> None:
        self.run(self.engine.dispose())
        self.loop.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    async def _accounts(self) -> None:
        """The template's accounts and transfers, as the model's starting point."""
        async with self.sessions() as session:
            accounts = list(await session.scalars(select(m.LedgerAccount).order_by(m.LedgerAccount.id)))
            transfers = list(await session.scalars(select(m.LedgerTransfer).order_by(m.LedgerTransfer.id)))
            self.connection_ids = list(await session.scalars(select(m.Connection.id).order_by(m.Connection.id)))
        for account in accounts:
            self.model.add_account(account)
            self.model.balance[account.id] = account.balance
        for row in transfers:
            t = Transfer(row.key, row.kind, row.debit_account_id, row.credit_account_id, row.amount)
            self.model.transfers[t.key], self.model.ids[t.key] = t, row.id
        self.wallets = [a.id for a in accounts if a.kind == "WALLET"]
        self.system = {a.kind: a.id for a in accounts if a.connection_id is None}

    def key(self) -> str:
        return f"t{next(self.keys)}"

    # ---- posting, checked against the model -------------------------------------------

    def attempt(
        self,
        transfers: list[Transfer],
        then: Callable[[AsyncSession, list[m.LedgerTransfer]], Awaitable[None]] | None = None,
    ) -> str | None:
        """Post `transfers` in a transaction of their own (and `then`, in the same one)
        and check the outcome against the model's; returns it."""
        expected = self.model.outcome(transfers)

        async def go() -> list[m.LedgerTransfer] | str:
            try:
                async with self.sessions() as session, session.begin():
                    rows = await ledger.post(session, transfers, now=NOW)
                    if then is not None and expected is None:
                        await then(session, rows)
                    return rows
            except DomainError as err:
                return err.code

        result = self.run(go())
        if isinstance(result, str):
            assert result == expected, f"refused with {result}, expected {expected or 'a move'}: {transfers}"
            return result
        assert expected in (None, "REPLAY"), f"posted, expected {expected}: {transfers}"
        if expected == "REPLAY":
            assert [r.id for r in result] == [self.model.ids[t.key] for t in transfers], "a replay gives the first rows"
        else:
            assert [r.key for r in result] == [t.key for t in transfers]
            self.model.record(transfers, result)
        return expected

    def wallet_credit(self, conn: int, source: str, amount: int) -> Transfer:
        return Transfer(self.key(), FUNDING[source], self.system[source], self.wallets[conn], amount)

    def wallet_debit(self, conn: int, sink: str, amount: int) -> Transfer:
        return Transfer(self.key(), FUNDING[sink], self.wallets[conn], self.system[sink], amount)

    def overdraft(self, conn: int, extra: int) -> int:
        """An amount that takes the wallet `extra` below zero."""
        return self.model.available(self.wallets[conn]) + extra

    # ---- rules -----------------------------------------------------------------------

    @rule(conn=connections, source=funding, amount=amounts)
    def credit_a_wallet(self, conn: int, source: str, amount: int) -> None:
        assert self.attempt([self.wallet_credit(conn, source, amount)]) is None

    @rule(conn=connections, sink=funding, amount=amounts, overdraw=st.booleans())
    def debit_a_wallet(self, conn: int, sink: str, amount: int, overdraw: bool) -> None:
        available = self.model.available(self.wallets[conn])
        if overdraw:
            amount += available
        elif available > 0:
            amount = min(amount, available)
        outcome = self.attempt([self.wallet_debit(conn, sink, amount)])
        assert (outcome == "INSUFFICIENT_FUNDS") == (amount > available)

    @initialize(conn=connections, total=amounts)
    def an_open_invoice(self, conn: int, total: int) -> None:
        self.issue_an_invoice(conn, total)

    @rule(conn=connections, total=amounts)
    def issue_an_invoice(self, conn: int, total: int) -> None:
        """An OPEN invoice owes its total: its RECEIVABLE goes to minus the total."""

        async def go() -> tuple[Invoice, Transfer, list[m.LedgerTransfer]]:
            async with self.sessions() as session, session.begin():
                n = await session.scalar(select(func.count()).select_from(m.Invoice))
                row = m.Invoice(
                    connection_id=self.connection_ids[conn], number=f"T-{n + 1}", type="ONE_TIME", status="OPEN",
                    currency_code=CURRENCY, total=total, amount_paid=0, issued_at=NOW, opened_at=NOW,
                )
                session.add(row)
                await session.flush()
                receivable = await ledger.receivable_account(session, row, NOW)
                self.model.add_account(receivable)
                issued = Transfer(self.key(), "INVOICE_ISSUED", receivable.id, self.system["REVAMPD_REVENUE"], total,
                                  invoice_id=row.id)
                assert self.model.outcome([issued]) is None
                posted = await ledger.post(session, [issued], now=NOW)
            return Invoice(row.id, conn, receivable.id, total), issued, posted

        invoice, issued, posted = self.run(go())
        self.model.record([issued], posted)
        self.invoices.append(invoice)

    @precondition(lambda self: any(i.due for i in self.invoices))
    @rule(data=st.data(), overdraw=st.booleans())
    def pay_an_invoice_from_its_wallet(self, data: st.DataObject, overdraw: bool) -> None:
        invoice = data.draw(st.sampled_from([i for i in self.invoices if i.due]))
        wallet = self.wallets[invoice.connection]
        amount = data.draw(st.integers(min_value=1, max_value=invoice.due))
        if not overdraw:
            amount = min(amount, max(1, self.model.available(wallet)))
        payment = Transfer(self.key(), "INVOICE_PAYMENT", wallet, invoice.receivable, amount, invoice_id=invoice.id)

        async def book(session: AsyncSession, rows: list[m.LedgerTransfer]) -> None:
            row = await session.get(m.Invoice, invoice.id)
            assert row is not None
            row.amount_paid += amount
            row.payment_method = "WALLET"
            if row.amount_paid == row.total:
                row.status, row.paid_at = "PAID", NOW
            session.add(m.InvoicePayment(invoice_id=invoice.id, amount=amount, method="WALLET", created_at=NOW,
                                         transfer_id=rows[0].id))

        if self.attempt([payment], book) is None:
            invoice.paid += amount

    @rule(data=st.data(), source=connections, amount=amounts)
    def move_credit_to_another_connection(self, data: st.DataObject, source: int, amount: int) -> None:
        """Credits pay this connection's invoices only: never the other's wallet or invoices."""
        theirs = [i for i in self.invoices if i.connection != source]
        wallet = self.wallets[(source + 1) % CONNECTIONS]
        if theirs and data.draw(st.booleans()):
            invoice = data.draw(st.sampled_from(theirs))
            move = Transfer(self.key(), "INVOICE_PAYMENT", self.wallets[source], invoice.receivable, amount,
                            invoice_id=invoice.id)
        else:
            move = Transfer(self.key(), "MANUAL_ADJUSTMENT", self.wallets[source], wallet, amount)
        assert self.attempt([move]) == "CROSS_CONNECTION"

    @rule(conn=connections, source=funding, sink=funding, credit=amounts, extra=amounts,
          debit_first=st.booleans())
    def post_a_set_where_one_transfer_overdraws(
        self, conn: int, source: str, sink: str, credit: int, extra: int, debit_first: bool
    ) -> None:
        """A debit of more than the wallet holds and a credit, posted together: in that
        order nothing of the set moves, even when the credit would cover the debit."""
        debit = self.wallet_debit(conn, sink, self.overdraft(conn, extra))
        topup = self.wallet_credit(conn, source, credit)
        outcome = self.attempt([debit, topup] if debit_first else [topup, debit])
        if debit_first:
            assert outcome == "INSUFFICIENT_FUNDS"
        else:
            assert outcome == (None if credit >= extra else "INSUFFICIENT_FUNDS")

    @rule(conn=connections, source=funding, sink=funding, credit=amounts, debit=amounts)
    def post_a_set_of_two(self, conn: int, source: str, sink: str, credit: int, debit: int) -> None:
        self.attempt([self.wallet_credit(conn, source, credit), self.wallet_debit(conn, sink, debit)])

    @precondition(lambda self: self.model.transfers)
    @rule(data=st.data())
    def replay_a_key(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.model.transfers)))
        again = replace(self.model.transfers[key], memo="a retry")
        assert self.attempt([again]) == "REPLAY"

    @precondition(lambda self: self.model.transfers)
    @rule(data=st.data(), change=st.sampled_from(["amount", "credit", "kind"]))
    def reuse_a_key_for_another_transfer(self, data: st.DataObject, change: str) -> None:
        key = data.draw(st.sampled_from(sorted(self.model.transfers)))
        first = self.model.transfers[key]
        if change == "amount":
            other = replace(first, amount=first.amount + 1)
        elif change == "credit":
            elsewhere = [a for a in self.system.values() if a not in (first.debit, first.credit)]
            other = replace(first, credit=elsewhere[0])
        else:
            other = replace(first, kind="REVERSAL" if first.kind != "REVERSAL" else "MANUAL_ADJUSTMENT")
        assert self.attempt([other]) == "TRANSFER_KEY_REUSED"

    @initialize(conn=connections, amount=st.integers(min_value=1, max_value=START))
    def a_bank_transfer_in_flight(self, conn: int, amount: int) -> None:
        hold = Transfer(self.key(), "BANK_TRANSFER", self.wallets[conn], self.system["BANK_OUT"], amount, pending=True)
        assert self.attempt([hold]) is None

    @rule(conn=connections, amount=amounts, overdraw=st.booleans())
    def reserve_for_a_bank_transfer(self, conn: int, amount: int, overdraw: bool) -> None:
        """A pending transfer holds money on the wallet, and only what it holds."""
        wallet = self.wallets[conn]
        available = self.model.available(wallet)
        if overdraw:
            amount += available
        elif available > 0:
            amount = min(amount, available)
        hold = Transfer(self.key(), "BANK_TRANSFER", wallet, self.system["BANK_OUT"], amount, pending=True)
        outcome = self.attempt([hold])
        assert (outcome == "INSUFFICIENT_FUNDS") == (amount > available)

    @precondition(lambda self: self.model.pendings)
    @rule(data=st.data(), how=st.sampled_from(["post", "void", "another amount"]))
    def resolve_a_reservation(self, data: st.DataObject, how: str) -> None:
        """The bank's answer posts or voids a pending transfer, once; a second answer, or
        one for another amount, is refused."""
        pid = data.draw(st.sampled_from(sorted(self.model.pendings)))
        p = self.model.pendings[pid]
        already = pid in self.model.resolved
        amount = p.amount + 1 if how == "another amount" else p.amount
        settle = Transfer(self.key(), p.kind, p.debit, p.credit, amount, resolves=pid, void=how == "void")
        outcome = self.attempt([settle])
        assert outcome == ("PENDING_RESOLVED" if already else "PENDING_MISMATCH" if how == "another amount" else None)

    # ---- after every step ------------------------------------------------------------

    @invariant()
    def the_ledger_agrees_with_itself_and_the_model(self) -> None:
        async def read() -> tuple[list[str], dict[int, tuple[int, int]], int]:
            async with self.sessions() as session:
                problems = await ledger.verify(session)
                accounts = {
                    a.id: (a.balance, a.pending) for a in await session.scalars(select(m.LedgerAccount))
                }
                count = await session.scalar(select(func.count()).select_from(m.LedgerTransfer))
                return problems, accounts, int(count or 0)

        problems, accounts, count = self.run(read())
        assert problems == []
        assert accounts == {a: (self.model.balance[a], self.model.pending[a]) for a in self.model.balance}
        assert count == len(self.model.transfers)
        for a in self.model.partner:
            assert self.model.available(a) >= 0


def test_random_sequences_of_transfers_keep_every_ledger_invariant(template: Path) -> None:
    run_state_machine_as_test(
        lambda: LedgerMachine(template),
        settings=settings(
            max_examples=int(os.environ.get("LEDGER_EXAMPLES", "30")),
            stateful_step_count=int(os.environ.get("LEDGER_STEPS", "15")),
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
