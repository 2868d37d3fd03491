"""People: Partner users and Revampd staff."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import strawberry

from db import models as m
from schema.base import Node, ctx, node_type, to_global_id
from schema.enums import Role

if TYPE_CHECKING:
    from schema.partners import Partner


@node_type("User")
@strawberry.type
class User(Node):
    name: str
    email: str
    model: strawberry.Private[m.User]

    @classmethod
    def of(cls, u: m.User) -> "User":
        return cls(id=to_global_id("User", u.id), name=u.name, email=u.email, model=u)

    @classmethod
    async def load(cls, info: strawberry.Info, pk: int | None) -> "User | None":
        if pk is None:
            return None
        u = await ctx(info).loaders.user.load(pk)
        if u is None or not ctx(info).principal.sees_user(u.partner_id):
            return None
        return cls.of(u)

    @strawberry.field(description="True for Revampd staff (support representatives, billing).")
    def is_revampd_staff(self) -> bool:
        return self.model.partner_id is None


@strawberry.type(description="Who is asking: the user of the token, its roles and its Partner.")
class Viewer:
    user: User
    roles: list[Role]

    @strawberry.field
    async def partner(
        self, info: strawberry.Info
    ) -> Optional[Annotated["Partner", strawberry.lazy("schema.partners")]]:
        from schema.partners import Partner

        pid = ctx(info).principal.partner_id
        return await Partner.load(info, pid) if pid is not None else None
