"""Azure OpenAI: the deployment is in the URL, the api-version in the query."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from service.providers.base import OpenAIWireProvider, UpstreamRequest
from switchyard.config import DEFAULT_AZURE_API_VERSION, KeyConfig


class AzureProvider(OpenAIWireProvider):
    def url_for(self, request: UpstreamRequest) -> str:
        # Key config, then provider config, then what the caller asked for.
        version = (
            request.key.api_version
            or self.config.api_version
            or request.caller_api_version
            or DEFAULT_AZURE_API_VERSION
        )
        deployment = quote(request.model, safe="")
        base = self.config.base_url
        return f"{base}/openai/deployments/{deployment}/chat/completions?api-version={quote(version)}"

    def auth_headers(self, key: KeyConfig) -> dict[str, str]:
        if self.config.auth == "bearer":
            return {"authorization": f"Bearer {key.secret.value}"}
        return {"api-key": key.secret.value}

    def prepare_body(self, body: dict[str, Any], model: str) -> None:
        # Azure routes by the URL and ignores `model`; only keep it if the caller sent one.
        if "model" in body:
            body["model"] = model
