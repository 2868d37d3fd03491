"""Bank accounts for payouts through the GraphQL API: link one (tokenized, only the last
four digits kept), choose the default, unlink one no transfer is on its way to."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

import resolvers.bank_accounts
from db import models as m
from db import states
from db.engine import create_engine, write_sessions
from schema.base import from_global_id, to_global_id
from services import payouts
from services.access import Principal, Role
from services.bank_gateway import GatewayUnavailable, LinkedAccount, SandboxBankGateway
from services.errors import DomainError, ErrorCode
from tests.conftest import Api

OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"
BLUEBIRD = "owner@bluebird.example"
CEDAR = "owner@cedar.example"
SUPPORT = "support@revampd.example"
BILLING = "billing@revampd.example"

SANDBOX_ROUTING = "110000000"
# An account number that appears nowhere else, so that finding it anywhere is a leak.
SECRET_NUMBER = "73190046285"

ACCOUNT = "id holderName bankName last4 routingNumberLast4 isDefault createdAt removedAt"
LINK = f"""mutation($input: LinkBankAccountInput!) {{ linkBankAccount(input: $input) {{
  bankAccount {{ {ACCOUNT} }} userErrors {{ field code message }} clientMutationId }} }}"""
SET_DEFAULT = f"""mutation($input: SetDefaultBankAccountInput!) {{ setDefaultBankAccount(input: $input) {{
  bankAccount {{ {ACCOUNT} }} bankAccounts {{ {ACCOUNT} }} userErrors {{ field code message }}
  clientMutationId }} }}"""
UNLINK = f"""mutation($input: UnlinkBankAccountInput!) {{ unlinkBankAccount(input: $input) {{
  bankAccount {{ {ACCOUNT} }} bankAccounts {{ {ACCOUNT} }} userErrors {{ field code message }}
  clientMutationId }} }}"""
LISTED = f"{{ viewer {{ partner {{ revampdConnection {{ bankAccounts {{ {ACCOUNT} }} }} }} }} }}"
BANK_ACCOUNT_ID = ["input", "bankAccountId"]


# ---- helpers ------------------------------------------------------------------------

async def link(api: Api, *, as_: str = CEDAR, **input: Any) -> dict[str, Any]:
    """linkBankAccount; input defaults to a sandbox account that succeeds."""
    fields = {"holderName": "Cedar Collective LLC", "routingNumber": SANDBOX_ROUTING,
              "accountNumber": "000123456789", **input}
    return dict((await api.gql(LINK, {"input": fields}, as_=as_))["linkBankAccount"])


async def linked(api: Api, *, as_: str = CEDAR, **input: Any) -> dict[str, Any]:
    """A linked account (the link must succeed)."""
    payload = await link(api, as_=as_, **input)
    assert payload["userErrors"] == [], payload
    return dict(payload["bankAccount"])


async def set_default(api: Api, account_id: str, *, as_: str = CEDAR) -> dict[str, Any]:
    data = await api.gql(SET_DEFAULT, {"input": {"bankAccountId": account_id}}, as_=as_)
    return dict(data["setDefaultBankAccount"])


async def unlink(api: Api, account_id: str, *, as_: str = CEDAR) -> dict[str, Any]:
    data = await api.gql(UNLINK, {"input": {"bankAccountId": account_id}}, as_=as_)
    return dict(data["unlinkBankAccount"])


async def listed(api: Api, who: str = CEDAR) -> list[dict[str, Any]]:
    """RevampdConnection.bankAccounts, as the Partner's admin sees them."""
    return list((await api.gql(LISTED, as_=who))["viewer"]["partner"]["revampdConnection"]["bankAccounts"])


def refusal(payload: dict[str, Any]) -> tuple[str, list[str] | None]:
    """The one user error of a refused mutation, which answers no objects."""
    assert len(payload["userErrors"]) == 1, payload
    assert payload["bankAccount"] is None and payload.get("bankAccounts") is None, payload
    return payload["userErrors"][0]["code"], payload["userErrors"][0]["field"]


async def account_rows(api: Api) -> list[tuple[Any, ...]]:
    """Every bank account row, to check that a refused request changed nothing."""
    rows = await api.rows(select(
        m.BankAccount.id, m.BankAccount.connection_id, m.BankAccount.is_default, m.BankAccount.removed_at,
        m.BankAccount.account_token,
    ).order_by(m.BankAccount.id))
    return [tuple(r) for r in rows]


