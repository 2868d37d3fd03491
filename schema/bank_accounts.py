"""Bank accounts payouts go to: the BankAccount type, and linking one, choosing the default,
unlinking (inputs and payloads). The rules are services.bank_accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry

from db import models as m
from schema.base import (
    Node,
    UserError,
    changed_connection,
    client_mutation_id_echo,
    client_mutation_id_field,
    to_global_id,
    user_errors_field,
)
from schema.idempotency import idempotency_key_field
from services import bank_accounts as bank_accounts_service


@strawberry.type(description="A linked bank account; only the last four digits are ever shown.")
class BankAccount(Node, model=m.BankAccount):
    holder_name: str = strawberry.field(description="The account holder's name as the bank knows it.")
    bank_name: str = strawberry.field(description="The bank's name, as given or taken from the routing number.")
    last4: str = strawberry.field(description="The last four digits of the account number.")
    routing_number_last4: str = strawberry.field(
        description="The last four digits of the routing number, to tell accounts apart."
    )
    is_default: bool = strawberry.field(
        description="True for the account payouts go to when none is named (and the payout preference's)."
    )
    created_at: datetime = strawberry.field(description="When it was linked.")
    removed_at: datetime | None = strawberry.field(
        description="When it was unlinked; an unlinked account receives nothing and is no longer listed."
    )
    model: strawberry.Private[m.BankAccount]

    @classmethod
    def of(cls, b: m.BankAccount) -> "BankAccount":
        return cls(
            id=to_global_id("BankAccount", b.id),
            holder_name=b.holder_name,
            bank_name=b.bank_name,
            last4=b.account_last4,
            routing_number_last4=b.routing_number[-4:],
            is_default=b.is_default,
            created_at=b.created_at,
            removed_at=b.removed_at,
            model=b,
        )



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
    revampd_connection = changed_connection(
        lambda p: p.bank_account and p.bank_account.model.connection_id, "bankAccounts"
    )
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
    revampd_connection = changed_connection(
        lambda p: p.bank_account and p.bank_account.model.connection_id, "bankAccounts"
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
