"""Sub-Org earnings become payouts: recordSubOrgTransactions through the graph, and
`revampd-bff payouts import` / `payouts close-period` in processes of their own.

Each test has a fresh copy of the demo data: every demo connection already has a
MONTHLY payout for each month up to this one, and a few unpaid transactions of this
month. Payouts of this month are made by a close-period run "next month" (--now).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from db import models as m
from db.engine import create_engine, read_sessions, write_sessions
from schema.base import to_global_id
from services import earnings, ledger, money
from tests import clock
from tests.clock import NOW
from tests.conftest import Api

ROOT = Path(__file__).parents[1]
OWNER = "owner@northwind.example"  # Scale: 1.50 %; two bank accounts, the default one good
MEMBER = "member@northwind.example"
BLUEBIRD = "owner@bluebird.example"  # Growth: 2.50 %; one bank account
CEDAR = "owner@cedar.example"  # Starter: 3.50 %; no bank account
SUPPORT = "support@revampd.example"
BILLING = "billing@revampd.example"
UTC = timezone.utc
DAY, HOUR = timedelta(days=1), timedelta(hours=1)

TRANSACTION = """id externalId subOrgName kind description grossAmount { amount currencyCode } feePercent
  feeAmount { amount } partnerAmount { amount } occurredAt recordedAt payout { id }"""
RECORD = f"""mutation($input: RecordSubOrgTransactionsInput!) {{ recordSubOrgTransactions(input: $input) {{
  recorded {{ {TRANSACTION} }} duplicates userErrors {{ field code message }} clientMutationId }} }}"""
PAYOUT = """id periodType periodStart periodEnd grossAmount { amount } feeAmount { amount } amount { amount }
  availableAmount { amount } walletAmount { amount } bankAmountInFlight { amount } status disposition
  dispositions { kind walletAmount { amount } bankAmount { amount } byPreference }
  transfers { id status amount { amount } submittedAt bankAccount { last4 } }
  sourceTransactions { externalId partnerAmount { amount } }"""
CONNECTION = f"""id wallet {{ balance {{ amount }} }} payouts(first: 2) {{ nodes {{ {PAYOUT} }} }}
  unpaid: subOrgTransactions(first: 50, filter: {{unpaid: true}}) {{ nodes {{ externalId }} }}"""
MINE = f"{{ viewer {{ partner {{ revampdConnection {{ {CONNECTION} }} }} }} }}"
THEIRS = f"query($id: ID!) {{ node(id: $id) {{ ... on RevampdConnection {{ {CONNECTION} }} }} }}"


# ---- helpers ------------------------------------------------------------------------

def month_start(at: datetime, offset: int = 0) -> datetime:
    year, month = divmod(at.year * 12 + at.month - 1 + offset, 12)
    return datetime(year, month + 1, 1, tzinfo=UTC)


def monday(at: datetime) -> datetime:
    return datetime.combine(at.date() - timedelta(days=at.weekday()), time(), UTC)


def tx(external_id: str, gross: str = "97.00", at: datetime | str | None = None, **fields: Any) -> dict[str, Any]:
    when = at if isinstance(at, str) else (at or NOW - HOUR).isoformat()
    return {"externalId": external_id, "subOrgName": "Acme Dental", "kind": "SUBSCRIPTION", "grossAmount": gross,
            "occurredAt": when, "description": "Pro plan subscription", **fields}


async def gid(api: Api, email: str) -> str:
    return to_global_id("RevampdConnection", await api.connection_id(email))


async def record(
    api: Api, email: str, transactions: list[dict[str, Any]], *, as_: str = BILLING, **input: Any
) -> dict[str, Any]:
    fields = {"connectionId": await gid(api, email), "transactions": transactions, **input}
    return dict((await api.gql(RECORD, {"input": fields}, as_=as_))["recordSubOrgTransactions"])


def ids(transactions: list[dict[str, Any]]) -> list[str]:
    return [t["externalId"] for t in transactions]


async def mine(api: Api, email: str) -> dict[str, Any]:
    return dict((await api.gql(MINE, as_=email))["viewer"]["partner"]["revampdConnection"])


async def theirs(api: Api, connection_id: int) -> dict[str, Any]:
    """A connection as Revampd billing reads it (one with no users, say)."""
    return dict((await api.gql(THEIRS, {"id": to_global_id("RevampdConnection", connection_id)}, as_=BILLING))["node"])


async def stored(api: Api, **where: Any) -> list[m.SubOrgTransaction]:
    S = m.SubOrgTransaction
    stmt = select(S).order_by(S.id)
    for name, value in where.items():
        stmt = stmt.where(getattr(S, name) == value)
    return [row for (row,) in await api.rows(stmt)]


async def write(api: Api, *statements: Any) -> None:
    """Set rows directly, as what the test needs from elsewhere (a plan change, a preference)."""
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as s, s.begin():
            for stmt in statements:
                await s.execute(stmt)
    finally:
        await engine.dispose()


def prefer(connection_id: int, mode: str | None, percent: int | None = None, period: str = "MONTHLY") -> Any:
    return update(m.Connection).where(m.Connection.id == connection_id).values(
        payout_mode=mode, payout_wallet_percent=percent, payout_period_type=period)


async def verify(api: Api) -> list[str]:
    engine = create_engine(api.settings.database_url)
    try:
        async with read_sessions(engine)() as s:
            return await ledger.verify(s)
    finally:
        await engine.dispose()


@dataclass
class Run:
    code: int
    out: str
    err: str


async def cli(api: Api, *args: str, stdin: bytes | None = None) -> Run:
    """`revampd-bff payouts ARGS` in a process of its own, on the test's database."""
    proc = await asyncio.create_subprocess_exec(
        *clock.command("server.cli"), "payouts", *args, cwd=ROOT,
        env={**os.environ, "DATABASE_URL": api.settings.database_url},
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def close_period(api: Api, now: datetime) -> Run:
    run = await cli(api, "close-period", "--now", now.isoformat())
    assert run.code == 0, run.err
    return run


def summary(run: Run) -> dict[str, int]:
    """`payouts close-period at ...: made 3, already made 0, nothing to pay 1, failed 0`."""
    line = next(line for line in run.out.splitlines() if line.startswith("payouts close-period at "))
    return {name: int(n) for name, n in (c.rsplit(" ", 1) for c in line.split(": ", 1)[1].split(", "))}


def payout_lines(run: Run) -> list[str]:
    return [line for line in run.out.splitlines() if ": payout " in line]


async def unpaid_before(api: Api, connection_id: int, end: datetime) -> list[m.SubOrgTransaction]:
    S = m.SubOrgTransaction
    return [row for (row,) in await api.rows(
        select(S).where(S.connection_id == connection_id, S.payout_id.is_(None), S.occurred_at < end).order_by(S.id)
    )]


async def account_balance(api: Api, code: str) -> int:
    rows = await api.rows(select(m.LedgerAccount.balance).where(m.LedgerAccount.code == code))
    return int(rows[0][0]) if rows else 0


async def revampd_balance(api: Api, kind: str) -> int:
    """Revampd's balance of one kind of its accounts, over its parts (one per connection)."""
    A = m.LedgerAccount
    rows = await api.rows(select(func.coalesce(func.sum(A.balance), 0)).where(A.kind == kind, A.currency_code == "USD"))
    return int(rows[0][0])


def amount(minor: int) -> str:
    return str(money.to_decimal(minor, "USD"))


async def add_connections(api: Api, n: int) -> list[int]:
    """`n` more connections (Partners without users), on Starter, Growth and Scale in turn."""
    from tests.bench.billing import add_due_connections

    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as s, s.begin():
            sub = await s.scalar(select(m.Subscription).limit(1))
            assert sub is not None
            return await add_due_connections(s, n, sub.current_period_start, sub.current_period_end)
    finally:
        await engine.dispose()


async def record_directly(api: Api, connection_id: int, transactions: list[dict[str, Any]]) -> earnings.Recorded:
    """Through the service, as the system (no principal)."""
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as s, s.begin():
            return await earnings.record(s, None, connection_id, [
                earnings.TransactionInput(t["externalId"], t["subOrgName"], t["kind"], t["grossAmount"],
                                          t["occurredAt"], t.get("description")) for t in transactions
            ])
    finally:
        await engine.dispose()


# ---- recording: the fee, duplicates, errors, who may ----------------------------------------

async def test_the_partners_share_is_the_gross_less_the_plans_fee_rounded_half_even(api: Api) -> None:
    payload = await record(api, BLUEBIRD, [  # Growth: 2.50 %
        tx("r-1", "97.00"), tx("r-2", "99.00"), tx("r-3", "0.01"), tx("r-4", "1234.56", kind="USAGE"),
    ], clientMutationId="c-1")
    assert payload["userErrors"] == [] and payload["duplicates"] == [] and payload["clientMutationId"] == "c-1"
    got = [(r["externalId"], r["feePercent"], r["feeAmount"]["amount"], r["partnerAmount"]["amount"])
           for r in payload["recorded"]]
    assert got == [
        ("r-1", "2.50", "2.42", "94.58"),  # 242.5 cents: to the even 242
        ("r-2", "2.50", "2.48", "96.52"),  # 247.5 cents: to the even 248
        ("r-3", "2.50", "0.00", "0.01"),  # 0.025 cents: 0
        ("r-4", "2.50", "30.86", "1203.70"),  # 3,086.4 cents
    ]
    first = payload["recorded"][0]
    assert first["grossAmount"] == {"amount": "97.00", "currencyCode": "USD"}
    assert (first["kind"], first["subOrgName"], first["payout"]) == ("SUBSCRIPTION", "Acme Dental", None)
    rows = await stored(api, external_id="r-1")
    assert [(r.fee_bps, r.fee_amount, r.partner_amount, r.gross_amount) for r in rows] == [(250, 242, 9458, 9700)]


async def test_the_fee_rate_is_kept_when_the_plan_changes_later(api: Api) -> None:
    await record(api, BLUEBIRD, [tx("p-1", "97.00")])
    cid = await api.connection_id(BLUEBIRD)
    scale = select(m.Plan.id).where(m.Plan.code == "SCALE").scalar_subquery()
    await write(api, update(m.Subscription).where(m.Subscription.connection_id == cid).values(plan_id=scale))
    later = await record(api, BLUEBIRD, [tx("p-2", "97.00")])  # Scale: 1.50 %, 145.5 cents to the even 146
    assert [(r["feePercent"], r["feeAmount"]["amount"]) for r in later["recorded"]] == [("1.50", "1.46")]
    listed = await api.gql("""{ viewer { partner { revampdConnection { subOrgTransactions(first: 2) {
        nodes { externalId feePercent feeAmount { amount } partnerAmount { amount } } } } } } }""", as_=BLUEBIRD)
    nodes = listed["viewer"]["partner"]["revampdConnection"]["subOrgTransactions"]["nodes"]
    assert {n["externalId"]: (n["feePercent"], n["feeAmount"]["amount"]) for n in nodes} == {
        "p-1": ("2.50", "2.42"), "p-2": ("1.50", "1.46")}


async def test_a_repeated_external_id_is_ignored_and_reported_within_a_batch_and_across_batches(api: Api) -> None:
    first = await record(api, CEDAR, [tx("d-1"), tx("d-2"), tx("d-1", "5.00")])
    assert ids(first["recorded"]) == ["d-1", "d-2"] and first["duplicates"] == ["d-1"]
    assert first["recorded"][0]["grossAmount"]["amount"] == "97.00", "the first of the batch is the one kept"
    second = await record(api, CEDAR, [tx("d-2", "1.00"), tx("d-3")])
    assert ids(second["recorded"]) == ["d-3"] and second["duplicates"] == ["d-2"]
    # An external id is unique per connection: another connection's d-1 is another transaction.
    other = await record(api, BLUEBIRD, [tx("d-1")])
    assert ids(other["recorded"]) == ["d-1"] and other["duplicates"] == []
    cedar = await api.connection_id(CEDAR)
    rows = [(r.external_id, r.gross_amount) for r in await stored(api, connection_id=cedar) if r.external_id[:2] == "d-"]
    assert rows == [("d-1", 9700), ("d-2", 9700), ("d-3", 9700)]


async def test_concurrent_batches_record_each_transaction_once_and_report_the_rest(api: Api) -> None:
    batch = [tx(f"c-{i}", f"{10 + i}.00") for i in range(20)]
    fields = {"connectionId": await gid(api, OWNER), "transactions": batch}
    responses = await asyncio.gather(*(api.post(RECORD, {"input": fields}, as_=BILLING) for _ in range(8)))
    payloads = [r.json()["data"]["recordSubOrgTransactions"] for r in responses]
    assert all(p["userErrors"] == [] for p in payloads)
    recorded = [i for p in payloads for i in ids(p["recorded"])]
    assert sorted(recorded) == sorted(ids(batch)), "each transaction recorded by exactly one batch"
    for p in payloads:
        assert sorted(ids(p["recorded"]) + p["duplicates"]) == sorted(ids(batch))
    northwind = await api.connection_id(OWNER)
    assert len([r for r in await stored(api, connection_id=northwind) if r.external_id.startswith("c-")]) == 20


async def test_every_bad_field_of_every_transaction_is_named_and_nothing_is_recorded(api: Api) -> None:
    future = (NOW + timedelta(hours=1)).isoformat()
    payload = await record(api, OWNER, [
        tx("ok-1"),
        tx("", subOrgName="   "),
        tx("e-2", "12.345"),
        tx("e-3", "-5.00", future),
        tx("e-4", "0"),
        tx("x" * 101, "abc", "2026-01-01T00:00:00", description="d" * 301),
        tx(" e-6", "1e3", subOrgName="Line\nbreak"),
    ])
    assert payload["recorded"] == [] and payload["duplicates"] == []
    got = [(e["field"][2:], e["code"]) for e in payload["userErrors"]]
    assert got == [
        (["1", "externalId"], "INVALID_EXTERNAL_ID"),
        (["1", "subOrgName"], "INVALID_SUB_ORG_NAME"),
        (["2", "grossAmount"], "INVALID_AMOUNT"),
        (["3", "grossAmount"], "INVALID_AMOUNT"),
        (["3", "occurredAt"], "INVALID_OCCURRED_AT"),
        (["4", "grossAmount"], "INVALID_AMOUNT"),
        (["5", "externalId"], "INVALID_EXTERNAL_ID"),
        (["5", "grossAmount"], "INVALID_AMOUNT"),
        (["5", "occurredAt"], "INVALID_OCCURRED_AT"),
        (["5", "description"], "INVALID_DESCRIPTION"),
        (["6", "externalId"], "INVALID_EXTERNAL_ID"),
        (["6", "subOrgName"], "INVALID_SUB_ORG_NAME"),
        (["6", "grossAmount"], "INVALID_AMOUNT"),
    ]
    assert all(e["field"][:2] == ["input", "transactions"] for e in payload["userErrors"])
    messages = {tuple(e["field"][2:]): e["message"] for e in payload["userErrors"]}
    assert messages[("2", "grossAmount")] == "grossAmount has more decimals than USD allows (2)."
    assert "UTC offset" in messages[("5", "occurredAt")] and "future" in messages[("3", "occurredAt")]
    assert await stored(api, external_id="ok-1") == []


async def test_more_than_a_thousand_transactions_or_an_unknown_connection_are_refused(api: Api) -> None:
    too_many = await record(api, OWNER, [tx(f"m-{i}", "1.00") for i in range(earnings.MAX_PER_CALL + 1)])
    assert [(e["field"], e["code"]) for e in too_many["userErrors"]] == [
        (["input", "transactions"], "TOO_MANY_TRANSACTIONS")]
    assert await stored(api, external_id="m-0") == []
    for connection in (to_global_id("RevampdConnection", 999), to_global_id("Invoice", 1), "nonsense"):
        payload = dict((await api.gql(RECORD, {"input": {"connectionId": connection, "transactions": [tx("u-1")]}},
                                      as_=BILLING))["recordSubOrgTransactions"])
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["input", "connectionId"], "NOT_FOUND")]


