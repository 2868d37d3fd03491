"""Sub-Org earnings: transactions recorded as they arrive, gathered into payouts by period.

`record` stores a batch of one connection's Sub-Org transactions (Revampd billing, through
the graph); `import_feed` a JSON-lines feed of many connections' (the CLI), all or nothing,
whose "reversal" lines record clawbacks of transactions refunded or charged back.
Each transaction keeps the fee rate of the Partner's plan when it was recorded: the
Partner's share is the gross less `money.basis_points_of(gross, fee_bps)` (half-even), so
a later plan change never touches what was recorded. A transaction arrives once: the
database holds one per connection and external id, and an INSERT ... ON CONFLICT DO
NOTHING reports what it did not insert as duplicates, whoever inserted it first.

`close_period` makes the payouts: for each connection with earnings not yet paid out,
in a transaction of its own that claims the connection row (`FOR UPDATE SKIP LOCKED`,
then waiting for those another writer held), ONE payout for its last completed period
(by `payout_period_type`) gathers every unpaid transaction that occurred before the
period's end (late arrivals from earlier periods too), is funded in the ledger
(PAYOUT_FUNDING, SUB_ORG_EARNINGS -> the payout's account), reduced by the connection's
outstanding clawbacks as far as it holds (services.clawbacks.net), and what is left is
disposed of as the connection prefers (services.payouts.apply_preference). The database allows one payout
per connection and period end, so however many runs there are, each period is paid
once. A bank transfer the preference made is sent to the processor after the commit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Any, Awaitable, Callable, Iterable, Sequence, TypeVar

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import models as m
from db.states import AccountKind, PayoutPeriodType, PayoutStatus, SubOrgTransactionKind, TransferKind
from services import clawbacks, idempotency, ledger, money, payouts
from services.access import Principal, Role
from services.bank_gateway import BankTransferGateway
from services.batches import chunks
from services.clock import now_or
from services.errors import DomainError, ErrorCode, InvalidInput, NotFound

log = logging.getLogger("revampd.earnings")

MAX_PER_CALL = 1000  # transactions in one recordSubOrgTransactions
MAX_EXTERNAL_ID = 100
MAX_SUB_ORG_NAME = 200
MAX_DESCRIPTION = 300
# A transaction is recorded after it happened; this much clock difference is forgiven.
FUTURE_SKEW = timedelta(minutes=5)
KINDS = tuple(k.value for k in SubOrgTransactionKind)

T = TypeVar("T")


# ---- checking transactions -------------------------------------------------------------

@dataclass(frozen=True)
class TransactionInput:
    """A transaction as it was sent. A missing field is None; `occurred_at` is a datetime
    (from the graph) or the ISO 8601 text of a feed."""

    external_id: str | None
    sub_org_name: str | None
    kind: str | None
    gross_amount: str | None
    occurred_at: datetime | str | None
    description: str | None = None


@dataclass(frozen=True)
class _Checked:
    external_id: str
    sub_org_name: str
    kind: str
    gross: int
    occurred_at: datetime
    description: str


def _required(value: str | None, name: str, code: ErrorCode) -> str:
    if value is None:
        raise DomainError(code, f"{name} is required.", name)
    return value


def _text(value: str, name: str, code: ErrorCode, limit: int, *, minimum: int = 1) -> str:
    if not minimum <= len(value) <= limit:
        raise DomainError(code, f"{name} must be {minimum} to {limit} characters, got {len(value):,}.", name)
    if not value.isprintable():
        raise DomainError(code, f"{name} must be printable text, without control characters or line breaks.", name)
    return value


def _external_id(value: str | None) -> str:
    text = _text(_required(value, "externalId", ErrorCode.INVALID_EXTERNAL_ID), "externalId", ErrorCode.INVALID_EXTERNAL_ID,
                 MAX_EXTERNAL_ID)
    if text != text.strip():
        raise DomainError(ErrorCode.INVALID_EXTERNAL_ID, "externalId must not begin or end with spaces.", "externalId")
    return text


def _kind(value: str | None) -> str:
    kind = _required(value, "kind", ErrorCode.INVALID_KIND)
    if kind not in KINDS:
        shown = kind if len(kind) <= 40 else kind[:40] + "..."
        raise DomainError(ErrorCode.INVALID_KIND, f"kind must be {' or '.join(KINDS)}, got {shown!r}.", "kind")
    return kind


def _occurred_at(value: datetime | str | None, now: datetime) -> datetime:
    if isinstance(value, datetime):
        at: datetime | None = value
    else:
        text = _required(value, "occurredAt", ErrorCode.INVALID_OCCURRED_AT)
        try:
            at = datetime.fromisoformat(text) if len(text) <= 40 else None
        except ValueError:
            at = None
        if at is None:
            raise DomainError(
                ErrorCode.INVALID_OCCURRED_AT, "occurredAt must be an ISO 8601 date-time with its UTC offset, "
                "such as \"2026-03-01T12:00:00Z\".", "occurredAt",
            )
    assert at is not None
    if at.tzinfo is None or at.utcoffset() is None:
        raise DomainError(
            ErrorCode.INVALID_OCCURRED_AT, "occurredAt needs its UTC offset (\"Z\" or \"+02:00\"), or it could fall in "
            "another period.", "occurredAt",
        )
    at = at.astimezone(timezone.utc)
    if at > now + FUTURE_SKEW:
        raise DomainError(
            ErrorCode.INVALID_OCCURRED_AT, f"occurredAt is in the future ({at.isoformat()}); a transaction is recorded "
            "after it happened.", "occurredAt",
        )
    return at


def _check_one(item: TransactionInput, currency: str, now: datetime) -> tuple[_Checked | None, list[DomainError]]:
    """One item checked field by field; every field that is wrong, by its name."""
    errors: list[DomainError] = []

    def attempt(parse: Callable[[], T]) -> T | None:
        try:
            return parse()
        except DomainError as err:
            errors.append(err)
            return None

    external_id = attempt(lambda: _external_id(item.external_id))
    name = attempt(lambda: _text(
        _required(item.sub_org_name, "subOrgName", ErrorCode.INVALID_SUB_ORG_NAME).strip(), "subOrgName",
        ErrorCode.INVALID_SUB_ORG_NAME, MAX_SUB_ORG_NAME,
    ))
    kind = attempt(lambda: _kind(item.kind))
    gross = attempt(lambda: money.parse(
        _required(item.gross_amount, "grossAmount", ErrorCode.INVALID_AMOUNT), currency, "grossAmount"
    ))
    occurred_at = attempt(lambda: _occurred_at(item.occurred_at, now))
    description = attempt(lambda: _text(
        (item.description or "").strip(), "description", ErrorCode.INVALID_DESCRIPTION, MAX_DESCRIPTION, minimum=0
    ))
    if errors:
        return None, errors
    assert external_id is not None and name is not None and kind is not None and gross is not None
    assert occurred_at is not None and description is not None
    return _Checked(external_id, name, kind, gross, occurred_at, description), []


def check(
    items: Sequence[TransactionInput], currency: str, now: datetime
) -> tuple[list[_Checked], list[DomainError]]:
    """Each item in minor units of `currency`, and an error for every bad field of every
    item, its field ["transactions", "<index>", "<name>"]."""
    checked: list[_Checked] = []
    errors: list[DomainError] = []
    for i, item in enumerate(items):
        one, found = _check_one(item, currency, now)
        errors += [DomainError(e.code, e.message, ["transactions", str(i), *(e.field or [])]) for e in found]
        if one is not None:
            checked.append(one)
    return checked, errors


# ---- recording transactions ------------------------------------------------------------

@dataclass(frozen=True)
class Recorded:
    """What a batch did: the transactions it recorded and the external ids it ignored, each
    in the batch's order (an id sent twice is recorded once and ignored once)."""

    connection: m.Connection
    transactions: list[m.SubOrgTransaction]
    duplicates: list[str]


