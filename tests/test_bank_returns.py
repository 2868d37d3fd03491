"""A bank transfer the bank sends back after it was PAID (an ACH return: R02 account closed,
R03 no account): through the signed webhook, its amount is available on the payout again,
once however the events are replayed or reordered, and the ledger still verifies."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from server import cli
from server.webhooks import SIGNATURE_HEADER
from tests.conftest import Api
from tests.test_payouts import (
    CREDIT,
    OWNER,
    PAYOUT,
    SPLIT,
    TRANSFER,
    available_payout,
    call,
    cents,
    gateway_ref,
    parts,
    verify,
    webhook,
    with_bank_account,
)

RETURNED: dict[str, Any] = {"failure_code": "R02", "failure_message": "Account closed"}
READ = f"""query($id: ID!) {{ node(id: $id) {{ ... on Payout {{ {PAYOUT}
  transfers {{ id status paidAt returnedAt returnCode returnReason amount {{ amount }} }} }} }} }}"""


async def read(api: Api, payout: str) -> dict[str, Any]:
    return dict((await api.gql(READ, {"id": payout}, as_=OWNER))["node"])


async def test_a_return_after_paid_makes_the_amount_available_again_to_credit_or_send_elsewhere(api: Api) -> None:
    payout, available = await available_payout(api)
    transfer = (await call(api, TRANSFER, payoutId=payout, idempotencyKey="t1"))["bankTransfer"]["id"]
    ref = await gateway_ref(api, transfer)
    assert (await webhook(api, "evt_paid", "bank_transfer.paid", ref)).json()["result"] == "applied"
    assert parts(await read(api, payout)) == (0, 0, 0, available)

    returned = await webhook(api, "evt_returned", "bank_transfer.returned", ref, **RETURNED)
    assert returned.status_code == 200 and returned.json()["result"] == "applied"
    p = await read(api, payout)
    [t] = p["transfers"]
    assert (p["status"], parts(p)) == ("AVAILABLE", (available, 0, 0, 0))
    assert (t["status"], t["returnCode"], t["returnReason"]) == ("RETURNED", "R02", "Account closed")
    assert t["paidAt"] is not None and t["returnedAt"] >= t["paidAt"]
    await verify(api)

    # The Partner sends half to another account and credits the rest to its wallet.
    await with_bank_account(api, OWNER, "ok")
    half = available // 2
    split = await call(api, SPLIT, payoutId=payout, walletAmount=f"{half / 100:.2f}", idempotencyKey="s1")
    assert split["userErrors"] == [], split
    assert parts(split["payout"]) == (0, half, available - half, 0)
    await verify(api)


async def test_a_replayed_or_early_return_is_applied_once_and_paid_after_it_is_stale(api: Api) -> None:
    payout, available = await available_payout(api)
    transfer = (await call(api, TRANSFER, payoutId=payout, idempotencyKey="t1"))["bankTransfer"]["id"]
    ref = await gateway_ref(api, transfer)
    outcomes = []
    # The return arrives before paid (and in transit), each delivered twice at once.
    for event_id, kind in (("evt_ret", "bank_transfer.returned"), ("evt_paid", "bank_transfer.paid"),
                           ("evt_transit", "bank_transfer.in_transit"), ("evt_ret", "bank_transfer.returned")):
        responses = await asyncio.gather(*(webhook(api, event_id, kind, ref, **RETURNED) for _ in range(2)))
        assert [r.status_code for r in responses] == [200, 200]
        outcomes += [r.json()["result"] for r in responses]
    assert Counter(outcomes) == {"applied": 1, "stale": 2, "duplicate": 5}
    p = await read(api, payout)
    assert (p["status"], p["transfers"][0]["status"], parts(p)) == ("AVAILABLE", "RETURNED", (available, 0, 0, 0))
    credited = await call(api, CREDIT, payoutId=payout, idempotencyKey="c1")
    assert parts(credited["payout"]) == (0, available, 0, 0)
    # A second return of the same transfer (another event id) moves nothing: never negative.
    again = await webhook(api, "evt_ret_2", "bank_transfer.returned", ref, **RETURNED)
    assert again.json()["result"] == "stale"
    assert cents((await read(api, payout))["availableAmount"]) == 0
    await verify(api)


async def test_money_that_never_left_cannot_come_back(api: Api) -> None:
    payout, available = await available_payout(api)
    transfer = (await call(api, TRANSFER, payoutId=payout, idempotencyKey="t1"))["bankTransfer"]["id"]
    ref = await gateway_ref(api, transfer)
    await webhook(api, "evt_failed", "bank_transfer.failed", ref, failure_code="no_account")
    returned = await webhook(api, "evt_returned", "bank_transfer.returned", ref, **RETURNED)
    assert returned.json()["result"] == "stale"
    p = await read(api, payout)
    assert (p["transfers"][0]["status"], p["transfers"][0]["returnCode"], parts(p)) == (
        "FAILED", None, (available, 0, 0, 0))
    await verify(api)


async def test_the_sandboxs_returning_account_is_paid_then_returned_by_its_webhooks(api: Api) -> None:
    """What `revampd-bff payouts sandbox-webhooks` sends for the account 000333333338."""
    payout, available = await available_payout(api)
    await with_bank_account(api, OWNER, "return")
    transfer = (await call(api, TRANSFER, payoutId=payout, idempotencyKey="t"))["bankTransfer"]["id"]
    ref = await gateway_ref(api, transfer)
    events = [e for r, e in await cli._sandbox_events(None, api.settings.database_url) if r == ref]
    assert [e.type for e in events] == ["bank_transfer.in_transit", "bank_transfer.paid", "bank_transfer.returned"]
    for event in events:
        body, header = cli.sandbox_webhook(api.settings.bank_webhook_secret, ref, event, int(time.time()))
        response = await api.http.post("/webhooks/bank-transfers", content=body, headers={SIGNATURE_HEADER: header})
        assert response.json()["result"] == "applied"
    p = await read(api, payout)
    assert (p["transfers"][0]["status"], p["transfers"][0]["returnCode"], parts(p)) == (
        "RETURNED", "R02", (available, 0, 0, 0))
    await verify(api)
