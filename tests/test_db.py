"""The database itself refuses what must never happen, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from db import models as m
from db.engine import create_engine, write_sessions
from db.migrate import downgrade, upgrade
from tests.conftest import PG_URL, Api, _pg_admin

NOW = datetime.now(timezone.utc)


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
    wallet = await _first(api, m.Wallet)
    await _violates(api, update(m.Wallet).where(m.Wallet.id == wallet.id).values(balance=-1))


async def test_a_source_is_credited_at_most_once(api: Api) -> None:
    wallet = await _first(api, m.Wallet)

    def entry() -> m.WalletEntry:
        return m.WalletEntry(
            wallet_id=wallet.id, amount=100, kind="PAYOUT_CREDIT", balance_after=wallet.balance + 100,
            source_type="payout", source_id="dup-test", memo="", created_at=NOW,
        )

    async def twice(s: Any) -> None:
        s.add(entry())
        await s.flush()
        s.add(entry())
        await s.flush()

    await _violates(api, twice)


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
                    lambda c: compare_metadata(MigrationContext.configure(c), m.Base.metadata)
                )
        finally:
            await engine.dispose()
    finally:
        if PG_URL:
            await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert diff == [], f"models and migrations differ: {diff}"
