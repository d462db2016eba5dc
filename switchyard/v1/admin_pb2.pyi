from google.api import annotations_pb2 as _annotations_pb2
from switchyard.v1 import chat_pb2 as _chat_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Budget(_message.Message):
    __slots__ = ("max_usd", "reset", "calendar_aligned")
    MAX_USD_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    CALENDAR_ALIGNED_FIELD_NUMBER: _ClassVar[int]
    max_usd: float
    reset: str
    calendar_aligned: bool
    def __init__(self, max_usd: _Optional[float] = ..., reset: _Optional[str] = ..., calendar_aligned: _Optional[bool] = ...) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ("requests_per_minute", "tokens_per_minute")
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    requests_per_minute: int
    tokens_per_minute: int
    def __init__(self, requests_per_minute: _Optional[int] = ..., tokens_per_minute: _Optional[int] = ...) -> None: ...

class BudgetUsage(_message.Message):
    __slots__ = ("spent_usd", "reserved_usd", "window_start", "window_end")
    SPENT_USD_FIELD_NUMBER: _ClassVar[int]
    RESERVED_USD_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    spent_usd: float
    reserved_usd: float
    window_start: float
    window_end: float
    def __init__(self, spent_usd: _Optional[float] = ..., reserved_usd: _Optional[float] = ..., window_start: _Optional[float] = ..., window_end: _Optional[float] = ...) -> None: ...

class VirtualKey(_message.Message):
    __slots__ = ("id", "name", "description", "active", "expires_at", "allowed_models", "allowed_providers", "budget", "rate_limit", "team_id", "key_prefix", "created_at", "updated_at", "revoked_at", "budget_usage")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_USAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    active: bool
    expires_at: float
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    allowed_providers: _containers.RepeatedScalarFieldContainer[str]
    budget: Budget
    rate_limit: RateLimit
    team_id: str
    key_prefix: str
    created_at: float
    updated_at: float
    revoked_at: float
    budget_usage: BudgetUsage
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., active: _Optional[bool] = ..., expires_at: _Optional[float] = ..., allowed_models: _Optional[_Iterable[str]] = ..., allowed_providers: _Optional[_Iterable[str]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ..., team_id: _Optional[str] = ..., key_prefix: _Optional[str] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., revoked_at: _Optional[float] = ..., budget_usage: _Optional[_Union[BudgetUsage, _Mapping]] = ...) -> None: ...

class Team(_message.Message):
    __slots__ = ("id", "name", "budget", "created_at", "updated_at", "budget_usage")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_USAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    budget: Budget
    created_at: float
    updated_at: float
    budget_usage: BudgetUsage
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., budget_usage: _Optional[_Union[BudgetUsage, _Mapping]] = ...) -> None: ...

