"""The wallet: a ledger account and its entries; affiliate payouts that feed it."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry

from db import models as m
from db import states
from schema.base import (
    After,
    Before,
    Connection,
    First,
    Last,
    Money,
    Node,
    UserError,
    client_mutation_id_echo,
    client_mutation_id_field,
    ctx,
    field,
    load_page,
    page_args,
    to_global_id,
    user_errors_field,
)
from schema.enums import CreditStatus, PayoutPeriodType, WalletAdjustmentKind, WalletEntryKind
from schema.idempotency import idempotency_key_field
from schema.users import User
from services import wallet as wallet_service
from services.pagination import Page

# What a transfer was for, as a line of the wallet's statement.
_ENTRY_KINDS = {k.value: k for k in states.WalletEntryKind}


@strawberry.type(description="A line of the wallet's statement: one side of a ledger transfer.")
class WalletEntry(Node, model=m.LedgerEntry):
    amount: Money = strawberry.field(description="Signed: credits positive, debits negative.")
    kind: WalletEntryKind = strawberry.field(description="Why the money moved.")
    balance_after: Money = strawberry.field(description="The wallet's balance just after this entry.")
    memo: str = strawberry.field(description="What it was for, in words, as the statement shows it.")
    created_at: datetime = strawberry.field(description="When the money moved.")
    model: strawberry.Private[m.LedgerEntry]
    transfer: strawberry.Private[m.LedgerTransfer]

    @classmethod
    def of(cls, e: m.LedgerEntry, t: m.LedgerTransfer) -> "WalletEntry":
        currency = t.currency_code
        return cls(
            id=to_global_id("WalletEntry", e.id),
            amount=Money.of(e.amount, currency),
            kind=WalletEntryKind(_ENTRY_KINDS[t.kind]),
            balance_after=Money.of(e.balance_after, currency),
            memo=t.memo,
            created_at=e.created_at,
            model=e,
            transfer=t,
        )

    @classmethod
    async def from_model(cls, info: strawberry.Info, e: m.LedgerEntry) -> "WalletEntry":
        t = await ctx(info).loaders.by_id(m.LedgerTransfer).load(e.transfer_id)
        return cls.of(e, t)

    @classmethod
    async def of_many(cls, info: strawberry.Info, entries: list[m.LedgerEntry]) -> list["WalletEntry"]:
        transfers = await ctx(info).loaders.by_id(m.LedgerTransfer).load_many([e.transfer_id for e in entries])
        return [cls.of(e, t) for e, t in zip(entries, transfers, strict=True)]

    @classmethod
    async def of_transfer(cls, info: strawberry.Info, transfer_id: int | None) -> "WalletEntry | None":
        """The wallet's side of a ledger transfer (the only side the graph shows)."""
        if transfer_id is None:
            return None
        entries = await ctx(info).loaders.entries_by_transfer.load(transfer_id)
        return await cls.from_model(info, entries[0]) if entries else None

    @field(
        description="Where a debit's money came from: the earlier credits it spent, each with the part of it "
        "spent here, the most recent first (last in, first out: a payment made just after a payout was "
        "credited is traced to that payout). From a payout credit, `source` leads on to the payout and its "
        "Sub-Org transactions. Empty for a credit."
    )
    async def funded_by(self, info: strawberry.Info) -> list["WalletFunding"]:
        if self.model.amount >= 0:
            return []
        parts = await ctx(info).loaders.funded_by.load(self.model)
        entries = await ctx(info).loaders.by_id(m.LedgerEntry).load_many([entry_id for entry_id, _ in parts])
        lines = await WalletEntry.of_many(info, [e for e in entries if e is not None])
        by_id = {line.model.id: line for line in lines}
        return [
            WalletFunding(amount=Money.of(amount, self.transfer.currency_code), entry=by_id[entry_id])
            for entry_id, amount in parts if entry_id in by_id
        ]

    @field(
        description="Who made it (staff for manual adjustments); null for the system, "
        "or for a Revampd staff member the viewer may not see."
    )
    async def created_by(self, info: strawberry.Info) -> User | None:
        return await User.load(info, self.transfer.created_by_id)

    @field(description="What the money moved for: an Invoice, an AffiliatePayout or a Payout.")
    async def source(self, info: strawberry.Info) -> Node | None:
        from schema.invoices import Invoice
        from schema.payouts import Payout

        t = self.transfer
        if t.invoice_id is not None:
            return await Invoice.load(info, t.invoice_id)
        if t.affiliate_payout_id is not None:
            return await AffiliatePayout.load(info, t.affiliate_payout_id)
        if t.payout_id is not None:
            return await Payout.load(info, t.payout_id)
        return None


@strawberry.type(
    description="The part of an earlier wallet credit that a debit spent. It has no id: clients cache it "
    "with its entry."
)
class WalletFunding:
    amount: Money = strawberry.field(description="How much of that credit this debit spent (positive).")
    entry: WalletEntry = strawberry.field(description="The credit it came from.")


