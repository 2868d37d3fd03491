"""The sandbox payment gateway: the documented test cards do what the README says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services import payments
from services.errors import DomainError

README = (Path(__file__).parents[1] / "README.md").read_text()


async def test_a_good_test_card_is_charged_once_per_idempotency_key() -> None:
    gateway = payments.SandboxGateway()
    first = await gateway.charge("tok_visa_4242", 43000, "USD", "billing:7:card:1")
    again = await gateway.charge("tok_visa_4242", 43000, "USD", "billing:7:card:1")
    other = await gateway.charge("tok_visa_4242", 43000, "USD", "billing:7:card:2")
    assert first.success and first.decline_reason is None
    assert first.charge_id is not None and first.charge_id.startswith("ch_sandbox_")
    assert again == first, "the same idempotency key is the same charge, as a processor answers a retry"
    assert other.charge_id != first.charge_id


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("tok_chargeDeclined_0002", "Your card was declined."),
        ("tok_insufficientFunds_9995", "Insufficient funds."),
        ("tok_expiredCard_0069", "Your card has expired."),
    ],
)
async def test_declining_test_cards_say_why(token: str, reason: str) -> None:
    result = await payments.SandboxGateway().charge(token, 4900, "USD", "k")
    assert (result.success, result.charge_id, result.decline_reason) == (False, None, reason)


async def test_the_card_behind_a_token_is_brand_last4_and_expiry_only() -> None:
    card = await payments.SandboxGateway().card("tok_mastercard_4444")
    assert (card.brand, card.last4) == ("Mastercard", "4444")
    assert 1 <= card.exp_month <= 12 and card.exp_year >= 2030


async def test_an_unknown_token_is_refused_and_a_processor_outage_is_an_error() -> None:
    gateway = payments.SandboxGateway()
    with pytest.raises(DomainError) as refused:
        await gateway.card("tok_nope")
    assert refused.value.code == "INVALID_CARD_TOKEN"
    with pytest.raises(payments.GatewayError):
        await gateway.charge("tok_processorDown_0000", 100, "USD", "k")


def test_the_readme_lists_every_sandbox_card_with_what_it_does() -> None:
    section = README.split("### Sandbox test cards", 1)[1].split("\n## ", 1)[0]
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `(tok_\w+)` \|[^|]*\|[^|]*\| (.+?) \|$", section, re.MULTILINE)
    }
    assert set(rows) == set(payments.SANDBOX_CARDS)
    for token, card in payments.SANDBOX_CARDS.items():
        expected = "succeeds" if card.outcome is None else card.outcome
        assert expected in rows[token], (token, rows[token])
