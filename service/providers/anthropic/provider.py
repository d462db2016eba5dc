"""Anthropic's Messages API behind the provider seam: ``POST {base_url}/v1/messages``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from service.errors import UpstreamError
from service.providers.base import HttpProvider, Prepared, ProviderContext
from service.routing import Target
from switchyard.config import KeyConfig, ProviderConfig
from switchyard.v1 import chat_pb2 as pb

from .errors import anthropic_error
from .request import build_body
from .response import response_from
from .stream import StreamTranslator


@dataclass(frozen=True, slots=True)
class AnthropicOptions:
    # The anthropic-version header: the API's behaviour is pinned to it.
    version: str = "2023-06-01"
    # Anthropic requires max_tokens; this is sent when the caller sets none.
    default_max_tokens: int = 4096


class AnthropicProvider(HttpProvider):
    continues_prefill = True  # a final assistant turn is the start of the answer

    def __init__(self, config: ProviderConfig, context: ProviderContext, options: AnthropicOptions) -> None:
        super().__init__(config, context)
        self.options = options
        self._url = f"{config.base_url.rstrip('/')}/v1/messages"

    def prepare(self, request: pb.ChatCompletionRequest, target: Target, *, stream: bool) -> Prepared:
        body = build_body(request, target.model, self.options.default_max_tokens)
        if stream:
            body["stream"] = True
        return Prepared(target, orjson.dumps(body), stream)

    def url(self, prepared: Prepared, key: KeyConfig) -> str:
        return self._url

    def headers(self, prepared: Prepared, key: KeyConfig) -> dict[str, str]:
        return {"x-api-key": key.secret.value, "anthropic-version": self.options.version}

    def response_from(self, data: dict[str, Any], prepared: Prepared) -> pb.ChatCompletionResponse:
        return self.translated(
            prepared, "an Anthropic message", lambda: response_from(data, prepared.target.model)
        )

    def stream_decoder(self, prepared: Prepared) -> StreamTranslator:
        return StreamTranslator(prepared.target.model, self.name)

    def error_from(
        self, status: int, payload: object, headers: httpx.Headers, prepared: Prepared
    ) -> UpstreamError:
        return anthropic_error(status, payload, headers, provider=self.name, model=prepared.target.model)
