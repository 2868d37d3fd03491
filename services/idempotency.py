"""Idempotency keys: a retried creating mutation answers with its first result.

A client that cannot tell whether its request went through (a timeout, a lost
connection) sends it again with the same key. The key belongs to the user who
sent it (unique per user). `once` claims the key, by inserting its row, in the
mutation's own transaction and BEFORE the work, and records the result there:

- the claim and the work commit or roll back together, so a refused attempt
  (a DomainError) leaves the key unused and a retry runs for real;
- of concurrent attempts with one key exactly one does the work. On PostgreSQL
  (READ COMMITTED) the others' INSERT waits on the unique index until that
  transaction ends and then fails; they roll back to a savepoint and read the
  row it committed. On SQLite write transactions take turns (BEGIN IMMEDIATE,
  see db.engine), so a later one finds the row at once;
- a replay with the same input reads the result again, as it now stands, and
  changes nothing; the same key with other input, or on another operation,
  is refused with IDEMPOTENCY_KEY_REUSED;
- a key is kept for a retention period at least, then `purge` removes it (as
  Stripe removes its keys): sent again after that, it is a new request. The
  ledger's own transfer keys are not these: they stay unique forever.

Each operation (`Operation`) says what its result is and how to read it again;
it is declared next to the service function that does the work.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Awaitable, Callable, Generic, Mapping, TypeVar

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import models as m
from services.access import Principal
from services.clock import now_or
from services.errors import DomainError, ErrorCode

MAX_KEY_LENGTH = 200
FIELD = "idempotencyKey"

R = TypeVar("R")


@dataclass(frozen=True)
class Operation(Generic[R]):
    """A creating operation whose result a retry with the same key gets back."""

    # Stored with the key: the same key on another operation is refused.
    name: str
    # What `result_id` points at (a table's name in the graph, e.g. "Ticket").
    result_type: str
    result_id: Callable[[R], int]
    # Reads the stored result again, as it now stands, for this principal.
    replay: Callable[[AsyncSession, Principal, int], Awaitable[R]]


def checked_key(key: str) -> str:
    """The key as sent: 1 to 200 characters, not blank, no control characters."""
    if not key.strip():
        raise DomainError(ErrorCode.INVALID_IDEMPOTENCY_KEY, "idempotencyKey must not be blank.", FIELD)
    if len(key) > MAX_KEY_LENGTH:
        raise DomainError(
            ErrorCode.INVALID_IDEMPOTENCY_KEY,
            f"idempotencyKey must be at most {MAX_KEY_LENGTH} characters, got {len(key):,}.",
            FIELD,
        )
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in key):
        raise DomainError(
            ErrorCode.INVALID_IDEMPOTENCY_KEY,
            "idempotencyKey must be printable text, without control characters.",
            FIELD,
        )
    return key


def request_hash(request: Mapping[str, object]) -> str:
    """sha256 of the canonical JSON of an operation's meaningful input."""
    canonical = json.dumps(
        request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def once(
    session: AsyncSession,
    principal: Principal,
    operation: Operation[R],
    key: str | None,
    request: Mapping[str, object],
    work: Callable[[], Awaitable[R]],
    *,
    now: datetime | None = None,
) -> R:
    """Run `work` in the caller's transaction, at most once per (user, key).

    `request` is the input that makes two requests the same (never the key
    itself nor a clientMutationId). Without a key, `work` simply runs.
    """
    if key is None:
        return await work()
    key = checked_key(key)
    digest = request_hash(request)
    previous = await _claim(session, principal.user_id, key, operation.name, digest, now_or(now))
    if previous is not None:
        return await _replay(session, principal, operation, digest, previous)
    result = await work()
    await session.execute(
        update(m.IdempotencyKey)
        .where(m.IdempotencyKey.user_id == principal.user_id, m.IdempotencyKey.key == key)
        .values(result_type=operation.result_type, result_id=operation.result_id(result))
        .execution_options(synchronize_session=False)
    )
    return result


async def replayed(
    session: AsyncSession,
    principal: Principal,
    operation: Operation[R],
    key: str | None,
    request: Mapping[str, object],
) -> R | None:
    """The first result of `key`, read again, if it was used (refused if for other input);
    None if it is unused. For work that must call a processor before its transaction
    (`once` then claims the key): a retry is answered without asking the processor again."""
    if key is None:
        return None
    used = await _find(session, principal.user_id, checked_key(key))
    if used is None:
        return None
    first: R = await _replay(session, principal, operation, request_hash(request), used)
    return first


@dataclass(frozen=True)
class _Use:
    """What a key was first used for."""

    operation: str
    request_hash: str
    result_type: str | None
    result_id: int | None


async def _find(session: AsyncSession, user_id: int, key: str) -> _Use | None:
    row = (
        await session.execute(
            select(
                m.IdempotencyKey.operation,
                m.IdempotencyKey.request_hash,
                m.IdempotencyKey.result_type,
                m.IdempotencyKey.result_id,
            ).where(m.IdempotencyKey.user_id == user_id, m.IdempotencyKey.key == key)
        )
    ).first()
    return _Use(*row) if row is not None else None


async def _claim(
    session: AsyncSession, user_id: int, key: str, operation: str, digest: str, now: datetime
) -> _Use | None:
    """Insert the key's row (None), or give the row of the key's earlier use."""
    previous = await _find(session, user_id, key)
    if previous is not None:
        return previous
    try:
        async with session.begin_nested():
            await session.execute(
                insert(m.IdempotencyKey).values(
                    user_id=user_id,
                    key=key,
                    operation=operation,
                    request_hash=digest,
                    created_at=now,
                )
            )
    except IntegrityError:
        # A concurrent transaction claimed the key and committed; under READ
        # COMMITTED this next statement sees its row.
        previous = await _find(session, user_id, key)
        if previous is None:
            raise
        return previous
    return None


async def _replay(
    session: AsyncSession, principal: Principal, operation: Operation[R], digest: str, used: _Use
) -> R:
    if used.operation != operation.name:
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            f"This idempotencyKey was already used for {used.operation}; "
            "send a new key for a new request.",
            FIELD,
        )
    if used.request_hash != digest:
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            f"This idempotencyKey was already used for {used.operation} with other input; "
            "send a new key for a new request.",
            FIELD,
        )
    if used.result_type != operation.result_type or used.result_id is None:
        # The result is recorded in the transaction that claims the key: never missing.
        raise RuntimeError(
            f"idempotency key of {used.operation} holds {used.result_type}:{used.result_id}, "
            f"not a {operation.result_type}"
        )
    return await operation.replay(session, principal, used.result_id)


PURGE_BATCH = 5_000


async def purge(
    writes: async_sessionmaker[AsyncSession],
    before: datetime,
    *,
    batch_size: int = PURGE_BATCH,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Remove every key created before `before`, `batch_size` at a time, each batch in a
    short transaction of its own (oldest first), so that a purge of millions holds no lock
    for long and can be stopped and run again. How many were removed."""
    removed = 0
    while True:
        async with writes() as session, session.begin():
            ids = list(await session.scalars(
                select(m.IdempotencyKey.id).where(m.IdempotencyKey.created_at < before)
                .order_by(m.IdempotencyKey.created_at, m.IdempotencyKey.id).limit(batch_size)
            ))
            if not ids:
                return removed
            await session.execute(
                delete(m.IdempotencyKey).where(m.IdempotencyKey.id.in_(ids)).execution_options(synchronize_session=False)
            )
        removed += len(ids)
        if progress:
            progress(removed)