async def fee_bps(session: AsyncSession, connection_id: int) -> int:
    """Revampd's transaction fee for the connection now: its plan's, in basis points."""
    bps = await session.scalar(
        select(m.Plan.transaction_fee_bps).join(m.Subscription, m.Subscription.plan_id == m.Plan.id)
        .where(m.Subscription.connection_id == connection_id)
    )
    if bps is None:
        raise DomainError(
            ErrorCode.NO_PLAN, "This connection has no plan, so Revampd's transaction fee is unknown.", "connectionId"
        )
    return int(bps)


async def _insert(
    session: AsyncSession, connection: m.Connection, checked: Sequence[_Checked], bps: int, now: datetime
) -> tuple[list[m.SubOrgTransaction], list[int]]:
    """Insert what is new; (the rows inserted, the indexes in `checked` not inserted).

    ON CONFLICT DO NOTHING on (connection, external id): a transaction stored before, or by
    a concurrent batch (PostgreSQL waits for that one to end), is not inserted and not
    returned; that is how a duplicate is known, whoever got there first."""
    first: dict[str, int] = {}
    for i, c in enumerate(checked):
        first.setdefault(c.external_id, i)
    rows = []
    for i in sorted(first.values()):
        c = checked[i]
        fee = money.basis_points_of(c.gross, bps)
        rows.append(dict(
            connection_id=connection.id, payout_id=None, external_id=c.external_id, sub_org_name=c.sub_org_name,
            description=c.description, kind=c.kind, gross_amount=c.gross, fee_bps=bps, fee_amount=fee,
            partner_amount=c.gross - fee, occurred_at=c.occurred_at, recorded_at=now,
        ))
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    T_ = m.SubOrgTransaction
    inserted: dict[str, m.SubOrgTransaction] = {}
    for chunk in chunks(rows):
        stmt = (
            insert(T_).values(list(chunk))
            .on_conflict_do_nothing(index_elements=["connection_id", "external_id"])
            .returning(T_.id)
        )
        ids = list((await session.execute(stmt)).scalars())
        if ids:
            for row in await session.scalars(select(T_).where(T_.id.in_(ids))):
                inserted[row.external_id] = row
    recorded = [inserted[c.external_id] for i, c in enumerate(checked)
                if first[c.external_id] == i and c.external_id in inserted]
    ignored = [i for i, c in enumerate(checked) if first[c.external_id] != i or c.external_id not in inserted]
    return recorded, ignored


