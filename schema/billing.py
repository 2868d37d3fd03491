"""The card on file, and the mutation that sets it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Self

import strawberry

from db import models as m
from schema.base import UserError, client_mutation_id_echo, client_mutation_id_field, user_errors_field

if TYPE_CHECKING:
    from schema.partners import RevampdConnection


@strawberry.type(
    description="The card on file, as far as it may be shown: never its number. It has no id: clients cache "
    "it with its connection."
)
class PaymentCard:
    brand: str = strawberry.field(description="Visa, Mastercard, American Express...")
    last4: str = strawberry.field(description="The last four digits of the card number.")
    exp_month: int = strawberry.field(description="The expiry month, 1 to 12.")
    exp_year: int = strawberry.field(description="The expiry year, four digits.")

    @classmethod
    def of(cls, c: m.Connection) -> "PaymentCard | None":
        if c.card_token is None or c.card_brand is None or c.card_last4 is None:
            return None
        assert c.card_exp_month is not None and c.card_exp_year is not None
        return cls(brand=c.card_brand, last4=c.card_last4, exp_month=c.card_exp_month, exp_year=c.card_exp_year)


@strawberry.input(description="The input of updatePaymentMethod.")
class UpdatePaymentMethodInput:
    card_token: str = strawberry.field(
        description="The token the payment processor gave for the card (never the card number)."
    )
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type(description="The result of updatePaymentMethod.")
class UpdatePaymentMethodPayload:
    payment_method: PaymentCard | None = strawberry.field(description="The card now on file; null when refused.")
    revampd_connection: Annotated["RevampdConnection", strawberry.lazy("schema.partners")] | None = strawberry.field(
        description="The connection with its new paymentMethod, so that caches update; null when refused."
    )
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()

    @classmethod
    def of(cls, result: m.Connection | None, errors: list[UserError], client_mutation_id: str | None) -> Self:
        from schema.partners import RevampdConnection

        return cls(
            payment_method=PaymentCard.of(result) if result else None,
            revampd_connection=RevampdConnection.of(result) if result else None,
            user_errors=errors,
            client_mutation_id=client_mutation_id,
        )
