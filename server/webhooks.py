"""`POST /webhooks/bank-transfers`: the processor tells us what became of a bank transfer.

Signed as Stripe signs its webhooks: the header

    Revampd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

with the shared secret BANK_WEBHOOK_SECRET (several v1 values are accepted, for a
secret being rotated). The body:

    {"id": "evt_...", "type": "bank_transfer.in_transit" | "bank_transfer.paid" |
     "bank_transfer.failed" | "bank_transfer.canceled" | "bank_transfer.returned",
     "created": <unix seconds>,
     "data": {"object": {"id": "<the processor's transfer id>",
                         "failure_code": "...", "failure_message": "..."}}}

A `returned` event (after `paid`, days later: an ACH return) carries the bank's
return code (R02, R03, ...) and reason as failure_code and failure_message.

What is refused changes nothing: a missing or wrong signature, or a timestamp more
than 5 minutes from our clock (a replay), answers 400; a malformed body 400. An
event id handled before is not handled again: it answers 200 with
`"duplicate": true`, because a processor retries every answer that is not 2xx and
would otherwise retry an event we already have. Events out of order never move a
transfer backwards (services.payouts). A busy database answers 503 and a fault of
ours 500, so that the processor retries later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from db.engine import is_busy
from db.states import TransferStatus
from services import payouts
from services.bank_gateway import GatewayTransfer

log = logging.getLogger("revampd.webhooks")

SIGNATURE_HEADER = "Revampd-Signature"
TOLERANCE_SECONDS = 300
STATUSES = {
    "bank_transfer.in_transit": TransferStatus.IN_TRANSIT,
    "bank_transfer.paid": TransferStatus.PAID,
    "bank_transfer.failed": TransferStatus.FAILED,
    "bank_transfer.canceled": TransferStatus.CANCELED,
    "bank_transfer.returned": TransferStatus.RETURNED,
}
MAX_BODY_BYTES = 64 * 1024


class Rejected(Exception):
    """The request is not a genuine, fresh, well-formed event; nothing changes."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: float) -> None:
    """Raise Rejected unless `header` signs `body` with `secret` within the tolerance."""
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise Rejected(f"the {SIGNATURE_HEADER} header must be t=<unix seconds>,v1=<signature>")
    expected = sign(secret, timestamp, body).partition(",v1=")[2]
    if not any(hmac.compare_digest(expected.encode(), s.encode("utf-8", "replace")) for s in signatures):
        raise Rejected("the signature does not match the body")
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise Rejected(f"the signature's timestamp is more than {TOLERANCE_SECONDS} seconds from now")


def _event(body: bytes) -> tuple[str, str | None, GatewayTransfer | None, datetime]:
    """(event id, type, the transfer's new state or None for a type we do not handle, when)."""
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise Rejected("the body must be a JSON object") from None
    if not isinstance(event, dict):
        raise Rejected("the body must be a JSON object")
    event_id, kind, created = event.get("id"), event.get("type"), event.get("created")
    obj = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 100:
        raise Rejected("id must be the event's id, 1 to 100 characters")
    if not isinstance(kind, str):
        raise Rejected("type must be a string")
    if type(created) is not int or created < 0:
        raise Rejected("created must be unix seconds")
    at = datetime.fromtimestamp(created, timezone.utc)
    status = STATUSES.get(kind)
    if status is None:
        return event_id, kind, None, at
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not 1 <= len(obj["id"]) <= 100:
        raise Rejected("data.object.id must be the transfer's id")
    code, message = obj.get("failure_code"), obj.get("failure_message")
    return event_id, kind, GatewayTransfer(
        obj["id"], status, code if isinstance(code, str) else None, message if isinstance(message, str) else None
    ), at


def endpoint(secret: str, writes: Any) -> Any:
    """The Starlette endpoint; `writes()` gives the write session factory."""

    async def bank_transfers(request: Request) -> Response:
        too_large = JSONResponse({"error": f"the body must be at most {MAX_BODY_BYTES} bytes"}, status_code=413)
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            return too_large
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    return too_large
                chunks.append(chunk)
        except ClientDisconnect:  # the sender hung up: nobody to answer; the request log says 499
            return Response(status_code=499)
        body = b"".join(chunks)
        try:
            verify(secret, request.headers.get(SIGNATURE_HEADER, ""), body, time.time())
            event_id, kind, answer, at = _event(body)
        except Rejected as exc:
            log.info("webhook refused: %s", exc)
            return JSONResponse({"error": str(exc)}, status_code=400)
        if answer is None:
            log.info("webhook %s of type %s ignored: not a bank transfer status", event_id, kind)
            return JSONResponse({"received": True, "handled": False})
        sessions: async_sessionmaker[AsyncSession] = writes()
        try:
            async with sessions() as session, session.begin():
                outcome = await payouts.record_event(session, event_id, "WEBHOOK", answer, at)
        except Exception as exc:
            if is_busy(exc):
                log.warning("webhook %s: database busy; the processor will retry", event_id)
                return JSONResponse({"error": "busy"}, status_code=503, headers={"Retry-After": "1"})
            log.error("webhook %s: unexpected fault", event_id, exc_info=exc)
            return JSONResponse({"error": "Internal server error."}, status_code=500)
        log.info("webhook %s %s for %s: %s", event_id, kind, answer.ref, outcome)
        return JSONResponse({
            "received": True, "handled": outcome == "applied", "duplicate": outcome == "duplicate",
            "result": outcome,
        })

    return bank_transfers
