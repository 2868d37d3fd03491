"""The wallet through the GraphQL API: Revampd billing adjusts it and applies affiliate
payouts to it; every movement is one ledger transfer, made at most once."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from db import models as m
from db.engine import create_engine, read_sessions, write_sessions
from schema.base import to_global_id
from services import ledger
from services import wallet as wallet_service
from tests.clock import NOW
from tests.conftest import Api

OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"
BLUEBIRD = "owner@bluebird.example"
CEDAR = "owner@cedar.example"
SUPPORT = "support@revampd.example"
BILLING = "billing@revampd.example"

ENTRY = """id amount { amount currencyCode } kind balanceAfter { amount } memo createdBy { email }
  source { __typename id }"""
ADJUST = f"""mutation($input: AdjustWalletInput!) {{ adjustWallet(input: $input) {{
  wallet {{ balance {{ amount currencyCode }} }} walletEntry {{ {ENTRY} }}
  userErrors {{ field code message }} clientMutationId }} }}"""
STATEMENT = """{ viewer { partner { revampdConnection { wallet { balance { amount }
  entries(first: 3) { nodes { id amount { amount } kind memo balanceAfter { amount } } } } } } } }"""


# ---- helpers ------------------------------------------------------------------------

async def connection_gid(api: Api, email: str) -> str:
    return to_global_id("RevampdConnection", await api.connection_id(email))


async def adjust(api: Api, email: str = OWNER, *, as_: str = BILLING, **input: Any) -> dict[str, Any]:
    """adjustWallet on `email`'s connection; input defaults to a credit of 25.00."""
    fields = {"connectionId": await connection_gid(api, email), "amount": "25.00", "kind": "MANUAL_ADJUSTMENT",
              "memo": "Goodwill credit for the March outage", "idempotencyKey": "adj-1", **input}
    return dict((await api.gql(ADJUST, {"input": fields}, as_=as_))["adjustWallet"])


def only_error(payload: dict[str, Any]) -> tuple[str, list[str] | None]:
    assert len(payload["userErrors"]) == 1, payload
    return payload["userErrors"][0]["code"], payload["userErrors"][0]["field"]


async def wallet(api: Api, email: str = OWNER) -> dict[str, Any]:
    """The wallet as its Partner's admin sees it: balance and the newest entries."""
    data = await api.gql(STATEMENT, as_=email)
    return dict(data["viewer"]["partner"]["revampdConnection"]["wallet"])


async def balance(api: Api, email: str = OWNER) -> Decimal:
    return Decimal((await wallet(api, email))["balance"]["amount"])


async def system_balance(api: Api, kind: str) -> int:
    """Revampd's balance of one kind of its accounts, over its parts (one per connection)."""
    A = m.LedgerAccount
    rows = await api.rows(select(func.coalesce(func.sum(A.balance), 0)).where(A.kind == kind, A.currency_code == "USD"))
    return int(rows[0][0])


async def transfers(api: Api) -> int:
    return int((await api.rows(select(func.count()).select_from(m.LedgerTransfer)))[0][0])


async def keys(api: Api) -> list[tuple[str, str]]:
    rows = await api.rows(select(m.IdempotencyKey.key, m.IdempotencyKey.operation).order_by(m.IdempotencyKey.id))
    return [(r[0], r[1]) for r in rows]


async def ledger_problems(api: Api) -> list[str]:
    engine = create_engine(api.settings.database_url)
    try:
        async with read_sessions(engine)() as session:
            return await ledger.verify(session)
    finally:
        await engine.dispose()


