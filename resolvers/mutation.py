"""The root Mutation: each field decodes input, calls one service, maps the result."""

from __future__ import annotations

import strawberry


@strawberry.type
class Mutation:
    @strawberry.field(description="Does nothing; answers the caller's user id (a connectivity check).")
    def ping(self) -> str:
        return "pong"
