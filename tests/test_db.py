"""The database itself refuses what must never happen, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, delete, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

from db import models as m
from db.engine import create_engine, write_sessions
from db.migrate import downgrade, ours, upgrade
from tests import clock
from tests.conftest import PG_URL, Api, _pg_admin

NOW = clock.NOW


async def _violates(api: Api, *statements: Any) -> None:
    """Each statement, alone in a transaction, must be refused by a constraint."""
    engine = create_engine(api.settings.database_url)
    try:
        for stmt in statements:
            with pytest.raises(IntegrityError):
                async with write_sessions(engine)() as s, s.begin():
                    if callable(stmt):
                        await stmt(s)
                    else:
                        await s.execute(stmt)
    finally:
        await engine.dispose()


async def _first(api: Api, model: Any) -> Any:
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as s:
            return await s.scalar(select(model).order_by(model.id).limit(1))
    finally:
        await engine.dispose()


async def test_a_wallet_balance_can_never_go_negative(api: Api) -> None:
    wallet = await _wallet(api)
    await _violates(api, update(m.LedgerAccount).where(m.LedgerAccount.id == wallet.id).values(balance=-1))


async def _wallet(api: Api) -> m.LedgerAccount:
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as s:
            stmt = select(m.LedgerAccount).where(m.LedgerAccount.kind == "WALLET").order_by(m.LedgerAccount.id)
            return (await s.scalars(stmt)).first()  # type: ignore[return-value]
    finally:
        await engine.dispose()


async def test_a_transfer_key_moves_money_at_most_once(api: Api) -> None:
    wallet = await _wallet(api)
    used = await _first(api, m.LedgerTransfer)

    async def again(s: Any) -> None:
        s.add(m.LedgerTransfer(
            key=used.key, kind="MANUAL_ADJUSTMENT", phase="POSTED", debit_account_id=used.debit_account_id,
            credit_account_id=wallet.id, amount=1, currency_code="USD", memo="", created_at=NOW,
        ))
        await s.flush()

    await _violates(api, again)


@pytest.mark.parametrize("model", [m.LedgerTransfer, m.LedgerEntry])
async def test_ledger_rows_can_be_neither_changed_nor_removed(api: Api, model: Any) -> None:
    """A trigger refuses UPDATE and DELETE, on both databases, whatever the statement."""
    row = await _first(api, model)
    engine = create_engine(api.settings.database_url)
    try:
        for stmt in (update(model).where(model.id == row.id).values(amount=row.amount + 1),
                     delete(model).where(model.id == row.id)):
            with pytest.raises(DBAPIError, match="immutable"):
                async with write_sessions(engine)() as s, s.begin():
                    await s.execute(stmt)
        async with write_sessions(engine)() as s:
            stored = await s.get(model, row.id)
            assert stored is not None
            assert stored.amount == row.amount
    finally:
        await engine.dispose()


async def test_orphans_and_broken_sums_are_refused(api: Api) -> None:
    payout = await _first(api, m.Payout)

    async def orphan_message(s: Any) -> None:
        s.add(m.TicketMessage(ticket_id=10**9, author_id=10**9, body="x", internal=False, created_at=NOW))
        await s.flush()

    await _violates(
        api,
        orphan_message,
        update(m.Payout).where(m.Payout.id == payout.id).values(available_amount=payout.available_amount + 1),
        update(m.Invoice).where(m.Invoice.id == (await _first(api, m.Invoice)).id).values(amount_paid=-5),
    )


async def test_migrations_go_down_and_up_and_match_the_models(tmp_path: Any) -> None:
    """On SQLite, and on PostgreSQL too when TEST_DATABASE_URL is set."""
    if PG_URL:
        name = f"revampd_migr_{uuid.uuid4().hex[:8]}"
        await _pg_admin(f'CREATE DATABASE "{name}"')
        url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path}/roundtrip.db"
    try:
        await asyncio.to_thread(upgrade, url)
        await asyncio.to_thread(downgrade, url, "base")
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                diff = await conn.run_sync(
                    lambda c: compare_metadata(MigrationContext.configure(c, opts={"include_name": ours}), m.Base.metadata)
                )
        finally:
            await engine.dispose()
    finally:
        if PG_URL:
            await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert diff == [], f"models and migrations differ: {diff}"


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_command_on_a_database_never_migrated_says_to_migrate(
    database: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from server import cli

    if database == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/empty.db"
    else:
        name = f"empty_{uuid.uuid4().hex[:8]}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url)
    try:
        with pytest.raises(SystemExit) as stopped:
            cli.main(["demo-tokens"])
    finally:
        if database == "postgresql":
            asyncio.run(_pg_admin(f'DROP DATABASE "{name}"'))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "run `revampd-bff migrate` first" in err and "Traceback" not in err


@pytest.mark.parametrize("kept, instant", [
    ("2026-12-07 12:00:00.250000", datetime(2026, 12, 7, 12, 0, 0, 250000, tzinfo=timezone.utc)),  # as the service writes it
    ("2026-12-07 12:00:00", datetime(2026, 12, 7, 12, tzinfo=timezone.utc)),  # CURRENT_TIMESTAMP
    ("2026-12-07 14:00:00+02:00", datetime(2026, 12, 7, 12, tzinfo=timezone.utc)),  # by hand, with an offset
    ("2026-12-07T12:00:00Z", datetime(2026, 12, 7, 12, tzinfo=timezone.utc)),
    (None, None),
])
async def test_an_instant_kept_by_sqlite_reads_back_as_the_same_instant_in_utc(
    tmp_path: Any, kept: str | None, instant: datetime | None,
) -> None:
    """SQLite keeps a time as text; however it was written, it reads back aware, in UTC."""
    table = Table("times", MetaData(), Column("id", Integer, primary_key=True), Column("at", m.UTCDateTime()))
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'times.db'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
            await conn.execute(text("INSERT INTO times (id, at) VALUES (1, :at)"), {"at": kept})
            read = await conn.scalar(select(table.c.at))
    finally:
        await engine.dispose()
    assert read == instant
    assert read is None or read.utcoffset() == timedelta(0)
