"""Payouts of Sub-Org earnings and their bank transfers (the accounts they go to: schema.bank_accounts)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Callable, Self

import strawberry

from db import models as m
from schema.bank_accounts import BankAccount
from schema.base import (
    VALUE,
    FromRow,
    Money,
    Node,
    UserError,
    by_id,
    changed_connection,
    client_mutation_id_echo,
    client_mutation_id_field,
    column,
    ctx,
    field,
    from_loader,
    global_id,
    money_from,
    to_global_id,
    user_errors_field,
)
from schema.enums import (
    ClawbackKind,
    PayoutDispositionKind,
    PayoutMode,
    PayoutPeriodType,
    PayoutStatus,
    SubOrgTransactionKind,
    TransferStatus,
)
from schema.files import URL_DESCRIPTION, download_url
from schema.idempotency import idempotency_key_field, required_idempotency_key_field
from schema.users import User
from schema.wallet import Wallet, WalletEntry
from services import clawbacks as clawback_service
from services import payouts, pdfs


@strawberry.input(description="Narrows RevampdConnection.payouts; a field left out or empty does not narrow.")
class PayoutFilter:
    status: list[PayoutStatus] | None = strawberry.field(
        default=None, description="Only payouts in one of these statuses."
    )


@strawberry.type(
    description="Part of a payout on its way to a bank: PENDING (accepted, not yet sent; the Partner may "
    "cancel it) -> IN_TRANSIT -> PAID, or FAILED with a reason. A FAILED or CANCELED transfer's amount is "
    "available on its payout again."
)
class BankTransfer(FromRow, Node, model=m.BankTransfer):
    amount: Money = strawberry.field(description="How much goes to the bank, in the payout's currency.")
    status: TransferStatus = strawberry.field(
        description="Where it is: PENDING, IN_TRANSIT, PAID, FAILED, CANCELED or RETURNED."
    )
    failure_code: str | None = strawberry.field(description="The processor's code when FAILED, e.g. no_account.")
    failure_reason: str | None = strawberry.field(description="Why it FAILED, in words; null unless FAILED.")
    created_at: datetime = strawberry.field(description="When it was asked for.")
    updated_at: datetime = strawberry.field(description="When its status last changed.")
    submitted_at: datetime | None = strawberry.field(description="When the processor accepted it.")
    in_transit_at: datetime | None = strawberry.field(description="When it became IN_TRANSIT; null before.")
    paid_at: datetime | None = strawberry.field(description="When it was PAID into the bank account; null before.")
    failed_at: datetime | None = strawberry.field(description="When it FAILED; null unless FAILED.")
    canceled_at: datetime | None = strawberry.field(description="When it was CANCELED; null unless CANCELED.")
    returned_at: datetime | None = strawberry.field(
        description="When the bank sent it back after it was PAID; null unless RETURNED."
    )
    return_code: str | None = strawberry.field(
        description="The bank's return code when RETURNED, e.g. R02 (account closed) or R03 (no account)."
    )
    return_reason: str | None = strawberry.field(description="Why the bank returned it, in words; null unless RETURNED.")
    trace_id: str | None = strawberry.field(
        description="The processor's reference for it, which the bank shows on the Partner's statement; null until "
        "the processor accepted it."
    )
    model: strawberry.Private[m.BankTransfer]

    from_row = {
        "id": global_id("BankTransfer"),
        "amount": money_from("amount", "currency", of_object=True),
        "status": column("status", TransferStatus),
        "failure_code": column("failure_code"),
        "failure_reason": column("failure_reason"),
        "created_at": column("created_at"),
        "updated_at": column("updated_at"),
        "submitted_at": column("submitted_at"),
        "in_transit_at": column("in_transit_at"),
        "paid_at": column("paid_at"),
        "failed_at": column("failed_at"),
        "canceled_at": column("canceled_at"),
        "returned_at": column("returned_at"),
        "return_code": column("return_code"),
        "return_reason": column("return_reason"),
        "trace_id": column("gateway_ref"),
    }

    @classmethod
    def of(cls, t: m.BankTransfer, currency: str) -> "BankTransfer":
        return cls.made(model=t, currency=currency)

    @classmethod
    async def from_model(cls, info: strawberry.Info, t: m.BankTransfer) -> "BankTransfer":
        payout = await ctx(info).loaders.by_id(m.Payout).load(t.payout_id)
        return cls.of(t, payout.currency_code)

    @from_loader(by_id(m.BankAccount), lambda s: s.model.bank_account_id,
                 "The account it goes to; still shown after the account is unlinked.")
    def bank_account(self, row: m.BankAccount | None) -> BankAccount | None:
        return BankAccount.of(row) if row is not None else None

    @field(description="The payout it is part of.")
    async def payout(self, info: strawberry.Info) -> Annotated["Payout", strawberry.lazy("schema.payouts")] | None:
        return await Payout.load(info, self.model.payout_id)

    @from_loader(by_id(m.User), lambda s: s.model.created_by_id, "Who sent it; null when the payout preference did.")
    def created_by(self, row: m.User | None) -> User | None:
        return User.of(row) if row is not None else None


@strawberry.type(description="A Sub-Org charge processed through Revampd, and the Partner's share of it.")
class SubOrgTransaction(Node, model=m.SubOrgTransaction):
    external_id: str = strawberry.field(description="Its id in the feed it came from; unique per connection.")
    sub_org_name: str = strawberry.field(description="The Sub-Org that paid, as the feed named it.")
    description: str = strawberry.field(description="What it was for, as the feed gave it; may be empty.")
    kind: SubOrgTransactionKind = strawberry.field(description="A subscription or a usage-based charge.")
    gross_amount: Money = strawberry.field(description="What the Sub-Org paid, in the connection's currency.")
    fee_percent: Decimal = strawberry.field(
        description="Revampd's transaction fee when it was recorded: the Partner's plan's, in percent (2.5 = 2.5 %)."
    )
    fee_amount: Money = strawberry.field(description="gross x feePercent, rounded half-even to the minor unit.")
    partner_amount: Money = strawberry.field(description="grossAmount - feeAmount: the Partner's share.")
    occurred_at: datetime = strawberry.field(description="When the Sub-Org was charged.")
    recorded_at: datetime = strawberry.field(description="When Revampd recorded it (recordSubOrgTransactions).")
    model: strawberry.Private[m.SubOrgTransaction]

    @classmethod
    def of(cls, t: m.SubOrgTransaction, currency: str) -> "SubOrgTransaction":
        return cls(
            id=to_global_id("SubOrgTransaction", t.id),
            external_id=t.external_id,
            sub_org_name=t.sub_org_name,
            description=t.description,
            kind=SubOrgTransactionKind(t.kind),
            gross_amount=Money.of(t.gross_amount, currency),
            fee_percent=Decimal(t.fee_bps).scaleb(-2),
            fee_amount=Money.of(t.fee_amount, currency),
            partner_amount=Money.of(t.partner_amount, currency),
            occurred_at=t.occurred_at,
            recorded_at=t.recorded_at,
            model=t,
        )

    @classmethod
    async def from_model(cls, info: strawberry.Info, t: m.SubOrgTransaction) -> "SubOrgTransaction":
        conn = await ctx(info).loaders.connection.load(t.connection_id)
        return cls.of(t, conn.currency_code)

    @field(description="The payout that paid it out; null until its period is closed.")
    async def payout(self, info: strawberry.Info) -> Annotated["Payout", strawberry.lazy("schema.payouts")] | None:
        return await Payout.load(info, self.model.payout_id)

    @field(description="Its refunds and chargebacks after it was recorded (clawbacks of the Partner's share), oldest "
           "first; empty when there were none.")
    async def clawbacks(
        self, info: strawberry.Info
    ) -> list[Annotated["Clawback", strawberry.lazy("schema.payouts")]]:
        rows = await ctx(info).loaders.clawbacks_by_transaction.load(self.model.id)
        return [Clawback.of(c) for c in rows]


@strawberry.type(
    description="One decision about a payout: what went to the wallet and what to a bank, when and by whom."
)
class PayoutDisposition(Node, model=m.PayoutDisposition):
    kind: PayoutDispositionKind = strawberry.field(description="CREDIT, TRANSFER or SPLIT.")
    wallet_amount: Money = strawberry.field(description="What it credited to the wallet; zero for a TRANSFER.")
    bank_amount: Money = strawberry.field(description="What it sent to a bank; zero for a CREDIT.")
    by_preference: bool = strawberry.field(
        description="Made by the connection's payout preference when the payout was created, not by a user."
    )
    created_at: datetime = strawberry.field(description="When it was made.")
    model: strawberry.Private[m.PayoutDisposition]

    @classmethod
    def of(cls, d: m.PayoutDisposition, currency: str) -> "PayoutDisposition":
        return cls(
            id=to_global_id("PayoutDisposition", d.id),
            kind=PayoutDispositionKind(d.kind),
            wallet_amount=Money.of(d.wallet_amount, currency),
            bank_amount=Money.of(d.bank_amount, currency),
            by_preference=d.created_by_id is None,
            created_at=d.created_at,
            model=d,
        )

    @classmethod
    async def from_model(cls, info: strawberry.Info, d: m.PayoutDisposition) -> "PayoutDisposition":
        payout = await ctx(info).loaders.by_id(m.Payout).load(d.payout_id)
        return cls.of(d, payout.currency_code)

    @field(description="Who decided; null when the payout preference did.")
    async def created_by(self, info: strawberry.Info) -> User | None:
        return await User.load(info, self.model.created_by_id)

    @field(description="The wallet credit, when some went to the wallet.")
    async def wallet_entry(self, info: strawberry.Info) -> WalletEntry | None:
        return await WalletEntry.of_transfer(info, self.model.credit_transfer_id)

    @field(description="The bank transfer, when some went to a bank.")
    async def bank_transfer(self, info: strawberry.Info) -> BankTransfer | None:
        return await BankTransfer.load(info, self.model.bank_transfer_id)


@strawberry.type(description="The Partner's earnings from Sub-Org transactions for a period.")
class Payout(FromRow, Node, model=m.Payout):
    period_type: PayoutPeriodType = strawberry.field(description="Whether it pays out a week or a month.")
    period_start: datetime = strawberry.field(description="The start of its period.")
    period_end: datetime = strawberry.field(
        description="The end of its period (exclusive); it pays transactions that occurred before this and were "
        "not paid out yet."
    )
    gross_amount: Money = strawberry.field(description="What the Sub-Orgs paid, in all.")
    fee_amount: Money = strawberry.field(description="Revampd's transaction fees on it.")
    amount: Money = strawberry.field(description="grossAmount - feeAmount: the Partner's earnings.")
    available_amount: Money = strawberry.field(description="Still to be credited or transferred.")
    wallet_amount: Money = strawberry.field(description="Credited to the wallet.")
    bank_amount_in_flight: Money = strawberry.field(description="On its way to a bank (PENDING or IN_TRANSIT).")
    bank_amount_paid: Money = strawberry.field(description="Paid into a bank account.")
    clawed_back: Money = strawberry.field(
        description="Taken back by clawbacks: Sub-Org transactions refunded or charged back after they were "
        "recorded (see `clawbacks`). availableAmount + walletAmount + bankAmountInFlight + bankAmountPaid + "
        "clawedBack = amount."
    )
    status: PayoutStatus = strawberry.field(
        description="How much is disposed of: AVAILABLE, PARTIALLY_DISPOSED, PROCESSING or COMPLETED."
    )
    disposition: PayoutDispositionKind | None = strawberry.field(
        description="Where it went so far: CREDIT (wallet only), TRANSFER (bank only) or SPLIT (both)."
    )
    created_at: datetime = strawberry.field(description="When it was made, after its period ended.")
    updated_at: datetime = strawberry.field(description="When it last changed.")
    model: strawberry.Private[m.Payout]

    from_row = {
        "id": global_id("Payout"),
        "period_type": column("period_type", PayoutPeriodType),
        "period_start": column("period_start"),
        "period_end": column("period_end"),
        "gross_amount": money_from("gross_amount"),
        "fee_amount": money_from("fee_amount"),
        "amount": money_from("amount"),
        "available_amount": money_from("available_amount"),
        "wallet_amount": money_from("wallet_amount"),
        "bank_amount_in_flight": money_from("bank_in_flight_amount"),
        "bank_amount_paid": money_from("bank_paid_amount"),
        "clawed_back": money_from("clawed_back_amount"),
        "status": column("status", PayoutStatus),
        "disposition": column("disposition", PayoutDispositionKind),
        "created_at": column("created_at"),
        "updated_at": column("updated_at"),
    }

    @classmethod
    def of(cls, p: m.Payout) -> "Payout":
        return cls.made(model=p)

    @staticmethod
    def along(loaders: Any, wanted: set[str]) -> Any:
        """What a page of payouts brings along in its statement for the item fields asked
        (schema.loaders.Loaders.payouts_along)."""
        return loaders.payouts_along(transfers="transfers" in wanted)

    @staticmethod
    def primes(loaders: Any) -> dict[str, Callable[[list[m.Payout]], Any]]:
        """What a page of payouts loads at once, after it, for the item fields asked (schema.base.prime)."""
        return {
            "dispositions": lambda rows: loaders.dispositions_by_payout.fill([p.id for p in rows]),
            "clawbacks": lambda rows: loaders.recoveries_by_payout.fill([p.id for p in rows]),
        }

    @from_loader(lambda loaders: loaders.transfers_by_payout, lambda s: s.model.id,
                 "Its bank transfers, oldest first, whatever became of them.")
    def transfers(self, rows: list[m.BankTransfer]) -> list[BankTransfer]:
        return [BankTransfer.of(t, self.model.currency_code) for t in rows]

    @from_loader(lambda loaders: loaders.dispositions_by_payout, lambda s: s.model.id,
                 "Every disposition, oldest first, with its time and user.")
    def dispositions(self, rows: list[m.PayoutDisposition]) -> list[PayoutDisposition]:
        return [PayoutDisposition.of(d, self.model.currency_code) for d in rows]

    @field(description="A link to the payout's statement as a PDF: each Sub-Org transaction with its gross, fee and "
           "net, and where the money went, each bank transfer with its trace id." + URL_DESCRIPTION)
    def statement_url(self, info: strawberry.Info) -> str:
        p = self.model
        return download_url(info, ["payout-statement", str(p.id), f"{pdfs.statement_number(p)}.pdf"], p.connection_id)[0]

    @field(description="The Sub-Org transactions this payout is made of, oldest first.")
    async def source_transactions(self, info: strawberry.Info) -> list[SubOrgTransaction]:
        rows = await ctx(info).loaders.transactions_by_payout.load(self.model.id)
        return [SubOrgTransaction.of(t, self.model.currency_code) for t in rows]

    @field(description="The clawbacks that took money from this payout (its `clawedBack`), in the order they took "
           "it: of its own transactions, or outstanding ones of earlier payouts taken when it was made. What each "
           "took from this payout is in its `recoveries`.")
    async def clawbacks(self, info: strawberry.Info) -> list["Clawback"]:
        loaders = ctx(info).loaders
        recoveries = await loaders.recoveries_by_payout.load(self.model.id)
        by_id = loaders.by_id(m.Clawback)  # primed by the recoveries' statement
        found = {r.clawback_id: await by_id.load(r.clawback_id) for r in recoveries}
        return [Clawback.of(c) for c in found.values() if c is not None]


@strawberry.type(
    description="Part of a clawback taken from a payout: how much, from which payout, and when." + VALUE
)
class ClawbackRecovery:
    amount: Money = strawberry.field(description="What it took from the payout.")
    created_at: datetime = strawberry.field(
        description="When it was taken: when the clawback was recorded, or, for what was outstanding, when the "
        "payout was made."
    )
    model: strawberry.Private[m.ClawbackRecovery]

    @classmethod
    def of(cls, r: m.ClawbackRecovery, currency: str) -> "ClawbackRecovery":
        return cls(amount=Money.of(r.amount, currency), created_at=r.created_at, model=r)

    @field(description="The payout it was taken from.")
    async def payout(self, info: strawberry.Info) -> Payout | None:
        return await Payout.load(info, self.model.payout_id)


@strawberry.type(
    description="A Sub-Org transaction refunded or charged back after it was recorded: the Partner's share of it "
    "(or the part reversed) taken back, from payouts and never from the wallet. It is taken at once from the "
    "payout the transaction was counted in, as far as money is still available there; the rest is `outstanding` "
    "and taken from the connection's next payouts when they are made, oldest clawback first."
)
class Clawback(Node, model=m.Clawback):
    external_id: str = strawberry.field(
        description="The reversal's id where it comes from (the refund's or the dispute's); unique per connection."
    )
    kind: ClawbackKind = strawberry.field(description="A REFUND or a CHARGEBACK.")
    amount: Money = strawberry.field(description="The Partner's share of the transaction taken back, in all.")
    taken_amount: Money = strawberry.field(description="Taken from payouts so far: amount - outstanding.")
    outstanding: Money = strawberry.field(
        description="Not taken yet: the connection's next payouts will be reduced by it."
    )
    reason: str = strawberry.field(description="Why, as Revampd billing or the feed said; may be empty.")
    created_at: datetime = strawberry.field(description="When it was recorded.")
    model: strawberry.Private[m.Clawback]

    @classmethod
    def of(cls, c: m.Clawback) -> "Clawback":
        cur = c.currency_code
        return cls(
            id=to_global_id("Clawback", c.id),
            external_id=c.external_id,
            kind=ClawbackKind(c.kind),
            amount=Money.of(c.amount, cur),
            taken_amount=Money.of(c.amount - c.outstanding, cur),
            outstanding=Money.of(c.outstanding, cur),
            reason=c.reason,
            created_at=c.created_at,
            model=c,
        )

    @field(description="The Sub-Org transaction it reverses.")
    async def transaction(self, info: strawberry.Info) -> SubOrgTransaction:
        found = await SubOrgTransaction.load(info, self.model.transaction_id)
        assert found is not None, "a clawback is seen by those who see its transaction"
        return found

    @field(description="The payout its transaction was counted in; null while the transaction is in no payout yet.")
    async def payout(self, info: strawberry.Info) -> Payout | None:
        transaction = await ctx(info).loaders.by_id(m.SubOrgTransaction).load(self.model.transaction_id)
        return await Payout.load(info, transaction.payout_id if transaction is not None else None)

    @field(description="What was taken, from which payout and when, oldest first.")
    async def recoveries(self, info: strawberry.Info) -> list[ClawbackRecovery]:
        rows = await ctx(info).loaders.recoveries_by_clawback.load(self.model.id)
        return [ClawbackRecovery.of(r, self.model.currency_code) for r in rows]


async def connection_clawbacks(info: strawberry.Info, connection_id: int) -> list[Clawback]:
    """RevampdConnection.clawbacks: every clawback of the connection, newest first."""
    return [Clawback.of(c) for c in await ctx(info).loaders.clawbacks_by_connection.load(connection_id)]


async def clawback_outstanding(info: strawberry.Info, connection_id: int, currency: str) -> Money:
    """RevampdConnection.clawbackOutstanding: what its next payouts will be reduced by."""
    rows = await ctx(info).loaders.clawbacks_by_connection.load(connection_id)
    return Money.of(sum(c.outstanding for c in rows), currency)


@strawberry.type(description="What happens to each new payout, and how often payouts are made.")
class PayoutPreference(Node, model=m.Connection):
    mode: PayoutMode = strawberry.field(
        description="MANUAL: the Partner decides each payout; CREDIT: all to the wallet; TRANSFER: all to the "
        "default bank account; SPLIT: walletPercent to the wallet, the rest to the default bank account."
    )
    wallet_percent: int | None = strawberry.field(description="For SPLIT: the whole percent (1-99) to the wallet.")
    period_type: PayoutPeriodType = strawberry.field(description="Payouts gather a WEEKLY or MONTHLY period.")

    @classmethod
    def of(cls, c: m.Connection) -> "PayoutPreference":
        """One per connection, so its ID is the connection's."""
        return cls(
            id=to_global_id("PayoutPreference", c.id),
            mode=PayoutMode(c.payout_mode or "MANUAL"),
            wallet_percent=c.payout_wallet_percent,
            period_type=PayoutPeriodType(c.payout_period_type),
        )


