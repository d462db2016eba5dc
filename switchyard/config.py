"""Typed, frozen configuration, loaded and checked in one place.

The YAML file (``--config`` or ``SWITCHYARD_CONFIG``; ``switchyard/default.yaml``
otherwise) is validated here and nowhere else: a bad file fails at start with a
message naming the bad key, e.g. ``config error at providers.azure.keys[0].weight:
must be a positive number``. Secrets are written in the file as environment
references (``${AZURE_OPENAI_API_KEY}`` or ``${VAR:-default}``) and only resolved
here; ``Config.redacted()`` is the view that may be logged.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default.yaml")
DEFAULT_AZURE_API_VERSION = "2024-10-21"
JWT_ALGORITHMS = ("HS256", "RS256", "ES256")
VIRTUAL_KEY_PREFIX = "sk-bf-"

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PORT_RANGE = range(1, 65536)
# Settings every provider has; the rest of a provider's section belongs to its kind.
# Prometheus label names, and those Switchyard's own series use (a static label must not clash).
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_RESERVED_LABELS = frozenset(
    {"route", "provider", "model", "status_class", "error_type", "token_type", "outcome", "reason"}
    | {"status", "type", "key", "team", "le", "quantile", "job", "instance"}
)
_COMMON_PROVIDER_KEYS = frozenset({"kind", "base_url", "keys", "max_connections", "base_models", "timeouts"})


def port_number(value: Any, path: str) -> int:
    """A TCP port from a number or its text, or a ConfigError naming ``path`` (the config key or
    the command-line flag): the OS would silently take 70000 as 4464."""
    try:
        if isinstance(value, bool | float):
            raise TypeError
        number = int(value)
    except (TypeError, ValueError):
        number = 0  # not a number at all: as out of range
    if number not in _PORT_RANGE:
        raise ConfigError(path, f"must be a port number from 1 to 65535 (got {value!r})")
    return number


class ConfigError(ValueError):
    """The config file is invalid; the message names the offending key."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"config error at {path}: {message}")
        self.path = path


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential. Its repr never shows the value, so it cannot leak into logs."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class ServerConfig:
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    # Where the gateway reaches the service: "host:port" or "unix:/path". Empty: grpc_host:grpc_port.
    service_address: str = ""
    max_body_bytes: int = 10 * 1024 * 1024
    max_message_bytes: int = 64 * 1024 * 1024
    shutdown_grace_s: float = 10.0

    @property
    def grpc_target(self) -> str:
        if self.service_address:
            return self.service_address
        host = "127.0.0.1" if self.grpc_host in ("0.0.0.0", "::", "[::]") else self.grpc_host
        return f"{host}:{self.grpc_port}"


@dataclass(frozen=True, slots=True)
class RetryConfig:
    max_retries: int = 2
    backoff_initial_ms: float = 500.0
    backoff_max_ms: float = 5000.0
    # A Retry-After longer than this is not waited for: the target counts as failed.
    max_retry_after_s: float = 30.0
    # A timed-out attempt (ttft_s, stream_idle_s, connect_s) moves on to the fallback at once:
    # an upstream that was silent for that long rarely answers the next time, and retrying it
    # multiplies the caller's wait. True retries it like a 5xx.
    retry_timeouts: bool = False


@dataclass(frozen=True, slots=True)
class TimeoutConfig:
    """Time limits of an upstream call (see the README's ``timeouts`` section for the trade-off).

    Defaults are generous on purpose: a reasoning model may think for minutes before its first
    token, and a limit that cuts it off turns a slow answer into a failed one."""

    connect_s: float = 5.0
    # To the first byte of a unary answer, or to the first content chunk of a stream.
    ttft_s: float = 180.0
    # The longest silence between stream chunks once content has started.
    stream_idle_s: float = 90.0
    # The whole call, retries and fallbacks included; a gRPC caller's deadline also bounds it.
    # Global only: it bounds the call before any target is chosen.
    total_s: float = 600.0


# Settable per provider, per deployment and per deployment target (total_s is the call's, not a target's).
_TARGET_TIMEOUT_KEYS = frozenset({"connect_s", "ttft_s", "stream_idle_s"})


@dataclass(frozen=True, slots=True)
class CircuitConfig:
    """Circuit breakers per target (provider + model) and per key: see service/health.py."""

    enabled: bool = True
    # This many provider-caused failures in a row open the circuit (0: never on this count).
    consecutive_failures: int = 5
    # Or this share of failures among the last ``window_s`` seconds' attempts, once there
    # were at least ``min_requests`` of them (0: never on the rate).
    failure_rate: float = 0.5
    window_s: float = 30.0
    min_requests: int = 10
    # The first cool-down; each failed probe doubles it, up to ``max_cooldown_s``.
    cooldown_s: float = 5.0
    max_cooldown_s: float = 60.0


@dataclass(frozen=True, slots=True)
class ResilienceConfig:
    circuit: CircuitConfig = CircuitConfig()


