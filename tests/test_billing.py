"""The billing run, through the CLI (`python -m server.cli billing run`) and the graph.

Each test runs the command in its own process on a copy of the demo data, past the
end of the demo's current period, and reads what the Partner would see.
"""

from __future__ import annotations

import asyncio
import calendar
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import func, select, update

from db import models as m
from db.engine import create_engine, read_sessions, write_sessions
from db.states import AccountKind, TransferKind
from services import ledger
from services.billing import next_period_end
from services.wallet import apply_pending_affiliate_payouts
from tests import clock
from tests.clock import NOW
from tests.conftest import Api

ROOT = Path(__file__).parents[1]
NORTHWIND = "owner@northwind.example"  # Scale, 5 local + 2 toll-free numbers
BLUEBIRD = "owner@bluebird.example"  # Growth, downgrade to Starter pending; 2 local numbers
CEDAR = "owner@cedar.example"  # Starter, no add-ons
DAY = timedelta(days=1)

INVOICE = """number status periodStart periodEnd total { amount } amountPaid { amount } amountDue { amount }
  paymentMethod lineItems { description quantity unitAmount { amount } amount { amount } }
  payments { amount { amount } method }"""
CONNECTION = f"""{{ viewer {{ partner {{ revampdConnection {{
  subscription {{ status plan {{ code }} currentPeriodStart currentPeriodEnd }}
  pendingChange {{ kind }}
  wallet {{ balance {{ amount }} }}
  addOns {{ product {{ code }} quantity pendingQuantity }}
  invoices(first: 50, filter: {{type: [SUBSCRIPTION]}}) {{ nodes {{ {INVOICE} }} }}
}} }} }} }}"""


@dataclass
class Run:
    code: int
    out: str
    err: str


