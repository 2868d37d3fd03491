"""The per-request context every resolver receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.loaders import Loaders
from services.access import Principal
from services.payments import SandboxLag


class ContextSettings(Protocol):
    """What resolvers read of the settings (server.settings.Settings has it): the gateways to
    call, and page sizes."""

    @property
    def payment_gateway(self) -> str: ...
    @property
    def payment_sandbox_lag(self) -> SandboxLag: ...
    @property
    def bank_gateway(self) -> str: ...
    @property
    def bank_sandbox_lag(self) -> SandboxLag: ...
    @property
    def default_page_size(self) -> int: ...
    @property
    def max_page_size(self) -> int: ...
    @property
    def files_signing_key(self) -> str: ...
    @property
    def files_url_seconds(self) -> int: ...


@dataclass
class Context:
    settings: ContextSettings
    principal: Principal
    # Reads: one session per request, through the loaders.
    db: AsyncSession
    # Writes: each mutation runs its own transaction in a session from here.
    writes: async_sessionmaker[AsyncSession]
    request_id: str
    # The origin this request came to ("http://127.0.0.1:8000"): links to /files/... start with it.
    base_url: str = ""
    # The operationName the client sent (None: the document must hold one operation).
    operation_name: str | None = None
    log: dict[str, Any] = field(default_factory=dict)
    # Set when the database was too busy to answer: the response is 503.
    busy: bool = False
    # The request's document, parsed, validated and analysed (resolvers.operation).
    operation: Any = None
    # The objects the answer holds in lists (the rate limit's actual cost), when the plan
    # engine answered without an error (resolvers.engine counts them as it makes them).
    objects_in_lists: int | None = None
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.db, self.principal)

    async def release_reads(self) -> None:
        """End the read transaction, returning its connection to the pool; the next
        read takes one again."""
        await self.db.rollback()

    async def after_write(self) -> None:
        """A mutation committed: later reads in this request must see it."""
        self.db.expunge_all()
        self.loaders = Loaders(self.db, self.principal)
