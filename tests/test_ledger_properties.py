"""The ledger, payouts and bank transfers under random sequences of operations (pgledger's property test, in Python).

A hypothesis state machine posts credits and debits between the wallets of two
connections and Revampd's accounts, issues and pays invoices, posts sets of two
transfers together, replays keys, reuses keys for other transfers, tries to move
money between connections, and reserves money with pending transfers that it later
posts or voids.

It also makes payouts (each funded from SUB_ORG_EARNINGS into its own PAYOUT
account) and disposes of them through the real payout service (services/payouts.py)
as each connection's PARTNER_ADMIN, the way the API does:

- creditPayout, transferPayout and splitPayout, each with an idempotency key, for
  part of what is available, exactly all of it, more than it, nothing named (= all)
  or text that is no amount, written "12.34" or "12.3"; to the default bank
  account, the default by id, an account whose transfers the sandbox fails at
  once, another connection's or none; now and then as the other connection's
  admin or with a blank key;
- a disposition's key used again with the same input (nothing moves, the same
  disposition comes back) or with other input (IDEMPOTENCY_KEY_REUSED), and a
  refused attempt's key used again for real;
- a new bank transfer handed to the sandbox processor in a transaction of its own,
  as the app does; sometimes the process dies first or the processor cannot be
  reached, and `payouts sync` or a replay sends it later;
- webhooks: the sandbox's own (IN_TRANSIT, then PAID), and any status for any
  transfer, one never sent, or none, sometimes with an event id already handled;
  the Partner cancelling transfers (the processor reachable or not); `payouts sync`.

A plain Python model says what each attempt must do (move what, move nothing, or be
refused with which code) and what every account must then hold. A bank transfer
only moves forward (PENDING < IN_TRANSIT < PAID / FAILED / CANCELED, final ones
never change): PAID posts its reservation, FAILED and CANCELED void it, making the
amount available on the payout again; only a PENDING one can be canceled. After a
service call, the ledger transfers it posted must be exactly the ones the model
expects; they are then recorded in the model.

After every step the database must agree with the model and `ledger.verify()` must
find nothing wrong; for every payout, available + wallet + in flight + paid must be
its amount, available its account's balance less what it reserves, and its status
(as services.payouts.status_of says from the model's numbers) and disposition the
model's; every bank transfer's status and processor ref, the number of dispositions
and of processor events, and what payouts credited to each wallet must be the
model's.

Each example runs on its own copy of a freshly migrated SQLite database.
LEDGER_EXAMPLES (default 30) and LEDGER_STEPS (default 20) set how many sequences
are tried and how long each is; run with LEDGER_EXAMPLES=200 or more to search harder.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import pytest
from hypothesis import HealthCheck, event, settings
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
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import models as m
from db.engine import create_engine, write_sessions
from db.migrate import upgrade
from db.states import IN_FLIGHT, AccountKind, TransferKind
from services import ledger, payouts
from services.access import Principal, Role
from services.bank_gateway import GatewayTransfer, GatewayUnavailable, SandboxBankGateway
from services.errors import DomainError
from services.ledger import Transfer

T = TypeVar("T")
NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
CURRENCY = "USD"
CONNECTIONS = 2
# Revampd's accounts that fund or receive a wallet's money, with the kind of transfer.
FUNDING = {
    "ADJUSTMENTS": TransferKind.MANUAL_ADJUSTMENT,
    "REVENUE_SHARE": TransferKind.REVENUE_SHARE,
    "SUB_ORG_EARNINGS": TransferKind.PAYOUT_CREDIT,
}
SYSTEM = (*FUNDING, "BANK_OUT", "REVAMPD_REVENUE")
START = 100_000  # each wallet's credit at the start
# Each connection's bank accounts, by what the sandbox does with a transfer to them.
BANKS = {"ok": ("6789", True), "failnow": ("1116", False)}
_examples = itertools.count(1)  # names each example's copy of the template

amounts = st.integers(min_value=1, max_value=50_000)
connections = st.integers(min_value=0, max_value=CONNECTIONS - 1)
funding = st.sampled_from(sorted(FUNDING))

# Payouts.
OPERATIONS = ("credit", "transfer", "split")
# How much to ask for: part of what is available, exactly all of it, more, none
# (= all; a split always names its wallet amount, so for it "all" is exactly all
# of it), or text that is no amount.
sizes = st.sampled_from(["part", "part", "part", "exact", "more", "all", "invalid"])
INVALID_AMOUNTS = ("0", "0.00", "-1.00", "1.234", "0.001", "abc", "", "1e3", "12,50", "1_000", "99999999999.99")
# Which bank account a transfer or split names: the default (none named), the
# default by id, the one the sandbox fails at once, the other connection's, none.
bank_choices = st.sampled_from(["default", "default", "default", "default by id", "failnow", "foreign", "missing"])
# The key of a disposition: a new one, one an attempt that was refused used, blank.
key_kinds = st.sampled_from(["fresh", "fresh", "fresh", "fresh", "fresh", "refused", "blank"])
# Sometimes the caller is the other connection's admin.
strangers = st.sampled_from([False] * 7 + [True])
# After a disposition the processor is told of its bank transfer; sometimes the
# process dies first, or the processor cannot be reached (either way it is not sent).
sending = st.sampled_from(["sent", "sent", "sent", "process dies", "unreachable"])
# Whether the processor answers (sync, cancel).
reachable = st.sampled_from([True, True, True, False])
# A bank transfer only moves forward: PENDING < IN_TRANSIT < PAID / FAILED / CANCELED, which are final.
ORDER = {"PENDING": 0, "IN_TRANSIT": 1, "PAID": 2, "FAILED": 2, "CANCELED": 2}
FINAL = ("PAID", "FAILED", "CANCELED")
EVENT_STATUSES = st.sampled_from(["PENDING", "IN_TRANSIT", "IN_TRANSIT", "IN_TRANSIT", "PAID", "FAILED", "CANCELED"])
NO_SUCH_BANK_ACCOUNT = 10**6


def usd(cents: int, short: bool = False) -> str:
    """Minor units as the API's decimal string: 1234 -> "12.34" (short: 1230 -> "12.3", 1200 -> "12")."""
    assert cents > 0
    text = f"{cents // 100}.{cents % 100:02d}"
    return text.rstrip("0").rstrip(".") if short else text


