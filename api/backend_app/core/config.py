"""The one Settings object: the only place that reads the environment.

Settings are validated once at start-up. A malformed value stops the process with one
line per problem naming the environment variable, never a traceback.
"""

from __future__ import annotations

import enum
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# The placeholder shipped for development; refused when ENVIRONMENT=production.
DEVELOPMENT_SECRET_KEY = "dev-insecure-secret-key-change-me"  # noqa: S105

_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg"}


class Environment(enum.StrEnum):
    development = "development"
    production = "production"


def to_asyncpg_url(raw_url: str) -> str:
    """Accept `postgresql://` (what most deployments export) and return the asyncpg form."""
    try:
        url = make_url(raw_url.strip())
    except ArgumentError as exc:
        raise ValueError("is not a database URL (expected postgresql://user:password@host:port/name)") from exc
    if url.drivername not in _POSTGRES_SCHEMES:
        raise ValueError(f"scheme '{url.drivername}' is not supported; use postgresql:// or postgresql+asyncpg://")
    if not url.host:
        raise ValueError("has no host")
    if not url.database:
        raise ValueError("has no database name")
    return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def to_driver_dsn(url: str) -> str:
    """The plain `postgresql://` form, for asyncpg.connect (connections outside the pools)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


_SECRET_QUERY_KEYS = {"password", "passwd", "pass", "secret", "token", "sslpassword"}


def mask_url(url: str) -> str:
    """The URL with its password (also one given as ?password=...) replaced by ***."""
    try:
        parsed = make_url(url)
        query = {k: ("***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in parsed.query.items()}
        return parsed.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
    except (ArgumentError, ValueError):
        return "<unparseable url>"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Environment = Environment.development
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "json": one JSON object per line (time, level, logger, message, request_id, exc_info).
    log_format: Literal["text", "json"] = "text"
    # GET /metrics and the HTTP request metrics (README, "Observing it"); off, neither exists.
    metrics_enabled: bool = True
    # Traces (README, "Observing it"): on when set, exported over OTLP/HTTP to this collector.
    # The other OTEL_* variables (headers, sampler, batch sizes) are read by OpenTelemetry itself.
    otel_exporter_otlp_endpoint: str | None = None
    # The traces' service.name; unset, each process names itself (core/tracing.py).
    otel_service_name: str | None = None
    secret_key: str = DEVELOPMENT_SECRET_KEY
    # Access tokens are short-lived; a refresh token (rotated on every use) keeps a session
    # going for REFRESH_TOKEN_EXPIRE_DAYS without signing in again.
    access_token_expire_minutes: int = Field(default=15, ge=1, le=60 * 24 * 30)
    refresh_token_expire_days: int = Field(default=30, ge=1, le=365)
    # Password hashing (argon2id): at least one of OWASP's minimum configurations (19 MiB and
    # 2 passes by default; less memory needs more passes), refused at start-up below that.
    argon2_time_cost: int = Field(default=2, ge=1, le=20)
    argon2_memory_kib: int = Field(default=19 * 1024, ge=7 * 1024, le=1024 * 1024)
    argon2_parallelism: int = Field(default=1, ge=1, le=16)
    # A link in a verification email works once, for this long.
    email_verification_token_minutes: int = Field(default=48 * 60, ge=5, le=30 * 24 * 60)
    # The frontend's address: links in emails point at its routes (/verify-email, /reset-password).
    base_url: str = "http://localhost:8000"
    # Browser origins allowed to call the API (CORS), separated by commas; empty: none.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cdn_url: str = ""
    media_root: str = "media"
    video_max_upload_bytes: int = Field(default=500 * 1024 * 1024, ge=1024)
    # Uploads one user may have in flight at once (429 with Retry-After beyond), counted in Redis.
    video_uploads_per_user: int = Field(default=2, ge=1, le=100)
    # An upload that sends nothing for this long is cut off with 408 and its file removed.
    video_upload_idle_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)

    database_url: str = "postgresql+asyncpg://postgres:postgres@localhost:5432/jobplatform"
    # One replica URL or several separated by commas; empty or equal to the primary: no replica.
    database_url_read: Annotated[list[str], NoDecode] = Field(default_factory=list)
    db_pool_size: int = Field(default=10, ge=1, le=1000)
    db_max_overflow: int = Field(default=10, ge=0, le=1000)
    db_read_pool_size: int = Field(default=10, ge=1, le=1000)
    db_read_max_overflow: int = Field(default=10, ge=0, le=1000)
    db_read_pool_recycle: int = Field(default=300, ge=-1)
    db_read_connect_timeout: float = Field(default=5, gt=0, le=300)
    # Read-replica routing (READ_REPLICA_SETUP.md). A replica further behind the primary than
    # either limit leaves the rotation until it has caught up and a check has passed.
    db_replica_max_lag_seconds: float = Field(default=5.0, gt=0, le=3600)
    db_replica_max_lag_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # A replica that failed (a check or a request's connection) stays out at least this long.
    db_replica_ban_seconds: float = Field(default=5.0, ge=0.1, le=3600)
    # Background checks of every node: how often, and how long one may take.
    db_health_check_interval: float = Field(default=1.0, ge=0.05, le=300)
    db_health_check_timeout: float = Field(default=2.0, gt=0, le=60)
    # With every replica out, reads go to the primary: at most this many at once; one more
    # waits up to DB_PRIMARY_FALLBACK_WAIT_SECONDS, then gets a 503.
    db_primary_fallback_max_reads: int = Field(default=10, ge=1, le=10_000)
    db_primary_fallback_wait_seconds: float = Field(default=1.0, ge=0, le=60)

    redis_url: str = "redis://localhost:6379/0"

    # Celery: a message a worker took but did not acknowledge (the worker died) is given to
    # another worker after this long. Must exceed the longest retry countdown we use.
    celery_visibility_timeout: int = Field(default=7200, ge=5)
    # Extra modules holding Celery tasks, comma-separated (plugins; the tests add their own).
    celery_imports: Annotated[list[str], NoDecode] = Field(default_factory=list)
    celery_task_soft_time_limit: int = Field(default=300, ge=1)
    celery_task_time_limit: int = Field(default=360, ge=1)
    task_max_retries: int = Field(default=5, ge=0, le=50)
    task_retry_backoff_max: int = Field(default=600, ge=1)
    # Deliveries of one task before it is declared dead (retries and redeliveries together).
    task_max_attempts: int = Field(default=10, ge=1, le=1000)

    # RQ's BatchWorker (core.rq_worker): jobs taken off a queue at once, and the longest a
    # finished job waits for the rest of its batch before its status is written.
    rq_batch_size: int = Field(default=100, ge=1, le=1000)
    rq_batch_max_hold_seconds: float = Field(default=0.5, gt=0, le=60)

    # The outbox relay.
    outbox_poll_interval: float = Field(default=1.0, gt=0, le=60)
    outbox_batch_size: int = Field(default=100, ge=1, le=10_000)
    outbox_max_backoff: float = Field(default=30.0, ge=0.1, le=3600)
    outbox_retention_days: int = Field(default=7, ge=1)
    # Task records vs Redis (tasks/reconcile.py): how often the relay compares them, and how
    # long a record must be untouched before a missing message counts as lost.
    task_reconcile_interval: float = Field(default=15.0, gt=0, le=3600)
    task_reconcile_grace: float = Field(default=60.0, ge=1, le=86400)
    task_record_retention_days: int = Field(default=30, ge=1)

    # Email (Celery queue `emails`). With SMTP_HOST empty, emails are written to the log.
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_use_tls: bool = True
    smtp_timeout: float = Field(default=10.0, gt=0, le=300)
    smtp_from_email: str = "no-reply@jobplatform.local"
    smtp_from_name: str = "Job Platform"
    password_reset_token_minutes: int = Field(default=60, ge=5, le=24 * 60)
    login_max_failures: int = Field(default=10, ge=1, le=1000)
    login_failure_window_seconds: int = Field(default=900, ge=10)

    # Rate limits ("N/second|minute|hour|day", the `limits` library's notation), counted in
    # Redis so every API process shares them. With Redis down they are not enforced (fail
    # open): a throttle must not turn a Redis outage into a login outage.
    rate_limits_enabled: bool = True
    # Failed logins for one account, from any address (the per-address figure is
    # LOGIN_MAX_FAILURES in LOGIN_FAILURE_WINDOW_SECONDS).
    rate_limit_login_failures_per_account: str = "20/15minutes"
    rate_limit_password_reset_per_address: str = "10/hour"  # noqa: S105 (a rate, not a secret)
    # Reset emails to one address; past it the answer is still 202 and no email goes out.
    rate_limit_password_reset_per_email: str = "3/hour"  # noqa: S105
    rate_limit_register_per_address: str = "20/hour"
    rate_limit_uploads_per_user: str = "30/hour"
    rate_limit_analytics_per_client: str = "120/minute"
    rate_limit_stats_refresh_per_user: str = "10/hour"

    # /health/queues and /health/database show their details (hosts, users, positions,
    # workers) to administrators and to requests with `Authorization: Bearer <PROBE_TOKEN>`;
    # everyone else gets the status of each part. Empty: administrators only.
    probe_token: str = ""

    # Request bodies: JSON bodies above this are refused with 413 before they are read
    # (uploads have VIDEO_MAX_UPLOAD_BYTES).
    max_json_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Read notifications older than this are deleted by the daily clean-up.
    notification_retention_days: int = Field(default=90, ge=1)

    # Push notifications: "log" (development), "webhook" or "onesignal".
    push_provider: Literal["log", "webhook", "onesignal", "fcm"] = "log"
    push_webhook_url: str = ""
    push_webhook_secret: str = ""
    onesignal_api_url: str = "https://onesignal.com/api/v1"
    onesignal_app_id: str = ""
    onesignal_api_key: str = ""
    push_timeout: float = Field(default=10.0, gt=0, le=120)
    fcm_credentials_file: str = ""
    fcm_project_id: str = ""  # empty: the service account's project
    fcm_api_url: str = "https://fcm.googleapis.com"

    # Flower's dashboard login, "user:password" (several separated by commas). Flower reads
    # it itself; we check it here so production refuses to start Flower without one.
    flower_basic_auth: str = ""

    # /health/queues: a canary task not done after this long means workers stopped consuming.
    canary_timeout_seconds: float = Field(default=30.0, gt=0)
    # /health/queues: an RQ retry still waiting this long after it was due is reported overdue.
    scheduled_overdue_grace_seconds: float = Field(default=30.0, gt=0)

    @field_validator("database_url", mode="before")
    @classmethod
    def _normalise_primary_url(cls, value: str) -> str:
        return to_asyncpg_url(str(value))

    @field_validator("database_url_read", mode="before")
    @classmethod
    def _split_replica_urls(cls, value: object) -> list[str]:
        if value is None:
            return []
        parts = value.split(",") if isinstance(value, str) else list(value)
        return [to_asyncpg_url(part) for part in parts if str(part).strip()]

    @model_validator(mode="after")
    def _check_argon2_strength(self) -> Settings:
        # OWASP Password Storage Cheat Sheet: m=47104/t=1, 19456/2, 12288/3, 9216/4, 7168/5 (KiB).
        needed_passes = {46 * 1024: 1, 19 * 1024: 2, 12 * 1024: 3, 9 * 1024: 4, 7 * 1024: 5}
        if not any(
            self.argon2_memory_kib >= memory and self.argon2_time_cost >= passes
            for memory, passes in needed_passes.items()
        ):
            raise ValueError(
                "ARGON2_MEMORY_KIB and ARGON2_TIME_COST are below OWASP's minimum for argon2id"
                " (e.g. 19456 KiB with 2 passes, or 7168 KiB with 5)"
            )
        return self

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> list[str]:
        parts = value.split(",") if isinstance(value, str) else list(value or [])
        origins = [str(part).strip().rstrip("/") for part in parts if str(part).strip()]
        for origin in origins:
            # Credentials (the position cookie, the bearer token) are allowed, so every origin
            # is named: "*" would let any site act with a signed-in user's browser.
            if not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an origin such as https://app.example.com")
        return origins

    @field_validator("celery_imports", mode="before")
    @classmethod
    def _split_modules(cls, value: object) -> list[str]:
        parts = value.split(",") if isinstance(value, str) else list(value or [])
        return [str(part).strip() for part in parts if str(part).strip()]

    @field_validator("flower_basic_auth")
    @classmethod
    def _check_basic_auth(cls, value: str) -> str:
        for pair in filter(None, value.split(",")):
            user, sep, password = pair.partition(":")
            if not sep or not user or not password:
                raise ValueError("must be user:password, several separated by commas")
        return value

    @field_validator(
        "rate_limit_login_failures_per_account",
        "rate_limit_password_reset_per_address",
        "rate_limit_password_reset_per_email",
        "rate_limit_register_per_address",
        "rate_limit_uploads_per_user",
        "rate_limit_analytics_per_client",
        "rate_limit_stats_refresh_per_user",
    )
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit such as '10/minute' or '100/hour'") from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("otel_exporter_otlp_endpoint", "otel_service_name")
    @classmethod
    def _check_tracing(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = (value or "").strip() or None  # set but empty: as unset, as OpenTelemetry reads it
        if info.field_name == "otel_exporter_otlp_endpoint" and value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (OTLP over HTTP, e.g. http://localhost:4318)")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        # A replica URL equal to the primary is how some deployments say "no replica".
        self.database_url_read = [url for url in self.database_url_read if url != self.database_url]
        if self.task_retry_backoff_max >= self.celery_visibility_timeout:
            raise ValueError(
                "TASK_RETRY_BACKOFF_MAX must be shorter than CELERY_VISIBILITY_TIMEOUT, or retried"
                " tasks would be delivered twice"
            )
        if self.push_provider == "webhook" and not self.push_webhook_url:
            raise ValueError("PUSH_WEBHOOK_URL must be set when PUSH_PROVIDER=webhook")
        if self.push_provider == "fcm" and not self.fcm_credentials_file:
            raise ValueError("FCM_CREDENTIALS_FILE (a service-account JSON file) must be set when PUSH_PROVIDER=fcm")
        if self.push_provider == "onesignal" and not (self.onesignal_app_id and self.onesignal_api_key):
            raise ValueError("ONESIGNAL_APP_ID and ONESIGNAL_API_KEY must be set when PUSH_PROVIDER=onesignal")
        if self.environment is Environment.production and (
            not self.secret_key or self.secret_key == DEVELOPMENT_SECRET_KEY
        ):
            raise ValueError("SECRET_KEY must be set to a private value when ENVIRONMENT=production")
        return self


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, naming the environment variable as the operator typed it."""
    lines = []
    for problem in error.errors():
        variable = "_".join(str(part) for part in problem["loc"]).upper()
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"Invalid setting {variable}: {message}" if variable else f"Invalid settings: {message}")
    return "\n".join(lines)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        # SystemExit with a message prints it to stderr and exits 1, with no traceback.
        raise SystemExit(describe_validation_error(error)) from None


@lru_cache
def get_settings() -> Settings:
    return load_settings()
