"""Azure OpenAI: the deployment is in the URL, the api-version in the query, the key in a header.

Chat goes to ``/openai/deployments/{id}/chat/completions``, embeddings to ``…/{id}/embeddings``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from service.providers.base import Prepared, ProviderContext
from service.providers.embeddings import OpenAIEmbeddings
from switchyard.config import DEFAULT_AZURE_API_VERSION, KeyConfig, ProviderConfig


@dataclass(frozen=True, slots=True)
class AzureOptions:
    # Used when neither the key sets one; the caller's api-version comes after both.
    api_version: str | None = None
    # "api-key": the api-key header; "bearer": a static Entra ID token in Authorization.
    auth: Literal["api-key", "bearer"] = "api-key"


class AzureProvider(OpenAIEmbeddings):
    body_names_model = False

    def __init__(self, config: ProviderConfig, context: ProviderContext, options: AzureOptions) -> None:
        super().__init__(config, context)
        self._options = options

    def url(self, prepared: Prepared, key: KeyConfig) -> str:
        return self._deployment_url(prepared, key, "chat/completions")

    def embeddings_url(self, prepared: Prepared, key: KeyConfig) -> str:
        return self._deployment_url(prepared, key, "embeddings")

    def _deployment_url(self, prepared: Prepared, key: KeyConfig, operation: str) -> str:
        # Key config, then provider config, then what the caller asked for.
        version = (
            key.api_version
            or self._options.api_version
            or prepared.caller_api_version
            or DEFAULT_AZURE_API_VERSION
        )
        deployment = quote(prepared.target.model, safe="")
        base = self.config.base_url
        return f"{base}/openai/deployments/{deployment}/{operation}?api-version={quote(version)}"

    def headers(self, prepared: Prepared, key: KeyConfig) -> dict[str, str]:
        if self._options.auth == "bearer":
            return {"authorization": f"Bearer {key.secret.value}"}
        return {"api-key": key.secret.value}
