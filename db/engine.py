"""Engine and session factories.

SQLite gets foreign keys, WAL and a busy timeout on every connection, and
`BEGIN IMMEDIATE` for write transactions so that money movements run in the
same serial order that row locks give on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as exc_
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from db.events import ANNOUNCE, Announce, EventSession

WRITE_OPTION = "revampd_write"

# SQLSTATEs that mean "too busy right now", not "wrong": lock_timeout, statement
# timeout, too many connections, serialization failure, deadlock.
_BUSY_SQLSTATES = frozenset({"55P03", "57014", "53300", "40001", "40P01"})


def create_engine(
    url: str,
    *,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pool_timeout: float | None = None,
    lock_timeout_ms: int = 10_000,
    foreign_keys: bool = True,
) -> AsyncEngine:
    """An engine whose waits are bounded: for a pooled connection (`pool_timeout`
    seconds) and for a row or database lock (`lock_timeout_ms`). `foreign_keys=False`
    is for migrations only: SQLite rebuilds a table to alter it, which a table
    referencing it would refuse (the migration checks the keys afterwards)."""
    pool: dict[str, Any] = {
        k: v
        for k, v in (("pool_size", pool_size), ("max_overflow", max_overflow), ("pool_timeout", pool_timeout))
        if v is not None
    }
    if url.startswith("postgresql"):
        # pg_stat_activity names the process each connection is of (a server, a worker, a command).
        pool["connect_args"] = {"server_settings": {"lock_timeout": str(lock_timeout_ms),
                                                    "application_name": f"revampd-bff pid {os.getpid()}"}}
    engine = create_async_engine(url, **pool)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, lock_timeout_ms, foreign_keys)
    return engine


def is_busy(exc: BaseException) -> bool:
    """The database (or the pool in front of it) is saturated: the request may be
    retried as it is. Anything else that goes wrong is a fault."""
    if isinstance(exc, exc_.TimeoutError):  # no pooled connection in time
        return True
    if isinstance(exc, exc_.DBAPIError):
        orig = exc.orig
        if getattr(orig, "sqlstate", None) in _BUSY_SQLSTATES:
            return True
        # SQLite: busy_timeout ran out while another writer held the database.
        return isinstance(exc, exc_.OperationalError) and "database is locked" in str(orig)
    return False


def _configure_sqlite(engine: AsyncEngine, lock_timeout_ms: int, foreign_keys: bool) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the driver) decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute(f"PRAGMA busy_timeout={int(lock_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


class SerialSession(AsyncSession):
    """An AsyncSession that many coroutines may share: one statement at a time.

    A request's DataLoaders and resolvers run concurrently on one read session;
    a session (and its one connection) can only run one statement at a time.

    A statement, once started, runs to its end even if the coroutine waiting for it
    is cancelled (graphql-core cancels a field's siblings when the field fails), and
    the session is rolled back and closed only after it: a driver interrupted in the
    middle of a statement refuses the rollback ("another operation is in progress").
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._serial = asyncio.Lock()
        self._connection_of: tuple[Any, AsyncConnection] | None = None  # (its transaction, the connection)

    async def _one_at_a_time(self, operation: Any) -> Any:
        await self._serial.acquire()
        try:
            running = asyncio.ensure_future(operation)
        except BaseException:
            self._serial.release()
            raise
        running.add_done_callback(lambda _: self._serial.release())
        return await asyncio.shield(running)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._one_at_a_time(super().execute(*args, **kwargs))

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        return await self._one_at_a_time(super().scalar(*args, **kwargs))

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return await self._one_at_a_time(super().get(*args, **kwargs))

    async def rows(self, statement: Any, params: dict[str, Any]) -> list[Any]:
        """A read's rows, run as Core on the session's connection (no ORM objects: db.rows),
        one at a time with the rest."""

        async def run() -> list[Any]:
            # The transaction's connection, asked of the session once per transaction
            # (asking costs a trip through the ORM's session for each statement).
            transaction = self.sync_session.get_transaction()
            known = self._connection_of
            if transaction is None or known is None or known[0] is not transaction or not transaction.is_active:
                connection = await self.connection()
                self._connection_of = (self.sync_session.get_transaction(), connection)
            else:
                connection = known[1]
            return list((await connection.execute(statement, params)).all())

        found: list[Any] = await self._one_at_a_time(run())
        return found

    async def rollback(self) -> None:
        async with self._serial:
            await super().rollback()

    async def close(self) -> None:
        async with self._serial:
            await super().close()


def read_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=SerialSession, expire_on_commit=False, autoflush=False)


def write_sessions(engine: AsyncEngine, announce: Announce | None = None) -> async_sessionmaker[AsyncSession]:
    """Sessions whose transactions take the write lock up front on SQLite, and write the
    events of what they change (db.events), told to `announce` after each commit."""
    return async_sessionmaker(
        engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False,
        sync_session_class=EventSession, info={ANNOUNCE: announce} if announce is not None else None,
    )
