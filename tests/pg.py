"""PostgreSQL administration for tests and benchmarks: statements run on the server's
`postgres` database (CREATE DATABASE, DROP DATABASE), outside any transaction."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine


async def pg_admin(server_url: str, sql: str) -> None:
    engine = create_async_engine(make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(sql)
    finally:
        await engine.dispose()
