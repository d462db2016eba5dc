"""Per-request cache controls: Bifrost's ``x-bf-cache-*`` headers, and the gRPC field.

REST callers send headers; the gateway forwards them to the service as call metadata, where
gRPC callers may send the same names. gRPC callers may instead set
``ChatCompletionRequest.cache`` (``CacheOptions``); a value set there wins over the
metadata. Either way they are read here, in the service, so both kinds of caller get the
same behaviour, and a bad value is the same ``400 invalid_request_error`` naming the header
(or the field).

| header | field | meaning |
|---|---|---|
| ``x-bf-cache-key: K`` | ``key`` | narrow the caller's partition to K (stored and served under K only) |
| ``x-bf-cache-ttl: 30`` / ``30s``, ``5m``, ``2h``, ``1d`` | ``ttl_s`` | this answer's lifetime |
| ``x-bf-cache-threshold: 0.9`` | ``threshold`` | the semantic match's minimum similarity (0..1) |
| ``x-bf-cache-type: direct`` / ``semantic`` | ``type`` | exact match only / semantic match only |
| ``x-bf-cache-no-store: true`` | ``no_store`` | look up, but do not store this answer |
| ``x-bf-cache-bypass: true`` | ``bypass`` | the cache does not see the request at all |
| ``cache-control: no-cache`` | ``refresh`` | do not serve a cached answer; store the fresh one |
| ``cache-control: no-store`` | ``no_store`` | as ``x-bf-cache-no-store`` |
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from service.errors import GatewayError, invalid_request
from service.pipeline import Metadata
from switchyard.v1 import chat_pb2 as pb

KEY = "x-bf-cache-key"
TTL = "x-bf-cache-ttl"
THRESHOLD = "x-bf-cache-threshold"
TYPE = "x-bf-cache-type"
NO_STORE = "x-bf-cache-no-store"
BYPASS = "x-bf-cache-bypass"
CACHE_CONTROL = "cache-control"
HEADERS = (KEY, TTL, THRESHOLD, TYPE, NO_STORE, BYPASS, CACHE_CONTROL)
TYPES = ("direct", "semantic")
MAX_CACHE_KEY = 256
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class Controls:
    cache_key: str = ""
    ttl_s: float | None = None
    threshold: float | None = None
    type: str | None = None  # None: exact, then semantic
    no_store: bool = False
    bypass: bool = False
    refresh: bool = False

    @property
    def exact(self) -> bool:
        return self.type != "semantic"

    @property
    def semantic(self) -> bool:
        return self.type != "direct"


NONE = Controls()


def read_controls(request: pb.ChatCompletionRequest, metadata: Metadata) -> Controls:
    """The request's controls, or a GatewayError (400) naming the bad header or field."""
    values: dict[str, str] = {}
    for name, value in metadata:
        if name in HEADERS:  # gRPC metadata keys are lower case; the gateway forwards them so
            values[name] = value.decode("latin-1") if isinstance(value, bytes) else value
    has_field = request.HasField("cache")
    if not values and not has_field:
        return NONE
    cache_key = values.get(KEY, "")
    ttl_s = _ttl(values[TTL], TTL) if TTL in values else None
    threshold = _threshold(values[THRESHOLD], THRESHOLD) if THRESHOLD in values else None
    kind = _type(values[TYPE], TYPE) if TYPE in values else None
    no_store = _flag(values[NO_STORE], NO_STORE) if NO_STORE in values else False
    bypass = _flag(values[BYPASS], BYPASS) if BYPASS in values else False
    refresh = False
    if CACHE_CONTROL in values:
        directives = {d.strip().lower() for d in values[CACHE_CONTROL].split(",")}
        refresh = "no-cache" in directives
        no_store = no_store or "no-store" in directives
    if has_field:
        options = request.cache
        if options.HasField("key"):
            cache_key = options.key
        if options.HasField("ttl_s"):
            ttl_s = _positive(options.ttl_s, "cache.ttl_s")
        if options.HasField("threshold"):
            threshold = _unit(options.threshold, "cache.threshold")
        if options.HasField("type"):
            kind = _type(options.type, "cache.type")
        if options.HasField("no_store"):
            no_store = options.no_store
        if options.HasField("bypass"):
            bypass = options.bypass
        if options.HasField("refresh"):
            refresh = options.refresh
    if len(cache_key) > MAX_CACHE_KEY:
        param = "cache.key" if has_field and request.cache.HasField("key") else KEY
        raise _bad(param, f"at most {MAX_CACHE_KEY} characters")
    return Controls(cache_key, ttl_s, threshold, kind, no_store, bypass, refresh)


def _bad(param: str, expected: str) -> GatewayError:
    return invalid_request(f"invalid `{param}`: expected {expected}", param)


def _ttl(text: str, param: str) -> float:
    """Seconds, or a number with a unit (``30s``, ``5m``, ``2h``, ``1d``) as Bifrost takes."""
    text = text.strip().lower()
    scale = 1.0
    if text and text[-1] in _UNITS:
        text, scale = text[:-1], _UNITS[text[-1]]
    try:
        seconds = float(text) * scale
    except ValueError:
        raise _bad(param, "a positive number of seconds, or a duration such as 30s, 5m, 2h, 1d") from None
    return _positive(seconds, param)


def _positive(seconds: float, param: str) -> float:
    if not math.isfinite(seconds) or seconds <= 0:
        raise _bad(param, "a positive number of seconds, or a duration such as 30s, 5m, 2h, 1d")
    return seconds


def _threshold(text: str, param: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise _bad(param, "a number from 0 to 1") from None
    return _unit(value, param)


def _unit(value: float, param: str) -> float:
    if not 0 <= value <= 1:  # NaN fails this too
        raise _bad(param, "a number from 0 to 1")
    return value


def _type(text: str, param: str) -> str:
    kind = text.strip().lower()
    if kind not in TYPES:
        raise _bad(param, "direct or semantic")
    return kind


def _flag(text: str, param: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise _bad(param, "true or false")
    return value == "true"
