"""What every mutation resolver shares: one write transaction, errors into payloads."""

from __future__ import annotations

from typing import Awaitable, Callable, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.base import UserError, ctx
from services.errors import DomainError, InvalidInput

R = TypeVar("R")


async def run_write(
    info: strawberry.Info, work: Callable[[AsyncSession], Awaitable[R]]
) -> tuple[R | None, list[UserError]]:
    """Run `work` in its own transaction; a DomainError rolls it all back and
    becomes a userError (an InvalidInput one per field it names). Later fields of
    the request read the committed state."""

    async def in_one(writes: async_sessionmaker[AsyncSession]) -> R:
        async with writes() as session, session.begin():
            return await work(session)

    return await run_writes(info, in_one)


async def run_writes(
    info: strawberry.Info, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[R]]
) -> tuple[R | None, list[UserError]]:
    """`run_write` for work that opens its own write transactions (two, around a call to a
    processor made with none open): a DomainError becomes userErrors."""
    context = ctx(info)
    # Give back the read connection first: a request never waits on the pool for a
    # second connection while it holds one.
    await context.release_reads()
    try:
        result = await work(context.writes)
    except DomainError as err:
        return None, [UserError.of(e) for e in (err.errors if isinstance(err, InvalidInput) else [err])]
    await context.after_write()
    return result, []
