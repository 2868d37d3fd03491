"""The one place money moves: a double-entry ledger.

Every amount that moves is a transfer from a debit account to a credit account
(ARCHITECTURE.md, "Money moves through one double-entry ledger"). `post()` is
the only code that writes transfers, entries or balances. In the caller's
transaction it:

- locks every account it touches, in id order (`FOR UPDATE`; SQLite's write
  transactions are already serial, see db.engine), so concurrent posts take turns
  and cannot deadlock;
- looks up each transfer's key: a key already used for the same transfer is a
  replay and moves nothing; a key used for another transfer is refused;
- refuses a transfer between two connections' accounts, between currencies, of a
  non-positive amount, or one that would take a Partner's account below zero (even
  for a moment, between two transfers of one set);
- writes the transfers, one entry per side with the running balance and the
  account's next sequence number, and the new balances, all or nothing.

Balances are credits minus debits. A Partner's WALLET holds what it may spend; a
RECEIVABLE holds minus what its invoice still owes; Revampd's own accounts go
negative as they fund credits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Sequence

from sqlalchemy import String, and_, case, cast, event, func, inspect, literal, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, aliased

from db import models as m
from db.states import (
    MOVING_PHASES,
    PARTNER_ACCOUNT_KINDS,
    SYSTEM_ACCOUNT_KINDS,
    AccountKind,
    CardChargeStatus,
    CreditStatus,
    InvoiceStatus,
    PaymentMethod,
    RefundStatus,
    TransferKind,
    TransferPhase,
    TransferStatus,
)
from services import money
from services.clock import now_or
from services.errors import DomainError, ErrorCode

PARTNER_KINDS = frozenset(PARTNER_ACCOUNT_KINDS)


@dataclass(frozen=True)
class Transfer:
    """A movement to post: `amount` minor units from `debit` to `credit` (account ids).

    With `pending`, the amount is only reserved on the debit account, until a later
    transfer with `resolves` set posts it (`void=False`) or releases it (`void=True`).
    """

    key: str
    kind: TransferKind
    debit: int
    credit: int
    amount: int
    memo: str = ""
    invoice_id: int | None = None
    affiliate_payout_id: int | None = None
    payout_id: int | None = None
    created_by_id: int | None = None
    pending: bool = False
    resolves: int | None = None
    void: bool = False

    @property
    def phase(self) -> TransferPhase:
        if self.resolves is not None:
            return TransferPhase.VOID_PENDING if self.void else TransferPhase.POST_PENDING
        return TransferPhase.PENDING if self.pending else TransferPhase.POSTED

    def same_as(self, row: m.LedgerTransfer) -> bool:
        return (row.kind, row.phase, row.debit_account_id, row.credit_account_id, row.amount, row.pending_id) == (
            self.kind, self.phase, self.debit, self.credit, self.amount, self.resolves
        )


class InsufficientFunds(DomainError):
    """A Partner's account would go below zero; says what it holds and what is missing."""

    def __init__(self, account: m.LedgerAccount, available: int, short: int) -> None:
        what = "wallet" if account.kind == AccountKind.WALLET else "payout"
        cur = account.currency_code
        super().__init__(
            ErrorCode.INSUFFICIENT_FUNDS,
            f"The {what} holds {money.format(available, cur)}; {money.format(short, cur)} more is needed. "
            f"A {what} never goes below zero.",
        )


# Told of money that moved, once the transaction that moved it commits: (kind, currency, amount in
# minor units) for each transfer posted (server/observability.py counts it for /metrics).
ON_MOVED: list[Callable[[str, str, int], None]] = []
_POSTED = "ledger.posted"


def _count_on_commit(session: AsyncSession, rows: list[m.LedgerTransfer]) -> None:
    if ON_MOVED:
        session.sync_session.info.setdefault(_POSTED, []).extend(r for r in rows if _moves(r))


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: the transaction may still roll back
        return
    rows = session.info.pop(_POSTED, None)
    # A row still persistent is committed; one whose savepoint was rolled back is transient again.
    for row in rows or ():
        if inspect(row).persistent:
            for observer in ON_MOVED:
                observer(row.kind, row.currency_code, row.amount)


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_POSTED, None)


