"""Vertex AI: Gemini (``publishers/google``) and Claude (``publishers/anthropic``) in a Google Cloud
project, with a service account's OAuth token.

- Gemini: ``POST {base}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}
  :generateContent`` (``:streamGenerateContent?alt=sse``), the body and answers of ``wire.py``;
- Claude: ``…/publishers/anthropic/models/{model}:rawPredict`` (``:streamRawPredict``), Anthropic's
  Messages body (without ``model``, with Vertex's ``anthropic_version``) and answers, translated by
  ``service/providers/anthropic/``.

A target's model says which: ``anthropic/<model>`` or ``google/<model>``, or without a publisher,
Claude for ``claude*`` names and Gemini for the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from service.errors import UpstreamError, invalid_request
from service.providers.anthropic.errors import anthropic_error
from service.providers.anthropic.request import build_body as anthropic_body
from service.providers.anthropic.response import response_from as anthropic_response
from service.providers.anthropic.stream import StreamTranslator
from service.providers.base import Prepared, ProviderContext, StreamDecoder
from service.routing import Target
from switchyard.config import ConfigError, KeyConfig, ProviderConfig, Secret
from switchyard.v1 import chat_pb2 as pb

from .auth import ServiceAccountToken, load_service_account
from .errors import is_google_error
from .gemini import method as gemini_method
from .request import SchemaDialect, build_body
from .wire import GeminiWire

# Google's multi-region endpoints have their own host form.
MULTI_REGIONS = frozenset({"us", "eu"})
PUBLISHERS = ("google", "anthropic")


@dataclass(frozen=True, slots=True)
class VertexOptions:
    project: str
    # A region (us-central1, europe-west4…), a multi-region (us, eu) or global.
    location: str
    api_version: str = "v1"
    # How tool parameters and response schemas go out to Gemini (see request.SchemaDialect).
    schemas: SchemaDialect = "openapi"
    # Claude on Vertex: the API version goes in the body, and max_tokens is required.
    anthropic_version: str = "vertex-2023-10-16"
    anthropic_default_max_tokens: int = 4096
    # A token is replaced this long before it expires.
    token_refresh_margin_s: float = 300.0


def default_base_url(options: VertexOptions) -> str:
    """The endpoint of the options' location (the registry's default when no base_url is set)."""
    location = options.location
    if location == "global":
        return "https://aiplatform.googleapis.com"
    if location in MULTI_REGIONS:
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def publisher_of(model: str) -> tuple[str, str]:
    """(publisher, model id) of a target's model."""
    publisher, slash, name = model.partition("/")
    if slash:
        return publisher, name
    return ("anthropic" if model.startswith("claude") else "google"), model


class VertexProvider(GeminiWire):
    def __init__(self, config: ProviderConfig, context: ProviderContext, options: VertexOptions) -> None:
        super().__init__(config, context)
        self.options = options
        self.schemas = options.schemas
        self._connect_timeout_s = context.timeouts.connect_s
        # By the key's value (its JSON or file path): the engine hands over the config's keys.
        self._tokens: dict[str, ServiceAccountToken] = {}
        for i, key in enumerate(config.keys):
            self._token_source(key, f"providers.{config.name}.keys[{i}].value")
        project, location = quote(options.project, safe=""), quote(options.location, safe="")
        self._base = (
            f"{config.base_url.rstrip('/')}/{options.api_version}"
            f"/projects/{project}/locations/{location}/publishers"
        )

    def accepts_prefill(self, target: Target) -> bool:
        own = self.config.assistant_prefill  # Claude on Vertex continues one, as on Anthropic's API
        return publisher_of(target.model)[0] == "anthropic" if own is None else own

    # -- the request

    def prepare(self, request: pb.ChatCompletionRequest, target: Target, *, stream: bool) -> Prepared:
        publisher, model = publisher_of(target.model)
        if publisher == "google":
            body = build_body(request, model, self.schemas)
        elif publisher == "anthropic":
            body = anthropic_body(request, model, self.options.anthropic_default_max_tokens)
            del body["model"]  # Vertex names the model in the URL
            body["anthropic_version"] = self.options.anthropic_version
            if stream:
                body["stream"] = True
        else:
            raise invalid_request(
                f"Vertex AI is reached for the publishers {' and '.join(PUBLISHERS)}, not {publisher!r}",
                "model",
            )
        return Prepared(target, orjson.dumps(body), stream, extra={"publisher": publisher, "model": model})

    def url(self, prepared: Prepared, key: KeyConfig) -> str:
        publisher = prepared.extra["publisher"]
        if publisher == "anthropic":
            method = "streamRawPredict" if prepared.stream else "rawPredict"
        else:
            method = gemini_method(prepared)
        return f"{self._base}/{publisher}/models/{quote(prepared.extra['model'], safe='@')}:{method}"

    def headers(self, prepared: Prepared, key: KeyConfig) -> dict[str, str]:
        # `key` is the attempt's key with the access token as its secret (see send/stream).
        return {"authorization": f"Bearer {key.secret.value}"}

    # -- the answers

    def response_from(self, data: dict[str, Any], prepared: Prepared) -> pb.ChatCompletionResponse:
        if prepared.extra["publisher"] != "anthropic":
            return super().response_from(data, prepared)
        model = prepared.target.model
        return self.translated(prepared, "an Anthropic message", lambda: anthropic_response(data, model))

    def stream_decoder(self, prepared: Prepared) -> StreamDecoder:
        if prepared.extra["publisher"] == "anthropic":
            return StreamTranslator(prepared.target.model, self.name)
        return super().stream_decoder(prepared)

    def error_from(
        self, status: int, payload: object, headers: httpx.Headers, prepared: Prepared
    ) -> UpstreamError:
        # Claude's own errors (overloaded…) come in Anthropic's shape, the platform's in Google's.
        if prepared.extra["publisher"] == "anthropic" and not is_google_error(payload):
            return anthropic_error(status, payload, headers, provider=self.name, model=prepared.target.model)
        return super().error_from(status, payload, headers, prepared)

    # -- the token: fetched before the shared HTTP work, which builds headers synchronously

    async def send(self, prepared: Prepared, key: KeyConfig) -> pb.ChatCompletionResponse:
        source = self._token_source(key)
        token = await source.get(provider=self.name, model=prepared.target.model)
        try:
            return await super().send(prepared, _bearer(key, token))
        except UpstreamError as err:
            if err.status == 401:
                source.invalidate(token)
            raise

    async def stream(self, prepared: Prepared, key: KeyConfig) -> AsyncIterator[pb.ChatCompletionChunk]:
        source = self._token_source(key)
        token = await source.get(provider=self.name, model=prepared.target.model)
        chunks = super().stream(prepared, _bearer(key, token))
        try:
            async for chunk in chunks:
                yield chunk
        except UpstreamError as err:
            if err.status == 401:
                source.invalidate(token)
            raise
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        for source in self._tokens.values():
            source.close()
        await super().aclose()

    def _token_source(self, key: KeyConfig, path: str = "key.value") -> ServiceAccountToken:
        value = key.secret.value
        source = self._tokens.get(value)
        if source is None:
            info = load_service_account(value, path)
            try:
                source = ServiceAccountToken(
                    info,
                    connect_timeout_s=self._connect_timeout_s,
                    margin_s=self.options.token_refresh_margin_s,
                )
            except ValueError:
                raise ConfigError(path, "the service-account key's private_key is not a usable key") from None
            self._tokens[value] = source
        return source


def _bearer(key: KeyConfig, token: str) -> KeyConfig:
    return dataclasses.replace(key, secret=Secret(token))
