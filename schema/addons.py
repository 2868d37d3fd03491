"""Add-on products (e.g. phone numbers) and the add-ons a Partner pays for."""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Self, TypeVar

import strawberry

from db import models as m
from schema.base import Money, Node, UserError, changed_connection, ctx, now_or_later, to_global_id
from schema.idempotency import idempotency_key_field
from schema.invoices import InvoiceLineItem
from services import addons as svc
from services import plans as plan_service

T = TypeVar("T")


@strawberry.type
class AddOnProduct(Node, model=m.AddOnProduct):
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


@strawberry.type
class AddOn(Node, model=m.AddOn):
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

    def _with_product(self, info: strawberry.Info, then: Callable[[m.AddOnProduct], T]) -> T:
        def checked(p: m.AddOnProduct | None) -> T:
            assert p is not None
            return then(p)

        return now_or_later(ctx(info).loaders.addon_product, self.model.product_id, checked)  # type: ignore[return-value]

    @strawberry.field
    def product(self, info: strawberry.Info) -> AddOnProduct:
        return self._with_product(info, AddOnProduct.of)

    @strawberry.field
    def unit_price(self, info: strawberry.Info) -> Money:
        return self._with_product(info, lambda p: Money.of(p.monthly_price, p.currency_code))

    @strawberry.field(description="quantity x unit price, billed monthly.")
    def monthly_total(self, info: strawberry.Info) -> Money:
        return self._with_product(info, lambda p: Money.of(p.monthly_price * self.model.quantity, p.currency_code))


@strawberry.type(description="The next invoice as things stand: the plan and add-ons after every pending change.")
class ProjectedInvoice(Node, model=m.Connection):
    billed_at: datetime = strawberry.field(description="When it is issued: the end of the current period.")
    plan: Money = strawberry.field(description="The plan's price; zero when a cancellation is pending.")
    add_ons: Money
    total: Money
    lines: list[InvoiceLineItem]

    @classmethod
    async def from_model(cls, info: strawberry.Info, connection: m.Connection) -> "ProjectedInvoice":
        """One per connection, so its ID is the connection's."""
        loaders = ctx(info).loaders
        subscription = (await loaders.connection_state.load(connection.id)).subscription
        assert subscription is not None, "every connection has a subscription"
        plan_id = plan_service.next_plan_id(subscription)
        next_plan = await loaders.plan.load(plan_id) if plan_id is not None else None
        rows = await loaders.addons_by_connection.load(connection.id)
        products = await loaders.addon_product.load_many([a.product_id for a in rows])
        p = svc.project_next_invoice(subscription, next_plan, list(zip(rows, products, strict=False)))
        cur = connection.currency_code
        return cls(
            id=to_global_id("ProjectedInvoice", connection.id),
            billed_at=p.billed_at,
            plan=Money.of(p.plan_total, cur),
            add_ons=Money.of(p.addons_total, cur),
            total=Money.of(p.total, cur),
            lines=[
                InvoiceLineItem(
                    description=line.description,
                    quantity=line.quantity,
                    unit_amount=Money.of(line.unit_amount, cur),
                    amount=Money.of(line.amount, cur),
                )
                for line in p.lines
            ],
        )


# ---- Mutations: inputs and payloads ------------------------------------------

@strawberry.input
class AddAddOnInput:
    product_id: strawberry.ID
    quantity: int = strawberry.field(description="From 1 to the product's maxQuantity.")
    idempotency_key: str | None = idempotency_key_field()
    client_mutation_id: str | None = None


@strawberry.input
class UpdateAddOnInput:
    add_on_id: strawberry.ID
    quantity: int = strawberry.field(
        description="From 1 to the product's maxQuantity. More is usable at once; "
        "less takes effect at the end of the period."
    )
    client_mutation_id: str | None = None


@strawberry.input
class RemoveAddOnInput:
    add_on_id: strawberry.ID
    client_mutation_id: str | None = None


@strawberry.type
class AddOnPayload:
    add_on: AddOn | None = strawberry.field(description="The add-on as it now stands; null when refused.")
    revampd_connection = changed_connection(
        lambda p: p.add_on and p.add_on.model.connection_id, "addOns, usage and projectedNextInvoice"
    )
    user_errors: list[UserError]
    client_mutation_id: str | None

    @classmethod
    def of(cls, result: m.AddOn | None, errors: list[UserError], client_mutation_id: str | None) -> Self:
        return cls(
            add_on=AddOn.of(result) if result else None,
            user_errors=errors,
            client_mutation_id=client_mutation_id,
        )


@strawberry.type
class AddAddOnPayload(AddOnPayload):
    pass


@strawberry.type
class UpdateAddOnPayload(AddOnPayload):
    pass


@strawberry.type
class RemoveAddOnPayload(AddOnPayload):
    pass
