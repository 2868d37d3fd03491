"""Events: what a transaction changed that a connection's users can follow, written in that
transaction and announced only once it has committed.

A write session (db.engine.write_sessions) notes, at each flush, the rows of the followed
tables it inserted or changed. When its transaction commits, it first writes one `Event` per
row still there (a row whose savepoint rolled back is not), numbered per connection by
`EventSequence` as the transaction's last statements, so the numbers follow commit order
(the sequence row stays locked until commit); then, after the commit, it hands the
(connection, last number) of each connection it changed to the session's `announce`
(server.live tells every worker's subscribers, which read the rows). A rollback writes and
announces nothing. Writes made without the ORM (Core statements) say what they changed with `note`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, attributes

from db import models as m
from db.states import AccountKind, EventAction

# Told, after a commit, the last event number of each connection it wrote events for.
Announce = Callable[[Sequence[tuple[int, int]]], None]

_NOTED = "revampd.events.noted"  # session.info: {row: action}
_GIVEN = "revampd.events.given"  # session.info: events noted by `note`
_WRITTEN = "revampd.events.written"  # session.info: [(connection_id, last_seq)] once written
ANNOUNCE = "revampd.events.announce"  # session.info (from the sessionmaker): an Announce
NOW = "revampd.events.now"  # session.info: the instant events are stamped with (else the clock)

# The followed tables by model: the subject an event names.
SUBJECTS: dict[type[Any], str] = {
    m.Ticket: "tickets",
    m.TicketMessage: "ticket_messages",
    m.Invoice: "invoices",
    m.Payout: "payouts",
    m.BankTransfer: "bank_transfers",
    m.AddOn: "addons",
    m.Subscription: "subscriptions",
    m.AffiliatePayout: "affiliate_payouts",
    m.LedgerEntry: "ledger_entries",
    m.LedgerAccount: "wallets",  # a wallet account's balance (other accounts are no one's to follow)
}


class EventSession(Session):
    """The sync session of write sessions: notes followed rows at each flush, writes their
    events at commit and announces them after."""


def note(session: Any, connection_id: int, subject: str, subject_id: int, *,
         action: EventAction = EventAction.UPDATED, ticket_id: int | None = None) -> None:
    """Note a followed row changed by a Core statement (the ORM notes its own rows); `session`
    is the AsyncSession or its sync session."""
    sync = getattr(session, "sync_session", session)
    sync.info.setdefault(_GIVEN, []).append((connection_id, subject, subject_id, action.value, ticket_id))


def _pk(row: Any) -> Any:
    return row.connection_id if isinstance(row, m.Subscription) else row.id


@event.listens_for(EventSession, "after_flush")
def _noted(session: Session, _context: Any) -> None:
    noted = None
    for rows, action in ((session.new, EventAction.CREATED), (session.dirty, EventAction.UPDATED)):
        for row in rows:
            if type(row) not in SUBJECTS or (action is EventAction.UPDATED and not _changed(row)):
                continue
            if noted is None:
                noted = session.info.setdefault(_NOTED, {})
            # By the object (one per row in a session), not its key: a row made under a savepoint
            # that rolled back may leave its key to another. Made, then changed: still made.
            noted.setdefault(row, action)


def _changed(row: Any) -> bool:
    state = attributes.instance_state(row)
    return any(state.attrs[name].history.has_changes() for name in state.mapper.column_attrs.keys())


@event.listens_for(EventSession, "before_commit")
def _write(session: Session) -> None:
    if session.in_nested_transaction():
        return
    session.flush()  # the last changes are noted before their events are written
    noted = session.info.pop(_NOTED, None) or {}
    # A row made under a savepoint that rolled back is no longer persistent: no event.
    events = _events(session, [(row, action) for row, action in noted.items()
                               if attributes.instance_state(row).persistent])
    events += session.info.pop(_GIVEN, [])
    if not events:
        return
    now = session.info.get(NOW) or datetime.now(UTC)
    counts: dict[int, int] = {}
    for connection_id, *_ in events:
        counts[connection_id] = counts.get(connection_id, 0) + 1
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    last: dict[int, int] = {}
    for connection_id in sorted(counts):  # one lock order for every transaction
        taken = insert(m.EventSequence).values(connection_id=connection_id, last_seq=counts[connection_id])
        stmt = taken.on_conflict_do_update(
            index_elements=["connection_id"], set_={"last_seq": m.EventSequence.last_seq + counts[connection_id]}
        ).returning(m.EventSequence.last_seq)
        last[connection_id] = session.execute(stmt).scalar_one()
    seq = {c: last[c] - counts[c] for c in counts}
    rows = []
    for connection_id, subject, subject_id, action, ticket_id in events:
        seq[connection_id] += 1
        rows.append({"connection_id": connection_id, "seq": seq[connection_id], "subject": subject,
                     "subject_id": subject_id, "action": action, "ticket_id": ticket_id, "occurred_at": now})
    session.execute(sa_insert(m.Event), rows)
    session.info[_WRITTEN] = sorted(last.items())


def _events(session: Session, noted: list[tuple[Any, EventAction]]) -> list[tuple[int, str, int, str, int | None]]:
    """(connection, subject, subject id, action, ticket) of each noted row that belongs to a
    connection, in the order noted; a row's connection read where the row does not hold it."""
    tickets = {r.ticket_id for r, _ in noted if isinstance(r, m.TicketMessage)}
    payouts = {r.payout_id for r, _ in noted if isinstance(r, m.BankTransfer)}
    accounts = {r.account_id for r, _ in noted if isinstance(r, m.LedgerEntry)}
    accounts |= {r.id for r, _ in noted if isinstance(r, m.LedgerAccount)}
    of_ticket = dict(session.execute(select(m.Ticket.id, m.Ticket.connection_id).where(m.Ticket.id.in_(tickets))).all()) if tickets else {}
    of_payout = dict(session.execute(select(m.Payout.id, m.Payout.connection_id).where(m.Payout.id.in_(payouts))).all()) if payouts else {}
    wallets = dict(session.execute(
        select(m.LedgerAccount.id, m.LedgerAccount.connection_id)
        .where(m.LedgerAccount.id.in_(accounts), m.LedgerAccount.kind == AccountKind.WALLET)
    ).all()) if accounts else {}
    found: list[tuple[int, str, int, str, int | None]] = []
    for row, action in noted:
        subject, ticket = SUBJECTS[type(row)], None
        if isinstance(row, m.TicketMessage):
            connection, ticket = of_ticket.get(row.ticket_id), row.ticket_id
        elif isinstance(row, m.Ticket):
            connection, ticket = row.connection_id, row.id
        elif isinstance(row, m.BankTransfer):
            connection = of_payout.get(row.payout_id)
        elif isinstance(row, m.LedgerEntry):
            connection = wallets.get(row.account_id)
        elif isinstance(row, m.LedgerAccount):
            connection = wallets.get(row.id)
            if connection is None:
                continue
            found.append((connection, subject, connection, EventAction.UPDATED.value, None))  # the wallet, by connection
            continue
        else:
            connection = row.connection_id
        if connection is not None:
            found.append((connection, subject, _pk(row), action.value, ticket))
    return found


@event.listens_for(EventSession, "after_commit")
def _announce(session: Session) -> None:
    written = session.info.pop(_WRITTEN, None)
    announce = session.info.get(ANNOUNCE)
    if written and announce is not None:
        announce(written)


@event.listens_for(EventSession, "after_transaction_end")
def _forget(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the whole transaction ended (after _announce, or rolled back)
        for key in (_NOTED, _GIVEN, _WRITTEN):
            session.info.pop(key, None)
