"""The demo seed: loads once, is deterministic, and every number in it adds up.

Self-contained on purpose (no conftest fixtures): each database is a fresh
SQLite file migrated with Alembic.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time
from enum import Enum
from pathlib import Path
from typing import Any, Coroutine, TypeVar

import pytest

from db.engine import create_engine, write_sessions
from db.migrate import upgrade
from db.models import Base
from db.states import InvoiceStatus, PayoutStatus, TicketPriority, TicketStatus, TransferStatus, WalletEntryKind
from services.demo import DEMO_USERS, seed_demo

TODAY = date(2026, 11, 25)
Tables = dict[str, list[dict[str, Any]]]
T = TypeVar("T")


def _values(states: type[Enum]) -> set[str]:
    return {s.value for s in states}


def _utc(value: Any) -> Any:
    """SQLite hands back naive datetimes; everything the seed writes is UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


async def _migrated(path: Path) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url)  # alembic's env calls asyncio.run itself
    return url


async def _seed(url: str, today: date) -> bool:
    engine = create_engine(url)
    try:
        async with write_sessions(engine)() as session:
            return await seed_demo(session, today)
    finally:
        await engine.dispose()


async def _load(url: str) -> Tables:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            tables: Tables = {}
            for table in Base.metadata.sorted_tables:
                rows = (await conn.execute(table.select().order_by(*table.primary_key))).mappings()
                tables[table.name] = [{k: _utc(v) for k, v in row.items()} for row in rows]
            return tables
    finally:
        await engine.dispose()


async def _seeded(path: Path, today: date) -> Tables:
    url = await _migrated(path)
    assert await _seed(url, today) is True
    return await _load(url)