async def _connection(session: AsyncSession, connection_id: int) -> m.Connection:
    connection = await session.get(m.Connection, connection_id)
    if connection is None:
        raise NotFound("RevampdConnection", "connectionId")
    return connection


async def _record(
    session: AsyncSession, connection_id: int, items: Sequence[TransactionInput], now: datetime
) -> Recorded:
    connection = await _connection(session, connection_id)
    checked, errors = check(items, connection.currency_code, now)
    if errors:
        raise InvalidInput(errors)
    recorded, ignored = await _insert(session, connection, checked, await fee_bps(session, connection.id), now)
    return Recorded(connection, recorded, [checked[i].external_id for i in ignored])


def _operation(connection_id: int, external_ids: list[str]) -> idempotency.Operation[Recorded]:
    """The batch's idempotency: its result is the first transaction it recorded (0: none);
    a replay finds the rest by the request's external ids, recorded in the same instant."""

    async def replay(session: AsyncSession, principal: Principal, first_id: int) -> Recorded:
        connection = await _connection(session, connection_id)
        anchor = await session.get(m.SubOrgTransaction, first_id) if first_id else None
        stored = {
            t.external_id: t for t in await session.scalars(select(m.SubOrgTransaction).where(
                m.SubOrgTransaction.connection_id == connection_id,
                m.SubOrgTransaction.external_id.in_(set(external_ids)),
            ))
        }
        recorded: list[m.SubOrgTransaction] = []
        duplicates: list[str] = []
        seen: set[int] = set()
        for external_id in external_ids:
            t = stored.get(external_id)
            if (t is not None and anchor is not None and t.recorded_at == anchor.recorded_at
                    and t.id >= anchor.id and t.id not in seen):
                seen.add(t.id)
                recorded.append(t)
            else:
                duplicates.append(external_id)
        return Recorded(connection, recorded, duplicates)

    return idempotency.Operation[Recorded](
        "recordSubOrgTransactions", "SubOrgTransaction",
        lambda r: min((t.id for t in r.transactions), default=0), replay,
    )


