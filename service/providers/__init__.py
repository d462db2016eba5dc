"""Provider adapters: one per upstream dialect, behind the narrow seam in ``base.py``.

A provider turns the canonical request (``pb.ChatCompletionRequest``) into its own wire
format and its upstream's answers back into canonical responses and chunks. The registry
(``registry.py``) maps each provider kind to its class, its typed options and its key's
secrets; nothing outside this package asks which kind a provider is.
"""

from __future__ import annotations

from service.providers.base import HttpProvider, Prepared, Provider, ProviderContext, upstream_headers
from service.providers.registry import KINDS, build_provider, check

__all__ = [
    "KINDS",
    "HttpProvider",
    "Prepared",
    "Provider",
    "ProviderContext",
    "build_provider",
    "check",
    "upstream_headers",
]
