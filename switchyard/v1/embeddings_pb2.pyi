from google.api import annotations_pb2 as _annotations_pb2
from switchyard.v1 import chat_pb2 as _chat_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbeddingsRequest(_message.Message):
    __slots__ = ("deployment_id", "api_version", "model", "input_text", "input_texts", "input_tokens", "input_token_lists", "encoding_format", "dimensions", "user", "fallbacks", "extra_json")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_TEXT_FIELD_NUMBER: _ClassVar[int]
    INPUT_TEXTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKEN_LISTS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FORMAT_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    api_version: str
    model: str
    input_text: str
    input_texts: _chat_pb2.StringList
    input_tokens: TokenIds
    input_token_lists: TokenIdLists
    encoding_format: str
    dimensions: int
    user: str
    fallbacks: _containers.RepeatedScalarFieldContainer[str]
    extra_json: str
    def __init__(self, deployment_id: _Optional[str] = ..., api_version: _Optional[str] = ..., model: _Optional[str] = ..., input_text: _Optional[str] = ..., input_texts: _Optional[_Union[_chat_pb2.StringList, _Mapping]] = ..., input_tokens: _Optional[_Union[TokenIds, _Mapping]] = ..., input_token_lists: _Optional[_Union[TokenIdLists, _Mapping]] = ..., encoding_format: _Optional[str] = ..., dimensions: _Optional[int] = ..., user: _Optional[str] = ..., fallbacks: _Optional[_Iterable[str]] = ..., extra_json: _Optional[str] = ...) -> None: ...

class TokenIds(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class TokenIdLists(_message.Message):
    __slots__ = ("lists",)
    LISTS_FIELD_NUMBER: _ClassVar[int]
    lists: _containers.RepeatedCompositeFieldContainer[TokenIds]
    def __init__(self, lists: _Optional[_Iterable[_Union[TokenIds, _Mapping]]] = ...) -> None: ...

class EmbeddingsResponse(_message.Message):
    __slots__ = ("object", "data", "model", "usage", "extra_fields", "extra_json")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELDS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    object: str
    data: _containers.RepeatedCompositeFieldContainer[Embedding]
    model: str
    usage: _chat_pb2.Usage
    extra_fields: _chat_pb2.ExtraFields
    extra_json: str
    def __init__(self, object: _Optional[str] = ..., data: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ..., model: _Optional[str] = ..., usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ..., extra_fields: _Optional[_Union[_chat_pb2.ExtraFields, _Mapping]] = ..., extra_json: _Optional[str] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("index", "floats", "float32_le", "object", "extra_json")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FLOATS_FIELD_NUMBER: _ClassVar[int]
    FLOAT32_LE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    index: int
    floats: FloatList
    float32_le: bytes
    object: str
    extra_json: str
    def __init__(self, index: _Optional[int] = ..., floats: _Optional[_Union[FloatList, _Mapping]] = ..., float32_le: _Optional[bytes] = ..., object: _Optional[str] = ..., extra_json: _Optional[str] = ...) -> None: ...

class FloatList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...
