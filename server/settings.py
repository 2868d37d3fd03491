"""All configuration, read from environment variables into one typed object."""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from services.bank_gateway import BANK_GATEWAYS
from services.payments import GATEWAYS, SandboxLag

DEV_JWT_SECRET = "revampd-dev-secret-do-not-use-in-production-0123456789"
# Signs the sandbox's bank transfer webhooks in development; set BANK_WEBHOOK_SECRET in production.
DEV_WEBHOOK_SECRET = "whsec_revampd_dev_do_not_use_in_production"
# Signs download links (services/signed_urls.py) in development; set FILES_SIGNING_KEY in production.
DEV_FILES_KEY = "revampd-dev-files-key-do-not-use-in-production-0123"


class SettingsError(ValueError):
    pass


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


# The manifest of trusted documents, generated from operations/*.graphql (`make manifest`).
DEFAULT_MANIFEST = str(Path(__file__).resolve().parent.parent / "operations" / "manifest.json")
TRUSTED_DOCUMENTS = ("off", "only")
REDIS_SCHEMES = ("redis", "rediss", "unix")


def _without_password(url: str) -> str:
    """The URL to show in a message: never its password."""
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)


def _redis_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("REDIS_URL") or None
    if raw is None:
        return None
    try:
        url = urlsplit(raw)
        url.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        url = None
    if url is None or url.scheme not in REDIS_SCHEMES:
        raise SettingsError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {_without_password(raw)!r}")
    return raw


# What the logging module and uvicorn both know.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...], *, upper: bool = False) -> str:
    raw = env.get(name) or default
    value = raw.upper() if upper else raw
    if value not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return value


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    """A URL with one of `schemes` and a host, or None when unset."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    parsed = urlsplit(raw)
    if parsed.scheme not in schemes or not parsed.netloc:
        raise SettingsError(f"{name} must be a URL starting with {' or '.join(s + '://' for s in schemes)}, got {raw!r}")
    return raw


# The database drivers the app runs on (SQLAlchemy's asyncio dialects).
DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")


def _database_url(env: Mapping[str, str], default: str) -> str:
    raw = env.get("DATABASE_URL") or default
    scheme = raw.partition("://")[0]
    if scheme not in DATABASE_SCHEMES or "://" not in raw:
        raise SettingsError(
            f"DATABASE_URL must start with {' or '.join(s + '://' for s in DATABASE_SCHEMES)}, "
            f"got {_without_password(raw)!r}"
        )
    return raw


def _origins(env: Mapping[str, str]) -> tuple[str, ...]:
    """Browser origins: scheme://host[:port], nothing after it."""
    raw = env.get("CORS_ORIGINS", "")
    origins = tuple(o.strip() for o in raw.split(",") if o.strip())
    for origin in origins:
        parsed = urlsplit(origin)
        if origin != "*" and (parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path):
            raise SettingsError(
                f"CORS_ORIGINS must be origins such as https://dashboard.example.com separated by commas, got {origin!r}"
            )
    return origins


def _public_key(env: Mapping[str, str]) -> str | None:
    raw = env.get("JWT_PUBLIC_KEY") or None
    if raw is not None:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            load_pem_public_key(raw.encode())
        except (ValueError, TypeError):
            shown = raw if len(raw) <= 40 else raw[:37] + "..."
            raise SettingsError(f"JWT_PUBLIC_KEY must be a PEM public key (-----BEGIN PUBLIC KEY-----), got {shown!r}") from None
    return raw


def _secret(env: Mapping[str, str], name: str, default: str, minimum: int) -> str:
    """A secret of at least `minimum` bytes; the message tells its length, never the secret."""
    raw = env.get(name) or default
    if len(raw.encode()) < minimum:
        raise SettingsError(f"{name} must be at least {minimum} bytes long, got one of {len(raw.encode())}")
    return raw


