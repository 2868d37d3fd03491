"""What every mutation resolver shares: one write transaction, errors into payloads."""

from __future__ import annotations

from typing import Awaitable, Callable, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from schema.base import UserError, ctx
from services.errors import DomainError, InvalidInput

R = TypeVar("R")


async def run_write(
    info: strawberry.Info, work: Callable[[AsyncSession], Awaitable[R]]
) -> tuple[R | None, list[UserError]]:
    """Run `work` in its own transaction; a DomainError rolls it all back and
    becomes a userError (an InvalidInput one per field it names). Later fields of
    the request read the committed state."""
    context = ctx(info)
    # Give back the read connection first: a request never waits on the pool for a
    # second connection while it holds one.
    await context.release_reads()
    try:
        async with context.writes() as session, session.begin():
            result = await work(session)
    except DomainError as err:
        return None, [UserError.of(e) for e in (err.errors if isinstance(err, InvalidInput) else [err])]
    await context.after_write()
    return result, []