async def billing_run(api: Api, now: datetime, *args: str, **env: str) -> Run:
    """`revampd-bff billing run --now NOW` in a process of its own, on the test's database."""
    proc = await asyncio.create_subprocess_exec(
        *clock.command("server.cli"), "billing", "run", "--now", now.isoformat(), *args,
        cwd=ROOT, env={**os.environ, "DATABASE_URL": api.settings.database_url, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def summary(run: Run) -> dict[str, int]:
    """The counts of the summary line: `billed 3, charged 1, declined 1, failed 0; ...`."""
    line = next(line for line in run.out.splitlines() if line.startswith("billing run at "))
    counts = line.split(": ", 1)[1].replace(";", ",").split(", ")
    return {name: int(n) for n, name in (c.split(" ", 1)[::-1] for c in counts)}


async def connection(api: Api, email: str) -> dict[str, Any]:
    return dict((await api.gql(CONNECTION, as_=email))["viewer"]["partner"]["revampdConnection"])


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def period_end(api: Api, email: str) -> datetime:
    return at((await connection(api, email))["subscription"]["currentPeriodEnd"])


def invoice_for(state: dict[str, Any], start: datetime) -> list[dict[str, Any]]:
    return [i for i in state["invoices"]["nodes"] if i["periodStart"] and at(i["periodStart"]) == start]


def lines(invoice: dict[str, Any]) -> list[tuple[str, int, str]]:
    return [(li["description"], li["quantity"], li["amount"]["amount"]) for li in invoice["lineItems"]]


def payments(invoice: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["amount"]["amount"], p["method"]) for p in invoice["payments"]]


async def set_card(api: Api, email: str, token: str) -> None:
    data = await api.gql(
        """mutation($t: String!) { updatePaymentMethod(input: {cardToken: $t}) { userErrors { code } } }""",
        {"t": token}, as_=email,
    )
    assert data["updatePaymentMethod"]["userErrors"] == []


async def pending_affiliate(api: Api, email: str) -> int:
    """What the connection's PENDING affiliate payouts add up to (the run credits them first)."""
    cid = await api.connection_id(email)
    [(total,)] = await api.rows(select(func.coalesce(func.sum(m.AffiliatePayout.amount), 0)).where(
        m.AffiliatePayout.connection_id == cid, m.AffiliatePayout.credit_status == "PENDING"))
    return int(total)


async def set_wallet(api: Api, email: str, minor: int) -> None:
    """Make the wallet hold `minor` (a manual adjustment through the ledger, as staff would),
    after crediting its PENDING affiliate payouts, so that the run has none to add."""
    cid = await api.connection_id(email)
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as s, s.begin():
            await apply_pending_affiliate_payouts(s, cid, NOW)
            conn = await s.get(m.Connection, cid)
            assert conn is not None
            wallet = await ledger.wallet_account(s, conn)
            other = await ledger.system_account(s, AccountKind.ADJUSTMENTS, conn.currency_code, cid)
            debit, credit = (wallet, other) if wallet.balance > minor else (other, wallet)
            await ledger.post(s, [ledger.Transfer(
                f"test:wallet:{cid}:{minor}", TransferKind.MANUAL_ADJUSTMENT, debit.id, credit.id,
                abs(wallet.balance - minor), memo="Wallet set by the test",
            )])
    finally:
        await engine.dispose()


async def verify(api: Api) -> list[str]:
    engine = create_engine(api.settings.database_url)
    try:
        async with read_sessions(engine)() as s:
            return await ledger.verify(s)
    finally:
        await engine.dispose()


async def card_state(api: Api, number: str) -> tuple[Any, ...]:
    i = m.Invoice
    [row] = await api.rows(
        select(i.payment_attempts, i.payment_error, i.next_payment_attempt_at).where(i.number == number)
    )
    return tuple(row)


async def set_period(api: Api, email: str, start: datetime, end: datetime) -> None:
    """Subscriptions start elsewhere (sign-up): set the period directly."""
    cid = await api.connection_id(email)
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as s, s.begin():
            await s.execute(update(m.Subscription).where(m.Subscription.connection_id == cid)
                            .values(current_period_start=start, current_period_end=end))
    finally:
        await engine.dispose()


# ---- The new period: invoiced, paid from the wallet, then the card -------------------

async def test_past_the_period_end_the_new_period_is_invoiced_and_paid_wallet_first_then_by_card(api: Api) -> None:
    await set_card(api, NORTHWIND, "tok_visa_4242")
    await set_wallet(api, NORTHWIND, 10000)
    before = await connection(api, NORTHWIND)
    end = at(before["subscription"]["currentPeriodEnd"])
    next_end = next_period_end(at(before["subscription"]["currentPeriodStart"]), end)

    run = await billing_run(api, end + DAY)
    assert run.code == 0, run.err
    assert summary(run) == {"billed": 3, "charged": 1, "declined": 0, "failed": 0,
                            "canceled": 0, "retried": 0, "uncollectible": 0}

    after = await connection(api, NORTHWIND)
    assert after["subscription"] == {"status": "ACTIVE", "plan": {"code": "SCALE"},
                                     "currentPeriodStart": end.isoformat(), "currentPeriodEnd": next_end.isoformat()}
    [invoice] = invoice_for(after, end)
    month = f"{end:%b %Y}"
    assert lines(invoice) == [
        (f"Scale plan, {month}", 1, "399.00"),
        (f"Local phone number, {month}", 5, "15.00"),
        (f"Toll-free phone number, {month}", 2, "16.00"),
    ]
    assert at(invoice["periodEnd"]) == next_end
    assert (invoice["status"], invoice["total"]["amount"], invoice["amountPaid"]["amount"],
            invoice["amountDue"]["amount"]) == ("PAID", "430.00", "430.00", "0.00")
    assert payments(invoice) == [("100.00", "WALLET"), ("330.00", "CARD")]
    assert invoice["paymentMethod"] == "MIXED"
    assert after["wallet"]["balance"]["amount"] == "0.00"
    assert await verify(api) == []

    # Again: everything due is billed already.
    again = await billing_run(api, end + DAY)
    assert again.code == 0, again.err
    assert summary(again)["billed"] == 0 and summary(again)["charged"] == 0
    assert await connection(api, NORTHWIND) == after
    assert await verify(api) == []


async def test_a_pending_downgrade_takes_effect_on_the_invoice_drafted_for_the_period(api: Api) -> None:
    before, credits = await connection(api, BLUEBIRD), await pending_affiliate(api, BLUEBIRD)
    assert before["pendingChange"] == {"kind": "DOWNGRADE"}
    end = at(before["subscription"]["currentPeriodEnd"])
    [draft] = invoice_for(before, end)
    assert draft["status"] == "DRAFT"

    run = await billing_run(api, end + DAY)
    assert run.code == 0, run.err

    after = await connection(api, BLUEBIRD)
    assert after["subscription"]["plan"] == {"code": "STARTER"} and after["pendingChange"] is None
    [invoice] = invoice_for(after, end)
    assert invoice["number"] == draft["number"], "the draft is the invoice issued, numbered as it was"
    month = f"{end:%b %Y}"
    assert lines(invoice) == [(f"Starter plan, {month}", 1, "49.00"), (f"Local phone number, {month}", 2, "6.00")]
    # The wallet covers it all: no card needed.
    assert (invoice["status"], invoice["paymentMethod"], payments(invoice)) == ("PAID", "WALLET", [("55.00", "WALLET")])
    wallet: Callable[[dict[str, Any]], int] = lambda s: at_amount(s["wallet"]["balance"]["amount"])  # noqa: E731
    assert wallet(after) == wallet(before) + credits - 5500, "affiliate credits in, the invoice out"
    assert await pending_affiliate(api, BLUEBIRD) == 0
    assert await verify(api) == []


def at_amount(amount: str) -> int:
    return int(amount.replace(".", ""))


async def test_pending_add_on_decreases_and_removals_take_effect_at_the_period_end(api: Api) -> None:
    state = await connection(api, NORTHWIND)
    ids = (await api.gql("{ viewer { partner { revampdConnection { addOns { id product { code } } } } } }",
                         as_=NORTHWIND))["viewer"]["partner"]["revampdConnection"]["addOns"]
    local, toll_free = (next(a["id"] for a in ids if a["product"]["code"] == code)
                        for code in ("LOCAL_NUMBER", "TOLL_FREE_NUMBER"))
    await api.gql('mutation($a: ID!) { updateAddOn(input: {addOnId: $a, quantity: 2}) { userErrors { code } } }',
                  {"a": local}, as_=NORTHWIND)
    await api.gql('mutation($a: ID!) { removeAddOn(input: {addOnId: $a}) { userErrors { code } } }',
                  {"a": toll_free}, as_=NORTHWIND)
    end = at(state["subscription"]["currentPeriodEnd"])

    assert (await billing_run(api, end + DAY)).code == 0

    after = await connection(api, NORTHWIND)
    assert after["addOns"] == [{"product": {"code": "LOCAL_NUMBER"}, "quantity": 2, "pendingQuantity": None}]
    [invoice] = invoice_for(after, end)
    assert lines(invoice) == [(f"Scale plan, {end:%b %Y}", 1, "399.00"), (f"Local phone number, {end:%b %Y}", 2, "6.00")]
    assert await verify(api) == []


async def test_a_cancellation_ends_the_subscription_and_nothing_more_is_billed(api: Api) -> None:
    data = await api.gql("mutation { cancelSubscription(input: {}) { userErrors { code } } }", as_=CEDAR)
    assert data["cancelSubscription"]["userErrors"] == []
    before = await connection(api, CEDAR)
    end = at(before["subscription"]["currentPeriodEnd"])

    run = await billing_run(api, end + DAY)
    assert run.code == 0, run.err
    assert summary(run)["canceled"] == 1 and summary(run)["billed"] == 2

    after = await connection(api, CEDAR)
    assert after["subscription"]["status"] == "CANCELED" and after["pendingChange"] is None
    assert after["subscription"]["currentPeriodEnd"] == end.isoformat(), "no new period"
    assert [i for i in invoice_for(after, end) if i["status"] != "DRAFT"] == []
    assert after["invoices"] == before["invoices"]
    # A month later still nothing.
    later = await billing_run(api, end + 40 * DAY)
    assert summary(later)["canceled"] == 0 and await connection(api, CEDAR) == after
    assert await verify(api) == []


# ---- Declines, retries, write-off ------------------------------------------------

async def test_a_declined_card_leaves_the_invoice_open_then_is_retried_then_written_off(api: Api) -> None:
    await set_card(api, CEDAR, "tok_chargeDeclined_0002")
    await set_wallet(api, CEDAR, 1000)
    end = await period_end(api, CEDAR)
    now = end + DAY

    run = await billing_run(api, now)
    assert run.code == 0, "a decline is an answer, not a failure: " + run.err
    assert summary(run)["declined"] == 1
    [invoice] = invoice_for(await connection(api, CEDAR), end)
    assert (invoice["status"], invoice["amountPaid"]["amount"], invoice["amountDue"]["amount"]) == ("OPEN", "10.00", "39.00")
    assert payments(invoice) == [("10.00", "WALLET")]
    assert f"{invoice['number']}: card declined: Your card was declined." in run.err
    assert await card_state(api, invoice["number"]) == (1, "Your card was declined.", now + DAY)

    # Not before the next attempt is due.
    early = await billing_run(api, now + DAY - timedelta(seconds=1))
    assert summary(early)["retried"] == 0
    assert await card_state(api, invoice["number"]) == (1, "Your card was declined.", now + DAY)

    # Retried 1, 3 and 5 days after each decline (BILLING_RETRY_DAYS), then written off.
    for attempt, when, next_attempt in ((2, now + DAY, now + 4 * DAY), (3, now + 4 * DAY, now + 9 * DAY)):
        retry = await billing_run(api, when)
        assert retry.code == 0 and summary(retry)["retried"] == summary(retry)["declined"] == 1
        assert await card_state(api, invoice["number"]) == (attempt, "Your card was declined.", next_attempt)
    last = await billing_run(api, now + 9 * DAY)
    assert summary(last)["uncollectible"] == 1
    assert await card_state(api, invoice["number"]) == (4, "Your card was declined.", None)
    [written_off] = invoice_for(await connection(api, CEDAR), end)
    assert (written_off["status"], written_off["amountPaid"]["amount"], written_off["amountDue"]["amount"]) == (
        "UNCOLLECTIBLE", "10.00", "0.00")
    assert f"{invoice['number']}: uncollectible after 4 declined charges" in last.err
    assert await verify(api) == []


async def test_a_new_card_after_a_decline_is_charged_at_the_next_run(api: Api) -> None:
    await set_card(api, CEDAR, "tok_insufficientFunds_9995")
    await set_wallet(api, CEDAR, 0)
    end = await period_end(api, CEDAR)
    await billing_run(api, end + DAY)
    [declined] = invoice_for(await connection(api, CEDAR), end)
    assert declined["status"] == "OPEN"
    assert (await card_state(api, declined["number"]))[1] == "Insufficient funds."

    await set_card(api, CEDAR, "tok_mastercard_4444")
    run = await billing_run(api, end + DAY)
    assert summary(run)["retried"] == 1 and summary(run)["charged"] == 1
    [paid] = invoice_for(await connection(api, CEDAR), end)
    assert (paid["status"], payments(paid)) == ("PAID", [("49.00", "CARD")])
    assert await card_state(api, declined["number"]) == (2, None, None)
    assert await verify(api) == []


async def test_a_retry_pays_from_credit_the_wallet_received_since_the_decline(api: Api) -> None:
    await set_card(api, CEDAR, "tok_chargeDeclined_0002")
    await set_wallet(api, CEDAR, 0)
    end = await period_end(api, CEDAR)
    await billing_run(api, end + DAY)
    [declined] = invoice_for(await connection(api, CEDAR), end)
    assert (declined["status"], payments(declined)) == ("OPEN", [])

    await set_wallet(api, CEDAR, 2500)  # e.g. a payout credited to the wallet
    retry = await billing_run(api, end + 2 * DAY)
    assert summary(retry)["retried"] == 1 and summary(retry)["declined"] == 1, "the wallet did not cover it all"
    [partly] = invoice_for(await connection(api, CEDAR), end)
    assert (partly["status"], partly["amountDue"]["amount"], payments(partly)) == ("OPEN", "24.00", [("25.00", "WALLET")])

    await set_wallet(api, CEDAR, 3000)
    last = await billing_run(api, end + 5 * DAY)
    assert summary(last)["retried"] == 1 and summary(last)["declined"] == 0
    [paid] = invoice_for(await connection(api, CEDAR), end)
    assert (paid["status"], paid["paymentMethod"]) == ("PAID", "WALLET")
    assert payments(paid) == [("25.00", "WALLET"), ("24.00", "WALLET")]
    assert await card_state(api, paid["number"]) == (2, None, None), "no card charge was needed the last time"
    assert (await connection(api, CEDAR))["wallet"]["balance"]["amount"] == "6.00"
    assert await verify(api) == []


async def test_without_a_card_on_file_and_with_the_wallet_switched_off_the_charge_is_declined(api: Api) -> None:
    state, credits = await connection(api, NORTHWIND), await pending_affiliate(api, NORTHWIND)
    assert credits > 0, "the demo data has pending affiliate payouts for the run to credit"
    end = at(state["subscription"]["currentPeriodEnd"])
    run = await billing_run(api, end + DAY, BILLING_PAY_FROM_WALLET="false")
    assert run.code == 0, run.err
    after = await connection(api, NORTHWIND)
    [invoice] = invoice_for(after, end)
    assert (invoice["status"], invoice["amountDue"]["amount"], payments(invoice)) == ("OPEN", "430.00", [])
    wallet: Callable[[dict[str, Any]], int] = lambda s: at_amount(s["wallet"]["balance"]["amount"])  # noqa: E731
    assert wallet(after) == wallet(state) + credits, "the wallet gets its credits but pays nothing"
    assert (await card_state(api, invoice["number"]))[:2] == (1, "No card on file.")
    assert await verify(api) == []


# ---- One connection failing does not stop the others --------------------------------

async def set_currency(api: Api, email: str, currency: str) -> None:
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as s, s.begin():
            await s.execute(update(m.Connection).where(m.Connection.id == await api.connection_id(email))
                            .values(currency_code=currency))
    finally:
        await engine.dispose()


async def test_a_connection_that_fails_is_logged_and_left_due_while_the_others_are_billed(api: Api) -> None:
    await set_card(api, CEDAR, "tok_visa_4242")
    await set_wallet(api, CEDAR, 0)
    cedar = await connection(api, CEDAR)
    end = at(cedar["subscription"]["currentPeriodEnd"])
    await set_currency(api, CEDAR, "EUR")  # a mistake of the data: its plan is priced in USD

    run = await billing_run(api, end + DAY)
    assert run.code != 0
    assert summary(run) == {
        "billed": 2, "charged": 0, "declined": 0, "failed": 1, "canceled": 0, "retried": 0, "uncollectible": 0}
    cedar_id = await api.connection_id(CEDAR)
    assert f"connection {cedar_id} failed" in run.err and "Traceback" in run.err
    assert "is priced in USD; the connection is billed in EUR" in run.err
    await set_currency(api, CEDAR, "USD")
    assert await connection(api, CEDAR) == cedar, "nothing of the failed connection changed"
    for email in (NORTHWIND, BLUEBIRD):
        assert (await connection(api, email))["subscription"]["currentPeriodStart"] == end.isoformat()

    rerun = await billing_run(api, end + DAY)
    assert rerun.code == 0 and summary(rerun)["billed"] == 1 and summary(rerun)["charged"] == 1
    assert await verify(api) == []


async def test_a_charge_whose_answer_is_lost_is_settled_by_the_next_run_and_made_once(api: Api) -> None:
    """The processor charges the card but its answer never arrives: the invoice stays OPEN
    with its charge PENDING (nothing retried meanwhile), and the next run first asks the
    processor again with the same key and records that one charge."""
    await set_card(api, CEDAR, "tok_visa_4242")
    await set_wallet(api, CEDAR, 0)
    end = at((await connection(api, CEDAR))["subscription"]["currentPeriodEnd"])
    cedar_id = await api.connection_id(CEDAR)
    charges = (select(m.CardCharge.status, m.CardCharge.attempt, m.CardCharge.amount)
               .join(m.Invoice, m.Invoice.id == m.CardCharge.invoice_id).where(m.Invoice.connection_id == cedar_id)
               .where(~m.CardCharge.processor_key.startswith("seed:")))  # not the demo's own card payments

    lost = await billing_run(api, end + DAY, PAYMENT_SANDBOX_LOST_ANSWER_RATE="1")
    assert lost.code == 0, lost.err
    assert summary(lost)["billed"] == 3 and summary(lost)["charged"] == 0
    [(pending,)] = await api.rows(select(func.count()).select_from(m.CardCharge).where(m.CardCharge.status == "PENDING"))
    assert pending >= 1 and f"the processor's answer about {pending} card charge" in lost.out
    [new] = [i for i in (await connection(api, CEDAR))["invoices"]["nodes"] if i["periodStart"] == end.isoformat()]
    assert (new["status"], new["payments"]) == ("OPEN", [])
    [(status, attempt, amount)] = await api.rows(charges)
    assert (status, attempt, Decimal(amount) / 100) == ("PENDING", 1, Decimal(new["amountDue"]["amount"]))

    settled = await billing_run(api, end + DAY + timedelta(hours=1))
    assert settled.code == 0, settled.err
    assert f"billing run: first settled {pending} card charge" in settled.out
    [new] = [i for i in (await connection(api, CEDAR))["invoices"]["nodes"] if i["periodStart"] == end.isoformat()]
    assert (new["status"], new["payments"]) == ("PAID", [{"amount": new["total"], "method": "CARD"}])
    assert await api.rows(charges) == [("SUCCEEDED", 1, amount)]
    assert await verify(api) == []


# ---- Periods ----------------------------------------------------------------------

def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=timezone.utc)


