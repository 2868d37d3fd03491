"""Plan changes through the API: scheduled for the next cycle, checked, admin-only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select, update

from db import models as m
from db.engine import create_engine, write_sessions
from schema.base import to_global_id
from tests.conftest import Api

OWNER = "owner@northwind.example"  # SCALE; usage 12 sub-orgs, 140 campaigns, 60 workflows
MEMBER = "member@northwind.example"
BLUEBIRD = "owner@bluebird.example"  # GROWTH, pending DOWNGRADE to STARTER
SUPPORT = "support@revampd.example"
BILLING = "billing@revampd.example"

CHANGE = "kind targetPlan { code } effectiveAt requestedAt"
STATE = f"""{{ viewer {{ partner {{ revampdConnection {{
  subscription {{ status plan {{ code }} currentPeriodEnd pendingChange {{ {CHANGE} }} }}
  pendingChange {{ {CHANGE} }}
  projectedNextInvoice {{ billedAt plan {{ amount }} addOns {{ amount }} total {{ amount currencyCode }}
    lines {{ description quantity unitAmount {{ amount }} amount {{ amount }} }} }}
}} }} }} }}"""
PLAN_CODES = {"STARTER", "GROWTH", "SCALE", "ENTERPRISE", "LEGACY"}
MUTATIONS = ("upgradePlan", "downgradePlan", "cancelSubscription", "withdrawPlanChange")


async def plan_id(api: Api, code: str) -> str:
    """Global ID of any plan, retired ones too (the catalogue lists only choosable plans)."""
    ((pk,),) = await api.rows(select(m.Plan.id).where(m.Plan.code == code))
    return to_global_id("Plan", pk)


async def mutate(api: Api, name: str, as_: str, plan: str | None = None, **extra: Any) -> dict[str, Any]:
    """Run one plan mutation; returns its payload."""
    other = "withdrawnChange" if name == "withdrawPlanChange" else "replacedChange"
    doc = f"""mutation($input: {name[0].upper()}{name[1:]}Input!) {{ {name}(input: $input) {{
      subscription {{ plan {{ code }} currentPeriodEnd pendingChange {{ {CHANGE} }} }}
      {other} {{ {CHANGE} }}
      userErrors {{ field code message }} clientMutationId }} }}"""
    payload = dict(extra)
    if plan is not None:
        payload["planId"] = await plan_id(api, plan) if plan in PLAN_CODES else plan
    data = await api.gql(doc, {"input": payload}, as_=as_)
    return dict(data[name])


async def state(api: Api, as_: str) -> dict[str, Any]:
    data = await api.gql(STATE, as_=as_)
    return dict(data["viewer"]["partner"]["revampdConnection"])


def codes(payload: dict[str, Any]) -> list[str]:
    return [e["code"] for e in payload["userErrors"]]


async def set_row(api: Api, email: str, model: type[m.Usage] | type[m.Subscription], **values: Any) -> None:
    """Usage (refreshed by the platform) and ended subscriptions have no mutation here: set them directly."""
    engine = create_engine(api.settings.database_url)
    try:
        async with write_sessions(engine)() as s, s.begin():
            partner_id = select(m.User.partner_id).where(m.User.email == email).scalar_subquery()
            conn_id = select(m.Connection.id).where(m.Connection.partner_id == partner_id).scalar_subquery()
            await s.execute(update(model).where(model.connection_id == conn_id).values(**values))
    finally:
        await engine.dispose()


async def set_usage(api: Api, email: str, sub_orgs: int, campaigns: int, workflows: int) -> None:
    await set_row(api, email, m.Usage, sub_orgs=sub_orgs, campaigns=campaigns, workflows=workflows)


async def test_upgrade_is_scheduled_for_the_end_of_the_current_period(api: Api) -> None:
    payload = await mutate(api, "upgradePlan", OWNER, "ENTERPRISE", clientMutationId="up-1")
    assert payload["userErrors"] == [] and payload["clientMutationId"] == "up-1"
    sub = payload["subscription"]
    assert sub["plan"]["code"] == "SCALE", "the current plan runs to the end of the period"
    assert sub["pendingChange"]["kind"] == "UPGRADE"
    assert sub["pendingChange"]["targetPlan"]["code"] == "ENTERPRISE"
    assert sub["pendingChange"]["effectiveAt"] == sub["currentPeriodEnd"]
    assert payload["replacedChange"] is None
    after = await state(api, OWNER)
    assert after["pendingChange"] == after["subscription"]["pendingChange"] == sub["pendingChange"]


async def test_downgrade_is_scheduled_when_usage_fits_the_lower_plan(api: Api) -> None:
    await set_usage(api, OWNER, 8, 90, 40)
    payload = await mutate(api, "downgradePlan", OWNER, "GROWTH")
    assert payload["userErrors"] == []
    change = payload["subscription"]["pendingChange"]
    assert (change["kind"], change["targetPlan"]["code"]) == ("DOWNGRADE", "GROWTH")
    assert change["effectiveAt"] == payload["subscription"]["currentPeriodEnd"]


async def test_downgrade_below_usage_is_refused_with_the_numbers(api: Api) -> None:
    before = await state(api, OWNER)
    payload = await mutate(api, "downgradePlan", OWNER, "GROWTH")
    assert payload["subscription"] is None
    [error] = payload["userErrors"]
    assert error["code"] == "USAGE_EXCEEDS_LIMIT" and error["field"] == ["input", "planId"]
    for expected in (
        "12 sub-orgs in use; Growth allows 10.",
        "140 campaigns in use; Growth allows 100.",
        "60 workflows in use; Growth allows 50.",
    ):
        assert expected in error["message"]
    assert await state(api, OWNER) == before

    # Only the limit that is exceeded is named.
    await set_usage(api, OWNER, 12, 90, 40)
    [error] = (await mutate(api, "downgradePlan", OWNER, "GROWTH"))["userErrors"]
    assert error["message"] == "12 sub-orgs in use; Growth allows 10."


@pytest.mark.parametrize(
    ("mutation", "plan", "code"),
    [
        ("upgradePlan", "GROWTH", "NOT_AN_UPGRADE"),
        ("downgradePlan", "ENTERPRISE", "NOT_A_DOWNGRADE"),
        ("upgradePlan", "SCALE", "SAME_PLAN"),
        ("downgradePlan", "SCALE", "SAME_PLAN"),
        ("upgradePlan", "LEGACY", "PLAN_RETIRED"),
        ("downgradePlan", "LEGACY", "PLAN_RETIRED"),
        ("upgradePlan", to_global_id("Plan", 10**9), "NOT_FOUND"),
        ("upgradePlan", "not-an-id", "NOT_FOUND"),
        ("downgradePlan", to_global_id("AddOnProduct", 1), "NOT_FOUND"),
    ],
)
async def test_wrong_direction_same_unknown_or_retired_plan_is_a_user_error(
    api: Api, mutation: str, plan: str, code: str
) -> None:
    before = await state(api, OWNER)
    payload = await mutate(api, mutation, OWNER, plan)
    assert payload["subscription"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, ["input", "planId"])]
    assert await state(api, OWNER) == before


async def test_a_new_request_replaces_the_pending_change_and_says_which(api: Api) -> None:
    upgrade = await mutate(api, "upgradePlan", BLUEBIRD, "SCALE")
    assert upgrade["userErrors"] == []
    replaced = upgrade["replacedChange"]
    assert (replaced["kind"], replaced["targetPlan"]["code"]) == ("DOWNGRADE", "STARTER")
    assert upgrade["subscription"]["pendingChange"]["targetPlan"]["code"] == "SCALE"

    cancel = await mutate(api, "cancelSubscription", BLUEBIRD)
    assert (cancel["replacedChange"]["kind"], cancel["replacedChange"]["targetPlan"]["code"]) == ("UPGRADE", "SCALE")
    pending = cancel["subscription"]["pendingChange"]
    assert pending["kind"] == "CANCEL" and pending["targetPlan"] is None
    assert pending["effectiveAt"] == cancel["subscription"]["currentPeriodEnd"]
    assert (await state(api, BLUEBIRD))["pendingChange"]["kind"] == "CANCEL"


async def test_withdraw_drops_the_pending_change_including_a_cancel(api: Api) -> None:
    await mutate(api, "cancelSubscription", OWNER)
    withdrawn = await mutate(api, "withdrawPlanChange", OWNER, clientMutationId="w")
    assert withdrawn["userErrors"] == [] and withdrawn["clientMutationId"] == "w"
    assert withdrawn["withdrawnChange"]["kind"] == "CANCEL"
    assert withdrawn["subscription"]["pendingChange"] is None
    after = await state(api, OWNER)
    assert after["pendingChange"] is None and after["subscription"]["plan"]["code"] == "SCALE"

    again = await mutate(api, "withdrawPlanChange", OWNER)
    assert codes(again) == ["NO_PENDING_CHANGE"] and again["subscription"] is None
    assert await state(api, OWNER) == after

    dropped = (await mutate(api, "withdrawPlanChange", BLUEBIRD))["withdrawnChange"]
    assert (dropped["kind"], dropped["targetPlan"]["code"]) == ("DOWNGRADE", "STARTER")


@pytest.mark.parametrize(("mutation", "plan"), [("upgradePlan", "ENTERPRISE"), ("cancelSubscription", None)])
async def test_repeating_a_plan_change_leaves_the_same_state_as_once(
    api: Api, mutation: str, plan: str | None
) -> None:
    first = await mutate(api, mutation, OWNER, plan)
    once = await state(api, OWNER)
    second = await mutate(api, mutation, OWNER, plan)
    assert second["userErrors"] == [] and second["replacedChange"] is None
    assert second["subscription"] == first["subscription"]
    assert await state(api, OWNER) == once


@pytest.mark.parametrize("user", [MEMBER, SUPPORT, BILLING])
async def test_only_a_partner_admin_may_change_the_plan(api: Api, user: str) -> None:
    before = await state(api, OWNER)
    for mutation, plan in zip(MUTATIONS, ("ENTERPRISE", "GROWTH", None, None), strict=False):
        payload = await mutate(api, mutation, user, plan)
        assert payload["subscription"] is None, mutation
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [("FORBIDDEN", None)], mutation
    assert await state(api, OWNER) == before


async def test_another_partners_admin_changes_only_its_own_subscription(api: Api) -> None:
    northwind = await state(api, OWNER)
    # Bluebird's downgrade is checked against its own usage, not Northwind's (which would not fit).
    await set_usage(api, BLUEBIRD, 1, 1, 1)
    for mutation, plan in zip(MUTATIONS, ("SCALE", "STARTER", None, None), strict=False):
        assert codes(await mutate(api, mutation, BLUEBIRD, plan)) == [], mutation
    assert await state(api, OWNER) == northwind
    assert (await state(api, BLUEBIRD))["pendingChange"] is None


async def test_plan_change_preview_answers_before_anything_is_scheduled(api: Api) -> None:
    q = """query($id: ID!) { viewer { partner { revampdConnection {
      planChangePreview(planId: $id) { direction allowed effectiveAt newMonthlyPrice { amount }
        blockers { limit inUse allowed message } } } } } }"""

    async def preview(code: str) -> dict[str, Any]:
        data = await api.gql(q, {"id": await plan_id(api, code)}, as_=OWNER)
        return dict(data["viewer"]["partner"]["revampdConnection"]["planChangePreview"])

    before = await state(api, OWNER)
    up, down, same = await preview("ENTERPRISE"), await preview("GROWTH"), await preview("SCALE")
    assert (up["direction"], up["allowed"], up["newMonthlyPrice"]["amount"]) == ("UPGRADE", True, "999.00")
    assert up["effectiveAt"] == before["subscription"]["currentPeriodEnd"]
    assert (down["direction"], down["allowed"]) == ("DOWNGRADE", False)
    assert [b["limit"] for b in down["blockers"]] == ["subOrgs", "campaigns", "workflows"]
    assert (same["direction"], same["allowed"]) == (None, False)
    assert await state(api, OWNER) == before, "a preview schedules nothing"

    # The preview and the mutation agree, word for word.
    [error] = (await mutate(api, "downgradePlan", OWNER, "GROWTH"))["userErrors"]
    assert error["message"] == " ".join(b["message"] for b in down["blockers"])

    errors = await api.errors(q, {"id": await plan_id(api, "LEGACY")}, as_=OWNER)
    assert errors[0]["extensions"]["code"] == "PLAN_RETIRED"


async def test_plan_comparison_shows_the_limits_that_are_enforced(api: Api) -> None:
    table = (await api.gql("{ planComparison { plans { code } rows { feature values } } }", as_=MEMBER))["planComparison"]
    growth = [p["code"] for p in table["plans"]].index("GROWTH")
    shown = {r["feature"]: r["values"][growth] for r in table["rows"]}
    preview = await api.gql(
        "query($id: ID!) { viewer { partner { revampdConnection { planChangePreview(planId: $id) { blockers { limit allowed } } } } } }",
        {"id": await plan_id(api, "GROWTH")},
        as_=OWNER,
    )
    blockers = preview["viewer"]["partner"]["revampdConnection"]["planChangePreview"]["blockers"]
    assert blockers and all(shown[b["limit"]] == str(b["allowed"]) for b in blockers)


async def test_projected_invoice_follows_the_pending_plan_change(api: Api) -> None:
    now = (await state(api, OWNER))["projectedNextInvoice"]
    assert (now["plan"]["amount"], now["addOns"]["amount"], now["total"]["amount"]) == ("399.00", "31.00", "430.00")
    assert now["total"]["currencyCode"] == "USD"
    assert now["lines"][0] == {"description": "Scale plan", "quantity": 1, "unitAmount": {"amount": "399.00"}, "amount": {"amount": "399.00"}}
    assert now["billedAt"] == (await state(api, OWNER))["subscription"]["currentPeriodEnd"]

    await mutate(api, "upgradePlan", OWNER, "ENTERPRISE")
    upgraded = (await state(api, OWNER))["projectedNextInvoice"]
    assert (upgraded["plan"]["amount"], upgraded["total"]["amount"]) == ("999.00", "1030.00")

    await mutate(api, "cancelSubscription", OWNER)
    canceled = (await state(api, OWNER))["projectedNextInvoice"]
    assert (canceled["plan"]["amount"], canceled["total"]["amount"]) == ("0.00", "31.00")
    assert all("plan" not in line["description"] for line in canceled["lines"])

    # Bluebird's pending downgrade is already priced in: Starter, not Growth.
    bluebird = (await state(api, BLUEBIRD))["projectedNextInvoice"]
    assert (bluebird["plan"]["amount"], bluebird["addOns"]["amount"]) == ("49.00", "6.00")


async def test_an_ended_subscription_cannot_be_changed(api: Api) -> None:
    await set_row(api, OWNER, m.Subscription, status="CANCELED")
    for mutation, plan in zip(MUTATIONS, ("ENTERPRISE", "GROWTH", None, None), strict=False):
        assert codes(await mutate(api, mutation, OWNER, plan)) == ["SUBSCRIPTION_CANCELED"], mutation
    assert (await state(api, OWNER))["projectedNextInvoice"]["plan"]["amount"] == "0.00"


async def test_concurrent_plan_changes_leave_exactly_one_pending_change(api: Api) -> None:
    """Changes to one subscription take turns: the later one replaces the earlier, none is lost half-done."""
    enterprise = await plan_id(api, "ENTERPRISE")
    upgrade, cancel = await asyncio.gather(
        mutate(api, "upgradePlan", OWNER, enterprise),
        mutate(api, "cancelSubscription", OWNER),
    )
    assert upgrade["userErrors"] == [] and cancel["userErrors"] == []
    final = (await state(api, OWNER))["pendingChange"]
    assert final["kind"] in ("UPGRADE", "CANCEL")
    first, last = (upgrade, cancel) if final["kind"] == "CANCEL" else (cancel, upgrade)
    assert last["replacedChange"] == first["subscription"]["pendingChange"]
    assert first["replacedChange"] is None