async def post(
    session: AsyncSession, transfers: Sequence[Transfer], *, now: datetime | None = None
) -> list[m.LedgerTransfer]:
    """Post `transfers` together, or none of them; returns their rows in order.

    Posting the same transfers again with the same keys returns the first rows and
    moves nothing."""
    if not transfers:
        return []
    if len({t.key for t in transfers}) != len(transfers):
        raise DomainError(ErrorCode.TRANSFER_KEY_REUSED, "Each transfer needs a key of its own.")
    for t in transfers:
        if type(t.amount) is not int or t.amount <= 0:
            raise DomainError(ErrorCode.INVALID_AMOUNT, "A transfer moves a positive whole number of minor units.", "amount")
        if t.debit == t.credit:
            raise DomainError(ErrorCode.SAME_ACCOUNT, "A transfer needs two different accounts.")
    ids = sorted({t.debit for t in transfers} | {t.credit for t in transfers})
    # populate_existing: an account the caller read before the lock is refreshed to
    # what the lock found, or a post committed meanwhile would be lost.
    locked = (
        await session.scalars(
            select(m.LedgerAccount).where(m.LedgerAccount.id.in_(ids)).order_by(m.LedgerAccount.id).with_for_update()
            .execution_options(populate_existing=True)
        )
    ).all()
    accounts = {a.id: a for a in locked}
    if len(accounts) != len(ids):
        raise DomainError(ErrorCode.NOT_FOUND, "Account not found.")

    # Under the locks, a key already used is either this very transfer (a replay) or a conflict.
    used = {
        row.key: row
        for row in await session.scalars(
            select(m.LedgerTransfer).where(m.LedgerTransfer.key.in_([t.key for t in transfers]))
        )
    }
    if used:
        if len(used) == len(transfers) and all(t.same_as(used[t.key]) for t in transfers):
            return [used[t.key] for t in transfers]
        raise DomainError(
            ErrorCode.TRANSFER_KEY_REUSED, "These transfer keys were already used for other transfers; nothing moved."
        )

    pendings = await _pending_transfers(session, transfers)
    for t in transfers:
        _check_pair(accounts[t.debit], accounts[t.credit])
        if t.resolves is not None:
            p = pendings[t.resolves]
            if (p.debit_account_id, p.credit_account_id, p.amount) != (t.debit, t.credit, t.amount):
                raise DomainError(ErrorCode.PENDING_MISMATCH, "A resolution must name its pending transfer's accounts and amount.")

    # Work out every new balance first: nothing changes unless all of it may.
    balance = {a.id: a.balance for a in locked}
    pending = {a.id: a.pending for a in locked}
    for t in transfers:
        if t.phase is TransferPhase.PENDING:
            pending[t.debit] += t.amount
        elif t.phase is TransferPhase.VOID_PENDING:
            pending[t.debit] -= t.amount
        else:
            if t.phase is TransferPhase.POST_PENDING:
                pending[t.debit] -= t.amount
            balance[t.debit] -= t.amount
            balance[t.credit] += t.amount
        # After each transfer, not only after the set: every entry records its running
        # balance, and none of a Partner's may be below zero.
        debit = accounts[t.debit]
        short = pending[t.debit] - balance[t.debit]
        if not debit.allow_negative and short > 0:
            raise InsufficientFunds(debit, debit.balance - debit.pending, short)

    at = now_or(now)
    rows = [
        m.LedgerTransfer(
            key=t.key, kind=t.kind, phase=t.phase, pending_id=t.resolves, debit_account_id=t.debit,
            credit_account_id=t.credit, amount=t.amount, currency_code=accounts[t.debit].currency_code,
            invoice_id=t.invoice_id, affiliate_payout_id=t.affiliate_payout_id, payout_id=t.payout_id,
            memo=t.memo, created_by_id=t.created_by_id, created_at=at,
        )
        for t in transfers
    ]
    try:
        async with session.begin_nested():
            session.add_all(rows)
            await session.flush()
    except IntegrityError:
        # A transfer of another account pair took one of these keys meanwhile.
        raise DomainError(
            ErrorCode.TRANSFER_KEY_REUSED, "These transfer keys were already used for other transfers; nothing moved."
        ) from None
    _write_entries(session, rows, accounts, at)
    for account in locked:
        account.balance, account.pending = balance[account.id], pending[account.id]
    await session.flush()
    _count_on_commit(session, rows)
    return rows


async def _pending_transfers(
    session: AsyncSession, transfers: Sequence[Transfer]
) -> dict[int, m.LedgerTransfer]:
    """The pending transfers these resolve, each still unresolved."""
    wanted = [t.resolves for t in transfers if t.resolves is not None]
    if not wanted:
        return {}
    if len(set(wanted)) != len(wanted):
        raise DomainError(ErrorCode.PENDING_RESOLVED, "A pending transfer is posted or voided once.")
    found = {
        row.id: row
        for row in await session.scalars(
            select(m.LedgerTransfer).where(m.LedgerTransfer.id.in_(wanted), m.LedgerTransfer.phase == TransferPhase.PENDING)
        )
    }
    if len(found) != len(wanted):
        raise DomainError(ErrorCode.NOT_FOUND, "Pending transfer not found.")
    resolved = await session.scalar(select(m.LedgerTransfer.id).where(m.LedgerTransfer.pending_id.in_(wanted)))
    if resolved is not None:
        raise DomainError(ErrorCode.PENDING_RESOLVED, "This pending transfer was already posted or voided.")
    return found


def _check_pair(debit: m.LedgerAccount, credit: m.LedgerAccount) -> None:
    if debit.currency_code != credit.currency_code:
        raise DomainError(ErrorCode.CURRENCY_MISMATCH, "Money moves only between accounts of one currency.")
    if (
        debit.connection_id is not None
        and credit.connection_id is not None
        and debit.connection_id != credit.connection_id
    ):
        raise DomainError(
            ErrorCode.CROSS_CONNECTION, "Credits of one connection can only be used within that connection."
        )


