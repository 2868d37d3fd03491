"""The `idempotencyKey` input field of creating and money mutations (rules: services/idempotency.py)."""

from __future__ import annotations

from typing import Any

import strawberry

DESCRIPTION = (
    "Optional: a key you choose for this request (1 to 200 characters, no control characters; "
    "a UUID will do) so that it can be retried safely. A retry with the same key and the same input "
    "changes nothing and returns the objects the first request created, as they now are; the same key "
    "with other input, or on another mutation, is refused with IDEMPOTENCY_KEY_REUSED. Keys are per "
    "user; a request that was refused leaves its key unused."
)


def idempotency_key_field() -> Any:
    return strawberry.field(default=None, description=DESCRIPTION)


REQUIRED_DESCRIPTION = (
    "Required on money mutations: a key you choose for this request (1 to 200 characters, no control "
    "characters; a UUID will do). Send the same key when you retry: a retry with the same key and the same "
    "input moves nothing and returns the objects the first request made, as they now are; the same key with "
    "other input, or on another mutation, is refused with IDEMPOTENCY_KEY_REUSED. Keys are per user; a "
    "request that was refused leaves its key unused."
)


def required_idempotency_key_field() -> Any:
    return strawberry.field(description=REQUIRED_DESCRIPTION)
