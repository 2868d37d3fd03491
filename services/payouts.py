"""Payouts of Sub-Org earnings: credit to the wallet, transfer to a bank, or split.

A payout's ledger account (kind PAYOUT, funded from SUB_ORG_EARNINGS when
services.earnings makes the payout) holds what is not yet paid out. Every
disposition is one `ledger.post` in the caller's transaction, after the payout's
row lock, so that concurrent dispositions of one payout take turns:

- to the wallet: PAYOUT_CREDIT, payout -> WALLET, posted at once;
- to a bank: BANK_TRANSFER, payout -> BANK_OUT, PENDING: it reserves the amount
  until the processor says PAID (posted) or FAILED, or the Partner cancels it
  (voided: the amount is available on the payout again);
- a split posts both together, or neither;
- a clawback (services/clawbacks.py): CLAWBACK, payout -> SUB_ORG_EARNINGS, posted at once,
  what a Sub-Org transaction refunded or charged back took back of it (`clawed_back_amount`).

The processor is told after the disposition commits (`submit`, a transaction of
its own), so that a refused or failed disposition never reaches a bank; a
transfer left unsubmitted by a crash is submitted by `revampd-bff payouts sync`.
Status changes arrive as events (`record_event`, from the webhook, the sync or
the processor's first answer), each event id handled once; a transfer only ever
moves forward (PENDING -> IN_TRANSIT -> PAID / FAILED / CANCELED, and PAID ->
RETURNED), so late and repeated events change nothing. A return (an ACH return
days after PAID) posts a BANK_RETURN transfer, BANK_OUT -> the payout, which
makes the amount available on the payout again; one that arrives before its PAID
posts the reservation first, so the paid event that follows is stale.

Locks are always taken in one order: the payout's row, then its bank transfer's
row, then (in `ledger.post`) the accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import models as m
from db.states import (
    IN_FLIGHT,
    AccountKind,
    PayoutMode,
    PayoutStatus,
    TransferEventSource,
    TransferKind,
    TransferStatus,
)
from db.states import PayoutDisposition as DispositionKind
from services import idempotency, ledger, money
from services.access import Principal, Role
from services.bank_gateway import BankTransferGateway, GatewayTransfer, GatewayUnavailable
from services.clock import now_or
from services.errors import DomainError, ErrorCode, InvalidInput, NotFound

# A transfer's statuses in the order it may move through them: never backwards. RETURNED
# follows PAID only (money that never left cannot come back).
TS = TransferStatus
RANK: dict[str, int] = {TS.PENDING: 0, TS.IN_TRANSIT: 1, TS.PAID: 2, TS.FAILED: 2, TS.CANCELED: 2, TS.RETURNED: 3}
FINAL = (TS.PAID, TS.FAILED, TS.CANCELED)


@dataclass(frozen=True)
class Disposed:
    """A disposition of a payout, with the payout as it now stands."""

    payout: m.Payout
    disposition: m.PayoutDisposition
    bank_transfer: m.BankTransfer | None
    # The wallet as it stands after a credit.
    wallet: m.LedgerAccount | None


# ---- reading and keeping a payout's parts ----------------------------------------------

async def refresh(session: AsyncSession, payout: m.Payout, now: datetime | None = None) -> m.Payout:
    """Set the payout's parts, status and disposition from the ledger and its transfers
    (in the caller's transaction, after a movement)."""
    account = await session.scalar(
        select(m.LedgerAccount).where(m.LedgerAccount.code == ledger.payout_of(payout).code)
        .execution_options(populate_existing=True)
    )
    assert account is not None, f"payout {payout.id} has no ledger account"
    T = m.LedgerTransfer
    credited, clawed_back = (await session.execute(
        select(
            func.coalesce(func.sum(case((T.kind == TransferKind.PAYOUT_CREDIT, T.amount), else_=0)), 0),
            func.coalesce(func.sum(case((T.kind == TransferKind.CLAWBACK, T.amount), else_=0)), 0),
        ).where(T.payout_id == payout.id, T.kind.in_((TransferKind.PAYOUT_CREDIT, TransferKind.CLAWBACK)))
    )).one()
    paid = await session.scalar(
        select(func.coalesce(func.sum(m.BankTransfer.amount), 0)).where(
            m.BankTransfer.payout_id == payout.id, m.BankTransfer.status == TS.PAID
        )
    )
    payout.available_amount = account.balance - account.pending
    payout.bank_in_flight_amount = account.pending
    payout.wallet_amount = int(credited or 0)
    payout.clawed_back_amount = int(clawed_back or 0)
    payout.bank_paid_amount = int(paid or 0)
    payout.status = status_of(payout)
    bank = payout.bank_in_flight_amount + payout.bank_paid_amount
    payout.disposition = (
        DispositionKind.SPLIT if payout.wallet_amount and bank else DispositionKind.CREDIT if payout.wallet_amount
        else DispositionKind.TRANSFER if bank else None
    )
    if now is not None:
        payout.updated_at = now
    await session.flush()
    return payout


def status_of(p: m.Payout) -> PayoutStatus:
    """AVAILABLE while nothing of it was disposed of (what clawbacks took back is no longer
    the Partner's: a payout clawed back in full, with nothing in flight, is COMPLETED)."""
    if p.available_amount > 0 and p.available_amount == p.amount - (p.clawed_back_amount or 0):
        return PayoutStatus.AVAILABLE
    if p.available_amount > 0:
        return PayoutStatus.PARTIALLY_DISPOSED
    return PayoutStatus.PROCESSING if p.bank_in_flight_amount > 0 else PayoutStatus.COMPLETED


async def _locked_payout(session: AsyncSession, payout_id: int) -> m.Payout | None:
    return await session.scalar(
        select(m.Payout).where(m.Payout.id == payout_id).with_for_update()
        .execution_options(populate_existing=True)
    )


# ---- disposing of a payout ---------------------------------------------------------------

async def _replay(session: AsyncSession, principal: Principal, disposition_id: int) -> Disposed:
    d = await session.get(m.PayoutDisposition, disposition_id)
    if d is None:
        raise NotFound("Payout disposition")
    payout = await session.get(m.Payout, d.payout_id)
    assert payout is not None
    transfer = await session.get(m.BankTransfer, d.bank_transfer_id) if d.bank_transfer_id else None
    wallet = await session.scalar(select(m.LedgerAccount).where(
        m.LedgerAccount.code == ledger.wallet_code(payout.connection_id))) if d.credit_transfer_id else None
    return Disposed(payout, d, transfer, wallet)


def _operation(name: str) -> idempotency.Operation[Disposed]:
    return idempotency.Operation[Disposed](name, "PayoutDisposition", lambda r: r.disposition.id, _replay)


CREDIT, TRANSFER, SPLIT = _operation("creditPayout"), _operation("transferPayout"), _operation("splitPayout")


async def credit(
    session: AsyncSession, principal: Principal, payout_id: int, *, amount: str | None, idempotency_key: str,
    now: datetime | None = None,
) -> Disposed:
    """PARTNER_ADMIN: credit `amount` (default: all that is available) to the wallet."""
    principal.require(Role.PARTNER_ADMIN)
    key = idempotency.checked_key(idempotency_key)
    request = {"payout": payout_id, "amount": amount}
    return await idempotency.once(session, principal, CREDIT, key, request, lambda: _dispose(
        session, principal, payout_id, DispositionKind.CREDIT, amount=amount, key=key, now=now_or(now)), now=now)


async def transfer(
    session: AsyncSession, principal: Principal, payout_id: int, *, bank_account_id: int | None,
    amount: str | None, idempotency_key: str, now: datetime | None = None,
) -> Disposed:
    """PARTNER_ADMIN: send `amount` (default: all that is available) to a linked bank
    account (default: the default one)."""
    principal.require(Role.PARTNER_ADMIN)
    key = idempotency.checked_key(idempotency_key)
    request = {"payout": payout_id, "amount": amount, "bankAccount": bank_account_id}
    return await idempotency.once(session, principal, TRANSFER, key, request, lambda: _dispose(
        session, principal, payout_id, DispositionKind.TRANSFER, amount=amount, bank_account_id=bank_account_id, key=key,
        now=now_or(now)), now=now)


async def split(
    session: AsyncSession, principal: Principal, payout_id: int, *, wallet_amount: str,
    bank_account_id: int | None, idempotency_key: str, now: datetime | None = None,
) -> Disposed:
    """PARTNER_ADMIN: `wallet_amount` to the wallet and the rest of what is available to
    a bank account, both parts positive, posted together."""
    principal.require(Role.PARTNER_ADMIN)
    key = idempotency.checked_key(idempotency_key)
    request = {"payout": payout_id, "walletAmount": wallet_amount, "bankAccount": bank_account_id}
    return await idempotency.once(session, principal, SPLIT, key, request, lambda: _dispose(
        session, principal, payout_id, DispositionKind.SPLIT, amount=wallet_amount, bank_account_id=bank_account_id, key=key,
        now=now_or(now)), now=now)


async def _dispose(
    session: AsyncSession, principal: Principal, payout_id: int, kind: DispositionKind, *, amount: str | None, key: str,
    now: datetime, bank_account_id: int | None = None,
) -> Disposed:
    payout = await _locked_payout(session, payout_id)
    if payout is None or payout.connection_id != principal.connection_id:
        raise NotFound("Payout", "payoutId")
    field = "walletAmount" if kind is DispositionKind.SPLIT else "amount"
    errors: list[DomainError] = []
    asked: int | None = None
    if amount is not None:
        try:
            asked = money.parse(amount, payout.currency_code, field)
        except DomainError as err:
            errors.append(err)
    account: m.BankAccount | None = None
    if kind is not DispositionKind.CREDIT:
        try:
            account = await _bank_account(session, payout.connection_id, bank_account_id)
        except DomainError as err:
            errors.append(err)
    if errors:
        raise InvalidInput(errors)
    available = payout.available_amount
    if available == 0:
        raise DomainError(ErrorCode.NOTHING_AVAILABLE, _nothing_available(payout), "payoutId")
    if kind is DispositionKind.SPLIT:
        assert asked is not None
        if asked >= available:
            raise DomainError(
                ErrorCode.SPLIT_LEAVES_NOTHING_FOR_BANK,
                f"walletAmount must be less than the {money.format(available, payout.currency_code)} available, "
                "so that the rest goes to the bank; to credit it all, use creditPayout.",
                field,
            )
        wallet_part, bank_part = asked, available - asked
    else:
        part = available if asked is None else asked
        if part > available:
            raise DomainError(
                ErrorCode.EXCEEDS_AVAILABLE,
                f"{field} is {money.format(part, payout.currency_code)}, but only "
                f"{money.format(available, payout.currency_code)} of this payout is available.",
                field,
            )
        wallet_part, bank_part = (part, 0) if kind is DispositionKind.CREDIT else (0, part)
    return await dispose(
        session, payout, wallet_part, bank_part, account, key=f"{principal.user_id}:{key}",
        created_by_id=principal.user_id, now=now,
    )


def _nothing_available(p: m.Payout) -> str:
    cur = p.currency_code
    parts = [f"{money.format(v, cur)} {what}" for v, what in (
        (p.wallet_amount, "credited to the wallet"), (p.bank_in_flight_amount, "on its way to the bank"),
        (p.bank_paid_amount, "paid to the bank"), (p.clawed_back_amount, "taken back by clawbacks"),
    ) if v]
    return f"Nothing of this payout is available: {', '.join(parts)}."


async def _bank_account(session: AsyncSession, connection_id: int, bank_account_id: int | None) -> m.BankAccount:
    """The live bank account to send to, share-locked so that it cannot be unlinked meanwhile
    (unlinking takes the row FOR UPDATE) while transfers to it need not wait for one another."""
    if bank_account_id is None:
        account = await session.scalar(select(m.BankAccount).where(
            m.BankAccount.connection_id == connection_id, m.BankAccount.is_default.is_(True),
            m.BankAccount.removed_at.is_(None),
        ).with_for_update(read=True).execution_options(populate_existing=True))
        if account is None:
            raise DomainError(
                ErrorCode.NO_BANK_ACCOUNT, "No default bank account: link one, or name one in bankAccountId.", "bankAccountId"
            )
        return account
    account = await session.scalar(
        select(m.BankAccount).where(m.BankAccount.id == bank_account_id).with_for_update(read=True)
        .execution_options(populate_existing=True)
    )
    if account is None or account.connection_id != connection_id:
        raise NotFound("Bank account", "bankAccountId")
    if account.removed_at is not None:
        raise DomainError(
            ErrorCode.BANK_ACCOUNT_REMOVED, f"The bank account ending {account.account_last4} was unlinked.", "bankAccountId"
        )
    return account


async def dispose(
    session: AsyncSession, payout: m.Payout, wallet_part: int, bank_part: int, account: m.BankAccount | None,
    *, key: str, created_by_id: int | None, now: datetime,
) -> Disposed:
    """Move `wallet_part` to the wallet and reserve `bank_part` for a transfer to
    `account`, together, from a payout row-locked by the caller. `key` makes the
    ledger keys: the same key never moves money twice."""
    assert wallet_part >= 0 and bank_part >= 0 and wallet_part + bank_part > 0
    own = await ledger.payout_account(session, payout, now)
    connection = await session.get(m.Connection, payout.connection_id)
    assert connection is not None
    moves = []
    wallet = None
    label = f"Payout for {payout.period_start:%b %d} to {payout.period_end:%b %d, %Y}"
    if wallet_part:
        wallet = await ledger.wallet_account(session, connection, now)
        moves.append(ledger.Transfer(
            f"payout:{payout.id}:{key}:wallet", TransferKind.PAYOUT_CREDIT, own.id, wallet.id, wallet_part,
            memo=f"{label} credited to wallet", payout_id=payout.id, created_by_id=created_by_id,
        ))
    if bank_part:
        assert account is not None
        bank_out = await ledger.system_account(session, AccountKind.BANK_OUT, payout.currency_code, payout.connection_id, now)
        moves.append(ledger.Transfer(
            f"payout:{payout.id}:{key}:bank", TransferKind.BANK_TRANSFER, own.id, bank_out.id, bank_part,
            memo=f"{label} to the bank account ending {account.account_last4}", payout_id=payout.id,
            created_by_id=created_by_id, pending=True,
        ))
    try:
        rows = await ledger.post(session, moves, now=now)
    except DomainError as err:
        if err.code != ErrorCode.TRANSFER_KEY_REUSED:
            raise
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "This idempotencyKey was already used for another disposition of this payout; send a new key.",
            idempotency.FIELD,
        ) from None
    credit_row = rows[0] if wallet_part else None
    bank_transfer = None
    if bank_part:
        assert account is not None
        bank_transfer = m.BankTransfer(
            payout_id=payout.id, bank_account_id=account.id, amount=bank_part, status=TS.PENDING,
            pending_transfer_id=rows[-1].id, created_by_id=created_by_id, created_at=now, updated_at=now,
        )
        session.add(bank_transfer)
        await session.flush()
    disposition = m.PayoutDisposition(
        payout_id=payout.id, kind=DispositionKind.SPLIT if wallet_part and bank_part else DispositionKind.CREDIT if wallet_part
        else DispositionKind.TRANSFER,
        wallet_amount=wallet_part, bank_amount=bank_part, credit_transfer_id=credit_row.id if credit_row else None,
        bank_transfer_id=bank_transfer.id if bank_transfer else None, created_by_id=created_by_id, created_at=now,
    )
    session.add(disposition)
    await refresh(session, payout, now)
    return Disposed(payout, disposition, bank_transfer, wallet)


