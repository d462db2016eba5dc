"""Google's generative APIs, natively: Gemini through AI Studio (kind ``gemini``) and Vertex AI
(kind ``vertex``: Gemini, and Claude through ``publishers/anthropic``).

- ``request.py`` / ``contents.py``: the request -> a generateContent body (and the 400s for what
  Gemini cannot honour);
- ``response.py``: a GenerateContentResponse -> a chat completion;
- ``stream.py``: ``streamGenerateContent?alt=sse`` events -> chunks;
- ``errors.py``: Google's error bodies, and prompts blocked by safety, -> UpstreamError;
- ``wire.py``: the ``HttpProvider`` hooks both kinds share;
- ``gemini.py``: AI Studio (URL, API key);
- ``vertex.py`` / ``auth.py``: Vertex AI (URL, publishers, the service account's OAuth token).
"""

from __future__ import annotations

from .gemini import DEFAULT_BASE_URL as GEMINI_BASE_URL
from .gemini import GeminiOptions, GeminiProvider
from .vertex import VertexOptions, VertexProvider
from .vertex import default_base_url as vertex_base_url

__all__ = [
    "GEMINI_BASE_URL",
    "GeminiOptions",
    "GeminiProvider",
    "VertexOptions",
    "VertexProvider",
    "vertex_base_url",
]
