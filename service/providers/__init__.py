"""Provider adapters: one narrow async class per upstream kind.

Every adapter has the same three methods (``chat``, ``stream_chat``, ``aclose``)
and is built by :func:`build_provider` from its config; nothing outside this
package asks which kind a provider is.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from service.providers.azure import AzureProvider
from service.providers.base import Provider, UpstreamRequest
from service.providers.openai import OpenAIProvider
from switchyard.config import ProviderConfig, TimeoutConfig

_FACTORIES: dict[str, Callable[..., Provider]] = {
    "azure": AzureProvider,
    "openai": OpenAIProvider,
}


def build_provider(
    config: ProviderConfig, timeouts: TimeoutConfig, transport: httpx.AsyncBaseTransport | None = None
) -> Provider:
    """``transport`` replaces the pooled aiohttp one (tests pass an ``httpx.MockTransport``)."""
    return _FACTORIES[config.kind](config, timeouts, transport)


__all__ = ["Provider", "UpstreamRequest", "build_provider"]