# ---- the payout preference ---------------------------------------------------------------

async def apply_preference(
    session: AsyncSession, connection: m.Connection, payout: m.Payout, now: datetime
) -> Disposed | None:
    """Dispose of a new payout (row-locked or just made by the caller) as its connection
    prefers: nothing, CREDIT it all, TRANSFER it all to the default bank account, or
    SPLIT it, payout_wallet_percent (rounded half-even) to the wallet. Without a default
    bank account a transfer, or a split's bank part, stays available for the Partner."""
    mode, available = connection.payout_mode, payout.available_amount
    if mode is None or available == 0:
        return None
    wallet_part = (
        available if mode == PayoutMode.CREDIT else 0 if mode == PayoutMode.TRANSFER
        else money.basis_points_of(available, 100 * (connection.payout_wallet_percent or 0))
    )
    bank_part = available - wallet_part
    account = None
    if bank_part:
        try:
            account = await _bank_account(session, connection.id, None)
        except DomainError:
            bank_part = 0
    if wallet_part + bank_part == 0:
        return None
    return await dispose(session, payout, wallet_part, bank_part, account, key="preference", created_by_id=None,
                         now=now)



async def set_preference(
    session: AsyncSession, principal: Principal, *, mode: str, wallet_percent: int | None,
    period_type: str | None, now: datetime | None = None,
) -> m.Connection:
    """PARTNER_ADMIN: what to do with each new payout, and how often payouts are made."""
    principal.require(Role.PARTNER_ADMIN)
    connection = await session.scalar(
        select(m.Connection).where(m.Connection.id == principal.connection_id).with_for_update()
        .execution_options(populate_existing=True)
    )
    if connection is None:
        raise NotFound("RevampdConnection")
    errors: list[DomainError] = []
    if mode == PayoutMode.SPLIT:
        if wallet_percent is None or not 1 <= wallet_percent <= 99:
            errors.append(DomainError(
                ErrorCode.INVALID_PERCENT, "walletPercent must be a whole number from 1 to 99 for SPLIT.", "walletPercent"
            ))
    elif wallet_percent is not None:
        errors.append(DomainError(
            ErrorCode.INVALID_PERCENT, f"walletPercent is only for SPLIT; leave it out for {mode}.", "walletPercent"
        ))
    if mode in (PayoutMode.TRANSFER, PayoutMode.SPLIT):
        try:
            await _bank_account(session, connection.id, None)
        except DomainError as err:
            errors.append(DomainError(err.code, f"{mode} needs a default bank account: link one first.", "mode"))
    if errors:
        raise InvalidInput(errors)
    connection.payout_mode = None if mode == PayoutMode.MANUAL else mode
    connection.payout_wallet_percent = wallet_percent if mode == PayoutMode.SPLIT else None
    if period_type is not None:
        connection.payout_period_type = period_type
    await session.flush()
    return connection