def test_monthly_periods_keep_their_day_through_short_months() -> None:
    chain, start, end = [], utc(2027, 12, 31), utc(2028, 1, 31)
    for _ in range(4):
        start, end = end, next_period_end(start, end)
        chain.append(end)
    assert chain == [utc(2028, 2, 29), utc(2028, 3, 31), utc(2028, 4, 30), utc(2028, 5, 31)]
    assert next_period_end(utc(2027, 1, 30), utc(2027, 2, 28)) == utc(2027, 3, 30)
    assert next_period_end(utc(2027, 1, 15, 9, 30), utc(2027, 2, 15, 9, 30)) == utc(2027, 3, 15, 9, 30)
    assert next_period_end(utc(2027, 11, 30), utc(2027, 12, 31)) == utc(2028, 1, 31)


async def test_a_period_ending_on_the_31st_bills_to_the_end_of_february_and_back_to_the_31st(api: Api) -> None:
    year = (await period_end(api, CEDAR)).year + 2
    february = utc(year, 2, calendar.monthrange(year, 2)[1])
    await set_period(api, CEDAR, utc(year - 1, 12, 31), utc(year, 1, 31))
    run = await billing_run(api, utc(year, 3, 31, 12))
    assert run.code == 0, run.err
    state = await connection(api, CEDAR)
    assert state["subscription"]["currentPeriodStart"] == utc(year, 3, 31).isoformat()
    assert state["subscription"]["currentPeriodEnd"] == utc(year, 4, 30).isoformat()
    billed = [(at(i["periodStart"]), at(i["periodEnd"])) for i in state["invoices"]["nodes"]
              if at(i["periodStart"]) >= utc(year, 1, 1)]
    assert sorted(billed) == [(utc(year, 1, 31), february), (february, utc(year, 3, 31)),
                              (utc(year, 3, 31), utc(year, 4, 30))], "every missed period billed once"
    assert await verify(api) == []


