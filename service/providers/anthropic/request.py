"""The canonical request -> an Anthropic Messages API body.

What Anthropic cannot honour is refused here, as a 400 naming the field, so the caller learns
what to change instead of getting an upstream error (or, worse, a silently different answer).
The README's "Anthropic" section has the field-by-field table; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from service.errors import GatewayError, invalid_request
from service.providers.canonical import named_function, stop_sequences
from switchyard import codec
from switchyard.v1 import chat_pb2 as pb

from .messages import convert_messages

# reasoning_effort -> thinking.budget_tokens. Anthropic's floor is 1024; each step doubles
# (roughly) and `xhigh` leaves room for long proofs. `none` turns thinking off.
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
MIN_THINKING_BUDGET = 1024
# With thinking on, Anthropic takes top_p only from here up (and temperature only at 1).
MIN_TOP_P_WITH_THINKING = 0.95
# OpenAI service tiers Anthropic has an equivalent for.
SERVICE_TIERS = {"auto": "auto", "default": "standard_only"}
# OpenAI's tool_choice modes -> Anthropic's tool_choice types.
TOOL_CHOICE_MODES = {"auto": "auto", "none": "none", "required": "any"}
_EMPTY_SCHEMA = orjson.Fragment(b'{"type":"object","properties":{}}')


def build_body(request: pb.ChatCompletionRequest, model: str, default_max_tokens: int) -> dict[str, Any]:
    """The Messages API body (without ``stream``); raises a 400 GatewayError for what cannot be sent.

    Values may be ``orjson.Fragment`` (exact JSON text): serialise with orjson.
    """
    problem = next(_unsupported(request), None)
    if problem is not None:
        raise problem
    system, messages = convert_messages(request.messages)
    body: dict[str, Any] = {"model": model, "messages": messages}
    if system:
        body["system"] = system
    body["max_tokens"], thinking = _limits(request, default_max_tokens)
    if thinking is not None:
        body["thinking"] = thinking
        if thinking["type"] == "enabled":
            _check_thinking_compatible(request)
    if request.HasField("temperature"):
        body["temperature"] = request.temperature
    if request.HasField("top_p"):
        body["top_p"] = request.top_p
    stop = stop_sequences(request)
    if stop:
        body["stop_sequences"] = stop
    if request.HasField("user"):
        body["metadata"] = {"user_id": request.user}
    if request.HasField("service_tier"):
        body["service_tier"] = SERVICE_TIERS[request.service_tier]
    if request.tools:
        body["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(request.tools)]
        choice = _tool_choice(request)
        if choice is not None:
            body["tool_choice"] = choice
    if request.extra_json:
        # Last, so an Anthropic-native key the caller sets (top_k, thinking…) is the one sent.
        codec.merge_extra(body, request.extra_json)
    return body


def _unsupported(request: pb.ChatCompletionRequest) -> Iterator[GatewayError]:
    """Values with no Anthropic equivalent. Their neutral values (n=1, logprobs=false, zero
    penalties, empty logit_bias, response_format text) change nothing, so they are dropped."""
    if request.HasField("n") and request.n > 1:
        yield invalid_request("Anthropic returns one choice per request; `n` must be 1", "n")
    if request.logprobs:
        yield invalid_request("Anthropic does not return log probabilities", "logprobs")
    if request.top_logprobs:
        yield invalid_request("Anthropic does not return log probabilities", "top_logprobs")
    if request.logit_bias.values:
        yield invalid_request("Anthropic has no logit bias", "logit_bias")
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(request, name):
            yield invalid_request(f"Anthropic has no `{name}`; leave it unset or 0", name)
    if request.HasField("temperature") and request.temperature > 1:
        yield invalid_request(
            f"Anthropic's temperature goes from 0 to 1, got {request.temperature:g}", "temperature"
        )
    if request.response_format.type not in ("", "text"):
        yield invalid_request(
            "Anthropic has no JSON mode; describe the shape in the prompt or use a tool",
            "response_format",
        )
    if request.HasField("service_tier") and request.service_tier not in SERVICE_TIERS:
        yield invalid_request(
            f"Anthropic's service tiers are {' and '.join(SERVICE_TIERS)}, not {request.service_tier!r}",
            "service_tier",
        )


def _limits(request: pb.ChatCompletionRequest, default_max_tokens: int) -> tuple[int, dict[str, Any] | None]:
    """(max_tokens, thinking). Anthropic's max_tokens is required and counts thinking, like
    OpenAI's max_completion_tokens counts reasoning; the budget must stay below it."""
    field = next((f for f in ("max_completion_tokens", "max_tokens") if request.HasField(f)), None)
    asked: int | None = getattr(request, field) if field else None
    effort = request.reasoning_effort if request.HasField("reasoning_effort") else None
    if effort is None:
        return asked or default_max_tokens, None
    if effort == "none":
        return asked or default_max_tokens, {"type": "disabled"}
    budget = THINKING_BUDGETS.get(effort)
    if budget is None:
        raise invalid_request(
            f"reasoning_effort must be none or one of {', '.join(THINKING_BUDGETS)} for Anthropic",
            "reasoning_effort",
        )
    if asked is None:
        # The caller set no cap: the answer keeps the default room on top of the thinking.
        return budget + default_max_tokens, {"type": "enabled", "budget_tokens": budget}
    budget = min(budget, asked - 1)
    if budget < MIN_THINKING_BUDGET:
        raise invalid_request(
            f"reasoning_effort {effort!r} needs `{field}` above {MIN_THINKING_BUDGET} on Anthropic "
            f"(thinking takes at least {MIN_THINKING_BUDGET} tokens of it); raise it, "
            "or set reasoning_effort none",
            field,
        )
    return asked, {"type": "enabled", "budget_tokens": budget}


