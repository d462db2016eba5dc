"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, Groq…): ``{base_url}/chat/completions`` and
``{base_url}/embeddings``."""

from __future__ import annotations

from dataclasses import dataclass

from service.providers.base import Prepared, ProviderContext
from service.providers.embeddings import EMBEDDINGS_PATH, OpenAIEmbeddings
from switchyard.config import KeyConfig, ProviderConfig


@dataclass(frozen=True, slots=True)
class OpenAIOptions:
    pass


class OpenAIProvider(OpenAIEmbeddings):
    def __init__(self, config: ProviderConfig, context: ProviderContext, options: OpenAIOptions) -> None:
        super().__init__(config, context)

    def url(self, prepared: Prepared, key: KeyConfig) -> str:
        return f"{self.config.base_url}/chat/completions"

    def embeddings_url(self, prepared: Prepared, key: KeyConfig) -> str:
        return f"{self.config.base_url}{EMBEDDINGS_PATH}"

    def headers(self, prepared: Prepared, key: KeyConfig) -> dict[str, str]:
        return {"authorization": f"Bearer {key.secret.value}"}
