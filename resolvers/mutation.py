"""The root Mutation, merged from one class per domain (resolvers/<domain>.py).

Each field decodes its input, calls one service function inside
`resolvers.common.run_write`, and maps the result or the DomainError into a payload.
"""

from __future__ import annotations

import strawberry


@strawberry.type
class Mutation:
    @strawberry.field(description="Does nothing; a connectivity check for clients.")
    def ping(self) -> str:
        return "pong"