def _write_entries(
    session: AsyncSession, rows: list[m.LedgerTransfer], accounts: dict[int, m.LedgerAccount], at: datetime
) -> None:
    """Two entries per posted transfer, with each account's running balance from where it stood."""
    running = {a.id: a.balance for a in accounts.values()}
    for row in rows:
        if not _moves(row):
            continue
        for account_id, signed in ((row.debit_account_id, -row.amount), (row.credit_account_id, row.amount)):
            account = accounts[account_id]
            account.entry_count += 1
            running[account_id] += signed
            session.add(
                m.LedgerEntry(
                    account_id=account_id, transfer_id=row.id, sequence=account.entry_count,
                    amount=signed, balance_after=running[account_id], created_at=at,
                )
            )


def _moves(row: m.LedgerTransfer) -> bool:
    return row.phase in MOVING_PHASES


# ---- Accounts ------------------------------------------------------------------
# An account is named by a code made here only, from what it is: "wallet:<connection>",
# "receivable:<invoice>", "payout:<payout>", and "<KIND>:<currency>:<connection>" for Revampd's own.


@dataclass(frozen=True)
class Account:
    """An account to find or make (`account`, `accounts`): its code and what it is. Made only by
    wallet_of, receivable_of, payout_of and system_part."""

    code: str
    kind: AccountKind
    currency: str
    connection_id: int | None = None
    invoice_id: int | None = None
    payout_id: int | None = None

    def row(self, now: datetime) -> dict[str, object]:
        """The values of its row when it is made."""
        return dict(
            code=self.code, kind=self.kind, currency_code=self.currency, connection_id=self.connection_id,
            invoice_id=self.invoice_id, payout_id=self.payout_id, allow_negative=self.kind not in PARTNER_KINDS,
            balance=0, pending=0, entry_count=0, created_at=now,
        )


def wallet_code(connection_id: int) -> str:
    return f"wallet:{connection_id}"


def wallet_of(connection: m.Connection) -> Account:
    return Account(wallet_code(connection.id), AccountKind.WALLET, connection.currency_code, connection.id)


def receivable_of(invoice: m.Invoice) -> Account:
    return Account(
        f"receivable:{invoice.id}", AccountKind.RECEIVABLE, invoice.currency_code, invoice.connection_id, invoice.id
    )


def payout_of(payout: m.Payout) -> Account:
    return Account(
        f"payout:{payout.id}", AccountKind.PAYOUT, payout.currency_code, payout.connection_id, payout_id=payout.id
    )


def system_part(kind: AccountKind, currency: str, connection_id: int) -> Account:
    """One of Revampd's own accounts in `currency`: its part for one connection.

    Revampd keeps each of its accounts as one sub-account per connection, so that a
    Partner's money movement locks only rows of its own: no row that every Partner's
    movements would take turns on (post() locks each account it touches). Revampd's
    balance of a kind is the sum of its parts (`system_totals`, `revampd-bff ledger totals`)."""
    assert kind in SYSTEM_ACCOUNT_KINDS, kind
    return Account(f"{kind}:{currency}:{connection_id}", kind, currency)


def _insert(session: AsyncSession) -> Callable[..., Any]:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def account(
    session: AsyncSession, wanted: Account, now: datetime | None = None, *, likely_new: bool = False
) -> m.LedgerAccount:
    """The account, made on first use (safe under concurrency): one statement when it
    exists, two when it is made (one when `likely_new`: it is made first and read only if
    it existed after all)."""
    by_code = select(m.LedgerAccount).where(m.LedgerAccount.code == wanted.code)
    if not likely_new and (found := await session.scalar(by_code)) is not None:
        return found
    made: m.LedgerAccount | None = await session.scalar(
        _insert(session)(m.LedgerAccount).values(**wanted.row(now_or(now)))
        .on_conflict_do_nothing(index_elements=["code"]).returning(m.LedgerAccount)
    )
    if made is None:  # made meanwhile by another transaction (or, when likely_new, before)
        made = await session.scalar(by_code)
    assert made is not None
    return made


async def accounts(session: AsyncSession, wanted: Sequence[Account], now: datetime) -> dict[str, m.LedgerAccount]:
    """Many accounts at once, by code, each made on first use (safe under concurrency): two
    statements however many (for the billing run's batches)."""
    if not wanted:
        return {}
    await session.execute(
        _insert(session)(m.LedgerAccount).on_conflict_do_nothing(index_elements=["code"]),
        [a.row(now) for a in wanted],
    )
    found = {a.code: a for a in await session.scalars(
        select(m.LedgerAccount).where(m.LedgerAccount.code.in_([a.code for a in wanted])))}
    assert len(found) == len({a.code for a in wanted})
    return found


