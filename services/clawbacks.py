"""Clawbacks: Sub-Org transactions refunded or charged back after they were recorded.

The Partner's share of a Sub-Org transaction is paid out by the payout of its period
(services/earnings.py). When the Sub-Org is refunded, or its bank charges the payment back,
Revampd takes that share (or the part of it reversed) back: a clawback, from payouts, never
from the wallet:

- at once from the payout the transaction was counted in, as far as money is still available
  there (`available_amount`: what is on its way to a bank, or was credited or paid out, is not);
- the rest (all of it when the transaction is in no payout yet) is `outstanding`: each payout
  the connection is paid next is funded in full, then its outstanding clawbacks, oldest first,
  are taken from it in the same transaction (`net`, called by close_period), as far as it
  holds; what is still left waits for the payout after.

Each taking is a ClawbackRecovery and one CLAWBACK ledger transfer from the payout's account
back to Revampd's SUB_ORG_EARNINGS part for the connection (the account that funded it); the
payout's `clawed_back_amount` is kept from those transfers (services.payouts.refresh). Nothing
goes below zero: a payout gives at most what is available on it (and the ledger refuses more),
and over all its clawbacks a transaction gives back at most its partner_amount.

A reversal arrives once: a connection holds one clawback per external id, and one sent again
(in a later batch, twice in one batch, or by two batches at once) is reported as a duplicate
and never taken twice. Locks are taken in the order every writer of payouts takes them: the
connection's row (the clawbacks of a connection and the close of its period take turns there,
so the duplicate and share checks, and `outstanding`, are read and written by one at a time),
then the payout rows in id order (a disposition or a bank event locks its payout row before
the payout's account), then the ledger accounts (ledger.post).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db import models as m
from db.states import AccountKind, ClawbackKind, TransferKind
from services import idempotency, ledger, money, payouts
from services.access import Principal, Role
from services.batches import chunks
from services.clock import now_or
from services.errors import DomainError, ErrorCode, InvalidInput, NotFound

MAX_PER_CALL = 1000  # clawbacks in one recordClawbacks
MAX_EXTERNAL_ID = 100
MAX_REASON = 300
KINDS = tuple(k.value for k in ClawbackKind)
FIELD = "clawbacks"

T = TypeVar("T")


# ---- checking what was sent ------------------------------------------------------------

@dataclass(frozen=True)
class ClawbackInput:
    """A reversal as it was sent; a missing field is None. `amount` None: all of the
    transaction's share not yet clawed back (its whole partner_amount, the first time)."""

    transaction_external_id: str | None
    external_id: str | None
    kind: str | None
    amount: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Checked:
    transaction_external_id: str
    external_id: str
    kind: str
    amount: int | None
    reason: str


def _external_id(value: str | None, name: str) -> str:
    code = ErrorCode.INVALID_EXTERNAL_ID
    if value is None:
        raise DomainError(code, f"{name} is required.", name)
    if not 1 <= len(value) <= MAX_EXTERNAL_ID:
        raise DomainError(code, f"{name} must be 1 to {MAX_EXTERNAL_ID} characters, got {len(value):,}.", name)
    if not value.isprintable():
        raise DomainError(code, f"{name} must be printable text, without control characters or line breaks.", name)
    if value != value.strip():
        raise DomainError(code, f"{name} must not begin or end with spaces.", name)
    return value


def _kind(value: str | None) -> str:
    if value is None:
        raise DomainError(ErrorCode.INVALID_KIND, "kind is required.", "kind")
    if value not in KINDS:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise DomainError(ErrorCode.INVALID_KIND, f"kind must be {' or '.join(KINDS)}, got {shown!r}.", "kind")
    return value


def _reason(value: str | None) -> str:
    text = (value or "").strip()
    if len(text) > MAX_REASON:
        raise DomainError(ErrorCode.INVALID_REASON, f"reason must be at most {MAX_REASON} characters, got "
                          f"{len(text):,}.", "reason")
    if not text.isprintable():
        raise DomainError(ErrorCode.INVALID_REASON, "reason must be printable text on one line.", "reason")
    return text


def _check_one(item: ClawbackInput, currency: str) -> tuple[Checked | None, list[DomainError]]:
    """One item checked field by field; every field that is wrong, by its name."""
    errors: list[DomainError] = []

    def attempt(parse: Callable[[], T]) -> T | None:
        try:
            return parse()
        except DomainError as err:
            errors.append(err)
            return None

    transaction = attempt(lambda: _external_id(item.transaction_external_id, "transactionExternalId"))
    external_id = attempt(lambda: _external_id(item.external_id, "externalId"))
    kind = attempt(lambda: _kind(item.kind))
    amount = attempt(lambda: None if item.amount is None else money.parse(item.amount, currency, "amount"))
    reason = attempt(lambda: _reason(item.reason))
    if errors:
        return None, errors
    assert transaction is not None and external_id is not None and kind is not None and reason is not None
    return Checked(transaction, external_id, kind, amount, reason), []


