"""The OpenAI-compatible family: one provider class (``provider.py``) configured by
CompatibleOptions (``options.py``), and the known services as presets of it (``presets.py``).

A new compatible service needs no code: kind ``openai_compatible`` with its base URL, auth
header and format, renames and field rules in config.
"""

from __future__ import annotations

from service.providers.compatible.options import CompatibleOptions
from service.providers.compatible.presets import PRESETS, Preset
from service.providers.compatible.provider import CompatibleProvider

__all__ = ["PRESETS", "CompatibleOptions", "CompatibleProvider", "Preset"]
