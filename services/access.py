"""Who is asking, and what they may do. Which rows they may read is services.visibility."""

from __future__ import annotations

from dataclasses import dataclass

from db import states
from db.states import Role as Role
from services.errors import Forbidden

STAFF_ROLES = frozenset(states.STAFF_ROLES)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller. partner_id/connection_id come only from the token."""

    user_id: int
    partner_id: int | None
    connection_id: int | None
    roles: frozenset[Role]

    @property
    def is_staff(self) -> bool:
        return self.partner_id is None and bool(self.roles & STAFF_ROLES)

    def has(self, *roles: Role) -> bool:
        return bool(self.roles & set(roles))

    def require(self, *roles: Role) -> None:
        if not self.has(*roles):
            names = " or ".join(r.value for r in roles)
            raise Forbidden(f"This action needs the {names} role.")

    def sees_connection(self, connection_id: int) -> bool:
        """Staff read every connection; a Partner user only its own."""
        return self.is_staff or (
            self.connection_id is not None and self.connection_id == connection_id
        )

    @property
    def sees_internal_notes(self) -> bool:
        return self.is_staff