# ---- bank transfers: the processor, events, cancel ---------------------------------------

async def _locked_transfer(session: AsyncSession, transfer_id: int) -> tuple[m.Payout, m.BankTransfer] | None:
    """A bank transfer and its payout, locked in order: the payout, then the transfer."""
    payout_id = await session.scalar(select(m.BankTransfer.payout_id).where(m.BankTransfer.id == transfer_id))
    if payout_id is None:
        return None
    payout = await _locked_payout(session, payout_id)
    transfer = await session.scalar(
        select(m.BankTransfer).where(m.BankTransfer.id == transfer_id).with_for_update()
        .execution_options(populate_existing=True)
    )
    assert payout is not None and transfer is not None
    return payout, transfer


@dataclass(frozen=True)
class Sending:
    """What a transfer is sent to the processor with, read as it was marked as being sent."""

    transfer_id: int
    reference: str  # the processor knows the transfer by it: the same reference again is the same transfer
    account_token: str
    amount: int
    currency: str


async def start_sending(session: AsyncSession, transfer_id: int, now: datetime) -> Sending | None:
    """The first step of `submit`: lock a PENDING transfer not yet sent and mark it as being
    sent; what to send it with (None: nothing to send)."""
    found = await _locked_transfer(session, transfer_id)
    if found is None:
        return None
    payout, transfer = found
    if transfer.gateway_ref is not None or transfer.status != TS.PENDING:
        return None
    account = await session.get(m.BankAccount, transfer.bank_account_id)
    assert account is not None
    transfer.sending_at = transfer.sending_at or now
    await session.flush()
    return Sending(transfer.id, f"bt{transfer.id}", account.account_token, transfer.amount, payout.currency_code)