async def test_only_revampd_billing_may_record_transactions(api: Api) -> None:
    for who in (OWNER, MEMBER, SUPPORT):
        payload = await record(api, OWNER, [tx(f"f-{who}")], as_=who)
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(None, "FORBIDDEN")], who
        assert payload["recorded"] == []
    assert [r for r in await stored(api) if r.external_id.startswith("f-")] == []


async def test_a_retry_with_the_same_idempotency_key_answers_with_the_first_result(api: Api) -> None:
    batch = [tx("k-1"), tx("k-2"), tx("k-1")]
    first = await record(api, OWNER, batch, idempotencyKey="feed-2026-11-25")
    again = await record(api, OWNER, batch, idempotencyKey="feed-2026-11-25")
    assert ids(first["recorded"]) == ["k-1", "k-2"] and first["duplicates"] == ["k-1"]
    assert [r["id"] for r in again["recorded"]] == [r["id"] for r in first["recorded"]]
    assert again["duplicates"] == ["k-1"]
    other = await record(api, OWNER, [tx("k-3")], idempotencyKey="feed-2026-11-25")
    assert [(e["field"], e["code"]) for e in other["userErrors"]] == [(["input", "idempotencyKey"], "IDEMPOTENCY_KEY_REUSED")]
    without = await record(api, OWNER, batch)
    assert without["recorded"] == [] and without["duplicates"] == ["k-1", "k-2", "k-1"]
    only_old = batch[:1]
    nothing_new = await record(api, OWNER, only_old, idempotencyKey="all-duplicates")
    assert (nothing_new["recorded"], nothing_new["duplicates"]) == ([], ["k-1"])
    replayed = await record(api, OWNER, only_old, idempotencyKey="all-duplicates")
    assert (replayed["recorded"], replayed["duplicates"], replayed["userErrors"]) == ([], ["k-1"], [])