def check(items: Sequence[ClawbackInput], currency: str) -> tuple[list[Checked], list[DomainError]]:
    """Each item with its amount in minor units of `currency`, and an error for every bad
    field of every item, its field ["clawbacks", "<index>", "<name>"]."""
    checked: list[Checked] = []
    errors: list[DomainError] = []
    for i, item in enumerate(items):
        one, found = _check_one(item, currency)
        errors += [DomainError(e.code, e.message, [FIELD, str(i), *(e.field or [])]) for e in found]
        if one is not None:
            checked.append(one)
    return checked, errors


# ---- recording and taking --------------------------------------------------------------

@dataclass(frozen=True)
class Recorded:
    """What a batch did: the clawbacks it recorded and the external ids it ignored (each in
    the batch's order), and the payouts it took money from, as they now stand."""

    connection: m.Connection
    clawbacks: list[m.Clawback]
    duplicates: list[str]
    payouts: list[m.Payout]
    recoveries: list[m.ClawbackRecovery] = field(default_factory=list)
    # The indexes in the batch of those recorded, and of those ignored.
    recorded_at: list[int] = field(default_factory=list)
    ignored_at: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Taking:
    clawback: m.Clawback
    payout: m.Payout
    amount: int
    memo: str


async def _locked_connection(session: AsyncSession, connection_id: int) -> m.Connection:
    connection = await session.scalar(
        select(m.Connection).where(m.Connection.id == connection_id).with_for_update()
        .execution_options(populate_existing=True)
    )
    if connection is None:
        raise NotFound("RevampdConnection", "connectionId")
    return connection


def _memo(kind: str, transaction: m.SubOrgTransaction) -> str:
    what = "Refund" if kind == ClawbackKind.REFUND else "Chargeback"
    return f"{what} of Sub-Org transaction {transaction.external_id} ({transaction.sub_org_name}) clawed back"


async def _take(session: AsyncSession, connection_id: int, currency: str, takings: Sequence[_Taking],
                now: datetime) -> list[m.ClawbackRecovery]:
    """Post the takings together (payout -> SUB_ORG_EARNINGS, CLAWBACK), each with its recovery;
    each clawback's outstanding goes down by what it took. The payouts are row-locked by the
    caller, and refreshed by it."""
    if not takings:
        return []
    earnings = await ledger.system_account(session, AccountKind.SUB_ORG_EARNINGS, currency, connection_id, now)
    accounts: dict[int, m.LedgerAccount] = {}
    for t in takings:
        if t.payout.id not in accounts:
            accounts[t.payout.id] = await ledger.payout_account(session, t.payout, now)
    posted = await ledger.post(session, [ledger.Transfer(
        f"clawback:{t.clawback.id}:payout:{t.payout.id}", TransferKind.CLAWBACK, accounts[t.payout.id].id, earnings.id,
        t.amount, memo=t.memo, payout_id=t.payout.id, created_by_id=t.clawback.created_by_id,
    ) for t in takings], now=now)
    recoveries = [
        m.ClawbackRecovery(clawback_id=t.clawback.id, payout_id=t.payout.id, amount=t.amount, transfer_id=row.id,
                           created_at=now)
        for t, row in zip(takings, posted, strict=True)
    ]
    for t in takings:
        t.clawback.outstanding -= t.amount
    session.add_all(recoveries)
    await session.flush()
    return recoveries


async def _in(session: AsyncSession, stmt: Any, column: Any, values: Sequence[Any]) -> list[Any]:
    """`stmt` where `column` is one of `values`, batches.SIZE of them per statement."""
    found: list[Any] = []
    for chunk in chunks(list(values)):
        found += list(await session.scalars(stmt.where(column.in_(chunk))))
    return found


