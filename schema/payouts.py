"""Payouts of Sub-Org earnings, their bank transfers, and the bank accounts they go to."""

from __future__ import annotations

from datetime import datetime

import strawberry

from db import models as m
from schema.base import Money, Node, ctx, to_global_id
from schema.enums import PayoutDisposition, PayoutStatus, TransferStatus


@strawberry.input
class PayoutFilter:
    status: list[PayoutStatus] | None = None


@strawberry.type(description="A linked bank account; only the last four digits are ever shown.")
class BankAccount(Node, model=m.BankAccount):
    holder_name: str
    bank_name: str
    last4: str
    is_default: bool
    created_at: datetime
    model: strawberry.Private[m.BankAccount]

    @classmethod
    def of(cls, b: m.BankAccount) -> "BankAccount":
        return cls(
            id=to_global_id("BankAccount", b.id),
            holder_name=b.holder_name,
            bank_name=b.bank_name,
            last4=b.account_last4,
            is_default=b.is_default,
            created_at=b.created_at,
            model=b,
        )


@strawberry.type
class BankTransfer(Node, model=m.BankTransfer):
    amount: Money
    status: TransferStatus
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    model: strawberry.Private[m.BankTransfer]

    @classmethod
    def of(cls, t: m.BankTransfer, currency: str) -> "BankTransfer":
        return cls(
            id=to_global_id("BankTransfer", t.id),
            amount=Money.of(t.amount, currency),
            status=TransferStatus(t.status),
            failure_reason=t.failure_reason,
            created_at=t.created_at,
            updated_at=t.updated_at,
            model=t,
        )

    @classmethod
    async def from_model(cls, info: strawberry.Info, t: m.BankTransfer) -> "BankTransfer":
        payout = await ctx(info).loaders.by_id(m.Payout).load(t.payout_id)
        return cls.of(t, payout.currency_code)

    @strawberry.field
    async def bank_account(self, info: strawberry.Info) -> BankAccount | None:
        return await BankAccount.load(info, self.model.bank_account_id)


@strawberry.type(description="A Sub-Org charge processed through Revampd, and the Partner's share.")
class SubOrgTransaction(Node, model=m.SubOrgTransaction):
    sub_org_name: str
    description: str
    kind: str
    gross_amount: Money
    partner_amount: Money
    occurred_at: datetime

    @classmethod
    def of(cls, t: m.SubOrgTransaction, currency: str) -> "SubOrgTransaction":
        return cls(
            id=to_global_id("SubOrgTransaction", t.id),
            sub_org_name=t.sub_org_name,
            description=t.description,
            kind=t.kind,
            gross_amount=Money.of(t.gross_amount, currency),
            partner_amount=Money.of(t.partner_amount, currency),
            occurred_at=t.occurred_at,
        )

    @classmethod
    async def from_model(cls, info: strawberry.Info, t: m.SubOrgTransaction) -> "SubOrgTransaction":
        conn = await ctx(info).loaders.connection.load(t.connection_id)
        return cls.of(t, conn.currency_code)


@strawberry.type
class Payout(Node, model=m.Payout):
    period_start: datetime
    period_end: datetime
    amount: Money
    available_amount: Money = strawberry.field(description="Still to be credited or transferred.")
    wallet_amount: Money = strawberry.field(description="Credited to the wallet.")
    bank_amount: Money = strawberry.field(description="Sent, or on its way, to a bank.")
    status: PayoutStatus
    disposition: PayoutDisposition | None
    created_at: datetime
    updated_at: datetime
    model: strawberry.Private[m.Payout]

    @classmethod
    def of(cls, p: m.Payout) -> "Payout":
        cur = p.currency_code
        return cls(
            id=to_global_id("Payout", p.id),
            period_start=p.period_start,
            period_end=p.period_end,
            amount=Money.of(p.amount, cur),
            available_amount=Money.of(p.available_amount, cur),
            wallet_amount=Money.of(p.wallet_amount, cur),
            bank_amount=Money.of(p.bank_amount, cur),
            status=PayoutStatus(p.status),
            disposition=PayoutDisposition(p.disposition) if p.disposition else None,
            created_at=p.created_at,
            updated_at=p.updated_at,
            model=p,
        )

    @strawberry.field
    async def transfers(self, info: strawberry.Info) -> list[BankTransfer]:
        rows = await ctx(info).loaders.transfers_by_payout.load(self.model.id)
        return [BankTransfer.of(t, self.model.currency_code) for t in rows]

    @strawberry.field(description="The Sub-Org transactions this payout is made of.")
    async def source_transactions(self, info: strawberry.Info) -> list[SubOrgTransaction]:
        rows = await ctx(info).loaders.transactions_by_payout.load(self.model.id)
        return [SubOrgTransaction.of(t, self.model.currency_code) for t in rows]