# ---- the feed ----------------------------------------------------------------------------

async def test_a_feed_is_imported_once_and_again_records_nothing(api: Api, tmp_path: Path) -> None:
    at = (NOW - 2 * HOUR).replace(microsecond=0)
    cedar = await api.connection_id(CEDAR)
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join([
        '{"partner": "Northwind Agency", "externalId": "sq_1", "subOrgName": "Acme Dental", "kind": "SUBSCRIPTION", '
        f'"grossAmount": "97.00", "occurredAt": "{at.isoformat()}", "description": "Pro plan subscription"}}',
        '{"partner": "Northwind Agency", "externalId": "sq_2", "subOrgName": "Summit Fitness", "kind": "USAGE", '
        f'"grossAmount": "12.40", "occurredAt": "{at.astimezone(timezone(-5 * HOUR)).isoformat()}"}}',
        "",
        f'{{"connectionId": "{await gid(api, OWNER)}", "externalId": "sq_3", "subOrgName": "Peak Physio", '
        f'"kind": "USAGE", "grossAmount": "3.15", "occurredAt": "{at.isoformat()}", "description": "SMS usage"}}',
        f'{{"connectionId": "{cedar}", "externalId": "sq_1", "subOrgName": "Cedar Hill Dental", '
        f'"kind": "SUBSCRIPTION", "grossAmount": "49.00", "occurredAt": "{at.isoformat()}"}}',
        '{"partner": "Northwind Agency", "externalId": "sq_1", "subOrgName": "Acme Dental", "kind": "SUBSCRIPTION", '
        f'"grossAmount": "97.00", "occurredAt": "{at.isoformat()}"}}',
    ]) + "\n")
    run = await cli(api, "import", str(feed))
    assert run.code == 0, run.err
    assert run.out.splitlines() == [
        f"payouts import: {feed}: recorded 4 transactions, 1 duplicate ignored",
        "  duplicate, already recorded: line 6: sq_1",
    ]
    rows = [(r.connection_id, r.external_id, r.gross_amount, r.fee_bps, r.fee_amount, r.occurred_at, r.description)
            for r in await stored(api) if r.external_id.startswith("sq_")]
    northwind = await api.connection_id(OWNER)
    assert rows == [
        (northwind, "sq_1", 9700, 150, 146, at, "Pro plan subscription"),  # 145.5 cents: to the even 146
        (northwind, "sq_2", 1240, 150, 19, at, ""),  # 18.6 cents
        (northwind, "sq_3", 315, 150, 5, at, "SMS usage"),  # 4.725 cents
        (cedar, "sq_1", 4900, 350, 172, at, ""),  # 171.5 cents: to the even 172
    ]

    again = await cli(api, "import", "-", stdin=feed.read_bytes())
    assert again.code == 0, again.err
    assert again.out.splitlines() == [
        "payouts import: standard input: recorded 0 transactions, 5 duplicates ignored",
        *(f"  duplicate, already recorded: line {n}: {e}" for n, e in
          ((1, "sq_1"), (2, "sq_2"), (4, "sq_3"), (5, "sq_1"), (6, "sq_1"))),
    ]
    assert len([r for r in await stored(api) if r.external_id.startswith("sq_")]) == 4


