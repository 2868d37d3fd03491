"""Add-on products (e.g. phone numbers) and the add-ons a Partner pays for."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

import strawberry

from db import models as m
from schema.base import (
    Money,
    Node,
    UserError,
    changed_connection,
    client_mutation_id_echo,
    client_mutation_id_field,
    ctx,
    from_loader,
    to_global_id,
    user_errors_field,
)
from schema.idempotency import idempotency_key_field
from schema.invoices import InvoiceLineItem
from services import addons as svc
from services import plans as plan_service


@strawberry.type(description="Something a Partner can add to its plan, such as extra phone numbers.")
class AddOnProduct(Node, model=m.AddOnProduct):
    code: str = strawberry.field(description="A stable machine-readable code, such as LOCAL_NUMBER.")
    name: str = strawberry.field(description="The product's name, for display.")
    description: str = strawberry.field(description="What the product gives, for display.")
    monthly_price: Money = strawberry.field(description="The price of one unit per month.")
    max_quantity: int = strawberry.field(description="The most units one connection may have.")
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


def _product(loaders: Any) -> Any:
    """The loader of add-on products: every add-on's product exists and anyone may see it."""
    return loaders.addon_product


@strawberry.type(description="An add-on product the connection pays for each month, in some quantity.")
class AddOn(Node, model=m.AddOn):
    quantity: int = strawberry.field(description="How many units are in use and billed now.")
    pending_quantity: int | None = strawberry.field(
        description="A scheduled decrease (0 = removal), applied at pendingEffectiveAt."
    )
    pending_effective_at: datetime | None = strawberry.field(
        description="When pendingQuantity takes effect (the end of the current period); null when none is pending."
    )
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

    @from_loader(_product, lambda s: s.model.product_id, "The product added.")
    def product(self, p: m.AddOnProduct) -> AddOnProduct:
        return AddOnProduct.of(p)

    @from_loader(_product, lambda s: s.model.product_id, "The product's monthly price for one unit.")
    def unit_price(self, p: m.AddOnProduct) -> Money:
        return Money.of(p.monthly_price, p.currency_code)

    @from_loader(_product, lambda s: s.model.product_id, "quantity x unit price, billed monthly.")
    def monthly_total(self, p: m.AddOnProduct) -> Money:
        return Money.of(p.monthly_price * self.model.quantity, p.currency_code)


@strawberry.type(
    description="The next invoice as things stand: the plan and add-ons after every pending change."
)
class ProjectedInvoice(Node, model=m.Connection):
    billed_at: datetime = strawberry.field(description="When it is issued: the end of the current period.")
    plan: Money = strawberry.field(description="The plan's price; zero when a cancellation is pending.")
    add_ons: Money = strawberry.field(description="The add-ons' monthly totals after their pending decreases.")
    total: Money = strawberry.field(description="plan + addOns: what the invoice will ask for.")
    lines: list[InvoiceLineItem] = strawberry.field(description="Its lines: the plan first, then each add-on.")

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

@strawberry.input(description="The input of addAddOn.")
class AddAddOnInput:
    product_id: strawberry.ID = strawberry.field(
        description="The AddOnProduct to add; one the connection does not have yet (else ALREADY_ADDED)."
    )
    quantity: int = strawberry.field(description="From 1 to the product's maxQuantity.")
    idempotency_key: str | None = idempotency_key_field()
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.input(description="The input of updateAddOn.")
class UpdateAddOnInput:
    add_on_id: strawberry.ID = strawberry.field(description="An AddOn of your connection.")
    quantity: int = strawberry.field(
        description="From 1 to the product's maxQuantity. More is usable at once; "
        "less takes effect at the end of the period."
    )
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.input(description="The input of removeAddOn.")
class RemoveAddOnInput:
    add_on_id: strawberry.ID = strawberry.field(description="An AddOn of your connection.")
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type
class AddOnPayload:
    add_on: AddOn | None = strawberry.field(description="The add-on as it now stands; null when refused.")
    revampd_connection = changed_connection(
        lambda p: p.add_on and p.add_on.model.connection_id, "addOns, usage and projectedNextInvoice"
    )
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()

    @classmethod
    def of(cls, result: m.AddOn | None, errors: list[UserError], client_mutation_id: str | None) -> Self:
        return cls(
            add_on=AddOn.of(result) if result else None,
            user_errors=errors,
            client_mutation_id=client_mutation_id,
        )


@strawberry.type(description="The result of addAddOn.")
class AddAddOnPayload(AddOnPayload):
    pass


@strawberry.type(description="The result of updateAddOn.")
class UpdateAddOnPayload(AddOnPayload):
    pass


@strawberry.type(description="The result of removeAddOn.")
class RemoveAddOnPayload(AddOnPayload):
    pass
