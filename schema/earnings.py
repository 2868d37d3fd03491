"""Recording Sub-Org transactions (Revampd billing), and a connection's list of them."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry

from schema.base import UserError, client_mutation_id_echo, client_mutation_id_field, user_errors_field
from schema.enums import SubOrgTransactionKind
from schema.idempotency import idempotency_key_field
from schema.payouts import SubOrgTransaction
from services import earnings


@strawberry.input(description="Narrows RevampdConnection.subOrgTransactions; a field left out does not narrow.")
class SubOrgTransactionFilter:
    unpaid: bool | None = strawberry.field(
        default=None, description="true: only those no payout has paid out yet; false: only those paid out."
    )


@strawberry.input(description="A Sub-Org charge processed through Revampd.")
class SubOrgTransactionInput:
    external_id: str = strawberry.field(
        description="Its id in the system it comes from: 1 to 100 printable characters. A transaction is "
        "recorded once per connection: the same externalId again is ignored and reported in `duplicates`."
    )
    sub_org_name: str = strawberry.field(description="1 to 200 characters.")
    kind: SubOrgTransactionKind = strawberry.field(description="A subscription or a usage-based charge.")
    gross_amount: str = strawberry.field(
        description="What the Sub-Org paid: a positive decimal string in the connection's currency, e.g. \"97.00\"."
    )
    occurred_at: datetime = strawberry.field(
        description="When it happened, with its UTC offset; not in the future. It is paid out by the first "
        "payout made after it is recorded whose period ends later than this (a late one joins the next payout)."
    )
    description: str | None = strawberry.field(default=None, description="Up to 300 characters.")


@strawberry.input(description="The input of recordSubOrgTransactions.")
class RecordSubOrgTransactionsInput:
    connection_id: strawberry.ID = strawberry.field(description="The RevampdConnection whose Sub-Orgs paid.")
    transactions: list[SubOrgTransactionInput] = strawberry.field(
        description=f"At most {earnings.MAX_PER_CALL:,}. Every bad field of every transaction is reported at "
        "once, e.g. [\"input\", \"transactions\", \"3\", \"grossAmount\"], and then none is recorded."
    )
    idempotency_key: str | None = idempotency_key_field()
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type(description="The result of recordSubOrgTransactions.")
class RecordSubOrgTransactionsPayload:
    recorded: list[SubOrgTransaction] = strawberry.field(
        description="The transactions recorded, in the order sent, each with Revampd's fee at the rate of the "
        "Partner's plan now and the Partner's share."
    )
    duplicates: list[str] = strawberry.field(
        description="The externalIds ignored, in the order sent: recorded before, or sent twice (the first is "
        "recorded). recorded and duplicates together account for every transaction sent."
    )
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()

    @classmethod
    def of(cls, result: earnings.Recorded | None, errors: list[UserError], cmid: str | None) -> Self:
        currency = result.connection.currency_code if result else ""
        return cls(
            recorded=[SubOrgTransaction.of(t, currency) for t in result.transactions] if result else [],
            duplicates=list(result.duplicates) if result else [],
            user_errors=errors,
            client_mutation_id=cmid,
        )