async def test_a_feed_with_a_bad_line_records_nothing_and_names_every_error_by_line(api: Api, tmp_path: Path) -> None:
    ok = (NOW - HOUR).replace(microsecond=0).isoformat()
    feed = tmp_path / "bad.jsonl"
    feed.write_text("\n".join([
        f'{{"partner": "Northwind Agency", "externalId": "good-1", "subOrgName": "Acme", "kind": "USAGE", '
        f'"grossAmount": "1.00", "occurredAt": "{ok}"}}',
        '{"partner": "Northwind Agency", "externalId": "b1", "subOrgName": "", "kind": "SUB", '
        '"grossAmount": "12.345", "occurredAt": "2026-11-03T14:25:00"}',
        "not json",
        '["a", "list"]',
        '{"partner": "Nobody", "externalId": "b4", "subOrgName": "X", "kind": "USAGE", "grossAmount": 12.5, '
        '"occurredAt": "2099-01-01T00:00:00Z", "extra": 1}',
        '{"connectionId": "999", "externalId": " b5", "subOrgName": "X", "kind": "USAGE", "grossAmount": "-1", '
        f'"occurredAt": "{ok}"}}',
        f'{{"externalId": "b6", "subOrgName": "X", "kind": "USAGE", "grossAmount": "1", "occurredAt": "{ok}"}}',
        f'{{"partner": "Cedar Collective", "subOrgName": "X", "kind": "USAGE", "grossAmount": "1", "occurredAt": "{ok}"}}',
    ]))
    run = await cli(api, "import", str(feed))
    assert run.code == 1 and run.out == ""
    errors = [line for line in run.err.splitlines() if line.startswith("line ")]
    assert errors == [
        "line 2: subOrgName: subOrgName must be 1 to 200 characters, got 0.",
        "line 2: kind: kind must be SUBSCRIPTION or USAGE, got 'SUB'.",
        "line 2: grossAmount: grossAmount has more decimals than USD allows (2).",
        'line 2: occurredAt: occurredAt needs its UTC offset ("Z" or "+02:00"), or it could fall in another period.',
        "line 3: not valid JSON (Expecting value: line 1 column 1 (char 0))",
        "line 4: must be a JSON object, one transaction per line",
        "line 5: extra: unknown field; a line has partner, connectionId, externalId, subOrgName, kind, grossAmount, "
        "occurredAt, description",
        'line 5: grossAmount: must be a string (a decimal string such as "12.50", never a JSON number), got float',
        "line 5: partner: no Partner is named 'Nobody'",
        "line 5: occurredAt: occurredAt is in the future (2099-01-01T00:00:00+00:00); a transaction is recorded after "
        "it happened.",
        "line 6: connectionId: no RevampdConnection '999'",
        "line 6: externalId: externalId must not begin or end with spaces.",
        "line 7: partner: partner (the Partner's name) or connectionId is required",
        "line 8: externalId: externalId is required.",
    ]
    assert run.err.splitlines()[-1] == f"payouts import: {len(errors)} errors in {feed}; nothing was recorded"
    assert await stored(api, external_id="good-1") == []


