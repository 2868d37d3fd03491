"""People: Partner users and Revampd staff."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import strawberry

from db import models as m
from schema.base import FromRow, Node, column, ctx, field, global_id
from schema.enums import Role
from services import visibility

if TYPE_CHECKING:
    from schema.notifications import NotificationSetting
    from schema.partners import Partner


@strawberry.type(description="A person: a Partner's user or a Revampd staff member.")
class User(FromRow, Node, model=m.User):
    name: str = strawberry.field(description="Their full name, for display.")
    model: strawberry.Private[m.User]

    from_row = {
        "id": global_id("User"),
        "name": column("name"),
    }

    @classmethod
    def of(cls, u: m.User) -> "User":
        return cls.made(model=u)

    @field(
        description="Null where the viewer may not see it: Revampd staff see every user's email; "
        "a Partner user sees those of its own Partner's users, and a Revampd staff member by name only."
    )
    def email(self, info: strawberry.Info) -> str | None:
        return self.model.email if visibility.sees_email(ctx(info).principal, self.model) else None

    @field(description="True for Revampd staff (support representatives, billing).")
    def is_revampd_staff(self) -> bool:
        return self.model.partner_id is None


@strawberry.type(description="Who is asking: the user of the token, its roles and its Partner.")
class Viewer:
    id: strawberry.ID = strawberry.field(
        description="The same for every request of one user (a client caches the viewer under it); not a "
        "Node ID: `node(id:)` does not take it."
    )
    user: User = strawberry.field(description="The user the token was issued to.")
    roles: list[Role] = strawberry.field(description="What the user may do, in alphabetical order.")

    @field(description="The user's Partner; null for Revampd staff.")
    async def partner(
        self, info: strawberry.Info
    ) -> Optional[Annotated["Partner", strawberry.lazy("schema.partners")]]:
        from schema.partners import Partner

        pid = ctx(info).principal.partner_id
        return await Partner.load(info, pid) if pid is not None else None

    @field(description="Which emails the user receives, one setting per kind (empty for Revampd staff).")
    async def notification_settings(
        self, info: strawberry.Info
    ) -> list[Annotated["NotificationSetting", strawberry.lazy("schema.notifications")]]:
        from schema.notifications import NotificationSetting
        from services import notifications

        context = ctx(info)
        p = context.principal
        found = await notifications.settings(context.db, p)
        connection = await context.loaders.connection.load(p.connection_id) if found and p.connection_id else None
        currency = connection.currency_code if connection is not None else None
        return [NotificationSetting.of(s, currency) for s in found]
