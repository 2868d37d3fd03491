"""What every mutation resolver shares: IDs decoded first, then one write transaction,
errors into payloads."""

from __future__ import annotations

from typing import Awaitable, Callable, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.base import UserError, ctx
from services.errors import DomainError, InvalidInput

R = TypeVar("R")
D = TypeVar("D")


def no_ids() -> None:
    """`decode` for a mutation whose input holds no ID."""


async def run_write(
    info: strawberry.Info, decode: Callable[[], D], work: Callable[[AsyncSession, D], Awaitable[R]]
) -> tuple[R | None, list[UserError]]:
    """Decode the input's IDs (`decode`), then run `work` on them in its own transaction;
    a DomainError from either rolls it all back and becomes a userError (an InvalidInput
    one per field it names). Later fields of the request read the committed state."""

    async def in_one(writes: async_sessionmaker[AsyncSession], ids: D) -> R:
        async with writes() as session, session.begin():
            return await work(session, ids)

    return await run_writes(info, decode, in_one)


async def run_writes(
    info: strawberry.Info,
    decode: Callable[[], D],
    work: Callable[[async_sessionmaker[AsyncSession], D], Awaitable[R]],
) -> tuple[R | None, list[UserError]]:
    """`run_write` for work that opens its own write transactions (two, around a call to a
    processor made with none open). A bad or foreign ID is refused before any of them begins."""
    context = ctx(info)
    try:
        ids = decode()
        # Give back the read connection first: a request never waits on the pool for a
        # second connection while it holds one.
        await context.release_reads()
        result = await work(context.writes, ids)
    except DomainError as err:
        return None, [UserError.of(e) for e in (err.errors if isinstance(err, InvalidInput) else [err])]
    await context.after_write()
    return result, []
