from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChatCompletionRequest(_message.Message):
    __slots__ = ("deployment_id", "api_version", "model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs", "n", "stop_string", "stop_list", "seed", "user", "tools", "tool_choice_mode", "tool_choice_json", "parallel_tool_calls", "response_format", "reasoning_effort", "service_tier", "stream_options", "fallbacks", "extra_json", "cache")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_PENALTY_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_PENALTY_FIELD_NUMBER: _ClassVar[int]
    LOGIT_BIAS_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    STOP_STRING_FIELD_NUMBER: _ClassVar[int]
    STOP_LIST_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_MODE_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_JSON_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    REASONING_EFFORT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_TIER_FIELD_NUMBER: _ClassVar[int]
    STREAM_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    api_version: str
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    stream: bool
    max_tokens: int
    max_completion_tokens: int
    temperature: float
    top_p: float
    frequency_penalty: float
    presence_penalty: float
    logit_bias: LogitBias
    logprobs: bool
    top_logprobs: int
    n: int
    stop_string: str
    stop_list: StringList
    seed: int
    user: str
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    tool_choice_mode: str
    tool_choice_json: str
    parallel_tool_calls: bool
    response_format: ResponseFormat
    reasoning_effort: str
    service_tier: str
    stream_options: StreamOptions
    fallbacks: _containers.RepeatedScalarFieldContainer[str]
    extra_json: str
    cache: CacheOptions
    def __init__(self, deployment_id: _Optional[str] = ..., api_version: _Optional[str] = ..., model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., stream: _Optional[bool] = ..., max_tokens: _Optional[int] = ..., max_completion_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., frequency_penalty: _Optional[float] = ..., presence_penalty: _Optional[float] = ..., logit_bias: _Optional[_Union[LogitBias, _Mapping]] = ..., logprobs: _Optional[bool] = ..., top_logprobs: _Optional[int] = ..., n: _Optional[int] = ..., stop_string: _Optional[str] = ..., stop_list: _Optional[_Union[StringList, _Mapping]] = ..., seed: _Optional[int] = ..., user: _Optional[str] = ..., tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ..., tool_choice_mode: _Optional[str] = ..., tool_choice_json: _Optional[str] = ..., parallel_tool_calls: _Optional[bool] = ..., response_format: _Optional[_Union[ResponseFormat, _Mapping]] = ..., reasoning_effort: _Optional[str] = ..., service_tier: _Optional[str] = ..., stream_options: _Optional[_Union[StreamOptions, _Mapping]] = ..., fallbacks: _Optional[_Iterable[str]] = ..., extra_json: _Optional[str] = ..., cache: _Optional[_Union[CacheOptions, _Mapping]] = ...) -> None: ...

