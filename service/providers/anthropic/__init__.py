"""Anthropic's Messages API, natively: requests, answers, stream events and errors translated
to and from the canonical (OpenAI-shaped) model.

- ``request.py`` / ``messages.py``: the request -> a Messages API body (and the 400s for what
  Anthropic cannot honour);
- ``response.py``: a Message -> a chat completion;
- ``stream.py``: stream events -> chunks;
- ``errors.py``: error bodies and ``error`` events -> UpstreamError;
- ``provider.py``: the provider itself (URL, headers, the hooks of ``HttpProvider``).
"""

from __future__ import annotations

from .provider import AnthropicOptions, AnthropicProvider

__all__ = ["AnthropicOptions", "AnthropicProvider"]