async def defaults(api: Api, email: str) -> list[int]:
    """Ids of the live default accounts of `email`'s connection: there is one, or none."""
    cid = await api.connection_id(email)
    rows = await api.rows(select(m.BankAccount.id).where(
        m.BankAccount.connection_id == cid, m.BankAccount.is_default.is_(True), m.BankAccount.removed_at.is_(None)
    ))
    return [r[0] for r in rows]


async def northwind_accounts(api: Api) -> dict[str, dict[str, Any]]:
    """Northwind's seeded accounts by bank: Chase (the default) and Wells Fargo."""
    return {a["bankName"]: a for a in await listed(api, OWNER)}


def gid(pk: int) -> str:
    return to_global_id("BankAccount", pk)


def pk(account: dict[str, Any]) -> int:
    parsed = from_global_id(account["id"])
    assert parsed is not None and parsed[0] == "BankAccount"
    return parsed[1]


async def send_a_transfer(api: Api, email: str, account_id: int, amount: str) -> m.BankTransfer:
    """Transfer `amount` of one of the connection's AVAILABLE payouts to a bank account, as
    its admin would with transferPayout (services.payouts.transfer, in a write transaction)."""
    cid = await api.connection_id(email)
    [(partner_id,)] = await api.rows(select(m.User.partner_id).where(m.User.email == email))
    [(payout_id,)] = (await api.rows(
        select(m.Payout.id).where(m.Payout.connection_id == cid, m.Payout.available_amount > 0)
        .order_by(m.Payout.id).limit(1)
    ))
    principal = Principal(api.ids[email], partner_id, cid, frozenset({Role.PARTNER_ADMIN}))
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as session, session.begin():
            disposed = await payouts.transfer(
                session, principal, payout_id, bank_account_id=account_id, amount=amount,
                idempotency_key=f"transfer-{account_id}-{amount}",
            )
    finally:
        await engine.dispose()
    assert disposed.bank_transfer is not None and disposed.bank_transfer.status == "PENDING"
    return disposed.bank_transfer


async def cancel_the_transfer(api: Api, email: str, transfer_id: int) -> None:
    cid = await api.connection_id(email)
    [(partner_id,)] = await api.rows(select(m.User.partner_id).where(m.User.email == email))
    principal = Principal(api.ids[email], partner_id, cid, frozenset({Role.PARTNER_ADMIN}))
    engine = create_engine(api.settings.database_url)
    try:
        await payouts.cancel(write_sessions(engine), principal, SandboxBankGateway(), transfer_id)
    finally:
        await engine.dispose()


# ---- linkBankAccount ------------------------------------------------------------------

async def test_the_first_account_of_a_connection_becomes_its_default(api: Api) -> None:
    assert await listed(api) == []
    payload = await link(api, holderName="  Cedar Collective LLC ", makeDefault=False, clientMutationId="c-1")
    assert payload["userErrors"] == [] and payload["clientMutationId"] == "c-1"
    account = payload["bankAccount"]
    assert account["holderName"] == "Cedar Collective LLC", "trimmed"
    assert account["bankName"] == "Sandbox Test Bank", "named from the routing number"
    assert (account["last4"], account["routingNumberLast4"]) == ("6789", "0000")
    assert account["isDefault"] is True and account["removedAt"] is None
    assert await listed(api) == [account]
    assert await defaults(api, CEDAR) == [pk(account)]


async def test_a_later_account_is_not_the_default_unless_asked(api: Api) -> None:
    chase = (await northwind_accounts(api))["JPMorgan Chase Bank"]
    plain = await linked(api, as_=OWNER, holderName="Northwind Agency LLC", accountNumber="55501234")
    assert plain["isDefault"] is False and await defaults(api, OWNER) == [pk(chase)]
    chosen = await linked(api, as_=OWNER, holderName="Northwind Agency LLC", accountNumber="55509876",
                          makeDefault=True)
    assert chosen["isDefault"] is True and await defaults(api, OWNER) == [pk(chosen)]
    now = {a["id"]: a["isDefault"] for a in await listed(api, OWNER)}
    assert now == {chase["id"]: False, (await northwind_accounts(api))["Wells Fargo Bank"]["id"]: False,
                   plain["id"]: False, chosen["id"]: True}


