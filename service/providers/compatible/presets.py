"""The known OpenAI-compatible services, as data: a default base URL and CompatibleOptions each.

Every row was checked against the provider's public documentation where it says so in
``docs/providers/openai-compatible.md`` (the table there says which rule is verified and which
is best knowledge). What goes in a row:

- ``renames``: a field the caller sends under OpenAI's name and the upstream knows by another;
  renamed silently.
- ``rejects``: a field the upstream ignores (a silent drop) or refuses; refused here first, with a
  400 naming the field. Model-specific refusals (xAI's reasoning models and ``stop``) are left to
  the upstream, which refuses them itself.
- ``reasoning_field``: the message key the upstream's reasoning text comes under.
- ``usage_fields``: counts the upstream puts at the top of ``usage`` that the contract keeps in
  its details (Perplexity's citation tokens, DeepSeek's cache hits, which pricing needs).
- ``stream_options=False``: the upstream refuses ``stream_options`` and always sends usage.

A config section of one of these kinds may set any option itself; it replaces the preset's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from service.providers.compatible.options import CompatibleOptions


@dataclass(frozen=True, slots=True)
class Preset:
    base_url: str
    options: CompatibleOptions


# OpenAI's newer name for the output limit; most compatible servers know only the older one.
_MAX_TOKENS: Mapping[str, str] = MappingProxyType({"max_completion_tokens": "max_tokens"})

PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        "mistral": Preset(
            "https://api.mistral.ai/v1",
            CompatibleOptions(
                renames=MappingProxyType({**_MAX_TOKENS, "seed": "random_seed"}),
                rejects=("logit_bias", "logprobs", "top_logprobs"),
                stream_options=False,
            ),
        ),
        "groq": Preset(
            "https://api.groq.com/openai/v1",
            CompatibleOptions(rejects=("logprobs", "logit_bias", "top_logprobs", "messages[].name", "n!=1")),
        ),
        "deepseek": Preset(
            "https://api.deepseek.com",
            CompatibleOptions(
                renames=_MAX_TOKENS,
                rejects=(
                    "response_format.type=json_schema",
                    "n!=1",
                    "logit_bias",
                    "seed",
                    "parallel_tool_calls=false",
                ),
                reasoning_field="reasoning_content",
                # Cache hits are reported beside the prompt count, not inside its details.
                usage_fields=MappingProxyType(
                    {"prompt_cache_hit_tokens": "prompt_tokens_details.cached_tokens"}
                ),
            ),
        ),
        "together": Preset("https://api.together.xyz/v1", CompatibleOptions(renames=_MAX_TOKENS)),
        "fireworks": Preset(
            "https://api.fireworks.ai/inference/v1",
            CompatibleOptions(renames=_MAX_TOKENS, reasoning_field="reasoning_content"),
        ),
        # Reasoning arrives as `reasoning`/`reasoning_details` already: the contract's own names.
        "openrouter": Preset("https://openrouter.ai/api/v1", CompatibleOptions()),
        # search_results, citations and videos are the contract's own top-level fields.
        "perplexity": Preset(
            "https://api.perplexity.ai",
            CompatibleOptions(
                renames=_MAX_TOKENS,
                rejects=("logit_bias", "seed", "user", "response_format.type=json_object"),
                usage_fields=MappingProxyType(
                    {
                        name: f"completion_tokens_details.{name}"
                        for name in ("citation_tokens", "num_search_queries", "reasoning_tokens")
                    }
                ),
                stream_options=False,
            ),
        ),
        "xai": Preset("https://api.x.ai/v1", CompatibleOptions(reasoning_field="reasoning_content")),
        "ollama": Preset(
            "http://localhost:11434/v1",
            CompatibleOptions(
                renames=_MAX_TOKENS, rejects=("tool_choice!=auto", "logit_bias", "user", "n!=1")
            ),
        ),
        "vllm": Preset(
            "http://localhost:8000/v1",
            CompatibleOptions(
                rejects=("user", "parallel_tool_calls=false"), reasoning_field="reasoning_content"
            ),
        ),
    }
)