# ---- The command ----------------------------------------------------------------------

async def test_a_progress_bar_is_drawn_only_on_a_terminal(api: Api) -> None:
    import pty

    end = await period_end(api, CEDAR)
    piped = await billing_run(api, end - DAY)
    assert "\r" not in piped.out and "[" not in piped.out
    primary, secondary = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        *clock.command("server.cli"), "billing", "run", "--now", (end + DAY).isoformat(),
        cwd=ROOT, env={**os.environ, "DATABASE_URL": api.settings.database_url},
        stdout=secondary, stderr=asyncio.subprocess.DEVNULL,
    )
    os.close(secondary)
    assert await proc.wait() == 0
    out = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(primary)
    text = out.decode()
    assert "\r" in text and "3/3" in text and "billing run at" in text


async def test_workers_must_be_a_positive_number(api: Api) -> None:
    run = await billing_run(api, NOW, "--workers", "0")
    assert run.code == 2 and "--workers" in run.err


# ---- Several runs at once --------------------------------------------------------

async def add_due(api: Api, n: int) -> tuple[datetime, list[int]]:
    """`n` more connections due at the same time as the demo's; (when they are due, every due connection)."""
    from tests.bench.billing import add_due_connections

    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as s, s.begin():
            sub = await s.scalar(select(m.Subscription).limit(1))
            assert sub is not None
            await add_due_connections(s, n, sub.current_period_start, sub.current_period_end)
            everyone = list(await s.scalars(select(m.Subscription.connection_id)))
            return sub.current_period_end, everyone
    finally:
        await engine.dispose()