async def record(
    session: AsyncSession,
    principal: Principal | None,
    connection_id: int,
    items: Sequence[TransactionInput],
    now: datetime | None = None,
    *,
    idempotency_key: str | None = None,
) -> Recorded:
    """BILLING_ADMIN (or the system, `principal` None): record Sub-Org transactions of one
    connection, at most MAX_PER_CALL. Every bad field of every item is refused together
    (InvalidInput) and nothing is recorded; an external id already recorded for the
    connection, or sent twice, is ignored and reported in `duplicates`."""
    if principal is not None:
        principal.require(Role.BILLING_ADMIN)
    if len(items) > MAX_PER_CALL:
        raise DomainError(
            ErrorCode.TOO_MANY_TRANSACTIONS, f"Send at most {MAX_PER_CALL:,} transactions at a time, got {len(items):,}.",
            "transactions",
        )
    at = now_or(now)
    if principal is None or idempotency_key is None:
        return await _record(session, connection_id, items, at)
    request = {
        "connection": connection_id,
        "transactions": [
            [t.external_id, t.sub_org_name, t.kind, t.gross_amount,
             t.occurred_at.isoformat() if isinstance(t.occurred_at, datetime) else t.occurred_at, t.description]
            for t in items
        ],
    }
    operation = _operation(connection_id, [t.external_id or "" for t in items])
    return await idempotency.once(
        session, principal, operation, idempotency_key, request, lambda: _record(session, connection_id, items, at), now=now
    )


# ---- the feed --------------------------------------------------------------------------

FEED_FIELDS = ("partner", "connectionId", "externalId", "subOrgName", "kind", "grossAmount", "occurredAt",
               "description")
# A line with "type": "reversal" is a transaction refunded or charged back (services/clawbacks.py):
# `externalId` is the reversal's own id, `transactionExternalId` the transaction's, `kind` REFUND
# or CHARGEBACK, `amount` the Partner's share reversed (all of it when left out), `reason` optional.
REVERSAL_FIELDS = ("partner", "connectionId", "type", "externalId", "transactionExternalId", "kind", "amount",
                   "reason")
LINE_TYPES = ("transaction", "reversal")


@dataclass(frozen=True)
class FeedError:
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}" if self.field else f"line {self.line}: {self.message}"


class FeedRefused(Exception):
    """The feed has errors (every one of them, in line order); nothing was recorded."""

    def __init__(self, errors: list[FeedError]) -> None:
        super().__init__(f"{len(errors)} error{'' if len(errors) == 1 else 's'} in the feed")
        self.errors = errors


@dataclass(frozen=True)
class Imported:
    recorded: list[tuple[int, m.SubOrgTransaction]]  # (line, transaction)
    duplicates: list[tuple[int, str]]  # (line, external id)
    # The reversal lines: the clawbacks recorded, the reversals ignored (recorded before, or
    # twice in the feed), and what each clawback took from payouts.
    clawbacks: list[tuple[int, m.Clawback]] = field(default_factory=list)
    clawback_duplicates: list[tuple[int, str]] = field(default_factory=list)
    recoveries: list[m.ClawbackRecovery] = field(default_factory=list)


@dataclass
class _Group:
    connection: m.Connection
    lines: list[int] = field(default_factory=list)
    items: list[TransactionInput] = field(default_factory=list)


@dataclass
class _Reversals:
    connection: m.Connection
    lines: list[int] = field(default_factory=list)
    items: list[clawbacks.ClawbackInput] = field(default_factory=list)


def _feed_line(number: int, text: str) -> tuple[dict[str, Any] | None, list[FeedError]]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        return None, [FeedError(number, None, f"not valid JSON ({err})")]
    if not isinstance(data, dict):
        return None, [FeedError(number, None, "must be a JSON object, one transaction per line")]
    line_type = data.get("type", "transaction")
    if line_type not in LINE_TYPES:
        shown = repr(line_type) if len(repr(line_type)) <= 40 else repr(line_type)[:40] + "..."
        return None, [FeedError(number, "type", f"must be \"transaction\" (the default) or \"reversal\", got {shown}")]
    reversal = line_type == "reversal"
    fields: tuple[str, ...] = REVERSAL_FIELDS if reversal else FEED_FIELDS
    strings = REVERSAL_FIELDS[3:] if reversal else FEED_FIELDS[2:]
    what = "a reversal line has" if reversal else "a line has"
    errors = [FeedError(number, str(key)[:40], f"unknown field; {what} {', '.join(fields)}")
              for key in data if key not in fields and key != "type"]
    for key in strings:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            hint = " (a decimal string such as \"12.50\", never a JSON number)" if key in ("grossAmount", "amount") else ""
            errors.append(FeedError(number, key, f"must be a string{hint}, got {type(value).__name__}"))
    return data, errors


