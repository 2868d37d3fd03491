"""Payouts through the GraphQL API, the webhook and the CLI: credit to the wallet, transfer
to a bank, split; bank transfers that move forward only; money never lost, never paid twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update

from db import models as m
from schema.base import from_global_id, to_global_id
from server import cli
from server.webhooks import SIGNATURE_HEADER, sign
from services import ledger
from tests.clock import NOW
from tests.conftest import Api

OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"
BLUEBIRD = "owner@bluebird.example"
CEDAR = "owner@cedar.example"
BILLING = "billing@revampd.example"

PAYOUT = """id status amount { amount currencyCode } availableAmount { amount } walletAmount { amount }
  bankAmountInFlight { amount } bankAmountPaid { amount } disposition
  dispositions { kind walletAmount { amount } bankAmount { amount } byPreference createdBy { email }
    walletEntry { amount { amount } source { __typename id } } bankTransfer { id status } }
  transfers { id status amount { amount } failureCode failureReason bankAccount { last4 } }"""
RESULT = f"""payout {{ {PAYOUT} }} disposition {{ kind walletAmount {{ amount }} bankAmount {{ amount }} }}
  wallet {{ balance {{ amount }} }} bankTransfer {{ id status submittedAt amount {{ amount }} }}
  userErrors {{ field code message }}"""
CREDIT = f"mutation($input: CreditPayoutInput!) {{ creditPayout(input: $input) {{ {RESULT} }} }}"
TRANSFER = f"mutation($input: TransferPayoutInput!) {{ transferPayout(input: $input) {{ {RESULT} }} }}"
SPLIT = f"mutation($input: SplitPayoutInput!) {{ splitPayout(input: $input) {{ {RESULT} }} }}"
CANCEL = f"""mutation($input: CancelBankTransferInput!) {{ cancelBankTransfer(input: $input) {{
  bankTransfer {{ id status canceledAt }} payout {{ {PAYOUT} }} userErrors {{ field code message }} }} }}"""
PREFERENCE = """mutation($input: SetPayoutPreferenceInput!) { setPayoutPreference(input: $input) {
  payoutPreference { mode walletPercent periodType } userErrors { field code message } } }"""
READ = f"query($id: ID!) {{ node(id: $id) {{ ... on Payout {{ {PAYOUT} }} }} }}"
WALLET = "{ viewer { partner { revampdConnection { wallet { balance { amount } } } } } }"


# ---- helpers ----------------------------------------------------------------------------

async def available_payout(api: Api, email: str = OWNER) -> tuple[str, int]:
    """An AVAILABLE payout of `email`'s connection never disposed of: its ID and what is available
    (minor units)."""
    cid = await api.connection_id(email)
    untouched = ~select(m.PayoutDisposition.id).where(m.PayoutDisposition.payout_id == m.Payout.id).exists()
    pid, available = (await api.rows(
        select(m.Payout.id, m.Payout.available_amount)
        .where(m.Payout.connection_id == cid, m.Payout.status == "AVAILABLE", untouched).order_by(m.Payout.id)
    ))[0]
    return to_global_id("Payout", pid), available


def cents(money: dict[str, Any]) -> int:
    return int(Decimal(money["amount"]) * 100)


def dollars(minor: int) -> str:
    return f"{minor / 100:.2f}"


async def call(api: Api, query: str, as_: str = OWNER, **input: Any) -> dict[str, Any]:
    data = await api.gql(query, {"input": input}, as_=as_)
    return dict(next(iter(data.values())))


def error(payload: dict[str, Any]) -> tuple[str, list[str] | None]:
    assert payload["userErrors"], payload
    return payload["userErrors"][0]["code"], payload["userErrors"][0]["field"]


async def wallet_balance(api: Api, email: str = OWNER) -> int:
    data = await api.gql(WALLET, as_=email)
    return cents(data["viewer"]["partner"]["revampdConnection"]["wallet"]["balance"])


async def read(api: Api, payout: str, as_: str = OWNER) -> dict[str, Any]:
    return dict((await api.gql(READ, {"id": payout}, as_=as_))["node"])


async def verify(api: Api) -> None:
    engine = api.engine
    from db.engine import read_sessions

    async with read_sessions(engine)() as session:
        assert await ledger.verify(session) == []


def parts(p: dict[str, Any]) -> tuple[int, int, int, int]:
    return (cents(p["availableAmount"]), cents(p["walletAmount"]), cents(p["bankAmountInFlight"]),
            cents(p["bankAmountPaid"]))


async def webhook(api: Api, event_id: str, kind: str, ref: str, *, at: int | None = None,
                  secret: str | None = None, **extra: Any) -> Any:
    now = int(time.time()) if at is None else at
    body = json.dumps({"id": event_id, "type": kind, "created": now,
                       "data": {"object": {"id": ref, **extra}}}).encode()
    header = sign(secret or api.settings.bank_webhook_secret, now, body)
    return await api.http.post("/webhooks/bank-transfers", content=body,
                               headers={SIGNATURE_HEADER: header, "Content-Type": "application/json"})


async def gateway_ref(api: Api, transfer: str) -> str:
    parsed = from_global_id(transfer)
    assert parsed is not None
    (ref,) = (await api.rows(select(m.BankTransfer.gateway_ref).where(m.BankTransfer.id == parsed[1])))[0]
    return str(ref)


async def with_bank_account(api: Api, email: str, outcome: str, default: bool = True) -> str:
    """Give `email`'s connection a sandbox bank account whose transfers end as `outcome`
    (ok, failnow, faillater, return), made the default."""
    cid = await api.connection_id(email)
    from db.engine import write_sessions

    async with write_sessions(api.engine)() as session, session.begin():
        if default:
            await session.execute(update(m.BankAccount).where(m.BankAccount.connection_id == cid)
                                  .values(is_default=False))
        account = m.BankAccount(
            connection_id=cid, holder_name="Test Holder", bank_name="Sandbox Test Bank", routing_number="110000000",
            account_last4={"ok": "6789", "failnow": "1116", "faillater": "2227", "return": "3338"}[outcome],
            account_token=f"btok_sandbox_{outcome}_{time.monotonic_ns()}", is_default=default,
            created_at=NOW,
        )
        session.add(account)
        await session.flush()
        return to_global_id("BankAccount", account.id)


# ---- credit, transfer, split ---------------------------------------------------------------

async def test_credit_puts_what_is_available_into_the_wallet_once(api: Api) -> None:
    payout, available = await available_payout(api)
    before = await wallet_balance(api)
    result = await call(api, CREDIT, payoutId=payout, idempotencyKey="credit-1")
    assert result["userErrors"] == []
    p = result["payout"]
    assert (p["status"], p["disposition"], parts(p)) == ("COMPLETED", "CREDIT", (0, available, 0, 0))
    assert cents(result["wallet"]["balance"]) == before + available == await wallet_balance(api)
    [d] = p["dispositions"]
    assert (d["kind"], d["createdBy"]["email"], d["byPreference"]) == ("CREDIT", OWNER, False)
    assert d["walletEntry"]["source"] == {"__typename": "Payout", "id": payout}
    # A retry with the same key answers the same and moves nothing.
    again = await call(api, CREDIT, payoutId=payout, idempotencyKey="credit-1")
    assert again["payout"]["dispositions"] == p["dispositions"] and again["userErrors"] == []
    assert await wallet_balance(api) == before + available
    # Nothing is left: a new credit is refused with what became of it.
    refused = await call(api, CREDIT, payoutId=payout, idempotencyKey="credit-2")
    assert error(refused) == ("NOTHING_AVAILABLE", ["input", "payoutId"])
    assert "credited to the wallet" in refused["userErrors"][0]["message"]
    await verify(api)


async def test_a_partial_credit_leaves_the_rest_available(api: Api) -> None:
    payout, available = await available_payout(api)
    result = await call(api, CREDIT, payoutId=payout, amount="10.00", idempotencyKey="k")
    assert (result["payout"]["status"], parts(result["payout"])) == (
        "PARTIALLY_DISPOSED", (available - 1000, 1000, 0, 0))


@pytest.mark.parametrize(("amount", "code"), [
    ("1.234", "INVALID_AMOUNT"), ("-5", "INVALID_AMOUNT"), ("0", "INVALID_AMOUNT"), ("abc", "INVALID_AMOUNT"),
    ("1e3", "INVALID_AMOUNT"), ("99999999", "EXCEEDS_AVAILABLE"),
])
async def test_an_amount_out_of_bounds_is_refused_naming_it_and_nothing_moves(api: Api, amount: str, code: str) -> None:
    payout, available = await available_payout(api)
    before = await wallet_balance(api)
    result = await call(api, CREDIT, payoutId=payout, amount=amount, idempotencyKey="k")
    assert error(result) == (code, ["input", "amount"]) and result["payout"] is None
    assert parts(await read(api, payout)) == (available, 0, 0, 0)
    assert await wallet_balance(api) == before


async def test_transfer_sends_it_to_the_default_account_and_the_processor(api: Api) -> None:
    payout, available = await available_payout(api)
    result = await call(api, TRANSFER, payoutId=payout, idempotencyKey="t-1")
    assert result["userErrors"] == []
    t = result["bankTransfer"]
    assert (t["status"], cents(t["amount"])) == ("PENDING", available)
    assert t["submittedAt"] is not None  # the processor has it
    p = result["payout"]
    assert (p["status"], p["disposition"], parts(p)) == ("PROCESSING", "TRANSFER", (0, 0, available, 0))
    assert p["transfers"][0]["bankAccount"]["last4"] == "4821"  # Northwind's default account
    await verify(api)


async def test_split_posts_both_parts_together(api: Api) -> None:
    payout, available = await available_payout(api)
    before = await wallet_balance(api)
    result = await call(api, SPLIT, payoutId=payout, walletAmount="100.00", idempotencyKey="s-1")
    assert result["userErrors"] == []
    assert (result["payout"]["disposition"], parts(result["payout"])) == ("SPLIT", (0, 10000, available - 10000, 0))
    assert cents(result["disposition"]["walletAmount"]) == 10000
    assert cents(result["disposition"]["bankAmount"]) == available - 10000
    assert await wallet_balance(api) == before + 10000
    await verify(api)


@pytest.mark.parametrize("wallet", ["all", "more", "0"])
async def test_a_split_must_leave_both_parts_positive(api: Api, wallet: str) -> None:
    payout, available = await available_payout(api)
    amount = {"all": dollars(available), "more": dollars(available + 1), "0": "0"}[wallet]
    result = await call(api, SPLIT, payoutId=payout, walletAmount=amount, idempotencyKey="s")
    code = "INVALID_AMOUNT" if wallet == "0" else "SPLIT_LEAVES_NOTHING_FOR_BANK"
    assert error(result) == (code, ["input", "walletAmount"])
    assert parts(await read(api, payout)) == (available, 0, 0, 0)


async def test_only_the_connections_admin_may_dispose_of_its_payouts(api: Api) -> None:
    payout, available = await available_payout(api)
    for who in (MEMBER, BILLING):
        assert error(await call(api, CREDIT, who, payoutId=payout, idempotencyKey="k"))[0] == "FORBIDDEN"
    # Another Partner's payout reads exactly like one that does not exist.
    theirs = await call(api, CREDIT, BLUEBIRD, payoutId=payout, idempotencyKey="k")
    missing = await call(api, CREDIT, BLUEBIRD, payoutId=to_global_id("Payout", 10**9), idempotencyKey="k")
    assert error(theirs) == error(missing) == ("NOT_FOUND", ["input", "payoutId"])
    assert theirs["userErrors"][0]["message"] == missing["userErrors"][0]["message"]
    assert parts(await read(api, payout)) == (available, 0, 0, 0)


async def test_the_bank_account_must_be_the_connections_own_and_linked(api: Api) -> None:
    payout, available = await available_payout(api)
    cid = await api.connection_id(BLUEBIRD)
    (theirs,) = (await api.rows(select(m.BankAccount.id).where(m.BankAccount.connection_id == cid)))[0]
    result = await call(api, TRANSFER, payoutId=payout, bankAccountId=to_global_id("BankAccount", theirs),
                        idempotencyKey="k")
    assert error(result) == ("NOT_FOUND", ["input", "bankAccountId"])
    own = await with_bank_account(api, OWNER, "ok", default=False)
    from db.engine import write_sessions

    parsed = from_global_id(own)
    assert parsed is not None
    async with write_sessions(api.engine)() as session, session.begin():
        await session.execute(update(m.BankAccount).where(m.BankAccount.id == parsed[1]).values(removed_at=NOW))
    result = await call(api, TRANSFER, payoutId=payout, bankAccountId=own, idempotencyKey="k")
    assert error(result) == ("BANK_ACCOUNT_REMOVED", ["input", "bankAccountId"])
    # Several bad fields are named together.
    both = await call(api, SPLIT, payoutId=payout, walletAmount="x", bankAccountId=own, idempotencyKey="k")
    assert [(e["code"], e["field"]) for e in both["userErrors"]] == [
        ("INVALID_AMOUNT", ["input", "walletAmount"]), ("BANK_ACCOUNT_REMOVED", ["input", "bankAccountId"])]
    assert parts(await read(api, payout)) == (available, 0, 0, 0)


async def test_without_a_default_bank_account_a_transfer_says_so(api: Api) -> None:
    payout, _ = await available_payout(api, CEDAR)  # Cedar has no bank account
    result = await call(api, TRANSFER, CEDAR, payoutId=payout, idempotencyKey="k")
    assert error(result) == ("NO_BANK_ACCOUNT", ["input", "bankAccountId"])


async def test_the_same_key_with_other_input_is_refused(api: Api) -> None:
    payout, _ = await available_payout(api)
    assert (await call(api, CREDIT, payoutId=payout, amount="1.00", idempotencyKey="same"))["userErrors"] == []
    other = await call(api, CREDIT, payoutId=payout, amount="2.00", idempotencyKey="same")
    assert error(other) == ("IDEMPOTENCY_KEY_REUSED", ["input", "idempotencyKey"])
    assert parts(await read(api, payout))[1] == 100


# ---- bank transfers: cancel, webhooks, sync ----------------------------------------------

async def test_a_pending_transfer_can_be_canceled_and_its_amount_is_available_again(api: Api) -> None:
    payout, available = await available_payout(api)
    sent = await call(api, TRANSFER, payoutId=payout, idempotencyKey="t")
    transfer = sent["bankTransfer"]["id"]
    assert error(await call(api, CANCEL, MEMBER, bankTransferId=transfer))[0] == "FORBIDDEN"
    assert error(await call(api, CANCEL, BLUEBIRD, bankTransferId=transfer)) == (
        "NOT_FOUND", ["input", "bankTransferId"])
    result = await call(api, CANCEL, bankTransferId=transfer)
    assert result["userErrors"] == [] and result["bankTransfer"]["status"] == "CANCELED"
    assert result["bankTransfer"]["canceledAt"] is not None
    assert (result["payout"]["status"], parts(result["payout"])) == ("AVAILABLE", (available, 0, 0, 0))
    again = await call(api, CANCEL, bankTransferId=transfer)
    assert error(again) == ("NOT_CANCELABLE", ["input", "bankTransferId"])
    # The money is there to credit.
    assert parts((await call(api, CREDIT, payoutId=payout, idempotencyKey="c"))["payout"]) == (0, available, 0, 0)
    await verify(api)


async def test_webhooks_move_a_transfer_to_paid(api: Api) -> None:
    payout, available = await available_payout(api)
    transfer = (await call(api, TRANSFER, payoutId=payout, idempotencyKey="t"))["bankTransfer"]["id"]
    ref = await gateway_ref(api, transfer)
    first = await webhook(api, "evt_1", "bank_transfer.in_transit", ref)
    assert first.status_code == 200 and first.json()["handled"] is True
    assert (await read(api, payout))["transfers"][0]["status"] == "IN_TRANSIT"
    # In transit, the Partner can no longer cancel it.
    assert error(await call(api, CANCEL, bankTransferId=transfer))[0] == "NOT_CANCELABLE"
    assert (await webhook(api, "evt_2", "bank_transfer.paid", ref)).json()["result"] == "applied"
    p = await read(api, payout)
    assert (p["status"], p["transfers"][0]["status"], parts(p)) == ("COMPLETED", "PAID", (0, 0, 0, available))
    await verify(api)


async def test_a_failed_transfer_makes_its_amount_available_again_to_credit(api: Api) -> None:
    payout, available = await available_payout(api)
    result = await call(api, SPLIT, payoutId=payout, walletAmount="50.00", idempotencyKey="s")
    ref = await gateway_ref(api, result["bankTransfer"]["id"])
    await webhook(api, "evt_a", "bank_transfer.in_transit", ref)
    failed = await webhook(api, "evt_b", "bank_transfer.failed", ref, failure_code="no_account",
                           failure_message="Returned by the receiving bank: R03")
    assert failed.json()["result"] == "applied"
    p = await read(api, payout)
    assert (p["status"], parts(p)) == ("PARTIALLY_DISPOSED", (available - 5000, 5000, 0, 0))
    assert (p["transfers"][0]["status"], p["transfers"][0]["failureCode"]) == ("FAILED", "no_account")
    # Paid after failing? Never: a transfer does not move on from a final status.
    assert (await webhook(api, "evt_c", "bank_transfer.paid", ref)).json()["result"] == "stale"
    credited = await call(api, CREDIT, payoutId=payout, idempotencyKey="c")
    assert parts(credited["payout"]) == (0, available, 0, 0)
    await verify(api)


async def test_refused_webhooks_change_nothing(api: Api) -> None:
    payout, available = await available_payout(api)
    transfer = (await call(api, TRANSFER, payoutId=payout, idempotencyKey="t"))["bankTransfer"]["id"]
    ref = await gateway_ref(api, transfer)
    bad_secret = await webhook(api, "evt_x", "bank_transfer.paid", ref, secret="whsec_not_ours")
    stale = await webhook(api, "evt_y", "bank_transfer.paid", ref, at=int(time.time()) - 301)
    unsigned = await api.http.post("/webhooks/bank-transfers", content=b'{"id": "evt_z"}')
    assert [r.status_code for r in (bad_secret, stale, unsigned)] == [400, 400, 400]
    assert "signature" in bad_secret.json()["error"] and "300 seconds" in stale.json()["error"]
    p = await read(api, payout)
    assert (p["transfers"][0]["status"], parts(p)) == ("PENDING", (0, 0, available, 0))
    rows = await api.rows(select(m.BankTransferEvent.event_id).where(m.BankTransferEvent.event_id.in_(["evt_x", "evt_y", "evt_z"])))
    assert rows == []


async def test_duplicated_and_reordered_webhooks_change_nothing_twice(api: Api) -> None:
    payout, available = await available_payout(api)
    transfer = (await call(api, TRANSFER, payoutId=payout, idempotencyKey="t"))["bankTransfer"]["id"]
    ref = await gateway_ref(api, transfer)
    # paid arrives first, then in_transit, then paid again, each delivered twice at once
    outcomes = []
    for event_id, kind in (("evt_paid", "bank_transfer.paid"), ("evt_transit", "bank_transfer.in_transit"),
                           ("evt_paid", "bank_transfer.paid")):
        responses = await asyncio.gather(*(webhook(api, event_id, kind, ref) for _ in range(2)))
        assert [r.status_code for r in responses] == [200, 200]
        outcomes += [r.json()["result"] for r in responses]
    assert Counter(outcomes) == {"applied": 1, "duplicate": 4, "stale": 1}
    p = await read(api, payout)
    assert (p["transfers"][0]["status"], parts(p)) == ("PAID", (0, 0, 0, available))
    await verify(api)


async def test_a_webhook_for_an_unknown_transfer_is_acknowledged_and_changes_nothing(api: Api) -> None:
    response = await webhook(api, "evt_unknown", "bank_transfer.paid", "sbt_sandbox_ok_bt999999")
    assert response.status_code == 200 and response.json()["result"] == "unknown"


async def test_the_sandboxs_failing_account_fails_at_once(api: Api) -> None:
    payout, available = await available_payout(api)
    await with_bank_account(api, OWNER, "failnow")
    result = await call(api, TRANSFER, payoutId=payout, idempotencyKey="t")
    assert result["bankTransfer"]["status"] == "FAILED"
    assert (result["payout"]["status"], parts(result["payout"])) == ("AVAILABLE", (available, 0, 0, 0))
    await verify(api)


async def test_payouts_sync_settles_transfers_in_flight_from_the_processor(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, _ = await available_payout(api)
    await call(api, TRANSFER, payoutId=ok, idempotencyKey="t1")
    await with_bank_account(api, OWNER, "faillater")
    cid = await api.connection_id(OWNER)
    (second,) = (await api.rows(select(m.Payout.id).where(m.Payout.connection_id == cid, m.Payout.status == "AVAILABLE")
                                .order_by(m.Payout.id)))[0]
    late = (await call(api, TRANSFER, payoutId=to_global_id("Payout", second), idempotencyKey="t2"))["bankTransfer"]
    monkeypatch.setenv("DATABASE_URL", api.settings.database_url)
    await asyncio.to_thread(cli.main, ["payouts", "sync"])
    statuses = dict(await api.rows(select(m.BankTransfer.id, m.BankTransfer.status)))
    assert statuses[from_global_id(late["id"])[1]] == "FAILED"  # type: ignore[index]
    assert Counter(statuses.values())["IN_TRANSIT"] == 0 and Counter(statuses.values())["PENDING"] == 0
    assert (await read(api, to_global_id("Payout", second)))["status"] == "AVAILABLE"
    await verify(api)


# ---- the preference -------------------------------------------------------------------------

async def test_the_payout_preference_is_checked_and_shown(api: Api) -> None:
    assert error(await call(api, PREFERENCE, mode="SPLIT")) == ("INVALID_PERCENT", ["input", "walletPercent"])
    assert error(await call(api, PREFERENCE, mode="CREDIT", walletPercent=30))[0] == "INVALID_PERCENT"
    assert error(await call(api, PREFERENCE, CEDAR, mode="TRANSFER")) == ("NO_BANK_ACCOUNT", ["input", "mode"])
    assert error(await call(api, PREFERENCE, MEMBER, mode="CREDIT"))[0] == "FORBIDDEN"
    result = await call(api, PREFERENCE, mode="SPLIT", walletPercent=40, periodType="WEEKLY")
    assert result["payoutPreference"] == {"mode": "SPLIT", "walletPercent": 40, "periodType": "WEEKLY"}
    shown = await api.gql("{ viewer { partner { revampdConnection { payoutPreference { mode walletPercent } } } } }",
                          as_=OWNER)
    assert shown["viewer"]["partner"]["revampdConnection"]["payoutPreference"] == {"mode": "SPLIT", "walletPercent": 40}


# ---- provenance ------------------------------------------------------------------------------

PROVENANCE = """query($id: ID!) { node(id: $id) { ... on Invoice { payments { method amount { amount }
  walletEntry { amount { amount } fundedBy { amount { amount } entry { kind source { __typename
    ... on Payout { id sourceTransactions { externalId subOrgName partnerAmount { amount } } } } } } } } } } }"""


async def test_an_invoice_payment_leads_back_to_the_payout_and_sub_org_transactions(api: Api) -> None:
    cid = await api.connection_id(CEDAR)
    payout, available = await available_payout(api, CEDAR)
    assert await wallet_balance(api, CEDAR) > 0  # older credits are there too: the newest is spent first
    (invoice_id, due) = (await api.rows(
        select(m.Invoice.id, m.Invoice.total - m.Invoice.amount_paid)
        .where(m.Invoice.connection_id == cid, m.Invoice.status == "OPEN").order_by(m.Invoice.id)))[0]
    await call(api, CREDIT, CEDAR, payoutId=payout, idempotencyKey="c")
    amount = min(due, available)
    pay = """mutation($input: PayInvoiceInput!) { payInvoice(input: $input) { userErrors { code } } }"""
    paid = await api.gql(pay, {"input": {"invoiceId": to_global_id("Invoice", invoice_id), "amount": dollars(amount),
                                         "idempotencyKey": "p"}}, as_=CEDAR)
    assert paid["payInvoice"]["userErrors"] == []
    data = await api.gql(PROVENANCE, {"id": to_global_id("Invoice", invoice_id)}, as_=CEDAR)
    entry = data["node"]["payments"][-1]["walletEntry"]
    assert cents(entry["amount"]) == -amount
    [funding] = entry["fundedBy"]  # all of it from the payout's credit
    assert cents(funding["amount"]) == amount
    assert (funding["entry"]["kind"], funding["entry"]["source"]["id"]) == ("PAYOUT_CREDIT", payout)
    txs = funding["entry"]["source"]["sourceTransactions"]
    assert sum(cents(t["partnerAmount"]) for t in txs) == available and all(t["externalId"] for t in txs)


async def test_the_sandboxs_webhooks_settle_its_transfers_as_its_test_accounts_say(api: Api) -> None:
    """What `revampd-bff payouts sandbox-webhooks` sends: for the account that fails after going in
    transit, in_transit then failed; delivered twice, the second time changes nothing."""
    payout, available = await available_payout(api)
    await with_bank_account(api, OWNER, "faillater")
    transfer = (await call(api, TRANSFER, payoutId=payout, idempotencyKey="t"))["bankTransfer"]["id"]
    ref = await gateway_ref(api, transfer)
    events = [e for r, e in await cli._sandbox_events(None, api.settings.database_url) if r == ref]
    assert [e.type for e in events] == ["bank_transfer.in_transit", "bank_transfer.failed"]
    for round_ in range(2):
        for event in events:
            body, header = cli.sandbox_webhook(api.settings.bank_webhook_secret, ref, event, int(time.time()))
            response = await api.http.post("/webhooks/bank-transfers", content=body, headers={SIGNATURE_HEADER: header})
            assert response.json()["result"] == ("applied" if round_ == 0 else "duplicate")
    p = await read(api, payout)
    assert (p["transfers"][0]["status"], p["transfers"][0]["failureCode"], parts(p)) == (
        "FAILED", "no_account", (available, 0, 0, 0))


@pytest.mark.parametrize(("body", "status", "says"), [
    (b"[1, 2]", 400, "JSON object"),
    (b"\xff\xfe", 400, "JSON object"),
    (json.dumps({"id": "evt_1", "type": "bank_transfer.paid", "data": {"object": {"id": "x"}}}).encode(), 400,
     "created"),
    (json.dumps({"id": "evt_1", "type": "bank_transfer.paid", "created": 1, "data": {}}).encode(), 400,
     "data.object.id"),
    (json.dumps({"id": "", "type": "bank_transfer.paid", "created": 1}).encode(), 400, "id must be"),
    (b"{" + b" " * 70_000 + b"}", 413, "at most"),
])
async def test_a_signed_but_malformed_webhook_is_refused_saying_why(api: Api, body: bytes, status: int, says: str) -> None:
    now = int(time.time())
    response = await api.http.post("/webhooks/bank-transfers", content=body, headers={
        SIGNATURE_HEADER: sign(api.settings.bank_webhook_secret, now, body)})
    assert response.status_code == status and says in response.json()["error"]


async def test_a_webhook_of_another_kind_is_acknowledged_and_ignored(api: Api) -> None:
    response = await webhook(api, "evt_other", "customer.created", "cus_1")
    assert response.status_code == 200 and response.json()["handled"] is False


async def test_a_payment_larger_than_the_newest_credit_is_traced_to_older_credits_too(api: Api) -> None:
    """Last in, first out, and every cent of a debit is accounted for: a payment of more than the
    payout's credit spends it all, then the credits before it, newest first."""
    cid = await api.connection_id(OWNER)
    payout, _ = await available_payout(api)
    credited = 1000
    await call(api, CREDIT, payoutId=payout, amount=dollars(credited), idempotencyKey="c")
    (invoice_id, due) = (await api.rows(
        select(m.Invoice.id, m.Invoice.total - m.Invoice.amount_paid)
        .where(m.Invoice.connection_id == cid, m.Invoice.status == "OPEN",
               m.Invoice.total - m.Invoice.amount_paid > credited)
        .order_by(m.Invoice.id)))[0]
    pay = """mutation($input: PayInvoiceInput!) { payInvoice(input: $input) { userErrors { code } } }"""
    await api.gql(pay, {"input": {"invoiceId": to_global_id("Invoice", invoice_id), "idempotencyKey": "p"}}, as_=OWNER)
    data = await api.gql(PROVENANCE, {"id": to_global_id("Invoice", invoice_id)}, as_=OWNER)
    entry = data["node"]["payments"][-1]["walletEntry"]
    parts_ = [cents(f["amount"]) for f in entry["fundedBy"]]
    assert sum(parts_) == -cents(entry["amount"]) == due and len(parts_) >= 2
    assert parts_[0] == credited and entry["fundedBy"][0]["entry"]["source"]["id"] == payout


@pytest.mark.parametrize("who", [MEMBER, "support@revampd.example", BILLING])
async def test_every_payout_mutation_is_the_partner_admins_alone(api: Api, who: str) -> None:
    payout, available = await available_payout(api)
    transfer = (await call(api, TRANSFER, payoutId=payout, amount="1.00", idempotencyKey="t"))["bankTransfer"]["id"]
    refused = [
        await call(api, CREDIT, who, payoutId=payout, idempotencyKey="k"),
        await call(api, TRANSFER, who, payoutId=payout, idempotencyKey="k"),
        await call(api, SPLIT, who, payoutId=payout, walletAmount="1.00", idempotencyKey="k"),
        await call(api, CANCEL, who, bankTransferId=transfer),
        await call(api, PREFERENCE, who, mode="CREDIT"),
    ]
    assert [error(r)[0] for r in refused] == ["FORBIDDEN"] * 5
    p = await read(api, payout)
    assert parts(p) == (available - 100, 0, 100, 0) and p["transfers"][0]["status"] == "PENDING"
