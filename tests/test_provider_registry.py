"""The provider registry: a provider section is checked against its kind before anything opens."""

from __future__ import annotations

from typing import Any

import pytest

from service.providers import KINDS, ProviderContext, build_provider, check
from service.providers.anthropic import AnthropicOptions
from service.providers.azure import AzureOptions
from switchyard.config import ConfigError, parse_config


def _config(section: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    return parse_config({"providers": {"p": section}, "routing": {"default_provider": "p"}}, env=env or {})


def _providers(section: dict[str, Any]) -> Any:
    return _config(section).providers


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ({"kind": "nope", "base_url": "http://x"}, "providers.p.kind"),
        ({"kind": "azure"}, "providers.p.base_url"),
        ({"kind": "azure", "base_url": "http://x", "auth": "basic"}, "providers.p.auth"),
        ({"kind": "azure", "base_url": "http://x", "version": "1"}, "providers.p.version"),
        ({"kind": "anthropic", "default_max_tokens": "many"}, "providers.p.default_max_tokens"),
        ({"kind": "anthropic", "default_max_tokens": True}, "providers.p.default_max_tokens"),
        ({"kind": "vertex", "location": "us-central1"}, "providers.p.project"),
        ({"kind": "vertex", "project": "p", "location": ""}, "providers.p.location"),
        ({"kind": "gemini", "schemas": "xml"}, "providers.p.schemas"),
        (
            {"kind": "openai", "keys": [{"value": "k", "session_token": "t"}]},
            "providers.p.keys[0].session_token",
        ),
        # Lists and mappings in options: the index or key of the bad item is named.
        ({"kind": "openai_compatible", "base_url": "http://x", "rejects": "n"}, "providers.p.rejects"),
        (
            {"kind": "openai_compatible", "base_url": "http://x", "rejects": ["n", {}]},
            "providers.p.rejects[1]",
        ),
        ({"kind": "openai_compatible", "base_url": "http://x", "renames": ["seed"]}, "providers.p.renames"),
        (
            {"kind": "openai_compatible", "base_url": "http://x", "renames": {1: "seed"}},
            "providers.p.renames",
        ),
        ({"kind": "deepseek", "renames": {"seed": ["x"]}}, "providers.p.renames.seed"),
        ({"kind": "openai_compatible"}, "providers.p.base_url"),
    ],
)
def test_a_bad_provider_section_names_the_key(section: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check(_providers(section))
    assert caught.value.path == path


def test_every_kind_builds_with_typed_options_and_its_default_base_url() -> None:
    assert set(KINDS) >= {"azure", "openai", "anthropic", "gemini", "vertex"}
    azure = build_provider(
        _providers({"kind": "azure", "base_url": "http://x", "auth": "bearer"})["p"], ProviderContext()
    )
    assert azure._options == AzureOptions(auth="bearer")  # type: ignore[attr-defined]
    anthropic = build_provider(
        _providers({"kind": "anthropic", "default_max_tokens": "2048", "version": "2023-06-01"})["p"],
        ProviderContext(),
    )
    assert anthropic.config.base_url == "https://api.anthropic.com"
    assert anthropic.options == AnthropicOptions(version="2023-06-01", default_max_tokens=2048)  # type: ignore[attr-defined]
    assert build_provider(_providers({"kind": "openai"})["p"], ProviderContext()).config.base_url == (
        "https://api.openai.com/v1"
    )
    assert build_provider(_providers({"kind": "gemini"})["p"], ProviderContext()).config.base_url == (
        "https://generativelanguage.googleapis.com"
    )
    # A default made from the options: Vertex AI's host is its location's.
    vertex = _providers({"kind": "vertex", "project": "p", "location": "asia-northeast1"})["p"]
    assert build_provider(vertex, ProviderContext()).config.base_url == (
        "https://asia-northeast1-aiplatform.googleapis.com"
    )


def test_a_keys_further_secrets_are_resolved_and_redacted() -> None:
    config = _config({"kind": "openai", "keys": [{"value": "k", "extra": "${S}"}]}, {"S": "s3cret-value"})
    (key,) = config.providers["p"].keys
    assert key.secrets["extra"].value == "s3cret-value"
    assert "s3cret-value" not in repr(key) and "s3cret-value" not in str(config.redacted())


def test_list_and_mapping_options_are_typed_and_read_only() -> None:
    provider = build_provider(
        _providers(
            {
                "kind": "openai_compatible",
                "base_url": "http://x",
                "rejects": ["n!=1", "user"],
                "renames": {"seed": "random_seed"},
            }
        )["p"],
        ProviderContext(),
    )
    options = provider.options  # type: ignore[attr-defined]
    assert options.rejects == ("n!=1", "user")
    assert dict(options.renames) == {"seed": "random_seed"}
    with pytest.raises(TypeError):
        options.renames["seed"] = "other"


def test_a_preset_is_the_start_and_each_setting_given_replaces_its_own() -> None:
    deepseek = build_provider(_providers({"kind": "deepseek", "rejects": ["user"]})["p"], ProviderContext())
    options = deepseek.options  # type: ignore[attr-defined]
    assert options.rejects == ("user",)
    assert options.reasoning_field == "reasoning_content"  # not given: the preset's
    assert deepseek.config.base_url == "https://api.deepseek.com"