def _check_thinking_compatible(request: pb.ChatCompletionRequest) -> None:
    if request.HasField("temperature") and request.temperature != 1:
        raise invalid_request("with reasoning_effort, Anthropic takes temperature 1 or none", "temperature")
    if request.HasField("top_p") and request.top_p < MIN_TOP_P_WITH_THINKING:
        raise invalid_request(
            f"with reasoning_effort, Anthropic takes top_p from {MIN_TOP_P_WITH_THINKING} to 1", "top_p"
        )
    forced = request.tool_choice_mode == "required" or request.HasField("tool_choice_json")
    if request.tools and forced:
        raise invalid_request(
            "with reasoning_effort, Anthropic cannot force a tool call; use tool_choice auto", "tool_choice"
        )


def _tool(tool: pb.Tool, where: str) -> dict[str, Any]:
    if tool.type != "function":
        # Anthropic's own tools (web_search_…, bash_…) go through as the caller wrote them.
        native: dict[str, Any] = {"type": tool.type}
        if tool.extra_json:
            codec.merge_extra(native, tool.extra_json)
        return native
    if not tool.HasField("function") or not tool.function.name:
        raise invalid_request("a function tool needs `function.name`", f"{where}.function.name")
    function = tool.function
    out: dict[str, Any] = {"name": function.name}
    if function.HasField("description"):
        out["description"] = function.description
    # The schema's exact text: integers and key order as the caller wrote them.
    out["input_schema"] = (
        orjson.Fragment(function.parameters_json) if function.HasField("parameters_json") else _EMPTY_SCHEMA
    )
    if function.strict:
        out["strict"] = True
    for extra in (function.extra_json, tool.extra_json):
        if extra:
            codec.merge_extra(out, extra)  # e.g. cache_control on the last tool
    return out


def _tool_choice(request: pb.ChatCompletionRequest) -> dict[str, Any] | None:
    kind = request.WhichOneof("tool_choice")
    choice: dict[str, Any] | None
    if kind == "tool_choice_mode":
        mode = request.tool_choice_mode
        if mode not in TOOL_CHOICE_MODES:
            raise invalid_request(f"tool_choice must be auto, none or required, not {mode!r}", "tool_choice")
        choice = {"type": TOOL_CHOICE_MODES[mode]}
    elif kind == "tool_choice_json":
        choice = {"type": "tool", "name": named_function(request.tool_choice_json)}
    else:
        choice = None
    if request.HasField("parallel_tool_calls") and not request.parallel_tool_calls:
        if choice is None:
            choice = {"type": "auto"}
        if choice["type"] != "none":  # nothing to parallelise when no tool may be called
            choice["disable_parallel_tool_use"] = True
    return choice
