"""Sending money to a Partner's bank: the gateway a processor plugs in behind, and its sandbox.

A Partner links a bank account by giving its routing and account numbers; the
processor keeps the account number and gives back a token. We store the token
and the last four digits, never the number (services/bank_accounts.py).

A payout's bank part is a transfer the processor carries out over days:
PENDING (accepted, not yet sent) -> IN_TRANSIT -> PAID, or FAILED with a reason
(at once, or after going in transit, when the receiving bank returns it). The
processor tells us by webhook (server/webhooks.py); `revampd-bff payouts sync`
asks it as a fallback. `create_transfer` is idempotent by `reference`, as
processors are, so a transfer that was sent but not recorded is never sent twice.

`SandboxBankGateway` acts like a processor's test mode, deterministic and without
network. Its test account numbers (any valid routing number, e.g. 110000000):

| account number | what happens to a transfer |
|---|---|
| 000123456789 (and any other valid number) | PENDING, IN_TRANSIT, PAID |
| 000111111116 | FAILED at once: account_closed |
| 000222222227 | PENDING, IN_TRANSIT, then FAILED: no_account (returned by the bank) |
| 000333333338 | PENDING, IN_TRANSIT, PAID, then RETURNED: R02 |

The outcome travels in the sandbox's token and transfer ids, so any process (the
server, the CLI) answers the same about a transfer. Like a real processor it can be
made slow and unreliable (`SandboxLag`, settings BANK_SANDBOX_*): a latency, a rate of
calls that fail before doing anything, and a rate of lost answers (the transfer is
created or canceled, the answer never arrives).
"""

from __future__ import annotations

import asyncio
import random
import secrets
from dataclasses import dataclass, field
from typing import Protocol

from db.states import TransferStatus
from services.payments import SandboxLag


@dataclass(frozen=True)
class LinkedAccount:
    """What the processor gives back for a bank account: its token, and what may be shown."""

    token: str
    last4: str


@dataclass(frozen=True)
class GatewayTransfer:
    """A processor's view of a transfer: its id, status and, when FAILED, why."""

    ref: str
    status: str  # PENDING, IN_TRANSIT, PAID, FAILED or CANCELED
    failure_code: str | None = None
    failure_reason: str | None = None


@dataclass(frozen=True)
class GatewayEvent:
    """A status change the processor reports by webhook."""

    type: str  # bank_transfer.in_transit / .paid / .failed / .canceled
    status: str
    failure_code: str | None = None
    failure_reason: str | None = None


class GatewayUnavailable(Exception):
    """The processor could not be reached or answered nothing usable; try again later."""


class BankTransferGateway(Protocol):
    name: str

    async def link_account(self, holder_name: str, routing_number: str, account_number: str) -> LinkedAccount:
        """Tokenize a bank account; DomainError (field accountNumber) if the processor refuses it."""
        ...

    async def create_transfer(self, reference: str, account_token: str, amount: int, currency: str) -> GatewayTransfer:
        """Send `amount` to the account; the same `reference` again returns the first transfer."""
        ...

    async def retrieve_transfer(self, ref: str) -> GatewayTransfer:
        ...

    async def cancel_transfer(self, ref: str) -> GatewayTransfer:
        """Stop a transfer not yet sent; its status after (CANCELED, or what it already is)."""
        ...


# Sandbox outcomes by test account number; any other valid number succeeds.
SANDBOX_ACCOUNTS = {
    "000123456789": "ok",
    "000111111116": "failnow",
    "000222222227": "faillater",
    "000333333338": "return",  # PAID, then returned by the bank (R02)
}
_FAILURES = {
    "failnow": ("account_closed", "The bank account is closed."),
    "faillater": ("no_account", "Returned by the receiving bank: R03 no account/unable to locate account."),
    "return": ("R02", "Returned by the receiving bank after it was paid: R02 account closed."),
}


def _outcome(token_or_ref: str) -> str:
    parts = token_or_ref.split("_")
    return parts[2] if len(parts) > 3 and parts[2] in ("ok", "failnow", "faillater", "return") else "ok"


@dataclass
class SandboxBankGateway:
    """A processor's test mode (see the module's table), at once unless `lag` says otherwise."""

    lag: SandboxLag = SandboxLag()
    rng: random.Random = field(default_factory=random.Random)
    name = "sandbox"

    async def _wait(self) -> None:
        if self.lag.latency_ms or self.lag.jitter_ms:
            await asyncio.sleep((self.lag.latency_ms + self.rng.uniform(0, self.lag.jitter_ms)) / 1000)
        if self.rng.random() < self.lag.failure_rate:
            raise GatewayUnavailable("The bank transfer processor did not answer.")

    def _lose(self) -> None:
        if self.rng.random() < self.lag.lost_answer_rate:
            raise GatewayUnavailable("The bank transfer processor's answer was lost.")

    async def link_account(self, holder_name: str, routing_number: str, account_number: str) -> LinkedAccount:
        await self._wait()
        outcome = SANDBOX_ACCOUNTS.get(account_number, "ok")
        return LinkedAccount(f"btok_sandbox_{outcome}_{secrets.token_hex(8)}", account_number[-4:])

    async def create_transfer(self, reference: str, account_token: str, amount: int, currency: str) -> GatewayTransfer:
        await self._wait()
        outcome = _outcome(account_token)
        ref = f"sbt_sandbox_{outcome}_{reference}"
        self._lose()
        if outcome == "failnow":
            return GatewayTransfer(ref, TransferStatus.FAILED, *_FAILURES[outcome])
        return GatewayTransfer(ref, TransferStatus.PENDING)

    async def retrieve_transfer(self, ref: str) -> GatewayTransfer:
        """In the sandbox a transfer settles as soon as it is asked about."""
        await self._wait()
        final = self.events(ref)[-1]
        return GatewayTransfer(ref, final.status, final.failure_code, final.failure_reason)

    async def cancel_transfer(self, ref: str) -> GatewayTransfer:
        await self._wait()
        self._lose()
        if _outcome(ref) == "failnow":
            return GatewayTransfer(ref, TransferStatus.FAILED, *_FAILURES["failnow"])
        return GatewayTransfer(ref, TransferStatus.CANCELED)

    def events(self, ref: str) -> list[GatewayEvent]:
        """The webhook events the sandbox sends for a transfer after it is created."""
        outcome = _outcome(ref)
        if outcome == "failnow":
            return [GatewayEvent("bank_transfer.failed", TransferStatus.FAILED, *_FAILURES[outcome])]
        if outcome == "faillater":
            return [GatewayEvent("bank_transfer.in_transit", TransferStatus.IN_TRANSIT),
                    GatewayEvent("bank_transfer.failed", TransferStatus.FAILED, *_FAILURES[outcome])]
        paid = [GatewayEvent("bank_transfer.in_transit", TransferStatus.IN_TRANSIT), GatewayEvent("bank_transfer.paid", TransferStatus.PAID)]
        if outcome == "return":
            return [*paid, GatewayEvent("bank_transfer.returned", TransferStatus.RETURNED, *_FAILURES[outcome])]
        return paid


BANK_GATEWAYS = ("sandbox",)
NO_LAG = SandboxLag()


def bank_gateway_named(name: str, lag: SandboxLag = NO_LAG) -> BankTransferGateway:
    """The gateway the BANK_GATEWAY setting names (the sandbox as slow as `lag` says)."""
    if name == "sandbox":
        return SandboxBankGateway(lag)
    raise ValueError(f"unknown bank gateway {name!r}; known: {', '.join(BANK_GATEWAYS)}")