async def import_feed(
    session: AsyncSession,
    lines: Iterable[str],
    now: datetime | None = None,
    *,
    connection_id_of: Callable[[str], int | None] = lambda _: None,
) -> Imported:
    """Record a JSON-lines feed, one transaction per line naming its connection by
    `partner` (the Partner's name) or `connectionId` (its number, or an ID that
    `connection_id_of` reads); a line with "type": "reversal" records a clawback of a
    transaction (recorded before, or in the same feed), taken as services.clawbacks
    takes it. All or nothing: with any error, FeedRefused lists every one by line and
    field, and the caller's transaction must be rolled back (the lines' own errors are
    found before anything is written; a reversal's transaction or share is checked
    after the transactions are written, under its connection's lock). Blank lines are
    skipped."""
    at = now_or(now)
    errors: list[FeedError] = []
    groups: dict[int, _Group] = {}
    reversals: dict[int, _Reversals] = {}
    names: dict[str, m.Connection | None] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        data, problems = _feed_line(number, text)
        errors += problems
        if data is None:
            continue
        connection, problem = await _feed_connection(session, data, names, connection_id_of)
        if problem is not None:
            errors.append(FeedError(number, *problem))
        if data.get("type") == "reversal":
            given = {key: value if isinstance(value := data.get(key), str) else None for key in REVERSAL_FIELDS[3:]}
            reversal = clawbacks.ClawbackInput(
                transaction_external_id=given["transactionExternalId"], external_id=given["externalId"],
                kind=given["kind"], amount=given["amount"], reason=given["reason"],
            )
            if connection is None or problems:
                skip = {e.field for e in problems} | ({"amount"} if connection is None else set())
                _, found_ = clawbacks.check([reversal], connection.currency_code if connection else "USD")
                errors += [FeedError(number, e.field[-1], e.message) for e in found_
                           if e.field and e.field[-1] not in skip]
                continue
            pending = reversals.setdefault(connection.id, _Reversals(connection))
            pending.lines.append(number)
            pending.items.append(reversal)
            continue
        values = [data.get(key) for key in FEED_FIELDS[2:]]
        item = TransactionInput(*(v if isinstance(v, str) else None for v in values))
        if connection is None or problems:
            # Not to be recorded, but every other field is still checked: all errors at once.
            skip = {e.field for e in problems} | ({"grossAmount"} if connection is None else set())
            _, found = _check_one(item, connection.currency_code if connection else "USD", at)
            errors += [FeedError(number, e.field[-1], e.message) for e in found
                       if e.field and e.field[-1] not in skip]
            continue
        group = groups.setdefault(connection.id, _Group(connection))
        group.lines.append(number)
        group.items.append(item)
    checked: dict[int, list[_Checked]] = {}
    for cid, group in groups.items():
        checked[cid], problems_ = check(group.items, group.connection.currency_code, at)
        for err in problems_:
            assert err.field is not None
            errors.append(FeedError(group.lines[int(err.field[1])], err.field[-1], err.message))
    checked_reversals: dict[int, list[clawbacks.Checked]] = {}
    for cid, pending in reversals.items():
        checked_reversals[cid], problems_ = clawbacks.check(pending.items, pending.connection.currency_code)
        for err in problems_:
            assert err.field is not None
            errors.append(FeedError(pending.lines[int(err.field[1])], err.field[-1], err.message))
    rates: dict[int, int] = {}
    for cid, group in groups.items():
        try:
            rates[cid] = await fee_bps(session, cid)
        except DomainError as err:
            errors += [FeedError(n, None, f"connection {cid}: {err.message}") for n in group.lines]
    if errors:
        raise FeedRefused(sorted(errors, key=lambda e: e.line))
    recorded: list[tuple[int, m.SubOrgTransaction]] = []
    duplicates: list[tuple[int, str]] = []
    for cid, group in groups.items():
        rows, ignored = await _insert(session, group.connection, checked[cid], rates[cid], at)
        by_id = {t.external_id: t for t in rows}
        ignored_set = set(ignored)
        for i, (number, c) in enumerate(zip(group.lines, checked[cid], strict=True)):
            if i in ignored_set:
                duplicates.append((number, c.external_id))
            else:
                recorded.append((number, by_id[c.external_id]))
    # The reversals, after the transactions they may reverse; connections in id order, as
    # every writer that locks several takes them.
    taken: list[tuple[int, m.Clawback]] = []
    ignored_reversals: list[tuple[int, str]] = []
    recoveries: list[m.ClawbackRecovery] = []
    for cid in sorted(reversals):
        pending, items = reversals[cid], checked_reversals[cid]
        try:
            done = await clawbacks.record_checked(session, cid, items, created_by_id=None, now=at)
        except InvalidInput as err:
            errors += [FeedError(pending.lines[int(e.field[1])], e.field[-1], e.message) for e in err.errors if e.field]
            continue
        taken += [(pending.lines[i], row) for i, row in zip(done.recorded_at, done.clawbacks, strict=True)]
        ignored_reversals += [(pending.lines[i], items[i].external_id) for i in done.ignored_at]
        recoveries += done.recoveries
    if errors:
        raise FeedRefused(sorted(errors, key=lambda e: e.line))
    return Imported(sorted(recorded, key=lambda r: r[0]), sorted(duplicates), sorted(taken, key=lambda r: r[0]),
                    sorted(ignored_reversals), recoveries)