class CacheOptions(_message.Message):
    __slots__ = ("key", "ttl_s", "threshold", "type", "no_store", "bypass", "refresh")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NO_STORE_FIELD_NUMBER: _ClassVar[int]
    BYPASS_FIELD_NUMBER: _ClassVar[int]
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    key: str
    ttl_s: float
    threshold: float
    type: str
    no_store: bool
    bypass: bool
    refresh: bool
    def __init__(self, key: _Optional[str] = ..., ttl_s: _Optional[float] = ..., threshold: _Optional[float] = ..., type: _Optional[str] = ..., no_store: _Optional[bool] = ..., bypass: _Optional[bool] = ..., refresh: _Optional[bool] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class LogitBias(_message.Message):
    __slots__ = ("values",)
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.ScalarMap[str, float]
    def __init__(self, values: _Optional[_Mapping[str, float]] = ...) -> None: ...

class StreamOptions(_message.Message):
    __slots__ = ("include_usage", "extra_json")
    INCLUDE_USAGE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    include_usage: bool
    extra_json: str
    def __init__(self, include_usage: _Optional[bool] = ..., extra_json: _Optional[str] = ...) -> None: ...

class ResponseFormat(_message.Message):
    __slots__ = ("type", "json_schema", "extra_json")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    type: str
    json_schema: JsonSchemaFormat
    extra_json: str
    def __init__(self, type: _Optional[str] = ..., json_schema: _Optional[_Union[JsonSchemaFormat, _Mapping]] = ..., extra_json: _Optional[str] = ...) -> None: ...

class JsonSchemaFormat(_message.Message):
    __slots__ = ("name", "description", "strict", "schema_json", "extra_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    strict: bool
    schema_json: str
    extra_json: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., strict: _Optional[bool] = ..., schema_json: _Optional[str] = ..., extra_json: _Optional[str] = ...) -> None: ...

class Tool(_message.Message):
    __slots__ = ("type", "function", "extra_json")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    type: str
    function: FunctionDefinition
    extra_json: str
    def __init__(self, type: _Optional[str] = ..., function: _Optional[_Union[FunctionDefinition, _Mapping]] = ..., extra_json: _Optional[str] = ...) -> None: ...

class FunctionDefinition(_message.Message):
    __slots__ = ("name", "description", "parameters_json", "strict", "extra_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters_json: str
    strict: bool
    extra_json: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters_json: _Optional[str] = ..., strict: _Optional[bool] = ..., extra_json: _Optional[str] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "text", "parts", "null_content", "name", "tool_calls", "tool_call_id", "refusal", "audio", "reasoning", "reasoning_details", "annotations", "extra_json")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    NULL_CONTENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    REASONING_DETAILS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    role: str
    text: str
    parts: ContentParts
    null_content: _struct_pb2.NullValue
    name: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    tool_call_id: str
    refusal: str
    audio: Audio
    reasoning: str
    reasoning_details: _containers.RepeatedCompositeFieldContainer[ReasoningDetail]
    annotations: _containers.RepeatedCompositeFieldContainer[Annotation]
    extra_json: str
    def __init__(self, role: _Optional[str] = ..., text: _Optional[str] = ..., parts: _Optional[_Union[ContentParts, _Mapping]] = ..., null_content: _Optional[_Union[_struct_pb2.NullValue, str]] = ..., name: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., tool_call_id: _Optional[str] = ..., refusal: _Optional[str] = ..., audio: _Optional[_Union[Audio, _Mapping]] = ..., reasoning: _Optional[str] = ..., reasoning_details: _Optional[_Iterable[_Union[ReasoningDetail, _Mapping]]] = ..., annotations: _Optional[_Iterable[_Union[Annotation, _Mapping]]] = ..., extra_json: _Optional[str] = ...) -> None: ...

class ContentParts(_message.Message):
    __slots__ = ("parts",)
    PARTS_FIELD_NUMBER: _ClassVar[int]
    parts: _containers.RepeatedCompositeFieldContainer[ContentPart]
    def __init__(self, parts: _Optional[_Iterable[_Union[ContentPart, _Mapping]]] = ...) -> None: ...

class ContentPart(_message.Message):
    __slots__ = ("type", "text", "image_url", "input_audio", "file", "extra_json")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URL_FIELD_NUMBER: _ClassVar[int]
    INPUT_AUDIO_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    type: str
    text: str
    image_url: ImageUrl
    input_audio: InputAudio
    file: FilePart
    extra_json: str
    def __init__(self, type: _Optional[str] = ..., text: _Optional[str] = ..., image_url: _Optional[_Union[ImageUrl, _Mapping]] = ..., input_audio: _Optional[_Union[InputAudio, _Mapping]] = ..., file: _Optional[_Union[FilePart, _Mapping]] = ..., extra_json: _Optional[str] = ...) -> None: ...

class ImageUrl(_message.Message):
    __slots__ = ("url", "detail", "extra_json")
    URL_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    url: str
    detail: str
    extra_json: str
    def __init__(self, url: _Optional[str] = ..., detail: _Optional[str] = ..., extra_json: _Optional[str] = ...) -> None: ...

class InputAudio(_message.Message):
    __slots__ = ("data", "format", "extra_json")
    DATA_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    data: str
    format: str
    extra_json: str
    def __init__(self, data: _Optional[str] = ..., format: _Optional[str] = ..., extra_json: _Optional[str] = ...) -> None: ...

class FilePart(_message.Message):
    __slots__ = ("file_data", "file_id", "filename", "extra_json")
    FILE_DATA_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    file_data: str
    file_id: str
    filename: str
    extra_json: str
    def __init__(self, file_data: _Optional[str] = ..., file_id: _Optional[str] = ..., filename: _Optional[str] = ..., extra_json: _Optional[str] = ...) -> None: ...

class ToolCall(_message.Message):
    __slots__ = ("index", "id", "type", "function", "extra_json")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    type: str
    function: FunctionCall
    extra_json: str
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., type: _Optional[str] = ..., function: _Optional[_Union[FunctionCall, _Mapping]] = ..., extra_json: _Optional[str] = ...) -> None: ...