async def system_account(
    session: AsyncSession, kind: AccountKind, currency: str, connection_id: int, now: datetime | None = None
) -> m.LedgerAccount:
    """Revampd's account of `kind` in `currency`: its part for one connection (`system_part`)."""
    return await account(session, system_part(kind, currency, connection_id), now)


async def wallet_account(
    session: AsyncSession, connection: m.Connection, now: datetime | None = None
) -> m.LedgerAccount:
    return await account(session, wallet_of(connection), now)


async def receivable_account(
    session: AsyncSession, invoice: m.Invoice, now: datetime | None = None, *, likely_new: bool = False
) -> m.LedgerAccount:
    return await account(session, receivable_of(invoice), now, likely_new=likely_new)


async def payout_account(session: AsyncSession, payout: m.Payout, now: datetime | None = None) -> m.LedgerAccount:
    return await account(session, payout_of(payout), now)


@dataclass(frozen=True)
class SystemTotal:
    """Revampd's balance of one kind of account in one currency, over all its parts."""

    kind: str
    currency: str
    balance: int
    pending: int
    accounts: int


async def system_totals(session: AsyncSession) -> list[SystemTotal]:
    """Revampd's own accounts, one total per kind and currency (one statement)."""
    A = m.LedgerAccount
    rows = await session.execute(
        select(A.kind, A.currency_code, func.sum(A.balance), func.sum(A.pending), func.count())
        .where(A.kind.in_(SYSTEM_ACCOUNT_KINDS)).group_by(A.kind, A.currency_code)
        .order_by(A.kind, A.currency_code)
    )
    return [SystemTotal(kind, currency, int(balance), int(pending), n) for kind, currency, balance, pending, n in rows]


# ---- Provenance ------------------------------------------------------------------

async def funded_by_many(
    session: AsyncSession, debits: Sequence[m.LedgerEntry]
) -> dict[int, list[tuple[int, int]]]:
    """For each debit entry of a Partner's account (by its id), the credits it spent:
    (credit entry id, amount spent from it), the most recent credit first; one statement
    for them all.

    Last in, first out: replaying the account's entries in sequence, each debit spends the
    most recent credits not yet spent. So a payment made just after a payout was credited
    to the wallet is traced to that payout, as the Partner who credited it to pay the
    invoice expects. The account never goes below zero, so a debit is always covered."""
    E = m.LedgerEntry
    wanted: dict[int, set[int]] = {}  # account id -> ids of the debits asked about
    last: dict[int, int] = {}  # account id -> the highest sequence needed
    for d in debits:
        wanted.setdefault(d.account_id, set()).add(d.id)
        last[d.account_id] = max(last.get(d.account_id, 0), d.sequence)
    found: dict[int, list[tuple[int, int]]] = {d.id: [] for d in debits}
    if not wanted:
        return found
    rows = await session.execute(
        select(E.account_id, E.id, E.amount, E.sequence)
        .where(E.account_id.in_(list(wanted)), E.sequence <= max(last.values()))
        .order_by(E.account_id, E.sequence)
    )
    replay: dict[int, list[list[int]]] = {}  # account id -> unspent [credit entry id, left], oldest first
    for account_id, entry_id, amount, sequence in rows:
        if sequence > last[account_id]:
            continue
        unspent = replay.setdefault(account_id, [])
        if amount > 0:
            unspent.append([entry_id, amount])
            continue
        need, target = -amount, entry_id in wanted[account_id]
        while need and unspent:
            top = unspent[-1]
            take = min(need, top[1])
            if target:
                found[entry_id].append((top[0], take))
            top[1] -= take
            need -= take
            if not top[1]:
                unspent.pop()
    return found


# ---- Verification --------------------------------------------------------------