# ---- Mutations: inputs and payloads -------------------------------------------

@strawberry.input(description="The input of creditPayout.")
class CreditPayoutInput:
    payout_id: strawberry.ID = strawberry.field(description="A payout of your connection with something available.")
    amount: str | None = strawberry.field(
        default=None,
        description="Decimal string in the payout's currency, at most what is available; default: all of it.",
    )
    idempotency_key: str = required_idempotency_key_field()
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.input(description="The input of transferPayout.")
class TransferPayoutInput:
    payout_id: strawberry.ID = strawberry.field(description="A payout of your connection with something available.")
    bank_account_id: strawberry.ID | None = strawberry.field(
        default=None, description="A linked bank account of the connection; default: the default one."
    )
    amount: str | None = strawberry.field(
        default=None,
        description="Decimal string in the payout's currency, at most what is available; default: all of it.",
    )
    idempotency_key: str = required_idempotency_key_field()
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.input(description="The input of splitPayout.")
class SplitPayoutInput:
    payout_id: strawberry.ID = strawberry.field(description="A payout of your connection with something available.")
    wallet_amount: str = strawberry.field(
        description="Decimal string: this much to the wallet; the rest of what is available goes to the bank. "
        "Both parts must be positive."
    )
    bank_account_id: strawberry.ID | None = strawberry.field(
        default=None, description="A linked bank account of the connection; default: the default one."
    )
    idempotency_key: str = required_idempotency_key_field()
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type(description="A payout disposed of: the payout as it now stands and what was done.")
class DisposePayoutPayload:
    payout: Payout | None = strawberry.field(description="The payout as it now stands; null when refused.")
    disposition: PayoutDisposition | None = strawberry.field(description="What was done; null when refused.")
    wallet: Wallet | None = strawberry.field(description="The wallet as it now stands, when credited.")
    bank_transfer: BankTransfer | None = strawberry.field(description="The transfer to the bank, when one was sent.")
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()

    @classmethod
    def of(cls, result: payouts.Disposed | None, errors: list[UserError], cmid: str | None) -> Self:
        if result is None:
            return cls(payout=None, disposition=None, wallet=None, bank_transfer=None, user_errors=errors,
                       client_mutation_id=cmid)
        cur = result.payout.currency_code
        return cls(
            payout=Payout.of(result.payout),
            disposition=PayoutDisposition.of(result.disposition, cur),
            wallet=Wallet.of(result.wallet, cur) if result.wallet else None,
            bank_transfer=BankTransfer.of(result.bank_transfer, cur) if result.bank_transfer else None,
            user_errors=errors,
            client_mutation_id=cmid,
        )


