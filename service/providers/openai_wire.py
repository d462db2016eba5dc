"""OpenAI's wire format: the chat-completions JSON body, its SSE chunks, and its error bodies.

Azure OpenAI and every OpenAI-compatible server (OpenAI, vLLM, Ollama, Groq…) speak it; they
differ only in the URL, the auth header and whether the body names the model, which is all
their own modules (``azure.py``, ``openai.py``) say.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from service.errors import UpstreamError, str_or_none, upstream_error
from service.providers.base import HttpProvider, Prepared
from service.routing import Target
from switchyard import codec
from switchyard.v1 import chat_pb2 as pb

_DONE = b"[DONE]"


class OpenAIWire(HttpProvider):
    # Azure routes by the URL and ignores `model`; everyone else needs it in the body.
    body_names_model = True

    def prepare(self, request: pb.ChatCompletionRequest, target: Target, *, stream: bool) -> Prepared:
        body = self.body(request, target, stream=stream)
        return Prepared(target, orjson.dumps(body), stream, request.api_version or None)

    def body(self, request: pb.ChatCompletionRequest, target: Target, *, stream: bool) -> dict[str, Any]:
        """The upstream body as a dict (``orjson.Fragment`` values inside), before it is serialised."""
        body = codec.request_to_dict(request)
        body.pop("fallbacks", None)
        if self.body_names_model or "model" in body:
            body["model"] = target.model
        if not stream:
            # A unary call gets a unary answer, whatever the request's `stream` says.
            body.pop("stream", None)
            body.pop("stream_options", None)
        else:
            body["stream"] = True
            # Always ask for usage so accounting works; the engine forwards the usage
            # chunk only if the caller asked for it.
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        return body

    def response_from(self, data: dict[str, Any], prepared: Prepared) -> pb.ChatCompletionResponse:
        try:
            return codec.response_from_dict(data, pb.ChatCompletionResponse)
        except codec.CodecError as exc:
            raise self.bad_response(prepared, exc.message) from None

    def stream_decoder(self, prepared: Prepared) -> OpenAIStream:
        return OpenAIStream()

    def error_from(
        self, status: int, payload: object, headers: httpx.Headers, prepared: Prepared
    ) -> UpstreamError:
        return openai_error(status, payload, headers, provider=self.name, model=prepared.target.model)


class OpenAIStream:
    """An OpenAI-style stream: ``data:`` chunks, then ``data: [DONE]``."""

    __slots__ = ("ended", "finished", "usage_seen")
    end_marker = "[DONE]"

    def __init__(self) -> None:
        self.ended = False
        self.finished = False  # a choice has sent its finish_reason
        self.usage_seen = False

    @property
    def complete(self) -> bool:
        return self.finished and self.usage_seen

    def feed(self, event: bytes, data: bytes) -> tuple[pb.ChatCompletionChunk, ...]:
        if data == _DONE:
            self.ended = True
            return ()
        parsed = orjson.loads(data)
        if not isinstance(parsed, dict):
            raise TypeError("not a JSON object")
        chunk = self.decode(parsed)
        if not self.finished:
            for choice in chunk.choices:
                if choice.finish_reason:
                    self.finished = True
        if not self.usage_seen:
            self.usage_seen = chunk.HasField("usage")
        return (chunk,)

    def decode(self, parsed: dict[str, Any]) -> pb.ChatCompletionChunk:
        """One parsed ``data:`` payload -> its chunk (a dialect of the dialect adapts it here)."""
        return codec.response_from_dict(parsed, pb.ChatCompletionChunk)


def openai_error(
    status: int, payload: object, headers: Mapping[str, str], *, provider: str, model: str
) -> UpstreamError:
    """An OpenAI-style error response -> UpstreamError, keeping the provider's message, type and code."""
    message = error_type = code = param = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        message = str_or_none(error.get("message"))
        error_type = str_or_none(error.get("type"))
        code = str_or_none(error.get("code"))
        param = str_or_none(error.get("param"))
    elif isinstance(error, str):
        message = error
    elif isinstance(payload, dict) and isinstance(payload.get("message"), str):
        message = payload["message"]
    return upstream_error(
        status,
        headers,
        message=message,
        # Azure's content filter is the caller's problem, and its own kind of refusal.
        type_="content_filter" if code == "content_filter" else None,
        error_type=error_type,
        code=code,
        param=param,
        provider=provider,
        model=model,
    )