async def verify(session: AsyncSession) -> list[str]:
    """Every invariant of the ledger, checked in the database; what is wrong, or nothing.

    Each account's balance and entry count equal its entries, whose running balances
    and sequence numbers follow one another; each currency's entries sum to zero; no
    Partner account is below zero; each posted transfer has its two entries, each
    pending one is resolved at most once and reserved on its account until then;
    each invoice's amount paid, each payment and each affiliate payout's status agree
    with the ledger."""
    problems: list[str] = []
    E, A, T = m.LedgerEntry, m.LedgerAccount, m.LedgerTransfer
    sums = (
        select(E.account_id, func.coalesce(func.sum(E.amount), 0).label("total"), func.count().label("n"),
               func.max(E.sequence).label("last"))
        .group_by(E.account_id)
        .subquery()
    )
    for code, balance, count, total, n, last in await session.execute(
        select(A.code, A.balance, A.entry_count, sums.c.total, sums.c.n, sums.c.last)
        .outerjoin(sums, sums.c.account_id == A.id)
        .where(or_(A.balance != func.coalesce(sums.c.total, 0), A.entry_count != func.coalesce(sums.c.n, 0),
                   A.entry_count != func.coalesce(sums.c.last, 0)))
    ):
        problems.append(f"account {code}: balance {balance} and {count} entries, but its entries sum to "
                        f"{total or 0} over {n or 0} entries numbered up to {last or 0}")
    running = select(
        E.id, E.account_id, E.balance_after,
        func.sum(E.amount).over(partition_by=E.account_id, order_by=E.sequence).label("run"),
    ).subquery()
    for entry_id, account_id, after, run in await session.execute(
        select(running).where(running.c.balance_after != running.c.run)
    ):
        problems.append(f"entry {entry_id} of account {account_id}: balance after {after}, running sum {run}")
    for currency, total in await session.execute(
        select(A.currency_code, func.sum(E.amount)).join(E, E.account_id == A.id)
        .group_by(A.currency_code).having(func.sum(E.amount) != 0)
    ):
        problems.append(f"{currency}: entries sum to {total}, not zero")
    for code, balance, pending in await session.execute(
        select(A.code, A.balance, A.pending).where(A.allow_negative.is_(False), A.balance - A.pending < 0)
    ):
        problems.append(f"account {code} is overdrawn: balance {balance}, pending {pending}")
    for code, balance_after in await session.execute(
        select(A.code, func.min(E.balance_after)).join(E, E.account_id == A.id)
        .where(A.allow_negative.is_(False)).group_by(A.code).having(func.min(E.balance_after) < 0)
    ):
        problems.append(f"account {code} went below zero ({balance_after})")
    sides = (
        select(E.transfer_id, func.count().label("n"), func.sum(E.amount).label("net"))
        .group_by(E.transfer_id).subquery()
    )
    for key, phase, n, net in await session.execute(
        select(T.key, T.phase, sides.c.n, sides.c.net).outerjoin(sides, sides.c.transfer_id == T.id).where(
            or_(
                and_(T.phase.in_(MOVING_PHASES), or_(sides.c.n.is_(None), sides.c.n != 2, sides.c.net != 0)),
                and_(T.phase.in_((TransferPhase.PENDING, TransferPhase.VOID_PENDING)), sides.c.n.is_not(None)),
            )
        )
    ):
        problems.append(f"transfer {key} ({phase}) has {n or 0} entries summing to {net or 0}")
    resolution = aliased(T)
    open_pending = (
        select(T.debit_account_id.label("account_id"), func.sum(T.amount).label("reserved"))
        .outerjoin(resolution, resolution.pending_id == T.id)
        .where(T.phase == TransferPhase.PENDING, resolution.id.is_(None))
        .group_by(T.debit_account_id).subquery()
    )
    for code, pending, reserved in await session.execute(
        select(A.code, A.pending, open_pending.c.reserved).outerjoin(open_pending, open_pending.c.account_id == A.id)
        .where(A.pending != func.coalesce(open_pending.c.reserved, 0))
    ):
        problems.append(f"account {code}: pending {pending}, but open pending transfers reserve {reserved or 0}")
    problems += await _verify_invoices(session)
    problems += await _verify_affiliate_payouts(session)
    problems += await _verify_payouts(session)
    problems += await _verify_clawbacks(session)
    problems += await _verify_card_charges(session)
    problems += await _verify_credit_notes(session)
    return problems


async def _verify_credit_notes(session: AsyncSession) -> list[str]:
    """Each credit note moved its total back into its invoice's receivable once and is settled
    by refunds of the rest of it; each refund agrees with its transfers (services/refunds.py);
    each connection's credit notes are numbered without a gap."""
    problems: list[str] = []
    T, CN, R, A, C = m.LedgerTransfer, m.CreditNote, m.Refund, m.LedgerAccount, m.Connection
    refunds = select(R.credit_note_id, func.sum(R.amount).label("refunded")).group_by(R.credit_note_id).subquery()
    for number, total, due_reduced, reduced, refunded in await session.execute(
        select(CN.number, CN.total, CN.due_reduced, T.amount, refunds.c.refunded)
        .outerjoin(T, T.key == literal("credit_note:", String) + cast(CN.id, String))
        .outerjoin(refunds, refunds.c.credit_note_id == CN.id)
    ):
        if reduced != total or (refunded or 0) != total - due_reduced:
            problems.append(f"credit note {number} of {total}: the ledger took {reduced or 0} off its invoice, "
                            f"and its refunds give back {refunded or 0} of the {total - due_reduced} paid")
    resolution = aliased(T)
    to_wallet = aliased(T)
    expected = {RefundStatus.PENDING: None, RefundStatus.SUCCEEDED: TransferPhase.POST_PENDING,
                RefundStatus.FAILED: TransferPhase.VOID_PENDING}
    for rid, method, status, amount, t, phase, wallet_t, credit_kind in await session.execute(
        select(R.id, R.method, R.status, R.amount, T, resolution.phase, to_wallet, A.kind)
        .join(T, T.id == R.transfer_id).join(A, A.id == T.credit_account_id)
        .outerjoin(resolution, resolution.pending_id == T.id)
        .outerjoin(to_wallet, to_wallet.id == R.wallet_transfer_id)
    ):
        card = method == PaymentMethod.CARD
        right = (t.kind, t.amount, t.phase, credit_kind) == (
            TransferKind.REFUND, amount, TransferPhase.PENDING if card else TransferPhase.POSTED,
            AccountKind.CARD_PROCESSOR if card else AccountKind.WALLET,
        ) and phase == (expected[RefundStatus(status)] if card else None)
        if wallet_t is not None:
            right = right and (wallet_t.kind, wallet_t.amount, wallet_t.phase) == (
                TransferKind.REFUND, amount, TransferPhase.POSTED)
        if not right:
            problems.append(f"refund {rid} of {amount} by {method} is {status}, but its transfer is a {t.phase} "
                            f"{t.kind} of {t.amount} to a {credit_kind} account, {'resolved as ' + phase if phase else 'unresolved'}")
    for cid, next_number, made in await session.execute(
        select(C.id, C.next_credit_note_number, func.count(CN.id)).outerjoin(CN, CN.connection_id == C.id)
        .group_by(C.id, C.next_credit_note_number).having(C.next_credit_note_number - 1 != func.count(CN.id))
    ):
        problems.append(f"connection {cid}: {made} credit notes, but its counter is at {next_number}")
    return problems