@dataclass(frozen=True, slots=True)
class KeyConfig:
    secret: Secret  # the key's `value`
    weight: float = 1.0
    # fnmatch globs over the upstream model/deployment; empty means every model.
    models: tuple[str, ...] = ()
    api_version: str | None = None
    name: str = ""
    # Further secrets of the key, by name (Bedrock: access key id, secret, session token). Which
    # names a kind accepts is the provider registry's business (service/providers/registry.py).
    secrets: Mapping[str, Secret] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: str
    base_url: str  # "" : the kind's default (the provider registry knows it)
    keys: tuple[KeyConfig, ...] = ()
    max_connections: int = 256
    # Upstream deployment/model name -> the model whose price applies (Azure deployments).
    base_models: Mapping[str, str] = field(default_factory=dict)
    # The kind's own settings (azure: api_version, auth; anthropic: version, default_max_tokens),
    # as written; the provider registry checks them and makes them typed.
    options: Mapping[str, Any] = field(default_factory=dict)
    # The top-level `timeouts` with this provider's `timeouts` over it.
    timeouts: TimeoutConfig = TimeoutConfig()


@dataclass(frozen=True, slots=True)
class TargetConfig:
    provider: str
    model: str
    weight: float = 1.0
    # The model whose price applies: an Azure deployment's name is not a model name.
    base_model: str = ""
    # Its provider's timeouts with the deployment's and the target's own over them; None: the
    # provider's, unchanged.
    timeouts: TimeoutConfig | None = None


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    name: str
    targets: tuple[TargetConfig, ...]
    fallbacks: tuple[str, ...] = ()
    # Tried, in order, only when the target answers context_length_exceeded (bigger models).
    context_fallbacks: tuple[str, ...] = ()
    # How a target is chosen: "weighted" (random by weight) or "latency" (of two drawn by
    # weight, the one answering faster lately; see service/routing.py).
    routing: str = "weighted"


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    default_provider: str = "azure"
    # True: an undeclared deployment id gets 404 without any upstream call.
    restrict_to_declared: bool = False


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"
    # "text" for people, "json" for log pipelines: one object a line (switchyard/logs.py).
    format: str = "text"
    # One line per finished request (logger switchyard.access, info level).
    access_log: bool = True
    # Put the upstream request/response bodies in extra_fields.raw_request/raw_response.
    raw_request: bool = False


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus metrics (``GET /metrics``); see docs/observability.md for the series."""

    enabled: bool = True
    # Static labels added to every series at scrape time (environment, region…).
    labels: Mapping[str, str] = field(default_factory=dict)
    # Per-virtual-key and per-team labels: off by default, and capped when on (the
    # series past the cap share the label value "other").
    key_labels: bool = False
    max_keys: int = 100
    # Distinct model (and error type) label values kept before "other": bounds what a
    # caller naming arbitrary deployments can add.
    max_models: int = 200


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """OpenTelemetry traces over OTLP; off unless an endpoint is configured here or by the
    standard OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT variables."""

    otlp_endpoint: str = ""
    protocol: str = "http/protobuf"  # or "grpc"
    # Of the traces that start here (no sampled parent), the share recorded; ParentBased.
    sample_ratio: float = 1.0
    service_name: str = "switchyard"
    # Prompts and completions on spans (gen_ai.input.messages / gen_ai.output.messages).
    include_content: bool = False


@dataclass(frozen=True, slots=True)
class _TelemetryServer:
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    metrics: MetricsConfig = MetricsConfig()
    # A `switchyard service` running alone serves /metrics on this port (0: not served).
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    tracing: TracingConfig = TracingConfig()


BUDGET_RESETS = ("1h", "1d", "1w", "1mo")


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """A spending cap in USD that resets every ``reset`` (1h, 1d, 1w, 1mo).

    ``calendar_aligned``: windows start on the UTC hour, day, Monday or first of the
    month; otherwise they start at the key's (or team's) creation time.
    """

    max_usd: float
    reset: str = "1mo"
    calendar_aligned: bool = True


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Per-minute limits (sliding window); None means unlimited."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class JwtConfig:
    # Accepted algorithms; the token's own header never widens this list.
    algorithms: tuple[str, ...] = ("HS256",)
    secret: Secret | None = None  # HS256 shared secret
    public_key_file: str = ""  # PEM public key (RS256/ES256)
    jwks_file: str = ""  # JWKS JSON file (RS256/ES256), keys chosen by `kid`
    issuer: str = ""  # checked when set
    audience: str = ""  # checked when set
    leeway_s: float = 30.0
    # A token is an admin token when claim `admin_claim` equals (or, as a list, contains) `admin_value`.
    admin_claim: str = "role"
    admin_value: str = "admin"
    # A virtual-key JWT names its key's id in this claim.
    virtual_key_claim: str = "vk"


@dataclass(frozen=True, slots=True)
class AuthConfig:
    # False is open mode: calls without a credential are served (a warning is logged at start).
    required: bool = True
    # A static admin bearer token, for bootstrapping (create the first virtual keys with it).
    admin_token: Secret | None = None
    jwt: JwtConfig = JwtConfig()
    # How long a replica trusts its cached copy of a virtual key before re-reading the store.
    key_cache_ttl_s: float = 5.0


@dataclass(frozen=True, slots=True)
class StoreConfig:
    # sqlite:///relative/path.db, sqlite:////abs/path.db, or postgresql://user@host/db
    url: str = "sqlite:///switchyard.db"
    # Empty: rate-limit and budget counters live in this process. redis://host:6379/0 shares them.
    redis_url: str = ""


@dataclass(frozen=True, slots=True)
class RequestLogConfig:
    enabled: bool = True
    # Log prompt and completion content too (off by default: it is the callers' data).
    include_content: bool = False
    queue_size: int = 10_000  # entries beyond this are dropped (and counted), never waited for
    batch_size: int = 200
    flush_interval_s: float = 0.5


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens (``per_request``: USD per call)."""

    input: float
    output: float
    cached_input: float | None = None  # default: input
    cache_write: float | None = None  # default: input
    reasoning: float | None = None  # default: output
    per_request: float = 0.0


