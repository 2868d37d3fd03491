"""The root Mutation, merged from one class per domain (resolvers/<domain>.py).

Each field decodes its input, calls one service function inside
`resolvers.common.run_write`, and maps the result or the DomainError into a payload.
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.tools import merge_types

from resolvers.addons import AddOnMutations
from resolvers.plans import PlanMutations
from resolvers.tickets import TicketMutations


@strawberry.type
class PingMutation:
    @strawberry.field(description="Does nothing; a connectivity check for clients.")
    def ping(self) -> str:
        return "pong"


MUTATIONS: list[Any] = [
    PingMutation,
    PlanMutations,
    AddOnMutations,
    TicketMutations,
]

Mutation = merge_types("Mutation", tuple(MUTATIONS))