async def _verify_card_charges(session: AsyncSession) -> list[str]:
    """A card charge that SUCCEEDED made one CARD payment of its amount into its invoice; one
    PENDING or DECLINED made none."""
    C, P = m.CardCharge, m.InvoicePayment
    return [
        f"card charge {cid} of {amount} is {status}, but "
        + (f"it made payment {pid} of {paid} by {method} into invoice {into}" if pid is not None else "it made no payment")
        for cid, status, amount, invoice_id, pid, paid, method, into in await session.execute(
            select(C.id, C.status, C.amount, C.invoice_id, P.id, P.amount, P.method, P.invoice_id)
            .outerjoin(P, P.id == C.payment_id)
        )
        if (status == CardChargeStatus.SUCCEEDED) != (pid is not None)
        or pid is not None and (paid, method, into) != (amount, PaymentMethod.CARD, invoice_id)
    ]


async def _verify_invoices(session: AsyncSession) -> list[str]:
    problems: list[str] = []
    T, A, Inv, P = m.LedgerTransfer, m.LedgerAccount, m.Invoice, m.InvoicePayment
    paid = (
        select(
            A.invoice_id,
            func.sum(case((and_(T.kind == TransferKind.INVOICE_PAYMENT, T.credit_account_id == A.id), T.amount), else_=0)
                     - case((and_(T.kind == TransferKind.REVERSAL, T.debit_account_id == A.id), T.amount), else_=0))
            .label("paid"),
        )
        .join(T, or_(T.credit_account_id == A.id, T.debit_account_id == A.id))
        .where(A.kind == AccountKind.RECEIVABLE, T.phase.in_(MOVING_PHASES))
        .group_by(A.invoice_id).subquery()
    )
    # Refunded: each REFUND out of the receivable, a card refund's pending one included until it is
    # voided (the processor refused: the REFUND to the wallet that replaced it counts instead).
    refunded = (
        select(
            T.invoice_id,
            func.sum(case((T.phase == TransferPhase.VOID_PENDING, -T.amount), else_=T.amount)).label("refunded"),
        )
        .join(A, A.id == T.debit_account_id)
        .where(T.kind == TransferKind.REFUND, A.kind == AccountKind.RECEIVABLE, T.phase != TransferPhase.POST_PENDING)
        .group_by(T.invoice_id).subquery()
    )
    for number, status, total, amount_paid, ledger_paid, amount_refunded, ledger_refunded, due in await session.execute(
        select(Inv.number, Inv.status, Inv.total, Inv.amount_paid, paid.c.paid, Inv.amount_refunded,
               refunded.c.refunded, -(A.balance - A.pending))
        .outerjoin(paid, paid.c.invoice_id == Inv.id)
        .outerjoin(refunded, refunded.c.invoice_id == Inv.id)
        .outerjoin(A, A.invoice_id == Inv.id)
    ):
        ledger_paid = ledger_paid or 0
        if amount_refunded != (ledger_refunded or 0):
            problems.append(f"invoice {number}: amount refunded {amount_refunded}, the ledger says {ledger_refunded or 0}")
        written_off = status in (InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE)
        expected_due = 0 if written_off or (status == InvoiceStatus.DRAFT and due is None) else total - amount_paid
        if amount_paid != ledger_paid:
            problems.append(f"invoice {number}: amount paid {amount_paid}, the ledger says {ledger_paid}")
        elif (due or 0) != expected_due:
            problems.append(f"invoice {number} ({status}): {due or 0} still due in the ledger, expected {expected_due}")
    for pid, number, amount, t_amount, kind in await session.execute(
        select(P.id, Inv.number, P.amount, T.amount, T.kind).join(Inv, Inv.id == P.invoice_id)
        .join(T, T.id == P.transfer_id).where(or_(T.amount != P.amount, T.kind != TransferKind.INVOICE_PAYMENT, T.invoice_id != P.invoice_id))
    ):
        problems.append(f"payment {pid} of invoice {number}: {amount}, but its transfer is a {kind} of {t_amount}")
    return problems


