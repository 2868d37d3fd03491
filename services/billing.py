"""The card on file, and billing: each connection's subscription invoiced and collected
when its period ends.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from db import models as m
from services import invoices
from services.access import Principal, Role
from services.enums import InvoiceStatus
from services.errors import DomainError, NotFound
from services.payments import PaymentGateway


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(timezone.utc)


# ---- The card on file ----------------------------------------------------------

MAX_TOKEN = 200
_CARD_NUMBER = re.compile(r"[0-9][0-9 -]{10,22}[0-9]")


def _checked_token(token: str) -> str:
    if _CARD_NUMBER.fullmatch(token) and 12 <= sum(ch.isdigit() for ch in token) <= 19:
        raise DomainError(
            "INVALID_CARD_TOKEN",
            "Send the token the payment processor gave for the card, never a card number.",
            "cardToken",
        )
    if not 1 <= len(token) <= MAX_TOKEN or not token.isprintable() or token != token.strip():
        raise DomainError(
            "INVALID_CARD_TOKEN",
            f"cardToken must be a token from the payment processor (1 to {MAX_TOKEN} characters, no spaces).",
            "cardToken",
        )
    return token


async def update_payment_method(
    session: AsyncSession,
    principal: Principal,
    gateway: PaymentGateway,
    card_token: str,
    now: datetime | None = None,
) -> m.Connection:
    """PARTNER_ADMIN: the card behind `card_token` becomes the connection's card on file.
    Only the token, brand, last 4 and expiry are kept. An invoice whose charge was
    declined is tried on the new card at the next billing run."""
    principal.require(Role.PARTNER_ADMIN)
    token = _checked_token(card_token)
    card = await gateway.card(token)  # before any lock: a processor may be slow
    if principal.connection_id is None:
        raise NotFound("RevampdConnection")
    connection = await invoices.locked_connection(session, principal.connection_id)
    connection.card_token = token
    connection.card_brand, connection.card_last4 = card.brand, card.last4
    connection.card_exp_month, connection.card_exp_year = card.exp_month, card.exp_year
    at = _now(now)
    await session.execute(
        update(m.Invoice)
        .where(
            m.Invoice.connection_id == connection.id,
            m.Invoice.status == InvoiceStatus.OPEN.value,
            m.Invoice.next_payment_attempt_at > at,
        )
        .values(next_payment_attempt_at=at)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    return connection