@dataclass(frozen=True, slots=True)
class PricingConfig:
    file: str = ""  # a JSON/YAML price file merged over the shipped table
    models: Mapping[str, ModelPrice] = field(default_factory=dict)  # merged last
    # Output tokens assumed for a budget reservation when the request sets no max tokens.
    reserve_max_tokens: int = 4096


CACHE_STORES = ("memory", "sqlite", "redis")
CACHE_PARTITIONS = ("key", "team")
CACHE_INDEXES = ("builtin", "qdrant")


@dataclass(frozen=True, slots=True)
class SemanticCacheConfig:
    """The semantic path of the response cache (README, "Response cache")."""

    enabled: bool = False
    # Minimum cosine similarity for a semantic hit (per request: x-bf-cache-threshold).
    threshold: float = 0.92
    # The embedding model: a deployment id or `provider/model`, routed like any other call.
    embedding_model: str = ""
    # Conversations with more messages than this skip the semantic path (exact only).
    max_messages: int = 6
    # Messages before the last user message that are embedded with it (the rest must match exactly).
    context_messages: int = 0
    # Requests with tools skip the semantic path unless this is on.
    include_tools: bool = False
    # "builtin" (in-process, exact cosine search with numpy, vectors kept in a SQLite file at
    # `path`) or "qdrant" (qdrant-client: a server at `qdrant_url`, else its local mode at `path`).
    index: str = "builtin"
    qdrant_url: str = ""
    path: str = "switchyard-cache-vectors"


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """The response cache: off unless enabled (README, "Response cache")."""

    enabled: bool = False
    # How long an answer stays cached, in seconds (per request: x-bf-cache-ttl).
    ttl_s: float = 3600.0
    # Entries are kept apart per virtual key ("key") or per team ("team"; a key without a team
    # keeps its own partition). Calls without a virtual key share the partition "shared".
    partition: str = "key"
    # "memory" (this process), "sqlite" (this machine, survives a restart) or "redis"
    # (every replica, at store.redis_url; Redis expires the entries).
    store: str = "sqlite"
    sqlite_path: str = "switchyard-cache.db"
    # Only these deployment ids / models (globs) are cached; empty: all.
    deployments: tuple[str, ...] = ()
    # Answers bigger than this (serialised) are not stored.
    max_entry_bytes: int = 1024 * 1024
    # The memory store keeps at most this many entries (least recently used go first).
    max_entries: int = 10_000
    # Writes waiting to run; beyond this a write is dropped (and counted), never waited for.
    max_pending_writes: int = 256
    semantic: SemanticCacheConfig = SemanticCacheConfig()


@dataclass(frozen=True, slots=True)
class TeamConfig:
    id: str
    name: str = ""
    budget: BudgetConfig | None = None


@dataclass(frozen=True, slots=True)
class VirtualKeyConfig:
    """A virtual key declared in the config file; seeded into the store at start if its id is new."""

    id: str
    secret: Secret
    name: str = ""
    description: str = ""
    active: bool = True
    expires_at: float | None = None  # unix seconds
    allowed_models: tuple[str, ...] = ()
    allowed_providers: tuple[str, ...] = ()
    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None
    team_id: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = ServerConfig()
    routing: RoutingConfig = RoutingConfig()
    retries: RetryConfig = RetryConfig()
    timeouts: TimeoutConfig = TimeoutConfig()
    resilience: ResilienceConfig = ResilienceConfig()
    logging: LoggingConfig = LoggingConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    deployments: Mapping[str, DeploymentConfig] = field(default_factory=dict)
    auth: AuthConfig = AuthConfig()
    store: StoreConfig = StoreConfig()
    request_logs: RequestLogConfig = RequestLogConfig()
    pricing: PricingConfig = PricingConfig()
    cache: CacheConfig = CacheConfig()
    teams: Mapping[str, TeamConfig] = field(default_factory=dict)
    virtual_keys: tuple[VirtualKeyConfig, ...] = ()
    source: str = ""

    def redacted(self) -> dict[str, Any]:
        """A loggable view: secrets become '***'."""

        def scrub(value: Any) -> Any:
            if isinstance(value, Secret):
                return "***"
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return {f.name: scrub(getattr(value, f.name)) for f in dataclasses.fields(value)}
            if isinstance(value, Mapping):
                return {k: scrub(v) for k, v in value.items()}
            if isinstance(value, tuple | list):
                return [scrub(v) for v in value]
            return value

        return scrub(self)