async def _verify_affiliate_payouts(session: AsyncSession) -> list[str]:
    problems: list[str] = []
    T, AP, A = m.LedgerTransfer, m.AffiliatePayout, m.LedgerAccount
    credits = (
        select(T.affiliate_payout_id, func.count().label("n"), func.min(T.id).label("tid"))
        .where(T.kind == TransferKind.AFFILIATE_PAYOUT).group_by(T.affiliate_payout_id).subquery()
    )
    for ap_id, status, transfer_id, n, tid in await session.execute(
        select(AP.id, AP.credit_status, AP.transfer_id, credits.c.n, credits.c.tid)
        .outerjoin(credits, credits.c.affiliate_payout_id == AP.id)
    ):
        if status == CreditStatus.APPLIED and (n != 1 or tid != transfer_id):
            problems.append(f"affiliate payout {ap_id} is APPLIED but was credited {n or 0} times")
        if status == CreditStatus.PENDING and n:
            problems.append(f"affiliate payout {ap_id} is PENDING but was credited {n} times")
    for ap_id, amount, t_amount in await session.execute(
        select(AP.id, AP.amount, T.amount)
        .join(T, T.id == AP.transfer_id).join(A, A.id == T.credit_account_id)
        .where(or_(T.amount != AP.amount, A.kind != AccountKind.WALLET, A.connection_id != AP.connection_id))
    ):
        problems.append(f"affiliate payout {ap_id} of {amount} was credited {t_amount} to another account")
    return problems


async def _verify_payouts(session: AsyncSession) -> list[str]:
    """Each payout's parts agree with its account and transfers, its amounts with its Sub-Org
    transactions, and each bank transfer's status with its reservation in the ledger."""
    problems: list[str] = []
    T, A, P, B, S = m.LedgerTransfer, m.LedgerAccount, m.Payout, m.BankTransfer, m.SubOrgTransaction
    moved = (
        select(
            T.payout_id,
            func.sum(case((T.kind == TransferKind.PAYOUT_CREDIT, T.amount), else_=0)).label("credited"),
            func.sum(case((and_(T.kind == TransferKind.BANK_TRANSFER, T.phase == TransferPhase.POST_PENDING), T.amount),
                          (T.kind == TransferKind.BANK_RETURN, -T.amount), else_=0))
            .label("paid"),
            func.sum(case((T.kind == TransferKind.CLAWBACK, T.amount), else_=0)).label("clawed_back"),
        )
        .where(T.payout_id.is_not(None)).group_by(T.payout_id).subquery()
    )
    earned = (
        select(S.payout_id, func.sum(S.gross_amount).label("gross"), func.sum(S.fee_amount).label("fees"),
               func.sum(S.partner_amount).label("net"))
        .where(S.payout_id.is_not(None)).group_by(S.payout_id).subquery()
    )
    for row in await session.execute(
        select(P.id, P.amount, P.gross_amount, P.fee_amount, P.available_amount, P.wallet_amount,
               P.bank_in_flight_amount, P.bank_paid_amount, P.clawed_back_amount, A.id.label("account"), A.balance,
               A.pending, moved.c.credited, moved.c.paid, moved.c.clawed_back, earned.c.gross, earned.c.fees,
               earned.c.net)
        .outerjoin(A, A.payout_id == P.id).outerjoin(moved, moved.c.payout_id == P.id)
        .outerjoin(earned, earned.c.payout_id == P.id)
    ):
        if row.account is None:
            problems.append(f"payout {row.id} has no ledger account")
            continue
        if (row.available_amount, row.bank_in_flight_amount) != (row.balance - row.pending, row.pending):
            problems.append(
                f"payout {row.id}: {row.available_amount} available and {row.bank_in_flight_amount} in flight, "
                f"but its account holds {row.balance - row.pending} available and reserves {row.pending}"
            )
        if row.wallet_amount != (row.credited or 0) or row.bank_paid_amount != (row.paid or 0):
            problems.append(
                f"payout {row.id}: {row.wallet_amount} to the wallet and {row.bank_paid_amount} paid to banks, "
                f"but the ledger moved {row.credited or 0} and {row.paid or 0}"
            )
        if row.clawed_back_amount != (row.clawed_back or 0):
            problems.append(
                f"payout {row.id}: {row.clawed_back_amount} clawed back, but its CLAWBACK transfers took "
                f"{row.clawed_back or 0}"
            )
        if row.net is not None and (row.gross_amount, row.fee_amount, row.amount) != (row.gross, row.fees, row.net):
            problems.append(
                f"payout {row.id}: gross {row.gross_amount}, fees {row.fee_amount}, net {row.amount}, but its "
                f"transactions add up to {row.gross}, {row.fees} and {row.net}"
            )
    resolution = aliased(T)
    TS, TP = TransferStatus, TransferPhase
    expected: dict[str, TransferPhase | None] = {TS.PENDING: None, TS.IN_TRANSIT: None, TS.PAID: TP.POST_PENDING, TS.FAILED: TP.VOID_PENDING,
                TS.CANCELED: TP.VOID_PENDING, TS.RETURNED: TP.POST_PENDING}
    back = aliased(T)
    for transfer_id, status, amount, reserved, phase, payout_account, bank_out, returned in await session.execute(
        select(B.id, B.status, B.amount, T.amount, resolution.phase, T.debit_account_id, T.credit_account_id,
               back)
        .join(T, T.id == B.pending_transfer_id).outerjoin(resolution, resolution.pending_id == T.id)
        .outerjoin(back, back.id == B.return_transfer_id)
    ):
        if amount != reserved or phase != expected[status]:
            problems.append(
                f"bank transfer {transfer_id} of {amount} is {status}, but its reservation of {reserved} is "
                f"{'resolved as ' + phase if phase else 'unresolved'}"
            )
        # Returned: one BANK_RETURN of its amount from where it went back to its payout; else none.
        if (status == TransferStatus.RETURNED) != (returned is not None) or returned is not None and (
            (returned.kind, returned.phase, returned.amount, returned.debit_account_id, returned.credit_account_id)
            != (TransferKind.BANK_RETURN, TransferPhase.POSTED, amount, bank_out, payout_account)
        ):
            problems.append(
                f"bank transfer {transfer_id} of {amount} is {status}, but "
                + (f"its return is ledger transfer {returned.id} ({returned.kind} of {returned.amount})"
                   if returned is not None else "no ledger transfer returns it")
            )
    strays = await session.scalars(
        select(T.id).where(T.kind == TransferKind.BANK_RETURN).outerjoin(B, B.return_transfer_id == T.id).where(B.id.is_(None))
    )
    problems += [f"ledger transfer {tid} returns no bank transfer" for tid in strays]
    return problems


