"""Bank accounts payouts are sent to: link one, choose the default, unlink one.

A Partner admin gives the routing and account numbers; the bank transfer processor
(services.bank_gateway) keeps the account number and gives back a token. We keep the
token, the last four digits, the routing number, the holder and the bank's name, never
the account number: not in a row, not in a log line, not in an answer, and not in the
idempotency key's request hash either (a hash of a short number is as good as the
number to anyone who tries them all), which holds its last four digits and length.

Each connection has at most one live default account (a partial unique index), and
has one whenever it has a live account: the first one linked becomes it, and
unlinking it promotes the oldest remaining one. Every change of the default takes the
connection's row lock first (FOR UPDATE; SQLite's write transactions are serial), so
concurrent changes take turns; the old default is unset and flushed before the new one
is set, because the index is checked row by row. An account with a transfer still
PENDING or IN_TRANSIT cannot be unlinked. Unlinking keeps the row (`removed_at`):
transfers already made still name it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import models as m
from db.states import IN_FLIGHT
from services import idempotency, money
from services.access import Principal, Role
from services.bank_gateway import BankTransferGateway, GatewayUnavailable, LinkedAccount
from services.clock import now_or
from services.errors import DomainError, ErrorCode, InvalidInput, NotFound

MAX_NAME = 200
ACCOUNT_DIGITS = (4, 17)

_ROUTING = re.compile(r"[0-9]{9}")
_ACCOUNT = re.compile(r"[0-9]+")
# Not names: control characters, lone surrogates, line and paragraph separators.
_NOT_IN_NAMES = frozenset({"Cc", "Cs", "Zl", "Zp"})

# The names of a few well-known routing numbers, for a link that does not give one.
KNOWN_BANKS: dict[str, str] = {
    "021000021": "JPMorgan Chase Bank",
    "121000248": "Wells Fargo Bank",
    "026009593": "Bank of America",
    "021000089": "Citibank",
    "110000000": "Sandbox Test Bank",
}


# ---- the input's rules ------------------------------------------------------------------

def aba_checksum_ok(digits: str) -> bool:
    """3(d1 + d4 + d7) + 7(d2 + d5 + d8) + (d3 + d6 + d9) is a multiple of 10."""
    d = [int(c) for c in digits]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8])) % 10 == 0


def checked_routing_number(value: str) -> str:
    """Exactly 9 ASCII digits with a valid ABA check digit. Messages never repeat the
    value: a Partner may have typed the account number into this field."""
    code, field = ErrorCode.INVALID_ROUTING_NUMBER, "routingNumber"
    if not _ROUTING.fullmatch(value):
        got = (
            "it is empty" if not value
            else "it has characters other than the digits 0 to 9" if not (value.isascii() and value.isdigit())
            else f"it has {len(value)}"
        )
        raise DomainError(code, f"routingNumber must be exactly 9 digits (0 to 9); {got}.", field)
    if not aba_checksum_ok(value):
        raise DomainError(
            code, "routingNumber is not a valid ABA routing number: its check digit does not match. "
            "Copy it from a check or from your bank.", field,
        )
    return value


def checked_account_number(value: str) -> str:
    """4 to 17 ASCII digits. Messages never repeat the value."""
    low, high = ACCOUNT_DIGITS
    code, field = ErrorCode.INVALID_ACCOUNT_NUMBER, "accountNumber"
    if not _ACCOUNT.fullmatch(value):
        raise DomainError(code, f"accountNumber must be {low} to {high} digits, 0 to 9 only, without spaces "
                          "or dashes.", field)
    if not low <= len(value) <= high:
        raise DomainError(code, f"accountNumber must be {low} to {high} digits; it has {len(value)}.", field)
    return value


def _checked_name(value: str, field: str, code: ErrorCode) -> str:
    text = value.strip()
    if not text:
        raise DomainError(code, f"{field} must not be blank.", field)
    if len(text) > MAX_NAME:
        raise DomainError(code, f"{field} must be at most {MAX_NAME} characters, got {len(text):,}.", field)
    if any(unicodedata.category(ch) in _NOT_IN_NAMES for ch in text):
        raise DomainError(code, f"{field} must be printable text on one line, without control characters.", field)
    return text


def default_bank_name(routing_number: str) -> str:
    return KNOWN_BANKS.get(routing_number, f"Bank with routing number ending {routing_number[-4:]}")


@dataclass(frozen=True)
class _LinkRequest:
    holder_name: str
    routing_number: str
    account_number: str
    bank_name: str | None  # as given (trimmed); None: from the routing number
    make_default: bool


def _checked_link(
    holder_name: str, routing_number: str, account_number: str, bank_name: str | None,
    make_default: bool | None, idempotency_key: str | None,
) -> tuple[_LinkRequest, str | None]:
    """Every field's rule at once: one InvalidInput naming each field at fault, in the
    input's order."""
    errors: list[DomainError] = []
    holder = routing = account = bank = key = None
    try:
        holder = _checked_name(holder_name, "holderName", ErrorCode.INVALID_HOLDER_NAME)
    except DomainError as err:
        errors.append(err)
    try:
        routing = checked_routing_number(routing_number)
    except DomainError as err:
        errors.append(err)
    try:
        account = checked_account_number(account_number)
    except DomainError as err:
        errors.append(err)
    if bank_name is not None:
        try:
            bank = _checked_name(bank_name, "bankName", ErrorCode.INVALID_BANK_NAME)
        except DomainError as err:
            errors.append(err)
    if idempotency_key is not None:
        try:
            key = idempotency.checked_key(idempotency_key)
        except DomainError as err:
            errors.append(err)
    if errors:
        raise InvalidInput(errors)
    assert holder is not None and routing is not None and account is not None
    return _LinkRequest(holder, routing, account, bank, bool(make_default)), key


