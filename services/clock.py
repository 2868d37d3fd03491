"""The one clock of the services. Time is an input: every service takes `now`, and only when a
caller gives none (the server answering a request) is it the wall clock's."""

from __future__ import annotations

from datetime import datetime, timezone


def now_or(now: datetime | None) -> datetime:
    """`now`, or the wall clock's time (UTC) when none is given."""
    return now or datetime.now(timezone.utc)
