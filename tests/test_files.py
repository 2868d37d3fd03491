"""Documents and exports behind signed links: an invoice's PDF holds every number the API shows and
is the same bytes every time; a credit note and a receipt have theirs; a wallet statement exports
as CSV that agrees with the wallet; a link works for its object only, only until it expires, and
a changed, expired or foreign one is a 403 that tells nothing."""

from __future__ import annotations

import csv
import io
import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from db import models as m
from schema.base import to_global_id
from services import signed_urls
from tests import clock
from tests.conftest import Api
from tests.test_invoices import BILLING, BLUEBIRD, MEMBER, OWNER, balance, bill, pay
from tests.test_refunds import card_paid, refund

SUPPORT = "support@revampd.example"
INVOICE = """query($id: ID!) { node(id: $id) { ... on Invoice {
  id number status pdfUrl total { amount } amountPaid { amount } amountRefunded { amount } amountDue { amount }
  lineItems { description unitAmount { amount } amount { amount } }
  payments { amount { amount } method receiptUrl }
  refunds { amount { amount } method }
  creditNotes { id number pdfUrl total { amount } } } } }"""
EXPORT = """mutation($input: CreateExportInput!) { createExport(input: $input) {
  url filename expiresAt userErrors { field code message } } }"""


async def invoice(api: Api, gid: str, as_: str = OWNER) -> dict[str, Any]:
    return dict((await api.gql(INVOICE, {"id": gid}, as_=as_))["node"])


async def get(api: Api, url: str, **headers: str) -> httpx.Response:
    """GET as a browser opens a link: no token."""
    return await api.http.get(url, headers=headers)


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def usd(amount: str) -> str:
    """An amount as the API gives it ("1234.50") as a document prints it ("1,234.50 USD")."""
    return f"{Decimal(amount):,.2f} USD"


