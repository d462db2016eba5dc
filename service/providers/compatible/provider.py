"""One provider class for every OpenAI-compatible upstream, driven by CompatibleOptions.

On top of the OpenAI wire format it adds only what the options describe: where the key goes,
the request fields the upstream refuses (a 400 before any call) or knows by another name, the
message key its reasoning arrives under, where its usage counts go, and whether it takes
``stream_options``. Embeddings go to ``{base_url}{embeddings_path}`` in OpenAI's format as they
are: the field rules and renames are about chat bodies.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from service.errors import UpstreamError, invalid_request
from service.providers.base import Prepared, ProviderContext
from service.providers.compatible import adapt
from service.providers.compatible.options import KEY_PLACEHOLDER, CompatibleOptions
from service.providers.compatible.rules import FieldRule
from service.providers.compatible.stream import CompatibleStream
from service.providers.embeddings import OpenAIEmbeddings
from service.providers.openai_wire import openai_error
from service.routing import Target
from switchyard.config import KeyConfig, ProviderConfig
from switchyard.v1 import chat_pb2 as pb


class CompatibleProvider(OpenAIEmbeddings):
    def __init__(self, config: ProviderConfig, context: ProviderContext, options: CompatibleOptions) -> None:
        super().__init__(config, context)
        self.options = options
        self._rules = tuple(FieldRule.parse(text) for text in options.rejects)
        self._url = f"{config.base_url}{options.chat_path}"
        self._embeddings_url = f"{config.base_url}{options.embeddings_path}"

    # -- request

    def body(self, request: pb.ChatCompletionRequest, target: Target, *, stream: bool) -> dict[str, Any]:
        body = super().body(request, target, stream=stream)
        for rule in self._rules:
            broken = rule.broken_at(body)
            if broken is not None:
                where, value = broken
                raise invalid_request(rule.explain(where, value, self.name), where)
        for source, name in self.options.renames.items():
            if source not in body:
                continue
            if name in body:
                raise invalid_request(
                    f"`{source}` and `{name}` are both set; provider {self.name!r} takes only "
                    f"`{name}` (it is sent `{source}` under that name)",
                    source,
                )
            body[name] = body.pop(source)
        if stream and not self.options.stream_options:
            body.pop("stream_options", None)
        if self.options.reasoning_field:
            adapt.reasoning_to_upstream(body.get("messages", ()), self.options.reasoning_field)
        return body

    def url(self, prepared: Prepared, key: KeyConfig) -> str:
        return self._url

    def embeddings_url(self, prepared: Prepared, key: KeyConfig) -> str:
        return self._embeddings_url

    def headers(self, prepared: Prepared, key: KeyConfig) -> dict[str, str]:
        options = self.options
        headers = dict(options.headers)
        if options.auth_header:
            headers[options.auth_header] = options.auth_format.replace(KEY_PLACEHOLDER, key.secret.value)
        return headers

    # -- answers

    def response_from(self, data: dict[str, Any], prepared: Prepared) -> pb.ChatCompletionResponse:
        options = self.options
        if options.reasoning_field:
            adapt.reasoning_from_upstream(data, "message", options.reasoning_field)
        if options.usage_fields:
            adapt.usage_from_upstream(data, options.usage_fields)
        return super().response_from(data, prepared)

    def stream_decoder(self, prepared: Prepared) -> CompatibleStream:
        return CompatibleStream(self.options)

    def error_from(
        self, status: int, payload: object, headers: httpx.Headers, prepared: Prepared
    ) -> UpstreamError:
        return openai_error(
            status, _nested(payload), headers, provider=self.name, model=prepared.target.model
        )


def _nested(payload: object) -> object:
    """Some compatible servers (Mistral) put the error's fields at the top level, the message
    sometimes as a list of validation details; read them as OpenAI's ``{"error": {...}}``."""
    if not isinstance(payload, dict) or "error" in payload or "message" not in payload:
        return payload
    message = payload["message"]
    code = payload.get("code")
    return {
        "error": {
            "message": message if isinstance(message, str) else orjson.dumps(message).decode()[:1000],
            "type": payload.get("type"),
            "code": None if code is None else str(code),
            "param": payload.get("param"),
        }
    }