class CreateVirtualKeyRequest(_message.Message):
    __slots__ = ("id", "name", "description", "expires_at", "allowed_models", "allowed_providers", "budget", "rate_limit", "team_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    expires_at: float
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    allowed_providers: _containers.RepeatedScalarFieldContainer[str]
    budget: Budget
    rate_limit: RateLimit
    team_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., expires_at: _Optional[float] = ..., allowed_models: _Optional[_Iterable[str]] = ..., allowed_providers: _Optional[_Iterable[str]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ..., team_id: _Optional[str] = ...) -> None: ...

class VirtualKeyWithSecret(_message.Message):
    __slots__ = ("key", "secret")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    key: VirtualKey
    secret: str
    def __init__(self, key: _Optional[_Union[VirtualKey, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class GetVirtualKeyRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListVirtualKeysRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListVirtualKeysResponse(_message.Message):
    __slots__ = ("keys", "next_page_token")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[VirtualKey]
    next_page_token: str
    def __init__(self, keys: _Optional[_Iterable[_Union[VirtualKey, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateVirtualKeyRequest(_message.Message):
    __slots__ = ("id", "name", "description", "active", "expires_at", "allowed_models", "allowed_providers", "budget", "rate_limit", "team_id", "clear_budget", "clear_rate_limit", "clear_team", "clear_expiry")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    CLEAR_BUDGET_FIELD_NUMBER: _ClassVar[int]
    CLEAR_RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CLEAR_TEAM_FIELD_NUMBER: _ClassVar[int]
    CLEAR_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    active: bool
    expires_at: float
    allowed_models: _chat_pb2.StringList
    allowed_providers: _chat_pb2.StringList
    budget: Budget
    rate_limit: RateLimit
    team_id: str
    clear_budget: bool
    clear_rate_limit: bool
    clear_team: bool
    clear_expiry: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., active: _Optional[bool] = ..., expires_at: _Optional[float] = ..., allowed_models: _Optional[_Union[_chat_pb2.StringList, _Mapping]] = ..., allowed_providers: _Optional[_Union[_chat_pb2.StringList, _Mapping]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ..., team_id: _Optional[str] = ..., clear_budget: _Optional[bool] = ..., clear_rate_limit: _Optional[bool] = ..., clear_team: _Optional[bool] = ..., clear_expiry: _Optional[bool] = ...) -> None: ...

class RevokeVirtualKeyRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RotateVirtualKeyRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class UpsertTeamRequest(_message.Message):
    __slots__ = ("team",)
    TEAM_FIELD_NUMBER: _ClassVar[int]
    team: Team
    def __init__(self, team: _Optional[_Union[Team, _Mapping]] = ...) -> None: ...

class ListTeamsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTeamsResponse(_message.Message):
    __slots__ = ("teams",)
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    teams: _containers.RepeatedCompositeFieldContainer[Team]
    def __init__(self, teams: _Optional[_Iterable[_Union[Team, _Mapping]]] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("id", "ts", "request_type", "key_id", "team_id", "model_requested", "provider", "model_served", "status", "error_type", "attempts_json", "prompt_tokens", "completion_tokens", "total_tokens", "cost", "latency_ms", "content_json", "request_id", "cache_hit_type", "cache_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_SERVED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_JSON_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CACHE_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    ts: float
    request_type: str
    key_id: str
    team_id: str
    model_requested: str
    provider: str
    model_served: str
    status: int
    error_type: str
    attempts_json: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float
    latency_ms: int
    content_json: str
    request_id: str
    cache_hit_type: str
    cache_id: str
    def __init__(self, id: _Optional[str] = ..., ts: _Optional[float] = ..., request_type: _Optional[str] = ..., key_id: _Optional[str] = ..., team_id: _Optional[str] = ..., model_requested: _Optional[str] = ..., provider: _Optional[str] = ..., model_served: _Optional[str] = ..., status: _Optional[int] = ..., error_type: _Optional[str] = ..., attempts_json: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., cost: _Optional[float] = ..., latency_ms: _Optional[int] = ..., content_json: _Optional[str] = ..., request_id: _Optional[str] = ..., cache_hit_type: _Optional[str] = ..., cache_id: _Optional[str] = ...) -> None: ...

class QueryLogsRequest(_message.Message):
    __slots__ = ("key_id", "model", "status", "start_time", "end_time", "page_size", "page_token", "request_id", "provider", "error_type", "team_id", "errors_only")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    ERRORS_ONLY_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    model: str
    status: int
    start_time: float
    end_time: float
    page_size: int
    page_token: str
    request_id: str
    provider: str
    error_type: str
    team_id: str
    errors_only: bool
    def __init__(self, key_id: _Optional[str] = ..., model: _Optional[str] = ..., status: _Optional[int] = ..., start_time: _Optional[float] = ..., end_time: _Optional[float] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., request_id: _Optional[str] = ..., provider: _Optional[str] = ..., error_type: _Optional[str] = ..., team_id: _Optional[str] = ..., errors_only: _Optional[bool] = ...) -> None: ...

class GetLogEntryRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class QueryLogsResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UsageSummaryRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "key_id")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    start_time: float
    end_time: float
    key_id: str
    def __init__(self, start_time: _Optional[float] = ..., end_time: _Optional[float] = ..., key_id: _Optional[str] = ...) -> None: ...

class UsageRow(_message.Message):
    __slots__ = ("key_id", "model", "day", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    model: str
    day: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float
    def __init__(self, key_id: _Optional[str] = ..., model: _Optional[str] = ..., day: _Optional[str] = ..., requests: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., cost: _Optional[float] = ...) -> None: ...

class UsageSummaryResponse(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    def __init__(self, rows: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ...) -> None: ...

class UsageOverviewRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "bucket_s", "key_id", "team_id", "top")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    BUCKET_S_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    start_time: float
    end_time: float
    bucket_s: int
    key_id: str
    team_id: str
    top: int
    def __init__(self, start_time: _Optional[float] = ..., end_time: _Optional[float] = ..., bucket_s: _Optional[int] = ..., key_id: _Optional[str] = ..., team_id: _Optional[str] = ..., top: _Optional[int] = ...) -> None: ...

class UsageBucket(_message.Message):
    __slots__ = ("start", "requests", "errors", "cost", "prompt_tokens", "completion_tokens", "total_tokens")
    START_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    start: float
    requests: int
    errors: int
    cost: float
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    def __init__(self, start: _Optional[float] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., cost: _Optional[float] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ...) -> None: ...

class UsageBreakdown(_message.Message):
    __slots__ = ("name", "requests", "errors", "cost", "total_tokens")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    name: str
    requests: int
    errors: int
    cost: float
    total_tokens: int
    def __init__(self, name: _Optional[str] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., cost: _Optional[float] = ..., total_tokens: _Optional[int] = ...) -> None: ...

class BudgetUse(_message.Message):
    __slots__ = ("kind", "id", "name", "budget", "usage")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    name: str
    budget: Budget
    usage: BudgetUsage
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., usage: _Optional[_Union[BudgetUsage, _Mapping]] = ...) -> None: ...

class UsageOverviewResponse(_message.Message):
    __slots__ = ("start_time", "end_time", "bucket_s", "buckets", "totals", "by_model", "by_key", "by_team", "by_provider", "top_error_keys", "top_error_models", "budgets")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    BUCKET_S_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    BY_MODEL_FIELD_NUMBER: _ClassVar[int]
    BY_KEY_FIELD_NUMBER: _ClassVar[int]
    BY_TEAM_FIELD_NUMBER: _ClassVar[int]
    BY_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TOP_ERROR_KEYS_FIELD_NUMBER: _ClassVar[int]
    TOP_ERROR_MODELS_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    start_time: float
    end_time: float
    bucket_s: int
    buckets: _containers.RepeatedCompositeFieldContainer[UsageBucket]
    totals: UsageBucket
    by_model: _containers.RepeatedCompositeFieldContainer[UsageBreakdown]
    by_key: _containers.RepeatedCompositeFieldContainer[UsageBreakdown]
    by_team: _containers.RepeatedCompositeFieldContainer[UsageBreakdown]
    by_provider: _containers.RepeatedCompositeFieldContainer[UsageBreakdown]
    top_error_keys: _containers.RepeatedCompositeFieldContainer[UsageBreakdown]
    top_error_models: _containers.RepeatedCompositeFieldContainer[UsageBreakdown]
    budgets: _containers.RepeatedCompositeFieldContainer[BudgetUse]
    def __init__(self, start_time: _Optional[float] = ..., end_time: _Optional[float] = ..., bucket_s: _Optional[int] = ..., buckets: _Optional[_Iterable[_Union[UsageBucket, _Mapping]]] = ..., totals: _Optional[_Union[UsageBucket, _Mapping]] = ..., by_model: _Optional[_Iterable[_Union[UsageBreakdown, _Mapping]]] = ..., by_key: _Optional[_Iterable[_Union[UsageBreakdown, _Mapping]]] = ..., by_team: _Optional[_Iterable[_Union[UsageBreakdown, _Mapping]]] = ..., by_provider: _Optional[_Iterable[_Union[UsageBreakdown, _Mapping]]] = ..., top_error_keys: _Optional[_Iterable[_Union[UsageBreakdown, _Mapping]]] = ..., top_error_models: _Optional[_Iterable[_Union[UsageBreakdown, _Mapping]]] = ..., budgets: _Optional[_Iterable[_Union[BudgetUse, _Mapping]]] = ...) -> None: ...

class GetConfigViewRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProviderKeyView(_message.Message):
    __slots__ = ("name", "weight", "models", "api_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: float
    models: _containers.RepeatedScalarFieldContainer[str]
    api_version: str
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[float] = ..., models: _Optional[_Iterable[str]] = ..., api_version: _Optional[str] = ...) -> None: ...

class ProviderView(_message.Message):
    __slots__ = ("name", "kind", "base_url", "keys", "base_models", "max_connections")
    class BaseModelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    BASE_MODELS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    base_url: str
    keys: _containers.RepeatedCompositeFieldContainer[ProviderKeyView]
    base_models: _containers.ScalarMap[str, str]
    max_connections: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., base_url: _Optional[str] = ..., keys: _Optional[_Iterable[_Union[ProviderKeyView, _Mapping]]] = ..., base_models: _Optional[_Mapping[str, str]] = ..., max_connections: _Optional[int] = ...) -> None: ...

class TargetView(_message.Message):
    __slots__ = ("provider", "model", "weight", "base_model", "price")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    weight: float
    base_model: str
    price: ModelPriceView
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., weight: _Optional[float] = ..., base_model: _Optional[str] = ..., price: _Optional[_Union[ModelPriceView, _Mapping]] = ...) -> None: ...

class DeploymentView(_message.Message):
    __slots__ = ("name", "targets", "fallbacks", "context_fallbacks", "routing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    name: str
    targets: _containers.RepeatedCompositeFieldContainer[TargetView]
    fallbacks: _containers.RepeatedScalarFieldContainer[str]
    context_fallbacks: _containers.RepeatedScalarFieldContainer[str]
    routing: str
    def __init__(self, name: _Optional[str] = ..., targets: _Optional[_Iterable[_Union[TargetView, _Mapping]]] = ..., fallbacks: _Optional[_Iterable[str]] = ..., context_fallbacks: _Optional[_Iterable[str]] = ..., routing: _Optional[str] = ...) -> None: ...

class ModelPriceView(_message.Message):
    __slots__ = ("model", "input", "output", "cached_input", "cache_write", "reasoning", "per_request")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    model: str
    input: float
    output: float
    cached_input: float
    cache_write: float
    reasoning: float
    per_request: float
    def __init__(self, model: _Optional[str] = ..., input: _Optional[float] = ..., output: _Optional[float] = ..., cached_input: _Optional[float] = ..., cache_write: _Optional[float] = ..., reasoning: _Optional[float] = ..., per_request: _Optional[float] = ...) -> None: ...

class ConfigView(_message.Message):
    __slots__ = ("auth_required", "jwt_enabled", "request_logs_enabled", "request_logs_include_content", "store", "shared_counters", "default_provider", "restrict_to_declared", "circuit_breakers", "providers", "deployments", "prices")
    AUTH_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    JWT_ENABLED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_LOGS_ENABLED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_LOGS_INCLUDE_CONTENT_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    SHARED_COUNTERS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    RESTRICT_TO_DECLARED_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_BREAKERS_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    auth_required: bool
    jwt_enabled: bool
    request_logs_enabled: bool
    request_logs_include_content: bool
    store: str
    shared_counters: bool
    default_provider: str
    restrict_to_declared: bool
    circuit_breakers: bool
    providers: _containers.RepeatedCompositeFieldContainer[ProviderView]
    deployments: _containers.RepeatedCompositeFieldContainer[DeploymentView]
    prices: _containers.RepeatedCompositeFieldContainer[ModelPriceView]
    def __init__(self, auth_required: _Optional[bool] = ..., jwt_enabled: _Optional[bool] = ..., request_logs_enabled: _Optional[bool] = ..., request_logs_include_content: _Optional[bool] = ..., store: _Optional[str] = ..., shared_counters: _Optional[bool] = ..., default_provider: _Optional[str] = ..., restrict_to_declared: _Optional[bool] = ..., circuit_breakers: _Optional[bool] = ..., providers: _Optional[_Iterable[_Union[ProviderView, _Mapping]]] = ..., deployments: _Optional[_Iterable[_Union[DeploymentView, _Mapping]]] = ..., prices: _Optional[_Iterable[_Union[ModelPriceView, _Mapping]]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("prices",)
    PRICES_FIELD_NUMBER: _ClassVar[int]
    prices: _containers.RepeatedCompositeFieldContainer[ModelPriceView]
    def __init__(self, prices: _Optional[_Iterable[_Union[ModelPriceView, _Mapping]]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Stats(_message.Message):
    __slots__ = ("request_logs_dropped", "request_logs_written", "request_logs_queued", "request_log_write_errors", "unpriced_requests", "unpriced_models", "malformed_stream_chunks", "streams_ended_at_shutdown", "circuits")
    REQUEST_LOGS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_LOGS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_LOGS_QUEUED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_LOG_WRITE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    UNPRICED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    UNPRICED_MODELS_FIELD_NUMBER: _ClassVar[int]
    MALFORMED_STREAM_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    STREAMS_ENDED_AT_SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    CIRCUITS_FIELD_NUMBER: _ClassVar[int]
    request_logs_dropped: int
    request_logs_written: int
    request_logs_queued: int
    request_log_write_errors: int
    unpriced_requests: int
    unpriced_models: _containers.RepeatedScalarFieldContainer[str]
    malformed_stream_chunks: int
    streams_ended_at_shutdown: int
    circuits: _containers.RepeatedCompositeFieldContainer[Circuit]
    def __init__(self, request_logs_dropped: _Optional[int] = ..., request_logs_written: _Optional[int] = ..., request_logs_queued: _Optional[int] = ..., request_log_write_errors: _Optional[int] = ..., unpriced_requests: _Optional[int] = ..., unpriced_models: _Optional[_Iterable[str]] = ..., malformed_stream_chunks: _Optional[int] = ..., streams_ended_at_shutdown: _Optional[int] = ..., circuits: _Optional[_Iterable[_Union[Circuit, _Mapping]]] = ...) -> None: ...

class Circuit(_message.Message):
    __slots__ = ("provider", "model", "key", "state", "consecutive_failures", "window_failures", "window_requests", "open_until_ms", "open_for_s")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FAILURES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    OPEN_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FOR_S_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    key: str
    state: str
    consecutive_failures: int
    window_failures: int
    window_requests: int
    open_until_ms: int
    open_for_s: float
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., key: _Optional[str] = ..., state: _Optional[str] = ..., consecutive_failures: _Optional[int] = ..., window_failures: _Optional[int] = ..., window_requests: _Optional[int] = ..., open_until_ms: _Optional[int] = ..., open_for_s: _Optional[float] = ...) -> None: ...

class ClearCacheEntryRequest(_message.Message):
    __slots__ = ("cache_id",)
    CACHE_ID_FIELD_NUMBER: _ClassVar[int]
    cache_id: str
    def __init__(self, cache_id: _Optional[str] = ...) -> None: ...

class ClearCachePartitionRequest(_message.Message):
    __slots__ = ("partition", "cache_key")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    CACHE_KEY_FIELD_NUMBER: _ClassVar[int]
    partition: str
    cache_key: str
    def __init__(self, partition: _Optional[str] = ..., cache_key: _Optional[str] = ...) -> None: ...

class ClearCacheResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class GetCacheStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CacheStats(_message.Message):
    __slots__ = ("enabled", "store", "entries", "bytes", "exact_hits", "semantic_hits", "misses", "writes", "write_failures", "writes_dropped", "semantic_entries")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    EXACT_HITS_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    WRITE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    WRITES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    store: str
    entries: int
    bytes: int
    exact_hits: int
    semantic_hits: int
    misses: int
    writes: int
    write_failures: int
    writes_dropped: int
    semantic_entries: int
    def __init__(self, enabled: _Optional[bool] = ..., store: _Optional[str] = ..., entries: _Optional[int] = ..., bytes: _Optional[int] = ..., exact_hits: _Optional[int] = ..., semantic_hits: _Optional[int] = ..., misses: _Optional[int] = ..., writes: _Optional[int] = ..., write_failures: _Optional[int] = ..., writes_dropped: _Optional[int] = ..., semantic_entries: _Optional[int] = ...) -> None: ...