@strawberry.input(description="The input of cancelBankTransfer.")
class CancelBankTransferInput:
    bank_transfer_id: strawberry.ID = strawberry.field(description="A PENDING transfer of one of your payouts.")
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type(description="The result of cancelBankTransfer.")
class CancelBankTransferPayload:
    bank_transfer: BankTransfer | None = strawberry.field(description="Now CANCELED.")
    payout: Payout | None = strawberry.field(description="With the amount available again.")
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()

    @classmethod
    def of(
        cls, result: tuple[m.Payout, m.BankTransfer] | None, errors: list[UserError], cmid: str | None
    ) -> Self:
        if result is None:
            return cls(bank_transfer=None, payout=None, user_errors=errors, client_mutation_id=cmid)
        payout, transfer = result
        return cls(
            bank_transfer=BankTransfer.of(transfer, payout.currency_code),
            payout=Payout.of(payout),
            user_errors=errors,
            client_mutation_id=cmid,
        )


@strawberry.input(description="The input of setPayoutPreference.")
class SetPayoutPreferenceInput:
    mode: PayoutMode = strawberry.field(description="What happens to each new payout from now on.")
    wallet_percent: int | None = strawberry.field(
        default=None, description="For SPLIT only: the whole percent (1-99) of each payout to the wallet."
    )
    period_type: PayoutPeriodType | None = strawberry.field(
        default=None, description="WEEKLY or MONTHLY payouts; unchanged when left out."
    )
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type(description="The result of setPayoutPreference.")
class SetPayoutPreferencePayload:
    payout_preference: PayoutPreference | None = strawberry.field(
        description="The preference as it now stands; null when refused."
    )
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()

    @classmethod
    def of(cls, result: m.Connection | None, errors: list[UserError], cmid: str | None) -> Self:
        return cls(
            payout_preference=PayoutPreference.of(result) if result else None,
            user_errors=errors,
            client_mutation_id=cmid,
        )