# ---- reading and locking ----------------------------------------------------------------

async def _locked_connection(session: AsyncSession, principal: Principal) -> m.Connection:
    """The caller's connection, row-locked: every change of a default takes turns here."""
    if principal.connection_id is None:
        raise NotFound("RevampdConnection")
    connection = await session.scalar(
        select(m.Connection).where(m.Connection.id == principal.connection_id).with_for_update()
        .execution_options(populate_existing=True)
    )
    if connection is None:
        raise NotFound("RevampdConnection")
    return connection


async def _live_account(
    session: AsyncSession, connection_id: int, bank_account_id: int, *, lock: bool = False
) -> m.BankAccount:
    """A live account of the connection; another connection's, an unlinked one and a
    missing one are all NOT_FOUND, worded the same."""
    stmt = select(m.BankAccount).where(
        m.BankAccount.id == bank_account_id,
        m.BankAccount.connection_id == connection_id,
        m.BankAccount.removed_at.is_(None),
    ).execution_options(populate_existing=True)
    account = await session.scalar(stmt.with_for_update() if lock else stmt)
    if account is None:
        raise NotFound("Bank account", "bankAccountId")
    return account


async def live_accounts(session: AsyncSession, connection_id: int) -> list[m.BankAccount]:
    """The connection's live accounts, oldest first (as RevampdConnection.bankAccounts)."""
    return list(await session.scalars(
        select(m.BankAccount)
        .where(m.BankAccount.connection_id == connection_id, m.BankAccount.removed_at.is_(None))
        .order_by(m.BankAccount.created_at, m.BankAccount.id)
        .execution_options(populate_existing=True)
    ))


async def _make_default(session: AsyncSession, connection_id: int, account: m.BankAccount) -> None:
    """`account` becomes the one live default, under the connection's lock: the old one
    is unset and flushed first, for the unique index."""
    if account.is_default:
        return
    for other in await live_accounts(session, connection_id):
        if other.is_default and other.id != account.id:
            other.is_default = False
    await session.flush()
    account.is_default = True
    await session.flush()


@dataclass(frozen=True)
class Changed:
    """An account that changed, and the connection's live accounts after it, oldest first."""

    account: m.BankAccount
    accounts: list[m.BankAccount]


# ---- linkBankAccount --------------------------------------------------------------------

async def _replay_link(session: AsyncSession, principal: Principal, account_id: int) -> m.BankAccount:
    account = await session.scalar(
        select(m.BankAccount).where(m.BankAccount.id == account_id).execution_options(populate_existing=True)
    )
    if account is None or account.connection_id != principal.connection_id:
        raise NotFound("Bank account")
    return account


LINK = idempotency.Operation[m.BankAccount]("linkBankAccount", "BankAccount", lambda a: a.id, _replay_link)


