"""The card on file, and the mutation that sets it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Self

import strawberry

from db import models as m
from schema.base import VALUE, UserError

if TYPE_CHECKING:
    from schema.partners import RevampdConnection


@strawberry.type(description="The card on file, as far as it may be shown: never its number." + VALUE)
class PaymentCard:
    brand: str = strawberry.field(description="Visa, Mastercard, American Express...")
    last4: str
    exp_month: int
    exp_year: int

    @classmethod
    def of(cls, c: m.Connection) -> "PaymentCard | None":
        if c.card_token is None or c.card_brand is None or c.card_last4 is None:
            return None
        assert c.card_exp_month is not None and c.card_exp_year is not None
        return cls(brand=c.card_brand, last4=c.card_last4, exp_month=c.card_exp_month, exp_year=c.card_exp_year)


@strawberry.input
class UpdatePaymentMethodInput:
    card_token: str = strawberry.field(
        description="The token the payment processor gave for the card (never the card number)."
    )
    client_mutation_id: str | None = None


@strawberry.type
class UpdatePaymentMethodPayload:
    payment_method: PaymentCard | None = strawberry.field(description="The card now on file; null when refused.")
    revampd_connection: Annotated["RevampdConnection", strawberry.lazy("schema.partners")] | None
    user_errors: list[UserError]
    client_mutation_id: str | None

    @classmethod
    def of(cls, result: m.Connection | None, errors: list[UserError], client_mutation_id: str | None) -> Self:
        from schema.partners import RevampdConnection

        return cls(
            payment_method=PaymentCard.of(result) if result else None,
            revampd_connection=RevampdConnection.of(result) if result else None,
            user_errors=errors,
            client_mutation_id=client_mutation_id,
        )
