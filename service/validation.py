"""Value checks on a chat request, done in the service so gRPC and REST callers get the same 400s.

Type checks happen earlier, where JSON becomes proto (``switchyard.codec``).
"""

from __future__ import annotations

from google.protobuf.message import Message

from service.errors import GatewayError, invalid_request
from switchyard.codec import MAX_JSON_DEPTH, json_text_depth_over
from switchyard.v1 import chat_pb2 as pb

REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")

_RANGES: tuple[tuple[str, float, float], ...] = (
    ("temperature", 0.0, 2.0),
    ("top_p", 0.0, 1.0),
    ("frequency_penalty", -2.0, 2.0),
    ("presence_penalty", -2.0, 2.0),
    ("top_logprobs", 0, 20),
)


def validate_request(request: pb.ChatCompletionRequest) -> None:
    """Raise a 400 GatewayError naming the first bad field."""
    if not request.messages:
        raise invalid_request("`messages` must be a non-empty array", "messages")
    for i, message in enumerate(request.messages):
        if not message.role:
            raise invalid_request("every message needs a `role`", f"messages[{i}].role")
        if message.extra_json:
            _check_json_text(message.extra_json, f"messages[{i}]")
    # Free-form JSON text from a gRPC caller (REST callers' was checked as it was parsed).
    # Counting brackets first keeps this to a few string scans per request.
    if request.extra_json:
        _check_json_text(request.extra_json, "body")
    if request.HasField("tool_choice_json"):
        _check_json_text(request.tool_choice_json, "tool_choice")
    for i, tool in enumerate(request.tools):
        if tool.function.HasField("parameters_json"):
            _check_json_text(tool.function.parameters_json, f"tools[{i}].function.parameters")
    schema = request.response_format.json_schema
    if schema.HasField("schema_json"):
        _check_json_text(schema.schema_json, "response_format.json_schema.schema")
    for name, low, high in _RANGES:
        if request.HasField(name):
            value = getattr(request, name)
            if not low <= value <= high:
                raise invalid_request(f"`{name}` must be between {low:g} and {high:g}, got {value:g}", name)
    if request.HasField("n") and request.n < 1:
        raise invalid_request(f"`n` must be at least 1, got {request.n}", "n")
    for name in ("max_tokens", "max_completion_tokens"):
        if request.HasField(name) and getattr(request, name) < 1:
            raise invalid_request(f"`{name}` must be at least 1", name)
    if request.HasField("reasoning_effort") and request.reasoning_effort not in REASONING_EFFORTS:
        raise invalid_request(
            f"`reasoning_effort` must be one of {', '.join(REASONING_EFFORTS)}", "reasoning_effort"
        )
    for name, value in request.logit_bias.values.items() if request.HasField("logit_bias") else ():
        if not -100 <= value <= 100:
            raise invalid_request(
                f"logit_bias values must be between -100 and 100 (token {name})", "logit_bias"
            )


def _check_json_text(text: str, param: str) -> None:
    problem = _json_problem(text)
    if problem is not None:
        raise invalid_request(f"`{param}` {problem}", param)


def _json_problem(text: str) -> str | None:
    """What is wrong with a free-form JSON text, if anything (only parsed when it may be deep)."""
    try:
        too_deep = json_text_depth_over(text)
    except ValueError:
        return "is not valid JSON"
    return f"is JSON nested deeper than {MAX_JSON_DEPTH} levels" if too_deep else None


def find_bad_json(message: Message, path: str = "") -> str | None:
    """The param of the first free-form JSON text in ``message`` that is invalid or too deep.

    For the error path only (it visits every field): when building the upstream body
    failed, this says which field to name in the 400.
    """
    for fd, value in message.ListFields():
        name = fd.name
        if name.endswith("_json"):
            param = (f"{path}.{name[:-5]}" if path else name[:-5]) if name != "extra_json" else path
            if _json_problem(value) is not None:
                return param or "body"
        elif fd.message_type is not None and not fd.message_type.GetOptions().map_entry:
            field_path = f"{path}.{name}" if path else name
            items = enumerate(value) if fd.is_repeated else ((None, value),)
            for i, item in items:
                found = find_bad_json(item, field_path if i is None else f"{field_path}[{i}]")
                if found is not None:
                    return found
    return None


__all__ = ["REASONING_EFFORTS", "GatewayError", "find_bad_json", "validate_request"]
