"""Deterministic demo data: three Partners with a year of Revampd history.

`seed_demo(session, today)` loads everything in one transaction and changes
nothing (returning False) when the demo Partners or users already exist. The
same `today` always gives the same rows: randomness comes from fixed-seed
generators and every timestamp is relative to `today` at 00:00 UTC ("now"),
never the wall clock, and never later than "now".
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db import events as db_events
from db.models import (
    AddOn,
    AddOnProduct,
    AffiliatePayout,
    BankAccount,
    BankTransfer,
    BankTransferEvent,
    CardCharge,
    Connection,
    Invoice,
    InvoiceLineItem,
    InvoicePayment,
    LedgerTransfer,
    Partner,
    Payout,
    PayoutDisposition,
    Plan,
    SubOrgTransaction,
    Subscription,
    Ticket,
    TicketMessage,
    Usage,
    User,
)
from db.states import (
    AccountKind,
    CardChargeStatus,
    ClawbackKind,
    CreditNoteKind,
    CreditStatus,
    InvoiceStatus,
    InvoiceType,
    PaymentMethod,
    PayoutPeriodType,
    PayoutStatus,
    PlanChangeKind,
    RefundStatus,
    Role,
    SubOrgTransactionKind,
    SubscriptionStatus,
    TicketPriority,
    TicketStatus,
    TransferEventSource,
    TransferKind,
    TransferStatus,
)
from db.states import PayoutDisposition as DispositionKind
from services import clawbacks, money, payouts, refunds

# The demo moves money as the services do, through the one ledger.
from services import ledger as L
from services.bank_gateway import GatewayTransfer
from services.payments import RefundResult

SEED = 20260101
# Revampd's account each kind of wallet movement comes from (a payout credit: the payout's own).
_FUNDED_BY = {
    TransferKind.AFFILIATE_PAYOUT: AccountKind.AFFILIATE_PROGRAM,
    TransferKind.REVENUE_SHARE: AccountKind.REVENUE_SHARE,
    TransferKind.MANUAL_ADJUSTMENT: AccountKind.ADJUSTMENTS,
    TransferKind.REVERSAL: AccountKind.ADJUSTMENTS,
}
USD = "USD"
DAY, HOUR = timedelta(days=1), timedelta(hours=1)

DEMO_USERS: list[tuple[str, Role, str | None]] = [
    ("owner@northwind.example", Role.PARTNER_ADMIN, "Northwind Agency"),
    ("member@northwind.example", Role.PARTNER_MEMBER, "Northwind Agency"),
    ("owner@bluebird.example", Role.PARTNER_ADMIN, "Bluebird Digital"),
    ("owner@cedar.example", Role.PARTNER_ADMIN, "Cedar Collective"),
    ("support@revampd.example", Role.SUPPORT, None),
    ("support2@revampd.example", Role.SUPPORT, None),
    ("billing@revampd.example", Role.BILLING_ADMIN, None),
]
USER_NAMES = {
    "owner@northwind.example": "Maya Patel",
    "member@northwind.example": "Jonas Berg",
    "owner@bluebird.example": "Priya Raman",
    "owner@cedar.example": "Sam Okafor",
    "support@revampd.example": "Alex Rivera",
    "support2@revampd.example": "Jordan Lee",
    "billing@revampd.example": "Dana Whitfield",
}
# code, name, rank, monthly price, fee bps, max sub-orgs, campaigns, workflows, retired
PLANS = [
    ("STARTER", "Starter", 1, 4900, 350, 5, 20, 10, False),
    ("GROWTH", "Growth", 2, 14900, 250, 10, 100, 50, False),
    ("SCALE", "Scale", 3, 39900, 150, 50, 500, 250, False),
    ("ENTERPRISE", "Enterprise", 4, 99900, 100, None, None, None, False),
    ("LEGACY", "Legacy Pro", 5, 29900, 200, 25, 250, 100, True),
]
# code, name, description, monthly price, max quantity, is phone number
ADDON_PRODUCTS = [
    ("LOCAL_NUMBER", "Local phone number", "A local number for calls and SMS.", 300, 100, True),
    ("TOLL_FREE_NUMBER", "Toll-free phone number", "An 8XX number for calls and SMS.", 800, 50, True),
]


@dataclass
class _Pay:
    """A planned invoice payment; WALLET ones also become INVOICE_PAYMENT entries."""

    invoice: Invoice
    at: datetime
    amount: int
    method: PaymentMethod
    partial: bool = False
    row: InvoicePayment | None = None


@dataclass
class _Entry:
    """A planned wallet movement other than a payment; `ref` is what it came from
    (an AffiliatePayout is marked APPLIED with the transfer that credits it)."""

    at: datetime
    amount: int
    kind: TransferKind
    memo: str
    ref: Payout | AffiliatePayout | None = None
    by: int | None = None
    hold: int = 0  # credit that invoice payments may not spend (about to be reversed)
    transfer: LedgerTransfer | None = None  # once posted


@dataclass
class _Disposal:
    """A planned disposition of a payout: its wallet part (an _Entry) and its bank transfer."""

    payout: Payout
    at: datetime
    credit: _Entry | None
    bank: BankTransfer | None
    events: list[tuple[TransferStatus, datetime]]  # the bank transfer's later statuses and when
    by: int


async def seed_demo(session: AsyncSession, today: date) -> bool:
    """Load demo data; returns False (and changes nothing) if the demo partners already exist.

    Also returns False if one of the DEMO_USERS e-mails is taken. Plans and add-on
    products that already exist (by code) are reused rather than duplicated.
    """
    async with session.begin():
        names = [spec.name for spec in PARTNERS]
        emails = [email for email, _, _ in DEMO_USERS]
        if await session.scalar(select(Partner.id).where(Partner.name.in_(names)).limit(1)):
            return False
        if await session.scalar(select(User.id).where(User.email.in_(emails)).limit(1)):
            return False
        now = datetime.combine(today, time(), UTC)
        session.sync_session.info[db_events.NOW] = now  # the demo's history happened "today", not when it was seeded
        plans = await _get_or_create(session, Plan, [
            {"code": c, "name": n, "rank": r, "currency_code": USD, "monthly_price": p,
             "transaction_fee_bps": f, "max_sub_orgs": s, "max_campaigns": ca,
             "max_workflows": w, "retired": ret}
            for c, n, r, p, f, s, ca, w, ret in PLANS])
        products = await _get_or_create(session, AddOnProduct, [
            {"code": c, "name": n, "description": d, "currency_code": USD, "monthly_price": p,
             "max_quantity": m, "is_phone_number": ph, "retired": False}
            for c, n, d, p, m, ph in ADDON_PRODUCTS])
        start = _month(now, -11) - 20 * DAY
        partners = {s.name: Partner(name=s.name, created_at=start, address=ADDRESSES[s.name][0],
                                    tax_id=ADDRESSES[s.name][1]) for s in PARTNERS}
        session.add_all(partners.values())
        await session.flush()
        users = {email: User(email=email, name=USER_NAMES[email], role=role,
                             partner_id=partners[p].id if p else None,
                             created_at=start + (i + 1) * HOUR)
                 for i, (email, role, p) in enumerate(DEMO_USERS)}
        session.add_all(users.values())
        await session.flush()
        for i, spec in enumerate(PARTNERS):
            seeder = _PartnerSeeder(session, spec, random.Random(SEED + i), now, plans, products,
                                    partners[spec.name], users)
            await seeder.run()
            if i < 2:  # Northwind and Bluebird have credit notes and clawbacks
                await seeder.refund_one()
                await seeder.claw_back_one(ClawbackKind.REFUND if i == 0 else ClawbackKind.CHARGEBACK)
    return True


async def _get_or_create(session: AsyncSession, model: type[Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {r.code: r for r in await session.scalars(select(model))}
    for row in rows:
        if row["code"] not in found:
            found[row["code"]] = model(**row)
            session.add(found[row["code"]])
    await session.flush()
    return found


def _month(now: datetime, offset: int) -> datetime:
    """First instant of the month `offset` months from the one containing `now`."""
    year, month = divmod(now.year * 12 + now.month - 1 + offset, 12)
    return datetime(year, month + 1, 1, tzinfo=UTC)


class _PartnerSeeder:
    def __init__(self, session: AsyncSession, spec: PartnerSpec, rng: random.Random,
                 now: datetime, plans: dict[str, Plan], products: dict[str, AddOnProduct], partner: Partner,
                 users: dict[str, User]) -> None:
        self.session, self.spec, self.rng, self.now = session, spec, rng, now
        self.plans, self.products, self.partner = plans, products, partner
        self.admin = next(u for u in users.values() if u.partner_id == partner.id
                          and u.role == Role.PARTNER_ADMIN)
        self.member = next((u for u in users.values() if u.partner_id == partner.id
                            and u.role == Role.PARTNER_MEMBER), self.admin)
        self.support = [u for u in users.values() if u.role == Role.SUPPORT]
        self.billing = next(u for u in users.values() if u.role == Role.BILLING_ADMIN)
        self.invoices: list[tuple[Invoice, list[InvoiceLineItem], list[_Pay]]] = []
        self.timeline: list[_Pay | _Entry] = []
        self.subjects: dict[str, Invoice | Payout] = {}  # what the linked tickets are about
        self.rows: list[AffiliatePayout | Payout] = []
        self.transactions: list[tuple[SubOrgTransaction, Payout | None]] = []
        self.disposals: list[_Disposal] = []
        self.external_ids = 0

    def past(self, at: datetime) -> datetime:
        return min(at, self.now)

    def month(self, offset: int) -> datetime:
        return _month(self.now, offset)

    def hours(self, low: int, high: int) -> timedelta:
        return self.rng.randint(low, high) * HOUR

    async def run(self) -> None:
        await self._base()
        self._plan_invoices()
        self._plan_credits()
        self._plan_affiliate_payouts()
        self._plan_payouts()
        ledger = self._settle()
        await self._write_invoices()
        await self._write_rows()
        await self._write_ledger(ledger)
        await self._write_disposals()
        await self._write_tickets()
        await self.session.flush()

    # -- connection, subscription, usage, add-ons, bank accounts ------------------------
    async def _base(self) -> None:
        spec, created = self.spec, self.partner.created_at + 2 * HOUR
        self.conn = Connection(partner_id=self.partner.id, currency_code=USD, ticket_prefix="RVP",
                               next_ticket_number=1001, created_at=created)
        self.session.add(self.conn)
        await self.session.flush()
        cid, m0, m1 = self.conn.id, self.month(0), self.month(1)
        pending = self.plans[spec.pending_downgrade_to] if spec.pending_downgrade_to else None
        sub_orgs, campaigns, workflows = spec.usage
        self.session.add_all([
            Usage(connection_id=cid, sub_orgs=sub_orgs, campaigns=campaigns, workflows=workflows,
                  updated_at=self.now - 2 * HOUR),
            Subscription(
                connection_id=cid, plan_id=self.plans[spec.plan].id, status=SubscriptionStatus.ACTIVE,
                current_period_start=m0, current_period_end=m1, created_at=created,
                pending_kind=PlanChangeKind.DOWNGRADE if pending else None,
                pending_plan_id=pending.id if pending else None,
                pending_effective_at=m1 if pending else None,
                pending_requested_at=max(m0, self.now - 5 * DAY) if pending else None),
            *(AddOn(connection_id=cid, product_id=self.products[code].id, quantity=qty,
                    created_at=created, updated_at=created) for code, qty in spec.addons),
        ])
        self.banks = [
            BankAccount(connection_id=cid, holder_name=f"{spec.name} LLC", bank_name=bank,
                        routing_number=routing, account_last4=last4, is_default=i == 0,
                        account_token=f"btok_sandbox_ok_{spec.code.lower()}{i + 1}",
                        created_at=created + (10 + 30 * i) * DAY)
            for i, (bank, routing, last4) in enumerate(spec.banks)]
        self.session.add_all(self.banks)
        await self.session.flush()

    # -- invoices -------------------------------------------------------------------
    def _plan_invoices(self) -> None:
        spec, plan = self.spec, self.plans[self.spec.plan]
        for k in range(-11, 1):
            start, end = self.month(k), self.month(k + 1)
            label = f"{start:%b %Y}"
            status = InvoiceStatus.OPEN if k == 0 or (k == -1 and spec.overdue_last_month) else InvoiceStatus.PAID
            self._invoice(InvoiceType.SUBSCRIPTION, [self._line(f"{plan.name} plan, {label}", 1,
                                                      plan.monthly_price, plan_id=plan.id)],
                          start, status, period=(start, end),
                          partial=spec.partial_payment_now if k == 0 else 0)
            if spec.addons:
                lines = [self._line(f"{self.products[c].name}, {label}", qty,
                                    self.products[c].monthly_price,
                                    addon_product_id=self.products[c].id) for c, qty in spec.addons]
                self._invoice(InvoiceType.ADD_ON, lines, self.past(start + HOUR), InvoiceStatus.OPEN if k == 0 else InvoiceStatus.PAID,
                              period=(start, end))
        # Next month's subscription invoice, drafted on the plan the period will run on.
        nxt = self.plans[spec.pending_downgrade_to or spec.plan]
        start, end = self.month(1), self.month(2)
        self._invoice(InvoiceType.SUBSCRIPTION, [self._line(f"{nxt.name} plan, {start:%b %Y}", 1,
                                                  nxt.monthly_price, plan_id=nxt.id)],
                      self.now, InvoiceStatus.DRAFT, period=(start, end), due=start + 14 * DAY)
        for desc, qty, unit, days_ago, status, method, partial in spec.one_time:
            issued = self.now - days_ago * DAY + self.hours(9, 17)
            inv = self._invoice(InvoiceType.ONE_TIME, [self._line(desc, qty, unit)], issued, status,
                                method=method, partial=partial)
            if status == InvoiceStatus.VOID:
                inv.voided_at = issued + 22 * HOUR
                self.subjects["invoice"] = inv

    def _line(self, description: str, qty: int, unit: int, **ref: int) -> InvoiceLineItem:
        return InvoiceLineItem(description=description, quantity=qty, unit_amount=unit,
                               amount=qty * unit, **ref)

    def _invoice(self, type_: InvoiceType, lines: list[InvoiceLineItem], issued: datetime, status: InvoiceStatus,
                 *, period: tuple[datetime, datetime] | None = None, due: datetime | None = None,
                 method: PaymentMethod | None = None, partial: int = 0) -> Invoice:
        inv = Invoice(connection_id=self.conn.id, type=type_, status=status, currency_code=USD,
                      total=sum(line.amount for line in lines), amount_paid=0, issued_at=issued,
                      due_at=due or issued + 14 * DAY, period_start=period and period[0],
                      period_end=period and period[1])
        pays = []
        if status == InvoiceStatus.PAID:
            method = method or (PaymentMethod.WALLET if self.rng.random() < self.spec.wallet_share else PaymentMethod.CARD)
            delay = DAY if method == PaymentMethod.CARD else self.rng.randint(1, 6) * DAY
            pays.append(_Pay(inv, self.past(issued + delay + self.hours(1, 9)), inv.total, method))
        elif partial:
            pays.append(_Pay(inv, self.past(issued + 2 * DAY + 3 * HOUR), partial, PaymentMethod.WALLET, True))
        self.invoices.append((inv, lines, pays))
        self.timeline.extend(p for p in pays if p.method == PaymentMethod.WALLET)
        return inv

    async def _write_invoices(self) -> None:
        self.invoices.sort(key=lambda item: item[0].issued_at)
        # Numbered from the connection's counter, in the order they were issued, as the services do.
        self.conn.invoice_prefix = f"INV-{self.spec.code}"
        for n, (inv, _, _) in enumerate(self.invoices, 1):
            inv.number = f"{self.conn.invoice_prefix}-{n:04d}"
            inv.opened_at = inv.issued_at if inv.status != InvoiceStatus.DRAFT else None
            inv.uncollectible_at = self.past(inv.issued_at + 30 * DAY) if inv.status == InvoiceStatus.UNCOLLECTIBLE else None
        self.conn.next_invoice_number = len(self.invoices) + 1
        for inv, lines, _ in self.invoices:
            if inv.status == InvoiceStatus.VOID:
                twin = next((i for i, ls, _ in self.invoices if i is not inv and i.type == inv.type
                             and ls[0].description == lines[0].description), None)
                inv.void_reason = f"Duplicate of {twin.number}" if twin else "Issued in error"
        self.session.add_all(inv for inv, _, _ in self.invoices)
        await self.session.flush()
        for inv, lines, _ in self.invoices:
            for line in lines:
                line.invoice_id = inv.id
            self.session.add_all(lines)
        await self.session.flush()

    # -- wallet credits ---------------------------------------------------------------
    def _plan_credits(self) -> None:
        spec, low, high = self.spec, *self.spec.revenue_share
        for k in range(-11, 1):
            at = self.month(k) + 4 * DAY + 9 * HOUR
            if at <= self.now:
                self.timeline.append(_Entry(
                    at, self.rng.randint(low, high), TransferKind.REVENUE_SHARE,
                    f"Revenue share, {self.month(k - 1):%B %Y}"))
        for days_ago, amount, memo, reversal_memo in spec.adjustments:
            at, held = self.now - days_ago * DAY + 11 * HOUR, amount if reversal_memo else 0
            adjustment = _Entry(at, amount, TransferKind.MANUAL_ADJUSTMENT, memo, by=self.billing.id, hold=held)
            self.timeline.append(adjustment)
            if reversal_memo:
                self.timeline.append(_Entry(at + HOUR, -amount, TransferKind.REVERSAL, reversal_memo,
                                            by=self.billing.id, hold=-held))

    def _settle(self) -> list[_Pay | _Entry]:
        """Replay the timeline: wallet payments the balance cannot cover go to the card."""
        ledger: list[_Pay | _Entry] = []
        balance = held = 0
        for item in sorted(self.timeline, key=lambda i: i.at):
            if isinstance(item, _Pay):
                if item.amount > balance - held:
                    if not item.partial:
                        item.method = PaymentMethod.CARD
                        continue
                    item.amount = balance - held
                    if item.amount <= 0:
                        continue
                balance -= item.amount
            else:
                balance, held = balance + item.amount, held + item.hold
                assert balance >= 0, item
            ledger.append(item)
        for inv, _, pays in self.invoices:
            pays[:] = [p for p in pays if p.amount > 0]
            inv.amount_paid = sum(p.amount for p in pays)
            inv.payment_method = pays[-1].method if pays else None
            inv.paid_at = pays[-1].at if inv.status == InvoiceStatus.PAID else None
        return ledger

    async def _write_ledger(self, ledger: list[_Pay | _Entry]) -> None:
        """Post every movement through the ledger, in time order, as the services do."""
        wallet = await L.wallet_account(self.session, self.conn, self.conn.created_at)
        events: list[tuple[datetime, int, Any]] = []
        for inv, _, pays in self.invoices:
            if inv.status != InvoiceStatus.DRAFT:
                events.append((inv.issued_at, 0, ("issue", inv)))
            events += [(p.at, 1, p) for p in pays if p.method != PaymentMethod.WALLET]
            if inv.status in (InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE):
                events.append((inv.voided_at or inv.uncollectible_at or inv.issued_at, 2, ("close", inv)))
        events += [(item.at, 1, item) for item in ledger]
        for n, (at, _, item) in enumerate(sorted(events, key=lambda e: (e[0], e[1]))):
            if isinstance(item, tuple):
                what, inv = item
                receivable = await L.receivable_account(self.session, inv, at)
                revenue = await L.system_account(self.session, AccountKind.REVAMPD_REVENUE, inv.currency_code, self.conn.id, at)
                if what == "issue":
                    await L.post(self.session, [L.Transfer(
                        f"invoice:{inv.id}:issued", TransferKind.INVOICE_ISSUED, receivable.id, revenue.id, inv.total,
                        memo=f"Invoice {inv.number}", invoice_id=inv.id)], now=at)
                elif receivable.balance < 0:
                    kind = TransferKind.INVOICE_VOID if inv.status == InvoiceStatus.VOID else TransferKind.INVOICE_UNCOLLECTIBLE
                    await L.post(self.session, [L.Transfer(
                        f"invoice:{inv.id}:closed", kind, revenue.id, receivable.id, -receivable.balance,
                        memo=f"Invoice {inv.number} {inv.status.lower()}", invoice_id=inv.id)], now=at)
            elif isinstance(item, _Pay):
                inv = item.invoice
                receivable = await L.receivable_account(self.session, inv, at)
                source = wallet if item.method == PaymentMethod.WALLET else await L.system_account(
                    self.session, AccountKind.CARD_PROCESSOR, inv.currency_code, self.conn.id, at)
                by = self.admin.id if item.method == PaymentMethod.WALLET else None
                [t] = await L.post(self.session, [L.Transfer(
                    f"seed:{self.conn.id}:{n}", TransferKind.INVOICE_PAYMENT, source.id, receivable.id, item.amount,
                    memo=f"Payment of {inv.number}", invoice_id=inv.id, created_by_id=by)], now=at)
                item.row = InvoicePayment(invoice_id=inv.id, amount=item.amount, method=item.method,
                                          created_by_id=by, created_at=at, transfer_id=t.id)
                self.session.add(item.row)
            else:
                if item.kind == TransferKind.PAYOUT_CREDIT:
                    assert isinstance(item.ref, Payout)
                    system = await L.payout_account(self.session, item.ref)
                else:
                    system = await L.system_account(self.session, _FUNDED_BY[item.kind], USD, self.conn.id, at)
                debit, credit = (system, wallet) if item.amount > 0 else (wallet, system)
                ref = item.ref
                [t] = await L.post(self.session, [L.Transfer(
                    f"seed:{self.conn.id}:{n}", item.kind, debit.id, credit.id, abs(item.amount), memo=item.memo,
                    created_by_id=item.by,
                    affiliate_payout_id=ref.id if isinstance(ref, AffiliatePayout) else None,
                    payout_id=ref.id if isinstance(ref, Payout) else None)], now=at)
                if isinstance(ref, AffiliatePayout):  # PENDING -> APPLIED, as the service does
                    ref.credit_status, ref.applied_at, ref.transfer_id = CreditStatus.APPLIED, at, t.id
                item.transfer = t
        await self.session.flush()
        # Each card payment was a charge the (sandbox) processor made, which it can refund.
        self.session.add_all(
            CardCharge(invoice_id=p.invoice_id, amount=p.amount, currency_code=USD, card_token="tok_visa_4242",
                       processor_key=f"seed:card_charge:{p.id}", status=CardChargeStatus.SUCCEEDED,
                       charge_id=f"ch_sandbox_seed{p.id:08d}", payment_id=p.id, created_at=p.created_at,
                       settled_at=p.created_at)
            for p in await self.session.scalars(
                select(InvoicePayment).join(Invoice, Invoice.id == InvoicePayment.invoice_id)
                .where(Invoice.connection_id == self.conn.id, InvoicePayment.method == PaymentMethod.CARD)))
        await self.session.flush()

    async def refund_one(self) -> None:
        """Revampd billing refunded part of the newest one-time invoice paid by card and of the newest
        invoice paid from the wallet: two credit notes, the card refund made by the sandbox processor."""
        for method, reason in ((PaymentMethod.CARD, "One session of the service was not delivered"),
                               (PaymentMethod.WALLET, "Billed for a day the service was down")):
            inv = max((inv for inv, _, pays in self.invoices if inv.status == InvoiceStatus.PAID
                       and pays and pays[-1].method == method), key=lambda inv: (inv.issued_at, inv.id), default=None)
            if inv is None:
                continue
            credited = await refunds.credit(
                self.session, self.conn, inv, CreditNoteKind.REFUND, refund_amount=inv.total // 10, due_reduced=0,
                reason=reason, by=self.billing.id, now=self.now)
            for r in credited.refunds:
                if r.status == RefundStatus.PENDING:
                    await refunds.settle(self.session, r.id, RefundResult(True, f"re_sandbox_seed{r.id:08d}"), self.now)

    async def claw_back_one(self, kind: ClawbackKind) -> None:
        """A Sub-Org transaction of the newest payout with money still available was refunded (or
        charged back) after it was paid out: its share taken back from that payout, nothing left
        outstanding (the next payout the tests close pays in full)."""
        payout = await self.session.scalar(select(Payout).where(Payout.connection_id == self.conn.id,
                                                                Payout.available_amount > 0)
                                           .order_by(Payout.period_end.desc()).limit(1))
        assert payout is not None
        txn = await self.session.scalar(select(SubOrgTransaction).where(SubOrgTransaction.payout_id == payout.id)
                                        .order_by(SubOrgTransaction.partner_amount).limit(1))
        assert txn is not None
        amount = min(txn.partner_amount, payout.available_amount)
        reason = "Refunded to the Sub-Org at its request" if kind == ClawbackKind.REFUND else "Charged back by the card holder's bank"
        await clawbacks.record(self.session, None, self.conn.id, [clawbacks.ClawbackInput(
            txn.external_id, f"re_{txn.external_id}", kind.value, str(money.to_decimal(amount, USD)), reason)],
            now=self.now)

    # -- affiliate payouts and sub-org payouts ------------------------------------------
    def _plan_affiliate_payouts(self) -> None:
        if not self.spec.affiliate_scale:
            return
        monday = self.now - self.now.weekday() * DAY
        periods = [(PayoutPeriodType.WEEKLY, monday - 7 * j * DAY, monday - 7 * (j - 1) * DAY, j <= 2, 2500, 9000)
                   for j in range(12, 0, -1)]
        periods += [(PayoutPeriodType.MONTHLY, self.month(k), self.month(k + 1), k == -1, 12000, 38000)
                    for k in range(-11, 0)]
        for period_type, start, end, pending, low, high in sorted(periods, key=lambda p: p[2]):
            created = self.past(end + 6 * HOUR)
            ap = AffiliatePayout(
                connection_id=self.conn.id, period_type=period_type, period_start=start,
                period_end=end, amount=int(self.rng.randint(low, high) * self.spec.affiliate_scale),
                credit_status=CreditStatus.PENDING, created_at=created)
            self.rows.append(ap)
            if not pending:
                self.timeline.append(_Entry(
                    created + 2 * DAY, ap.amount, TransferKind.AFFILIATE_PAYOUT,
                    f"Affiliate payout ({period_type.lower()}, {start:%b %d} to {end - DAY:%b %d, %Y})",
                    ap))

    def _plan_payouts(self) -> None:
        states = self.spec.payout_states
        for k in range(-11, 0):
            start, end, idx = self.month(k), self.month(k + 1), -1 - k
            txs = [self._transaction(start, end) for _ in range(self.rng.randint(3, 8))]
            amount, created = sum(t.partner_amount for t in txs), self.past(end + 2 * HOUR)
            payout = Payout(connection_id=self.conn.id, period_type=PayoutPeriodType.MONTHLY, period_start=start, period_end=end,
                            currency_code=USD, gross_amount=sum(t.gross_amount for t in txs),
                            fee_amount=sum(t.fee_amount for t in txs), amount=amount, available_amount=amount,
                            wallet_amount=0, bank_in_flight_amount=0, bank_paid_amount=0, status=PayoutStatus.AVAILABLE,
                            created_at=created, updated_at=created)
            self.rows.append(payout)
            self.transactions += [(t, payout) for t in txs]
            default = "TRANSFER" if self.banks and idx % 2 == 0 else "CREDIT"
            self._dispose(payout, states[idx] if idx < len(states) else default)
        for _ in range(self.rng.randint(2, 4)):  # this month's, not paid out yet
            self.transactions.append((self._transaction(self.month(0), self.now), None))

    def _transaction(self, start: datetime, end: datetime) -> SubOrgTransaction:
        """A Sub-Org charge; the Partner's share is the gross less the plan's fee, as services.earnings takes it."""
        rng, name = self.rng, self.rng.choice(self.spec.sub_orgs)
        if rng.random() < 0.5:
            kind, gross = SubOrgTransactionKind.SUBSCRIPTION, rng.choice((9700, 14900, 29700, 49700))
            description = f"{rng.choice(('Essentials', 'Pro', 'Premium'))} plan subscription"
        else:
            kind, gross = SubOrgTransactionKind.USAGE, rng.randint(500, 8000)
            description = rng.choice(("SMS usage", "Voice minutes", "Email sends", "AI assistant usage"))
        seconds = int((end - start).total_seconds() * rng.random())
        bps = self.plans[self.spec.plan].transaction_fee_bps
        fee = money.basis_points_of(gross, bps)
        self.external_ids += 1
        at = start + timedelta(seconds=seconds)
        return SubOrgTransaction(connection_id=self.conn.id, external_id=f"txn_{self.spec.code.lower()}_{self.external_ids:05d}",
                                 sub_org_name=name, kind=kind, description=description, gross_amount=gross,
                                 fee_bps=bps, fee_amount=fee, partner_amount=gross - fee, occurred_at=at,
                                 recorded_at=self.past(at + HOUR))

    def _dispose(self, p: Payout, state: str) -> None:
        """Apply a disposition state: CREDIT, TRANSFER, SPLIT, PROCESSING (in transit),
        PROCESSING_SPLIT (bank part pending), FAILED (back to available), TRANSFER_RETRY,
        PARTIAL (part credited, the rest available), CANCELED (a transfer canceled while PENDING)."""
        if state == "AVAILABLE":
            return
        lag = {"PROCESSING": 2, "PROCESSING_SPLIT": 1, "FAILED": 12, "PARTIAL": 20}.get(state)
        at = (self.past(max(p.created_at + DAY, self.now - lag * DAY)) if lag else
              self.past(p.created_at + self.rng.randint(1, 5) * DAY + self.hours(8, 17)))
        wallet = (p.amount if state == "CREDIT" else
                  max(1, min(p.amount - 1, p.amount * self.rng.randint(3, 7) // 10))
                  if "SPLIT" in state or state == "PARTIAL" else 0)
        credit = None
        if wallet:
            credit = _Entry(at, wallet, TransferKind.PAYOUT_CREDIT, f"Payout for {p.period_start:%B %Y} credited to wallet",
                            p, self.admin.id)
            self.timeline.append(credit)
        bank, plan = (0 if state == "PARTIAL" else p.amount - wallet), []
        default, other = (self.banks[0], self.banks[-1]) if self.banks else (None, None)
        if state in ("TRANSFER", "SPLIT"):
            plan = [(default, at, [(TransferStatus.IN_TRANSIT, at + DAY), (TransferStatus.PAID, at + 2 * DAY)])]
        elif state == "PROCESSING":
            plan = [(default, at, [(TransferStatus.IN_TRANSIT, at + DAY)])]
        elif state == "PROCESSING_SPLIT":
            plan = [(default, at, [])]
        elif state in ("FAILED", "TRANSFER_RETRY"):
            plan = [(other, at, [(TransferStatus.IN_TRANSIT, at + DAY), (TransferStatus.FAILED, at + 3 * DAY)])]
            if state == "TRANSFER_RETRY":
                plan.append((default, at + 4 * DAY, [(TransferStatus.IN_TRANSIT, at + 5 * DAY), (TransferStatus.PAID, at + 6 * DAY)]))
        elif state == "CANCELED":
            plan = [(default, at, [(TransferStatus.CANCELED, at + 2 * HOUR)])]
        if credit and not plan:
            self.disposals.append(_Disposal(p, at, credit, None, [], self.admin.id))
        for account, created, events in plan:
            assert account is not None, "a bank transfer needs a bank account"
            events = [(status, self.past(when)) for status, when in events if when <= self.now]
            transfer = BankTransfer(bank_account_id=account.id, amount=bank, status=TransferStatus.PENDING,
                                    created_by_id=self.admin.id, created_at=created, updated_at=created)
            self.disposals.append(_Disposal(p, created, credit, transfer, events, self.admin.id))
            credit = None
        if state == "FAILED":
            self.subjects["payout"] = p
        # The payout's times, for the tickets that talk about it (its parts follow the ledger).
        last = max((when for d in self.disposals if d.payout is p for _, when in d.events), default=at)
        p.updated_at = max(p.updated_at, at, last)

    async def _write_rows(self) -> None:
        self.rows.sort(key=lambda r: (isinstance(r, Payout), r.period_end))
        self.session.add_all(self.rows)
        await self.session.flush()
        for tx, payout in self.transactions:
            tx.payout_id = payout.id if payout else None
        self.session.add_all(t for t, _ in sorted(self.transactions, key=lambda x: x[0].occurred_at))
        await self.session.flush()
        # Each payout's account, funded from Sub-Org earnings when it is made (services.earnings).
        earnings = await L.system_account(self.session, AccountKind.SUB_ORG_EARNINGS, USD, self.conn.id, self.conn.created_at)
        for p in self.rows:
            if isinstance(p, Payout):
                own = await L.payout_account(self.session, p, p.created_at)
                await L.post(self.session, [L.Transfer(
                    f"payout:{p.id}:funding", TransferKind.PAYOUT_FUNDING, earnings.id, own.id, p.amount,
                    memo=f"Sub-Org earnings, {p.period_start:%B %Y}", payout_id=p.id)], now=p.created_at)

    async def _write_disposals(self) -> None:
        """Bank transfers reserve their amount on the payout's account and are posted when PAID
        or voided when FAILED, as services.payouts does; each disposal is recorded."""
        bank_out = await L.system_account(self.session, AccountKind.BANK_OUT, USD, self.conn.id, self.conn.created_at)
        for d in sorted(self.disposals, key=lambda d: d.at):
            p, b = d.payout, d.bank
            own = await L.payout_account(self.session, p)
            if b is not None:
                b.payout_id = p.id
                [reserve] = await L.post(self.session, [L.Transfer(
                    f"seed:bank_transfer:{p.id}:{d.at.timestamp():.0f}", TransferKind.BANK_TRANSFER, own.id, bank_out.id,
                    b.amount, memo=f"Bank transfer of the payout for {p.period_start:%B %Y}", payout_id=p.id,
                    created_by_id=d.by, pending=True)], now=d.at)
                b.pending_transfer_id, b.submitted_at = reserve.id, d.at
                self.session.add(b)
                await self.session.flush()
                b.gateway_ref = f"sbt_sandbox_ok_bt{b.id}"
                for status, when in d.events:
                    failure = ("no_account", "Returned by the receiving bank: R03 no account/unable to locate "
                               "account.") if status == TransferStatus.FAILED else (None, None)
                    payouts.stamp(b, GatewayTransfer(b.gateway_ref, status, *failure), when, when)
                    self.session.add(BankTransferEvent(
                        event_id=f"evt_seed_{b.id}_{status.lower()}", bank_transfer_id=b.id,
                        source=TransferEventSource.PARTNER if status == TransferStatus.CANCELED else TransferEventSource.WEBHOOK,
                        status=status,
                        failure_code=b.failure_code if status == TransferStatus.FAILED else None,
                        failure_reason=b.failure_reason if status == TransferStatus.FAILED else None, applied=True,
                        occurred_at=when, received_at=when))
                    if status in payouts.FINAL:
                        await L.post(self.session, [L.Transfer(
                            f"bank_transfer:{b.id}:{'paid' if status == TransferStatus.PAID else 'void'}", TransferKind.BANK_TRANSFER,
                            own.id, bank_out.id, b.amount, memo=reserve.memo, payout_id=p.id,
                            resolves=reserve.id, void=status != TransferStatus.PAID)], now=when)
            credit = d.credit.transfer if d.credit else None
            wallet, bank = (credit.amount if credit else 0), (b.amount if b else 0)
            self.session.add(PayoutDisposition(
                payout_id=p.id, kind=DispositionKind.SPLIT if wallet and bank else DispositionKind.CREDIT if wallet
                else DispositionKind.TRANSFER,
                wallet_amount=wallet, bank_amount=bank, credit_transfer_id=credit.id if credit else None,
                bank_transfer_id=b.id if b else None, created_by_id=d.by, created_at=d.at))
        await self.session.flush()
        for row in self.rows:
            if isinstance(row, Payout):
                await payouts.refresh(self.session, row)

    # -- tickets ------------------------------------------------------------------------
    async def _write_tickets(self) -> None:
        specs = sorted(self.spec.tickets, key=lambda t: -t.days_ago)
        for number, spec in enumerate(specs, 1001):
            await self._ticket(number, spec)
        self.conn.next_ticket_number = 1001 + len(specs)

    async def _ticket(self, number: int, spec: TicketSpec) -> None:
        author = self.member if spec.by_member else self.admin
        agent = self.support[spec.support] if spec.support is not None else None
        assert agent or len(spec.messages) == 1, "only a one-message ticket can be unassigned"
        created = self.now - spec.days_ago * DAY - self.hours(0, 6)
        subject = self.subjects.get(spec.subject) if spec.subject else None
        if subject is not None:
            created = max(created, (subject.issued_at if isinstance(subject, Invoice)
                                    else subject.updated_at) + 2 * HOUR)
        times, at = [], created
        for _ in spec.messages:
            at += min(timedelta(minutes=self.rng.randint(20, 1200)), (self.now - created) / 8)
            times.append(at)
        replies = times[1::2]
        resolved = replies[-1] if spec.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED) else None
        closed = self.past(times[-1] + 2 * DAY) if spec.status == TicketStatus.CLOSED else None
        ticket = Ticket(
            connection_id=self.conn.id, number=number, title=spec.title,
            description=spec.description, status=spec.status, priority=spec.priority,
            assigned_to_id=agent.id if agent else None, created_by_id=author.id,
            subject_type=spec.subject if subject else None,
            subject_id=subject.id if subject else None, created_at=created,
            updated_at=max(times[-1], closed or resolved or times[-1]),
            last_activity_at=times[-1], resolved_at=resolved, closed_at=closed)
        self.session.add(ticket)
        await self.session.flush()
        messages = [TicketMessage(ticket_id=ticket.id, body=body, internal=False, created_at=t,
                                  author_id=(agent if i % 2 and agent else author).id)
                    for i, (body, t) in enumerate(zip(spec.messages, times, strict=False))]
        if spec.note:  # never the newest message, so it cannot show as activity
            assert agent and len(times) >= 2
            messages.insert(-1, TicketMessage(ticket_id=ticket.id, body=spec.note, internal=True,
                                              author_id=agent.id,
                                              created_at=times[-2] + (times[-1] - times[-2]) / 2))
        self.session.add_all(messages)


# -- the demo Partners ------------------------------------------------------------------
@dataclass(frozen=True)
class TicketSpec:
    title: str
    description: str
    priority: TicketPriority
    status: TicketStatus
    days_ago: float
    messages: tuple[str, ...]  # alternating partner user, support user, partner user, ...
    by_member: bool = False
    support: int | None = 0  # index of the assigned SUPPORT user; None = unassigned
    note: str | None = None  # internal note, placed just before the last message
    subject: str | None = None  # "invoice" (the voided one) or "payout" (the failed one)


@dataclass(frozen=True)
class PartnerSpec:
    name: str
    code: str  # invoice number prefix and token prefix
    plan: str
    usage: tuple[int, int, int]  # sub-orgs, campaigns, workflows
    addons: tuple[tuple[str, int], ...]
    pending_downgrade_to: str | None
    affiliate_scale: float  # 0 = not in the affiliate programme
    revenue_share: tuple[int, int]  # monthly range
    wallet_share: float  # share of paid invoices settled from the wallet when it can
    partial_payment_now: int  # wallet part-payment of this month's subscription invoice
    overdue_last_month: bool
    # description, quantity, unit amount, days ago, status, payment method, partial payment
    one_time: tuple[tuple[str, int, int, float, InvoiceStatus, PaymentMethod | None, int], ...]
    adjustments: tuple[tuple[int, int, str, str | None], ...]  # days ago, amount, memo, reversal
    sub_orgs: tuple[str, ...]
    banks: tuple[tuple[str, str, str], ...]  # bank, routing number, last 4; first is default
    payout_states: tuple[str, ...]  # newest first; older ones alternate TRANSFER/CREDIT
    tickets: tuple[TicketSpec, ...]


# Each demo Partner's postal address and tax ID, shown on its invoices.
ADDRESSES: dict[str, tuple[str | None, str | None]] = {
    "Northwind Agency": ("400 Market Street, Suite 1200\nSan Francisco, CA 94105\nUnited States", "US 94-1234567"),
    "Bluebird Digital": ("18 Harbour Road\nBoston, MA 02110\nUnited States", None),
    "Cedar Collective": (None, None),
}

PARTNERS = [
    PartnerSpec(
        name="Northwind Agency", code="NW", plan="SCALE", usage=(12, 140, 60),
        addons=(("LOCAL_NUMBER", 5), ("TOLL_FREE_NUMBER", 2)), pending_downgrade_to=None,
        affiliate_scale=1.0, revenue_share=(4000, 12000), wallet_share=0.6,
        partial_payment_now=20000, overdue_last_month=False,
        one_time=(("Onboarding services", 1, 150000, 340, InvoiceStatus.PAID, PaymentMethod.CARD, 0),
                  ("Data migration", 1, 60000, 240, InvoiceStatus.PAID, PaymentMethod.CARD, 0),
                  ("Data migration", 1, 60000, 239.5, InvoiceStatus.VOID, None, 0),
                  ("Custom integration workshop", 2, 45000, 6, InvoiceStatus.OPEN, None, 40000)),
        adjustments=((280, 5000, "Goodwill credit for the SMS outage", None),
                     (150, 2500, "Promotional credit",
                      "Reversal: promotional credit posted to the wrong connection")),
        sub_orgs=("Acme Dental", "Brightside Pediatrics", "Harbor View Realty", "Summit Fitness",
                  "Maple Street Bakery", "Lakeside Vet Clinic", "Ironwood Legal", "Riverbend Auto",
                  "Golden Spoon Catering", "Peak Physio", "Oak & Ash Interiors",
                  "Clearwater Plumbing"),
        banks=(("JPMorgan Chase Bank", "021000021", "4821"),
               ("Wells Fargo Bank", "121000248", "7730")),
        payout_states=("AVAILABLE", "PROCESSING", "SPLIT", "FAILED", "CREDIT", "TRANSFER",
                       "TRANSFER_RETRY"),
        tickets=(
            TicketSpec(
                "Second toll-free number for our support line",
                "We want a second toll-free number routed to our client support queue. "
                "Can we choose a vanity number?", TicketPriority.LOW, TicketStatus.CLOSED, 300,
                ("Ideally something ending in 4357 (HELP). Any chance?",
                 ("Vanity numbers depend on carrier inventory. I found 1-888-555-4357 and reserved "
                  "it for seven days; add a toll-free number from Add-Ons and it will be assigned."),
                 "Done, it shows up under our add-ons now. Thank you!",
                 "Glad it worked. I'll close this ticket; reply here if anything comes up.")),
            TicketSpec(
                "Charged twice for the data migration",
                "We received two invoices for the same data migration work. Please void the "
                "duplicate.", TicketPriority.HIGH, TicketStatus.RESOLVED, 240,
                ("Both are for $600.00 and reference the same migration project.",
                 ("Thanks for flagging this. One of them is indeed a duplicate; I've asked our "
                  "billing team to void it."),
                 "Appreciated. We'll pay the other one by card.",
                 "The duplicate is now void and shows nothing due. Sorry for the trouble!"),
                note="Internal: duplicate came from a manual re-run of the services invoice job; "
                     "billing voided it, no refund needed.", subject="invoice"),
            TicketSpec(
                "Campaign sends delayed by several hours",
                "Scheduled campaigns for three of our sub-orgs went out 3-4 hours late this "
                "morning. Clients are complaining about missed appointment reminders.",
                TicketPriority.HIGH, TicketStatus.CLOSED, 200,
                (("Affected: Acme Dental, Lakeside Vet Clinic and Peak Physio, all scheduled for "
                  "8:00 local time."),
                 ("Thanks for the details. One of our sending queues had a backlog this morning; "
                  "it has been drained and sends are back to normal."),
                 "Will the missed reminders be resent automatically?",
                 ("Nothing was dropped: every reminder was delivered, just late. We've added "
                  "capacity and alerting on that queue so this doesn't recur."),
                 "OK, thanks for the explanation.", "You're welcome. Closing this one out."),
                by_member=True, support=1),
            TicketSpec(
                "How is the transaction fee calculated on usage charges?",
                "Our last payout looks lower than we expected. How is the Revampd transaction "
                "fee applied to usage-based charges?", TicketPriority.MEDIUM, TicketStatus.RESOLVED, 90,
                ("For example, an $80.00 SMS bundle only shows a small partner share.",
                 ("Your plan's transaction fee (1.50% on Scale) comes off the gross amount first; "
                  "your share is then calculated on the rest according to your sub-org pricing. "
                  "Each payout lists every transaction with its gross and partner amounts.")),
                by_member=True,
                note="Internal: checked the payout against the ledger; amounts are correct."),
            TicketSpec(
                "Bank transfer for our payout failed",
                "The bank transfer for one of our payouts failed. We've checked our details "
                "with the bank; can you retry it?", TicketPriority.HIGH, TicketStatus.IN_PROGRESS, 8,
                ("The failure reason says the account could not be located.",
                 ("The receiving bank returned it (R03). The amount is back on the payout as "
                  "available, so nothing is lost: you can send it to your default account or "
                  "credit it to your wallet."),
                 "Which account is set as default? We want to be sure before retrying."),
                support=1, subject="payout",
                note="Internal: processor flagged tok_nw_2; ask the partner to re-verify that "
                     "account before it is used again."),
            TicketSpec(
                "Workflow editor times out when saving large workflows",
                "Saving a workflow with more than 40 steps spins for a minute and then fails "
                "with a timeout.", TicketPriority.MEDIUM, TicketStatus.IN_PROGRESS, 12,
                ("It happens in Chrome and Firefox. Smaller workflows save fine.",
                 ("Thanks, I reproduced it with a 45-step workflow and engineering is on it. "
                  "Meanwhile, splitting the workflow with a 'Run workflow' step avoids the timeout.")),
                by_member=True),
            TicketSpec(
                "Export invoices as CSV",
                "Our accountant would like to download this year's Revampd invoices as a CSV "
                "file. Is that possible?", TicketPriority.LOW, TicketStatus.OPEN, 3,
                ("Ideally with invoice number, date, type, total and payment method.",),
                by_member=True, support=None),
            TicketSpec(
                "Higher campaign limit for the holiday season",
                "We expect to run about 600 campaigns over the holidays, above the Scale limit "
                "of 500. Can we get a temporary increase instead of moving to Enterprise?",
                TicketPriority.MEDIUM, TicketStatus.OPEN, 1, ("We would need it for about six weeks.",), support=1),
        ),
    ),
    PartnerSpec(
        name="Bluebird Digital", code="BB", plan="GROWTH", usage=(4, 18, 9),
        addons=(("LOCAL_NUMBER", 2),), pending_downgrade_to="STARTER",
        affiliate_scale=0.6, revenue_share=(2000, 6000), wallet_share=0.4,
        partial_payment_now=5000, overdue_last_month=False,
        one_time=(("Onboarding services", 1, 90000, 330, InvoiceStatus.PAID, PaymentMethod.CARD, 0),
                  ("Additional training session", 1, 30000, 75, InvoiceStatus.PAID, PaymentMethod.WALLET, 0)),
        adjustments=((245, 3000, "Goodwill credit: delayed number port", None),),
        sub_orgs=("Sunrise Yoga", "Metro Movers", "Bella Salon", "Greenleaf Landscaping"),
        banks=(("Bank of America", "026009593", "0394"),),
        payout_states=("PROCESSING_SPLIT", "PARTIAL", "CANCELED", "CREDIT", "SPLIT", "TRANSFER"),
        tickets=(
            TicketSpec(
                "Porting an existing number to Revampd",
                "We want to move our main office number from our current carrier to Revampd so "
                "we can use it in workflows.", TicketPriority.MEDIUM, TicketStatus.CLOSED, 250,
                ("The number is (415) 555-0132, currently with our old VoIP provider.",
                 ("Ports need a letter of authorization and a recent bill from the current "
                  "carrier. Send both and we'll submit the port; it takes 7-10 business days."),
                 "Sent both by email just now.",
                 ("The port completed this morning; the number is listed under your local "
                  "phone numbers.")), support=1),
            TicketSpec(
                "Wallet credit not applied to invoice",
                "Our wallet had enough credit but this month's subscription invoice was charged "
                "to our card.", TicketPriority.HIGH, TicketStatus.CLOSED, 160,
                ("We'd prefer invoices to be paid from the wallet first whenever possible.",
                 ("Invoices are charged to the card on file unless they are paid from the wallet "
                  "before the charge runs. From Invoices you can pay any open invoice with wallet "
                  "credit, in full or in part.")),
                note="Internal: billing confirms card-first is policy; no refund of the card "
                     "charge, the wallet credit stays available for the next invoice."),
            TicketSpec(
                "Update our billing contact email",
                "Please send invoices to accounts@bluebird.example from now on.",
                TicketPriority.LOW, TicketStatus.RESOLVED, 45,
                ("Our previous contact has left the company.",
                 "Done: invoice emails now go to accounts@bluebird.example.")),
            TicketSpec(
                "SMS delivery reports missing",
                "Delivery reports stopped arriving yesterday afternoon for all our sub-orgs.",
                TicketPriority.HIGH, TicketStatus.IN_PROGRESS, 6,
                ("Messages seem to go out; we just get no receipts.",
                 ("One upstream carrier is delaying delivery receipts. Messages are delivered; "
                  "the receipts are queued and will backfill."),
                 "Thanks. Any ETA? Our clients rely on the reports for billing."), support=1),
            TicketSpec(
                "Add a team member to the dashboard",
                "We'd like to give our new account manager read access to the Revampd section.",
                TicketPriority.LOW, TicketStatus.OPEN, 2, ("Their email is li.chen@bluebird.example.",)),
        ),
    ),
    PartnerSpec(
        name="Cedar Collective", code="CD", plan="STARTER", usage=(2, 8, 3), addons=(),
        pending_downgrade_to=None, affiliate_scale=0, revenue_share=(1000, 3000),
        wallet_share=0.3, partial_payment_now=0, overdue_last_month=True,
        one_time=(("Onboarding services", 1, 50000, 335, InvoiceStatus.PAID, PaymentMethod.CARD, 0),
                  ("Custom template design", 3, 12000, 170, InvoiceStatus.UNCOLLECTIBLE, None, 0)),
        adjustments=((330, 2000, "Welcome credit", None),),
        sub_orgs=("Cedar Hill Dental", "Northside Tutoring"), banks=(),
        payout_states=("AVAILABLE", "AVAILABLE"),
        tickets=(
            TicketSpec(
                "Help setting up our first workflow",
                "We'd like new leads from our website form to get a welcome SMS, then an email "
                "the next day.", TicketPriority.MEDIUM, TicketStatus.CLOSED, 320,
                ("Is there a template we can start from?",
                 ("Use a 'Form submitted' trigger, a 'Send SMS' step, a one-day wait and a 'Send "
                  "email' step. I've shared a template called 'New lead welcome' in your account."),
                 "Perfect, that's exactly it.", "Great! Closing this ticket.")),
            TicketSpec(
                "Payout lower than expected",
                "Our last payout was about half of the previous one.", TicketPriority.LOW, TicketStatus.RESOLVED, 40,
                ("Did something change in how payouts are calculated?",
                 ("Nothing changed: payouts follow sub-org activity, and Northside Tutoring had "
                  "no usage charges that month. The payout lists every transaction behind it.")),
                support=1,
                note="Internal: checked the sub-org transactions for that period; all correct."),
            TicketSpec(
                "Login emails going to spam",
                "Sign-in emails from Revampd land in our spam folder.", TicketPriority.HIGH, TicketStatus.OPEN, 1,
                ("It happens for everyone at cedar.example using Outlook.",), support=None),
        ),
    ),
]