@strawberry.type(description="Credit with Revampd that pays this connection's invoices, and nothing else.")
class Wallet(Node, model=m.Connection):
    balance: Money = strawberry.field(
        description="What the wallet holds now, in the connection's currency; never negative."
    )
    account: strawberry.Private[m.LedgerAccount | None]

    @classmethod
    def of(cls, account: m.LedgerAccount | None, currency: str, connection_id: int | None = None) -> "Wallet":
        """The wallet of `connection_id` (by default the account's): one per connection, so its
        ID is the connection's."""
        cid = connection_id if connection_id is not None else account.connection_id if account else None
        assert cid is not None, "a wallet belongs to a connection"
        return cls(
            id=to_global_id("Wallet", cid), balance=Money.of(account.balance if account else 0, currency),
            account=account,
        )

    @classmethod
    async def from_model(cls, info: strawberry.Info, c: m.Connection) -> "Wallet":
        account = (await ctx(info).loaders.connection_state.load(c.id)).wallet
        return cls.of(account, c.currency_code, c.id)

    @field(description="The statement, newest first.")
    async def entries(
        self,
        info: strawberry.Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[WalletEntry]:
        args = page_args(info, first, after, last, before)
        if self.account is None:
            return Connection.of(Page([], False, False), lambda e: e)
        page = await load_page(ctx(info).loaders.wallet_entry_pages, (self.account.id, None, args))
        lines = {line.model.id: line for line in await WalletEntry.of_many(info, page.rows)}
        return Connection.of(page, lambda e: lines[e.id])


@strawberry.type(description="Affiliate earnings Revampd issued to the Partner for a period, credited to its wallet.")
class AffiliatePayout(Node, model=m.AffiliatePayout):
    period_type: PayoutPeriodType = strawberry.field(description="Whether it pays a week or a month.")
    period_start: datetime = strawberry.field(description="The start of the period it pays.")
    period_end: datetime = strawberry.field(description="The end of the period it pays.")
    amount: Money = strawberry.field(description="What it pays, in the connection's currency.")
    credit_status: CreditStatus = strawberry.field(description="PENDING until credited to the wallet, then APPLIED.")
    applied_at: datetime | None = strawberry.field(
        description="When it was credited to the wallet; null while PENDING."
    )
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

    @field(description="The wallet credit it became, once applied.")
    async def wallet_entry(self, info: strawberry.Info) -> WalletEntry | None:
        return await WalletEntry.of_transfer(info, self.model.transfer_id)


# ---- Mutations: inputs and payloads -------------------------------------------

@strawberry.input(description="The input of adjustWallet.")
class AdjustWalletInput:
    connection_id: strawberry.ID = strawberry.field(description="The RevampdConnection whose wallet to adjust.")
    amount: str = strawberry.field(
        description="Signed decimal string in the connection's currency: \"25.00\" credits the wallet, "
        "\"-25.00\" takes credit back (never below zero). Not zero; no more decimals than the currency has."
    )
    kind: WalletAdjustmentKind = strawberry.field(
        description="MANUAL_ADJUSTMENT moves money from Revampd's adjustments account, REVENUE_SHARE from "
        "its revenue-share account (and back, for a negative amount)."
    )
    memo: str = strawberry.field(description="Why, shown on the statement: 1 to 500 characters, trimmed.")
    idempotency_key: str = strawberry.field(
        description="Required: a key you choose for this adjustment (1 to 200 characters, no control "
        "characters; a UUID will do). A retry with the same key and the same input moves nothing and "
        "answers with the first entry; the same key with other input is refused with "
        "IDEMPOTENCY_KEY_REUSED. Keys are per user; a refused request leaves its key unused."
    )
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type(description="The result of adjustWallet.")
class AdjustWalletPayload:
    wallet: Wallet | None = strawberry.field(description="The wallet as it now stands.")
    wallet_entry: WalletEntry | None = strawberry.field(description="The adjustment on the wallet's statement.")
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()

    @classmethod
    def of(cls, result: wallet_service.Movement | None, errors: list[UserError], cmid: str | None) -> Self:
        return cls(
            wallet=Wallet.of(result.account, result.account.currency_code) if result else None,
            wallet_entry=WalletEntry.of(result.entry, result.transfer) if result else None,
            user_errors=errors,
            client_mutation_id=cmid,
        )


@strawberry.input(description="The input of applyAffiliatePayout.")
class ApplyAffiliatePayoutInput:
    affiliate_payout_id: strawberry.ID = strawberry.field(description="A PENDING affiliate payout.")
    idempotency_key: str | None = idempotency_key_field()
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type(description="The result of applyAffiliatePayout.")
class ApplyAffiliatePayoutPayload:
    affiliate_payout: AffiliatePayout | None = strawberry.field(description="Now APPLIED.")
    wallet_entry: WalletEntry | None = strawberry.field(description="The credit on the wallet's statement.")
    wallet: Wallet | None = strawberry.field(description="The wallet as it now stands.")
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()

    @classmethod
    def of(cls, result: wallet_service.Applied | None, errors: list[UserError], cmid: str | None) -> Self:
        if result is None:
            return cls(affiliate_payout=None, wallet_entry=None, wallet=None, user_errors=errors,
                       client_mutation_id=cmid)
        account = result.movement.account
        return cls(
            affiliate_payout=AffiliatePayout.of(result.payout, account.currency_code),
            wallet_entry=WalletEntry.of(result.movement.entry, result.movement.transfer),
            wallet=Wallet.of(account, account.currency_code),
            user_errors=errors,
            client_mutation_id=cmid,
        )