@pytest.mark.parametrize(("routing", "name"), [
    ("021000021", "JPMorgan Chase Bank"),
    ("121000248", "Wells Fargo Bank"),
    ("026009593", "Bank of America"),
    ("011000015", "Bank with routing number ending 0015"),
])
async def test_without_a_bank_name_it_is_taken_from_the_routing_number(api: Api, routing: str, name: str) -> None:
    assert (await linked(api, routingNumber=routing))["bankName"] == name


async def test_a_bank_name_given_is_kept_trimmed(api: Api) -> None:
    account = await linked(api, routingNumber="011000015", bankName="  First Credit Union of Cedar \t")
    assert account["bankName"] == "First Credit Union of Cedar"
    assert (await linked(api, bankName="b" * 200, accountNumber="4444"))["bankName"] == "b" * 200


async def test_the_account_number_is_never_stored_logged_or_returned(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    variables = {"input": {"holderName": "Cedar Collective LLC", "routingNumber": SANDBOX_ROUTING,
                           "accountNumber": SECRET_NUMBER, "idempotencyKey": "link-secret"}}
    responses = [await api.post(LINK, variables, as_=CEDAR) for _ in range(2)]  # the first, and a replay
    for response in responses:
        assert response.status_code == 200 and SECRET_NUMBER not in response.text
        assert response.json()["data"]["linkBankAccount"]["bankAccount"]["last4"] == "6285"
    # A refused request (the account number is fine, the routing number is not) keeps nothing either.
    bad = {"input": {**variables["input"], "routingNumber": "123456789", "idempotencyKey": "link-bad"}}
    refused = await api.post(LINK, bad, as_=CEDAR)
    assert refused.status_code == 200 and SECRET_NUMBER not in refused.text
    listing = await api.post(LISTED, as_=CEDAR)
    assert SECRET_NUMBER not in listing.text
    assert SECRET_NUMBER not in caplog.text
    # No column of any row of any table holds it, whole or as part of a value.
    found = []
    for table in m.Base.metadata.sorted_tables:
        for row in await api.rows(select(table)):
            found += [f"{table.name}.{col}" for col, value in row._mapping.items() if SECRET_NUMBER in str(value)]
    assert found == []
    [(last4, token)] = await api.rows(select(m.BankAccount.account_last4, m.BankAccount.account_token)
                                      .where(m.BankAccount.connection_id == await api.connection_id(CEDAR)))
    assert last4 == "6285" and token.startswith("btok_sandbox_")


# ---- linkBankAccount: what input ------------------------------------------------------

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@pytest.mark.parametrize("routing", [
    "", "12345678", "1234567890", "12345678a", "0210-0002", " 021000021", "021000021 ", "021000021\n",
    "021000021".translate(ARABIC_INDIC), "021000021".translate(FULLWIDTH), "²¹⁰⁰⁰⁰²¹",
    "123456789", "021000022", "121000249",  # nine digits whose check digit is wrong
])
async def test_a_routing_number_is_9_digits_with_a_valid_aba_check_digit(api: Api, routing: str) -> None:
    before = await account_rows(api)
    payload = await link(api, routingNumber=routing)
    assert refusal(payload) == ("INVALID_ROUTING_NUMBER", ["input", "routingNumber"])
    assert await account_rows(api) == before


@pytest.mark.parametrize("number", [
    "", "123", "1" * 18, "12345678a", "0001-2345-6789", "0001 2345", " 12345678", "-12345678", "+12345678",
    "12345678".translate(ARABIC_INDIC), "12345678".translate(FULLWIDTH), "1234\u0665678", "１２3456",
])
async def test_an_account_number_is_4_to_17_ascii_digits(api: Api, number: str) -> None:
    before = await account_rows(api)
    payload = await link(api, accountNumber=number)
    assert refusal(payload) == ("INVALID_ACCOUNT_NUMBER", ["input", "accountNumber"])
    assert await account_rows(api) == before


@pytest.mark.parametrize("number", ["0000", "1234", "1" * 17, "00000000000000001"])
async def test_account_numbers_of_4_and_17_digits_are_linked(api: Api, number: str) -> None:
    assert (await linked(api, accountNumber=number))["last4"] == number[-4:]


@pytest.mark.parametrize("holder", ["", "   ", "x" * 201, " " + "x" * 201, "Ann\nLee", "Ann\tLee",
                                    "Ann\x7fLee", "Ann\u2028Lee", "Ann\x85Lee"])
async def test_a_holder_name_is_1_to_200_characters_without_control_characters(api: Api, holder: str) -> None:
    before = await account_rows(api)
    payload = await link(api, holderName=holder)
    assert refusal(payload) == ("INVALID_HOLDER_NAME", ["input", "holderName"])
    assert await account_rows(api) == before


async def test_a_holder_name_of_200_characters_after_trimming_is_linked(api: Api) -> None:
    name = "Zoë Ōkubo-Łukasiewicz " + "ä" * 178
    assert len(name) == 200
    assert (await linked(api, holderName=f"  {name}\n"))["holderName"] == name


@pytest.mark.parametrize("bank", ["", "  ", "b" * 201, "Bank\nof Cedar"])
async def test_a_bank_name_when_given_is_1_to_200_characters_without_control_characters(
    api: Api, bank: str
) -> None:
    before = await account_rows(api)
    assert refusal(await link(api, bankName=bank)) == ("INVALID_BANK_NAME", ["input", "bankName"])
    assert await account_rows(api) == before


async def test_every_bad_field_is_named_at_once(api: Api) -> None:
    before = await account_rows(api)
    payload = await link(api, holderName=" ", routingNumber="12345678a", accountNumber="12",
                         bankName="", idempotencyKey="")
    assert payload["bankAccount"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("INVALID_HOLDER_NAME", ["input", "holderName"]),
        ("INVALID_ROUTING_NUMBER", ["input", "routingNumber"]),
        ("INVALID_ACCOUNT_NUMBER", ["input", "accountNumber"]),
        ("INVALID_BANK_NAME", ["input", "bankName"]),
        ("INVALID_IDEMPOTENCY_KEY", ["input", "idempotencyKey"]),
    ]
    assert all(e["message"] for e in payload["userErrors"])
    assert await account_rows(api) == before


async def test_error_messages_never_repeat_the_numbers(api: Api) -> None:
    """Someone may type the account number into the routing number's field."""
    payload = await link(api, routingNumber="987654321", accountNumber="98765432123456789012")
    messages = " ".join(e["message"] for e in payload["userErrors"])
    assert len(payload["userErrors"]) == 2
    assert "987654321" not in messages and "5432123456789" not in messages


class _Processor(SandboxBankGateway):
    """The sandbox, but down, or refusing every account."""

    def __init__(self, down: bool) -> None:
        self.down = down

    async def link_account(self, holder_name: str, routing_number: str, account_number: str) -> LinkedAccount:
        if self.down:
            raise GatewayUnavailable("connection refused")
        raise DomainError(ErrorCode.BANK_ACCOUNT_REFUSED, "The bank says this account cannot receive transfers.", "accountNumber")


@pytest.mark.parametrize(("down", "code"), [(True, "GATEWAY_UNAVAILABLE"), (False, "BANK_ACCOUNT_REFUSED")])
async def test_a_processor_that_refuses_or_does_not_answer_links_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch, down: bool, code: str
) -> None:
    monkeypatch.setattr(resolvers.bank_accounts, "bank_gateway_named", lambda name, lag: _Processor(down))
    before = await account_rows(api)
    payload = await link(api, idempotencyKey="link-1")
    assert refusal(payload) == (code, ["input", "accountNumber"])
    assert await account_rows(api) == before
    monkeypatch.undo()
    assert (await linked(api, idempotencyKey="link-1"))["isDefault"] is True, "the key was left unused"