async def _sent(session: AsyncSession, sending: Sending, answer: GatewayTransfer, now: datetime) -> m.BankTransfer:
    found = await _locked_transfer(session, sending.transfer_id)
    assert found is not None
    payout, transfer = found
    if transfer.gateway_ref is not None:  # sent meanwhile by another (`payouts sync`): the same transfer
        return transfer
    transfer.gateway_ref, transfer.submitted_at = answer.ref, now
    await session.flush()
    if answer.status != TS.PENDING:
        await _record(session, f"gateway:{answer.ref}:{answer.status}", TransferEventSource.GATEWAY, payout, transfer, answer, now, now)
    return transfer


async def submit(
    writes: async_sessionmaker[AsyncSession], gateway: BankTransferGateway, transfer_id: int,
    now: datetime | None = None,
) -> m.BankTransfer | None:
    """Send a PENDING transfer not yet sent to the processor, two-phase: one transaction
    marks it as being sent (`sending_at`), the processor is asked with no transaction open
    (idempotent by the transfer's reference there), and another records its answer; a
    transfer refused at once is FAILED and its amount available again. When the processor
    does not answer it stays unsent for `payouts sync`, which sends it again with the same
    reference. The transfer as it then stands; None if there is no such transfer."""
    at = now_or(now)
    async with writes() as session, session.begin():
        sending = await start_sending(session, transfer_id, at)
        # Locked by start_sending when it exists: from the identity map, no statement.
        transfer = await session.get(m.BankTransfer, transfer_id)
    if sending is None:
        return transfer
    try:
        answer = await gateway.create_transfer(sending.reference, sending.account_token, sending.amount,
                                               sending.currency)
    except GatewayUnavailable:
        return transfer
    async with writes() as session, session.begin():
        return await _sent(session, sending, answer, at)