async def _feed_connection(
    session: AsyncSession, data: dict[str, Any], names: dict[str, m.Connection | None],
    connection_id_of: Callable[[str], int | None],
) -> tuple[m.Connection | None, tuple[str, str] | None]:
    """The connection a feed line names, or (None, (field, what is wrong))."""
    partner, ref = data.get("partner"), data.get("connectionId")
    if partner is not None and ref is not None:
        return None, ("connectionId", "give partner or connectionId, not both")
    if partner is None and ref is None:
        return None, ("partner", "partner (the Partner's name) or connectionId is required")
    if partner is not None:
        if not isinstance(partner, str):
            return None, ("partner", f"must be the Partner's name as a string, got {type(partner).__name__}")
        if partner not in names:
            names[partner] = await session.scalar(
                select(m.Connection).join(m.Partner, m.Partner.id == m.Connection.partner_id)
                .where(m.Partner.name == partner)
            ) if len(partner) <= 200 else None
        found = names[partner]
        shown = partner if len(partner) <= 60 else partner[:60] + "..."
        return (found, None) if found is not None else (None, ("partner", f"no Partner is named {shown!r}"))
    pk: int | None = None
    if type(ref) is int:
        pk = ref
    elif isinstance(ref, str):
        pk = int(ref) if ref.isascii() and ref.isdigit() and len(ref) <= 18 else connection_id_of(ref)
    connection = await session.get(m.Connection, pk) if pk is not None and 0 < pk < 2**63 else None
    if connection is None:
        shown = str(ref) if len(str(ref)) <= 60 else str(ref)[:60] + "..."
        return None, ("connectionId", f"no RevampdConnection {shown!r}")
    return connection, None


# ---- closing a period: the payouts -----------------------------------------------------

def last_period(period_type: str, now: datetime) -> tuple[datetime, datetime]:
    """The last period completed by `now`, [start, end) in UTC: MONTHLY from the 1st of
    the previous month to the 1st of this one; WEEKLY from the Monday before last to the
    last Monday (00:00)."""
    now = now.astimezone(timezone.utc)
    if period_type == PayoutPeriodType.WEEKLY:
        end = datetime.combine(now.date() - timedelta(days=now.weekday()), time(), timezone.utc)
        return end - timedelta(days=7), end
    end = datetime.combine(now.date().replace(day=1), time(), timezone.utc)
    return datetime.combine((end - timedelta(days=1)).date().replace(day=1), time(), timezone.utc), end


