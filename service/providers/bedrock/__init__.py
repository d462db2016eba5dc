"""AWS Bedrock's Converse API, natively: requests, answers, stream events and errors translated
to and from the canonical (OpenAI-shaped) model.

- ``request.py`` / ``messages.py``: the request -> a Converse body (and the 400s for what
  Converse cannot honour);
- ``response.py``: a Converse answer -> a chat completion;
- ``eventstream.py``: ConverseStream's binary framing -> events (botocore's parser);
- ``stream.py``: events -> chunks;
- ``errors.py``: exception types -> UpstreamError;
- ``signing.py``: SigV4 (botocore's signer);
- ``provider.py``: the provider itself (URL, signed headers, the hooks of ``HttpProvider``).
"""

from __future__ import annotations

from .provider import DEFAULT_BASE_URL, KEY_SECRETS, BedrockOptions, BedrockProvider, check_config

__all__ = ["DEFAULT_BASE_URL", "KEY_SECRETS", "BedrockOptions", "BedrockProvider", "check_config"]
