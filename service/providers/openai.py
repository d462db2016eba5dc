"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, Groq…): base_url + /chat/completions."""

from __future__ import annotations

from service.providers.base import OpenAIWireProvider, UpstreamRequest
from switchyard.config import KeyConfig


class OpenAIProvider(OpenAIWireProvider):
    def url_for(self, request: UpstreamRequest) -> str:
        return f"{self.config.base_url}/chat/completions"

    def auth_headers(self, key: KeyConfig) -> dict[str, str]:
        return {"authorization": f"Bearer {key.secret.value}"}