# ---- closing a period ------------------------------------------------------------------

async def test_closing_a_month_makes_one_funded_payout_of_the_unpaid_transactions_once(api: Api) -> None:
    now = NOW
    start, end = month_start(now), month_start(now, 1)
    northwind = await api.connection_id(OWNER)
    await record(api, OWNER, [tx("mo-1", "97.00"), tx("mo-2", "12.40", kind="USAGE"),
                              tx("late-1", "50.00", month_start(now, -2) + 5 * DAY)])
    due = await unpaid_before(api, northwind, end)
    assert {"mo-1", "mo-2", "late-1"} <= {t.external_id for t in due}
    earnings_before = await revampd_balance(api, "SUB_ORG_EARNINGS")

    run = await close_period(api, end + DAY)
    assert summary(run) == {"made": 3, "already made": 0, "nothing to pay": 0, "failed": 0}
    state = await mine(api, OWNER)
    payout = state["payouts"]["nodes"][0]
    gross, fees = sum(t.gross_amount for t in due), sum(t.fee_amount for t in due)
    net = sum(t.partner_amount for t in due)
    assert gross - fees == net
    assert (payout["periodType"], payout["periodStart"], payout["periodEnd"]) == (
        "MONTHLY", start.isoformat(), end.isoformat())
    assert (payout["grossAmount"]["amount"], payout["feeAmount"]["amount"], payout["amount"]["amount"],
            payout["availableAmount"]["amount"]) == (amount(gross), amount(fees), amount(net), amount(net))
    assert (payout["status"], payout["disposition"], payout["dispositions"], payout["transfers"]) == (
        "AVAILABLE", None, [], [])
    assert sorted(ids(payout["sourceTransactions"])) == sorted(t.external_id for t in due), "late ones too"
    assert state["unpaid"]["nodes"] == []
    pid = await payout_id(api, northwind, end)
    line = next(line for line in payout_lines(run) if line.startswith("Northwind Agency"))
    assert line == (
        f"Northwind Agency (connection {northwind}): payout {pid} "
        f"for the month {start:%Y-%m-%d} to {end:%Y-%m-%d}, {len(due)} transactions: gross {money.format(gross, 'USD')}, "
        f"fees {money.format(fees, 'USD')}, net {money.format(net, 'USD')}; no payout preference: available to the Partner"
    )

    # Funded in the ledger: the payout's account holds its amount, from Sub-Org earnings.
    assert await account_balance(api, f"payout:{pid}") == net
    made = await api.rows(select(func.sum(m.Payout.amount)).where(m.Payout.period_end == end))
    assert await revampd_balance(api, "SUB_ORG_EARNINGS") == earnings_before - made[0][0]
    [(key, kind)] = await api.rows(select(m.LedgerTransfer.key, m.LedgerTransfer.kind)
                                   .where(m.LedgerTransfer.payout_id == pid))
    assert (key, kind) == (f"payout:{pid}:funding", "PAYOUT_FUNDING")
    assert await verify(api) == []

    # Again: nothing is paid twice; a transaction recorded since waits for the next period.
    await record(api, OWNER, [tx("mo-3", "20.00")])
    again = await close_period(api, end + DAY)
    assert summary(again)["made"] == 0 and payout_lines(again) == []
    assert (await api.rows(select(func.count()).where(m.Payout.period_end == end)))[0][0] == 3
    assert ids((await mine(api, OWNER))["unpaid"]["nodes"]) == ["mo-3"]
    assert await verify(api) == []