# ---------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate a config file. ``path`` None: $SWITCHYARD_CONFIG, else the default."""
    env = os.environ if env is None else env
    chosen = Path(path or env.get("SWITCHYARD_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        text = chosen.read_text()
    except OSError as exc:
        raise ConfigError(str(chosen), f"cannot read config file: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(str(chosen), f"not valid YAML: {exc}") from exc
    return parse_config(raw, env=env, source=str(chosen))


def parse_config(raw: Any, *, env: Mapping[str, str], source: str = "<dict>") -> Config:
    reader = _Reader(env)
    root = reader.mapping(raw, "")
    reader.only(
        root,
        "",
        {
            "server",
            "routing",
            "retries",
            "timeouts",
            "resilience",
            "logging",
            "telemetry",
            "providers",
            "deployments",
            "auth",
            "store",
            "request_logs",
            "pricing",
            "cache",
            "teams",
            "virtual_keys",
        },
    )
    timeouts = reader.timeouts(root.get("timeouts"))
    providers = {
        name: reader.provider(name, spec, timeouts)
        for name, spec in reader.mapping(root.get("providers", {}), "providers").items()
    }
    deployments = {
        str(name): reader.deployment(str(name), spec, providers)
        for name, spec in reader.mapping(root.get("deployments", {}), "deployments").items()
    }
    routing = reader.section(root, "routing", RoutingConfig)
    if providers and routing.default_provider not in providers:
        raise ConfigError("routing.default_provider", f"unknown provider {routing.default_provider!r}")
    for name, dep in deployments.items():
        for i, fb in enumerate(dep.fallbacks):
            reader.check_route_ref(fb, f"deployments.{name}.fallbacks[{i}]", providers, deployments)
        for i, fb in enumerate(dep.context_fallbacks):
            reader.check_route_ref(fb, f"deployments.{name}.context_fallbacks[{i}]", providers, deployments)
    store = reader.section(root, "store", StoreConfig)
    if not store.url.startswith(("sqlite://", "postgresql://", "postgres://")):
        raise ConfigError("store.url", "must start with sqlite:// or postgresql://")
    if store.redis_url and not store.redis_url.startswith(("redis://", "rediss://")):
        raise ConfigError("store.redis_url", "must be empty or start with redis:// or rediss://")
    logging_config = reader.section(root, "logging", LoggingConfig)
    if logging_config.format not in ("text", "json"):
        raise ConfigError("logging.format", "must be text or json")
    teams = {
        str(team_id): reader.team(str(team_id), spec)
        for team_id, spec in reader.mapping(root.get("teams", {}), "teams").items()
    }
    return Config(
        server=reader.section(root, "server", ServerConfig),
        routing=routing,
        retries=reader.section(root, "retries", RetryConfig),
        timeouts=timeouts,
        resilience=reader.resilience(root.get("resilience")),
        logging=logging_config,
        telemetry=reader.telemetry(root.get("telemetry")),
        providers=providers,
        deployments=deployments,
        auth=reader.auth(root.get("auth")),
        store=store,
        request_logs=reader.section(root, "request_logs", RequestLogConfig),
        pricing=reader.pricing(root.get("pricing")),
        cache=reader.cache(root.get("cache"), store),
        teams=teams,
        virtual_keys=reader.virtual_keys(root.get("virtual_keys"), teams),
        source=source,
    )


class _Reader:
    """Typed reads from the raw YAML tree, each failure naming its key path."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(path or "<root>", "must be a mapping")
        return {str(k): v for k, v in value.items()}

    def only(self, value: dict[str, Any], path: str, allowed: set[str]) -> None:
        for key in value:
            if key not in allowed:
                where = f"{path}.{key}" if path else key
                raise ConfigError(where, f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def resolve(self, value: Any, path: str) -> str:
        if isinstance(value, datetime.date):
            # YAML reads an unquoted `api_version: 2024-10-21` as a date.
            value = value.isoformat()
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(path, "must be a string")

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            raise ConfigError(path, f"environment variable {name} is not set")

        text = str(value)
        # Checked on the file's text, not the result: an env value may contain "${" itself.
        leftover = _ENV_REF.sub("", text)
        defaults = (m.group(2) or "" for m in _ENV_REF.finditer(text))
        if "${" in leftover or any("${" in d for d in defaults):
            raise ConfigError(
                path, "unterminated or malformed '${' (write ${NAME} or ${NAME:-default}, not nested)"
            )
        return _ENV_REF.sub(substitute, text)

    def section(self, root: dict[str, Any], name: str, cls: type[Any], path: str = "") -> Any:
        path = path or name
        raw = self.mapping(root.get(name), path)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        self.only(raw, path, set(fields))
        defaults = cls()
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key.endswith("_port"):
                values[key] = self.port(value, f"{path}.{key}")
            else:
                values[key] = self.scalar(value, f"{path}.{key}", type(getattr(defaults, key)))
        return cls(**values)

    def telemetry(self, spec: Any) -> TelemetryConfig:
        raw = self.mapping(spec, "telemetry")
        self.only(raw, "telemetry", {"metrics", "metrics_port", "metrics_host", "tracing"})
        metrics_raw = self.mapping(raw.get("metrics"), "telemetry.metrics")
        labels = {
            str(k): self.resolve(v, f"telemetry.metrics.labels.{k}")
            for k, v in self.mapping(metrics_raw.pop("labels", None), "telemetry.metrics.labels").items()
        }
        for name in labels:
            if not _LABEL_NAME.fullmatch(name) or name.startswith("__") or name in _RESERVED_LABELS:
                raise ConfigError(
                    f"telemetry.metrics.labels.{name}",
                    "is not a usable Prometheus label name (letters, digits, _; not one Switchyard sets)",
                )
        metrics = dataclasses.replace(
            self.section({"metrics": metrics_raw}, "metrics", MetricsConfig, "telemetry.metrics"),
            labels=labels,
        )
        tracing = self.section(raw, "tracing", TracingConfig, "telemetry.tracing")
        if tracing.protocol not in ("http/protobuf", "grpc"):
            raise ConfigError("telemetry.tracing.protocol", "must be http/protobuf or grpc")
        if not 0 <= tracing.sample_ratio <= 1:
            raise ConfigError("telemetry.tracing.sample_ratio", "must be between 0 and 1")
        # metrics_port 0 (the default) means not served, so 0 is allowed here.
        rest = {k: v for k, v in raw.items() if k == "metrics_host" or (k == "metrics_port" and v != 0)}
        server = self.section({"telemetry": rest}, "telemetry", _TelemetryServer)
        return TelemetryConfig(metrics, server.metrics_port, server.metrics_host, tracing)

    def resilience(self, spec: Any) -> ResilienceConfig:
        raw = self.mapping(spec, "resilience")
        self.only(raw, "resilience", {"circuit"})
        circuit = self.section(raw, "circuit", CircuitConfig, "resilience.circuit")
        if circuit.failure_rate > 1:
            raise ConfigError("resilience.circuit.failure_rate", "must be between 0 and 1")
        if circuit.failure_rate and circuit.window_s <= 0:
            raise ConfigError("resilience.circuit.window_s", "must be positive when failure_rate is set")
        if circuit.max_cooldown_s < circuit.cooldown_s:
            raise ConfigError("resilience.circuit.max_cooldown_s", "must be at least cooldown_s")
        return ResilienceConfig(circuit)

    def port(self, value: Any, path: str) -> int:
        return port_number(self.resolve(value, path) if isinstance(value, str) else value, path)

    def scalar(self, value: Any, path: str, kind: type[Any]) -> Any:
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(path, "must be true or false")
            return value
        if kind in (int, float):
            text = self.resolve(value, path) if isinstance(value, str) else value
            try:
                number = kind(text) if not isinstance(text, bool) else None
            except (TypeError, ValueError):
                number = None
            if number is None or number < 0:
                raise ConfigError(path, f"must be a non-negative {'integer' if kind is int else 'number'}")
            return number
        return self.resolve(value, path)

    def timeouts(self, spec: Any) -> TimeoutConfig:
        raw = self.mapping(spec, "timeouts")
        self.only(raw, "timeouts", {f.name for f in dataclasses.fields(TimeoutConfig)} | {"read_s"})
        if "read_s" in raw:
            # Deprecated: the one read timeout bounded both the wait for the answer and the
            # silence mid-stream, so it stands for both unless they are set themselves.
            read_s = raw.pop("read_s")
            raw.setdefault("ttft_s", read_s)
            raw.setdefault("stream_idle_s", read_s)
        timeouts = self.section({"timeouts": raw}, "timeouts", TimeoutConfig)
        self.positive_timeouts(timeouts, raw, "timeouts")
        return timeouts

    def timeouts_over(self, base: TimeoutConfig, spec: Any, path: str) -> TimeoutConfig:
        """``base`` with the limits ``spec`` (a provider's, a deployment's or a target's) sets."""
        raw = self.mapping(spec, path)
        if "total_s" in raw:
            raise ConfigError(
                f"{path}.total_s", "is set under the top-level timeouts only (it bounds the whole call)"
            )
        self.only(raw, path, set(_TARGET_TIMEOUT_KEYS))
        values = {key: self.scalar(value, f"{path}.{key}", float) for key, value in raw.items()}
        timeouts = dataclasses.replace(base, **values)
        self.positive_timeouts(timeouts, raw, path)
        return timeouts

    @staticmethod
    def positive_timeouts(timeouts: TimeoutConfig, raw: Mapping[str, Any], path: str) -> None:
        # 0 would fail every call at once rather than mean "no limit": refused, naming the key.
        for key in raw:
            if getattr(timeouts, key) <= 0:
                raise ConfigError(f"{path}.{key}", "must be a positive number of seconds")

    def provider(self, name: str, spec: Any, timeouts: TimeoutConfig = TimeoutConfig()) -> ProviderConfig:
        path = f"providers.{name}"
        raw = self.mapping(spec, path)
        kind = self.resolve(raw.get("kind", name), f"{path}.kind")
        base_url = self.resolve(raw.get("base_url", ""), f"{path}.base_url").rstrip("/")
        if base_url and not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}.base_url", "must start with http:// or https://")
        keys_raw = raw.get("keys", [])
        if not isinstance(keys_raw, list):
            raise ConfigError(f"{path}.keys", "must be a list")
        keys = tuple(
            key for i, k in enumerate(keys_raw) if (key := self.key(k, f"{path}.keys[{i}]", i)) is not None
        )
        max_conn = self.scalar(raw.get("max_connections", 256), f"{path}.max_connections", int)
        # Everything else is the kind's own settings, checked by the provider registry.
        options = {
            str(k): self.resolve(v, f"{path}.{k}") if isinstance(v, str | datetime.date) else v
            for k, v in raw.items()
            if k not in _COMMON_PROVIDER_KEYS
        }
        return ProviderConfig(
            name=name,
            kind=kind,
            base_url=base_url,
            keys=keys,
            max_connections=max(1, max_conn),
            base_models={
                str(k): self.resolve(v, f"{path}.base_models.{k}")
                for k, v in self.mapping(raw.get("base_models"), f"{path}.base_models").items()
            },
            options=options,
            timeouts=self.timeouts_over(timeouts, raw.get("timeouts"), f"{path}.timeouts"),
        )

    def key(self, spec: Any, path: str, index: int) -> KeyConfig | None:
        raw = {"value": spec} if isinstance(spec, str) else self.mapping(spec, path)
        if "value" not in raw:
            raise ConfigError(f"{path}.value", "is required (an environment reference such as ${MY_KEY})")
        value = self.resolve(raw["value"], f"{path}.value")
        if not value:
            return None  # ${VAR:-} with VAR unset: this key is simply not configured.
        weight = self.scalar(raw.get("weight", 1.0), f"{path}.weight", float)
        if weight <= 0:
            raise ConfigError(f"{path}.weight", "must be a positive number")
        models: Any = raw.get("models", [])
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise ConfigError(f"{path}.models", "must be a list of model globs")
        api_version = raw.get("api_version")
        # Any other field is a further secret of the key (the registry says which a kind takes).
        secrets = {
            str(k): Secret(self.resolve(v, f"{path}.{k}"))
            for k, v in raw.items()
            if k not in ("value", "weight", "models", "api_version", "name")
        }
        return KeyConfig(
            secret=Secret(value),
            weight=weight,
            models=tuple(models),
            api_version=self.resolve(api_version, f"{path}.api_version") if api_version else None,
            name=str(raw.get("name", f"key{index}")),
            secrets=secrets,
        )

    def deployment(self, name: str, spec: Any, providers: Mapping[str, ProviderConfig]) -> DeploymentConfig:
        path = f"deployments.{name}"
        raw = self.mapping(spec, path)
        self.only(raw, path, {"targets", "fallbacks", "context_fallbacks", "timeouts", "routing"})
        strategy = self.resolve(raw.get("routing", "weighted"), f"{path}.routing")
        if strategy not in ("weighted", "latency"):
            raise ConfigError(f"{path}.routing", "must be weighted or latency")
        dep_timeouts = self.mapping(raw.get("timeouts"), f"{path}.timeouts")
        targets_raw = raw.get("targets")
        if not isinstance(targets_raw, list) or not targets_raw:
            raise ConfigError(f"{path}.targets", "must be a non-empty list")
        targets = []
        for i, t in enumerate(targets_raw):
            tpath = f"{path}.targets[{i}]"
            traw = self.mapping(t, tpath)
            self.only(traw, tpath, {"provider", "model", "weight", "base_model", "timeouts"})
            provider = self.resolve(traw.get("provider", ""), f"{tpath}.provider")
            if provider not in providers:
                raise ConfigError(f"{tpath}.provider", f"unknown provider {provider!r}")
            if not traw.get("model"):
                raise ConfigError(f"{tpath}.model", "is required")
            weight = self.scalar(traw.get("weight", 1.0), f"{tpath}.weight", float)
            if weight <= 0:
                raise ConfigError(f"{tpath}.weight", "must be a positive number")
            base_model = self.resolve(traw.get("base_model", ""), f"{tpath}.base_model")
            # The most specific wins: the target's own limits, the deployment's, the provider's.
            own = self.mapping(traw.get("timeouts"), f"{tpath}.timeouts")
            limits = None
            if dep_timeouts or own:
                limits = self.timeouts_over(providers[provider].timeouts, dep_timeouts, f"{path}.timeouts")
                limits = self.timeouts_over(limits, own, f"{tpath}.timeouts")
            model = self.resolve(traw["model"], f"{tpath}.model")
            targets.append(TargetConfig(provider, model, weight, base_model, limits))
        refs: dict[str, tuple[str, ...]] = {}
        for key in ("fallbacks", "context_fallbacks"):
            listed = raw.get(key, [])
            if not isinstance(listed, list) or not all(isinstance(f, str) for f in listed):
                raise ConfigError(f"{path}.{key}", "must be a list of 'provider/model' or deployment names")
            refs[key] = tuple(listed)
        return DeploymentConfig(
            name=name,
            targets=tuple(targets),
            fallbacks=refs["fallbacks"],
            context_fallbacks=refs["context_fallbacks"],
            routing=strategy,
        )

    def check_route_ref(
        self,
        ref: str,
        path: str,
        providers: Mapping[str, ProviderConfig],
        deployments: Mapping[str, DeploymentConfig],
    ) -> None:
        provider, sep, _model = ref.partition("/")
        if sep and provider in providers:
            return
        if ref in deployments or not sep:
            return
        raise ConfigError(path, f"{ref!r} names no configured provider or deployment")

    # ------------------------------------------------------------ governance sections

    def optional_secret(self, value: Any, path: str) -> Secret | None:
        if value is None:
            return None
        resolved = self.resolve(value, path)
        return Secret(resolved) if resolved else None

    def string_list(self, value: Any, path: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(path, "must be a list of strings")
        return tuple(self.resolve(v, path) for v in value)

    def auth(self, spec: Any) -> AuthConfig:
        raw = self.mapping(spec, "auth")
        self.only(raw, "auth", {"required", "admin_token", "jwt", "key_cache_ttl_s"})
        required = self.scalar(raw.get("required", True), "auth.required", bool)
        ttl = self.scalar(raw.get("key_cache_ttl_s", 5.0), "auth.key_cache_ttl_s", float)
        jraw = self.mapping(raw.get("jwt"), "auth.jwt")
        fields = {f.name for f in dataclasses.fields(JwtConfig)}
        self.only(jraw, "auth.jwt", fields)
        defaults = JwtConfig()
        values: dict[str, Any] = {}
        for key, value in jraw.items():
            path = f"auth.jwt.{key}"
            if key == "secret":
                values[key] = self.optional_secret(value, path)
            elif key == "algorithms":
                algorithms = self.string_list(value, path)
                bad = [a for a in algorithms if a not in JWT_ALGORITHMS]
                if bad or not algorithms:
                    raise ConfigError(path, f"must be a non-empty list of {', '.join(JWT_ALGORITHMS)}")
                values[key] = algorithms
            else:
                values[key] = self.scalar(value, path, type(getattr(defaults, key)))
        jwt = JwtConfig(**values)
        for key in ("public_key_file", "jwks_file"):
            file = getattr(jwt, key)
            if file and not Path(file).is_file():
                raise ConfigError(f"auth.jwt.{key}", f"no such file: {file}")
        return AuthConfig(
            required=required,
            admin_token=self.optional_secret(raw.get("admin_token"), "auth.admin_token"),
            jwt=jwt,
            key_cache_ttl_s=ttl,
        )

    def budget(self, spec: Any, path: str) -> BudgetConfig | None:
        if spec is None:
            return None
        raw = self.mapping(spec, path)
        self.only(raw, path, {"max_usd", "reset", "calendar_aligned"})
        if "max_usd" not in raw:
            raise ConfigError(f"{path}.max_usd", "is required")
        reset = self.resolve(raw.get("reset", "1mo"), f"{path}.reset")
        if reset not in BUDGET_RESETS:
            raise ConfigError(f"{path}.reset", f"must be one of {', '.join(BUDGET_RESETS)}")
        return BudgetConfig(
            max_usd=self.scalar(raw["max_usd"], f"{path}.max_usd", float),
            reset=reset,
            calendar_aligned=self.scalar(raw.get("calendar_aligned", True), f"{path}.calendar_aligned", bool),
        )

    def rate_limit(self, spec: Any, path: str) -> RateLimitConfig | None:
        if spec is None:
            return None
        raw = self.mapping(spec, path)
        self.only(raw, path, {"requests_per_minute", "tokens_per_minute"})
        values = {key: self.scalar(value, f"{path}.{key}", int) for key, value in raw.items()}
        return RateLimitConfig(**values)

    def team(self, team_id: str, spec: Any) -> TeamConfig:
        path = f"teams.{team_id}"
        raw = self.mapping(spec, path)
        self.only(raw, path, {"name", "budget"})
        return TeamConfig(
            id=team_id,
            name=self.resolve(raw.get("name", team_id), f"{path}.name"),
            budget=self.budget(raw.get("budget"), f"{path}.budget"),
        )

    def virtual_keys(self, spec: Any, teams: Mapping[str, TeamConfig]) -> tuple[VirtualKeyConfig, ...]:
        if spec is None:
            return ()
        if not isinstance(spec, list):
            raise ConfigError("virtual_keys", "must be a list")
        keys: list[VirtualKeyConfig] = []
        seen: set[str] = set()
        for i, item in enumerate(spec):
            path = f"virtual_keys[{i}]"
            raw = self.mapping(item, path)
            fields = {f.name for f in dataclasses.fields(VirtualKeyConfig)}
            self.only(raw, path, (fields - {"secret"}) | {"value"})
            key_id = self.resolve(raw.get("id", ""), f"{path}.id")
            if not key_id:
                raise ConfigError(f"{path}.id", "is required")
            if key_id in seen:
                raise ConfigError(f"{path}.id", f"duplicate virtual key id {key_id!r}")
            seen.add(key_id)
            value = self.resolve(raw.get("value", ""), f"{path}.value")
            if not value:
                continue  # ${VAR:-} with VAR unset: this key is not configured here.
            if not value.startswith(VIRTUAL_KEY_PREFIX) or len(value) < len(VIRTUAL_KEY_PREFIX) + 43:
                raise ConfigError(
                    f"{path}.value",
                    f"must be '{VIRTUAL_KEY_PREFIX}' followed by at least 32 random bytes, URL-safe base64"
                    " (make one with `switchyard keys generate`)",
                )
            team_id = raw.get("team_id")
            if team_id is not None and str(team_id) not in teams:
                raise ConfigError(f"{path}.team_id", f"unknown team {team_id!r} (declare it under teams)")
            expires = raw.get("expires_at")
            keys.append(
                VirtualKeyConfig(
                    id=key_id,
                    secret=Secret(value),
                    name=self.resolve(raw.get("name", key_id), f"{path}.name"),
                    description=self.resolve(raw.get("description", ""), f"{path}.description"),
                    active=self.scalar(raw.get("active", True), f"{path}.active", bool),
                    expires_at=self.timestamp(expires, f"{path}.expires_at") if expires is not None else None,
                    allowed_models=self.string_list(raw.get("allowed_models"), f"{path}.allowed_models"),
                    allowed_providers=self.string_list(
                        raw.get("allowed_providers"), f"{path}.allowed_providers"
                    ),
                    budget=self.budget(raw.get("budget"), f"{path}.budget"),
                    rate_limit=self.rate_limit(raw.get("rate_limit"), f"{path}.rate_limit"),
                    team_id=str(team_id) if team_id is not None else None,
                )
            )
        return tuple(keys)

    def timestamp(self, value: Any, path: str) -> float:
        """Unix seconds, or an ISO 8601 date/time (UTC unless it says otherwise)."""
        if isinstance(value, datetime.datetime):
            moment = value
        elif isinstance(value, datetime.date):
            moment = datetime.datetime(value.year, value.month, value.day)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        else:
            try:
                moment = datetime.datetime.fromisoformat(self.resolve(value, path))
            except ValueError:
                raise ConfigError(path, "must be unix seconds or an ISO 8601 date/time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.timestamp()

    def price(self, spec: Any, path: str) -> ModelPrice:
        raw = self.mapping(spec, path)
        fields = {f.name for f in dataclasses.fields(ModelPrice)}
        self.only(raw, path, fields)
        for required in ("input", "output"):
            if required not in raw:
                raise ConfigError(f"{path}.{required}", "is required (USD per million tokens)")
        return ModelPrice(**{key: self.scalar(value, f"{path}.{key}", float) for key, value in raw.items()})

    def cache(self, spec: Any, store: StoreConfig) -> CacheConfig:
        raw = self.mapping(spec, "cache")
        semantic_raw = raw.pop("semantic", None)
        deployments = raw.pop("deployments", [])
        if not isinstance(deployments, list):
            raise ConfigError("cache.deployments", "must be a list of deployment ids or models")
        cache = self.section({"cache": raw}, "cache", CacheConfig)
        semantic = self.section({"semantic": semantic_raw}, "semantic", SemanticCacheConfig, "cache.semantic")
        cache = dataclasses.replace(
            cache,
            semantic=semantic,
            deployments=tuple(self.resolve(d, f"cache.deployments[{i}]") for i, d in enumerate(deployments)),
        )
        if cache.partition not in CACHE_PARTITIONS:
            raise ConfigError("cache.partition", f"must be one of {', '.join(CACHE_PARTITIONS)}")
        if cache.store not in CACHE_STORES:
            raise ConfigError("cache.store", f"must be one of {', '.join(CACHE_STORES)}")
        if cache.enabled and cache.store == "redis" and not store.redis_url:
            raise ConfigError("cache.store", "redis needs store.redis_url")
        for name in ("ttl_s", "max_entry_bytes", "max_entries", "max_pending_writes"):
            if getattr(cache, name) <= 0:
                raise ConfigError(f"cache.{name}", "must be positive")
        if not 0 <= semantic.threshold <= 1:
            raise ConfigError("cache.semantic.threshold", "must be between 0 and 1")
        if semantic.index not in CACHE_INDEXES:
            raise ConfigError("cache.semantic.index", f"must be one of {', '.join(CACHE_INDEXES)}")
        if semantic.qdrant_url and not semantic.qdrant_url.startswith(("http://", "https://")):
            raise ConfigError("cache.semantic.qdrant_url", "must start with http:// or https://")
        if semantic.max_messages < 1:
            raise ConfigError("cache.semantic.max_messages", "must be at least 1")
        if cache.enabled and semantic.enabled and not semantic.embedding_model:
            raise ConfigError("cache.semantic.embedding_model", "is required when the semantic cache is on")
        return cache

    def pricing(self, spec: Any) -> PricingConfig:
        raw = self.mapping(spec, "pricing")
        self.only(raw, "pricing", {"file", "models", "reserve_max_tokens"})
        file = self.resolve(raw.get("file", ""), "pricing.file")
        if file and not Path(file).is_file():
            raise ConfigError("pricing.file", f"no such file: {file}")
        models = {
            str(name): self.price(price, f"pricing.models.{name}")
            for name, price in self.mapping(raw.get("models"), "pricing.models").items()
        }
        reserve = self.scalar(raw.get("reserve_max_tokens", 4096), "pricing.reserve_max_tokens", int)
        return PricingConfig(file=file, models=models, reserve_max_tokens=reserve)