# ---- idempotency ----------------------------------------------------------------------

async def test_a_retried_link_answers_with_the_first_account_and_links_nothing_more(api: Api) -> None:
    first = await linked(api, idempotencyKey="link-1")
    rows = await account_rows(api)
    again = await link(api, idempotencyKey="link-1", clientMutationId="retry")
    assert again["userErrors"] == [] and again["clientMutationId"] == "retry"
    assert again["bankAccount"] == first
    assert await account_rows(api) == rows, "one row, one token: the processor was not asked again"


async def test_the_same_key_with_another_account_is_refused(api: Api) -> None:
    await linked(api, idempotencyKey="link-1")
    rows = await account_rows(api)
    for other in ({"accountNumber": "000111111116"}, {"holderName": "Someone Else"}, {"makeDefault": True},
                  {"routingNumber": "021000021"}, {"bankName": "Sandbox Test Bank"}):
        payload = await link(api, idempotencyKey="link-1", **other)
        assert refusal(payload) == ("IDEMPOTENCY_KEY_REUSED", ["input", "idempotencyKey"]), other
    assert await account_rows(api) == rows


async def test_a_refused_link_leaves_its_key_unused(api: Api) -> None:
    assert refusal(await link(api, routingNumber="123456789", idempotencyKey="link-1"))[0] == "INVALID_ROUTING_NUMBER"
    assert (await linked(api, idempotencyKey="link-1"))["isDefault"] is True


