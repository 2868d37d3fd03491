"""The wallet's statement is its ledger account's entries: in order, adding up, saying what each came from."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select

from db import models as m
from tests.conftest import Api

OWNER = "owner@northwind.example"

STATEMENT = """query($after: String) { viewer { partner { revampdConnection { wallet {
    balance { amount currencyCode }
    entries(first: 100, after: $after) {
      edges { node { id kind amount { amount } balanceAfter { amount } memo createdAt
                     createdBy { name }
                     source { __typename ... on Invoice { number } ... on AffiliatePayout { id } ... on Payout { id } } } }
      pageInfo { hasNextPage endCursor } } } } } } }"""


async def statement(api: Api) -> tuple[Decimal, list[dict[str, Any]]]:
    lines: list[dict[str, Any]] = []
    after = None
    while True:
        wallet = (await api.gql(STATEMENT, {"after": after}, as_=OWNER))["viewer"]["partner"]["revampdConnection"]["wallet"]
        lines += [e["node"] for e in wallet["entries"]["edges"]]
        if not wallet["entries"]["pageInfo"]["hasNextPage"]:
            return Decimal(wallet["balance"]["amount"]), lines
        after = wallet["entries"]["pageInfo"]["endCursor"]


async def test_the_statement_adds_up_newest_first_to_the_balance(ro_api: Api) -> None:
    balance, lines = await statement(ro_api)
    assert lines and Decimal(lines[0]["balanceAfter"]["amount"]) == balance
    oldest_first = list(reversed(lines))
    running = Decimal(0)
    for line in oldest_first:
        running += Decimal(line["amount"]["amount"])
        assert Decimal(line["balanceAfter"]["amount"]) == running >= 0, line
    assert [line["createdAt"] for line in lines] == sorted((line["createdAt"] for line in lines), reverse=True)
    cid = await ro_api.connection_id(OWNER)
    rows = await ro_api.rows(select(m.LedgerEntry.id).join(m.LedgerAccount).where(
        m.LedgerAccount.connection_id == cid, m.LedgerAccount.kind == "WALLET"))
    assert len(lines) == len(rows)


async def test_each_line_says_what_it_came_from(ro_api: Api) -> None:
    _, lines = await statement(ro_api)
    sources: dict[str, set[str | None]] = {line["kind"]: set() for line in lines}
    for line in lines:
        sources[line["kind"]].add(line["source"]["__typename"] if line["source"] else None)
    assert sources["INVOICE_PAYMENT"] == {"Invoice"}
    assert sources["AFFILIATE_PAYOUT"] == {"AffiliatePayout"}
    assert sources["PAYOUT_CREDIT"] == {"Payout"}
    assert sources["REVENUE_SHARE"] == {None}
    paid = [line for line in lines if line["kind"] == "INVOICE_PAYMENT"]
    assert all(Decimal(line["amount"]["amount"]) < 0 and line["source"]["number"] in line["memo"] for line in paid)


async def test_an_applied_affiliate_payout_links_to_its_wallet_line(ro_api: Api) -> None:
    q = """{ viewer { partner { revampdConnection { affiliatePayouts(first: 50) { edges { node {
        id creditStatus amount { amount } walletEntry { kind amount { amount } source { ... on AffiliatePayout { id } } } } } } } } } }"""
    payouts = [e["node"] for e in (await ro_api.gql(q, as_=OWNER))["viewer"]["partner"]["revampdConnection"]["affiliatePayouts"]["edges"]]
    applied = [p for p in payouts if p["creditStatus"] == "APPLIED"]
    assert applied and any(p["creditStatus"] == "PENDING" for p in payouts)
    for p in payouts:
        entry = p["walletEntry"]
        if p["creditStatus"] == "PENDING":
            assert entry is None
        else:
            assert entry["kind"] == "AFFILIATE_PAYOUT" and entry["amount"] == p["amount"]
            assert entry["source"]["id"] == p["id"]
