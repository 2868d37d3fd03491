"""Invoices under concurrency, on whichever database the suite runs on (SQLite, or PostgreSQL
with TEST_DATABASE_URL): a wallet is never overdrawn, a retried payment moves money once,
invoice numbers stay gap-free, and the ledger adds up after each storm."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from db import models as m
from schema.base import to_global_id
from tests.conftest import Api
from tests.demo import ADD_ONS_NOW, WORKSHOP, one
from tests.test_invoices import (
    BILLING,
    BLUEBIRD,
    CEDAR,
    ISSUE,
    LINES,
    OWNER,
    PAY,
    VOID,
    balance,
    in_days,
    invoices,
    issue,
    ledger_problems,
    next_number,
    pay,
)


async def storm(api: Api, calls: list[tuple[str, dict[str, Any], str]]) -> list[dict[str, Any]]:
    """Send every (document, input, user) at once. Each must answer HTTP 200 without
    top-level errors: a refusal is a userErrors entry; a 5xx or a fault fails here."""
    responses = await asyncio.gather(*(api.post(doc, {"input": input}, as_=who) for doc, input, who in calls))
    assert Counter(r.status_code for r in responses) == {200: len(calls)}, [
        r.text for r in responses if r.status_code != 200][:3]
    bodies = [r.json() for r in responses]
    assert [b["errors"] for b in bodies if b.get("errors")] == []
    return [next(iter(b["data"].values())) for b in bodies]


def outcome(payload: dict[str, Any]) -> str:
    return payload["userErrors"][0]["code"] if payload["userErrors"] else "ok"


async def bring_wallet_to(api: Api, email: str, target: Decimal) -> None:
    """Spend the wallet down to `target` on an invoice of exactly the difference."""
    held = await balance(api, email)
    assert held > target, "the demo wallet holds more than the test needs"
    extra = [{"description": "Spend down", "quantity": 1, "unitAmount": str(held - target)}]
    spend = (await issue(api, email, extra, key="spend-down"))["invoice"]
    assert (await pay(api, spend["id"], key="spend-down"))["invoice"]["status"] == "PAID"
    assert await balance(api, email) == target


async def test_50_concurrent_payments_from_one_wallet_never_overdraw_it(api: Api) -> None:
    await bring_wallet_to(api, OWNER, Decimal("3050.50"))
    bills = [(await issue(api, OWNER, [{"description": f"Workshop {n}", "quantity": 1, "unitAmount": "1000.00"}],
                          key=f"bill-{n}"))["invoice"]["id"] for n in range(5)]
    calls = [(PAY, {"invoiceId": bills[n % 5], "amount": "100.00", "idempotencyKey": f"pay-{n}"}, OWNER)
             for n in range(50)]
    payloads = await storm(api, calls)
    # 30 payments of 100.00 fit in 3,050.50; each one after them is refused, with 50.50 left.
    assert Counter(outcome(p) for p in payloads) == {"ok": 30, "INSUFFICIENT_FUNDS": 20}
    assert all(p["invoice"] is None and p["payment"] is None for p in payloads if p["userErrors"])
    assert await balance(api, OWNER) == Decimal("50.50")
    paid = Counter(p["invoice"]["id"] for p in payloads if not p["userErrors"])
    # Ten payments reach each bill of 1,000.00: a bill that all ten paid is PAID, the others OPEN.
    now = await invoices(api, OWNER, "OPEN", "PAID")
    by_id = {i["id"]: i for i in now.values()}
    assert {gid: (Decimal(by_id[gid]["amountPaid"]["amount"]), by_id[gid]["status"]) for gid in bills} == {
        gid: (Decimal("100.00") * paid[gid], "PAID" if paid[gid] == 10 else "OPEN") for gid in bills}
    assert sum(len(by_id[gid]["payments"]) for gid in bills) == 30
    assert await ledger_problems(api) == []


async def test_20_concurrent_retries_of_one_payment_move_money_once(api: Api) -> None:
    before = await balance(api, OWNER)
    add_ons = one(await invoices(api, OWNER, "OPEN"), **ADD_ONS_NOW)  # 31.00 due
    payloads = await storm(api, [(PAY, {"invoiceId": add_ons["id"], "idempotencyKey": "storm"}, OWNER)] * 20)
    assert [p["userErrors"] for p in payloads] == [[]] * 20
    assert len({(p["payment"]["createdAt"], p["payment"]["amount"]["amount"]) for p in payloads}) == 1
    assert {p["invoice"]["status"] for p in payloads} == {"PAID"}
    assert await balance(api, OWNER) == before - Decimal("31.00")
    payments = select(func.count()).select_from(m.InvoicePayment).join(
        m.LedgerTransfer, m.LedgerTransfer.id == m.InvoicePayment.transfer_id
    ).where(m.LedgerTransfer.key.like("%:storm"))
    assert await api.rows(payments) == [(1,)]
    assert await ledger_problems(api) == []


async def test_20_concurrent_issues_on_one_connection_take_consecutive_numbers(api: Api) -> None:
    first = await next_number(api, CEDAR)
    prefix, start = first.rsplit("-", 1)
    cid = to_global_id("RevampdConnection", await api.connection_id(CEDAR))
    good = [{"connectionId": cid, "lineItems": LINES, "dueAt": in_days(7), "idempotencyKey": f"i-{n}"}
            for n in range(20)]
    # Refused ones in the mix take no number.
    bad = [{**good[0], "dueAt": in_days(-1), "idempotencyKey": f"bad-{n}"} for n in range(5)]
    payloads = await storm(api, [(ISSUE, input, BILLING) for input in good + bad])
    assert Counter(outcome(p) for p in payloads) == {"ok": 20, "INVALID_DUE_AT": 5}
    numbers = sorted(p["invoice"]["number"] for p in payloads if p["invoice"])
    assert numbers == [f"{prefix}-{n:04d}" for n in range(int(start), int(start) + 20)]
    assert await next_number(api, CEDAR) == f"{prefix}-{int(start) + 20:04d}"
    assert await ledger_problems(api) == []


async def test_issues_payments_and_voids_at_once_across_connections_keep_the_ledger_whole(api: Api) -> None:
    """Every connection's invoices book into Revampd's one revenue account; a void and
    payments draw on one wallet at the same time."""
    before = await balance(api, OWNER)
    workshop = one(await invoices(api, OWNER, "OPEN"), **WORKSHOP)  # 400.00 paid from the wallet
    cids = {who: to_global_id("RevampdConnection", await api.connection_id(who)) for who in (OWNER, BLUEBIRD, CEDAR)}
    issues = [(ISSUE, {"connectionId": cids[who], "lineItems": LINES, "dueAt": in_days(7),
                       "idempotencyKey": f"{who}-{n}"}, BILLING) for n in range(5) for who in cids]
    small = [(await issue(api, OWNER, [{"description": f"Item {n}", "quantity": 1, "unitAmount": "10.00"}],
                          key=f"small-{n}"))["invoice"]["id"] for n in range(10)]
    pays = [(PAY, {"invoiceId": gid, "idempotencyKey": f"p-{gid}"}, OWNER) for gid in small]
    voids = [(VOID, {"invoiceId": workshop["id"], "reason": "Canceled"}, BILLING)]
    payloads = await storm(api, issues + pays + voids)
    assert [outcome(p) for p in payloads] == ["ok"] * len(payloads)
    assert await balance(api, OWNER) == before + Decimal("400.00") - Decimal("100.00")
    assert await ledger_problems(api) == []
