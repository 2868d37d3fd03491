"""Cost-based rate limits: each viewer has a leaky bucket of query cost points, as Shopify's
GraphQL Admin API has.

A bucket holds at most `maximum` points (RATE_LIMIT_MAX_COST) and restores `restore_rate` points
a second (RATE_LIMIT_RESTORE_RATE). A request takes its requested cost (the Operation's cost, the worst
case) before it runs; when more than is available, it is throttled and nothing runs, and the
answer says how many seconds until enough is back. After it ran, the difference between the
requested and the actual cost is refunded. A viewer's bucket starts full, and a full bucket is
forgotten (in Redis: its key expires the moment it would be full again).

With REDIS_URL the buckets are shared by every worker: each take or refund is one Lua script,
atomic in Redis, that works from the `now` it is given (never Redis's clock, so that tests
decide the time). Without it, or while Redis is out of reach, each process keeps its own buckets
(bounded: least recently used first forgotten). An outage is one WARNING line, and its end one
INFO line; meanwhile Redis is tried again at most every REDIS_RETRY_SECONDS.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from redis.asyncio import from_url as redis_from_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from server.persisted import REDIS_TIMEOUT_SECONDS
from server.settings import Settings

log = logging.getLogger("revampd.limits")

# Buckets one process keeps at most (a forgotten one is full again): some 100 bytes each.
MEMORY_VIEWERS = 100_000
# While Redis is out of reach, how often a request tries it again (the others count in process).
REDIS_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class Throttle:
    """A bucket after a take or a refund."""

    allowed: bool
    maximum_available: int
    currently_available: int
    restore_rate: int
    # Whole seconds until the requested cost is available; 0 when allowed.
    retry_after: int = 0

    def extension(self, requested: int, actual: int | None) -> dict[str, Any]:
        """Shopify's `extensions.cost` (actual is None when nothing ran)."""
        return {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": self.maximum_available,
                "currentlyAvailable": self.currently_available,
                "restoreRate": self.restore_rate,
            },
        }


class MemoryBuckets:
    """This process's buckets: viewer -> (points available, when), least recently used first."""

    def __init__(self, maximum: int, restore_rate: int, max_viewers: int = MEMORY_VIEWERS) -> None:
        self.maximum, self.restore_rate, self.max_viewers = maximum, restore_rate, max_viewers
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def spend(self, viewer: str, points: int, now: float) -> tuple[bool, float]:
        """Takes `points` if available (a negative number gives back): (taken, available after).
        Mirrors SPEND below."""
        available, at = self.buckets.pop(viewer, (self.maximum, now))
        if now > at:
            available, at = min(self.maximum, available + (now - at) * self.restore_rate), now
        allowed = points <= available
        if allowed:
            available = min(self.maximum, available - points)
        if available < self.maximum:
            self.buckets[viewer] = (available, at)
            if len(self.buckets) > self.max_viewers:
                self.buckets.popitem(last=False)
        return allowed, available


# KEYS[1]: the viewer's bucket, a hash of a (points available) and t (when). ARGV: maximum,
# restore rate, now, points (negative to give back). Answers {1 or 0, points available}.
SPEND = """
local maximum, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local now, points = tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'a', 't')
local available, at = tonumber(state[1]) or maximum, tonumber(state[2]) or now
if now > at then
  available, at = math.min(maximum, available + (now - at) * rate), now
end
local allowed = points <= available
if allowed then
  available = math.min(maximum, available - points)
end
if available < maximum then
  redis.call('HSET', KEYS[1], 'a', tostring(available), 't', tostring(at))
  redis.call('PEXPIRE', KEYS[1], math.ceil((maximum - available) / rate * 1000))
else
  redis.call('DEL', KEYS[1])
end
return {allowed and 1 or 0, tostring(available)}
"""


class CostLimiter:
    """Every viewer's bucket, in Redis when `redis_url` is given, else in this process."""

    def __init__(self, maximum: int, restore_rate: int, redis_url: str | None = None,
                 prefix: str = "revampd:") -> None:
        self.maximum, self.restore_rate = maximum, restore_rate
        self.memory = MemoryBuckets(maximum, restore_rate)
        self.prefix = prefix + "cost:"
        self.redis = None if redis_url is None else redis_from_url(
            redis_url, decode_responses=True, socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS, retry=Retry(NoBackoff(), 1),
        )
        self.script = None if self.redis is None else self.redis.register_script(SPEND)
        # While Redis is out of reach: when to try it again.
        self.retry_redis_at: float | None = None

    async def take(self, viewer: str, requested: int, now: float) -> Throttle:
        """Takes `requested` points from the viewer's bucket, or nothing when fewer are available."""
        if not 0 <= requested <= self.maximum:
            raise ValueError(f"a request costs from 0 to {self.maximum} points, not {requested}")
        allowed, available = await self._spend(viewer, requested, now)
        wait = 0 if allowed else math.ceil((requested - available) / self.restore_rate)
        return self._throttle(allowed, available, wait)

    async def refund(self, viewer: str, points: int, now: float) -> Throttle:
        """Gives `points` back (the requested cost less the actual), up to the maximum."""
        _, available = await self._spend(viewer, -max(0, points), now)
        return self._throttle(True, available, 0)

    def _throttle(self, allowed: bool, available: float, wait: int) -> Throttle:
        return Throttle(allowed, self.maximum, math.floor(available), self.restore_rate, wait)

    async def _spend(self, viewer: str, points: int, now: float) -> tuple[bool, float]:
        if self.script is None or (self.retry_redis_at is not None and now < self.retry_redis_at):
            return self.memory.spend(viewer, points, now)
        try:
            allowed, available = await self.script(
                keys=[self.prefix + viewer], args=[self.maximum, self.restore_rate, repr(now), points]
            )
        except (RedisError, OSError) as exc:
            if self.retry_redis_at is None:
                log.warning("Redis out of reach, rate limits are counted in each process until it is back: %s: %s",
                            type(exc).__name__, exc)
            self.retry_redis_at = now + REDIS_RETRY_SECONDS
            return self.memory.spend(viewer, points, now)
        if self.retry_redis_at is not None:
            log.info("Redis is back, rate limits are shared by every worker again")
            self.retry_redis_at = None
        return bool(allowed), float(available)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def cost_limiter(settings: Settings) -> CostLimiter | None:
    """The limiter the settings ask for; None when RATE_LIMIT_ENABLED is false."""
    if not settings.rate_limit_enabled:
        return None
    return CostLimiter(settings.rate_limit_max_cost, settings.rate_limit_restore_rate,
                       settings.redis_url, settings.redis_key_prefix)
