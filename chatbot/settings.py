"""Settings for the chatbot monolith, read once from the environment.

Every setting an operator can change is read here with django-environ and a typed default (see the
README's settings table and ../CONTRACT names). Application code reads ``settings.X`` lazily, never
``os.environ``, so ``override_settings`` works in tests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.retry import Retry

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env file is read when present (development convenience); the real environment wins.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# --- Django core -------------------------------------------------------------------------------
DEV_SECRET_KEY = "django-insecure-dev-only-key-do-not-use-in-production"  # refused in production below
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=DEV_SECRET_KEY)
DEBUG = env.bool("DJANGO_DEBUG", default=True)
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"]
)

if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set: production (DJANGO_DEBUG=false) refuses to start with the "
        "development key. Set DJANGO_SECRET_KEY to a long random value."
    )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_rq",
    "conversations",
    "engine",
    "messenger",
    "observability",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatbot.urls"
WSGI_APPLICATION = "chatbot.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
# Off by default: a health check costs a round trip on every request that reuses a connection. A
# connection that died (PostgreSQL restarted) fails that one request, and Facebook redelivers it.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_CONN_HEALTH_CHECKS", default=False)
# PostgreSQL only: one pool of at most this many connections per process, shared by its threads
# (psycopg's pool through Django's "pool" option; CONN_MAX_AGE is then 0: a closed connection goes back
# to the pool). 0, the default: each thread keeps a connection of its own. Set it on worker processes
# whose MESSENGER_WORKER_CONCURRENCY times their count would pass the server's max_connections: a
# thread waits up to 30 s for a free connection instead of failing on "too many clients".
DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=0)
if DATABASE_POOL_MAX_SIZE > 0 and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DATABASE_POOL_MAX_SIZE,
        "timeout": 30,
    }
if env.str("DATABASE_TEST_NAME", default=""):
    # Lets several test runs share one PostgreSQL server without fighting over test_<name>.
    DATABASES["default"]["TEST"] = {"NAME": env.str("DATABASE_TEST_NAME")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Redis: cache (recent history, circuit breaker) and rq queues ----------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Seconds; a Redis that does not answer must fail fast, never hold up the webhook.
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=1.0)

# One quick retry (a pooled connection gone stale after a Redis restart), never redis-py's default of
# several backed-off attempts: a down Redis must fail in milliseconds, not seconds. Every Redis client
# of the project is built with it: the cache's (below) and the channel's (``messenger.queues``).
REDIS_RETRY = Retry(NoBackoff(), 1)

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "chatbot",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            "CONNECTION_POOL_KWARGS": {"retry": REDIS_RETRY},
        },
    }
}

MESSENGER_FAST_QUEUE = "messenger_fast"
MESSENGER_SLOW_QUEUE = "messenger_slow"
_RQ_QUEUE = {"URL": REDIS_URL, "DEFAULT_TIMEOUT": env.int("RQ_DEFAULT_TIMEOUT", default=180)}
RQ_QUEUES = {
    MESSENGER_FAST_QUEUE: dict(_RQ_QUEUE),
    MESSENGER_SLOW_QUEUE: dict(_RQ_QUEUE),
}
RQ = {
    # Enqueue only after the surrounding transaction commits: a job never sees a row it can't load.
    "COMMIT_MODE": "on_db_commit",
    "WORKER_CLASS": env.str("RQ_WORKER_CLASS", default="messenger.thread_worker.MessengerThreadWorker"),
}
RQ_SHOW_ADMIN_LINK = True

# --- Django REST framework --------------------------------------------------------------------
REST_FRAMEWORK = {
    # The webhook authenticates by signature inside the view; nothing else in the API uses sessions.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}

# --- Messenger channel ---------------------------------------------------------------------------
MESSENGER_APP_SECRET = env.str("MESSENGER_APP_SECRET", default="")
MESSENGER_VERIFY_TOKEN = env.str("MESSENGER_VERIFY_TOKEN", default="")
MESSENGER_PAGE_ACCESS_TOKEN = env.str("MESSENGER_PAGE_ACCESS_TOKEN", default="")
# The page that MESSENGER_PAGE_ACCESS_TOKEN belongs to, and this app's id (messenger_check compares both).
MESSENGER_PAGE_ID = env.str("MESSENGER_PAGE_ID", default="")
MESSENGER_APP_ID = env.str("MESSENGER_APP_ID", default="")
# Fernet keys encrypting the tokens of pages added with messenger_page (comma-separated; the first
# encrypts, all decrypt: key rotation). Unset: derived from SECRET_KEY in DEBUG, required in production
# as soon as a page is stored (messenger.token_crypto, docs/pages.md).
MESSENGER_TOKEN_KEYS = env.list("MESSENGER_TOKEN_KEYS", default=[])
# The public URL Facebook posts to; messenger_check asks it for the verification challenge.
MESSENGER_WEBHOOK_URL = env.str("MESSENGER_WEBHOOK_URL", default="")
MESSENGER_GRAPH_API_URL = env.str(
    "MESSENGER_GRAPH_API_URL", default="https://graph.facebook.com/v25.0"
).rstrip("/")
MESSENGER_PROCESSING_TIMEOUT_MS = env.int("MESSENGER_PROCESSING_TIMEOUT_MS", default=15000)
MESSENGER_SEND_TIMEOUT_MS = env.int("MESSENGER_SEND_TIMEOUT_MS", default=5000)
# mark_seen + typing_on are sent only when the reply is not ready this long after the engine is asked:
# two Send API calls that count against the page's rate limit, worth it only when the user would wait.
MESSENGER_TYPING_DELAY_MS = env.int("MESSENGER_TYPING_DELAY_MS", default=700)
MESSENGER_MAX_RETRIES = env.int("MESSENGER_MAX_RETRIES", default=3)
MESSENGER_RETRY_BASE_MS = env.int("MESSENGER_RETRY_BASE_MS", default=1000)
MESSENGER_CIRCUIT_FAILURE_THRESHOLD = env.int("MESSENGER_CIRCUIT_FAILURE_THRESHOLD", default=5)
MESSENGER_CIRCUIT_COOLDOWN_MS = env.int("MESSENGER_CIRCUIT_COOLDOWN_MS", default=30000)
# A throttled answer's estimate of when access returns opens the circuit for that long, at most this.
MESSENGER_USAGE_MAX_COOLDOWN_MS = env.int("MESSENGER_USAGE_MAX_COOLDOWN_MS", default=3_600_000)
# While a page's token is failing: one probe send per period, and parked messages retry this often.
MESSENGER_TOKEN_RECHECK_MS = env.int("MESSENGER_TOKEN_RECHECK_MS", default=60_000)
MESSENGER_SHUTDOWN_TIMEOUT_MS = env.int("MESSENGER_SHUTDOWN_TIMEOUT_MS", default=10000)
# Messages one worker process answers at once (messenger.thread_worker: one thread each). Each thread
# holds a PostgreSQL connection except while it waits on a slow model: processes x (this + 1) is the
# most a worker fleet opens (with the rules engine), to fit under the server's max_connections.
# On SQLite (the development default) one: it takes one writer at a time, and threads would only queue
# on its lock.
MESSENGER_WORKER_CONCURRENCY = env.int(
    "MESSENGER_WORKER_CONCURRENCY", default=1 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 16
)
MESSENGER_HISTORY_LIMIT = env.int("MESSENGER_HISTORY_LIMIT", default=10)
MESSENGER_CONVERSATION_TTL_SECONDS = env.int("MESSENGER_CONVERSATION_TTL_SECONDS", default=3600)
# Largest webhook body accepted, in bytes; larger bodies get 413 before they are read.
MESSENGER_MAX_BODY_BYTES = env.int("MESSENGER_MAX_BODY_BYTES", default=1024 * 1024)
# Milliseconds the webhook waits on Redis to enqueue a job (connect and read, no retry); past it the
# rows stay pending for the recovery sweep, and Facebook still gets its 200 at once.
MESSENGER_INGRESS_REDIS_TIMEOUT_MS = env.int("MESSENGER_INGRESS_REDIS_TIMEOUT_MS", default=500)
# Texts of this many characters or more are "long": still messenger_fast, with a longer job timeout.
MESSENGER_LONG_TEXT_CHARS = env.int("MESSENGER_LONG_TEXT_CHARS", default=200)
# How often a worker looks for messages whose worker died mid-job, and puts them back.
MESSENGER_RECOVERY_INTERVAL_SECONDS = env.int("MESSENGER_RECOVERY_INTERVAL_SECONDS", default=15)
# A worker's hold on a sender (and on its message in flight) lapses this long after its last heartbeat.
MESSENGER_LEASE_SECONDS = env.int("MESSENGER_LEASE_SECONDS", default=10)
# A send whose outcome is unknown (a timeout, a reset, 1/1357046, a stop mid-send) is re-sent only if
# its echo (the page's message_echoes subscription) has not arrived this long after the send started.
MESSENGER_ECHO_WAIT_MS = env.int("MESSENGER_ECHO_WAIT_MS", default=15000)

# People in the loop (docs/people.md): after a person replies from elsewhere (the Page Inbox, another
# app), the bot stays silent in that conversation this long; a user asking for a person gets thread
# control passed to this app (the Page Inbox is 263902037430900), or, unset, waits for staff.
MESSENGER_HUMAN_PAUSE_MINUTES = env.int("MESSENGER_HUMAN_PAUSE_MINUTES", default=30)
MESSENGER_HANDOVER_APP_ID = env.str("MESSENGER_HANDOVER_APP_ID", default="")

# Retention (docs/operations-commands.md): days a finished inbound row (its raw body and reply parts)
# and an observability event are kept; 0 keeps them for ever. Transcripts have their own, longer one.
MESSENGER_RETENTION_DAYS = env.int("MESSENGER_RETENTION_DAYS", default=90)
CONVERSATIONS_RETENTION_DAYS = env.int("CONVERSATIONS_RETENTION_DAYS", default=365)
# Rows deleted per statement (each batch its own short transaction, so the webhook never waits long).
MESSENGER_PRUNE_BATCH_SIZE = env.int("MESSENGER_PRUNE_BATCH_SIZE", default=1000)

DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, MESSENGER_MAX_BODY_BYTES + 1)

if not DEBUG and not MESSENGER_APP_SECRET:
    raise ImproperlyConfigured(
        "MESSENGER_APP_SECRET is not set: production (DJANGO_DEBUG=false) refuses to start without "
        "the app secret that verifies Facebook's webhook signatures."
    )

# --- Chat engine ---------------------------------------------------------------------------------
CHATBOT_ENGINE = env.str("CHATBOT_ENGINE", default="rules")
CHATBOT_API_URL = env.str("CHATBOT_API_URL", default="").rstrip("/")
CHATBOT_API_KEY = env.str("CHATBOT_API_KEY", default="")
CHATBOT_MODEL = env.str("CHATBOT_MODEL", default="")
# The openai engine's own HTTP timeout; it never waits longer than the pipeline's remaining budget.
CHATBOT_API_TIMEOUT_MS = env.int("CHATBOT_API_TIMEOUT_MS", default=10000)
CHATBOT_RULES_FILE = env.path("CHATBOT_RULES_FILE", default=str(BASE_DIR / "engine" / "rules.json"))
CHATBOT_SYSTEM_PROMPT = env.str(
    "CHATBOT_SYSTEM_PROMPT",
    default=(
        "You are the friendly assistant of our Facebook page. Answer briefly and helpfully, "
        "in plain text, in the language the user writes in."
    ),
)

# --- Observability -------------------------------------------------------------------------------
OBSERVABILITY_PSID_HASH_KEY = env.str(
    "OBSERVABILITY_PSID_HASH_KEY",
    default=hashlib.sha256(("observability-psid:" + SECRET_KEY).encode()).hexdigest(),
)
# Bearer token of /metrics (docs/operating.md); empty turns the endpoint off (404).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "observability.logging.ContextFilter"}},
    "formatters": {
        "text": {"()": "observability.logging.TextFormatter"},
        "json": {"()": "observability.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # rq's per-job lines at INFO, unless LOG_LEVEL asks for less (messenger.worker raises it too).
        "rq": {
            "handlers": ["console"],
            "level": "INFO" if LOG_LEVEL in ("DEBUG", "INFO") else LOG_LEVEL,
            "propagate": False,
        },
    },
}

# --- Sentry (docs/operating.md) ------------------------------------------------------------------
# Set: the web and the workers report errors to Sentry, scrubbed of tokens, secrets and raw PSIDs.
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="development" if DEBUG else "production")
if SENTRY_DSN:
    from chatbot.sentry import sentry_init

    sentry_init(dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT)

# --- Benchmarks only -----------------------------------------------------------------------------
# Exposes a bare DRF view at /bench/baseline so bench/ingress.py can measure the framework's floor.
BENCH_BASELINE_ROUTE = env.bool("BENCH_BASELINE_ROUTE", default=False)

if not DEBUG:
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
