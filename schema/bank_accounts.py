"""Linking bank accounts for payouts, choosing the default, unlinking: inputs and payloads.

The rules are services.bank_accounts; the BankAccount type is schema.payouts'.
"""

from __future__ import annotations

from typing import Self

import strawberry

from db import models as m
from schema.base import UserError, client_mutation_id_echo, client_mutation_id_field, user_errors_field
from schema.idempotency import idempotency_key_field
from schema.payouts import BankAccount
from services import bank_accounts as bank_accounts_service


@strawberry.input(description="The input of linkBankAccount.")
class LinkBankAccountInput:
    holder_name: str = strawberry.field(
        description="The account holder's name as the bank knows it: 1 to 200 characters, trimmed."
    )
    routing_number: str = strawberry.field(
        description="The 9-digit ABA routing number (digits only; its check digit is verified)."
    )
    account_number: str = strawberry.field(
        description="4 to 17 digits, no spaces or dashes. Sent on to the bank transfer processor and never "
        "stored or shown: only its last four digits are kept."
    )
    bank_name: str | None = strawberry.field(
        default=None,
        description="1 to 200 characters; left out, the bank's name is taken from the routing number.",
    )
    make_default: bool | None = strawberry.field(
        default=None,
        description="Make it the default account for payouts. The connection's first account is the "
        "default whatever this says.",
    )
    idempotency_key: str | None = idempotency_key_field()
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type(description="The result of linkBankAccount.")
class LinkBankAccountPayload:
    bank_account: BankAccount | None = strawberry.field(description="The account linked; null when refused.")
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()

    @classmethod
    def of(cls, result: m.BankAccount | None, errors: list[UserError], cmid: str | None) -> Self:
        return cls(
            bank_account=BankAccount.of(result) if result else None, user_errors=errors, client_mutation_id=cmid
        )


@strawberry.input(description="The input of setDefaultBankAccount.")
class SetDefaultBankAccountInput:
    bank_account_id: strawberry.ID = strawberry.field(description="A linked account of your connection.")
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.input(description="The input of unlinkBankAccount.")
class UnlinkBankAccountInput:
    bank_account_id: strawberry.ID = strawberry.field(
        description="A linked account of your connection with no transfer still PENDING or IN_TRANSIT to it."
    )
    client_mutation_id: str | None = client_mutation_id_field()


def _accounts(result: bank_accounts_service.Changed | None) -> list[BankAccount] | None:
    return [BankAccount.of(a) for a in result.accounts] if result else None


@strawberry.type(description="The result of setDefaultBankAccount.")
class SetDefaultBankAccountPayload:
    bank_account: BankAccount | None = strawberry.field(description="The new default; null when refused.")
    bank_accounts: list[BankAccount] | None = strawberry.field(
        description="Every linked account of the connection now, oldest first; null when refused."
    )
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()

    @classmethod
    def of(cls, result: bank_accounts_service.Changed | None, errors: list[UserError], cmid: str | None) -> Self:
        return cls(
            bank_account=BankAccount.of(result.account) if result else None,
            bank_accounts=_accounts(result),
            user_errors=errors,
            client_mutation_id=cmid,
        )


@strawberry.type(description="The result of unlinkBankAccount.")
class UnlinkBankAccountPayload:
    bank_account: BankAccount | None = strawberry.field(
        description="The account unlinked, with its removedAt; null when refused."
    )
    bank_accounts: list[BankAccount] | None = strawberry.field(
        description="The accounts still linked, oldest first, one of them the default (if any remain); "
        "null when refused."
    )
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()

    @classmethod
    def of(cls, result: bank_accounts_service.Changed | None, errors: list[UserError], cmid: str | None) -> Self:
        return cls(
            bank_account=BankAccount.of(result.account) if result else None,
            bank_accounts=_accounts(result),
            user_errors=errors,
            client_mutation_id=cmid,
        )