async def payout_id(api: Api, connection_id: int, end: datetime) -> int:
    [(pid,)] = await api.rows(select(m.Payout.id).where(m.Payout.connection_id == connection_id,
                                                        m.Payout.period_end == end))
    return int(pid)


async def test_closing_a_week_pays_what_occurred_before_monday_and_a_zero_share_is_not_paid(api: Api) -> None:
    now = NOW
    end = monday(now)
    weekly, zero = await add_connections(api, 2)
    legacy = select(m.Plan.id).where(m.Plan.code == "LEGACY").scalar_subquery()
    await write(
        api, prefer(weekly, None, period="WEEKLY"),
        update(m.Plan).where(m.Plan.code == "LEGACY").values(transaction_fee_bps=10000),
        update(m.Subscription).where(m.Subscription.connection_id == zero).values(plan_id=legacy),
    )
    await record_directly(api, weekly, [
        tx("w-1", "97.00", end - 2 * DAY), tx("w-2", "10.00", end - HOUR, kind="USAGE"),
        tx("w-late", "40.00", end - 20 * DAY), tx("w-next", "5.00", end),
    ])
    await record_directly(api, zero, [tx("z-1", "30.00", month_start(end) - 3 * DAY)])

    run = await close_period(api, end + HOUR)
    assert summary(run)["made"] == 1 and summary(run)["nothing to pay"] == 1 and summary(run)["failed"] == 0
    state = await theirs(api, weekly)
    [payout] = state["payouts"]["nodes"]
    assert (payout["periodType"], payout["periodStart"], payout["periodEnd"]) == (
        "WEEKLY", (end - 7 * DAY).isoformat(), end.isoformat())
    assert sorted(ids(payout["sourceTransactions"])) == ["w-1", "w-2", "w-late"]
    assert payout["amount"]["amount"] == "141.85"  # Starter 3.50 %: 97.00 - 3.40, 10.00 - 0.35, 40.00 - 1.40
    assert ids(state["unpaid"]["nodes"]) == ["w-next"]
    [line] = payout_lines(run)
    assert line.startswith(f"Bench Partner {weekly:07d} (connection {weekly}): payout ") and (
        f" for the week {end - 7 * DAY:%Y-%m-%d} to {end:%Y-%m-%d}, 3 transactions: gross 147.00 USD, fees 5.15 USD, "
        "net 141.85 USD; no payout preference: available to the Partner") in line
    assert (await theirs(api, zero))["payouts"]["nodes"] == [], "nothing to pay out: no payout"
    assert [t.payout_id for t in await stored(api, connection_id=zero)] == [None]

    # The next week is a payout of its own.
    following = await close_period(api, end + 7 * DAY + HOUR)
    assert len([line for line in payout_lines(following) if line.startswith(f"Bench Partner {weekly:07d}")]) == 1
    newest = (await theirs(api, weekly))["payouts"]["nodes"][0]
    assert (newest["periodStart"], newest["periodEnd"], ids(newest["sourceTransactions"])) == (
        end.isoformat(), (end + 7 * DAY).isoformat(), ["w-next"])
    assert await verify(api) == []