async def _verify_clawbacks(session: AsyncSession) -> list[str]:
    """Each clawback's amount less what is outstanding is what its recoveries took; each recovery
    is one posted CLAWBACK transfer of its amount from its payout's account to Revampd's Sub-Org
    earnings; no other CLAWBACK transfer; no transaction clawed back beyond the Partner's share
    of it (services/clawbacks.py)."""
    problems: list[str] = []
    T, A, C, R, S = m.LedgerTransfer, m.LedgerAccount, m.Clawback, m.ClawbackRecovery, m.SubOrgTransaction
    recovered = select(R.clawback_id, func.sum(R.amount).label("taken")).group_by(R.clawback_id).subquery()
    for cid, amount, outstanding, taken in await session.execute(
        select(C.id, C.amount, C.outstanding, recovered.c.taken).outerjoin(recovered, recovered.c.clawback_id == C.id)
        .where(C.amount - C.outstanding != func.coalesce(recovered.c.taken, 0))
    ):
        problems.append(f"clawback {cid} of {amount}: {outstanding} outstanding, so {amount - outstanding} taken, "
                        f"but its recoveries took {taken or 0}")
    debit, credit = aliased(A), aliased(A)
    for rid, payout_id, amount, t, debit_kind, debit_payout, credit_kind in await session.execute(
        select(R.id, R.payout_id, R.amount, T, debit.kind, debit.payout_id, credit.kind)
        .join(T, T.id == R.transfer_id).join(debit, debit.id == T.debit_account_id)
        .join(credit, credit.id == T.credit_account_id)
    ):
        if (t.kind, t.phase, t.amount, t.payout_id, debit_kind, debit_payout, credit_kind) != (
            TransferKind.CLAWBACK, TransferPhase.POSTED, amount, payout_id, AccountKind.PAYOUT, payout_id,
            AccountKind.SUB_ORG_EARNINGS,
        ):
            problems.append(f"clawback recovery {rid} of {amount} from payout {payout_id}, but its transfer {t.key} is a "
                            f"{t.phase} {t.kind} of {t.amount} from a {debit_kind} account to a {credit_kind} account")
    strays = await session.scalars(
        select(T.id).outerjoin(R, R.transfer_id == T.id).where(T.kind == TransferKind.CLAWBACK, R.id.is_(None))
    )
    problems += [f"ledger transfer {tid} is a CLAWBACK of no clawback recovery" for tid in strays]
    for external_id, share, clawed_back, n in await session.execute(
        select(S.external_id, S.partner_amount, func.sum(C.amount), func.count(C.id)).join(C, C.transaction_id == S.id)
        .where(C.connection_id == S.connection_id)
        .group_by(S.id, S.external_id, S.partner_amount).having(func.sum(C.amount) > S.partner_amount)
    ):
        problems.append(f"Sub-Org transaction {external_id}: {n} clawbacks took back {clawed_back}, more than its "
                        f"share of {share}")
    for cid, external_id in await session.execute(
        select(C.id, C.external_id).join(S, S.id == C.transaction_id).where(C.connection_id != S.connection_id)
    ):
        problems.append(f"clawback {cid} ({external_id}) reverses another connection's transaction")
    return problems