async def record_checked(
    session: AsyncSession, connection_id: int, checked: Sequence[Checked], *, created_by_id: int | None, now: datetime
) -> Recorded:
    """Record checked clawbacks of one connection and take each from its transaction's
    payout as far as money is available there, in the caller's transaction, under the
    connection's row lock. An external id recorded before (or sent twice) is ignored. Every
    item whose transaction is not the connection's, or whose amount is more than is left of
    the transaction's share, is refused together (InvalidInput, fields ["clawbacks",
    "<index>", ...]) and nothing is recorded."""
    C, S = m.Clawback, m.SubOrgTransaction
    connection = await _locked_connection(session, connection_id)
    first: dict[str, int] = {}
    for i, c in enumerate(checked):
        first.setdefault(c.external_id, i)
    known = set(await _in(session, select(C.external_id).where(C.connection_id == connection.id), C.external_id,
                          list(first)))
    new = [i for i, c in enumerate(checked) if first[c.external_id] == i and c.external_id not in known]
    wanted = sorted({checked[i].transaction_external_id for i in new})
    transactions: dict[str, m.SubOrgTransaction] = {t.external_id: t for t in await _in(
        session, select(S).where(S.connection_id == connection.id).execution_options(populate_existing=True),
        S.external_id, wanted)}
    taken_before: dict[int, int] = {}
    ids = sorted(t.id for t in transactions.values())
    for chunk in chunks(ids):
        for tid, total in await session.execute(
            select(C.transaction_id, func.sum(C.amount)).where(C.transaction_id.in_(chunk)).group_by(C.transaction_id)
        ):
            taken_before[tid] = int(total)
    cur = connection.currency_code
    errors: list[DomainError] = []
    amounts: dict[int, int] = {}
    for i in new:
        c = checked[i]
        t = transactions.get(c.transaction_external_id)
        if t is None:
            shown = c.transaction_external_id if len(c.transaction_external_id) <= 60 else c.transaction_external_id[:60] + "..."
            errors.append(DomainError(ErrorCode.NOT_FOUND, f"This connection has no Sub-Org transaction {shown!r}.",
                                      [FIELD, str(i), "transactionExternalId"]))
            continue
        left = t.partner_amount - taken_before.get(t.id, 0)
        amount = left if c.amount is None else c.amount
        if left <= 0 or amount > left:
            share = money.format(t.partner_amount, cur)
            errors.append(DomainError(
                ErrorCode.CLAWBACK_EXCEEDS_SHARE,
                f"Transaction {t.external_id} left the Partner no share to claw back." if t.partner_amount == 0 else
                f"Transaction {t.external_id}'s share of {share} was already clawed back in full." if left <= 0 else
                f"amount is {money.format(amount, cur)}, but only {money.format(left, cur)} of transaction "
                f"{t.external_id}'s share of {share} is not yet clawed back.",
                [FIELD, str(i), "amount"],
            ))
            continue
        taken_before[t.id] = taken_before.get(t.id, 0) + amount
        amounts[i] = amount
    if errors:
        raise InvalidInput(errors)

    of = [transactions[checked[i].transaction_external_id] for i in new]  # each new item's transaction
    # The payouts they were counted in, locked in id order, as dispositions and bank events lock them.
    payout_ids = sorted({t.payout_id for t in of if t.payout_id is not None})
    locked: dict[int, m.Payout] = {}
    for chunk in chunks(payout_ids):
        locked.update((p.id, p) for p in await session.scalars(
            select(m.Payout).where(m.Payout.id.in_(chunk)).order_by(m.Payout.id).with_for_update()
            .execution_options(populate_existing=True)
        ))
    rows = [m.Clawback(
        connection_id=connection.id, transaction_id=t.id, external_id=checked[i].external_id, kind=checked[i].kind,
        currency_code=cur, amount=amounts[i], outstanding=amounts[i], reason=checked[i].reason,
        created_by_id=created_by_id, created_at=now,
    ) for i, t in zip(new, of, strict=True)]
    session.add_all(rows)
    await session.flush()
    available = {pid: p.available_amount for pid, p in locked.items()}
    takings = []
    for row, t in zip(rows, of, strict=True):
        if t.payout_id is None:
            continue  # in no payout yet: all of it is outstanding
        take = min(row.outstanding, available[t.payout_id])
        if take > 0:
            available[t.payout_id] -= take
            takings.append(_Taking(row, locked[t.payout_id], take, _memo(row.kind, t)))
    recoveries = await _take(session, connection.id, cur, takings, now)
    touched = sorted({t.payout.id for t in takings})
    for pid in touched:
        await payouts.refresh(session, locked[pid], now)
    ignored = [i for i in range(len(checked)) if i not in amounts]
    return Recorded(connection, rows, [checked[i].external_id for i in ignored], [locked[pid] for pid in touched],
                    recoveries, new, ignored)


async def _record(
    session: AsyncSession, connection_id: int, items: Sequence[ClawbackInput], created_by_id: int | None, now: datetime
) -> Recorded:
    connection = await session.get(m.Connection, connection_id)
    if connection is None:
        raise NotFound("RevampdConnection", "connectionId")
    checked, errors = check(items, connection.currency_code)
    if errors:
        raise InvalidInput(errors)
    return await record_checked(session, connection_id, checked, created_by_id=created_by_id, now=now)