async def test_20_concurrent_retries_of_one_link_link_one_account(api: Api) -> None:
    variables = {"input": {"holderName": "Cedar Collective LLC", "routingNumber": SANDBOX_ROUTING,
                           "accountNumber": "000123456789", "idempotencyKey": "link-burst"}}
    responses = await asyncio.gather(*(api.post(LINK, variables, as_=CEDAR) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    payloads = [r.json()["data"]["linkBankAccount"] for r in responses]
    assert all(p["userErrors"] == [] for p in payloads)
    assert len({p["bankAccount"]["id"] for p in payloads}) == 1
    assert len(await listed(api)) == 1


# ---- who may ----------------------------------------------------------------------------

@pytest.mark.parametrize("who", [MEMBER, SUPPORT, BILLING])
async def test_only_the_partner_admin_manages_bank_accounts(api: Api, who: str) -> None:
    accounts = await northwind_accounts(api)
    wells = accounts["Wells Fargo Bank"]["id"]
    before = await account_rows(api)
    for payload in (await link(api, as_=who), await set_default(api, wells, as_=who),
                    await unlink(api, wells, as_=who)):
        assert refusal(payload) == ("FORBIDDEN", None)
        assert "PARTNER_ADMIN" in payload["userErrors"][0]["message"]
    assert await account_rows(api) == before


async def test_another_partners_account_reads_like_a_missing_one(api: Api) -> None:
    theirs = (await listed(api, BLUEBIRD))[0]["id"]
    before = await account_rows(api)
    for mutation in (set_default, unlink):
        foreign, missing = await mutation(api, theirs, as_=OWNER), await mutation(api, gid(10**9), as_=OWNER)
        assert refusal(foreign) == refusal(missing) == ("NOT_FOUND", BANK_ACCOUNT_ID)
        assert foreign["userErrors"] == missing["userErrors"]
        for wrong in ("nonsense", to_global_id("Payout", 1), theirs + "=", ""):
            assert refusal(await mutation(api, wrong, as_=OWNER)) == ("NOT_FOUND", BANK_ACCOUNT_ID), wrong
    assert await account_rows(api) == before


# ---- setDefaultBankAccount --------------------------------------------------------------

async def test_setting_the_default_moves_it_from_the_old_one(api: Api) -> None:
    accounts = await northwind_accounts(api)
    chase, wells = accounts["JPMorgan Chase Bank"], accounts["Wells Fargo Bank"]
    payload = await set_default(api, wells["id"], as_=OWNER)
    assert payload["userErrors"] == []
    assert payload["bankAccount"]["id"] == wells["id"] and payload["bankAccount"]["isDefault"] is True
    assert [(a["id"], a["isDefault"]) for a in payload["bankAccounts"]] == [(chase["id"], False), (wells["id"], True)]
    assert payload["bankAccounts"] == await listed(api, OWNER)
    assert await defaults(api, OWNER) == [pk(wells)]
    # Back again; and asking for the default it already is changes nothing.
    assert (await set_default(api, chase["id"], as_=OWNER))["bankAccount"]["isDefault"] is True
    rows = await account_rows(api)
    again = await set_default(api, chase["id"], as_=OWNER)
    assert again["userErrors"] == [] and again["bankAccount"]["isDefault"] is True
    assert await account_rows(api) == rows and await defaults(api, OWNER) == [pk(chase)]


async def test_the_accounts_are_listed_oldest_first(api: Api) -> None:
    a = await linked(api, accountNumber="11111111")
    b = await linked(api, accountNumber="22222222")
    c = await linked(api, accountNumber="33333333")
    payload = await set_default(api, c["id"])
    assert [x["id"] for x in payload["bankAccounts"]] == [a["id"], b["id"], c["id"]]
    assert [x["isDefault"] for x in payload["bankAccounts"]] == [False, False, True]


# ---- unlinkBankAccount ------------------------------------------------------------------

async def test_unlinking_the_default_makes_the_oldest_remaining_one_the_default(api: Api) -> None:
    a = await linked(api, accountNumber="11111111")
    b = await linked(api, accountNumber="22222222")
    c = await linked(api, accountNumber="33333333")
    assert a["isDefault"] and not b["isDefault"] and not c["isDefault"]
    payload = await unlink(api, a["id"])
    assert payload["userErrors"] == []
    gone = payload["bankAccount"]
    assert gone["id"] == a["id"] and gone["removedAt"] is not None and gone["isDefault"] is False
    assert [(x["id"], x["isDefault"]) for x in payload["bankAccounts"]] == [(b["id"], True), (c["id"], False)]
    assert await listed(api) == payload["bankAccounts"]
    assert await defaults(api, CEDAR) == [pk(b)]
    # Unlinking one that is not the default leaves the default alone; the last one leaves none.
    assert [x["id"] for x in (await unlink(api, c["id"]))["bankAccounts"]] == [b["id"]]
    assert await defaults(api, CEDAR) == [pk(b)]
    last = await unlink(api, b["id"])
    assert last["userErrors"] == [] and last["bankAccounts"] == [] and await listed(api) == []
    # A new link is the default again.
    assert (await linked(api, accountNumber="44444444"))["isDefault"] is True


async def test_an_unlinked_account_is_not_found_but_still_readable_by_id(api: Api) -> None:
    a = await linked(api, accountNumber="11111111")
    await linked(api, accountNumber="22222222")
    assert (await unlink(api, a["id"]))["userErrors"] == []
    rows = await account_rows(api)
    assert refusal(await unlink(api, a["id"])) == ("NOT_FOUND", BANK_ACCOUNT_ID)
    assert refusal(await set_default(api, a["id"])) == ("NOT_FOUND", BANK_ACCOUNT_ID)
    assert await account_rows(api) == rows
    # Transfers made to it still name it: node() shows it, unlinked.
    node = await api.gql(f'{{ node(id: "{a["id"]}") {{ ... on BankAccount {{ {ACCOUNT} }} }} }}', as_=CEDAR)
    assert node["node"]["removedAt"] is not None and node["node"]["isDefault"] is False


async def test_an_account_with_a_transfer_in_flight_cannot_be_unlinked(api: Api) -> None:
    a = await linked(api, accountNumber="11111111")
    b = await linked(api, accountNumber="22222222")
    first = await send_a_transfer(api, CEDAR, pk(b), "1.25")
    await send_a_transfer(api, CEDAR, pk(b), "2.50")
    rows = await account_rows(api)
    payload = await unlink(api, b["id"])
    assert refusal(payload) == ("BANK_ACCOUNT_IN_USE", BANK_ACCOUNT_ID)
    message = payload["userErrors"][0]["message"]
    assert "2 transfers" in message and "3.75 USD" in message and "ending 2222" in message, message
    assert await account_rows(api) == rows
    # The default is refused the same way, and stays the default.
    await send_a_transfer(api, CEDAR, pk(a), "1.00")
    only = await unlink(api, a["id"])
    assert refusal(only) == ("BANK_ACCOUNT_IN_USE", BANK_ACCOUNT_ID)
    assert "1 transfer is" in only["userErrors"][0]["message"] and "1.00 USD" in only["userErrors"][0]["message"]
    assert await defaults(api, CEDAR) == [pk(a)]
    # Once no transfer is on its way to it (one canceled; one sent on, then paid), it can go.
    await cancel_the_transfer(api, CEDAR, first.id)
    assert refusal(await unlink(api, b["id"]))[0] == "BANK_ACCOUNT_IN_USE"
    other = (await api.rows(select(m.BankTransfer.id).where(
        m.BankTransfer.bank_account_id == pk(b), m.BankTransfer.status == "PENDING")))[0][0]
    engine = create_engine(api.settings.database_url)
    try:
        gateway = SandboxBankGateway()
        sent = await payouts.submit(write_sessions(engine), gateway, other)
        assert sent is not None and sent.gateway_ref is not None
        assert await payouts.sync_one(write_sessions(engine), gateway, other) == "applied"
    finally:
        await engine.dispose()
    assert (await api.rows(select(m.BankTransfer.status).where(m.BankTransfer.id == other)))[0][0] == "PAID"
    done = await unlink(api, b["id"])
    assert done["userErrors"] == [] and done["bankAccount"]["removedAt"] is not None


async def test_the_seeded_default_with_a_transfer_in_transit_cannot_be_unlinked(api: Api) -> None:
    chase = (await northwind_accounts(api))["JPMorgan Chase Bank"]
    in_flight = await api.rows(select(m.BankTransfer.amount).where(
        m.BankTransfer.bank_account_id == pk(chase), m.BankTransfer.status.in_(states.IN_FLIGHT)))
    assert in_flight, "the demo data has a payout in transit to Northwind's default account"
    payload = await unlink(api, chase["id"], as_=OWNER)
    assert refusal(payload) == ("BANK_ACCOUNT_IN_USE", BANK_ACCOUNT_ID)
    total = sum(a for (a,) in in_flight)
    assert f"{total // 100:,}.{total % 100:02d} USD" in payload["userErrors"][0]["message"]
    # Wells Fargo has none on its way (its seeded transfer failed): it goes.
    wells = (await northwind_accounts(api))["Wells Fargo Bank"]
    assert (await unlink(api, wells["id"], as_=OWNER))["userErrors"] == []
    assert [a["id"] for a in await listed(api, OWNER)] == [chase["id"]]


# ---- concurrency ------------------------------------------------------------------------

async def test_100_concurrent_default_changes_leave_exactly_one_default(api: Api) -> None:
    accounts = await northwind_accounts(api)
    ids = [accounts["JPMorgan Chase Bank"]["id"], accounts["Wells Fargo Bank"]["id"]]
    responses = await asyncio.gather(*(
        api.post(SET_DEFAULT, {"input": {"bankAccountId": ids[i % 2]}}, as_=OWNER) for i in range(100)
    ))
    assert Counter(r.status_code for r in responses) == {200: 100}, [r.text for r in responses if r.status_code != 200][:3]
    bodies = [r.json() for r in responses]
    assert [b for b in bodies if b.get("errors")] == []
    for body, expected in zip(bodies, (ids[i % 2] for i in range(100)), strict=True):
        payload = body["data"]["setDefaultBankAccount"]
        assert payload["userErrors"] == [] and payload["bankAccount"]["id"] == expected
        # Each answer saw its own change committed: one default, the one it asked for.
        assert [a["id"] for a in payload["bankAccounts"] if a["isDefault"]] == [expected]
    [default] = await defaults(api, OWNER)
    assert gid(default) in ids
    assert [a["id"] for a in await listed(api, OWNER) if a["isDefault"]] == [gid(default)]


async def test_20_concurrent_links_that_each_ask_to_be_the_default_leave_one(api: Api) -> None:
    responses = await asyncio.gather(*(api.post(LINK, {"input": {
        "holderName": "Cedar Collective LLC", "routingNumber": SANDBOX_ROUTING, "accountNumber": f"{1000 + i:08d}",
        "makeDefault": i % 2 == 0,
    }}, as_=CEDAR) for i in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    payloads = [r.json()["data"]["linkBankAccount"] for r in responses]
    assert all(p["userErrors"] == [] for p in payloads)
    assert len(await listed(api)) == 20 and len(await defaults(api, CEDAR)) == 1


async def test_an_account_number_sent_as_a_number_never_reaches_the_log(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    query = """mutation { linkBankAccount(input: {holderName: "A", routingNumber: "110000000",
        accountNumber: 987654321012}) { bankAccount { id } } }"""
    with caplog.at_level(logging.INFO):
        response = await api.post(query, as_=OWNER)
    assert response.json()["errors"]  # refused: accountNumber is a String
    assert "987654321012" not in caplog.text and "[12 digits]" in caplog.text