class UnreachableGateway(SandboxBankGateway):
    """The sandbox processor when it cannot be reached."""

    async def create_transfer(self, reference: str, account_token: str, amount: int, currency: str) -> GatewayTransfer:
        raise GatewayUnavailable("unreachable")

    async def retrieve_transfer(self, ref: str) -> GatewayTransfer:
        raise GatewayUnavailable("unreachable")

    async def cancel_transfer(self, ref: str) -> GatewayTransfer:
        raise GatewayUnavailable("unreachable")


async def _seed(url: str) -> None:
    """Two Partners with a connection each, whose wallets start with some credit, an
    admin and two bank accounts (the default one, and one whose transfers the sandbox
    fails at once) each; and Revampd's accounts."""
    engine = create_engine(url)
    try:
        async with write_sessions(engine)() as session, session.begin():
            for n in range(CONNECTIONS):
                partner = m.Partner(name=f"Partner {n}", created_at=NOW)
                session.add(partner)
                await session.flush()
                connection = m.Connection(partner_id=partner.id, currency_code=CURRENCY, created_at=NOW)
                session.add(connection)
                session.add(m.User(email=f"admin{n}@partner{n}.example", name=f"Admin {n}", partner_id=partner.id,
                                   role="PARTNER_ADMIN", created_at=NOW))
                await session.flush()
                session.add_all([
                    m.BankAccount(connection_id=connection.id, holder_name=f"Partner {n} LLC", bank_name="Sandbox Bank",
                                  routing_number="110000000", account_last4=last4, is_default=default,
                                  account_token=f"btok_sandbox_{outcome}_{n}", created_at=NOW)
                    for outcome, (last4, default) in BANKS.items()
                ])
                wallet = await ledger.wallet_account(session, connection, NOW)
                # Revampd's accounts, a part per connection as the services keep them (ledger.system_account).
                system = {kind: await ledger.system_account(session, AccountKind(kind), CURRENCY, connection.id, NOW)
                          for kind in SYSTEM}
                await ledger.post(session, [Transfer(
                    f"start:{n}", TransferKind.MANUAL_ADJUSTMENT, system["ADJUSTMENTS"].id, wallet.id, START,
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


@dataclass
class Payout:
    """A payout as the model sees it: its account, its amount, what went to the wallet."""

    id: int
    connection: int  # index into LedgerMachine.wallets
    account: int
    amount: int
    wallet: int = 0


@dataclass
class BankTransfer:
    """A bank transfer of a payout, as the model sees it."""

    id: int
    payout: Payout
    amount: int
    outcome: str  # what the sandbox does with it: "ok", or "failnow" (FAILED when submitted)
    pending_id: int  # its reservation in the ledger
    status: str = "PENDING"
    ref: str | None = None  # the processor's id, once submitted
    sending: bool = False  # it was being sent: the processor may have it, even without a ref


@dataclass(frozen=True)
class Claim:
    """An idempotency key's first use, which disposed of a payout: the input, and the
    disposition a replay must give back."""

    connection: int  # whose admin sent it
    key: str
    operation: str
    payout_id: int
    amount: str | None
    bank_account_id: int | None
    disposition: int
    bank: BankTransfer | None


@dataclass(frozen=True)
class Refused:
    code: str


def _move(t: Transfer) -> tuple[Any, ...]:
    """What a service's transfer must be (its key is the service's business)."""
    return (*_sig(t), t.payout_id)


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
        self.payouts: list[Payout] = []
        self.bank_transfers: list[BankTransfer] = []
        self.claims: list[Claim] = []
        self.refused: list[tuple[int, str]] = []  # (connection, idempotency key) of refused attempts
        self.dispositions = 0
        self.events: set[str] = set()  # event ids handled
        self.gateways = {True: SandboxBankGateway(), False: UnreachableGateway()}
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
            connections = list(await session.scalars(select(m.Connection).order_by(m.Connection.id)))
            admins = select(m.User).where(m.User.role == "PARTNER_ADMIN")
            users = {u.partner_id: u.id for u in await session.scalars(admins)}
            banks = list(await session.scalars(select(m.BankAccount).order_by(m.BankAccount.id)))
        self.connection_ids = [c.id for c in connections]
        self.principals = [
            Principal(users[c.partner_id], c.partner_id, c.id, frozenset({Role.PARTNER_ADMIN})) for c in connections
        ]
        # Each connection's bank accounts by what the sandbox does with them ("ok", "failnow").
        self.banks = [
            {b.account_token.split("_")[2]: b.id for b in banks if b.connection_id == c.id} for c in connections
        ]
        for account in accounts:
            self.model.add_account(account)
            self.model.balance[account.id] = account.balance
        for row in transfers:
            t = Transfer(row.key, TransferKind(row.kind), row.debit_account_id, row.credit_account_id, row.amount)
            self.model.transfers[t.key], self.model.ids[t.key] = t, row.id
        self.wallets = [a.id for a in accounts if a.kind == "WALLET"]
        # Revampd's accounts: each connection's parts ("<KIND>:<currency>:<connection>"), by kind.
        self.system = [{a.kind: a.id for a in accounts if a.code.endswith(f":{cid}") and a.connection_id is None}
                       for cid in self.connection_ids]

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
        return Transfer(self.key(), FUNDING[source], self.system[conn][source], self.wallets[conn], amount)

    def wallet_debit(self, conn: int, sink: str, amount: int) -> Transfer:
        return Transfer(self.key(), FUNDING[sink], self.wallets[conn], self.system[conn][sink], amount)

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
                assert n is not None
                row = m.Invoice(
                    connection_id=self.connection_ids[conn], number=f"T-{n + 1}", type="ONE_TIME", status="OPEN",
                    currency_code=CURRENCY, total=total, amount_paid=0, issued_at=NOW, opened_at=NOW,
                )
                session.add(row)
                await session.flush()
                receivable = await ledger.receivable_account(session, row, NOW)
                self.model.add_account(receivable)
                issued = Transfer(self.key(), TransferKind.INVOICE_ISSUED, receivable.id,
                                  self.system[conn]["REVAMPD_REVENUE"], total, invoice_id=row.id)
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
        payment = Transfer(self.key(), TransferKind.INVOICE_PAYMENT, wallet, invoice.receivable, amount,
                           invoice_id=invoice.id)

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
        if len(theirs) > 0 and data.draw(st.booleans()):
            invoice = data.draw(st.sampled_from(theirs))
            move = Transfer(self.key(), TransferKind.INVOICE_PAYMENT, self.wallets[source], invoice.receivable, amount,
                            invoice_id=invoice.id)
        else:
            move = Transfer(self.key(), TransferKind.MANUAL_ADJUSTMENT, self.wallets[source], wallet, amount)
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
            elsewhere = [a for s in self.system for a in s.values() if a not in (first.debit, first.credit)]
            other = replace(first, credit=elsewhere[0])
        else:
            other = replace(
                first, kind=TransferKind.REVERSAL if first.kind != "REVERSAL" else TransferKind.MANUAL_ADJUSTMENT
            )
        assert self.attempt([other]) == "TRANSFER_KEY_REUSED"

    @initialize(conn=connections, amount=st.integers(min_value=1, max_value=START))
    def a_bank_transfer_in_flight(self, conn: int, amount: int) -> None:
        hold = Transfer(self.key(), TransferKind.BANK_TRANSFER, self.wallets[conn], self.system[conn]["BANK_OUT"],
                        amount, pending=True)
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
        hold = Transfer(self.key(), TransferKind.BANK_TRANSFER, wallet, self.system[conn]["BANK_OUT"], amount,
                        pending=True)
        outcome = self.attempt([hold])
        assert (outcome == "INSUFFICIENT_FUNDS") == (amount > available)

    def reservations(self) -> list[int]:
        """Pending transfers posted here (not a bank transfer's, which only the payout
        service resolves, or the payout would disagree with the ledger)."""
        theirs = {b.pending_id for b in self.bank_transfers}
        return sorted(pid for pid in self.model.pendings if pid not in theirs)

    @precondition(lambda self: self.reservations())
    @rule(data=st.data(), how=st.sampled_from(["post", "void", "another amount"]))
    def resolve_a_reservation(self, data: st.DataObject, how: str) -> None:
        """The bank's answer posts or voids a pending transfer, once; a second answer, or
        one for another amount, is refused."""
        pid = data.draw(st.sampled_from(self.reservations()))
        p = self.model.pendings[pid]
        already = pid in self.model.resolved
        amount = p.amount + 1 if how == "another amount" else p.amount
        settle = Transfer(self.key(), p.kind, p.debit, p.credit, amount, resolves=pid, void=how == "void")
        outcome = self.attempt([settle])
        assert outcome == ("PENDING_RESOLVED" if already else "PENDING_MISMATCH" if how == "another amount" else None)

    # ---- payouts: the service, checked against the model --------------------------------

    def service(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T | Refused:
        """Run a service call in a write transaction of its own, as the API does; a
        DomainError rolls it back and comes back as Refused(code)."""

        async def go() -> T | Refused:
            try:
                async with self.sessions() as session, session.begin():
                    return await work(session)
            except DomainError as err:
                return Refused(err.code)

        return self.run(go())

    def steps(self, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T | Refused:
        """A service call that opens its own write transactions (around a processor's
        answer), as the API runs it; a DomainError comes back as Refused(code)."""

        async def go() -> T | Refused:
            try:
                return await work(self.sessions)
            except DomainError as err:
                return Refused(err.code)

        return self.run(go())

    def absorb(self, expected: list[Transfer]) -> list[m.LedgerTransfer]:
        """The ledger transfers posted since the model's last one must be `expected`
        (in order; keys aside); they are recorded in the model."""

        async def read() -> list[m.LedgerTransfer]:
            async with self.sessions() as session:
                since = max(self.model.ids.values())
                return list(await session.scalars(
                    select(m.LedgerTransfer).where(m.LedgerTransfer.id > since).order_by(m.LedgerTransfer.id)
                ))

        rows = self.run(read())
        posted = [
            Transfer(r.key, TransferKind(r.kind), r.debit_account_id, r.credit_account_id, r.amount,
                     payout_id=r.payout_id, pending=r.phase == "PENDING", resolves=r.pending_id,
                     void=r.phase == "VOID_PENDING")
            for r in rows
        ]
        assert [_move(t) for t in posted] == [_move(t) for t in expected], (
            f"the service posted {posted}, expected {expected}"
        )
        assert not any(t.key in self.model.transfers for t in posted)
        self.model.record(posted, rows)
        return rows

    def new_bank_transfers(self) -> list[m.BankTransfer]:
        async def read() -> list[m.BankTransfer]:
            async with self.sessions() as session:
                since = max((b.id for b in self.bank_transfers), default=0)
                return list(await session.scalars(
                    select(m.BankTransfer).where(m.BankTransfer.id > since).order_by(m.BankTransfer.id)
                ))

        return self.run(read())

    def flying(self) -> list[BankTransfer]:
        """The bank transfers still in flight (the webhook and cancel rules pick them twice as often)."""
        return [b for b in self.bank_transfers if b.status in IN_FLIGHT]

    def in_flight(self, p: Payout) -> int:
        return sum(b.amount for b in self.bank_transfers if b.payout is p and b.status in IN_FLIGHT)

    def paid(self, p: Payout) -> int:
        return sum(b.amount for b in self.bank_transfers if b.payout is p and b.status == "PAID")

    def status(self, p: Payout) -> str:
        """The payout's status, as services.payouts.status_of says from the model's numbers."""
        return payouts.status_of(m.Payout(
            amount=p.amount, available_amount=self.model.available(p.account), bank_in_flight_amount=self.in_flight(p),
        ))

    def advance(self, b: BankTransfer, status: str) -> list[Transfer]:
        """Move a transfer forward to `status`; what the ledger must post for it (PAID
        posts its reservation, FAILED and CANCELED void it)."""
        assert ORDER[status] > ORDER[b.status]
        b.status = status
        if status not in FINAL:
            return []
        return [Transfer("", TransferKind.BANK_TRANSFER, b.payout.account, self.system[b.payout.connection]["BANK_OUT"],
                         b.amount, payout_id=b.payout.id, resolves=b.pending_id, void=status != "PAID")]

    def submitted(self, b: BankTransfer, reachable: bool = True) -> list[Transfer]:
        """What telling the sandbox about `b` does: nothing once sent, no longer PENDING,
        or when the processor cannot be reached; else it gets its ref, and a transfer to
        the "failnow" account FAILS at once."""
        if b.ref is not None or b.status != "PENDING":
            return []
        b.sending = True
        if not reachable:
            return []
        b.ref = f"sbt_sandbox_{b.outcome}_bt{b.id}"
        if b.outcome == "failnow":
            self.events.add(f"gateway:{b.ref}:FAILED")
            return self.advance(b, "FAILED")
        return []

    def submit(self, b: BankTransfer, reachable: bool = True) -> None:
        """`payouts.submit` (its own transactions, around the processor's answer), as the app
        does after a disposition."""

        async def work(writes: async_sessionmaker[AsyncSession]) -> tuple[str | None, str]:
            t = await payouts.submit(writes, self.gateways[reachable], b.id, NOW)
            assert t is not None
            return t.gateway_ref, t.status

        result = self.steps(work)
        self.absorb(self.submitted(b, reachable))
        assert result == (b.ref, b.status)

    def principal(self, conn: int, stranger: bool) -> tuple[int, Principal]:
        who = (conn + 1) % CONNECTIONS if stranger else conn
        return who, self.principals[who]

    async def _call(
        self, session: AsyncSession, principal: Principal, operation: str, payout_id: int, amount: str | None,
        bank_account_id: int | None, key: str,
    ) -> tuple[int, str, int, int, int | None, int, str, int | None]:
        """A disposition through the service, and what it answers: the disposition's id,
        kind and parts, its bank transfer, the payout's available amount and status, the
        wallet's balance after a credit."""
        if operation == "credit":
            d = await payouts.credit(session, principal, payout_id, amount=amount, idempotency_key=key, now=NOW)
        elif operation == "transfer":
            d = await payouts.transfer(session, principal, payout_id, bank_account_id=bank_account_id, amount=amount,
                                       idempotency_key=key, now=NOW)
        else:
            assert amount is not None
            d = await payouts.split(session, principal, payout_id, wallet_amount=amount,
                                    bank_account_id=bank_account_id, idempotency_key=key, now=NOW)
        return (d.disposition.id, d.disposition.kind, d.disposition.wallet_amount, d.disposition.bank_amount,
                d.bank_transfer.id if d.bank_transfer else None, d.payout.available_amount, d.payout.status,
                d.wallet.balance if d.wallet else None)

    def predict(
        self, operation: str, p: Payout, key: str, cents: int | None, invalid: bool, bank: str, stranger: bool
    ) -> str | tuple[int, int]:
        """The refusal's code, or the (wallet, bank) parts a disposition moves."""
        if not key.strip():
            return "INVALID_IDEMPOTENCY_KEY"
        if stranger:
            return "NOT_FOUND"
        if invalid:
            return "INVALID_AMOUNT"
        if operation != "credit" and bank in ("foreign", "missing"):
            return "NOT_FOUND"
        available = self.model.available(p.account)
        if available == 0:
            return "NOTHING_AVAILABLE"
        if operation == "split":
            assert cents is not None
            return "SPLIT_LEAVES_NOTHING_FOR_BANK" if cents >= available else (cents, available - cents)
        part = available if cents is None else cents
        if part > available:
            return "EXCEEDS_AVAILABLE"
        return (part, 0) if operation == "credit" else (0, part)

    @initialize(data=st.data(), conn=connections, amount=amounts)
    def a_payout_on_its_way_to_the_bank(self, data: st.DataObject, conn: int, amount: int) -> None:
        """A payout, part or all of it sent to the bank (so the processor's rules have work from the start)."""
        self.make_a_payout(conn, amount)
        self.dispose("transfer", data, "part", False, "default", "fresh", False, "sent")

    @rule(conn=connections, amount=amounts)
    def make_a_payout(self, conn: int, amount: int) -> None:
        """A payout of the connection's earnings, funded from SUB_ORG_EARNINGS: all of it available."""
        period_end = NOW - timedelta(days=len(self.payouts) + 1)  # one payout per connection and period

        async def make() -> tuple[int, m.LedgerAccount]:
            async with self.sessions() as session, session.begin():
                p = m.Payout(
                    connection_id=self.connection_ids[conn], period_type="MONTHLY",
                    period_start=period_end - timedelta(days=30), period_end=period_end, currency_code=CURRENCY,
                    gross_amount=amount, fee_amount=0, amount=amount, available_amount=amount, wallet_amount=0,
                    bank_in_flight_amount=0, bank_paid_amount=0, status="AVAILABLE", created_at=NOW, updated_at=NOW,
                )
                session.add(p)
                await session.flush()
                return p.id, await ledger.payout_account(session, p, NOW)

        payout_id, own = self.run(make())
        self.model.add_account(own)

        async def refresh(session: AsyncSession, rows: list[m.LedgerTransfer]) -> None:
            p = await session.get(m.Payout, payout_id)
            assert p is not None
            await payouts.refresh(session, p, NOW)

        funding = Transfer(f"payout:{payout_id}:funding", TransferKind.PAYOUT_FUNDING,
                           self.system[conn]["SUB_ORG_EARNINGS"], own.id, amount, payout_id=payout_id)
        assert self.attempt([funding], refresh) is None
        self.payouts.append(Payout(payout_id, conn, own.id, amount))

    def dispose(
        self, operation: str, data: st.DataObject, size: str, short: bool, bank: str, key_kind: str, stranger: bool,
        send: str,
    ) -> None:
        """Dispose of a payout through the service (`operation`: credit, transfer or split),
        as the model predicts: moved (the ledger transfers, the bank transfer, the
        disposition and the payout as it now stands, then the processor told) or refused
        with which code, moving nothing."""
        p = data.draw(st.sampled_from(self.payouts))
        available = self.model.available(p.account)
        invalid, cents, amount = False, None, None
        if size == "invalid":
            invalid, amount = True, data.draw(st.sampled_from(INVALID_AMOUNTS))
        elif size != "all" or operation == "split":
            top = max(1, available - 1 if operation == "split" else available)
            cents = (  # a split's "all" is a wallet amount of all that is available: nothing left for the bank
                data.draw(st.integers(min_value=1, max_value=top)) if size == "part"
                else max(1, available) if size in ("exact", "all")
                else available + data.draw(st.integers(min_value=1, max_value=10_000))
            )
            amount = usd(cents, short)
        who, principal = self.principal(p.connection, stranger)
        refused = [k for c, k in self.refused if c == who]
        key = (
            " " if key_kind == "blank" else data.draw(st.sampled_from(refused)) if key_kind == "refused" and refused
            else f"idem-{self.key()}"
        )
        mine, theirs = self.banks[p.connection], self.banks[(p.connection + 1) % CONNECTIONS]
        bank_account_id = None if operation == "credit" else {
            "default": None, "default by id": mine["ok"], "failnow": mine["failnow"], "foreign": theirs["ok"],
            "missing": NO_SUCH_BANK_ACCOUNT,
        }[bank]
        expected = self.predict(operation, p, key, cents, invalid, bank, stranger)

        result = self.service(lambda s: self._call(s, principal, operation, p.id, amount, bank_account_id, key))
        event(f"{operation}: {expected if isinstance(expected, str) else 'moved'}")
        if isinstance(expected, str):
            assert result == Refused(expected), (
                f"{operation} {amount!r} of {available} available: {result}, expected {expected}"
            )
            self.absorb([])
            assert self.new_bank_transfers() == []
            if key.strip() and (who, key) not in self.refused:
                self.refused.append((who, key))
            return
        assert not isinstance(result, Refused), f"{operation} {amount!r} of {available} available: refused {result}"
        wallet_part, bank_part = expected
        moves = []
        if wallet_part:
            moves.append(Transfer("", TransferKind.PAYOUT_CREDIT, p.account, self.wallets[p.connection], wallet_part,
                                  payout_id=p.id))
        if bank_part:
            moves.append(Transfer("", TransferKind.BANK_TRANSFER, p.account, self.system[p.connection]["BANK_OUT"],
                                  bank_part, payout_id=p.id,
                                  pending=True))
        rows = self.absorb(moves)
        p.wallet += wallet_part
        new = self.new_bank_transfers()
        b = None
        if bank_part:
            [row] = new
            outcome = "failnow" if bank == "failnow" else "ok"
            assert (row.payout_id, row.amount, row.status, row.bank_account_id, row.pending_transfer_id,
                    row.gateway_ref) == (p.id, bank_part, "PENDING", mine[outcome], rows[-1].id, None)
            b = BankTransfer(row.id, p, bank_part, outcome, rows[-1].id)
            self.bank_transfers.append(b)
        else:
            assert new == []
        disposition, kind, wallet_amount, bank_amount, transfer_id, left, status, wallet = result
        assert (kind, wallet_amount, bank_amount) == (
            "SPLIT" if wallet_part and bank_part else "CREDIT" if wallet_part else "TRANSFER", wallet_part, bank_part
        )
        assert transfer_id == (b.id if b else None)
        assert (left, status) == (available - wallet_part - bank_part, self.status(p))
        assert wallet == (self.model.balance[self.wallets[p.connection]] if wallet_part else None)
        self.dispositions += 1
        if (who, key) in self.refused:
            self.refused.remove((who, key))
        self.claims.append(Claim(who, key, operation, p.id, amount, bank_account_id, disposition, b))
        if b is not None and send != "process dies":
            self.submit(b, reachable=send == "sent")

    @precondition(lambda self: self.payouts)
    @rule(data=st.data(), size=sizes, short=st.booleans(), key_kind=key_kinds, stranger=strangers)
    def credit_a_payout(self, data: st.DataObject, size: str, short: bool, key_kind: str, stranger: bool) -> None:
        self.dispose("credit", data, size, short, "default", key_kind, stranger, "sent")

    @precondition(lambda self: self.payouts)
    @rule(data=st.data(), size=sizes, short=st.booleans(), bank=bank_choices, key_kind=key_kinds,
          stranger=strangers, send=sending)
    def transfer_a_payout(
        self, data: st.DataObject, size: str, short: bool, bank: str, key_kind: str, stranger: bool, send: str
    ) -> None:
        self.dispose("transfer", data, size, short, bank, key_kind, stranger, send)

    @precondition(lambda self: self.payouts)
    @rule(data=st.data(), size=sizes, short=st.booleans(), bank=bank_choices, key_kind=key_kinds,
          stranger=strangers, send=sending)
    def split_a_payout(
        self, data: st.DataObject, size: str, short: bool, bank: str, key_kind: str, stranger: bool, send: str
    ) -> None:
        self.dispose("split", data, size, short, bank, key_kind, stranger, send)

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), change=st.sampled_from(["nothing", "nothing", "operation", "payout", "amount", "bank"]))
    def use_an_idempotency_key_again(self, data: st.DataObject, change: str) -> None:
        """The same key with the same input moves nothing and answers with the first
        disposition, as it now stands (like the app, a bank transfer never sent is sent
        now); with other input it is refused, and moves nothing."""
        c = data.draw(st.sampled_from(self.claims))
        operation, payout_id, amount, bank_account_id = c.operation, c.payout_id, c.amount, c.bank_account_id
        if change == "operation":
            operation = data.draw(st.sampled_from([o for o in OPERATIONS if o != c.operation]))
            amount = amount or "1.00"
        elif change == "payout":
            payout_id = data.draw(st.sampled_from([p.id for p in self.payouts if p.id != c.payout_id] or [0]))
        elif change == "bank" and operation != "credit":
            bank_account_id = data.draw(st.sampled_from([
                b for b in (None, *self.banks[c.connection].values(), NO_SUCH_BANK_ACCOUNT) if b != c.bank_account_id
            ]))
        elif change != "nothing":  # "amount", or "bank" for a credit, which names none
            amount = data.draw(st.sampled_from([
                a for a in ((None,) if operation != "split" else ()) + ("1.00", "2.00") if a != c.amount
            ]))
        result = self.service(lambda s: self._call(
            s, self.principals[c.connection], operation, payout_id, amount, bank_account_id, c.key))
        event(f"{c.operation} again, {change} changed: {'refused' if isinstance(result, Refused) else 'replayed'}")
        self.absorb([])
        assert self.new_bank_transfers() == []
        if change != "nothing":
            assert result == Refused("IDEMPOTENCY_KEY_REUSED"), (
                f"{c} again as {operation} of payout {payout_id}, amount {amount}, bank account {bank_account_id}: "
                f"{result}"
            )
            return
        assert not isinstance(result, Refused), f"replay of {c}: refused {result}"
        p = next(p for p in self.payouts if p.id == c.payout_id)
        disposition, _, _, _, transfer_id, left, status, _ = result
        assert (disposition, transfer_id) == (c.disposition, c.bank.id if c.bank else None)
        assert (left, status) == (self.model.available(p.account), self.status(p))
        if c.bank is not None and c.bank.ref is None:
            self.submit(c.bank)

    @precondition(lambda self: self.bank_transfers)
    @rule(data=st.data(), status=EVENT_STATUSES, repeat=st.sampled_from([False, False, True]))
    def an_event_from_the_processor(self, data: st.DataObject, status: str, repeat: bool) -> None:
        """A webhook: applied if it moves its transfer forward, else stale; unknown for a
        transfer the processor was never told of; a repeated event id changes nothing."""
        b = data.draw(st.sampled_from([*self.bank_transfers, *self.flying(), None]))
        ref = f"sbt_sandbox_{b.outcome}_bt{b.id}" if b is not None else "sbt_sandbox_ok_nowhere"
        event_id = data.draw(st.sampled_from(sorted(self.events))) if repeat and self.events else f"evt_{self.key()}"
        failure = ("no_account", "Returned by the receiving bank.") if status == "FAILED" else (None, None)
        moves: list[Transfer] = []
        if event_id in self.events:
            expected = "duplicate"
        elif b is None or b.ref is None:
            expected = "unknown"
        elif ORDER[status] <= ORDER[b.status]:
            expected = "stale"
        else:
            expected = "applied"
        result = self.service(lambda s: payouts.record_event(
            s, event_id, "WEBHOOK", GatewayTransfer(ref, status, *failure), NOW, NOW))
        assert result == expected, f"{event_id} {status} for {b}: {result}, expected {expected}"
        event(f"webhook {status}: {expected}")
        if expected == "applied":
            assert b is not None
            moves = self.advance(b, status)
        self.events.add(event_id)
        self.absorb(moves)

    def sent(self) -> list[BankTransfer]:
        return [b for b in self.flying() if b.ref is not None]

    @precondition(lambda self: self.sent())
    @rule(data=st.data())
    def the_processor_sends_its_next_webhook(self, data: st.DataObject) -> None:
        """The sandbox's own webhooks for a transfer it was sent, in its order (IN_TRANSIT,
        then PAID), each with the event id a processor gives it."""
        b = data.draw(st.sampled_from(self.sent()))
        assert b.ref is not None
        e = next(e for e in self.gateways[True].events(b.ref) if ORDER[e.status] > ORDER[b.status])
        event_id = f"{b.ref}:{e.type}"
        assert event_id not in self.events
        answer = GatewayTransfer(b.ref, e.status, e.failure_code, e.failure_reason)
        result = self.service(lambda s: payouts.record_event(s, event_id, "WEBHOOK", answer, NOW, NOW))
        assert result == "applied", f"{event_id} for {b}: {result}"
        event(f"next webhook {e.status}: {result}")
        self.events.add(event_id)
        self.absorb(self.advance(b, e.status))

    @precondition(lambda self: self.bank_transfers)
    @rule(data=st.data(), stranger=strangers, reachable=reachable)
    def cancel_a_bank_transfer(self, data: st.DataObject, stranger: bool, reachable: bool) -> None:
        """Only a PENDING transfer can be canceled, by its own Partner, and once sent only
        if the processor answers that it stopped it: its amount is available again."""
        b = data.draw(st.sampled_from([*self.bank_transfers, *self.flying()]))
        _, principal = self.principal(b.payout.connection, stranger)
        expected = (
            "NOT_FOUND" if stranger else "NOT_CANCELABLE" if b.status != "PENDING"
            else "GATEWAY_UNAVAILABLE" if b.ref is None and b.sending  # the processor may have it: not yet
            else None if b.ref is None  # never sent: nothing to ask the processor
            else "GATEWAY_UNAVAILABLE" if not reachable
            else "NOT_CANCELABLE" if b.outcome == "failnow" else None
        )

        async def work(writes: async_sessionmaker[AsyncSession]) -> tuple[int, str]:
            payout, transfer = await payouts.cancel(writes, principal, self.gateways[reachable], b.id, NOW)
            return payout.available_amount, transfer.status

        event(f"cancel {b.status}{'' if b.ref else ' being sent' if b.sending else ' unsent'}: {expected or 'CANCELED'}")
        result = self.steps(work)
        if expected is not None:
            assert result == Refused(expected), f"cancel of {b}: {result}, expected {expected}"
            self.absorb([])
            return
        self.absorb(self.advance(b, "CANCELED"))
        self.events.add(f"partner:bt{b.id}:canceled")
        assert result == (self.model.available(b.payout.account), "CANCELED")

    @precondition(lambda self: self.bank_transfers)
    @rule(data=st.data(), reachable=reachable)
    def sync_a_bank_transfer(self, data: st.DataObject, reachable: bool) -> None:
        """`payouts sync`: sends a transfer never sent; else asks the sandbox, where it is
        PAID; nothing changes while the processor cannot be reached."""
        b = data.draw(st.sampled_from(self.bank_transfers))
        before = b.status
        moves: list[Transfer] = []
        if b.status not in IN_FLIGHT:
            expected = "unchanged"
        elif not reachable:
            expected = "unavailable"
            self.submitted(b, reachable=False)  # an unsent one was being sent, and may be at the processor
        elif b.ref is None:
            expected, moves = "submitted", self.submitted(b)
        elif f"sync:{b.ref}:PAID" in self.events:
            expected = "unchanged"
        else:
            self.events.add(f"sync:{b.ref}:PAID")
            expected, moves = "applied", self.advance(b, "PAID")
        event(f"sync {before}{'' if b.ref or moves else ' unsent'}: {expected}")
        result = self.steps(lambda writes: payouts.sync_one(writes, self.gateways[reachable], b.id, NOW))
        assert result == expected, f"sync of {b}: {result}, expected {expected}"
        self.absorb(moves)

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

    @invariant()
    def payouts_agree_with_the_model(self) -> None:
        async def read() -> tuple[dict[int, m.Payout], dict[int, m.BankTransfer], int, int, dict[int, int]]:
            async with self.sessions() as session:
                rows = {p.id: p for p in await session.scalars(select(m.Payout))}
                transfers = {b.id: b for b in await session.scalars(select(m.BankTransfer))}
                dispositions = await session.scalar(select(func.count()).select_from(m.PayoutDisposition))
                events = await session.scalar(select(func.count()).select_from(m.BankTransferEvent))
                T = m.LedgerTransfer
                credited = dict((await session.execute(
                    select(T.credit_account_id, func.sum(T.amount))
                    .where(T.kind == "PAYOUT_CREDIT", T.payout_id.is_not(None)).group_by(T.credit_account_id)
                )).all())
                return rows, transfers, int(dispositions or 0), int(events or 0), credited

        rows, transfers, dispositions, events, credited = self.run(read())
        assert sorted(rows) == sorted(p.id for p in self.payouts)
        for p in self.payouts:
            available, in_flight, paid = self.model.available(p.account), self.in_flight(p), self.paid(p)
            assert available + p.wallet + in_flight + paid == p.amount
            row = rows[p.id]
            assert (row.amount, row.available_amount, row.wallet_amount, row.bank_in_flight_amount,
                    row.bank_paid_amount) == (p.amount, available, p.wallet, in_flight, paid), f"payout {p}"
            assert row.status == self.status(p), f"payout {p} is {row.status}"
            bank = in_flight + paid
            assert row.disposition == (
                "SPLIT" if p.wallet and bank else "CREDIT" if p.wallet else "TRANSFER" if bank else None
            )
        assert {b.id: (b.payout.id, b.amount, b.status, b.ref, b.pending_id) for b in self.bank_transfers} == {
            b.id: (b.payout_id, b.amount, b.status, b.gateway_ref, b.pending_transfer_id) for b in transfers.values()
        }
        assert dispositions == self.dispositions
        assert events == len(self.events)
        # A wallet gets from payouts only what the model's dispositions credited to it.
        expected = {
            self.wallets[c]: sum(p.wallet for p in self.payouts if p.connection == c) for c in range(CONNECTIONS)
        }
        assert credited == {w: n for w, n in expected.items() if n}


def test_random_sequences_of_transfers_keep_every_ledger_invariant(template: Path) -> None:
    run_state_machine_as_test(
        lambda: LedgerMachine(template),  # type: ignore[arg-type]  # hypothesis takes any factory (see its docstring)
        settings=settings(
            max_examples=int(os.environ.get("LEDGER_EXAMPLES", "30")),
            stateful_step_count=int(os.environ.get("LEDGER_STEPS", "20")),
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
