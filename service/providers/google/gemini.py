"""Gemini through Google AI Studio (the Gemini Developer API):
``POST {base_url}/v1beta/models/{model}:generateContent`` (``:streamGenerateContent?alt=sse`` for
streams), with the key in ``x-goog-api-key`` (never in the URL, where logs would keep it)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from service.providers.base import Prepared, ProviderContext
from switchyard.config import KeyConfig, ProviderConfig

from .request import SchemaDialect
from .wire import GeminiWire

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"


@dataclass(frozen=True, slots=True)
class GeminiOptions:
    # v1beta has every feature (thinking, JSON Schema, function-call ids); v1 is the stable subset.
    api_version: str = "v1beta"
    # How tool parameters and response schemas go out (see request.SchemaDialect).
    schemas: SchemaDialect = "openapi"


def model_path(model: str) -> str:
    """``gemini-2.5-flash`` -> ``models/gemini-2.5-flash``; a resource name (``tunedModels/x``,
    ``models/x``) stays as it is."""
    path = model if "/" in model else f"models/{model}"
    return "/".join(quote(segment, safe="@") for segment in path.split("/"))


def method(prepared: Prepared) -> str:
    return "streamGenerateContent?alt=sse" if prepared.stream else "generateContent"


class GeminiProvider(GeminiWire):
    def __init__(self, config: ProviderConfig, context: ProviderContext, options: GeminiOptions) -> None:
        super().__init__(config, context)
        self.options = options
        self.schemas = options.schemas
        self._base = f"{config.base_url.rstrip('/')}/{options.api_version}"

    def url(self, prepared: Prepared, key: KeyConfig) -> str:
        return f"{self._base}/{model_path(prepared.target.model)}:{method(prepared)}"

    def headers(self, prepared: Prepared, key: KeyConfig) -> dict[str, str]:
        return {"x-goog-api-key": key.secret.value}