def _rate(env: Mapping[str, str], name: str) -> float:
    """A share of calls, from 0 to 1 (0 when unset)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise SettingsError(f"{name} must be a number from 0 to 1, got {raw!r}")
    return value


def _days(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """A comma-separated list of whole days, each at least 1: "1,3,5"."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        days = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise SettingsError(f"{name} must be whole days separated by commas, such as 1,3,5; got {raw!r}") from None
    if any(d < 1 for d in days):
        raise SettingsError(f"{name} must list days of at least 1, got {raw!r}")
    return days


def _bucket(env: Mapping[str, str], max_query_nodes: int) -> int:
    """RATE_LIMIT_MAX_COST: room for the costliest query allowed (twice it when unset)."""
    value = _int(env, "RATE_LIMIT_MAX_COST", 2 * max_query_nodes)
    if value < max_query_nodes:
        raise SettingsError(
            f"RATE_LIMIT_MAX_COST must be at least MAX_QUERY_NODES ({max_query_nodes}), the cost of the "
            f"costliest query allowed, got {env['RATE_LIMIT_MAX_COST']!r}"
        )
    return value


# The background jobs (server/worker.py) and when each runs by default: cron, in UTC.
JOB_SCHEDULE: dict[str, str] = {
    "billing-run": "15 * * * *",
    "payouts-close-period": "5 0 * * *",
    "payouts-sync": "*/5 * * * *",
    "tickets-auto-close": "30 * * * *",
    "notifications-send": "* * * * *",
    "idempotency-purge": "45 3 * * *",
}