@dataclass
class Closed:
    """A payout made for a connection's period, and what its preference did with it."""

    partner_name: str
    payout: m.Payout
    transactions: int
    preference: str | None
    disposed: payouts.Disposed | None
    bank_last4: str | None = None
    # The bank transfer once sent to the processor (after the payout's commit).
    sent: m.BankTransfer | None = None
    # Taken by outstanding clawbacks of earlier periods (services.clawbacks.net), and how many.
    clawed_back: int = 0
    clawbacks: int = 0

    def describe(self) -> str:
        p, cur = self.payout, self.payout.currency_code
        days = "week" if p.period_type == PayoutPeriodType.WEEKLY else "month"
        head = (
            f"{self.partner_name} (connection {p.connection_id}): payout {p.id} for the {days} "
            f"{p.period_start:%Y-%m-%d} to {p.period_end:%Y-%m-%d}, {self.transactions} transaction"
            f"{'' if self.transactions == 1 else 's'}: gross {money.format(p.gross_amount, cur)}, "
            f"fees {money.format(p.fee_amount, cur)}, net {money.format(p.amount, cur)}"
        )
        if self.clawed_back:
            n = self.clawbacks
            head += (f"; {money.format(self.clawed_back, cur)} taken by {n} outstanding clawback{'' if n == 1 else 's'}"
                     f", {money.format(p.amount - self.clawed_back, cur)} left")
        return f"{head}; {self._what_happened()}"

    def _what_happened(self) -> str:
        p, cur = self.payout, self.payout.currency_code
        if self.preference is None:
            return "no payout preference: available to the Partner" if p.available_amount else "nothing left to pay out"
        d = self.disposed
        parts = []
        if d is not None and d.disposition.wallet_amount:
            parts.append(f"{money.format(d.disposition.wallet_amount, cur)} credited to the wallet")
        if d is not None and d.bank_transfer is not None:
            sent = self.sent or d.bank_transfer
            state = (
                f"sent to the processor as {sent.gateway_ref}, {sent.status}" if sent.gateway_ref
                else "not sent yet: the processor did not answer (`revampd-bff payouts sync` sends it)"
            )
            parts.append(
                f"{money.format(d.bank_transfer.amount, cur)} to the bank account ending {self.bank_last4} "
                f"(bank transfer {d.bank_transfer.id}: {state})"
            )
        if p.available_amount:
            why = "" if d is not None and d.bank_transfer is not None else ", as there is no default bank account"
            parts.append(f"{money.format(p.available_amount, cur)} left available{why}")
        return f"preference {self.preference}: " + (", ".join(parts) or "nothing left to pay out")


