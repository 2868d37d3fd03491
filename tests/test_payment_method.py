"""The card on file: a Partner admin sets it from a processor token; only brand, last 4
and expiry are kept and shown."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from db import models as m
from tests.conftest import Api

OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"
BLUEBIRD = "owner@bluebird.example"
SUPPORT = "support@revampd.example"
BILLING = "billing@revampd.example"

CARD = "paymentMethod { brand last4 expMonth expYear }"
UPDATE = f"""mutation($input: UpdatePaymentMethodInput!) {{ updatePaymentMethod(input: $input) {{
  {CARD} revampdConnection {{ {CARD} }} userErrors {{ field code message }} clientMutationId }} }}"""
READ = f"{{ viewer {{ partner {{ revampdConnection {{ {CARD} }} }} }} }}"
VISA = {"brand": "Visa", "last4": "4242", "expMonth": 12, "expYear": 2034}


async def update(api: Api, as_: str, token: str, **extra: Any) -> dict[str, Any]:
    data = await api.gql(UPDATE, {"input": {"cardToken": token, **extra}}, as_=as_)
    return dict(data["updatePaymentMethod"])


async def card_on_file(api: Api, as_: str) -> dict[str, Any] | None:
    data = await api.gql(READ, as_=as_)
    card: dict[str, Any] | None = data["viewer"]["partner"]["revampdConnection"]["paymentMethod"]
    return card


async def stored(api: Api, email: str) -> tuple[Any, ...]:
    cid = await api.connection_id(email)
    c = m.Connection
    [row] = await api.rows(
        select(c.card_token, c.card_brand, c.card_last4, c.card_exp_month, c.card_exp_year).where(c.id == cid)
    )
    return tuple(row)


async def test_an_admin_puts_a_card_on_file_from_a_token_and_everyone_of_the_partner_sees_it(api: Api) -> None:
    assert await card_on_file(api, OWNER) is None
    payload = await update(api, OWNER, "tok_visa_4242", clientMutationId="c1")
    assert payload["userErrors"] == [] and payload["clientMutationId"] == "c1"
    assert payload["paymentMethod"] == payload["revampdConnection"]["paymentMethod"] == VISA
    assert await card_on_file(api, MEMBER) == VISA
    assert await card_on_file(api, BLUEBIRD) is None, "another Partner's card is not theirs"
    assert await stored(api, OWNER) == ("tok_visa_4242", "Visa", "4242", 12, 2034)

    # A new card replaces it.
    payload = await update(api, OWNER, "tok_mastercard_4444")
    assert payload["paymentMethod"] == {"brand": "Mastercard", "last4": "4444", "expMonth": 12, "expYear": 2034}
    assert await stored(api, OWNER) == ("tok_mastercard_4444", "Mastercard", "4444", 12, 2034)


async def test_staff_read_the_card_of_any_partner(api: Api) -> None:
    await update(api, OWNER, "tok_amex_0005")
    data = await api.gql(
        f"{{ nodes(ids: [\"{await _connection_gid(api, OWNER)}\"]) {{ ... on RevampdConnection {{ {CARD} }} }} }}",
        as_=SUPPORT,
    )
    assert data["nodes"][0]["paymentMethod"]["last4"] == "0005"


async def _connection_gid(api: Api, email: str) -> str:
    data = await api.gql("{ viewer { partner { revampdConnection { id } } } }", as_=email)
    return str(data["viewer"]["partner"]["revampdConnection"]["id"])


@pytest.mark.parametrize("who", [MEMBER, SUPPORT, BILLING])
async def test_only_a_partner_admin_changes_the_card(api: Api, who: str) -> None:
    payload = await update(api, who, "tok_visa_4242")
    assert [e["code"] for e in payload["userErrors"]] == ["FORBIDDEN"]
    assert payload["paymentMethod"] is None
    assert await stored(api, OWNER) == (None,) * 5


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("tok_unknown", "not known to the payment processor"),
        ("", "token from the payment processor"),
        ("tok_visa_4242\n", "token from the payment processor"),
        ("x" * 201, "token from the payment processor"),
        ("4242 4242 4242 4242", "never a card number"),
        ("4000056655665556", "never a card number"),
    ],
)
async def test_anything_but_a_known_processor_token_is_refused(api: Api, token: str, says: str) -> None:
    await update(api, OWNER, "tok_visa_4242")
    payload = await update(api, OWNER, token)
    [error] = payload["userErrors"]
    assert (error["code"], error["field"]) == ("INVALID_CARD_TOKEN", ["input", "cardToken"])
    assert says in error["message"]
    assert token not in error["message"] or not token, "a card number is never echoed back"
    assert await card_on_file(api, OWNER) == VISA, "the card on file is unchanged"
