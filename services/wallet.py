"""The wallet: Revampd billing adjusts it, and affiliate payouts are applied to it.

Every movement is one ledger transfer (services.ledger.post) with a key that says
what it is for, so that even a retry that slips past the idempotency key can never
move money twice:

- `adjust`: a signed amount between Revampd's ADJUSTMENTS (or REVENUE_SHARE)
  account and the connection's WALLET; the transfer's key comes from the user and
  their idempotency key. A debit never takes the wallet below zero.
- `apply_affiliate_payout` / `apply_pending_affiliate_payouts`: AFFILIATE_PROGRAM ->
  WALLET, key `affiliate_payout:<id>:credit`, and the payout PENDING -> APPLIED, in
  the same transaction; the payout's row lock makes concurrent attempts take turns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db import models as m
from db.states import AccountKind, CreditStatus, TransferKind, WalletAdjustmentKind
from services import idempotency, ledger, money
from services.access import Principal, Role
from services.clock import now_or
from services.errors import DomainError, ErrorCode, NotFound

MAX_MEMO = 500

# Revampd's account that funds (or takes back) each kind of adjustment.
FUNDED_BY: dict[WalletAdjustmentKind, AccountKind] = {
    WalletAdjustmentKind.MANUAL_ADJUSTMENT: AccountKind.ADJUSTMENTS,
    WalletAdjustmentKind.REVENUE_SHARE: AccountKind.REVENUE_SHARE,
}


@dataclass(frozen=True)
class Movement:
    """A movement of a wallet: the wallet's account after it, its entry and the transfer."""

    account: m.LedgerAccount
    entry: m.LedgerEntry
    transfer: m.LedgerTransfer


@dataclass(frozen=True)
class Applied:
    """An affiliate payout credited to its connection's wallet."""

    payout: m.AffiliatePayout
    movement: Movement


async def _movement(session: AsyncSession, transfer_id: int) -> Movement:
    """The wallet's side of a transfer, with the wallet as it now stands."""
    row = (
        await session.execute(
            select(m.LedgerEntry, m.LedgerAccount, m.LedgerTransfer)
            .join(m.LedgerAccount, m.LedgerAccount.id == m.LedgerEntry.account_id)
            .join(m.LedgerTransfer, m.LedgerTransfer.id == m.LedgerEntry.transfer_id)
            .where(m.LedgerEntry.transfer_id == transfer_id, m.LedgerAccount.kind == AccountKind.WALLET)
        )
    ).first()
    if row is None:
        raise NotFound("Wallet entry")
    entry, account, transfer = row
    return Movement(account, entry, transfer)


# ---- adjustWallet --------------------------------------------------------------------

def _memo(memo: str) -> str:
    text = memo.strip()
    if not text:
        raise DomainError(ErrorCode.INVALID_MEMO, "The memo must say why; it must not be blank.", "memo")
    if len(text) > MAX_MEMO:
        raise DomainError(
            ErrorCode.INVALID_MEMO, f"The memo must be at most {MAX_MEMO} characters, got {len(text):,}.", "memo"
        )
    if "\x00" in text:
        raise DomainError(ErrorCode.INVALID_MEMO, "The memo must not contain NUL characters.", "memo")
    return text


async def _replay_adjustment(session: AsyncSession, principal: Principal, entry_id: int) -> Movement:
    entry = await session.get(m.LedgerEntry, entry_id)
    if entry is None:
        raise NotFound("Wallet entry")
    return await _movement(session, entry.transfer_id)


ADJUST = idempotency.Operation[Movement]("adjustWallet", "WalletEntry", lambda mv: mv.entry.id, _replay_adjustment)


def adjustment_key(user_id: int, idempotency_key: str) -> str:
    """The ledger key of a user's adjustment: one transfer per user and idempotency key."""
    return f"wallet_adjustment:{user_id}:{idempotency_key}"


async def adjust(
    session: AsyncSession,
    principal: Principal,
    *,
    connection_id: int,
    amount: str,
    kind: WalletAdjustmentKind,
    memo: str,
    idempotency_key: str,
    now: datetime | None = None,
) -> Movement:
    """BILLING_ADMIN: credit (amount > 0) or debit (amount < 0) a connection's wallet.

    `amount` is a decimal string in the connection's currency. A retry with the same
    idempotency key and the same request answers with the first movement."""
    principal.require(Role.BILLING_ADMIN)
    connection = await session.get(m.Connection, connection_id)
    if connection is None:
        raise NotFound("RevampdConnection", "connectionId")
    minor = money.parse(amount, connection.currency_code, "amount", signed=True)
    text = _memo(memo)
    key = idempotency.checked_key(idempotency_key)
    request = {"connection": connection.id, "amount": minor, "kind": kind.value, "memo": text}
    return await idempotency.once(
        session, principal, ADJUST, key, request,
        lambda: _adjust(session, principal, connection, minor, kind, text, key, now), now=now,
    )


