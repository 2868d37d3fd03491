"""Add-ons through the API: more is usable at once, less waits for the period's end."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from schema.base import to_global_id
from tests.conftest import Api

OWNER = "owner@northwind.example"  # LOCAL_NUMBER x5, TOLL_FREE_NUMBER x2
MEMBER = "member@northwind.example"
BLUEBIRD = "owner@bluebird.example"
CEDAR = "owner@cedar.example"  # no add-ons
SUPPORT = "support@revampd.example"
BILLING = "billing@revampd.example"

ADDON = "id quantity pendingQuantity pendingEffectiveAt product { code } unitPrice { amount } monthlyTotal { amount }"
STATE = f"""{{ viewer {{ partner {{ revampdConnection {{
  subscription {{ currentPeriodEnd }}
  usage {{ phoneNumbers }}
  addOns {{ {ADDON} }}
  projectedNextInvoice {{ addOns {{ amount }} total {{ amount }} lines {{ description quantity amount {{ amount }} }} }}
}} }} }} }}"""
UNKNOWN_ADDON = to_global_id("AddOn", 10**9)


async def mutate(api: Api, name: str, as_: str, **input: Any) -> dict[str, Any]:
    doc = f"""mutation($input: {name[0].upper()}{name[1:]}Input!) {{ {name}(input: $input) {{
      addOn {{ {ADDON} }} userErrors {{ field code message }} clientMutationId }} }}"""
    return dict((await api.gql(doc, {"input": input}, as_=as_))[name])


async def state(api: Api, as_: str) -> dict[str, Any]:
    return dict((await api.gql(STATE, as_=as_))["viewer"]["partner"]["revampdConnection"])


async def addon(api: Api, as_: str, code: str) -> dict[str, Any]:
    return next(a for a in (await state(api, as_))["addOns"] if a["product"]["code"] == code)


async def product_id(api: Api, code: str) -> str:
    products = (await api.gql("{ addOnProducts { id code } }", as_=CEDAR))["addOnProducts"]
    return str(next(p["id"] for p in products if p["code"] == code))


def errors(payload: dict[str, Any]) -> list[tuple[str, list[str] | None]]:
    return [(e["code"], e["field"]) for e in payload["userErrors"]]


async def test_an_added_product_is_usable_at_once_and_on_the_next_invoice(api: Api) -> None:
    payload = await mutate(
        api, "addAddOn", CEDAR, productId=await product_id(api, "LOCAL_NUMBER"), quantity=3, clientMutationId="a1"
    )
    assert payload["userErrors"] == [] and payload["clientMutationId"] == "a1"
    added = payload["addOn"]
    assert (added["quantity"], added["pendingQuantity"]) == (3, None)
    assert (added["unitPrice"]["amount"], added["monthlyTotal"]["amount"]) == ("3.00", "9.00")
    cedar = await state(api, CEDAR)
    assert [a["id"] for a in cedar["addOns"]] == [added["id"]]
    assert cedar["usage"]["phoneNumbers"] == 3
    invoice = cedar["projectedNextInvoice"]
    assert invoice["addOns"]["amount"] == "9.00" and invoice["total"]["amount"] == "58.00"  # Starter 49.00
    assert {"description": "Local phone number", "quantity": 3, "amount": {"amount": "9.00"}} in invoice["lines"]


@pytest.mark.parametrize(("code", "quantity"), [("LOCAL_NUMBER", 0), ("LOCAL_NUMBER", -2), ("LOCAL_NUMBER", 101), ("TOLL_FREE_NUMBER", 51)])
async def test_quantity_must_be_a_positive_whole_number_within_the_products_maximum(
    api: Api, code: str, quantity: int
) -> None:
    before = await state(api, OWNER)
    added = await mutate(api, "addAddOn", CEDAR, productId=await product_id(api, code), quantity=quantity)
    updated = await mutate(api, "updateAddOn", OWNER, addOnId=(await addon(api, OWNER, code))["id"], quantity=quantity)
    for payload in (added, updated):
        assert errors(payload) == [("INVALID_QUANTITY", ["input", "quantity"])] and payload["addOn"] is None
    assert "from 1 to" in added["userErrors"][0]["message"]
    assert (await state(api, CEDAR))["addOns"] == [] and await state(api, OWNER) == before


async def test_a_fractional_quantity_is_refused_by_the_schema(api: Api) -> None:
    doc = "mutation($i: AddAddOnInput!) { addAddOn(input: $i) { addOn { id } } }"
    variables = {"i": {"productId": await product_id(api, "LOCAL_NUMBER"), "quantity": 1.5}}
    assert "Int" in (await api.errors(doc, variables, as_=CEDAR))[0]["message"]
    assert (await state(api, CEDAR))["addOns"] == []


async def test_an_unknown_product_or_one_already_added_is_a_user_error(api: Api) -> None:
    for bad in (to_global_id("AddOnProduct", 10**9), "garbage", to_global_id("Plan", 1)):
        payload = await mutate(api, "addAddOn", CEDAR, productId=bad, quantity=1)
        assert errors(payload) == [("NOT_FOUND", ["input", "productId"])], bad
    before = await state(api, OWNER)
    again = await mutate(api, "addAddOn", OWNER, productId=await product_id(api, "LOCAL_NUMBER"), quantity=1)
    assert errors(again) == [("ALREADY_ADDED", ["input", "productId"])]
    assert "updateAddOn" in again["userErrors"][0]["message"]
    assert await state(api, OWNER) == before


async def test_an_increase_is_usable_at_once(api: Api) -> None:
    local = await addon(api, OWNER, "LOCAL_NUMBER")
    payload = await mutate(api, "updateAddOn", OWNER, addOnId=local["id"], quantity=8)
    assert (payload["addOn"]["quantity"], payload["addOn"]["pendingQuantity"]) == (8, None)
    after = await state(api, OWNER)
    assert after["usage"]["phoneNumbers"] == 8 + 2
    assert after["projectedNextInvoice"]["addOns"]["amount"] == "40.00"  # 8 x 3.00 + 2 x 8.00


async def test_a_decrease_waits_for_the_end_of_the_period(api: Api) -> None:
    local = await addon(api, OWNER, "LOCAL_NUMBER")
    payload = await mutate(api, "updateAddOn", OWNER, addOnId=local["id"], quantity=2)
    changed = payload["addOn"]
    after = await state(api, OWNER)
    assert (changed["quantity"], changed["pendingQuantity"]) == (5, 2), "paid-for numbers stay until then"
    assert changed["pendingEffectiveAt"] == after["subscription"]["currentPeriodEnd"]
    assert changed["monthlyTotal"]["amount"] == "15.00"
    assert after["usage"]["phoneNumbers"] == 7
    assert after["projectedNextInvoice"]["addOns"]["amount"] == "22.00"  # 2 x 3.00 + 2 x 8.00


async def test_a_removal_waits_for_the_end_of_the_period(api: Api) -> None:
    toll_free = await addon(api, OWNER, "TOLL_FREE_NUMBER")
    payload = await mutate(api, "removeAddOn", OWNER, addOnId=toll_free["id"], clientMutationId="r")
    assert payload["clientMutationId"] == "r"
    assert (payload["addOn"]["quantity"], payload["addOn"]["pendingQuantity"]) == (2, 0)
    after = await state(api, OWNER)
    assert toll_free["id"] in [a["id"] for a in after["addOns"]], "still listed until the period ends"
    assert after["subscription"]["currentPeriodEnd"] == payload["addOn"]["pendingEffectiveAt"]
    assert [line["description"] for line in after["projectedNextInvoice"]["lines"]] == ["Scale plan", "Local phone number"]
    assert after["projectedNextInvoice"]["addOns"]["amount"] == "15.00"


async def test_a_new_quantity_replaces_a_pending_decrease(api: Api) -> None:
    gid = (await addon(api, OWNER, "LOCAL_NUMBER"))["id"]

    async def set_to(quantity: int) -> tuple[int, int | None]:
        a = (await mutate(api, "updateAddOn", OWNER, addOnId=gid, quantity=quantity))["addOn"]
        return a["quantity"], a["pendingQuantity"]

    assert await set_to(2) == (5, 2)
    assert await set_to(4) == (5, 4), "a smaller decrease adjusts the pending one"
    assert await set_to(5) == (5, None), "keeping the current quantity drops the decrease"
    await mutate(api, "removeAddOn", OWNER, addOnId=gid)
    assert await set_to(7) == (7, None), "an increase cancels a pending removal and applies at once"
    after = await addon(api, OWNER, "LOCAL_NUMBER")
    assert (after["quantity"], after["pendingQuantity"], after["pendingEffectiveAt"]) == (7, None, None)


@pytest.mark.parametrize(("mutation", "quantity"), [("updateAddOn", 2), ("updateAddOn", 9), ("removeAddOn", None)])
async def test_repeating_an_add_on_change_leaves_the_same_state_as_once(
    api: Api, mutation: str, quantity: int | None
) -> None:
    gid = (await addon(api, OWNER, "LOCAL_NUMBER"))["id"]
    args: dict[str, Any] = {"addOnId": gid} if quantity is None else {"addOnId": gid, "quantity": quantity}
    first = await mutate(api, mutation, OWNER, **args)
    once = await state(api, OWNER)
    second = await mutate(api, mutation, OWNER, **args)
    assert second["userErrors"] == [] and second["addOn"] == first["addOn"]
    assert await state(api, OWNER) == once


async def test_adding_the_same_product_twice_keeps_one_add_on(api: Api) -> None:
    pid = await product_id(api, "TOLL_FREE_NUMBER")
    first, second = await asyncio.gather(
        mutate(api, "addAddOn", CEDAR, productId=pid, quantity=1),
        mutate(api, "addAddOn", CEDAR, productId=pid, quantity=1),
    )
    assert sorted(c for p in (first, second) for c, _ in errors(p)) == ["ALREADY_ADDED"]
    assert [a["quantity"] for a in (await state(api, CEDAR))["addOns"]] == [1]


@pytest.mark.parametrize("user", [MEMBER, SUPPORT, BILLING])
async def test_only_a_partner_admin_may_change_add_ons(api: Api, user: str) -> None:
    before = await state(api, OWNER)
    gid = before["addOns"][0]["id"]
    payloads = [
        await mutate(api, "addAddOn", user, productId=await product_id(api, "LOCAL_NUMBER"), quantity=1),
        await mutate(api, "updateAddOn", user, addOnId=gid, quantity=9),
        await mutate(api, "removeAddOn", user, addOnId=gid),
    ]
    for payload in payloads:
        assert errors(payload) == [("FORBIDDEN", None)] and payload["addOn"] is None
    assert await state(api, OWNER) == before


async def test_another_partners_add_on_reads_exactly_like_a_missing_one(api: Api) -> None:
    before = await state(api, OWNER)
    theirs = before["addOns"][0]["id"]
    for mutation, extra in (("updateAddOn", {"quantity": 1}), ("removeAddOn", {})):
        foreign = await mutate(api, mutation, BLUEBIRD, addOnId=theirs, **extra)
        missing = await mutate(api, mutation, BLUEBIRD, addOnId=UNKNOWN_ADDON, **extra)
        assert foreign == missing
        assert errors(foreign) == [("NOT_FOUND", ["input", "addOnId"])]
    assert await state(api, OWNER) == before
    node = await api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": theirs}, as_=BLUEBIRD)
    assert node["node"] is None