async def close_connection(
    session: AsyncSession, connection_id: int, now: datetime, *, wait: bool = False
) -> Closed | str:
    """Make the payout of the connection's last period completed by `now`, in the caller's
    transaction: a Closed, or why not: 'locked' (another transaction holds the connection;
    only without `wait`), 'exists' (the period's payout was made) or 'nothing' (no earnings
    to pay out)."""
    C, S = m.Connection, m.SubOrgTransaction
    connection = await session.scalar(
        select(C).where(C.id == connection_id).with_for_update(skip_locked=not wait)
        .execution_options(populate_existing=True)
    )
    if connection is None:
        return "locked"
    start, end = last_period(connection.payout_period_type, now)
    if await session.scalar(select(m.Payout.id).where(m.Payout.connection_id == connection.id,
                                                      m.Payout.period_end == end)):
        return "exists"
    earned = (await session.execute(
        select(S.id, S.gross_amount, S.fee_amount, S.partner_amount)
        .where(S.connection_id == connection.id, S.payout_id.is_(None), S.occurred_at < end)
        .order_by(S.id).with_for_update()
    )).all()
    net = sum(r.partner_amount for r in earned)
    if net <= 0:
        return "nothing"
    payout = m.Payout(
        connection_id=connection.id, period_type=connection.payout_period_type, period_start=start,
        period_end=end, currency_code=connection.currency_code, gross_amount=sum(r.gross_amount for r in earned),
        fee_amount=sum(r.fee_amount for r in earned), amount=net, available_amount=net, wallet_amount=0,
        bank_in_flight_amount=0, bank_paid_amount=0, status=PayoutStatus.AVAILABLE, created_at=now, updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(payout)
            await session.flush()
    except IntegrityError:  # uq_payouts_one_per_period: another run made it first
        return "exists"
    ids = [r.id for r in earned]
    moved = 0
    for chunk in chunks(ids):
        result = await session.execute(
            update(S).where(S.id.in_(chunk), S.payout_id.is_(None)).values(payout_id=payout.id)
            .execution_options(synchronize_session=False)
        )
        moved += int(getattr(result, "rowcount", 0))
    if moved != len(ids):
        raise RuntimeError(f"connection {connection.id}: {len(ids) - moved} transactions were paid out meanwhile")
    earnings = await ledger.system_account(session, AccountKind.SUB_ORG_EARNINGS, connection.currency_code, connection.id, now)
    own = await ledger.payout_account(session, payout, now)
    days = f"{start:%B %Y}" if payout.period_type == PayoutPeriodType.MONTHLY else f"week of {start:%b %d, %Y}"
    await ledger.post(session, [ledger.Transfer(
        f"payout:{payout.id}:funding", TransferKind.PAYOUT_FUNDING, earnings.id, own.id, payout.amount,
        memo=f"Sub-Org earnings, {days}", payout_id=payout.id,
    )], now=now)
    await payouts.refresh(session, payout, now)
    # Funded in full; then what earlier clawbacks could not take is taken from it, before the
    # preference disposes of the rest.
    recoveries = await clawbacks.net(session, payout, now)
    disposed = await payouts.apply_preference(session, connection, payout, now)
    name = await session.scalar(select(m.Partner.name).where(m.Partner.id == connection.partner_id))
    last4 = None
    if disposed is not None and disposed.bank_transfer is not None:
        last4 = await session.scalar(select(m.BankAccount.account_last4).where(
            m.BankAccount.id == disposed.bank_transfer.bank_account_id))
    return Closed(name or "?", payout, len(ids), connection.payout_mode, disposed, last4,
                  clawed_back=sum(r.amount for r in recoveries), clawbacks=len(recoveries))


BUSY_ATTEMPTS = 3


@dataclass
class CloseSummary:
    made: list[Closed] = field(default_factory=list)
    exists: int = 0  # connections whose period was paid out already
    nothing: int = 0  # connections with nothing (or nothing positive) to pay out
    failed: list[int] = field(default_factory=list)  # connection ids; each logged with its traceback


async def close_period(
    reads: async_sessionmaker[AsyncSession],
    writes: async_sessionmaker[AsyncSession],
    now: datetime,
    gateway: BankTransferGateway,
    *,
    report: Callable[[Closed], None] = lambda closed: None,
    busy: Callable[[BaseException], bool] = lambda exc: False,
    progress: Callable[[int, int], None] | None = None,
) -> CloseSummary:
    """Pay out every connection's last completed period, each connection in a transaction
    of its own (`writes` makes write sessions: BEGIN IMMEDIATE on SQLite).

    The connections with unpaid earnings are claimed with SKIP LOCKED: one that another
    run holds is that run's. Those skipped are then waited for, as the holder may be no
    closing run at all (a billing run, a Partner's mutation); by then a closing run has
    made the payout, and it is not made again. A bank transfer the preference made is
    sent to the processor after the payout commits (payouts.submit, two-phase). A failure
    is logged and counted and stops nothing else; the next run tries it again."""
    summary = CloseSummary()
    async with reads() as session:
        S = m.SubOrgTransaction
        due = list(await session.scalars(
            select(S.connection_id).where(S.payout_id.is_(None), S.occurred_at < now)
            .group_by(S.connection_id).order_by(S.connection_id)
        ))

    async def transact(what: str, work: Callable[[AsyncSession], Awaitable[T]]) -> tuple[bool, T | None]:
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            try:
                async with writes() as session, session.begin():
                    return True, await work(session)
            except Exception as exc:
                if busy(exc) and attempt < BUSY_ATTEMPTS:
                    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                    log.warning("payouts: %s: the database is busy (%s); trying again", what, reason)
                    continue
                log.exception("payouts: %s failed", what)
                return False, None
        raise AssertionError("unreachable")

    async def close(connection_id: int, wait: bool) -> str:
        ok, outcome = await transact(
            f"connection {connection_id}", lambda s: close_connection(s, connection_id, now, wait=wait)
        )
        if not ok or outcome is None:
            summary.failed.append(connection_id)
            return "failed"
        if isinstance(outcome, str):
            if outcome == "exists":
                summary.exists += 1
            elif outcome == "nothing":
                summary.nothing += 1
            return outcome
        transfer = outcome.disposed.bank_transfer if outcome.disposed else None
        if transfer is not None:
            try:  # two short transactions of its own, none open while the processor answers
                outcome.sent = await payouts.submit(writes, gateway, transfer.id, now)
            except Exception:
                log.exception("payouts: bank transfer %s failed; `payouts sync` sends it", transfer.id)
                outcome.sent = None
        summary.made.append(outcome)
        report(outcome)
        return "made"

    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, len(due))

    if progress:
        progress(0, len(due))
    skipped = []
    for cid in due:
        if await close(cid, wait=False) == "locked":
            skipped.append(cid)
        else:
            step()
    for cid in skipped:
        await close(cid, wait=True)
        step()
    return summary