async def concurrent_runs(api: Api, processes: int, workers: int, extra: int) -> None:
    end, everyone = await add_due(api, extra)
    runs = await asyncio.gather(*(billing_run(api, end + DAY, "--workers", str(workers)) for _ in range(processes)))
    assert [r.code for r in runs] == [0] * processes, [r.err[-2000:] for r in runs if r.code]
    assert sum(summary(r)["billed"] for r in runs) == len(everyone), "each connection billed by exactly one run"
    charged = sum(summary(r)["charged"] for r in runs)
    declined = sum(summary(r)["declined"] for r in runs)

    i, p = m.Invoice, m.InvoicePayment
    per_connection = dict(await api.rows(
        select(i.connection_id, func.count()).where(i.type == "SUBSCRIPTION", i.period_start == end)
        .group_by(i.connection_id)
    ))
    assert per_connection == {cid: 1 for cid in everyone}
    starts = {start for (start,) in await api.rows(select(m.Subscription.current_period_start))}
    assert starts == {end}, "every period moved on once"
    card_payments = dict(await api.rows(
        select(p.invoice_id, func.count()).join(i, i.id == p.invoice_id)
        .where(p.method == "CARD", i.period_start == end).group_by(p.invoice_id)
    ))
    assert set(card_payments.values()) <= {1} and len(card_payments) == charged
    assert declined == (await api.rows(select(func.count()).where(i.period_start == end, i.status == "OPEN")))[0][0]
    assert await verify(api) == []

    again = await asyncio.gather(*(billing_run(api, end + DAY) for _ in range(processes)))
    assert [summary(r)["billed"] for r in again] == [0] * processes
    assert await verify(api) == []

    # The declined charges are due again a day later: each is tried once more, by one run.
    retries = await asyncio.gather(*(billing_run(api, end + 2 * DAY, "--workers", str(workers))
                                     for _ in range(processes)))
    assert [r.code for r in retries] == [0] * processes
    assert sum(summary(r)["retried"] for r in retries) == declined > 0
    attempts = [n for (n,) in await api.rows(select(i.payment_attempts).where(i.period_start == end, i.status == "OPEN"))]
    assert attempts == [2] * declined
    assert await verify(api) == []