async def reread(session: AsyncSession, disposed: Disposed) -> Disposed:
    """The disposition as it now stands (after `submit`, for the mutation's answer)."""
    payout = await session.get(m.Payout, disposed.payout.id, populate_existing=True)
    assert payout is not None
    transfer = disposed.bank_transfer and await session.get(
        m.BankTransfer, disposed.bank_transfer.id, populate_existing=True)
    wallet = disposed.wallet and await session.get(m.LedgerAccount, disposed.wallet.id, populate_existing=True)
    return Disposed(payout, disposed.disposition, transfer, wallet)


def stamp(transfer: m.BankTransfer, answer: GatewayTransfer, at: datetime, now: datetime) -> None:
    """Set a transfer's status, the time it reached it and, when FAILED, why."""
    transfer.status, transfer.updated_at = answer.status, now
    if answer.status == TS.IN_TRANSIT:
        transfer.in_transit_at = at
    elif answer.status == TS.PAID:
        transfer.paid_at = at
    elif answer.status == TS.FAILED:
        transfer.failed_at = at
        transfer.failure_code = answer.failure_code or "failed"
        transfer.failure_reason = (answer.failure_reason or "The bank transfer failed.")[:300]
    elif answer.status == TS.RETURNED:
        transfer.returned_at = at
        transfer.return_code = answer.failure_code or "returned"
        transfer.return_reason = (answer.failure_reason or "The bank returned the transfer.")[:300]
    else:
        transfer.canceled_at = at