async def concurrent_closes(api: Api, extra: int) -> None:
    now = NOW
    end = month_start(now, 1)
    added = await add_connections(api, extra)
    for k, cid in enumerate(added):
        await record_directly(api, cid, [tx(f"cc-{cid}-{i}", f"{10 + k}.{i:02d}", now - (i + 1) * HOUR)
                                         for i in range(3)])
    if added:  # some prefer the wallet, some a split (without a bank account: the wallet part only)
        await write(api, *(prefer(cid, "CREDIT") for cid in added[::3]),
                    *(prefer(cid, "SPLIT", 40) for cid in added[1::3]))
    S = m.SubOrgTransaction
    due = dict(await api.rows(select(S.connection_id, func.sum(S.partner_amount))
                              .where(S.payout_id.is_(None), S.occurred_at < end).group_by(S.connection_id)))

    runs = await asyncio.gather(*(cli(api, "close-period", "--now", (end + DAY).isoformat()) for _ in range(3)))
    assert [r.code for r in runs] == [0, 0, 0], [r.err[-2000:] for r in runs if r.code]
    assert sum(summary(r)["made"] for r in runs) == len(due), "each connection's payout made by exactly one run"
    assert sum(len(payout_lines(r)) for r in runs) == len(due)
    made = dict(await api.rows(select(m.Payout.connection_id, m.Payout.amount).where(m.Payout.period_end == end)))
    assert made == due
    assert (await api.rows(select(func.count()).where(S.payout_id.is_(None), S.occurred_at < end)))[0][0] == 0
    for cid in added[::3]:
        assert (await theirs(api, cid))["payouts"]["nodes"][0]["status"] == "COMPLETED"
    assert await verify(api) == []

    again = await asyncio.gather(*(cli(api, "close-period", "--now", (end + DAY).isoformat()) for _ in range(3)))
    assert [summary(r)["made"] for r in again] == [0, 0, 0]
    assert (await api.rows(select(func.count()).where(m.Payout.period_end == end)))[0][0] == len(due)
    assert await verify(api) == []


async def test_three_close_period_runs_at_once_make_each_payout_exactly_once(api: Api) -> None:
    await concurrent_closes(api, extra=12)


