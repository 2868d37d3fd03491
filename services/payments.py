"""Charging the card on file: the gateway a processor plugs in behind, and its sandbox.

A Partner's browser gives its card to the processor and sends us the processor's
token; we keep only the token and what may be shown of the card (brand, last 4,
expiry), never its number. The billing run charges the token through a
`PaymentGateway`.

`charge` is idempotent by `idempotency_key`, as processors are: the billing run
charges inside the transaction that records the payment, so when that
transaction does not commit (a crash, a lost connection) the next run asks again
with the same key and gets the first answer back instead of a second charge.

`SandboxGateway` acts like a processor's test mode: the test cards in
`SANDBOX_CARDS` (listed in the README) succeed, decline with a reason, or fail
as an unreachable processor would; no network. A charge's id depends on the
card and the key alone, as a processor answers a key it has seen with the first
charge. Like a real processor it can be made slow and unreliable (`SandboxLag`):
a latency, a rate of calls that fail before doing anything, and a rate of
"lost answers" (the card is charged, the answer never arrives).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass, field
from typing import Protocol

from services.errors import DomainError, ErrorCode


@dataclass(frozen=True)
class Card:
    """What may be kept and shown of a card."""

    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class ChargeResult:
    """A processor's answer: charged (with its charge id), or declined and why."""

    success: bool
    charge_id: str | None = None
    decline_code: str | None = None
    decline_reason: str | None = None


@dataclass(frozen=True)
class RefundResult:
    """A processor's answer to a refund: made (with its refund id), or refused and why."""

    success: bool
    refund_id: str | None = None
    failure_reason: str | None = None


class GatewayError(Exception):
    """The processor did not answer: whether the card was charged is unknown. Ask again
    with the same idempotency key to learn it (never a new key)."""


class PaymentGateway(Protocol):
    async def card(self, token: str) -> Card:
        """The card behind `token`; a DomainError INVALID_CARD_TOKEN if the processor
        knows no such token."""
        ...

    async def charge(self, token: str, amount: int, currency: str, idempotency_key: str) -> ChargeResult:
        """Charge `amount` minor units of `currency` to the card behind `token`; the same
        key again answers the first charge's result."""
        ...

    async def refund(self, charge_id: str, amount: int, currency: str, idempotency_key: str) -> RefundResult:
        """Give `amount` minor units of the charge `charge_id` back to its card; the same key
        again answers the first refund's result."""
        ...


@dataclass(frozen=True)
class SandboxCard:
    card: Card
    # None: charges succeed. Otherwise the decline reason (or, for `unreachable`, the error).
    outcome: str | None = None
    decline_code: str | None = None
    unreachable: bool = False


_EXPIRY = (12, 2034)


def _card(brand: str, last4: str) -> Card:
    return Card(brand, last4, *_EXPIRY)


# The test cards of the sandbox, as a processor's test mode documents them (README,
# "Sandbox test cards"; tests/test_payments.py keeps the two in step).
SANDBOX_CARDS: dict[str, SandboxCard] = {
    "tok_visa_4242": SandboxCard(_card("Visa", "4242")),
    "tok_mastercard_4444": SandboxCard(_card("Mastercard", "4444")),
    "tok_amex_0005": SandboxCard(_card("American Express", "0005")),
    "tok_chargeDeclined_0002": SandboxCard(_card("Visa", "0002"), "Your card was declined.", "card_declined"),
    "tok_insufficientFunds_9995": SandboxCard(_card("Visa", "9995"), "Insufficient funds.", "insufficient_funds"),
    "tok_expiredCard_0069": SandboxCard(_card("Visa", "0069"), "Your card has expired.", "expired_card"),
    "tok_processorDown_0000": SandboxCard(
        _card("Visa", "0000"), "The payment processor did not answer.", unreachable=True
    ),
}
UNKNOWN_TOKEN = "This card is not known to the payment processor."
# The sandbox refunds the charges it made (ch_sandbox_...) and refuses any other.
UNKNOWN_CHARGE = "The payment processor knows no such charge to refund."


@dataclass(frozen=True)
class SandboxLag:
    """How slow and unreliable the sandbox processor is (settings PAYMENT_SANDBOX_*)."""

    latency_ms: int = 0
    jitter_ms: int = 0
    failure_rate: float = 0.0  # calls that fail before doing anything
    lost_answer_rate: float = 0.0  # charges made whose answer is lost


@dataclass
class SandboxGateway:
    """The processor's test mode: the cards of SANDBOX_CARDS, at once unless `lag` says otherwise."""

    lag: SandboxLag = SandboxLag()
    rng: random.Random = field(default_factory=random.Random)

    async def _wait(self) -> None:
        if self.lag.latency_ms or self.lag.jitter_ms:
            await asyncio.sleep((self.lag.latency_ms + self.rng.uniform(0, self.lag.jitter_ms)) / 1000)
        if self.rng.random() < self.lag.failure_rate:
            raise GatewayError("The payment processor did not answer.")

    async def card(self, token: str) -> Card:
        found = SANDBOX_CARDS.get(token)
        if found is None:
            raise DomainError(ErrorCode.INVALID_CARD_TOKEN, UNKNOWN_TOKEN, "cardToken")
        return found.card

    async def charge(self, token: str, amount: int, currency: str, idempotency_key: str) -> ChargeResult:
        if amount <= 0:
            raise ValueError(f"a charge must be positive, got {amount}")
        await self._wait()
        result = self._charge(token, idempotency_key)
        if self.rng.random() < self.lag.lost_answer_rate:
            raise GatewayError("The payment processor's answer was lost.")
        return result

    async def refund(self, charge_id: str, amount: int, currency: str, idempotency_key: str) -> RefundResult:
        if amount <= 0:
            raise ValueError(f"a refund must be positive, got {amount}")
        await self._wait()
        if not charge_id.startswith("ch_sandbox_"):
            result = RefundResult(False, failure_reason=UNKNOWN_CHARGE)
        else:
            digest = hashlib.sha256(f"{charge_id}\0{idempotency_key}".encode()).hexdigest()[:24]
            result = RefundResult(True, refund_id=f"re_sandbox_{digest}")
        if self.rng.random() < self.lag.lost_answer_rate:
            raise GatewayError("The payment processor's answer was lost.")
        return result

    def _charge(self, token: str, idempotency_key: str) -> ChargeResult:
        found = SANDBOX_CARDS.get(token)
        if found is None:
            return ChargeResult(False, decline_code="invalid_token", decline_reason=UNKNOWN_TOKEN)
        if found.unreachable:
            raise GatewayError(found.outcome)
        if found.outcome is not None:
            return ChargeResult(False, decline_code=found.decline_code, decline_reason=found.outcome)
        digest = hashlib.sha256(f"{token}\0{idempotency_key}".encode()).hexdigest()[:24]
        return ChargeResult(True, charge_id=f"ch_sandbox_{digest}")


GATEWAYS = ("sandbox",)


def gateway_named(name: str, lag: SandboxLag = SandboxLag()) -> PaymentGateway:
    """The gateway the PAYMENT_GATEWAY setting names (the sandbox as slow as `lag` says)."""
    if name == "sandbox":
        return SandboxGateway(lag)
    raise ValueError(f"unknown payment gateway {name!r}; known: {', '.join(GATEWAYS)}")