async def _apply(
    session: AsyncSession, payout: m.Payout, transfer: m.BankTransfer, answer: GatewayTransfer, at: datetime,
    now: datetime,
) -> bool:
    """Move a locked transfer to `answer.status` if that is forward; post or void its
    reservation when final, and post its BANK_RETURN when RETURNED (with the reservation,
    if the return came before the paid event). False (nothing changed) for a status it is
    past, and for a return of money that never left (FAILED, CANCELED)."""
    status = answer.status
    if RANK[status] <= RANK[transfer.status] or (status == TS.RETURNED and transfer.status in (TS.FAILED, TS.CANCELED)):
        return False
    reservation = await session.get(m.LedgerTransfer, transfer.pending_transfer_id)
    assert reservation is not None
    moves = []
    if status in FINAL or (status == TS.RETURNED and transfer.status != TS.PAID):
        paid = status in (TS.PAID, TS.RETURNED)
        moves.append(ledger.Transfer(
            f"bank_transfer:{transfer.id}:{'paid' if paid else 'void'}", TransferKind.BANK_TRANSFER,
            reservation.debit_account_id, reservation.credit_account_id, reservation.amount,
            memo=reservation.memo if paid else f"{reservation.memo}: {status.lower()}, available again",
            payout_id=payout.id, resolves=reservation.id, void=not paid,
        ))
    if status == TS.RETURNED:
        code = answer.failure_code or "returned"
        moves.append(ledger.Transfer(
            f"bank_transfer:{transfer.id}:returned", TransferKind.BANK_RETURN, reservation.credit_account_id,
            reservation.debit_account_id, reservation.amount,
            memo=f"{reservation.memo}: returned by the bank ({code}), available again", payout_id=payout.id,
        ))
    stamp(transfer, answer, at, now)
    if moves:
        posted = await ledger.post(session, moves, now=now)
        if status == TS.RETURNED:
            transfer.return_transfer_id = posted[-1].id
    await refresh(session, payout, now)
    return True


