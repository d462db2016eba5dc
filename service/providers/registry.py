"""The one registry of provider kinds: each kind's class, its typed options and its key's secrets.

Adding a provider kind is one entry here (and its module): the config file's
``providers.<name>`` section is checked against it at start (``check``), and the service
builds providers from it (``build_provider``). Nothing else asks which kind a provider is.

The config loader (``switchyard/config.py``, the bottom package) keeps a kind's own settings
as a plain mapping (``ProviderConfig.options``) and a key's extra secrets as ``KeyConfig.secrets``;
this module turns them into the kind's typed options and checks the key's secrets, with errors
that name the config key, before anything is opened.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import service.providers.bedrock as bedrock
from service.providers.anthropic import AnthropicOptions, AnthropicProvider
from service.providers.azure import AzureOptions, AzureProvider
from service.providers.base import Provider, ProviderContext
from service.providers.compatible import PRESETS, CompatibleOptions, CompatibleProvider
from service.providers.google import (
    GEMINI_BASE_URL,
    GeminiOptions,
    GeminiProvider,
    VertexOptions,
    VertexProvider,
    vertex_base_url,
)
from service.providers.openai import OpenAIOptions, OpenAIProvider
from switchyard.config import ConfigError, ProviderConfig


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    # (config, context, typed options) -> the provider
    factory: Callable[[ProviderConfig, ProviderContext, Any], Provider]
    options: type[Any]  # a frozen dataclass of the kind's own settings
    # Secrets a key may carry besides its `value` (Bedrock: access key, secret, session token).
    key_secrets: tuple[str, ...] = ()
    # Used when the config gives no base_url ("" means the config must give one); a function
    # makes it from the kind's typed options (Vertex AI's host depends on its location).
    default_base_url: str | Callable[[Any], str] = ""
    # The options a section starts from (a preset's); the section's own settings replace them
    # one by one. None: the options dataclass's defaults.
    defaults: Any = None
    # Checks that need the options and the keys together (Bedrock: every key has a region);
    # raises ConfigError naming the key.
    check: Callable[[ProviderConfig, Any], None] | None = None


KINDS: Mapping[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("azure", AzureProvider, AzureOptions),
        Kind("openai", OpenAIProvider, OpenAIOptions, default_base_url="https://api.openai.com/v1"),
        Kind("anthropic", AnthropicProvider, AnthropicOptions, default_base_url="https://api.anthropic.com"),
        # Any OpenAI-compatible server described by config alone (auth header, renames, rejections).
        Kind("openai_compatible", CompatibleProvider, CompatibleOptions),
        # The known compatible services: the same class, started from a preset's options.
        *(
            Kind(name, CompatibleProvider, CompatibleOptions, default_base_url=p.base_url, defaults=p.options)
            for name, p in PRESETS.items()
        ),
        Kind(
            "bedrock",
            bedrock.BedrockProvider,
            bedrock.BedrockOptions,
            key_secrets=bedrock.KEY_SECRETS,
            default_base_url=bedrock.DEFAULT_BASE_URL,
            check=bedrock.check_config,
        ),
        Kind("gemini", GeminiProvider, GeminiOptions, default_base_url=GEMINI_BASE_URL),
        Kind("vertex", VertexProvider, VertexOptions, default_base_url=vertex_base_url),
    )
}


def check(providers: Mapping[str, ProviderConfig]) -> None:
    """Raise ConfigError (naming the key) for any provider the registry cannot build."""
    for config in providers.values():
        _resolve(config)


def build_provider(config: ProviderConfig, context: ProviderContext) -> Provider:
    kind, config, options = _resolve(config)
    return kind.factory(config, context, options)


def _resolve(config: ProviderConfig) -> tuple[Kind, ProviderConfig, Any]:
    path = f"providers.{config.name}"
    kind = KINDS.get(config.kind)
    if kind is None:
        raise ConfigError(
            f"{path}.kind", f"unknown provider kind {config.kind!r} (known: {', '.join(KINDS)})"
        )
    options = _options(kind.options, config.options, path, kind.name, kind.defaults)
    if not config.base_url:
        default = kind.default_base_url
        if not default:
            raise ConfigError(f"{path}.base_url", "is required")
        base_url = default if isinstance(default, str) else default(options)
        config = dataclasses.replace(config, base_url=base_url)
    for i, key in enumerate(config.keys):
        unknown = sorted(set(key.secrets) - set(kind.key_secrets))
        if unknown:
            raise ConfigError(
                f"{path}.keys[{i}].{unknown[0]}", f"is not a key setting of provider kind {kind.name!r}"
            )
    if kind.check is not None:
        kind.check(config, options)
    return kind, config, options


def _options(cls: type[Any], raw: Mapping[str, Any], path: str, kind: str, defaults: Any = None) -> Any:
    """The kind's options dataclass from the raw mapping, checking names and types.

    An options class may also define ``check(path)``, raising ConfigError for what types alone
    cannot say (a template missing its placeholder); it runs on the finished options."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise ConfigError(
                f"{path}.{name}", f"is not a setting of this provider kind (its settings: {known})"
            )
        values[name] = _coerce(value, hints[name], f"{path}.{name}")
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and defaults is None and values.get(f.name) in (None, ""):
            raise ConfigError(f"{path}.{f.name}", f"is required for provider kind {kind!r}")
    options = cls(**values) if defaults is None else dataclasses.replace(defaults, **values)
    check = getattr(options, "check", None)
    if check is not None:
        check(path)
    return options


def _coerce(value: Any, hint: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(path, f"must be one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = (a for a in args if a is not type(None))
        return _coerce(value, hint, path)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(path, "must be true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        raise ConfigError(path, "must be a whole number")
    if hint is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(path, "must be a number") from None
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(path, "must be a string")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, "must be a list")
        return tuple(_coerce(item, args[0], f"{path}[{i}]") for i, item in enumerate(value))
    if origin in (dict, Mapping) and args and args[0] is str:
        if not isinstance(value, Mapping):
            raise ConfigError(path, "must be a mapping")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(path, f"has a key that is not a string: {key!r}")
            out[key] = _coerce(item, args[1], f"{path}.{key}")
        # Read-only, so a frozen options dataclass stays frozen all the way down.
        return types.MappingProxyType(out)
    raise TypeError(f"{path}: no config conversion for {hint!r}")  # a bug in an options dataclass
