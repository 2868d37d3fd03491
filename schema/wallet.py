"""The wallet: a balance and its append-only ledger; affiliate payouts that feed it."""

from __future__ import annotations

from datetime import datetime

import strawberry

from db import models as m
from schema.base import (
    Connection,
    Money,
    Node,
    ctx,
    load_page,
    page_args,
    to_global_id,
)
from schema.enums import CreditStatus, PayoutPeriodType, WalletEntryKind
from schema.users import User


@strawberry.type
class WalletEntry(Node, model=m.WalletEntry):
    amount: Money = strawberry.field(description="Signed: credits positive, debits negative.")
    kind: WalletEntryKind
    balance_after: Money
    memo: str
    created_at: datetime
    model: strawberry.Private[m.WalletEntry]

    @classmethod
    def of(cls, e: m.WalletEntry, currency: str) -> "WalletEntry":
        return cls(
            id=to_global_id("WalletEntry", e.id),
            amount=Money.of(e.amount, currency),
            kind=WalletEntryKind(e.kind),
            balance_after=Money.of(e.balance_after, currency),
            memo=e.memo,
            created_at=e.created_at,
            model=e,
        )

    @classmethod
    async def from_model(cls, info: strawberry.Info, e: m.WalletEntry) -> "WalletEntry":
        wallet = await ctx(info).loaders.by_id(m.Wallet).load(e.wallet_id)
        return cls.of(e, wallet.currency_code)

    @strawberry.field(
        description="Who made it (staff for manual adjustments); null for the system, "
        "or for a Revampd staff member the viewer may not see."
    )
    async def created_by(self, info: strawberry.Info) -> User | None:
        return await User.load(info, self.model.created_by_id)


@strawberry.type
class Wallet:
    balance: Money
    model: strawberry.Private[m.Wallet]

    @classmethod
    def of(cls, w: m.Wallet) -> "Wallet":
        return cls(balance=Money.of(w.balance, w.currency_code), model=w)

    @strawberry.field(description="The ledger, newest first.")
    async def entries(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[WalletEntry]:
        args = page_args(info, first, after, last, before)
        page = await load_page(ctx(info).loaders.wallet_entry_pages, (self.model.id, None, args))
        cur = self.model.currency_code
        return Connection.of(page, lambda e: WalletEntry.of(e, cur))


@strawberry.type
class AffiliatePayout(Node, model=m.AffiliatePayout):
    period_type: PayoutPeriodType
    period_start: datetime
    period_end: datetime
    amount: Money
    credit_status: CreditStatus
    applied_at: datetime | None
    model: strawberry.Private[m.AffiliatePayout]

    @classmethod
    def of(cls, a: m.AffiliatePayout, currency: str) -> "AffiliatePayout":
        return cls(
            id=to_global_id("AffiliatePayout", a.id),
            period_type=PayoutPeriodType(a.period_type),
            period_start=a.period_start,
            period_end=a.period_end,
            amount=Money.of(a.amount, currency),
            credit_status=CreditStatus(a.credit_status),
            applied_at=a.applied_at,
            model=a,
        )

    @classmethod
    async def from_model(cls, info: strawberry.Info, a: m.AffiliatePayout) -> "AffiliatePayout":
        conn = await ctx(info).loaders.connection.load(a.connection_id)
        return cls.of(a, conn.currency_code)

    @strawberry.field(description="The wallet credit it became, once applied.")
    async def wallet_entry(self, info: strawberry.Info) -> WalletEntry | None:
        if self.model.wallet_entry_id is None:
            return None
        return await WalletEntry.load(info, self.model.wallet_entry_id)