async def _record(
    session: AsyncSession, event_id: str, source: str, payout: m.Payout | None, transfer: m.BankTransfer | None,
    answer: GatewayTransfer, at: datetime, now: datetime,
) -> str:
    """Handle an event once: 'applied', 'stale' (the transfer is past it), 'unknown'
    (no such transfer) or 'duplicate' (this event id was handled before)."""
    event = m.BankTransferEvent(
        event_id=event_id, bank_transfer_id=transfer.id if transfer else None, source=source,
        status=answer.status, failure_code=answer.failure_code, failure_reason=(answer.failure_reason or None)
        and answer.failure_reason[:300], applied=False, occurred_at=at, received_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(event)
            await session.flush()
    except IntegrityError:
        # This event id was handled before; any other integrity error is a fault, not a duplicate.
        if await session.scalar(select(m.BankTransferEvent.id).where(m.BankTransferEvent.event_id == event_id)):
            return "duplicate"
        raise
    if payout is None or transfer is None:
        return "unknown"
    event.applied = await _apply(session, payout, transfer, answer, at, now)
    await session.flush()
    return "applied" if event.applied else "stale"


async def record_event(
    session: AsyncSession, event_id: str, source: str, answer: GatewayTransfer, at: datetime,
    now: datetime | None = None,
) -> str:
    """A status change the processor reports (webhook or poll) for its transfer `answer.ref`."""
    if await session.scalar(select(m.BankTransferEvent.id).where(m.BankTransferEvent.event_id == event_id)):
        return "duplicate"
    transfer_id = await session.scalar(select(m.BankTransfer.id).where(m.BankTransfer.gateway_ref == answer.ref))
    found = await _locked_transfer(session, transfer_id) if transfer_id is not None else None
    payout, transfer = found if found else (None, None)
    return await _record(session, event_id, source, payout, transfer, answer, at, now_or(now))


async def cancel(
    writes: async_sessionmaker[AsyncSession], principal: Principal, gateway: BankTransferGateway, transfer_id: int,
    now: datetime | None = None,
) -> tuple[m.Payout, m.BankTransfer]:
    """PARTNER_ADMIN: cancel a PENDING transfer; its amount is available on the payout again.

    A transfer never sent is canceled here; one the processor has is canceled by asking
    it, with no transaction open, and its answer recorded after. One being sent whose
    answer is not in yet (the processor may have it) is refused for now: `payouts sync`
    settles it."""
    principal.require(Role.PARTNER_ADMIN)
    at = now_or(now)
    async with writes() as session, session.begin():
        payout, transfer = await _cancelable(session, principal, transfer_id)
        ref = transfer.gateway_ref
        if ref is None:
            if transfer.sending_at is not None:
                raise DomainError(
                    ErrorCode.GATEWAY_UNAVAILABLE, "This transfer is being sent to the bank and its answer is not in "
                    "yet; try again in a few minutes.", "bankTransferId",
                )
            unsent = GatewayTransfer(f"unsent:bt{transfer.id}", TS.CANCELED)
            await _record(session, f"partner:bt{transfer.id}:canceled", TransferEventSource.PARTNER, payout, transfer, unsent, at, at)
            return payout, transfer
    try:
        answer = await gateway.cancel_transfer(ref)
    except GatewayUnavailable:
        raise DomainError(
            ErrorCode.GATEWAY_UNAVAILABLE, "The bank transfer processor did not answer; try again.", "bankTransferId"
        ) from None
    if answer.status != TS.CANCELED:
        raise DomainError(
            ErrorCode.NOT_CANCELABLE, "The processor has already sent this transfer; it can no longer be canceled.",
            "bankTransferId",
        )
    async with writes() as session, session.begin():
        found = await _locked_transfer(session, transfer_id)
        assert found is not None
        payout, transfer = found
        await _record(session, f"partner:bt{transfer.id}:canceled", TransferEventSource.PARTNER, payout, transfer, answer, at, at)
        return payout, transfer


async def _cancelable(session: AsyncSession, principal: Principal, transfer_id: int) -> tuple[m.Payout, m.BankTransfer]:
    found = await _locked_transfer(session, transfer_id)
    if found is None or found[0].connection_id != principal.connection_id:
        raise NotFound("Bank transfer", "bankTransferId")
    if found[1].status != TS.PENDING:
        raise DomainError(
            ErrorCode.NOT_CANCELABLE,
            f"This transfer is {found[1].status.replace('_', ' ').lower()}; only a PENDING one can be canceled.",
            "bankTransferId",
        )
    return found


async def in_flight(session: AsyncSession) -> list[int]:
    """Ids of the transfers still PENDING or IN_TRANSIT, oldest first."""
    return list(await session.scalars(
        select(m.BankTransfer.id).where(m.BankTransfer.status.in_(IN_FLIGHT)).order_by(m.BankTransfer.id)
    ))


async def sync_one(
    writes: async_sessionmaker[AsyncSession], gateway: BankTransferGateway, transfer_id: int,
    now: datetime | None = None,
) -> str:
    """Poll the processor about one transfer in flight (sending it first if it never was),
    with no transaction open while it answers; what happened: 'submitted', 'applied',
    'unchanged' or 'unavailable'."""
    at = now_or(now)
    async with writes() as session:
        transfer = await session.get(m.BankTransfer, transfer_id)
    if transfer is None or transfer.status not in IN_FLIGHT:
        return "unchanged"
    if transfer.gateway_ref is None:
        sent = await submit(writes, gateway, transfer_id, at)
        return "submitted" if sent is not None and sent.gateway_ref else "unavailable"
    try:
        answer = await gateway.retrieve_transfer(transfer.gateway_ref)
    except GatewayUnavailable:
        return "unavailable"
    if answer.status == transfer.status:
        return "unchanged"
    async with writes() as session, session.begin():
        outcome = await record_event(session, f"sync:{answer.ref}:{answer.status}", TransferEventSource.SYNC, answer, at, at)
    return "applied" if outcome == "applied" else "unchanged"
