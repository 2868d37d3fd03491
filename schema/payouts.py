"""Payouts of Sub-Org earnings, their bank transfers, and the bank accounts they go to."""

from __future__ import annotations

from datetime import datetime

import strawberry

from db import models as m
from schema.base import Money, Node, ctx, node_type, to_global_id
from schema.enums import PayoutDisposition, PayoutStatus, TransferStatus


@strawberry.input
class PayoutFilter:
    status: list[PayoutStatus] | None = None


@node_type("BankAccount")
@strawberry.type(description="A linked bank account; only the last four digits are ever shown.")
class BankAccount(Node):
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

    @classmethod
    async def load(cls, info: strawberry.Info, pk: int) -> "BankAccount | None":
        b = await ctx(info).loaders.bank_account.load(pk)
        if b is None or not ctx(info).principal.sees_connection(b.connection_id):
            return None
        return cls.of(b)


@node_type("BankTransfer")
@strawberry.type
class BankTransfer(Node):
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
    async def load(cls, info: strawberry.Info, pk: int) -> "BankTransfer | None":
        t = await ctx(info).loaders.bank_transfer.load(pk)
        payout = await Payout.load(info, t.payout_id) if t is not None else None
        return cls.of(t, payout.model.currency_code) if t is not None and payout else None

    @strawberry.field
    async def bank_account(self, info: strawberry.Info) -> BankAccount | None:
        b = await ctx(info).loaders.bank_account.load(self.model.bank_account_id)
        return BankAccount.of(b) if b is not None else None


@node_type("SubOrgTransaction")
@strawberry.type(description="A Sub-Org charge processed through Revampd, and the Partner's share.")
class SubOrgTransaction(Node):
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
    async def load(cls, info: strawberry.Info, pk: int) -> "SubOrgTransaction | None":
        c = ctx(info)
        t = await c.loaders.sub_org_transaction.load(pk)
        if t is None or not c.principal.sees_connection(t.connection_id):
            return None
        conn = await c.loaders.connection.load(t.connection_id)
        return cls.of(t, conn.currency_code)


@node_type("Payout")
@strawberry.type
class Payout(Node):
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

    @classmethod
    async def load(cls, info: strawberry.Info, pk: int) -> "Payout | None":
        p = await ctx(info).loaders.payout.load(pk)
        if p is None or not ctx(info).principal.sees_connection(p.connection_id):
            return None
        return cls.of(p)

    @strawberry.field
    async def transfers(self, info: strawberry.Info) -> list[BankTransfer]:
        rows = await ctx(info).loaders.transfers_by_payout.load(self.model.id)
        return [BankTransfer.of(t, self.model.currency_code) for t in rows]

    @strawberry.field(description="The Sub-Org transactions this payout is made of.")
    async def source_transactions(self, info: strawberry.Info) -> list[SubOrgTransaction]:
        rows = await ctx(info).loaders.transactions_by_payout.load(self.model.id)
        return [SubOrgTransaction.of(t, self.model.currency_code) for t in rows]
