"""Clawbacks: a Sub-Org transaction refunded or charged back after it was recorded takes the
Partner's share of it back from payouts, never from the wallet: from the payout it was counted
in while money is available there, the rest from the connection's next payouts.

Through the graph (recordClawbacks, as Revampd billing; what the Partner reads), the feed
(`revampd-bff payouts import`) and `payouts close-period`, on whichever database the suite
runs (TEST_DATABASE_URL for PostgreSQL). Each test has a fresh copy of the demo data.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from db import models as m
from schema.base import from_global_id, to_global_id
from server import jobs
from services import clawbacks
from tests.clock import NOW
from tests.conftest import Api
from tests.test_earnings import (
    BILLING,
    BLUEBIRD,
    DAY,
    HOUR,
    MEMBER,
    OWNER,
    SUPPORT,
    cli,
    close_period,
    gid,
    month_start,
    payout_lines,
    prefer,
    record,
    tx,
    verify,
    write,
)

CLAWBACK = """id externalId kind reason createdAt amount { amount currencyCode } takenAmount { amount }
  outstanding { amount } transaction { id externalId partnerAmount { amount } } payout { id }
  recoveries { amount { amount } payout { id } }"""
PAYOUT = """id status amount { amount } availableAmount { amount } walletAmount { amount }
  bankAmountInFlight { amount } bankAmountPaid { amount } clawedBack { amount }
  clawbacks { id externalId transaction { externalId } }"""
RECORD = f"""mutation($input: RecordClawbacksInput!) {{ recordClawbacks(input: $input) {{
  clawbacks {{ {CLAWBACK} }} duplicates payouts {{ {PAYOUT} }}
  revampdConnection {{ id clawbackOutstanding {{ amount }} }} userErrors {{ field code message }} clientMutationId }} }}"""
READ_PAYOUT = f"query($id: ID!) {{ node(id: $id) {{ ... on Payout {{ {PAYOUT} }} }} }}"
MINE = f"""{{ viewer {{ partner {{ revampdConnection {{ id wallet {{ balance {{ amount }} }}
  clawbackOutstanding {{ amount }} clawbacks {{ {CLAWBACK} }}
  payouts(first: 1) {{ nodes {{ {PAYOUT} }} }}
  subOrgTransactions(first: 100) {{ nodes {{ externalId clawbacks {{ id externalId }} }} }} }} }} }} }}"""
CREDIT = """mutation($input: CreditPayoutInput!) { creditPayout(input: $input) {
  payout { id availableAmount { amount } } userErrors { field code message } } }"""


# ---- helpers ------------------------------------------------------------------------------

def cents(money: dict[str, Any]) -> int:
    return int(Decimal(money["amount"]) * 100)


def dollars(minor: int) -> str:
    return f"{Decimal(minor) / 100:.2f}"


def reversal(transaction: str, external_id: str, amount: str | None = None, kind: str = "REFUND",
             reason: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"transactionExternalId": transaction, "externalId": external_id, "kind": kind}
    if amount is not None:
        item["amount"] = amount
    if reason is not None:
        item["reason"] = reason
    return item


async def claw(api: Api, items: list[dict[str, Any]], *, email: str = OWNER, as_: str = BILLING,
               **input: Any) -> dict[str, Any]:
    fields = {"connectionId": await gid(api, email), "clawbacks": items, **input}
    return dict((await api.gql(RECORD, {"input": fields}, as_=as_))["recordClawbacks"])


def refused(payload: dict[str, Any]) -> list[tuple[list[str] | None, str]]:
    return [(e["field"], e["code"]) for e in payload["userErrors"]]


# The demo's own clawbacks (one per Partner, all taken, none outstanding): not this test's.
DEMO = "re_txn_"


async def mine(api: Api, email: str = OWNER) -> dict[str, Any]:
    """The connection as MINE reads it, with the clawbacks this test recorded."""
    state = dict((await api.gql(MINE, as_=email))["viewer"]["partner"]["revampdConnection"])
    state["clawbacks"] = [c for c in state["clawbacks"] if not c["externalId"].startswith(DEMO)]
    return state


async def payout(api: Api, payout_id: str, as_: str = OWNER) -> dict[str, Any]:
    return dict((await api.gql(READ_PAYOUT, {"id": payout_id}, as_=as_))["node"])


async def newest_payout(api: Api, email: str = OWNER) -> dict[str, Any]:
    return dict((await mine(api, email))["payouts"]["nodes"][0])


def parts(p: dict[str, Any]) -> dict[str, int]:
    return {key: cents(p[key]) for key in ("availableAmount", "walletAmount", "bankAmountInFlight", "bankAmountPaid",
                                           "clawedBack")}


async def wallet(api: Api, email: str = OWNER) -> int:
    return cents((await mine(api, email))["wallet"]["balance"])


async def clean(api: Api) -> None:
    assert await verify(api) == []


async def pay_out_this_month(api: Api, months: int = 1) -> Any:
    """`payouts close-period` as the first day of a later month would run it: pays out what
    was recorded until now."""
    return await close_period(api, month_start(NOW, months) + DAY)


async def credit(api: Api, payout_id: str, amount: str, key: str) -> dict[str, Any]:
    data = await api.gql(CREDIT, {"input": {"payoutId": payout_id, "amount": amount, "idempotencyKey": key}}, as_=OWNER)
    return dict(data["creditPayout"])


# ---- taken from the payout it was counted in --------------------------------------------------

async def test_a_clawback_smaller_than_what_is_available_is_taken_from_its_payout(api: Api) -> None:
    northwind = await api.connection_id(OWNER)
    await write(api, prefer(northwind, None))
    await record(api, OWNER, [tx("cb-1", "100.00")])  # Scale: 1.50 %, a share of 98.50
    await pay_out_this_month(api)
    before = await newest_payout(api)
    assert "cb-1" in [t["externalId"] for t in (await api.gql(
        "query($id: ID!) { node(id: $id) { ... on Payout { sourceTransactions { externalId } } } }",
        {"id": before["id"]}, as_=OWNER))["node"]["sourceTransactions"]]
    assert before["status"] == "AVAILABLE" and cents(before["clawedBack"]) == 0
    balance = await wallet(api)

    done = await claw(api, [reversal("cb-1", "re-1", "40.00", reason="Refunded at the Sub-Org's request")],
                      clientMutationId="m-1")
    assert done["userErrors"] == [] and done["duplicates"] == [] and done["clientMutationId"] == "m-1"
    [c] = done["clawbacks"]
    assert (c["externalId"], c["kind"], c["reason"], c["amount"], c["takenAmount"], c["outstanding"]) == (
        "re-1", "REFUND", "Refunded at the Sub-Org's request", {"amount": "40.00", "currencyCode": "USD"},
        {"amount": "40.00"}, {"amount": "0.00"})
    assert (c["transaction"]["externalId"], c["transaction"]["partnerAmount"], c["payout"]["id"]) == (
        "cb-1", {"amount": "98.50"}, before["id"])
    assert c["recoveries"] == [{"amount": {"amount": "40.00"}, "payout": {"id": before["id"]}}]
    [touched] = done["payouts"]
    assert touched["id"] == before["id"] and done["revampdConnection"]["clawbackOutstanding"] == {"amount": "0.00"}

    # What the Partner sees: the payout 40.00 less available, clawed back, still AVAILABLE (nothing
    # disposed of), with the clawback and the transaction it reverses.
    after = await payout(api, before["id"])
    assert parts(after) == {**parts(before), "availableAmount": parts(before)["availableAmount"] - 4000,
                            "clawedBack": 4000}
    assert after["status"] == "AVAILABLE" and touched == after
    assert after["clawbacks"] == [{"id": c["id"], "externalId": "re-1", "transaction": {"externalId": "cb-1"}}]
    state = await mine(api, MEMBER)
    assert [(x["externalId"], x["transaction"]["externalId"]) for x in state["clawbacks"]] == [("re-1", "cb-1")]
    assert state["clawbackOutstanding"] == {"amount": "0.00"}
    by_transaction = {t["externalId"]: t["clawbacks"] for t in state["subOrgTransactions"]["nodes"]}
    assert by_transaction["cb-1"] == [{"id": c["id"], "externalId": "re-1"}]
    assert await wallet(api) == balance, "a clawback never touches the wallet"

    # In the ledger: one CLAWBACK from the payout's account back to Sub-Org earnings.
    T, A = m.LedgerTransfer, m.LedgerAccount
    rows = await api.rows(select(T.kind, T.amount, A.code).join(A, A.id == T.credit_account_id)
                          .join(m.ClawbackRecovery, m.ClawbackRecovery.transfer_id == T.id)
                          .join(m.Clawback, m.Clawback.id == m.ClawbackRecovery.clawback_id)
                          .where(T.kind == "CLAWBACK", m.Clawback.external_id == "re-1"))
    assert rows == [("CLAWBACK", 4000, f"SUB_ORG_EARNINGS:USD:{northwind}")]
    await clean(api)


async def test_a_clawback_larger_than_what_is_left_takes_it_and_the_next_payouts_pay_the_rest(api: Api) -> None:
    northwind = await api.connection_id(OWNER)
    await write(api, prefer(northwind, None))
    await record(api, OWNER, [tx("big-1", "100.00")])  # a share of 98.50
    await pay_out_this_month(api)
    first = await newest_payout(api)
    # The Partner credits all but 10.00 of it to the wallet.
    assert (await credit(api, first["id"], dollars(parts(first)["availableAmount"] - 1000), "c-1"))["userErrors"] == []
    balance = await wallet(api)

    done = await claw(api, [reversal("big-1", "cb-big", kind="CHARGEBACK")])  # all of the share
    [c] = done["clawbacks"]
    assert (c["amount"], c["takenAmount"], c["outstanding"]) == ({"amount": "98.50", "currencyCode": "USD"},
                                                                 {"amount": "10.00"}, {"amount": "88.50"})
    now = await payout(api, first["id"])
    assert (cents(now["availableAmount"]), cents(now["clawedBack"]), now["status"]) == (0, 1000, "COMPLETED")
    assert parts(now)["walletAmount"] == parts(first)["availableAmount"] - 1000
    assert (await mine(api))["clawbackOutstanding"] == {"amount": "88.50"}
    assert await wallet(api) == balance, "what the payout could not give is not taken from the wallet"
    await clean(api)

    # The next payout is funded in full, then pays 88.50 less: here all of it is credited to the wallet.
    await write(api, prefer(northwind, "CREDIT"))
    await record(api, OWNER, [tx("next-1", "200.00")])  # a share of 197.00
    run = await pay_out_this_month(api, 2)
    second = await newest_payout(api)
    assert second["id"] != first["id"]
    assert (cents(second["amount"]), parts(second)) == (19700, {
        "availableAmount": 0, "walletAmount": 19700 - 8850, "bankAmountInFlight": 0, "bankAmountPaid": 0,
        "clawedBack": 8850})
    assert second["status"] == "COMPLETED"
    assert second["clawbacks"] == [{"id": c["id"], "externalId": "cb-big", "transaction": {"externalId": "big-1"}}]
    assert await wallet(api) == balance + 19700 - 8850
    state = await mine(api)
    assert state["clawbackOutstanding"] == {"amount": "0.00"}
    [listed] = state["clawbacks"]
    assert (listed["outstanding"], listed["takenAmount"]) == ({"amount": "0.00"}, {"amount": "98.50"})
    assert listed["recoveries"] == [{"amount": {"amount": "10.00"}, "payout": {"id": first["id"]}},
                                    {"amount": {"amount": "88.50"}, "payout": {"id": second["id"]}}]
    line = next(line for line in payout_lines(run) if line.startswith("Northwind Agency"))
    assert "net 197.00 USD; 88.50 USD taken by 1 outstanding clawback, 108.50 USD left; preference CREDIT: " \
           "108.50 USD credited to the wallet" in line
    await clean(api)

    # A carry larger than the next payout takes all of it and leaves the rest outstanding.
    assert (await claw(api, [reversal("next-1", "re-next")]))["clawbacks"][0]["outstanding"] == {"amount": "197.00"}
    await record(api, OWNER, [tx("small-1", "50.00")])  # a share of 49.25
    balance = await wallet(api)
    run = await pay_out_this_month(api, 3)
    third = await newest_payout(api)
    assert (cents(third["amount"]), parts(third), third["status"]) == (4925, {
        "availableAmount": 0, "walletAmount": 0, "bankAmountInFlight": 0, "bankAmountPaid": 0, "clawedBack": 4925},
        "COMPLETED")
    assert (await mine(api))["clawbackOutstanding"] == {"amount": "147.75"}
    assert await wallet(api) == balance
    line = next(line for line in payout_lines(run) if line.startswith("Northwind Agency"))
    assert line.endswith("49.25 USD taken by 1 outstanding clawback, 0.00 USD left; preference CREDIT: nothing left to "
                         "pay out")
    await clean(api)


async def test_a_transaction_in_no_payout_yet_is_clawed_back_from_the_payout_that_pays_it(api: Api) -> None:
    northwind = await api.connection_id(OWNER)
    await write(api, prefer(northwind, None))
    await record(api, OWNER, [tx("early-1", "100.00")])
    done = await claw(api, [reversal("early-1", "re-early", "30.00")])
    [c] = done["clawbacks"]
    assert (c["payout"], c["takenAmount"], c["outstanding"], done["payouts"]) == (
        None, {"amount": "0.00"}, {"amount": "30.00"}, [])
    await pay_out_this_month(api)
    p = await newest_payout(api)
    assert cents(p["clawedBack"]) == 3000 and cents(p["availableAmount"]) == cents(p["amount"]) - 3000
    assert p["status"] == "AVAILABLE"
    [listed] = (await mine(api))["clawbacks"]
    assert (listed["payout"], listed["outstanding"]) == ({"id": p["id"]}, {"amount": "0.00"})
    await clean(api)


# ---- once, and never more than the share ------------------------------------------------

async def test_a_repeated_reversal_is_a_duplicate_and_is_not_taken_twice(api: Api) -> None:
    await record(api, OWNER, [tx("dup-1", "97.00")])  # a share of 95.54
    await pay_out_this_month(api)
    p = await newest_payout(api)
    first = await claw(api, [reversal("dup-1", "re-a", "10.00"), reversal("dup-1", "re-a", "20.00")])
    assert [c["externalId"] for c in first["clawbacks"]] == ["re-a"] and first["duplicates"] == ["re-a"]
    assert first["clawbacks"][0]["amount"]["amount"] == "10.00", "the first of the batch is the one kept"
    again = await claw(api, [reversal("dup-1", "re-a", "10.00")])
    assert (again["clawbacks"], again["duplicates"], again["payouts"], again["userErrors"]) == ([], ["re-a"], [], [])
    assert cents((await payout(api, p["id"]))["clawedBack"]) == 1000

    # With an idempotency key a retry answers with the first result, as it now stands.
    keyed = await claw(api, [reversal("dup-1", "re-b", "5.00")], idempotencyKey="refunds-2026-05-20")
    retry = await claw(api, [reversal("dup-1", "re-b", "5.00")], idempotencyKey="refunds-2026-05-20")
    assert [c["id"] for c in retry["clawbacks"]] == [c["id"] for c in keyed["clawbacks"]]
    assert [x["id"] for x in retry["payouts"]] == [p["id"]] and retry["duplicates"] == []
    other = await claw(api, [reversal("dup-1", "re-c", "5.00")], idempotencyKey="refunds-2026-05-20")
    assert refused(other) == [(["input", "idempotencyKey"], "IDEMPOTENCY_KEY_REUSED")]

    # Two batches at once with the same reversal: one records it.
    sent = [reversal("dup-1", "re-race", "1.00")]
    fields = {"connectionId": await gid(api, OWNER), "clawbacks": sent}
    answers = await asyncio.gather(*(api.post(RECORD, {"input": fields}, as_=BILLING) for _ in range(6)))
    payloads = [r.json()["data"]["recordClawbacks"] for r in answers]
    assert Counter(len(x["clawbacks"]) for x in payloads) == {1: 1, 0: 5}
    assert cents((await payout(api, p["id"]))["clawedBack"]) == 1000 + 500 + 100
    await clean(api)


async def test_a_transaction_is_never_clawed_back_beyond_its_share_and_each_bad_field_is_named(api: Api) -> None:
    await record(api, OWNER, [tx("sh-1", "97.00")])  # a share of 95.54
    await pay_out_this_month(api)
    assert (await claw(api, [reversal("sh-1", "re-1", "50.00")]))["userErrors"] == []
    over = await claw(api, [reversal("sh-1", "re-2", "40.00"), reversal("sh-1", "re-3", "10.00")])
    assert refused(over) == [(["input", "clawbacks", "1", "amount"], "CLAWBACK_EXCEEDS_SHARE")]
    assert over["userErrors"][0]["message"] == (
        "amount is 10.00 USD, but only 5.54 USD of transaction sh-1's share of 95.54 USD is not yet clawed back.")
    assert over["clawbacks"] == [], "nothing of a refused batch is recorded"

    rest = await claw(api, [reversal("sh-1", "re-4")])  # no amount: all that is left
    assert rest["clawbacks"][0]["amount"]["amount"] == "45.54"
    full = await claw(api, [reversal("sh-1", "re-5")])
    assert refused(full) == [(["input", "clawbacks", "0", "amount"], "CLAWBACK_EXCEEDS_SHARE")]
    assert "already clawed back in full" in full["userErrors"][0]["message"]

    await record(api, BLUEBIRD, [tx("bb-1", "10.00")])  # another connection's transaction
    bad = await claw(api, [
        reversal("nope", "re-6", "1.00"),
        reversal("bb-1", "re-7", "1.00"),
        reversal("sh-1", "", "abc"),
        reversal("sh-1", "re-9", "-1.00", reason="x" * 301),
        reversal(" sh-1", "re-10", "1.234"),
        reversal("sh-1", "re-11", "0"),
    ])
    assert refused(bad) == [
        (["input", "clawbacks", "2", "externalId"], "INVALID_EXTERNAL_ID"),
        (["input", "clawbacks", "2", "amount"], "INVALID_AMOUNT"),
        (["input", "clawbacks", "3", "amount"], "INVALID_AMOUNT"),
        (["input", "clawbacks", "3", "reason"], "INVALID_REASON"),
        (["input", "clawbacks", "4", "transactionExternalId"], "INVALID_EXTERNAL_ID"),
        (["input", "clawbacks", "4", "amount"], "INVALID_AMOUNT"),
        (["input", "clawbacks", "5", "amount"], "INVALID_AMOUNT"),
    ]
    unknown = await claw(api, [reversal("nope", "re-6", "1.00"), reversal("bb-1", "re-7", "1.00")])
    assert refused(unknown) == [(["input", "clawbacks", "0", "transactionExternalId"], "NOT_FOUND"),
                                (["input", "clawbacks", "1", "transactionExternalId"], "NOT_FOUND")]
    too_many = await claw(api, [reversal("sh-1", f"m-{i}", "0.01") for i in range(clawbacks.MAX_PER_CALL + 1)])
    assert refused(too_many) == [(["input", "clawbacks"], "TOO_MANY_CLAWBACKS")]
    for connection in (to_global_id("RevampdConnection", 999), to_global_id("Payout", 1), "nonsense"):
        payload = dict((await api.gql(RECORD, {"input": {"connectionId": connection, "clawbacks": []}},
                                      as_=BILLING))["recordClawbacks"])
        assert refused(payload) == [(["input", "connectionId"], "NOT_FOUND")]
    state = await mine(api)
    assert [c["externalId"] for c in state["clawbacks"]] == ["re-4", "re-1"], "newest first"
    assert sum(cents(c["amount"]) for c in state["clawbacks"]) == 9554
    await clean(api)


# ---- at once ---------------------------------------------------------------------------------

async def test_fifty_concurrent_clawbacks_never_take_a_payout_below_zero(api: Api) -> None:
    northwind = await api.connection_id(OWNER)
    await write(api, prefer(northwind, None))
    await record(api, OWNER, [tx(f"cc-{i}", "10.00") for i in range(50)])  # a share of 9.85 each
    await pay_out_this_month(api)
    p = await newest_payout(api)
    assert (await credit(api, p["id"], dollars(parts(p)["availableAmount"] - 10000), "most"))["userErrors"] == []
    balance = await wallet(api)
    connection = await gid(api, OWNER)
    calls = [api.post(RECORD, {"input": {"connectionId": connection, "clawbacks": [reversal(f"cc-{i}", f"rc-{i}")]}},
                      as_=BILLING) for i in range(50)]
    # A few of the Partner's credits of the same payout at the same time.
    calls += [api.post(CREDIT, {"input": {"payoutId": p["id"], "amount": "3.00", "idempotencyKey": f"k{i}"}}, as_=OWNER)
              for i in range(5)]
    answers = await asyncio.gather(*calls)
    assert Counter(r.status_code for r in answers) == {200: 55}
    bodies = [r.json() for r in answers]
    assert [b for b in bodies if b.get("errors")] == []
    recorded = [b["data"]["recordClawbacks"] for b in bodies[:50]]
    assert all(x["userErrors"] == [] and len(x["clawbacks"]) == 1 for x in recorded)
    credits = [b["data"]["creditPayout"] for b in bodies[50:]]
    assert {e["code"] for x in credits for e in x["userErrors"]} <= {"NOTHING_AVAILABLE", "EXCEEDS_AVAILABLE"}
    credited = 300 * sum(1 for x in credits if not x["userErrors"])

    after = await payout(api, p["id"])
    taken = sum(cents(x["clawbacks"][0]["takenAmount"]) for x in recorded)
    outstanding = sum(cents(x["clawbacks"][0]["outstanding"]) for x in recorded)
    assert taken + outstanding == 50 * 985, "every clawback is taken or outstanding, in full"
    assert parts(after)["availableAmount"] == 0 and taken == parts(after)["clawedBack"] == 10000 - credited
    assert sum(parts(after).values()) == cents(after["amount"])
    assert (await mine(api))["clawbackOutstanding"] == {"amount": dollars(outstanding)}
    assert await wallet(api) == balance + credited
    await clean(api)


async def test_clawbacks_racing_the_close_of_their_period_are_each_taken_once(api: Api) -> None:
    northwind = await api.connection_id(OWNER)
    await write(api, prefer(northwind, None))
    await record(api, OWNER, [tx(f"rp-{i}", "10.00") for i in range(20)])
    connection = await gid(api, OWNER)
    calls = [api.post(RECORD, {"input": {"connectionId": connection, "clawbacks": [reversal(f"rp-{i}", f"rr-{i}", "2.00")]}},
                      as_=BILLING) for i in range(20)]
    # The close in this process, so that it runs among the requests rather than after them.
    answers, closed = await asyncio.gather(asyncio.gather(*calls),
                                           jobs.payouts_close_period(api.settings, month_start(NOW, 1) + DAY))
    assert closed.failed == [] and northwind in [c.payout.connection_id for c in closed.made]
    assert all(not r.json().get("errors") and r.json()["data"]["recordClawbacks"]["userErrors"] == [] for r in answers)
    # Before the close, a clawback waits for the payout; after it, it is taken from the payout:
    # either way, all of it from this payout, once.
    p = await newest_payout(api)
    assert cents(p["clawedBack"]) == 20 * 200 and len(p["clawbacks"]) == 20
    assert (await mine(api))["clawbackOutstanding"] == {"amount": "0.00"}
    await clean(api)


# ---- the feed --------------------------------------------------------------------------------

async def test_the_feed_says_so_a_reversal_line_records_a_clawback_once(api: Api, tmp_path: Path) -> None:
    northwind = await api.connection_id(OWNER)
    await write(api, prefer(northwind, None))
    at = (NOW - 2 * HOUR).replace(microsecond=0).isoformat()
    await record(api, OWNER, [tx("fd-1", "100.00")])
    await pay_out_this_month(api)
    p = await newest_payout(api)
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join([
        '{"type": "reversal", "partner": "Northwind Agency", "externalId": "rv_1", "transactionExternalId": "fd-1", '
        '"kind": "CHARGEBACK", "amount": "25.00", "reason": "Disputed by the card holder"}',
        '{"partner": "Northwind Agency", "externalId": "fd-2", "subOrgName": "Acme Dental", "kind": "SUBSCRIPTION", '
        f'"grossAmount": "97.00", "occurredAt": "{at}"}}',
        '{"type": "reversal", "partner": "Northwind Agency", "externalId": "rv_2", "transactionExternalId": "fd-2", '
        '"kind": "REFUND"}',
    ]) + "\n")
    run = await cli(api, "import", str(feed))
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0] == (f"payouts import: {feed}: recorded 1 transaction, 0 duplicates ignored; recorded 2 reversals "
                        "as clawbacks, 0 duplicates ignored")
    pid = from_global_id(p["id"])
    assert pid is not None
    assert lines[1:] == [
        f"  clawback rv_1: 25.00 USD, 25.00 USD taken from payout {pid[1]}, 0.00 USD outstanding (line 1)",
        "  clawback rv_2: 95.54 USD, 95.54 USD outstanding (line 3)",  # fd-2 is in no payout yet
    ]
    assert cents((await payout(api, p["id"]))["clawedBack"]) == 2500
    state = await mine(api)
    assert [(c["externalId"], c["kind"], c["reason"], c["transaction"]["externalId"]) for c in state["clawbacks"]] == [
        ("rv_2", "REFUND", "", "fd-2"), ("rv_1", "CHARGEBACK", "Disputed by the card holder", "fd-1")]
    assert state["clawbackOutstanding"] == {"amount": "95.54"}

    again = await cli(api, "import", str(feed))
    assert again.code == 0, again.err
    assert again.out.splitlines() == [
        f"payouts import: {feed}: recorded 0 transactions, 1 duplicate ignored; recorded 0 reversals as clawbacks, "
        "2 duplicates ignored",
        "  duplicate, already recorded: line 1: rv_1",
        "  duplicate, already recorded: line 2: fd-2",
        "  duplicate, already recorded: line 3: rv_2",
    ]
    assert cents((await payout(api, p["id"]))["clawedBack"]) == 2500

    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([
        '{"partner": "Northwind Agency", "externalId": "fd-3", "subOrgName": "Acme Dental", "kind": "USAGE", '
        f'"grossAmount": "5.00", "occurredAt": "{at}"}}',
        '{"type": "reversal", "partner": "Northwind Agency", "externalId": "rv_3", "transactionExternalId": "fd-404", '
        '"kind": "REFUND"}',
        '{"type": "reversal", "partner": "Northwind Agency", "externalId": "rv_4", "transactionExternalId": "fd-1", '
        '"kind": "REFUND", "amount": "100.00"}',
        '{"type": "refund", "partner": "Northwind Agency"}',
        '{"type": "reversal", "partner": "Northwind Agency", "externalId": "rv_5", "transactionExternalId": "fd-1", '
        '"kind": "VOID", "amount": 5, "grossAmount": "1.00"}',
    ]))
    refused_run = await cli(api, "import", str(bad))
    assert refused_run.code == 1 and refused_run.out == ""
    assert [line for line in refused_run.err.splitlines() if line.startswith("line ")] == [
        'line 4: type: must be "transaction" (the default) or "reversal", got \'refund\'',
        "line 5: grossAmount: unknown field; a reversal line has partner, connectionId, type, externalId, "
        "transactionExternalId, kind, amount, reason",
        'line 5: amount: must be a string (a decimal string such as "12.50", never a JSON number), got int',
        "line 5: kind: kind must be REFUND or CHARGEBACK, got 'VOID'.",
    ]
    # Once every line reads right, each reversal is checked against its transaction.
    bad.write_text("\n".join(bad.read_text().splitlines()[:3]))
    refused_run = await cli(api, "import", str(bad))
    assert refused_run.code == 1
    assert [line for line in refused_run.err.splitlines() if line.startswith("line ")] == [
        "line 2: transactionExternalId: This connection has no Sub-Org transaction 'fd-404'.",
        "line 3: amount: amount is 100.00 USD, but only 73.50 USD of transaction fd-1's share of 98.50 USD is not yet "
        "clawed back.",
    ]
    assert await api.rows(select(m.SubOrgTransaction.id).where(m.SubOrgTransaction.external_id == "fd-3")) == [], \
        "nothing of a refused feed is recorded"
    await clean(api)


# ---- who may, who sees --------------------------------------------------------------------

async def test_only_revampd_billing_may_record_clawbacks(api: Api) -> None:
    await record(api, OWNER, [tx("au-1", "10.00")])
    for who in (OWNER, MEMBER, SUPPORT):
        payload = await claw(api, [reversal("au-1", f"re-{who}", "1.00")], as_=who)
        assert refused(payload) == [(None, "FORBIDDEN")], who
        assert payload["clawbacks"] == []
    assert await api.rows(select(m.Clawback.id).where(~m.Clawback.external_id.startswith(DEMO))) == []


async def test_another_partner_sees_none_of_a_partners_clawbacks(api: Api) -> None:
    await record(api, OWNER, [tx("vis-1", "10.00")])
    await pay_out_this_month(api)
    [c] = (await claw(api, [reversal("vis-1", "re-vis", "1.00")]))["clawbacks"]
    query = "query($id: ID!) { node(id: $id) { id ... on Clawback { externalId } } }"
    assert (await api.gql(query, {"id": c["id"]}, as_=BLUEBIRD))["node"] is None
    assert (await api.gql(query, {"id": c["id"]}, as_=MEMBER))["node"] == {"id": c["id"], "externalId": "re-vis"}
    assert (await api.gql(query, {"id": c["id"]}, as_=SUPPORT))["node"] == {"id": c["id"], "externalId": "re-vis"}
    theirs = await mine(api, BLUEBIRD)
    assert theirs["clawbacks"] == [] and theirs["clawbackOutstanding"] == {"amount": "0.00"}


# ---- ledger verify ---------------------------------------------------------------------------

async def test_ledger_verify_reports_a_payout_or_clawback_that_disagrees_with_the_ledger(api: Api) -> None:
    await record(api, OWNER, [tx("lv-1", "100.00")])
    await pay_out_this_month(api)
    done = await claw(api, [reversal("lv-1", "re-lv", "10.00")])
    await clean(api)
    [(cid, pid)] = await api.rows(select(m.Clawback.id, m.ClawbackRecovery.payout_id)
                                  .join(m.ClawbackRecovery, m.ClawbackRecovery.clawback_id == m.Clawback.id)
                                  .where(m.Clawback.external_id == "re-lv"))
    assert done["payouts"][0]["id"] == to_global_id("Payout", pid)
    await write(api, update(m.Payout).where(m.Payout.id == pid).values(
        clawed_back_amount=m.Payout.clawed_back_amount + 1, available_amount=m.Payout.available_amount - 1))
    problems = await verify(api)
    assert f"payout {pid}: 1001 clawed back, but its CLAWBACK transfers took 1000" in problems
    await write(api, update(m.Payout).where(m.Payout.id == pid).values(
        clawed_back_amount=m.Payout.clawed_back_amount - 1, available_amount=m.Payout.available_amount + 1),
        update(m.Clawback).where(m.Clawback.id == cid).values(outstanding=1, amount=1200))
    assert await verify(api) == [
        f"clawback {cid} of 1200: 1 outstanding, so 1199 taken, but its recoveries took 1000",
    ]