@pytest.mark.postgres
async def test_three_runs_at_once_in_separate_processes_bill_each_connection_exactly_once(api: Api) -> None:
    await concurrent_runs(api, processes=3, workers=2, extra=150)


async def test_two_runs_at_once_take_turns_and_bill_each_connection_exactly_once(api: Api) -> None:
    await concurrent_runs(api, processes=2, workers=2, extra=40)


async def test_a_connection_locked_for_a_while_is_tried_again_and_billed(api: Api) -> None:
    """Another writer holds Cedar's connection (PostgreSQL; SQLite: the database) past the
    lock timeout: the run says the database is busy, tries again and bills it."""
    cid = await api.connection_id(CEDAR)
    end = await period_end(api, CEDAR)
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as holder:
            await holder.begin()
            await holder.execute(select(m.Connection).where(m.Connection.id == cid).with_for_update())
            proc = await asyncio.create_subprocess_exec(
                *clock.command("server.cli"), "billing", "run", "--now", (end + DAY).isoformat(),
                cwd=ROOT, env={**os.environ, "DATABASE_URL": api.settings.database_url, "DB_LOCK_TIMEOUT_MS": "1000"},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            assert proc.stderr is not None
            seen = b""
            while b"the database is busy" not in seen:
                line = await proc.stderr.readline()
                assert line, seen.decode()
                seen += line
            await holder.commit()
        out, err = await proc.communicate()
    finally:
        await engine.dispose()
    assert proc.returncode == 0, (seen + err).decode()
    run = Run(0, out.decode(), (seen + err).decode())
    assert summary(run)["billed"] == 3 and summary(run)["failed"] == 0
    # The batch that holds Cedar waited (on SQLite every connection's batch waits for the writer).
    waited = re.search(r"the batch of connections (\d+) to (\d+): the database is busy \(.*\); trying again", run.err)
    assert waited is not None and int(waited[1]) <= cid <= int(waited[2]), run.err
    assert (await connection(api, CEDAR))["subscription"]["currentPeriodStart"] == end.isoformat()
    assert await verify(api) == []