def _operation(connection_id: int, external_ids: list[str]) -> idempotency.Operation[Recorded]:
    """The batch's idempotency: its result is the first clawback it recorded (0: none); a
    replay finds the rest by the request's external ids, recorded in the same instant, and
    the payouts they were taken from then, as those now stand."""

    async def replay(session: AsyncSession, principal: Principal, first_id: int) -> Recorded:
        connection = await session.get(m.Connection, connection_id)
        if connection is None:
            raise NotFound("RevampdConnection", "connectionId")
        C, R = m.Clawback, m.ClawbackRecovery
        anchor = await session.get(C, first_id) if first_id else None
        stored = {c.external_id: c for c in await _in(
            session, select(C).where(C.connection_id == connection_id), C.external_id, sorted(set(external_ids)))}
        recorded: list[m.Clawback] = []
        duplicates: list[str] = []
        seen: set[int] = set()
        for external_id in external_ids:
            c = stored.get(external_id)
            if (c is not None and anchor is not None and c.created_at == anchor.created_at and c.id >= anchor.id
                    and c.id not in seen):
                seen.add(c.id)
                recorded.append(c)
            else:
                duplicates.append(external_id)
        recoveries = [r for r in await _in(session, select(R).order_by(R.id), R.clawback_id, sorted(seen))
                      if anchor is not None and r.created_at == anchor.created_at]
        touched = sorted({r.payout_id for r in recoveries})
        found = await _in(session, select(m.Payout).order_by(m.Payout.id).execution_options(populate_existing=True),
                          m.Payout.id, touched)
        return Recorded(connection, recorded, duplicates, sorted(found, key=lambda p: p.id), recoveries)

    return idempotency.Operation[Recorded](
        "recordClawbacks", "Clawback", lambda r: min((c.id for c in r.clawbacks), default=0), replay,
    )


async def record(
    session: AsyncSession,
    principal: Principal | None,
    connection_id: int,
    items: Sequence[ClawbackInput],
    now: datetime | None = None,
    *,
    idempotency_key: str | None = None,
) -> Recorded:
    """BILLING_ADMIN (or the system, `principal` None): record reversals of one connection's
    Sub-Org transactions, at most MAX_PER_CALL, and take each from its payout while money is
    available there; the rest is outstanding for the next payouts. Every bad field of every
    item is refused together (InvalidInput) and nothing is recorded; a reversal's external id
    already recorded for the connection, or sent twice, is ignored and reported in
    `duplicates`."""
    if principal is not None:
        principal.require(Role.BILLING_ADMIN)
    if len(items) > MAX_PER_CALL:
        raise DomainError(
            ErrorCode.TOO_MANY_CLAWBACKS, f"Send at most {MAX_PER_CALL:,} clawbacks at a time, got {len(items):,}.", FIELD,
        )
    at = now_or(now)
    created_by = principal.user_id if principal is not None else None
    if principal is None or idempotency_key is None:
        return await _record(session, connection_id, items, created_by, at)
    request = {
        "connection": connection_id,
        "clawbacks": [[c.transaction_external_id, c.external_id, c.kind, c.amount, c.reason] for c in items],
    }
    operation = _operation(connection_id, [c.external_id or "" for c in items])
    return await idempotency.once(
        session, principal, operation, idempotency_key, request, lambda: _record(session, connection_id, items, created_by, at),
        now=now,
    )


# ---- netting against a new payout --------------------------------------------------------

async def net(session: AsyncSession, payout: m.Payout, now: datetime) -> list[m.ClawbackRecovery]:
    """Take the connection's outstanding clawbacks, oldest first, from a payout just made and
    funded (its connection row locked by the caller, services.earnings.close_connection), as
    far as the payout holds; what is left stays outstanding for the payout after. The
    recoveries made, and the payout refreshed when there are any."""
    C, S = m.Clawback, m.SubOrgTransaction
    available = payout.available_amount
    if available <= 0:
        return []
    rows = (await session.execute(
        select(C, S).join(S, S.id == C.transaction_id)
        .where(C.connection_id == payout.connection_id, C.currency_code == payout.currency_code, C.outstanding > 0)
        .order_by(C.created_at, C.id).execution_options(populate_existing=True)
    )).all()
    takings = []
    for clawback, transaction in rows:
        take = min(clawback.outstanding, available)
        if take <= 0:
            break
        available -= take
        takings.append(_Taking(clawback, payout, take, f"{_memo(clawback.kind, transaction)}, from a later payout"))
    recoveries = await _take(session, payout.connection_id, payout.currency_code, takings, now)
    if recoveries:
        await payouts.refresh(session, payout, now)
    return recoveries

