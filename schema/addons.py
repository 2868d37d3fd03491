"""Add-on products (e.g. phone numbers) and the add-ons a Partner pays for."""

from __future__ import annotations

from datetime import datetime

import strawberry

from db import models as m
from schema.base import Money, Node, ctx, node_type, to_global_id


@node_type("AddOnProduct")
@strawberry.type
class AddOnProduct(Node):
    code: str
    name: str
    description: str
    monthly_price: Money
    max_quantity: int
    model: strawberry.Private[m.AddOnProduct]

    @classmethod
    def of(cls, p: m.AddOnProduct) -> "AddOnProduct":
        return cls(
            id=to_global_id("AddOnProduct", p.id),
            code=p.code,
            name=p.name,
            description=p.description,
            monthly_price=Money.of(p.monthly_price, p.currency_code),
            max_quantity=p.max_quantity,
            model=p,
        )

    @classmethod
    async def load(cls, info: strawberry.Info, pk: int) -> "AddOnProduct | None":
        p = await ctx(info).loaders.addon_product.load(pk)
        return cls.of(p) if p is not None else None


@node_type("AddOn")
@strawberry.type
class AddOn(Node):
    quantity: int
    pending_quantity: int | None = strawberry.field(
        description="A scheduled decrease (0 = removal), applied at pendingEffectiveAt."
    )
    pending_effective_at: datetime | None
    model: strawberry.Private[m.AddOn]

    @classmethod
    def of(cls, a: m.AddOn) -> "AddOn":
        return cls(
            id=to_global_id("AddOn", a.id),
            quantity=a.quantity,
            pending_quantity=a.pending_quantity,
            pending_effective_at=a.pending_effective_at,
            model=a,
        )

    @classmethod
    async def load(cls, info: strawberry.Info, pk: int) -> "AddOn | None":
        a = await ctx(info).loaders.addon.load(pk)
        if a is None or not ctx(info).principal.sees_connection(a.connection_id):
            return None
        return cls.of(a)

    async def _product(self, info: strawberry.Info) -> m.AddOnProduct:
        p = await ctx(info).loaders.addon_product.load(self.model.product_id)
        assert p is not None
        return p

    @strawberry.field
    async def product(self, info: strawberry.Info) -> AddOnProduct:
        return AddOnProduct.of(await self._product(info))

    @strawberry.field
    async def unit_price(self, info: strawberry.Info) -> Money:
        p = await self._product(info)
        return Money.of(p.monthly_price, p.currency_code)

    @strawberry.field(description="quantity x unit price, billed monthly.")
    async def monthly_total(self, info: strawberry.Info) -> Money:
        p = await self._product(info)
        return Money.of(p.monthly_price * self.model.quantity, p.currency_code)
