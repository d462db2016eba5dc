"""What makes one OpenAI-compatible upstream differ from another, as settings.

The same dataclass describes a config-only provider (kind ``openai_compatible``) and every
preset (``presets.py``): a preset is just a set of these values that a config section can
override key by key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf.descriptor import FieldDescriptor

from service.providers.compatible.rules import FieldRule
from switchyard.config import ConfigError
from switchyard.v1 import chat_pb2 as pb

KEY_PLACEHOLDER = "{key}"

# RFC 9110 token characters: what a header name may be made of.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_FIELD_NAME = re.compile(r"^[A-Za-z_]\w*$")
# Set by the provider itself on every request; a configured value would be overwritten.
_OWN_HEADERS = frozenset({"content-type", "accept"})


def _is_count(path: str) -> bool:
    """Is ``path`` (dotted, inside the contract's usage) one of its integer counts?"""
    message = pb.Usage.DESCRIPTOR
    *parents, leaf = path.split(".")
    for name in parents:
        found = message.fields_by_name.get(name)
        if found is None or found.message_type is None or found.is_repeated:
            return False
        message = found.message_type
    found = message.fields_by_name.get(leaf)
    return found is not None and found.type == FieldDescriptor.TYPE_INT64 and not found.is_repeated


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CompatibleOptions:
    # The header that carries the key; "" sends none (a local server without auth).
    auth_header: str = "authorization"
    # That header's value; {key} stands for the key's secret.
    auth_format: str = "Bearer {key}"
    # Appended to base_url.
    chat_path: str = "/chat/completions"
    # Appended to base_url for embeddings.
    embeddings_path: str = "/embeddings"
    # Sent with every request (attribution, API versions). Not for secrets: config only
    # resolves ${VAR} references in a key's value, and these are never redacted.
    headers: Mapping[str, str] = field(default_factory=_empty)
    # Request field -> the name this upstream knows it by (top-level fields).
    renames: Mapping[str, str] = field(default_factory=_empty)
    # Field rules (rules.py): a request breaking one is a 400 naming the field, never a silent drop.
    rejects: tuple[str, ...] = ()
    # The upstream's message key for reasoning text (e.g. reasoning_content): answers carry it as
    # the contract's `reasoning`, and a message's `reasoning` goes back under this name.
    reasoning_field: str = ""
    # A count at the top of the upstream's `usage` -> where the contract has it, a dotted path in
    # `usage` (citation_tokens -> completion_tokens_details.citation_tokens).
    usage_fields: Mapping[str, str] = field(default_factory=_empty)
    # False: the upstream reports usage at the end of every stream and refuses `stream_options`,
    # so it is not sent (the caller's include_usage is still honoured by the engine).
    stream_options: bool = True

    def check(self, path: str) -> None:
        """Raise ConfigError naming the setting that cannot work."""
        if self.auth_header:
            if not _HEADER_NAME.match(self.auth_header):
                raise ConfigError(f"{path}.auth_header", "must be an HTTP header name (or empty for none)")
            if self.auth_format.count(KEY_PLACEHOLDER) != 1:
                raise ConfigError(
                    f"{path}.auth_format", "must contain {key} once, where the key's secret goes"
                )
        for name in ("chat_path", "embeddings_path"):
            if not getattr(self, name).startswith("/"):
                raise ConfigError(f"{path}.{name}", "must start with /")
        for name, value in self.headers.items():
            if not _HEADER_NAME.match(name) or name.lower() in _OWN_HEADERS:
                raise ConfigError(f"{path}.headers.{name}", "is not a header name that can be set")
            if "\r" in value or "\n" in value:
                raise ConfigError(f"{path}.headers.{name}", "must be one line")
        targets: set[str] = set()
        for source, target in self.renames.items():
            if not _FIELD_NAME.match(source) or not _FIELD_NAME.match(target) or source == target:
                raise ConfigError(f"{path}.renames.{source}", "must map a field name to another field name")
            if target in targets or target in self.renames:
                raise ConfigError(f"{path}.renames.{source}", f"renames two fields to {target!r}")
            targets.add(target)
        for i, text in enumerate(self.rejects):
            try:
                FieldRule.parse(text)
            except ValueError as exc:
                raise ConfigError(f"{path}.rejects[{i}]", str(exc)) from None
        for source, target in self.usage_fields.items():
            if not _FIELD_NAME.match(source) or not _is_count(target):
                raise ConfigError(
                    f"{path}.usage_fields.{source}",
                    "must map a usage key to a token count of the contract's usage "
                    "(e.g. completion_tokens_details.reasoning_tokens)",
                )
        if self.reasoning_field and (
            not _FIELD_NAME.match(self.reasoning_field) or self.reasoning_field == "reasoning"
        ):
            raise ConfigError(f"{path}.reasoning_field", "must be a field name other than `reasoning`")