def _schedule(env: Mapping[str, str]) -> tuple[tuple[str, str | None], ...]:
    """WORKER_SCHEDULE, `job=cron; job=off; ...` over JOB_SCHEDULE: (job, cron or None when off)."""
    from croniter import croniter

    schedule: dict[str, str | None] = dict(JOB_SCHEDULE)
    raw = env.get("WORKER_SCHEDULE", "")
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        name, _, cron = (x.strip() for x in part.partition("="))
        if name not in JOB_SCHEDULE:
            raise SettingsError(f"WORKER_SCHEDULE must name only the jobs {', '.join(JOB_SCHEDULE)} (not {name!r}), "
                                f"got {raw!r}")
        if cron != "off" and not croniter.is_valid(cron):
            raise SettingsError(f"WORKER_SCHEDULE must give each job a cron expression or off (not {cron!r} for "
                                f"{name}), got {raw!r}")
        schedule[name] = None if cron == "off" else cron
    return tuple(schedule.items())


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite+aiosqlite:///./revampd.db"
    # Accepted signing algorithms: fixed here, never taken from a token.
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_secret: str = DEV_JWT_SECRET
    jwt_public_key: str | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_ttl_seconds: int = 12 * 3600
    graphiql: bool = True
    introspection: bool = True
    mask_errors: bool = True
    max_query_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 3000
    max_page_size: int = 100
    max_body_bytes: int = 1_000_000
    # Responses at least this long go gzip-compressed to clients that accept it (0: all of them).
    gzip_min_bytes: int = 1000
    # Worst case of objects a document may ask for: the product of page sizes along nested lists.
    max_query_nodes: int = 10_000
    default_page_size: int = 20
    # Connections per process: a request holds at most one at a time.
    db_pool_size: int = 10
    db_max_overflow: int = 10
    # Seconds a request waits for a pooled connection before it answers 503.
    db_pool_timeout: float = 5.0
    # How long a statement waits for a row or database lock before it answers 503.
    db_lock_timeout_ms: int = 10_000
    ticket_auto_close_days: int = 7
    # Days an idempotency key is kept at least; `revampd-bff idempotency purge` removes older ones.
    idempotency_retention_days: int = 30
    # The processor that holds the cards on file (services.payments.GATEWAYS).
    payment_gateway: str = "sandbox"
    # The billing run pays a new invoice from the wallet before it charges the card.
    billing_pay_from_wallet: bool = True
    # Days from a declined charge to the next try; after the last retry the invoice is uncollectible.
    billing_retry_days: tuple[int, ...] = (1, 3, 5)
    # Connections the billing run bills in one transaction; each batch's card charges are asked
    # of the processor together, so this many calls are in flight per worker.
    billing_batch_size: int = 100
    # The sandbox processor made slow and unreliable, as a real one is (services.payments.SandboxLag).
    payment_sandbox_latency_ms: int = 0
    payment_sandbox_jitter_ms: int = 0
    payment_sandbox_failure_rate: float = 0.0
    payment_sandbox_lost_answer_rate: float = 0.0
    # A card charge whose outcome is still unknown this many seconds after it was asked for is
    # settled by `revampd-bff payments reconcile`.
    payments_reconcile_after_seconds: int = 60
    # The sandbox bank transfer processor made slow and unreliable (services.bank_gateway).
    bank_sandbox_latency_ms: int = 0
    bank_sandbox_jitter_ms: int = 0
    bank_sandbox_failure_rate: float = 0.0
    bank_sandbox_lost_answer_rate: float = 0.0
    # The processor that sends payouts to banks (services.bank_gateway.BANK_GATEWAYS), and the
    # secret its webhooks are signed with (server/webhooks.py).
    bank_gateway: str = "sandbox"
    bank_webhook_secret: str = DEV_WEBHOOK_SECRET
    # Download links (server/files.py): the key they are signed with, and how long one works.
    files_signing_key: str = DEV_FILES_KEY
    files_url_seconds: int = 300
    log_level: str = "INFO"
    # Browser origins (e.g. the dashboard's) allowed to call the API; none by default.
    cors_origins: tuple[str, ...] = ()
    # off: any document runs, and clients may register documents by hash (Apollo's automatic
    # persisted queries); only: just the documents of the manifest run (server/persisted.py).
    trusted_documents: str = "off"
    trusted_documents_manifest: str = DEFAULT_MANIFEST
    # Registered documents are shared by every worker through Redis when set; else each process
    # keeps its own. Keys start with the prefix.
    redis_url: str | None = None
    redis_key_prefix: str = "revampd:"
    # Cost-based rate limits (server/limits.py): each viewer's bucket of query cost points holds
    # this many (at least MAX_QUERY_NODES, so that any query allowed can run; twice it by
    # default) and restores this many a second. Shared by every worker through REDIS_URL.
    rate_limit_enabled: bool = True
    rate_limit_max_cost: int = 20_000
    rate_limit_restore_rate: int = 1_000
    # Live updates (server/live.py, server/subscriptions.py): subscriptions one WebSocket may hold
    # and one user may hold across them; events a subscriber may have waiting before it is dropped
    # as too slow; how often each worker looks for events it was not told of (made by another
    # process without Redis, or while Redis was away); seconds a WebSocket has to send its token.
    live_max_subscriptions_per_connection: int = 20
    live_max_subscriptions_per_user: int = 50
    live_queue_size: int = 1000
    live_poll_seconds: int = 5
    live_init_timeout_seconds: int = 10
    # Subscriptions of one worker reading an event at once (each on a pooled connection).
    live_reads_at_once: int = 5
    # Emails (services/notifications.py): the SMTP server (smtp:// or smtps://, user and password
    # in the URL); without it each email is logged instead. And who they come from.
    smtp_url: str | None = None
    smtp_from: str = "Revampd <no-reply@revampd.example>"
    # The background worker (server/worker.py): when each job runs (WORKER_SCHEDULE), how long a
    # worker may go without a heartbeat before another runs its job again, and the port of the
    # worker's own /metrics (0: none; `serve` running the jobs in process shows them on its own).
    worker_schedule: tuple[tuple[str, str | None], ...] = tuple(JOB_SCHEDULE.items())
    worker_stalled_seconds: int = 60
    worker_metrics_port: int = 0
    # Operability (server/observability.py): GET /metrics for Prometheus (keep it off the public
    # internet: it is unauthenticated), one log line per event as text or JSON, and traces sent
    # over OTLP/HTTP to this collector when set (nothing is loaded otherwise).
    metrics: bool = True
    log_format: str = "text"
    otel_endpoint: str | None = None
    # Development made explicit: the built-in secrets and the sandbox processors may serve on
    # any address. Without it they serve only on a loopback-only bind (`make run`): see `refuse_unsafe`.
    development: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        algorithms = tuple(
            a.strip() for a in env.get("JWT_ALGORITHMS", "HS256").split(",") if a.strip()
        )
        unknown = set(algorithms) - {"HS256", "RS256"}
        if not algorithms or unknown:
            raise SettingsError(f"JWT_ALGORITHMS must be HS256 and/or RS256, got {env.get('JWT_ALGORITHMS', '')!r}")
        max_query_nodes = _int(env, "MAX_QUERY_NODES", cls.max_query_nodes)
        settings = cls(
            **cls._money_from_env(env),
            **cls._live_from_env(env),
            database_url=_database_url(env, cls.database_url),
            jwt_algorithms=algorithms,
            jwt_secret=_secret(env, "JWT_SECRET", DEV_JWT_SECRET, 32),
            jwt_public_key=_public_key(env),
            jwt_jwks_url=_url(env, "JWT_JWKS_URL"),
            jwt_issuer=env.get("JWT_ISSUER") or None,
            jwt_audience=env.get("JWT_AUDIENCE") or None,
            jwt_ttl_seconds=_int(env, "JWT_TTL_SECONDS", cls.jwt_ttl_seconds),
            graphiql=_bool(env, "GRAPHIQL", True),
            introspection=_bool(env, "INTROSPECTION", True),
            mask_errors=_bool(env, "MASK_ERRORS", True),
            max_query_depth=_int(env, "MAX_QUERY_DEPTH", cls.max_query_depth),
            max_aliases=_int(env, "MAX_ALIASES", cls.max_aliases),
            max_tokens=_int(env, "MAX_TOKENS", cls.max_tokens),
            max_page_size=_int(env, "MAX_PAGE_SIZE", cls.max_page_size),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", cls.max_body_bytes),
            gzip_min_bytes=_int(env, "GZIP_MIN_BYTES", cls.gzip_min_bytes, minimum=0),
            max_query_nodes=max_query_nodes,
            db_pool_size=_int(env, "DB_POOL_SIZE", cls.db_pool_size),
            db_max_overflow=_int(env, "DB_MAX_OVERFLOW", cls.db_max_overflow, minimum=0),
            db_pool_timeout=_int(env, "DB_POOL_TIMEOUT_SECONDS", int(cls.db_pool_timeout)),
            db_lock_timeout_ms=_int(env, "DB_LOCK_TIMEOUT_MS", cls.db_lock_timeout_ms),
            ticket_auto_close_days=_int(env, "TICKET_AUTO_CLOSE_DAYS", cls.ticket_auto_close_days),
            idempotency_retention_days=_int(env, "IDEMPOTENCY_RETENTION_DAYS", cls.idempotency_retention_days),
            log_level=_choice(env, "LOG_LEVEL", cls.log_level, LOG_LEVELS, upper=True),
            cors_origins=_origins(env),
            trusted_documents=_choice(env, "TRUSTED_DOCUMENTS", cls.trusted_documents, TRUSTED_DOCUMENTS),
            trusted_documents_manifest=env.get("TRUSTED_DOCUMENTS_MANIFEST") or DEFAULT_MANIFEST,
            redis_url=_redis_url(env),
            redis_key_prefix=env.get("REDIS_KEY_PREFIX") or cls.redis_key_prefix,
            rate_limit_enabled=_bool(env, "RATE_LIMIT_ENABLED", cls.rate_limit_enabled),
            rate_limit_max_cost=_bucket(env, max_query_nodes),
            rate_limit_restore_rate=_int(env, "RATE_LIMIT_RESTORE_RATE", cls.rate_limit_restore_rate),
            # Operability (server/observability.py).
            metrics=_bool(env, "METRICS", cls.metrics),
            log_format=_choice(env, "LOG_FORMAT", cls.log_format, LOG_FORMATS),
            otel_endpoint=_url(env, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            development=_bool(env, "DEVELOPMENT", cls.development),
        )
        if settings.trusted_documents == "only" and not Path(settings.trusted_documents_manifest).is_file():
            raise SettingsError(
                f"TRUSTED_DOCUMENTS=only runs only the documents of a manifest, and "
                f"TRUSTED_DOCUMENTS_MANIFEST={settings.trusted_documents_manifest} is not a file "
                "(`make manifest` writes operations/manifest.json)"
            )
        if "RS256" in algorithms and not (settings.jwt_public_key or settings.jwt_jwks_url):
            raise SettingsError("RS256 needs JWT_PUBLIC_KEY or JWT_JWKS_URL")
        return settings

    @classmethod
    def _live_from_env(cls, env: Mapping[str, str]) -> dict[str, Any]:
        """The settings of live updates (server/live.py, server/subscriptions.py)."""
        return dict(
            live_max_subscriptions_per_connection=_int(
                env, "LIVE_MAX_SUBSCRIPTIONS_PER_CONNECTION", cls.live_max_subscriptions_per_connection
            ),
            live_max_subscriptions_per_user=_int(env, "LIVE_MAX_SUBSCRIPTIONS_PER_USER", cls.live_max_subscriptions_per_user),
            live_queue_size=_int(env, "LIVE_QUEUE_SIZE", cls.live_queue_size),
            live_poll_seconds=_int(env, "LIVE_POLL_SECONDS", cls.live_poll_seconds),
            live_init_timeout_seconds=_int(env, "LIVE_INIT_TIMEOUT_SECONDS", cls.live_init_timeout_seconds),
            live_reads_at_once=_int(env, "LIVE_READS_AT_ONCE", cls.live_reads_at_once),
            smtp_url=_url(env, "SMTP_URL", ("smtp", "smtps")),
            smtp_from=env.get("SMTP_FROM") or cls.smtp_from,
            worker_schedule=_schedule(env),
            worker_stalled_seconds=_int(env, "WORKER_STALLED_SECONDS", cls.worker_stalled_seconds, minimum=3),
            worker_metrics_port=_int(env, "WORKER_METRICS_PORT", 0, minimum=0),
        )

    @classmethod
    def _money_from_env(cls, env: Mapping[str, str]) -> dict[str, Any]:
        """The settings of the jobs and gateways that move money."""
        return dict(
            payment_gateway=_choice(env, "PAYMENT_GATEWAY", cls.payment_gateway, GATEWAYS),
            billing_pay_from_wallet=_bool(env, "BILLING_PAY_FROM_WALLET", cls.billing_pay_from_wallet),
            billing_retry_days=_days(env, "BILLING_RETRY_DAYS", cls.billing_retry_days),
            billing_batch_size=_int(env, "BILLING_BATCH_SIZE", cls.billing_batch_size),
            payment_sandbox_latency_ms=_int(env, "PAYMENT_SANDBOX_LATENCY_MS", 0, minimum=0),
            payment_sandbox_jitter_ms=_int(env, "PAYMENT_SANDBOX_JITTER_MS", 0, minimum=0),
            payment_sandbox_failure_rate=_rate(env, "PAYMENT_SANDBOX_FAILURE_RATE"),
            payment_sandbox_lost_answer_rate=_rate(env, "PAYMENT_SANDBOX_LOST_ANSWER_RATE"),
            bank_sandbox_latency_ms=_int(env, "BANK_SANDBOX_LATENCY_MS", 0, minimum=0),
            bank_sandbox_jitter_ms=_int(env, "BANK_SANDBOX_JITTER_MS", 0, minimum=0),
            bank_sandbox_failure_rate=_rate(env, "BANK_SANDBOX_FAILURE_RATE"),
            bank_sandbox_lost_answer_rate=_rate(env, "BANK_SANDBOX_LOST_ANSWER_RATE"),
            bank_gateway=_choice(env, "BANK_GATEWAY", cls.bank_gateway, BANK_GATEWAYS),
            bank_webhook_secret=env.get("BANK_WEBHOOK_SECRET") or DEV_WEBHOOK_SECRET,
            files_signing_key=_secret(env, "FILES_SIGNING_KEY", DEV_FILES_KEY, 32),
            files_url_seconds=_int(env, "FILES_URL_SECONDS", 300),
            payments_reconcile_after_seconds=_int(
                env, "PAYMENTS_RECONCILE_AFTER_SECONDS", cls.payments_reconcile_after_seconds
            ),
        )

    @property
    def payment_sandbox_lag(self) -> SandboxLag:
        return SandboxLag(self.payment_sandbox_latency_ms, self.payment_sandbox_jitter_ms,
                          self.payment_sandbox_failure_rate, self.payment_sandbox_lost_answer_rate)

    @property
    def bank_sandbox_lag(self) -> SandboxLag:
        return SandboxLag(self.bank_sandbox_latency_ms, self.bank_sandbox_jitter_ms,
                          self.bank_sandbox_failure_rate, self.bank_sandbox_lost_answer_rate)

    @property
    def uses_dev_webhook_secret(self) -> bool:
        return self.bank_webhook_secret == DEV_WEBHOOK_SECRET

    @property
    def uses_dev_files_key(self) -> bool:
        return self.files_signing_key == DEV_FILES_KEY

    @property
    def uses_dev_secret(self) -> bool:
        return "HS256" in self.jwt_algorithms and self.jwt_secret == DEV_JWT_SECRET


# `revampd-bff serve` tells the app factory in each of its workers the address it binds here; the
# factory run by another server (uvicorn --factory, gunicorn) finds none and assumes any address.
SERVE_HOST = "REVAMPD_SERVE_HOST"
# ... and, with "1", that it runs the background jobs (server/worker.py): with the embedded SQLite
# and one worker, unless `serve --no-jobs`.
JOBS_IN_PROCESS = "REVAMPD_JOBS_IN_PROCESS"


def is_loopback(host: str) -> bool:
    """`host` binds this machine's loopback only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refuse_unsafe(settings: Settings, host: str | None) -> None:
    """Refuses (SettingsError naming each setting) to serve beyond this machine with what is in
    this repository: the development JWT or webhook secret, anyone could sign a BILLING_ADMIN
    token or a bank webhook with; a sandbox processor, which moves no real money. Allowed on a
    loopback-only bind (`host`, None when unknown) or with DEVELOPMENT=true."""
    if settings.development or (host is not None and is_loopback(host)):
        return
    unsafe = [name for name, built_in in (
        ("JWT_SECRET", settings.uses_dev_secret),
        ("BANK_WEBHOOK_SECRET", settings.uses_dev_webhook_secret),
        ("FILES_SIGNING_KEY", settings.uses_dev_files_key),
        ("PAYMENT_GATEWAY", settings.payment_gateway == "sandbox"),
        ("BANK_GATEWAY", settings.bank_gateway == "sandbox"),
    ) if built_in]
    if unsafe:
        where = f"on {host}" if host is not None else "on an address not known to be loopback"
        raise SettingsError(
            f"set {', '.join(unsafe)}: serving {where} with a built-in development secret or a sandbox "
            "processor is refused outside development (bind 127.0.0.1, or set DEVELOPMENT=true for a "
            "development server)"
        )


def from_env_or_exit() -> Settings:
    """The settings, or one line on standard error naming what is wrong and exit status 2."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