class FunctionCall(_message.Message):
    __slots__ = ("name", "arguments", "extra_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    arguments: str
    extra_json: str
    def __init__(self, name: _Optional[str] = ..., arguments: _Optional[str] = ..., extra_json: _Optional[str] = ...) -> None: ...

class Audio(_message.Message):
    __slots__ = ("id", "data", "expires_at", "transcript", "extra_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    data: str
    expires_at: int
    transcript: str
    extra_json: str
    def __init__(self, id: _Optional[str] = ..., data: _Optional[str] = ..., expires_at: _Optional[int] = ..., transcript: _Optional[str] = ..., extra_json: _Optional[str] = ...) -> None: ...

class ReasoningDetail(_message.Message):
    __slots__ = ("id", "index", "type", "summary", "text", "signature", "data", "extra_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    index: int
    type: str
    summary: str
    text: str
    signature: str
    data: str
    extra_json: str
    def __init__(self, id: _Optional[str] = ..., index: _Optional[int] = ..., type: _Optional[str] = ..., summary: _Optional[str] = ..., text: _Optional[str] = ..., signature: _Optional[str] = ..., data: _Optional[str] = ..., extra_json: _Optional[str] = ...) -> None: ...

class Annotation(_message.Message):
    __slots__ = ("type", "url_citation", "extra_json")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    URL_CITATION_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    type: str
    url_citation: UrlCitation
    extra_json: str
    def __init__(self, type: _Optional[str] = ..., url_citation: _Optional[_Union[UrlCitation, _Mapping]] = ..., extra_json: _Optional[str] = ...) -> None: ...

class UrlCitation(_message.Message):
    __slots__ = ("start_index", "end_index", "title", "url", "sources_json", "type", "extra_json")
    START_INDEX_FIELD_NUMBER: _ClassVar[int]
    END_INDEX_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SOURCES_JSON_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    start_index: int
    end_index: int
    title: str
    url: str
    sources_json: str
    type: str
    extra_json: str
    def __init__(self, start_index: _Optional[int] = ..., end_index: _Optional[int] = ..., title: _Optional[str] = ..., url: _Optional[str] = ..., sources_json: _Optional[str] = ..., type: _Optional[str] = ..., extra_json: _Optional[str] = ...) -> None: ...

class ChatCompletionResponse(_message.Message):
    __slots__ = ("id", "choices", "created", "model", "object", "service_tier", "system_fingerprint", "usage", "extra_fields", "search_results", "videos", "citations", "extra_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_TIER_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELDS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_RESULTS_FIELD_NUMBER: _ClassVar[int]
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    choices: _containers.RepeatedCompositeFieldContainer[Choice]
    created: int
    model: str
    object: str
    service_tier: str
    system_fingerprint: str
    usage: Usage
    extra_fields: ExtraFields
    search_results: _containers.RepeatedCompositeFieldContainer[SearchResult]
    videos: _containers.RepeatedCompositeFieldContainer[Video]
    citations: _containers.RepeatedScalarFieldContainer[str]
    extra_json: str
    def __init__(self, id: _Optional[str] = ..., choices: _Optional[_Iterable[_Union[Choice, _Mapping]]] = ..., created: _Optional[int] = ..., model: _Optional[str] = ..., object: _Optional[str] = ..., service_tier: _Optional[str] = ..., system_fingerprint: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., extra_fields: _Optional[_Union[ExtraFields, _Mapping]] = ..., search_results: _Optional[_Iterable[_Union[SearchResult, _Mapping]]] = ..., videos: _Optional[_Iterable[_Union[Video, _Mapping]]] = ..., citations: _Optional[_Iterable[str]] = ..., extra_json: _Optional[str] = ...) -> None: ...

class ChatCompletionChunk(_message.Message):
    __slots__ = ("id", "choices", "created", "model", "object", "service_tier", "system_fingerprint", "usage", "extra_fields", "search_results", "videos", "citations", "extra_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_TIER_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELDS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_RESULTS_FIELD_NUMBER: _ClassVar[int]
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    choices: _containers.RepeatedCompositeFieldContainer[Choice]
    created: int
    model: str
    object: str
    service_tier: str
    system_fingerprint: str
    usage: Usage
    extra_fields: ExtraFields
    search_results: _containers.RepeatedCompositeFieldContainer[SearchResult]
    videos: _containers.RepeatedCompositeFieldContainer[Video]
    citations: _containers.RepeatedScalarFieldContainer[str]
    extra_json: str
    def __init__(self, id: _Optional[str] = ..., choices: _Optional[_Iterable[_Union[Choice, _Mapping]]] = ..., created: _Optional[int] = ..., model: _Optional[str] = ..., object: _Optional[str] = ..., service_tier: _Optional[str] = ..., system_fingerprint: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., extra_fields: _Optional[_Union[ExtraFields, _Mapping]] = ..., search_results: _Optional[_Iterable[_Union[SearchResult, _Mapping]]] = ..., videos: _Optional[_Iterable[_Union[Video, _Mapping]]] = ..., citations: _Optional[_Iterable[str]] = ..., extra_json: _Optional[str] = ...) -> None: ...

class Choice(_message.Message):
    __slots__ = ("index", "finish_reason", "logprobs", "text", "message", "delta", "extra_json")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    index: int
    finish_reason: str
    logprobs: LogProbs
    text: str
    message: ChatMessage
    delta: ChatMessage
    extra_json: str
    def __init__(self, index: _Optional[int] = ..., finish_reason: _Optional[str] = ..., logprobs: _Optional[_Union[LogProbs, _Mapping]] = ..., text: _Optional[str] = ..., message: _Optional[_Union[ChatMessage, _Mapping]] = ..., delta: _Optional[_Union[ChatMessage, _Mapping]] = ..., extra_json: _Optional[str] = ...) -> None: ...

class LogProbs(_message.Message):
    __slots__ = ("content", "refusal", "text_offset", "token_logprobs", "tokens", "top_logprobs", "extra_json")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    TEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOKEN_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    content: _containers.RepeatedCompositeFieldContainer[TokenLogProb]
    refusal: _containers.RepeatedCompositeFieldContainer[TokenLogProb]
    text_offset: _containers.RepeatedScalarFieldContainer[int]
    token_logprobs: _containers.RepeatedScalarFieldContainer[float]
    tokens: _containers.RepeatedScalarFieldContainer[str]
    top_logprobs: _containers.RepeatedCompositeFieldContainer[TopLogProbMap]
    extra_json: str
    def __init__(self, content: _Optional[_Iterable[_Union[TokenLogProb, _Mapping]]] = ..., refusal: _Optional[_Iterable[_Union[TokenLogProb, _Mapping]]] = ..., text_offset: _Optional[_Iterable[int]] = ..., token_logprobs: _Optional[_Iterable[float]] = ..., tokens: _Optional[_Iterable[str]] = ..., top_logprobs: _Optional[_Iterable[_Union[TopLogProbMap, _Mapping]]] = ..., extra_json: _Optional[str] = ...) -> None: ...

class TokenLogProb(_message.Message):
    __slots__ = ("token", "logprob", "bytes", "top_logprobs", "extra_json")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    token: str
    logprob: float
    bytes: _containers.RepeatedScalarFieldContainer[int]
    top_logprobs: _containers.RepeatedCompositeFieldContainer[TokenLogProb]
    extra_json: str
    def __init__(self, token: _Optional[str] = ..., logprob: _Optional[float] = ..., bytes: _Optional[_Iterable[int]] = ..., top_logprobs: _Optional[_Iterable[_Union[TokenLogProb, _Mapping]]] = ..., extra_json: _Optional[str] = ...) -> None: ...

class TopLogProbMap(_message.Message):
    __slots__ = ("values",)
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.ScalarMap[str, float]
    def __init__(self, values: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "prompt_tokens_details", "completion_tokens", "completion_tokens_details", "total_tokens", "cost", "extra_json")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_DETAILS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_DETAILS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens: int
    completion_tokens_details: CompletionTokensDetails
    total_tokens: int
    cost: Cost
    extra_json: str
    def __init__(self, prompt_tokens: _Optional[int] = ..., prompt_tokens_details: _Optional[_Union[PromptTokensDetails, _Mapping]] = ..., completion_tokens: _Optional[int] = ..., completion_tokens_details: _Optional[_Union[CompletionTokensDetails, _Mapping]] = ..., total_tokens: _Optional[int] = ..., cost: _Optional[_Union[Cost, _Mapping]] = ..., extra_json: _Optional[str] = ...) -> None: ...

class PromptTokensDetails(_message.Message):
    __slots__ = ("text_tokens", "audio_tokens", "image_tokens", "cached_read_tokens", "cached_write_tokens", "cached_tokens", "extra_json")
    TEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_TOKENS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_READ_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    text_tokens: int
    audio_tokens: int
    image_tokens: int
    cached_read_tokens: int
    cached_write_tokens: int
    cached_tokens: int
    extra_json: str
    def __init__(self, text_tokens: _Optional[int] = ..., audio_tokens: _Optional[int] = ..., image_tokens: _Optional[int] = ..., cached_read_tokens: _Optional[int] = ..., cached_write_tokens: _Optional[int] = ..., cached_tokens: _Optional[int] = ..., extra_json: _Optional[str] = ...) -> None: ...

class CompletionTokensDetails(_message.Message):
    __slots__ = ("text_tokens", "accepted_prediction_tokens", "audio_tokens", "citation_tokens", "num_search_queries", "reasoning_tokens", "image_tokens", "rejected_prediction_tokens", "extra_json")
    TEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_PREDICTION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CITATION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NUM_SEARCH_QUERIES_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_PREDICTION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    text_tokens: int
    accepted_prediction_tokens: int
    audio_tokens: int
    citation_tokens: int
    num_search_queries: int
    reasoning_tokens: int
    image_tokens: int
    rejected_prediction_tokens: int
    extra_json: str
    def __init__(self, text_tokens: _Optional[int] = ..., accepted_prediction_tokens: _Optional[int] = ..., audio_tokens: _Optional[int] = ..., citation_tokens: _Optional[int] = ..., num_search_queries: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., image_tokens: _Optional[int] = ..., rejected_prediction_tokens: _Optional[int] = ..., extra_json: _Optional[str] = ...) -> None: ...

class Cost(_message.Message):
    __slots__ = ("input_tokens_cost", "output_tokens_cost", "reasoning_tokens_cost", "citation_tokens_cost", "search_queries_cost", "request_cost", "total_cost")
    INPUT_TOKENS_COST_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_COST_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_COST_FIELD_NUMBER: _ClassVar[int]
    CITATION_TOKENS_COST_FIELD_NUMBER: _ClassVar[int]
    SEARCH_QUERIES_COST_FIELD_NUMBER: _ClassVar[int]
    REQUEST_COST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COST_FIELD_NUMBER: _ClassVar[int]
    input_tokens_cost: float
    output_tokens_cost: float
    reasoning_tokens_cost: float
    citation_tokens_cost: float
    search_queries_cost: float
    request_cost: float
    total_cost: float
    def __init__(self, input_tokens_cost: _Optional[float] = ..., output_tokens_cost: _Optional[float] = ..., reasoning_tokens_cost: _Optional[float] = ..., citation_tokens_cost: _Optional[float] = ..., search_queries_cost: _Optional[float] = ..., request_cost: _Optional[float] = ..., total_cost: _Optional[float] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("title", "url", "date", "last_updated", "snippet", "source")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATED_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    title: str
    url: str
    date: str
    last_updated: str
    snippet: str
    source: str
    def __init__(self, title: _Optional[str] = ..., url: _Optional[str] = ..., date: _Optional[str] = ..., last_updated: _Optional[str] = ..., snippet: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class Video(_message.Message):
    __slots__ = ("url", "thumbnail_url", "thumbnail_width", "thumbnail_height", "duration")
    URL_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_URL_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_WIDTH_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    url: str
    thumbnail_url: str
    thumbnail_width: int
    thumbnail_height: int
    duration: float
    def __init__(self, url: _Optional[str] = ..., thumbnail_url: _Optional[str] = ..., thumbnail_width: _Optional[int] = ..., thumbnail_height: _Optional[int] = ..., duration: _Optional[float] = ...) -> None: ...

class ExtraFields(_message.Message):
    __slots__ = ("request_type", "provider", "model_requested", "model_deployment", "latency", "chunk_index", "raw_request_json", "raw_response_json", "cache_debug", "attempts")
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    MODEL_DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    RAW_REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    RAW_RESPONSE_JSON_FIELD_NUMBER: _ClassVar[int]
    CACHE_DEBUG_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    request_type: str
    provider: str
    model_requested: str
    model_deployment: str
    latency: int
    chunk_index: int
    raw_request_json: str
    raw_response_json: str
    cache_debug: CacheDebug
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    def __init__(self, request_type: _Optional[str] = ..., provider: _Optional[str] = ..., model_requested: _Optional[str] = ..., model_deployment: _Optional[str] = ..., latency: _Optional[int] = ..., chunk_index: _Optional[int] = ..., raw_request_json: _Optional[str] = ..., raw_response_json: _Optional[str] = ..., cache_debug: _Optional[_Union[CacheDebug, _Mapping]] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ...) -> None: ...

class CacheDebug(_message.Message):
    __slots__ = ("cache_hit", "cache_id", "hit_type", "requested_provider", "requested_model", "provider_used", "model_used", "input_tokens", "threshold", "similarity")
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    CACHE_ID_FIELD_NUMBER: _ClassVar[int]
    HIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_USED_FIELD_NUMBER: _ClassVar[int]
    MODEL_USED_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    cache_hit: bool
    cache_id: str
    hit_type: str
    requested_provider: str
    requested_model: str
    provider_used: str
    model_used: str
    input_tokens: int
    threshold: float
    similarity: float
    def __init__(self, cache_hit: _Optional[bool] = ..., cache_id: _Optional[str] = ..., hit_type: _Optional[str] = ..., requested_provider: _Optional[str] = ..., requested_model: _Optional[str] = ..., provider_used: _Optional[str] = ..., model_used: _Optional[str] = ..., input_tokens: _Optional[int] = ..., threshold: _Optional[float] = ..., similarity: _Optional[float] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("provider", "model", "status_code", "error_type", "message")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    status_code: int
    error_type: str
    message: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., status_code: _Optional[int] = ..., error_type: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ErrorBody(_message.Message):
    __slots__ = ("event_id", "type", "is_bifrost_error", "status_code", "error", "extra_fields")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    IS_BIFROST_ERROR_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELDS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    type: str
    is_bifrost_error: bool
    status_code: int
    error: ErrorDetail
    extra_fields: ErrorExtraFields
    def __init__(self, event_id: _Optional[str] = ..., type: _Optional[str] = ..., is_bifrost_error: _Optional[bool] = ..., status_code: _Optional[int] = ..., error: _Optional[_Union[ErrorDetail, _Mapping]] = ..., extra_fields: _Optional[_Union[ErrorExtraFields, _Mapping]] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("type", "code", "message", "param", "event_id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PARAM_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    type: str
    code: str
    message: str
    param: str
    event_id: str
    def __init__(self, type: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., param: _Optional[str] = ..., event_id: _Optional[str] = ...) -> None: ...

class ErrorExtraFields(_message.Message):
    __slots__ = ("provider", "model_requested", "request_type", "attempts")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model_requested: str
    request_type: str
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    def __init__(self, provider: _Optional[str] = ..., model_requested: _Optional[str] = ..., request_type: _Optional[str] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ...) -> None: ...
