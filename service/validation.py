"""Value checks on a chat request, done in the service so gRPC and REST callers get the same 400s.

Type checks happen earlier, where JSON becomes proto (``switchyard.codec``).
"""

from __future__ import annotations

from service.errors import GatewayError, invalid_request
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


__all__ = ["REASONING_EFFORTS", "GatewayError", "validate_request"]
