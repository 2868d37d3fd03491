"""The add-ons a Partner pays for, and what its next invoice will come to.

An increase is usable at once (and billed from the next invoice); a decrease or
a removal is scheduled as `pending_quantity` for the end of the billing period,
so the Partner keeps what it has paid for until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db import models as m
from services import idempotency
from services.access import Principal, Role
from services.clock import now_or
from services.errors import DomainError, ErrorCode, NotFound


async def catalogue(session: AsyncSession) -> list[m.AddOnProduct]:
    """Products that can be added now."""
    rows = await session.scalars(
        select(m.AddOnProduct).where(m.AddOnProduct.retired.is_(False)).order_by(m.AddOnProduct.id)
    )
    return list(rows)


def phone_numbers(addons: list[tuple[m.AddOn, m.AddOnProduct]]) -> int:
    """Phone numbers in use: the quantities of the phone-number add-ons."""
    return sum(addon.quantity for addon, product in addons if product.is_phone_number)


def _check_quantity(product: m.AddOnProduct, quantity: int) -> None:
    if not 1 <= quantity <= product.max_quantity:
        raise DomainError(
            ErrorCode.INVALID_QUANTITY,
            f"quantity must be a whole number from 1 to {product.max_quantity} for {product.name}.",
            "quantity",
        )


async def _period_end(session: AsyncSession, connection_id: int) -> datetime:
    end = await session.scalar(
        select(m.Subscription.current_period_end).where(m.Subscription.connection_id == connection_id)
    )
    if end is None:
        raise NotFound("Subscription")
    return end


async def _locked_addon(session: AsyncSession, principal: Principal, addon_id: int) -> m.AddOn:
    """The caller's own add-on, row-locked; another Partner's reads like a missing one."""
    principal.require(Role.PARTNER_ADMIN)
    addon = await session.scalar(
        select(m.AddOn)
        .where(m.AddOn.id == addon_id, m.AddOn.connection_id == principal.connection_id)
        .with_for_update()
    )
    if addon is None:
        raise NotFound("Add-on", "addOnId")
    return addon


async def _replay_add(session: AsyncSession, principal: Principal, addon_id: int) -> m.AddOn:
    """The add-on an earlier addAddOn made under the same idempotency key, as it now is."""
    addon = await session.get(m.AddOn, addon_id)
    if addon is None or not principal.sees_connection(addon.connection_id):
        raise NotFound("Add-on")
    return addon


ADD = idempotency.Operation[m.AddOn]("addAddOn", "AddOn", lambda a: a.id, _replay_add)


async def add(
    session: AsyncSession,
    principal: Principal,
    product_id: int,
    quantity: int,
    now: datetime | None = None,
    *,
    idempotency_key: str | None = None,
) -> m.AddOn:
    """Start paying for a product; usable at once, billed from the next invoice.

    A retry with the same idempotency key gets the same add-on back."""
    return await idempotency.once(
        session, principal, ADD, idempotency_key, {"product": product_id, "quantity": quantity},
        lambda: _add(session, principal, product_id, quantity, now), now=now,
    )


async def _add(
    session: AsyncSession, principal: Principal, product_id: int, quantity: int, now: datetime | None
) -> m.AddOn:
    principal.require(Role.PARTNER_ADMIN)
    # One writer per connection at a time, so two adds cannot race past the check.
    connection = await session.scalar(
        select(m.Connection).where(m.Connection.id == principal.connection_id).with_for_update()
    )
    if connection is None:
        raise NotFound("Connection")
    product = await session.get(m.AddOnProduct, product_id)
    if product is None or product.retired:
        raise NotFound("Add-on product", "productId")
    _check_quantity(product, quantity)
    existing = await session.scalar(
        select(m.AddOn.id).where(
            m.AddOn.connection_id == connection.id, m.AddOn.product_id == product.id
        )
    )
    if existing is not None:
        raise DomainError(
            ErrorCode.ALREADY_ADDED,
            f"You already have {product.name}; change its quantity with updateAddOn.",
            "productId",
        )
    at = now_or(now)
    addon = m.AddOn(
        connection_id=connection.id, product_id=product.id, quantity=quantity,
        created_at=at, updated_at=at,
    )
    session.add(addon)
    await session.flush()
    return addon


def _set_quantity(addon: m.AddOn, quantity: int, period_end: datetime, now: datetime | None) -> None:
    """Raise at once, or schedule the lower quantity; a later request replaces a pending one."""
    if quantity >= addon.quantity:
        pending: tuple[int | None, datetime | None] = (None, None)
        addon_quantity = quantity
    else:
        pending, addon_quantity = (quantity, period_end), addon.quantity
    if (addon.quantity, addon.pending_quantity, addon.pending_effective_at) == (addon_quantity, *pending):
        return  # asked for what is already so
    addon.quantity = addon_quantity
    addon.pending_quantity, addon.pending_effective_at = pending
    addon.updated_at = now_or(now)


async def update(
    session: AsyncSession,
    principal: Principal,
    addon_id: int,
    quantity: int,
    now: datetime | None = None,
) -> m.AddOn:
    """Change the quantity. Setting it at or above the current one drops a pending decrease."""
    addon = await _locked_addon(session, principal, addon_id)
    product = await session.get(m.AddOnProduct, addon.product_id)
    assert product is not None
    _check_quantity(product, quantity)
    _set_quantity(addon, quantity, await _period_end(session, addon.connection_id), now)
    return addon


async def remove(
    session: AsyncSession, principal: Principal, addon_id: int, now: datetime | None = None
) -> m.AddOn:
    """Schedule the removal for the end of the period; until then it stays usable."""
    addon = await _locked_addon(session, principal, addon_id)
    _set_quantity(addon, 0, await _period_end(session, addon.connection_id), now)
    return addon


# ---- The next invoice --------------------------------------------------------

@dataclass(frozen=True)
class Line:
    description: str
    quantity: int
    unit_amount: int
    plan_id: int | None = None
    product_id: int | None = None

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_amount


@dataclass(frozen=True)
class Projection:
    """The next invoice as things stand, after every pending change takes effect."""

    billed_at: datetime
    lines: list[Line]

    @property
    def plan_total(self) -> int:
        return sum(line.amount for line in self.lines if line.plan_id is not None)

    @property
    def addons_total(self) -> int:
        return sum(line.amount for line in self.lines if line.product_id is not None)

    @property
    def total(self) -> int:
        return self.plan_total + self.addons_total


def project_next_invoice(
    subscription: m.Subscription,
    next_plan: m.Plan | None,
    addons: list[tuple[m.AddOn, m.AddOnProduct]],
) -> Projection:
    """`next_plan` is the plan after the pending change (None: canceled, nothing to bill)."""
    lines = []
    if next_plan is not None:
        lines.append(Line(f"{next_plan.name} plan", 1, next_plan.monthly_price, plan_id=next_plan.id))
    for addon, product in addons:
        quantity = addon.quantity if addon.pending_quantity is None else addon.pending_quantity
        if quantity > 0:
            lines.append(Line(product.name, quantity, product.monthly_price, product_id=product.id))
    return Projection(subscription.current_period_end, lines)