def _in_fresh_loop(coro: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    return _in_fresh_loop(_seeded(tmp_path_factory.mktemp("seed") / "t.db", TODAY))


def _by(rows: list[dict[str, Any]], key: str) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        out[row[key]].append(row)
    return out


# -- invariants, shared by the tests below and by the sweep over awkward dates -------
def check_wallets(db: Tables) -> None:
    """The ledger: entries follow one another on each account and add up to its balance,
    no Partner account ever goes below zero, and each currency sums to zero."""
    entries = _by(db["ledger_entries"], "account_id")
    for account in db["ledger_accounts"]:
        rows = sorted(entries[account["id"]], key=lambda e: e["sequence"])
        assert [e["sequence"] for e in rows] == list(range(1, len(rows) + 1))
        running = 0
        for entry in rows:
            running += entry["amount"]
            assert entry["balance_after"] == running, entry
            assert account["allow_negative"] or running >= 0, entry
        assert account["balance"] == running and account["entry_count"] == len(rows)
        if account["kind"] == "WALLET":  # a statement reads in time order
            assert rows == sorted(rows, key=lambda e: (e["created_at"], e["id"]))
    assert sum(e["amount"] for e in db["ledger_entries"]) == 0
    by_transfer = _by(db["ledger_entries"], "transfer_id")
    for t in db["ledger_transfers"]:
        moved = t["phase"] in ("POSTED", "POST_PENDING")  # a reservation or its release writes no entries
        assert sorted(e["amount"] for e in by_transfer[t["id"]]) == ([-t["amount"], t["amount"]] if moved else [])
    assert len({t["key"] for t in db["ledger_transfers"]}) == len(db["ledger_transfers"])


def _transfers(db: Tables) -> dict[int, dict[str, Any]]:
    return {t["id"]: t for t in db["ledger_transfers"]}


def check_invoices(db: Tables) -> None:
    lines, payments = _by(db["invoice_line_items"], "invoice_id"), _by(db["invoice_payments"], "invoice_id")
    accounts, transfers = {a["id"]: a for a in db["ledger_accounts"]}, _transfers(db)
    receivables = {a["invoice_id"]: a for a in db["ledger_accounts"] if a["kind"] == "RECEIVABLE"}
    for inv in db["invoices"]:
        assert inv["total"] == sum(line["amount"] for line in lines[inv["id"]]) > 0
        assert all(line["amount"] == line["quantity"] * line["unit_amount"] for line in lines[inv["id"]])
        assert inv["amount_paid"] == sum(p["amount"] for p in payments[inv["id"]])
        assert inv["currency_code"] == "USD"
        if inv["status"] == "PAID":
            assert inv["amount_paid"] == inv["total"] and inv["paid_at"] is not None
            assert inv["payment_method"] in ("CARD", "WALLET")
        if inv["status"] in ("DRAFT", "VOID"):
            assert inv["amount_paid"] == 0
        if inv["status"] == "VOID":
            assert inv["voided_at"] and inv["void_reason"]
        if inv["status"] == "OPEN":
            assert 0 <= inv["amount_paid"] < inv["total"]
        # What the ledger says is still due.
        due = -receivables[inv["id"]]["balance"] if inv["id"] in receivables else 0
        owed = inv["status"] in ("OPEN", "PAID")
        assert due == (inv["total"] - inv["amount_paid"] if owed else 0), inv
        assert (inv["id"] in receivables) == (inv["status"] != "DRAFT")
    paid_by = {t["id"] for t in transfers.values() if t["kind"] == "INVOICE_PAYMENT"}
    for pay in db["invoice_payments"]:
        t = transfers[pay["transfer_id"]]
        paid_by.discard(t["id"])
        assert (t["kind"], t["amount"], t["invoice_id"], t["created_at"]) == (
            "INVOICE_PAYMENT", pay["amount"], pay["invoice_id"], pay["created_at"])
        source = accounts[t["debit_account_id"]]["kind"]
        assert source == ("WALLET" if pay["method"] == "WALLET" else "CARD_PROCESSOR")
    assert not paid_by, "payments in the ledger without an invoice payment"
    assert len({inv["number"] for inv in db["invoices"]}) == len(db["invoices"])


def check_payouts(db: Tables) -> None:
    txs, transfers_ = _by(db["sub_org_transactions"], "payout_id"), _by(db["bank_transfers"], "payout_id")
    transfers = _transfers(db)
    accounts = {a["payout_id"]: a for a in db["ledger_accounts"] if a["kind"] == "PAYOUT"}
    credits = _by([t for t in transfers.values() if t["kind"] == "PAYOUT_CREDIT"], "payout_id")
    clawed = _by([t for t in transfers.values() if t["kind"] == "CLAWBACK"], "payout_id")
    dispositions = _by(db["payout_dispositions"], "payout_id")
    for p in db["payouts"]:
        parts = p["wallet_amount"] + p["bank_in_flight_amount"] + p["bank_paid_amount"]
        kept = p["amount"] - p["clawed_back_amount"]  # what clawbacks left of it
        assert p["available_amount"] + parts == kept and p["amount"] > 0
        assert p["clawed_back_amount"] == sum(t["amount"] for t in clawed[p["id"]])
        assert p["amount"] == sum(t["partner_amount"] for t in txs[p["id"]])
        assert p["gross_amount"] == sum(t["gross_amount"] for t in txs[p["id"]])
        assert p["fee_amount"] == sum(t["fee_amount"] for t in txs[p["id"]])
        assert 3 <= len(txs[p["id"]]) <= 8
        by_status = _by(transfers_[p["id"]], "status")
        assert p["bank_in_flight_amount"] == sum(t["amount"] for s in ("PENDING", "IN_TRANSIT") for t in by_status[s])
        assert p["bank_paid_amount"] == sum(t["amount"] for t in by_status["PAID"])
        assert p["wallet_amount"] == sum(t["amount"] for t in credits[p["id"]])
        # Its ledger account holds what is available, and reserves what is in flight.
        account = accounts[p["id"]]
        assert (account["balance"] - account["pending"], account["pending"]) == (
            p["available_amount"], p["bank_in_flight_amount"])
        expected = ("AVAILABLE" if p["available_amount"] == kept else "PARTIALLY_DISPOSED"
                    if p["available_amount"] else "PROCESSING" if p["bank_in_flight_amount"] else "COMPLETED")
        assert p["status"] == expected, p
        assert (p["disposition"] is None) == (parts == 0)
        # Every transfer and credit belongs to one recorded disposition.
        assert sum(d["wallet_amount"] for d in dispositions[p["id"]]) == p["wallet_amount"]
        assert sorted(d["bank_transfer_id"] for d in dispositions[p["id"]] if d["bank_transfer_id"]) == sorted(
            t["id"] for t in transfers_[p["id"]])
    for tx in db["sub_org_transactions"]:
        assert 0 <= tx["partner_amount"] <= tx["gross_amount"]
        assert tx["partner_amount"] + tx["fee_amount"] == tx["gross_amount"]
    credited = _by([t for t in transfers.values() if t["kind"] == "AFFILIATE_PAYOUT"], "affiliate_payout_id")
    for a in db["affiliate_payouts"]:
        if a["credit_status"] == "APPLIED":
            [t] = credited.pop(a["id"])
            assert t["id"] == a["transfer_id"] and t["amount"] == a["amount"]
            assert a["applied_at"] == t["created_at"]
        else:
            assert a["transfer_id"] is None and a["applied_at"] is None and a["id"] not in credited
    assert not credited, "affiliate credits without an affiliate payout"


def check_tickets(db: Tables) -> None:
    users = {u["id"]: u for u in db["users"]}
    messages = _by(db["ticket_messages"], "ticket_id")
    connections = {c["id"]: c for c in db["connections"]}
    partner_of = {c["id"]: c["partner_id"] for c in db["connections"]}
    for t in db["tickets"]:
        msgs = sorted(messages[t["id"]], key=lambda m: (m["created_at"], m["id"]))
        public = [m for m in msgs if not m["internal"]]
        assert 1 <= len(public) <= 6 and public[-1] is msgs[-1]
        assert t["last_activity_at"] == msgs[-1]["created_at"]
        assert t["created_at"] <= msgs[0]["created_at"] and t["updated_at"] >= t["created_at"]
        assert users[t["created_by_id"]]["partner_id"] == partner_of[t["connection_id"]]
        if t["assigned_to_id"] is not None:
            assert users[t["assigned_to_id"]]["role"] == "SUPPORT"
        else:
            assert t["status"] == "OPEN"
        for m in msgs:
            author = users[m["author_id"]]
            assert author["role"] == "SUPPORT" if m["internal"] else (
                author["role"] == "SUPPORT" or author["partner_id"] == partner_of[t["connection_id"]])
        assert (t["resolved_at"] is not None) == (t["status"] in ("RESOLVED", "CLOSED"))
        assert (t["closed_at"] is not None) == (t["status"] == "CLOSED")
    for cid, tickets in _by(db["tickets"], "connection_id").items():
        numbers = sorted(t["number"] for t in tickets)
        assert numbers == list(range(1001, 1001 + len(tickets)))
        assert connections[cid]["next_ticket_number"] == numbers[-1] + 1


def check_nothing_after(db: Tables, today: date) -> None:
    now = datetime.combine(today, time(), UTC)
    late = [(name, row.get("id"), key) for name, rows in db.items() for row in rows
            for key, value in row.items() if isinstance(value, datetime) and value > now
            and key not in ("current_period_end", "pending_effective_at", "period_start",
                            "period_end", "due_at")]
    assert not late


# -- tests ----------------------------------------------------------------------------
async def test_seeding_twice_returns_false_and_changes_nothing(tmp_path: Path) -> None:
    url = await _migrated(tmp_path / "t.db")
    assert await _seed(url, TODAY) is True
    first = await _load(url)
    assert await _seed(url, TODAY) is False
    assert await _load(url) == first
    # The demo has no request of an API client yet (no idempotency key), no email written or chosen
    # yet (`notifications send` has not run), and no document asked for yet.
    assert all(len(rows) > 0 for name, rows in first.items() if name not in (
        "idempotency_keys", "notifications", "notification_settings", "notification_cursors", "documents"))
    partners = {p["id"]: p["name"] for p in first["partners"]}
    users = {u["email"]: (u["role"], partners.get(u["partner_id"])) for u in first["users"]}
    assert users == {email: (role, partner) for email, role, partner in DEMO_USERS}
    assert all(" " in u["name"] for u in first["users"])


async def test_same_today_gives_the_same_data(tmp_path: Path, db: Tables) -> None:
    assert await _seeded(tmp_path / "again.db", TODAY) == db


async def test_wallet_balances_are_running_sums_and_never_negative(db: Tables) -> None:
    check_wallets(db)
    wallets = {a["id"] for a in db["ledger_accounts"] if a["kind"] == "WALLET"}
    kinds = {t["kind"] for t in db["ledger_transfers"] if wallets & {t["debit_account_id"], t["credit_account_id"]}}
    assert kinds == {k.value for k in WalletEntryKind}


async def test_invoices_add_up(db: Tables) -> None:
    check_invoices(db)


async def test_payouts_add_up(db: Tables) -> None:
    check_payouts(db)


async def test_tickets_are_consistent(db: Tables) -> None:
    check_tickets(db)
    assert any(m["internal"] for m in db["ticket_messages"])
    assert {t["subject_type"] for t in db["tickets"]} >= {"invoice", "payout"}


async def test_every_status_appears(db: Tables) -> None:
    def seen(table: str, column: str) -> set[Any]:
        return {row[column] for row in db[table]}

    assert seen("tickets", "status") == _values(TicketStatus)
    assert seen("tickets", "priority") == _values(TicketPriority)
    assert seen("invoices", "status") == _values(InvoiceStatus)
    assert seen("invoices", "type") == {"SUBSCRIPTION", "ADD_ON", "ONE_TIME"}
    assert seen("payouts", "status") == _values(PayoutStatus)
    assert seen("payouts", "disposition") == {None, "CREDIT", "TRANSFER", "SPLIT"}
    # A return comes days after PAID, from the bank: the demo has none (tests/test_bank_returns.py makes them).
    assert seen("bank_transfers", "status") == _values(TransferStatus) - {"RETURNED"}
    assert seen("affiliate_payouts", "credit_status") == {"PENDING", "APPLIED"}
    assert seen("affiliate_payouts", "period_type") == {"WEEKLY", "MONTHLY"}
    # a failed transfer whose money went back to the payout
    failed = {t["payout_id"] for t in db["bank_transfers"] if t["status"] == "FAILED"}
    assert any(p["id"] in failed and p["status"] == "AVAILABLE" for p in db["payouts"])
    assert any(i["status"] == "OPEN" and 0 < i["amount_paid"] < i["total"] for i in db["invoices"])


async def test_northwind_usage_exceeds_growth_limits(db: Tables) -> None:
    partner = next(p["id"] for p in db["partners"] if p["name"] == "Northwind Agency")
    conn = next(c["id"] for c in db["connections"] if c["partner_id"] == partner)
    usage = next(u for u in db["usage"] if u["connection_id"] == conn)
    plans = {p["code"]: p for p in db["plans"]}
    growth = plans["GROWTH"]
    assert usage["sub_orgs"] > growth["max_sub_orgs"]
    assert usage["campaigns"] > growth["max_campaigns"]
    assert usage["workflows"] > growth["max_workflows"]
    sub = next(s for s in db["subscriptions"] if s["connection_id"] == conn)
    assert sub["plan_id"] == plans["SCALE"]["id"] and sub["pending_kind"] is None
    assert [p["code"] for p in sorted(db["plans"], key=lambda p: p["rank"])] == [
        "STARTER", "GROWTH", "SCALE", "ENTERPRISE", "LEGACY"]
    assert [p["code"] for p in db["plans"] if p["retired"]] == ["LEGACY"]


async def test_subscription_periods_are_the_current_month(db: Tables) -> None:
    for sub in db["subscriptions"]:
        assert sub["current_period_start"] == datetime(2026, 11, 1, tzinfo=UTC)
        assert sub["current_period_end"] == datetime(2026, 12, 1, tzinfo=UTC)
    pending = [s for s in db["subscriptions"] if s["pending_kind"]]
    assert [(s["pending_kind"], s["pending_effective_at"]) for s in pending] == [
        ("DOWNGRADE", datetime(2026, 12, 1, tzinfo=UTC))]
    check_nothing_after(db, TODAY)


@pytest.mark.parametrize("today", [date(2027, 1, 1), date(2028, 2, 29), date(2026, 3, 2),
                                   date(2026, 11, 30)])
async def test_awkward_dates_still_satisfy_every_invariant(tmp_path: Path, today: date) -> None:
    tables = await _seeded(tmp_path / "t.db", today)
    for check in (check_wallets, check_invoices, check_payouts, check_tickets):
        check(tables)
    check_nothing_after(tables, today)