async def test_an_invoice_pdf_holds_every_number_the_api_shows_and_is_the_same_bytes_each_time(api: Api) -> None:
    inv = await card_paid(api)
    await refund(api, inv["id"], "25.00", reason="A seat unused")
    shown = await invoice(api, inv["id"])
    first = await get(api, shown["pdfUrl"])
    assert shown["pdfUrl"].startswith("http://test/files/invoice/") and first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/pdf"
    assert first.headers["content-disposition"] == f'inline; filename="{shown["number"]}.pdf"'
    text = text_of(first.content)
    numbers = [shown["number"], *(usd(shown[k]["amount"]) for k in ("total", "amountPaid", "amountRefunded", "amountDue"))]
    numbers += [usd(li[k]["amount"]) for li in shown["lineItems"] for k in ("unitAmount", "amount")]
    numbers += [usd(p["amount"]["amount"]) for p in shown["payments"]] + [usd(r["amount"]["amount"]) for r in shown["refunds"]]
    numbers += [c["number"] for c in shown["creditNotes"]] + ["Northwind Agency", "US 94-1234567", "Revampd, Inc."]
    assert [n for n in numbers if n not in text] == []
    # A new link, the same bytes; and the ETag says so.
    again = await get(api, (await invoice(api, inv["id"], as_=MEMBER))["pdfUrl"])
    assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
    unchanged = await get(api, shown["pdfUrl"], **{"If-None-Match": first.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""
    [(kept,)] = await api.rows(select(func.count()).select_from(m.Document))
    assert kept == 1


async def test_a_payment_makes_a_new_revision_and_the_old_one_is_kept(api: Api) -> None:
    gid = await bill(api, OWNER, 10_000)
    before = await get(api, (await invoice(api, gid))["pdfUrl"])
    assert usd("100.00") in text_of(before.content)
    await pay(api, gid, "40.00")
    after = await get(api, (await invoice(api, gid))["pdfUrl"])
    assert after.content != before.content and usd("60.00") in text_of(after.content)  # what is still due
    assert len(await api.rows(select(m.Document.id).where(m.Document.object_id == int(
        urlsplit((await invoice(api, gid))["pdfUrl"]).path.split("/")[3])))) == 2


async def test_a_credit_note_and_a_receipt_are_documents_too(api: Api) -> None:
    inv = await card_paid(api)
    note = (await refund(api, inv["id"], "12.34", reason="Billed twice for one seat"))["creditNote"]
    shown = await invoice(api, inv["id"])
    [listed] = [c for c in shown["creditNotes"] if c["id"] == note["id"]]
    pdf = await get(api, listed["pdfUrl"])
    assert pdf.status_code == 200 and pdf.headers["content-disposition"] == f'inline; filename="{note["number"]}.pdf"'
    text = text_of(pdf.content)
    assert [s for s in (note["number"], shown["number"], usd("12.34"), "Refunded to card", "Billed twice for one seat")
            if s not in text] == []
    payment = shown["payments"][-1]
    receipt = await get(api, payment["receiptUrl"])
    assert receipt.status_code == 200
    assert [s for s in (shown["number"], usd(payment["amount"]["amount"]), "Card") if s not in text_of(receipt.content)] == []


def tampered(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    path = changes.pop("path", parts.path)
    return f"{path}?{urlencode({**query, **changes})}"


async def test_a_link_works_for_its_object_only_and_until_it_expires(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    inv = await card_paid(api)
    url = (await invoice(api, inv["id"]))["pdfUrl"]
    theirs = next(iter((await api.gql("""{ viewer { partner { revampdConnection { invoices(first: 1) {
      edges { node { id pdfUrl } } } } } } }""", as_=BLUEBIRD))["viewer"]["partner"]["revampdConnection"]
        ["invoices"]["edges"]))["node"]
    other_id = urlsplit(theirs["pdfUrl"]).path.split("/")[3]
    own_id = urlsplit(url).path.split("/")[3]
    key = api.settings.files_signing_key
    past = clock.NOW - timedelta(seconds=1)  # the suite's clock starts at NOW and ticks on
    expired = signed_urls.sign(key, ["invoice", own_id, f"{inv['number']}.pdf"], {}, await api.connection_id(OWNER), past)
    forged = signed_urls.sign("x" * 40, ["invoice", own_id, f"{inv['number']}.pdf"], {}, await api.connection_id(OWNER),
                              past + timedelta(hours=1))
    # Another Partner's invoice under this Partner's signature, or under a link signed for this
    # Partner's connection: refused either way.
    cross = signed_urls.sign(key, ["invoice", other_id, "x.pdf"], {}, await api.connection_id(OWNER),
                             past + timedelta(hours=1))
    bad = {
        "another object": tampered(url, path=urlsplit(url).path.replace(f"/{own_id}/", f"/{other_id}/")),
        "another connection": tampered(url, c=str(await api.connection_id(BLUEBIRD))),
        "a later expiry": tampered(url, e=str(int(clock.NOW.timestamp()) + 86400)),
        "a changed signature": tampered(url, s="A" * 43),
        "no signature": urlsplit(url).path,
        "expired": expired, "signed with another key": forged, "another Partner's object": cross,
        "a missing object": tampered(url, path="/files/invoice/999999999/x.pdf"),
        "an id past any row": signed_urls.sign(key, ["invoice", "9" * 30, "x.pdf"], {}, await api.connection_id(OWNER),
                                               past + timedelta(hours=1)),
    }
    with caplog.at_level(logging.INFO, logger="revampd.files"):
        for why, link in bad.items():
            refused = await get(api, link)
            assert (refused.status_code, refused.text) == (403, "This link is not valid or has expired: ask for a new one."), why
            assert "%PDF" not in refused.text
    assert len([r for r in caplog.records if r.name == "revampd.files" and r.levelno == logging.INFO]) == len(bad)
    assert (await get(api, url)).status_code == 200


async def export(api: Api, as_: str, kind: str, **extra: Any) -> dict[str, Any]:
    input = {"connectionId": extra.pop("connection", None) or await connection_gid(api, OWNER), "kind": kind, **extra}
    return dict((await api.gql(EXPORT, {"input": input}, as_=as_))["createExport"])


async def connection_gid(api: Api, email: str) -> str:
    q = "{ viewer { partner { revampdConnection { id } } } }"
    return str((await api.gql(q, as_=email))["viewer"]["partner"]["revampdConnection"]["id"])


def rows_of(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode())))


async def test_the_wallet_statement_exports_every_entry_with_the_balance_after_it(api: Api) -> None:
    made = await export(api, OWNER, "WALLET_STATEMENT")
    assert made["userErrors"] == [] and made["filename"] == "wallet-statement-all.csv"
    got = await get(api, made["url"])
    assert got.status_code == 200 and got.headers["content-type"] == "text/csv; charset=utf-8"
    assert got.headers["content-disposition"] == 'attachment; filename="wallet-statement-all.csv"'
    rows = rows_of(got.content)
    wallet = await api.rows(select(m.LedgerAccount.id, m.LedgerAccount.entry_count).where(
        m.LedgerAccount.connection_id == await api.connection_id(OWNER), m.LedgerAccount.kind == "WALLET"))
    assert len(rows) == wallet[0][1] > 10
    assert Decimal(rows[-1]["balance_after"]) == await balance(api, OWNER)
    running = Decimal(0)
    for row in rows:
        running += Decimal(row["amount"])
        assert Decimal(row["balance_after"]) == running, row
    assert {"REFUND", "INVOICE_PAYMENT"} <= {r["kind"] for r in rows}
    # A period: only the entries made in it.
    cut = datetime.fromisoformat(rows[len(rows) // 2]["at"])
    later = rows_of((await get(api, (await export(api, OWNER, "WALLET_STATEMENT", **{"from": cut.isoformat()}))["url"])).content)
    assert later == [r for r in rows if datetime.fromisoformat(r["at"]) >= cut]


async def test_invoices_credit_notes_and_payouts_export_too(api: Api) -> None:
    inv = await card_paid(api)
    await refund(api, inv["id"], "5.00")
    invoices = rows_of((await get(api, (await export(api, MEMBER, "INVOICES"))["url"])).content)
    [row] = [r for r in invoices if r["number"] == inv["number"]]
    assert (row["amount_paid"], row["amount_refunded"], row["amount_due"]) == (inv["amountPaid"]["amount"], "5.00", "0.00")
    notes = rows_of((await get(api, (await export(api, BILLING, "CREDIT_NOTES"))["url"])).content)
    assert [(n["invoice"], n["total"], n["refunded_to_card"]) for n in notes if n["invoice"] == inv["number"]] == [
        (inv["number"], "5.00", "5.00")]
    payouts = rows_of((await get(api, (await export(api, OWNER, "PAYOUTS"))["url"])).content)
    assert {r["record"] for r in payouts} == {"payout", "bank transfer"}
    [(count,)] = await api.rows(select(func.count()).select_from(m.Payout).where(
        m.Payout.connection_id == await api.connection_id(OWNER)))
    assert len([r for r in payouts if r["record"] == "payout"]) == count


async def test_an_export_is_refused_for_a_bad_period_or_a_connection_not_yours(api: Api) -> None:
    bad = await export(api, OWNER, "INVOICES", **{"from": "2026-05-01T00:00:00Z", "until": "2026-04-01T00:00:00Z"})
    assert (bad["url"], [(e["code"], e["field"]) for e in bad["userErrors"]]) == (None, [("INVALID_PERIOD", ["input", "until"])])
    foreign = await export(api, OWNER, "INVOICES", connection=await connection_gid(api, BLUEBIRD))
    assert [(e["code"], e["field"]) for e in foreign["userErrors"]] == [("NOT_FOUND", ["input", "connectionId"])]
    support = await export(api, SUPPORT, "WALLET_STATEMENT")
    assert [e["code"] for e in support["userErrors"]] == ["FORBIDDEN"] and support["url"] is None


async def test_a_payout_statement_itemizes_its_transactions_and_bank_transfers(api: Api) -> None:
    cid = await api.connection_id(OWNER)
    [(payout_id,)] = await api.rows(
        select(m.Payout.id).join(m.BankTransfer, m.BankTransfer.payout_id == m.Payout.id)
        .where(m.Payout.connection_id == cid, m.BankTransfer.gateway_ref.is_not(None))
        .order_by(m.Payout.period_end.desc()).limit(1))
    q = """query($id: ID!) { node(id: $id) { ... on Payout { statementUrl grossAmount { amount } feeAmount { amount }
      amount { amount } sourceTransactions { externalId grossAmount { amount } feeAmount { amount }
      partnerAmount { amount } } transfers { amount { amount } traceId } } } }"""
    shown = (await api.gql(q, {"id": to_global_id("Payout", payout_id)}, as_=OWNER))["node"]
    got = await get(api, shown["statementUrl"])
    assert got.status_code == 200 and got.headers["content-disposition"].startswith('inline; filename="PO-')
    text = text_of(got.content)
    wanted = [usd(shown[k]["amount"]) for k in ("grossAmount", "feeAmount", "amount")]
    for t in shown["sourceTransactions"]:
        wanted += [t["externalId"], *(usd(t[k]["amount"]) for k in ("grossAmount", "feeAmount", "partnerAmount"))]
    assert any(b["traceId"] for b in shown["transfers"])
    wanted += [b["traceId"] for b in shown["transfers"] if b["traceId"]]
    assert [w for w in wanted if w not in text] == []
    # Another Partner's reader of the same payout: nothing.
    assert (await api.gql(q, {"id": to_global_id("Payout", payout_id)}, as_=BLUEBIRD))["node"] is None