@pytest.mark.postgres
async def test_three_runs_at_once_on_postgresql_share_many_connections_with_skip_locked(api: Api) -> None:
    if "postgresql" not in api.settings.database_url:
        pytest.skip("needs PostgreSQL: set TEST_DATABASE_URL")
    await concurrent_closes(api, extra=90)


# ---- the payout preference at close ---------------------------------------------------------

async def test_the_preference_credits_the_wallet_splits_or_leaves_the_payout_available(api: Api) -> None:
    now = NOW
    end = month_start(now, 1)
    northwind, bluebird, cedar = [await api.connection_id(e) for e in (OWNER, BLUEBIRD, CEDAR)]
    await write(api, prefer(northwind, "CREDIT"), prefer(bluebird, "SPLIT", 30), prefer(cedar, "TRANSFER"))
    before = {e: Decimal((await mine(api, e))["wallet"]["balance"]["amount"]) for e in (OWNER, BLUEBIRD, CEDAR)}

    run = await close_period(api, end + DAY)
    assert summary(run)["made"] == 3

    credited = (await mine(api, OWNER))
    p = credited["payouts"]["nodes"][0]
    assert (p["status"], p["disposition"], p["walletAmount"], p["availableAmount"]["amount"]) == (
        "COMPLETED", "CREDIT", p["amount"], "0.00")
    assert p["dispositions"] == [{"kind": "CREDIT", "walletAmount": p["amount"], "bankAmount": {"amount": "0.00"},
                                  "byPreference": True}]
    assert Decimal(credited["wallet"]["balance"]["amount"]) == before[OWNER] + Decimal(p["amount"]["amount"])
    assert f"preference CREDIT: {p['amount']['amount']} USD credited to the wallet" in payout_lines(run)[0]

    split = await mine(api, BLUEBIRD)
    p = split["payouts"]["nodes"][0]
    net = int(Decimal(p["amount"]["amount"]) * 100)
    wallet_part = money.basis_points_of(net, 3000)
    assert (p["status"], p["disposition"]) == ("PROCESSING", "SPLIT")
    assert (p["walletAmount"]["amount"], p["bankAmountInFlight"]["amount"]) == (amount(wallet_part), amount(net - wallet_part))
    [transfer] = p["transfers"]
    assert (transfer["status"], transfer["amount"]["amount"], transfer["bankAccount"]["last4"]) == (
        "PENDING", amount(net - wallet_part), "0394")
    assert transfer["submittedAt"] is not None, "sent to the processor after the payout committed"
    assert Decimal(split["wallet"]["balance"]["amount"]) == before[BLUEBIRD] + money.to_decimal(wallet_part, "USD")

    kept = (await mine(api, CEDAR))["payouts"]["nodes"][0]
    assert (kept["status"], kept["disposition"], kept["availableAmount"]) == ("AVAILABLE", None, kept["amount"])
    cedar_line = next(line for line in payout_lines(run) if line.startswith("Cedar Collective"))
    assert cedar_line.endswith(f"preference TRANSFER: {kept['amount']['amount']} USD left available, as there is no "
                               "default bank account")
    assert await verify(api) == []


async def test_the_transfer_preference_sends_the_payout_to_the_default_bank_account(api: Api) -> None:
    end = month_start(NOW, 1)
    northwind = await api.connection_id(OWNER)
    await write(api, prefer(northwind, "TRANSFER"))
    run = await close_period(api, end + DAY)
    p = (await mine(api, OWNER))["payouts"]["nodes"][0]
    assert (p["status"], p["disposition"], p["bankAmountInFlight"], p["availableAmount"]["amount"]) == (
        "PROCESSING", "TRANSFER", p["amount"], "0.00")
    [transfer] = p["transfers"]
    assert (transfer["status"], transfer["amount"], transfer["bankAccount"]["last4"]) == ("PENDING", p["amount"], "4821")
    pid = await payout_id(api, northwind, end)
    [(bt_id, status, ref, submitted)] = await api.rows(
        select(m.BankTransfer.id, m.BankTransfer.status, m.BankTransfer.gateway_ref, m.BankTransfer.submitted_at)
        .where(m.BankTransfer.payout_id == pid))
    assert (status, ref, submitted) == ("PENDING", f"sbt_sandbox_ok_bt{bt_id}", end + DAY)
    line = next(line for line in payout_lines(run) if line.startswith("Northwind Agency"))
    assert line.endswith(f"preference TRANSFER: {p['amount']['amount']} USD to the bank account ending 4821 "
                         f"(bank transfer {bt_id}: sent to the processor as sbt_sandbox_ok_bt{bt_id}, PENDING)")
    assert await account_balance(api, f"payout:{pid}") == int(Decimal(p["amount"]["amount"]) * 100), \
        "reserved on the payout's account until the bank says PAID"
    assert await verify(api) == []
