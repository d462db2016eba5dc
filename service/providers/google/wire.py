"""Gemini's wire format behind the provider seam: what AI Studio and Vertex AI share.

The body, the answers, the stream and the errors are the same on both; ``gemini.py`` and
``vertex.py`` add only the URL and the auth (as ``azure.py`` and ``openai.py`` do over
``openai_wire.py``).
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from service.errors import UpstreamError
from service.providers.base import HttpProvider, Prepared, StreamDecoder
from service.routing import Target
from switchyard.v1 import chat_pb2 as pb

from .errors import google_error
from .request import SchemaDialect, build_body
from .response import response_from
from .stream import GeminiStream


class GeminiWire(HttpProvider):
    schemas: SchemaDialect = "openapi"

    def prepare(self, request: pb.ChatCompletionRequest, target: Target, *, stream: bool) -> Prepared:
        body = build_body(request, target.model, self.schemas)
        return Prepared(target, orjson.dumps(body), stream)

    def response_from(self, data: dict[str, Any], prepared: Prepared) -> pb.ChatCompletionResponse:
        model = prepared.target.model
        return self.translated(
            prepared,
            "a Gemini GenerateContentResponse",
            lambda: response_from(data, provider=self.name, model=model),
        )

    def stream_decoder(self, prepared: Prepared) -> StreamDecoder:
        return GeminiStream(prepared.target.model, self.name)

    def error_from(
        self, status: int, payload: object, headers: httpx.Headers, prepared: Prepared
    ) -> UpstreamError:
        return google_error(status, payload, headers, provider=self.name, model=prepared.target.model)