async def _adjust(
    session: AsyncSession,
    principal: Principal,
    connection: m.Connection,
    minor: int,
    kind: WalletAdjustmentKind,
    memo: str,
    key: str,
    now: datetime | None,
) -> Movement:
    wallet = await ledger.wallet_account(session, connection, now)
    funds = await ledger.system_account(session, FUNDED_BY[kind], connection.currency_code, connection.id, now)
    debit, credit = (funds, wallet) if minor > 0 else (wallet, funds)
    transfer = ledger.Transfer(
        adjustment_key(principal.user_id, key), TransferKind(kind), debit.id, credit.id, abs(minor), memo=memo,
        created_by_id=principal.user_id,
    )
    try:
        [row] = await ledger.post(session, [transfer], now=now)
    except ledger.InsufficientFunds as err:  # the amount asked for is what does not fit
        raise DomainError(err.code, err.message, "amount") from None
    except DomainError as err:
        if err.code != ErrorCode.TRANSFER_KEY_REUSED:
            raise
        # The idempotency row is gone, but the ledger remembers the key.
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "This idempotencyKey was already used for another adjustment; send a new key for a new request.",
            idempotency.FIELD,
        ) from None
    return await _movement(session, row.id)


# ---- affiliate payouts ---------------------------------------------------------------

def _affiliate_memo(payout: m.AffiliatePayout) -> str:
    last_day = payout.period_end - timedelta(days=1)
    return (
        f"Affiliate payout ({payout.period_type.lower()}, "
        f"{payout.period_start:%b %d} to {last_day:%b %d, %Y})"
    )


def affiliate_payout_key(payout_id: int) -> str:
    """The ledger key of an affiliate payout's credit: one per payout, ever."""
    return f"affiliate_payout:{payout_id}:credit"


async def _credit(
    session: AsyncSession,
    payouts: list[m.AffiliatePayout],
    connection: m.Connection,
    now: datetime,
    created_by_id: int | None,
) -> list[Applied]:
    """Credit PENDING payouts of one connection, row-locked by the caller, in one post."""
    if not payouts:
        return []
    wallet = await ledger.wallet_account(session, connection, now)
    program = await ledger.system_account(session, AccountKind.AFFILIATE_PROGRAM, connection.currency_code, connection.id, now)
    rows = await ledger.post(
        session,
        [
            ledger.Transfer(
                affiliate_payout_key(p.id), TransferKind.AFFILIATE_PAYOUT, program.id, wallet.id, p.amount,
                memo=_affiliate_memo(p), affiliate_payout_id=p.id, created_by_id=created_by_id,
            )
            for p in payouts
        ],
        now=now,
    )
    applied = []
    for payout, row in zip(payouts, rows, strict=True):
        payout.credit_status = CreditStatus.APPLIED.value
        payout.applied_at = now
        payout.transfer_id = row.id
        applied.append(Applied(payout, await _movement(session, row.id)))
    await session.flush()
    return applied


async def _connection(session: AsyncSession, connection_id: int) -> m.Connection:
    connection = await session.get(m.Connection, connection_id)
    if connection is None:
        raise NotFound("RevampdConnection")
    return connection


async def _replay_application(session: AsyncSession, principal: Principal, payout_id: int) -> Applied:
    payout = await session.get(m.AffiliatePayout, payout_id)
    if payout is None or payout.transfer_id is None:
        raise NotFound("Affiliate payout")
    return Applied(payout, await _movement(session, payout.transfer_id))


APPLY = idempotency.Operation[Applied](
    "applyAffiliatePayout", "AffiliatePayout", lambda a: a.payout.id, _replay_application
)


async def apply_affiliate_payout(
    session: AsyncSession,
    principal: Principal,
    affiliate_payout_id: int,
    *,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Applied:
    """BILLING_ADMIN: credit a PENDING affiliate payout to its connection's wallet, once.

    An APPLIED one is refused (ALREADY_APPLIED); a retry with the same idempotency key
    answers with the first result instead."""
    principal.require(Role.BILLING_ADMIN)
    return await idempotency.once(
        session, principal, APPLY, idempotency_key, {"affiliatePayout": affiliate_payout_id},
        lambda: _apply_one(session, principal, affiliate_payout_id, now_or(now)), now=now,
    )


async def _apply_one(session: AsyncSession, principal: Principal, payout_id: int, now: datetime) -> Applied:
    payout = await session.scalar(
        select(m.AffiliatePayout).where(m.AffiliatePayout.id == payout_id).with_for_update()
        .execution_options(populate_existing=True)
    )
    if payout is None or not principal.sees_connection(payout.connection_id):
        raise NotFound("Affiliate payout", "affiliatePayoutId")
    if payout.credit_status != CreditStatus.PENDING.value:
        at = f" on {payout.applied_at:%Y-%m-%d %H:%M} UTC" if payout.applied_at else ""
        raise DomainError(
            ErrorCode.ALREADY_APPLIED,
            f"This affiliate payout was already credited to the wallet{at}; it is credited once.",
            "affiliatePayoutId",
        )
    connection = await _connection(session, payout.connection_id)
    [applied] = await _credit(session, [payout], connection, now, principal.user_id)
    return applied


async def apply_pending_affiliate_payouts(
    session: AsyncSession, connection_id: int, now: datetime
) -> list[Applied]:
    """Credit every PENDING affiliate payout of a connection to its wallet (for the
    billing run, in its transaction); returns those it applied, oldest period first."""
    payouts = list(
        await session.scalars(
            select(m.AffiliatePayout)
            .where(
                m.AffiliatePayout.connection_id == connection_id,
                m.AffiliatePayout.credit_status == CreditStatus.PENDING.value,
            )
            .order_by(m.AffiliatePayout.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    if not payouts:
        return []
    payouts.sort(key=lambda p: (p.period_end, p.id))
    return await _credit(session, payouts, await _connection(session, connection_id), now, None)
