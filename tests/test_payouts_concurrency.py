"""Payouts under concurrency, on SQLite and PostgreSQL: however many dispositions, replays
and webhooks arrive at once, exactly what was available is disposed of, once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from db import models as m
from schema.base import from_global_id
from tests.conftest import Api
from tests.test_payouts import (
    CANCEL,
    CREDIT,
    OWNER,
    SPLIT,
    TRANSFER,
    available_payout,
    cents,
    dollars,
    gateway_ref,
    parts,
    read,
    verify,
    wallet_balance,
    webhook,
)


async def at_once(api: Api, calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Send every call at once as the owner; each answers 200 with no top-level error."""
    responses = await asyncio.gather(*(api.post(q, {"input": i}, as_=OWNER) for q, i in calls))
    assert Counter(r.status_code for r in responses) == {200: len(calls)}, [r.text for r in responses][:3]
    bodies = [r.json() for r in responses]
    assert [b for b in bodies if b.get("errors")] == []
    return [next(iter(b["data"].values())) for b in bodies]


async def test_50_concurrent_dispositions_never_dispose_of_more_than_was_available(api: Api) -> None:
    payout, available = await available_payout(api)
    before = await wallet_balance(api)
    piece = available // 20
    calls = [(CREDIT if n % 2 else TRANSFER, {"payoutId": payout, "idempotencyKey": f"k{n}", "amount": dollars(piece)})
             for n in range(50)]
    results = await at_once(api, calls)
    done = [r for r in results if not r["userErrors"]]
    refused = Counter(r["userErrors"][0]["code"] for r in results if r["userErrors"])
    assert set(refused) <= {"EXCEEDS_AVAILABLE", "NOTHING_AVAILABLE"}
    disposed = sum(cents(r["disposition"]["walletAmount"]) + cents(r["disposition"]["bankAmount"]) for r in done)
    wallet = sum(cents(r["disposition"]["walletAmount"]) for r in done)
    p = await read(api, payout)
    assert disposed == available - parts(p)[0] <= available
    assert parts(p)[1] == wallet == await wallet_balance(api) - before
    # 20 pieces fit; the 21st would not.
    assert len(p["dispositions"]) == len(done) == 20 and parts(p)[0] == available - 20 * piece < piece
    await verify(api)


async def test_50_concurrent_requests_for_all_of_it_dispose_of_it_once(api: Api) -> None:
    payout, available = await available_payout(api)
    calls = [(CREDIT if n % 2 else TRANSFER, {"payoutId": payout, "idempotencyKey": f"all{n}"}) for n in range(50)]
    results = await at_once(api, calls)
    assert Counter(r["userErrors"][0]["code"] if r["userErrors"] else "done" for r in results) == {
        "done": 1, "NOTHING_AVAILABLE": 49}
    p = await read(api, payout)
    assert parts(p)[0] == 0 and sum(parts(p)) == available and len(p["dispositions"]) == 1
    await verify(api)


async def test_100_concurrent_replays_of_one_split_move_money_once(api: Api) -> None:
    payout, available = await available_payout(api)
    before = await wallet_balance(api)
    results = await at_once(api, [(SPLIT, {"payoutId": payout, "walletAmount": "25.00", "idempotencyKey": "one"})] * 100)
    assert all(r["userErrors"] == [] for r in results)
    assert len({r["bankTransfer"]["id"] for r in results}) == 1
    p = await read(api, payout)
    assert parts(p)[:3] == (0, 2500, available - 2500) and len(p["dispositions"]) == 1
    assert await wallet_balance(api) == before + 2500
    parsed = from_global_id(payout)
    assert parsed is not None
    transfers = await api.rows(select(func.count()).select_from(m.BankTransfer).where(
        m.BankTransfer.payout_id == parsed[1]))
    assert transfers[0][0] == 1
    await verify(api)


async def test_concurrent_duplicate_webhooks_apply_each_event_once(api: Api) -> None:
    payout, available = await available_payout(api)
    transfer = (await at_once(api, [(TRANSFER, {"payoutId": payout, "idempotencyKey": "t"})]))[0]["bankTransfer"]
    ref = await gateway_ref(api, transfer["id"])
    events = [("evt_fail", "bank_transfer.failed"), ("evt_transit", "bank_transfer.in_transit"),
              ("evt_paid", "bank_transfer.paid")] * 10
    responses = await asyncio.gather(*(webhook(api, e, k, ref) for e, k in events))
    assert Counter(r.status_code for r in responses) == {200: 30}
    outcomes = Counter(r.json()["result"] for r in responses)
    assert outcomes["duplicate"] == 27 and outcomes["applied"] >= 1
    p = await read(api, payout)
    status = p["transfers"][0]["status"]
    assert status in ("FAILED", "PAID")  # whichever final event came first; never both
    assert parts(p) == ((available, 0, 0, 0) if status == "FAILED" else (0, 0, 0, available))
    await verify(api)


async def test_a_cancel_racing_the_processor_either_cancels_or_is_refused(api: Api) -> None:
    payout, available = await available_payout(api)
    transfer = (await at_once(api, [(TRANSFER, {"payoutId": payout, "idempotencyKey": "t"})]))[0]["bankTransfer"]
    ref = await gateway_ref(api, transfer["id"])
    canceled, hook = await asyncio.gather(
        api.post(CANCEL, {"input": {"bankTransferId": transfer["id"]}}, as_=OWNER),
        webhook(api, "evt_race", "bank_transfer.in_transit", ref),
    )
    errors = canceled.json()["data"]["cancelBankTransfer"]["userErrors"]
    p = await read(api, payout)
    if errors:
        assert errors[0]["code"] == "NOT_CANCELABLE" and hook.json()["result"] == "applied"
        assert (p["transfers"][0]["status"], parts(p)) == ("IN_TRANSIT", (0, 0, available, 0))
    else:
        assert hook.json()["result"] == "stale"
        assert (p["transfers"][0]["status"], parts(p)) == ("CANCELED", (available, 0, 0, 0))
    await verify(api)