async def link(
    writes: async_sessionmaker[AsyncSession],
    principal: Principal,
    gateway: BankTransferGateway,
    *,
    holder_name: str,
    routing_number: str,
    account_number: str,
    bank_name: str | None = None,
    make_default: bool | None = None,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> m.BankAccount:
    """PARTNER_ADMIN: link a bank account to the caller's connection, tokenized by the
    processor. It becomes the default if `make_default`, or if the connection has no
    default yet. A retry with the same idempotency key answers with the first account
    and does not ask the processor again.

    The processor is asked with no transaction open and no connection held (it may be
    slow), then the account is recorded in a transaction of its own. Should that not
    commit (a crash, a concurrent retry that recorded first), the token the processor gave
    is left unused there: tokenizing an account moves no money."""
    principal.require(Role.PARTNER_ADMIN)
    request, key = _checked_link(holder_name, routing_number, account_number, bank_name, make_default,
                                 idempotency_key)
    fingerprint = {
        "holderName": request.holder_name,
        "routingNumber": request.routing_number,
        "accountNumberLast4": request.account_number[-4:],
        "accountNumberLength": len(request.account_number),
        "bankName": request.bank_name,
        "makeDefault": request.make_default,
    }
    async with writes() as session:
        first = await idempotency.replayed(session, principal, LINK, key, fingerprint)
    if first is not None:
        return first
    try:
        linked = await gateway.link_account(request.holder_name, request.routing_number, request.account_number)
    except GatewayUnavailable:
        raise DomainError(
            ErrorCode.GATEWAY_UNAVAILABLE, "The bank transfer processor did not answer; try again.", "accountNumber"
        ) from None
    async with writes() as session, session.begin():
        return await idempotency.once(
            session, principal, LINK, key, fingerprint, lambda: _link(session, principal, linked, request, now_or(now)), now=now
        )


async def _link(
    session: AsyncSession, principal: Principal, linked: LinkedAccount, request: _LinkRequest, now: datetime,
) -> m.BankAccount:
    connection = await _locked_connection(session, principal)
    has_default = await session.scalar(
        select(m.BankAccount.id).where(
            m.BankAccount.connection_id == connection.id,
            m.BankAccount.is_default.is_(True),
            m.BankAccount.removed_at.is_(None),
        )
    )
    account = m.BankAccount(
        connection_id=connection.id,
        holder_name=request.holder_name,
        bank_name=request.bank_name or default_bank_name(request.routing_number),
        routing_number=request.routing_number,
        account_last4=linked.last4,
        account_token=linked.token,
        is_default=False,
        created_at=now,
    )
    session.add(account)
    await session.flush()
    if request.make_default or has_default is None:
        await _make_default(session, connection.id, account)
    return account


# ---- setDefaultBankAccount --------------------------------------------------------------

async def set_default(session: AsyncSession, principal: Principal, bank_account_id: int) -> Changed:
    """PARTNER_ADMIN: payouts sent without naming an account (and the payout preference)
    go to this one from now on. Already the default: nothing changes."""
    principal.require(Role.PARTNER_ADMIN)
    connection = await _locked_connection(session, principal)
    account = await _live_account(session, connection.id, bank_account_id)
    await _make_default(session, connection.id, account)
    return Changed(account, await live_accounts(session, connection.id))


# ---- unlinkBankAccount ------------------------------------------------------------------

async def unlink(
    session: AsyncSession, principal: Principal, bank_account_id: int, now: datetime | None = None
) -> Changed:
    """PARTNER_ADMIN: unlink an account no transfer is still on its way to. If it was the
    default, the oldest remaining account becomes the default."""
    principal.require(Role.PARTNER_ADMIN)
    connection = await _locked_connection(session, principal)
    account = await _live_account(session, connection.id, bank_account_id, lock=True)
    count, amount = (await session.execute(
        select(func.count(), func.coalesce(func.sum(m.BankTransfer.amount), 0)).where(
            m.BankTransfer.bank_account_id == account.id, m.BankTransfer.status.in_(IN_FLIGHT)
        )
    )).one()
    if count:
        transfers = "1 transfer is" if count == 1 else f"{count} transfers are"
        raise DomainError(
            ErrorCode.BANK_ACCOUNT_IN_USE,
            f"{transfers} still on the way to the bank account ending {account.account_last4} "
            f"({money.format(int(amount), connection.currency_code)}); unlink it once "
            f"{'it has' if count == 1 else 'they have'} been paid, or failed, or canceled.",
            "bankAccountId",
        )
    account.removed_at, account.is_default = now_or(now), False
    await session.flush()
    remaining = await live_accounts(session, connection.id)
    if remaining and not any(a.is_default for a in remaining):
        await _make_default(session, connection.id, remaining[0])
    return Changed(account, remaining)
