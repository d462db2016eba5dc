"""A generic proto -> JSON-ready dict, for messages off the hot path (the Admin API)."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message


def message_to_json(message: Message) -> dict[str, Any]:
    """Fields by proto name; unset optional fields left out; int64 kept as numbers (json_format
    would print them as strings)."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        repeated = field.is_repeated
        if not repeated and field.has_presence and not message.HasField(field.name):
            continue
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            values = field.message_type.fields_by_name["value"]
            out[field.name] = {
                k: message_to_json(v) if values.message_type is not None else v for k, v in value.items()
            }
        elif field.message_type is not None:
            out[field.name] = [message_to_json(v) for v in value] if repeated else message_to_json(value)
        else:
            out[field.name] = list(value) if repeated else value
    return out
