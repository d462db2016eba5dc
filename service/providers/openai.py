"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, Groq…): ``{base_url}/chat/completions``."""

from __future__ import annotations

from dataclasses import dataclass

from service.providers.base import Prepared, ProviderContext
from service.providers.openai_wire import OpenAIWire
from switchyard.config import KeyConfig, ProviderConfig


@dataclass(frozen=True, slots=True)
class OpenAIOptions:
    pass


class OpenAIProvider(OpenAIWire):
    def __init__(self, config: ProviderConfig, context: ProviderContext, options: OpenAIOptions) -> None:
        super().__init__(config, context)

    def url(self, prepared: Prepared, key: KeyConfig) -> str:
        return f"{self.config.base_url}/chat/completions"

    def headers(self, prepared: Prepared, key: KeyConfig) -> dict[str, str]:
        return {"authorization": f"Bearer {key.secret.value}"}