@strawberry.input(description="A Sub-Org transaction refunded or charged back: the reversal to record.")
class ClawbackInput:
    transaction_external_id: str = strawberry.field(
        description="The externalId of the Sub-Org transaction it reverses, recorded for this connection."
    )
    external_id: str = strawberry.field(
        description="The reversal's own id where it comes from (the refund's or the dispute's): 1 to 100 printable "
        "characters. A reversal is recorded once per connection: the same externalId again is ignored and reported "
        "in `duplicates`."
    )
    kind: ClawbackKind = strawberry.field(description="A REFUND or a CHARGEBACK.")
    amount: str | None = strawberry.field(
        default=None,
        description="The Partner's share reversed: a positive decimal string in the connection's currency, at most "
        "what is left of the transaction's partnerAmount not yet clawed back; default: all of what is left.",
    )
    reason: str | None = strawberry.field(
        default=None, description="Up to 300 characters on one line, shown to the Partner."
    )


@strawberry.input(description="The input of recordClawbacks.")
class RecordClawbacksInput:
    connection_id: strawberry.ID = strawberry.field(description="The RevampdConnection whose Sub-Org transactions "
                                                    "were reversed.")
    clawbacks: list[ClawbackInput] = strawberry.field(
        description=f"At most {clawback_service.MAX_PER_CALL:,}. Every bad field of every clawback is reported at once, "
        "e.g. [\"input\", \"clawbacks\", \"3\", \"amount\"], and then none is recorded."
    )
    idempotency_key: str | None = idempotency_key_field()
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type(description="The result of recordClawbacks.")
class RecordClawbacksPayload:
    clawbacks: list[Clawback] = strawberry.field(
        description="The clawbacks recorded, in the order sent, each with what it took and what is outstanding."
    )
    duplicates: list[str] = strawberry.field(
        description="The externalIds ignored, in the order sent: recorded before, or sent twice (the first is "
        "recorded). clawbacks and duplicates together account for every clawback sent."
    )
    payouts: list[Payout] = strawberry.field(
        description="The payouts the clawbacks took money from, as they now stand (oldest first)."
    )
    revampd_connection = changed_connection(lambda p: p.connection_id, "clawbacks")
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()
    connection_id: strawberry.Private[int | None] = None

    @classmethod
    def of(cls, result: clawback_service.Recorded | None, errors: list[UserError], cmid: str | None) -> Self:
        return cls(
            clawbacks=[Clawback.of(c) for c in result.clawbacks] if result else [],
            duplicates=list(result.duplicates) if result else [],
            payouts=[Payout.of(p) for p in result.payouts] if result else [],
            user_errors=errors,
            client_mutation_id=cmid,
            connection_id=result.connection.id if result else None,
        )