async def execute(api: Api, stmt: Any) -> None:
    engine = create_engine(api.settings.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(stmt)
    finally:
        await engine.dispose()


# ---- adjustWallet: credits and debits -------------------------------------------------

async def test_a_manual_credit_moves_money_from_adjustments_to_the_wallet(api: Api) -> None:
    before, funds = await balance(api), await system_balance(api, "ADJUSTMENTS")
    payload = await adjust(api, memo="  Goodwill credit for the March outage  ", clientMutationId="c-1")
    assert payload["userErrors"] == [] and payload["clientMutationId"] == "c-1"
    assert payload["wallet"]["balance"] == {"amount": str(before + Decimal("25.00")), "currencyCode": "USD"}
    entry = payload["walletEntry"]
    assert entry["amount"] == {"amount": "25.00", "currencyCode": "USD"}
    assert entry["kind"] == "MANUAL_ADJUSTMENT" and entry["memo"] == "Goodwill credit for the March outage"
    assert Decimal(entry["balanceAfter"]["amount"]) == before + 25
    assert entry["createdBy"] == {"email": BILLING} and entry["source"] is None
    # The Partner sees it at the top of its statement.
    seen = await wallet(api)
    assert Decimal(seen["balance"]["amount"]) == before + 25
    assert seen["entries"]["nodes"][0]["id"] == entry["id"]
    assert await system_balance(api, "ADJUSTMENTS") == funds - 2500
    assert await ledger_problems(api) == []


async def test_a_revenue_share_credit_comes_from_the_revenue_share_account(api: Api) -> None:
    before = await balance(api, BLUEBIRD)
    funds, adjustments = await system_balance(api, "REVENUE_SHARE"), await system_balance(api, "ADJUSTMENTS")
    payload = await adjust(api, BLUEBIRD, amount="120.40", kind="REVENUE_SHARE", memo="Revenue share, Q3")
    assert payload["userErrors"] == []
    assert payload["walletEntry"]["kind"] == "REVENUE_SHARE" and payload["walletEntry"]["amount"]["amount"] == "120.40"
    assert await balance(api, BLUEBIRD) == before + Decimal("120.40")
    assert await system_balance(api, "REVENUE_SHARE") == funds - 12040
    assert await system_balance(api, "ADJUSTMENTS") == adjustments


async def test_a_negative_amount_takes_credit_back_to_revenue(api: Api) -> None:
    before, funds = await balance(api), await system_balance(api, "ADJUSTMENTS")
    payload = await adjust(api, amount="-10.5", memo="Credit given twice by mistake")
    assert payload["userErrors"] == []
    assert payload["walletEntry"]["amount"]["amount"] == "-10.50"
    assert payload["walletEntry"]["kind"] == "MANUAL_ADJUSTMENT"
    assert Decimal(payload["wallet"]["balance"]["amount"]) == before - Decimal("10.50") == await balance(api)
    assert await system_balance(api, "ADJUSTMENTS") == funds + 1050
    assert await ledger_problems(api) == []


async def test_a_debit_can_take_the_wallet_to_zero_but_never_below(api: Api) -> None:
    before, count = await balance(api), await transfers(api)
    over = await adjust(api, amount=str(-(before + Decimal("0.01"))), idempotencyKey="too-much")
    assert only_error(over) == ("INSUFFICIENT_FUNDS", ["input", "amount"])
    assert over["wallet"] is None and over["walletEntry"] is None
    message = over["userErrors"][0]["message"]
    assert f"{before:,.2f} USD" in message and "0.01 USD more" in message, message
    assert await balance(api) == before and await transfers(api) == count
    assert await keys(api) == [], "a refused request leaves its key unused"
    # The same key, with an amount the wallet covers, then goes through.
    exact = await adjust(api, amount=str(-before), idempotencyKey="too-much")
    assert exact["userErrors"] == [] and Decimal(exact["wallet"]["balance"]["amount"]) == 0
    assert Decimal(exact["walletEntry"]["balanceAfter"]["amount"]) == 0
    assert only_error(await adjust(api, amount="-0.01", idempotencyKey="empty")) == (
        "INSUFFICIENT_FUNDS", ["input", "amount"])
    assert await ledger_problems(api) == []


# ---- adjustWallet: who, and what input ------------------------------------------------

@pytest.mark.parametrize("who", [OWNER, MEMBER, SUPPORT])
async def test_only_billing_admins_adjust_wallets(api: Api, who: str) -> None:
    before, count = await balance(api), await transfers(api)
    payload = await adjust(api, as_=who)
    assert only_error(payload) == ("FORBIDDEN", None) and payload["walletEntry"] is None
    assert "BILLING_ADMIN" in payload["userErrors"][0]["message"]
    assert await balance(api) == before and await transfers(api) == count and await keys(api) == []


@pytest.mark.parametrize("amount", ["", "abc", "0", "0.00", "-0", "1.234", "1e3", "NaN", "Infinity",
                                    "10000000000.01", " "])
async def test_the_amount_is_a_non_zero_decimal_string_in_the_connections_currency(api: Api, amount: str) -> None:
    count = await transfers(api)
    payload = await adjust(api, amount=amount)
    assert only_error(payload) == ("INVALID_AMOUNT", ["input", "amount"])
    assert "amount" in payload["userErrors"][0]["message"]
    assert await transfers(api) == count and await keys(api) == []


@pytest.mark.parametrize("memo", ["", "   ", "x" * 501, "  " + "x" * 501])
async def test_a_memo_of_1_to_500_characters_is_required(api: Api, memo: str) -> None:
    count = await transfers(api)
    payload = await adjust(api, memo=memo)
    assert only_error(payload) == ("INVALID_MEMO", ["input", "memo"])
    assert await transfers(api) == count


async def test_a_memo_is_trimmed_before_it_is_measured(api: Api) -> None:
    payload = await adjust(api, memo="  " + "x" * 500 + "\n")
    assert payload["userErrors"] == [] and payload["walletEntry"]["memo"] == "x" * 500


async def test_a_connection_that_does_not_exist_is_not_found(api: Api) -> None:
    count = await transfers(api)
    for gid in (to_global_id("RevampdConnection", 10**6), to_global_id("Invoice", 1), "nonsense"):
        payload = await adjust(api, connectionId=gid)
        assert only_error(payload) == ("NOT_FOUND", ["input", "connectionId"])
    assert await transfers(api) == count


async def test_the_idempotency_key_is_required(api: Api) -> None:
    doc = """mutation($c: ID!) { adjustWallet(input: {connectionId: $c, amount: "1.00", kind: MANUAL_ADJUSTMENT,
      memo: "m"}) { userErrors { code } } }"""
    errors = await api.errors(doc, {"c": await connection_gid(api, OWNER)}, as_=BILLING)
    assert "idempotencyKey" in errors[0]["message"]
    for key in ("", " ", "x" * 201, "tab\there"):
        assert only_error(await adjust(api, idempotencyKey=key)) == (
            "INVALID_IDEMPOTENCY_KEY", ["input", "idempotencyKey"])


# ---- adjustWallet: at most once ---------------------------------------------------------

async def test_a_retried_adjustment_answers_with_the_first_entry_and_moves_nothing(api: Api) -> None:
    first = await adjust(api)
    count, after = await transfers(api), await balance(api)
    await adjust(api, BLUEBIRD, idempotencyKey="other")  # the world moves on
    for retry in ({}, {"amount": "25", "memo": " Goodwill credit for the March outage ", "clientMutationId": "r"}):
        again = await adjust(api, **retry)
        assert again["userErrors"] == [] and again["walletEntry"] == first["walletEntry"]
        assert again["wallet"] == first["wallet"]
    assert await balance(api) == after and await transfers(api) == count + 1
    assert await keys(api) == [("adj-1", "adjustWallet"), ("other", "adjustWallet")]


async def test_the_same_key_with_other_input_is_refused_and_moves_nothing(api: Api) -> None:
    await adjust(api)
    count, after = await transfers(api), await balance(api)
    for other in ({"amount": "25.01"}, {"memo": "Another reason"}, {"kind": "REVENUE_SHARE"},
                  {"connectionId": await connection_gid(api, CEDAR)}):
        payload = await adjust(api, **other)
        assert only_error(payload) == ("IDEMPOTENCY_KEY_REUSED", ["input", "idempotencyKey"])
        assert payload["walletEntry"] is None
    assert await balance(api) == after and await transfers(api) == count


async def test_keys_belong_to_the_user_so_a_ticket_key_is_refused_here(api: Api) -> None:
    doc = """mutation { submitTicket(input: {title: "t", description: "d", priority: LOW, idempotencyKey: "k"}) {
      userErrors { code } } }"""
    assert (await api.gql(doc, as_=OWNER))["submitTicket"]["userErrors"] == []
    assert (await adjust(api, idempotencyKey="k"))["userErrors"] == [], "the owner's key is not billing's"


async def test_even_a_lost_idempotency_row_cannot_move_money_twice(api: Api) -> None:
    """The transfer's key comes from the idempotency key: the ledger itself refuses a second move."""
    first = await adjust(api)
    count, after = await transfers(api), await balance(api)
    await execute(api, delete(m.IdempotencyKey))
    again = await adjust(api)
    assert again["userErrors"] == [] and again["walletEntry"]["id"] == first["walletEntry"]["id"]
    assert await balance(api) == after and await transfers(api) == count
    await execute(api, delete(m.IdempotencyKey))
    other = await adjust(api, amount="99.00")
    assert only_error(other) == ("IDEMPOTENCY_KEY_REUSED", ["input", "idempotencyKey"])
    assert await balance(api) == after and await transfers(api) == count


async def test_20_concurrent_retries_of_one_adjustment_move_money_once(api: Api) -> None:
    before, count = await balance(api), await transfers(api)
    variables = {"input": {"connectionId": await connection_gid(api, OWNER), "amount": "7.00",
                           "kind": "MANUAL_ADJUSTMENT", "memo": "Retry storm", "idempotencyKey": "storm"}}
    responses = await asyncio.gather(*(api.post(ADJUST, variables, as_=BILLING) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    payloads = [r.json()["data"]["adjustWallet"] for r in responses]
    assert all(p["userErrors"] == [] for p in payloads), payloads
    assert len({p["walletEntry"]["id"] for p in payloads}) == 1
    assert await balance(api) == before + 7 and await transfers(api) == count + 1
    assert await ledger_problems(api) == []


async def test_20_concurrent_debits_never_overdraw_the_wallet(api: Api) -> None:
    before, count = await balance(api), await transfers(api)
    step = (before / 10).quantize(Decimal("0.01"), rounding="ROUND_DOWN") + Decimal("0.01")  # 9 fit, not 10
    gid = await connection_gid(api, OWNER)
    responses = await asyncio.gather(*(
        api.post(ADJUST, {"input": {"connectionId": gid, "amount": str(-step), "kind": "MANUAL_ADJUSTMENT",
                                    "memo": "Debit", "idempotencyKey": f"debit-{n}"}}, as_=BILLING)
        for n in range(20)
    ))
    assert [r.status_code for r in responses] == [200] * 20
    outcomes = Counter(p["userErrors"][0]["code"] if p["userErrors"] else "moved"
                       for p in (r.json()["data"]["adjustWallet"] for r in responses))
    assert outcomes == {"moved": 9, "INSUFFICIENT_FUNDS": 11}
    assert await balance(api) == before - 9 * step >= 0
    assert await transfers(api) == count + 9
    assert await ledger_problems(api) == []


# ---- applyAffiliatePayout --------------------------------------------------------------

APPLY = """mutation($input: ApplyAffiliatePayoutInput!) { applyAffiliatePayout(input: $input) {
  affiliatePayout { id creditStatus appliedAt amount { amount } walletEntry { id } }
  walletEntry { id amount { amount currencyCode } kind memo createdBy { email }
    source { __typename ... on AffiliatePayout { id creditStatus } } }
  wallet { balance { amount } }
  userErrors { field code message } clientMutationId } }"""
PAYOUTS = """{ viewer { partner { revampdConnection { affiliatePayouts(first: 50) {
  nodes { id creditStatus appliedAt amount { amount } walletEntry { id amount { amount } } } } } } } }"""


async def affiliate_payouts(api: Api, email: str, status: str | None = None) -> list[tuple[int, int]]:
    """(id, amount) of `email`'s connection's affiliate payouts, oldest first."""
    stmt = select(m.AffiliatePayout.id, m.AffiliatePayout.amount).where(
        m.AffiliatePayout.connection_id == await api.connection_id(email)
    ).order_by(m.AffiliatePayout.period_end, m.AffiliatePayout.id)
    if status is not None:
        stmt = stmt.where(m.AffiliatePayout.credit_status == status)
    return [(r[0], r[1]) for r in await api.rows(stmt)]


async def apply(api: Api, payout_id: int, *, as_: str = BILLING, **input: Any) -> dict[str, Any]:
    fields = {"affiliatePayoutId": to_global_id("AffiliatePayout", payout_id), **input}
    return dict((await api.gql(APPLY, {"input": fields}, as_=as_))["applyAffiliatePayout"])


async def as_partner_sees(api: Api, email: str) -> dict[str, dict[str, Any]]:
    data = await api.gql(PAYOUTS, as_=email)
    return {n["id"]: n for n in data["viewer"]["partner"]["revampdConnection"]["affiliatePayouts"]["nodes"]}


async def test_applying_a_pending_affiliate_payout_credits_its_wallet(api: Api) -> None:
    [(pid, amount), *_] = await affiliate_payouts(api, OWNER, "PENDING")
    before, program = await balance(api), await system_balance(api, "AFFILIATE_PROGRAM")
    payload = await apply(api, pid, clientMutationId="ap-1")
    assert payload["userErrors"] == [] and payload["clientMutationId"] == "ap-1"
    gid = to_global_id("AffiliatePayout", pid)
    credited = Decimal(amount) / 100
    assert payload["affiliatePayout"]["id"] == gid and payload["affiliatePayout"]["creditStatus"] == "APPLIED"
    assert payload["affiliatePayout"]["appliedAt"] is not None
    entry = payload["walletEntry"]
    assert entry["kind"] == "AFFILIATE_PAYOUT" and Decimal(entry["amount"]["amount"]) == credited
    assert entry["memo"].startswith("Affiliate payout (") and entry["createdBy"] == {"email": BILLING}
    assert entry["source"] == {"__typename": "AffiliatePayout", "id": gid, "creditStatus": "APPLIED"}
    assert payload["affiliatePayout"]["walletEntry"] == {"id": entry["id"]}
    assert Decimal(payload["wallet"]["balance"]["amount"]) == before + credited == await balance(api)
    assert await system_balance(api, "AFFILIATE_PROGRAM") == program - amount
    # The Partner sees it applied, with the credit on its statement.
    seen = (await as_partner_sees(api, OWNER))[gid]
    assert seen["creditStatus"] == "APPLIED" and seen["walletEntry"]["id"] == entry["id"]
    assert (await wallet(api))["entries"]["nodes"][0]["id"] == entry["id"]
    rows = await api.rows(select(m.LedgerTransfer.key, m.LedgerTransfer.affiliate_payout_id)
                          .where(m.LedgerTransfer.affiliate_payout_id == pid))
    assert rows == [(f"affiliate_payout:{pid}:credit", pid)]
    assert await ledger_problems(api) == []


async def test_an_applied_affiliate_payout_is_refused_and_moves_nothing(api: Api) -> None:
    [(pid, _), *_] = await affiliate_payouts(api, OWNER, "PENDING")
    first = await apply(api, pid)
    after, count = await balance(api), await transfers(api)
    again = await apply(api, pid)
    assert only_error(again) == ("ALREADY_APPLIED", ["input", "affiliatePayoutId"])
    assert again["affiliatePayout"] is None and again["walletEntry"] is None
    [(old, _), *_] = await affiliate_payouts(api, OWNER, "APPLIED")  # applied by the demo history
    assert only_error(await apply(api, old)) == ("ALREADY_APPLIED", ["input", "affiliatePayoutId"])
    assert await balance(api) == after and await transfers(api) == count
    assert first["affiliatePayout"]["appliedAt"] == (await as_partner_sees(api, OWNER))[
        first["affiliatePayout"]["id"]]["appliedAt"], "applied once, at the first time"


async def test_a_retry_with_its_idempotency_key_answers_with_the_first_application(api: Api) -> None:
    [(pid, _), *_] = await affiliate_payouts(api, BLUEBIRD, "PENDING")
    first = await apply(api, pid, idempotencyKey="apply-1")
    after, count = await balance(api, BLUEBIRD), await transfers(api)
    again = await apply(api, pid, idempotencyKey="apply-1")
    assert again["userErrors"] == [] and again["walletEntry"] == first["walletEntry"]
    assert again["affiliatePayout"] == first["affiliatePayout"]
    assert await balance(api, BLUEBIRD) == after and await transfers(api) == count
    [(other, _), *_] = await affiliate_payouts(api, BLUEBIRD, "PENDING")
    assert only_error(await apply(api, other, idempotencyKey="apply-1")) == (
        "IDEMPOTENCY_KEY_REUSED", ["input", "idempotencyKey"])


@pytest.mark.parametrize("who", [OWNER, MEMBER, SUPPORT])
async def test_only_billing_admins_apply_affiliate_payouts(api: Api, who: str) -> None:
    [(pid, _), *_] = await affiliate_payouts(api, OWNER, "PENDING")
    before, count = await balance(api), await transfers(api)
    payload = await apply(api, pid, as_=who)
    assert only_error(payload) == ("FORBIDDEN", None) and payload["affiliatePayout"] is None
    assert await balance(api) == before and await transfers(api) == count
    assert (await as_partner_sees(api, OWNER))[to_global_id("AffiliatePayout", pid)]["creditStatus"] == "PENDING"


async def test_an_affiliate_payout_that_does_not_exist_is_not_found(api: Api) -> None:
    for gid in (to_global_id("AffiliatePayout", 10**6), to_global_id("Payout", 1), "nonsense"):
        payload = dict((await api.gql(APPLY, {"input": {"affiliatePayoutId": gid}}, as_=BILLING))
                       ["applyAffiliatePayout"])
        assert only_error(payload) == ("NOT_FOUND", ["input", "affiliatePayoutId"])


async def test_20_concurrent_applications_credit_the_payout_once(api: Api) -> None:
    """Runs on whichever database the suite runs on (SQLite, or PostgreSQL with TEST_DATABASE_URL)."""
    [(pid, amount), *_] = await affiliate_payouts(api, OWNER, "PENDING")
    before, count = await balance(api), await transfers(api)
    variables = {"input": {"affiliatePayoutId": to_global_id("AffiliatePayout", pid)}}
    responses = await asyncio.gather(*(api.post(APPLY, variables, as_=BILLING) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    payloads = [r.json()["data"]["applyAffiliatePayout"] for r in responses]
    outcomes = Counter(p["userErrors"][0]["code"] if p["userErrors"] else "applied" for p in payloads)
    assert outcomes == {"applied": 1, "ALREADY_APPLIED": 19}
    assert await balance(api) == before + Decimal(amount) / 100
    assert await transfers(api) == count + 1
    assert await ledger_problems(api) == []


async def test_the_billing_run_applies_every_pending_payout_of_one_connection(api: Api) -> None:
    """services.wallet.apply_pending_affiliate_payouts, as the billing run calls it."""
    pending = await affiliate_payouts(api, OWNER, "PENDING")
    others = await affiliate_payouts(api, BLUEBIRD, "PENDING")
    assert len(pending) >= 2 and others
    before = await balance(api)
    cid, now = await api.connection_id(OWNER), NOW
    engine = create_engine(api.settings.database_url)
    try:
        for expected in (pending, []):  # a second run finds nothing left to apply
            async with write_sessions(engine)() as session, session.begin():
                applied = await wallet_service.apply_pending_affiliate_payouts(session, cid, now)
            assert [(a.payout.id, a.movement.entry.amount) for a in applied] == expected
    finally:
        await engine.dispose()
    assert await balance(api) == before + Decimal(sum(amount for _, amount in pending)) / 100
    seen = await as_partner_sees(api, OWNER)
    assert {n["creditStatus"] for n in seen.values()} == {"APPLIED"}
    assert await affiliate_payouts(api, BLUEBIRD, "PENDING") == others, "another connection's stay pending"
    assert await ledger_problems(api) == []
