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

The outcome travels in the sandbox's token and transfer ids, so any process (the
server, the CLI) answers the same about a transfer.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

from services.errors import DomainError, ErrorCode


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


class SandboxBankGateway:
    """A processor's test mode (see the module's table)."""

    name = "sandbox"

    async def link_account(self, holder_name: str, routing_number: str, account_number: str) -> LinkedAccount:
        outcome = SANDBOX_ACCOUNTS.get(account_number, "ok")
        return LinkedAccount(f"btok_sandbox_{outcome}_{secrets.token_hex(8)}", account_number[-4:])

    async def create_transfer(self, reference: str, account_token: str, amount: int, currency: str) -> GatewayTransfer:
        outcome = _outcome(account_token)
        ref = f"sbt_sandbox_{outcome}_{reference}"
        if outcome == "failnow":
            return GatewayTransfer(ref, "FAILED", *_FAILURES[outcome])
        return GatewayTransfer(ref, "PENDING")

    async def retrieve_transfer(self, ref: str) -> GatewayTransfer:
        """In the sandbox a transfer settles as soon as it is asked about."""
        final = self.events(ref)[-1]
        return GatewayTransfer(ref, final.status, final.failure_code, final.failure_reason)

    async def cancel_transfer(self, ref: str) -> GatewayTransfer:
        if _outcome(ref) == "failnow":
            return GatewayTransfer(ref, "FAILED", *_FAILURES["failnow"])
        return GatewayTransfer(ref, "CANCELED")

    def events(self, ref: str) -> list[GatewayEvent]:
        """The webhook events the sandbox sends for a transfer after it is created."""
        outcome = _outcome(ref)
        if outcome == "failnow":
            return [GatewayEvent("bank_transfer.failed", "FAILED", *_FAILURES[outcome])]
        if outcome == "faillater":
            return [GatewayEvent("bank_transfer.in_transit", "IN_TRANSIT"),
                    GatewayEvent("bank_transfer.failed", "FAILED", *_FAILURES[outcome])]
        paid = [GatewayEvent("bank_transfer.in_transit", "IN_TRANSIT"), GatewayEvent("bank_transfer.paid", "PAID")]
        if outcome == "return":
            return [*paid, GatewayEvent("bank_transfer.returned", "RETURNED", *_FAILURES[outcome])]
        return paid


BANK_GATEWAYS = ("sandbox",)


def bank_gateway_named(name: str) -> BankTransferGateway:
    if name == "sandbox":
        return SandboxBankGateway()
    raise ValueError(f"unknown bank gateway {name!r}; known: {', '.join(BANK_GATEWAYS)}")


def refused(message: str, field: str = "accountNumber") -> DomainError:
    return DomainError(ErrorCode.BANK_ACCOUNT_REFUSED, message, field)
