"""The canonical request -> a Converse (and ConverseStream) body.

The model id goes in the URL, not the body. What Converse cannot honour is refused here, as a
400 naming the field, so the caller learns what to change instead of getting an upstream error
(or, worse, a silently different answer). ``docs/providers/bedrock.md`` has the field-by-field
table; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from service.errors import GatewayError, invalid_request
from service.providers.canonical import named_function, stop_sequences
from switchyard import codec
from switchyard.v1 import chat_pb2 as pb

from .messages import cache_point, convert_messages, has_tool_blocks

# Converse's own top-level keys a caller may set as extra body keys; every other extra key is
# the model's own (top_k, thinking…) and goes in additionalModelRequestFields.
CONVERSE_KEYS = frozenset(
    {
        "guardrailConfig",
        "performanceConfig",
        "promptVariables",
        "additionalModelResponseFieldPaths",
        "requestMetadata",
        "outputConfig",
        "serviceTier",
    }
)
# What this module builds from the chat-completions fields; set those fields instead.
_BUILT_KEYS = {"messages", "system", "inferenceConfig", "toolConfig"}
# OpenAI service tiers with a Converse equivalent ("auto" is Converse's default: nothing to send).
SERVICE_TIERS = {"default": "default", "flex": "flex", "priority": "priority"}
_EMPTY_SCHEMA = orjson.Fragment(b'{"type":"object","properties":{}}')


def build_body(request: pb.ChatCompletionRequest) -> dict[str, Any]:
    """The Converse body; raises a 400 GatewayError for what cannot be sent.

    Values may be ``orjson.Fragment`` (exact JSON text): serialise with orjson.
    """
    problem = next(_unsupported(request), None)
    if problem is not None:
        raise problem
    system, messages = convert_messages(request.messages)
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    inference = _inference(request)
    if inference:
        body["inferenceConfig"] = inference
    tools = _tool_config(request, has_tool_blocks(messages))
    if tools is not None:
        body["toolConfig"] = tools
    if request.HasField("user"):
        body["requestMetadata"] = {"user": request.user}
    if request.HasField("service_tier") and request.service_tier in SERVICE_TIERS:
        body["serviceTier"] = {"type": SERVICE_TIERS[request.service_tier]}
    if request.response_format.type == "json_schema":
        body["outputConfig"] = {"textFormat": _json_schema(request.response_format)}
    if request.extra_json:
        _add_extra(body, request.extra_json)
    return body


def _unsupported(request: pb.ChatCompletionRequest) -> Iterator[GatewayError]:
    """Values with no Converse equivalent. Their neutral values (n=1, logprobs=false, zero
    penalties, empty logit_bias, response_format text, parallel_tool_calls true) change nothing."""
    if request.HasField("n") and request.n > 1:
        yield invalid_request("Bedrock returns one choice per request; `n` must be 1", "n")
    if request.logprobs:
        yield invalid_request("Bedrock's Converse API does not return log probabilities", "logprobs")
    if request.top_logprobs:
        yield invalid_request("Bedrock's Converse API does not return log probabilities", "top_logprobs")
    if request.logit_bias.values:
        yield invalid_request("Bedrock's Converse API has no logit bias", "logit_bias")
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(request, name):
            yield invalid_request(f"Bedrock's Converse API has no `{name}`; leave it unset or 0", name)
    if request.HasField("seed"):
        yield invalid_request(
            "Bedrock's Converse API has no seed; for a model that takes one, send it in "
            '"additionalModelRequestFields" under the model\'s own name',
            "seed",
        )
    if request.response_format.type == "json_object":
        yield invalid_request(
            "Bedrock has no JSON mode without a schema; use response_format json_schema", "response_format"
        )
    elif request.response_format.type not in ("", "text", "json_schema"):
        yield invalid_request(
            f"unknown response_format type {request.response_format.type!r}", "response_format.type"
        )
    if request.HasField("reasoning_effort") and request.reasoning_effort != "none":
        yield invalid_request(
            "Bedrock's Converse API has no reasoning_effort: reasoning is each model's own setting; send it "
            'as an extra body field, e.g. "thinking": {"type": "enabled", "budget_tokens": 2048} for Claude',
            "reasoning_effort",
        )
    if request.HasField("service_tier") and request.service_tier not in (*SERVICE_TIERS, "auto"):
        yield invalid_request(
            f"Bedrock's service tiers are auto, {', '.join(SERVICE_TIERS)}; not {request.service_tier!r}",
            "service_tier",
        )
    if request.HasField("parallel_tool_calls") and not request.parallel_tool_calls:
        yield invalid_request(
            "Bedrock's Converse API cannot turn off parallel tool calls", "parallel_tool_calls"
        )


def _inference(request: pb.ChatCompletionRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    # max_completion_tokens is the newer name; when both are set it is the one meant.
    for field in ("max_completion_tokens", "max_tokens"):
        if request.HasField(field):
            config["maxTokens"] = getattr(request, field)
            break
    if request.HasField("temperature"):
        config["temperature"] = request.temperature
    if request.HasField("top_p"):
        config["topP"] = request.top_p
    stop = stop_sequences(request)
    if stop:
        config["stopSequences"] = stop
    return config


def _tool_config(request: pb.ChatCompletionRequest, history_has_tools: bool) -> dict[str, Any] | None:
    if not request.tools:
        return None
    choice = _tool_choice(request)
    if choice == "none":
        # Converse cannot forbid calls; without tools the model cannot make one. But Converse
        # needs the tools whenever the conversation already holds tool calls or results.
        if history_has_tools:
            raise invalid_request(
                "Bedrock's Converse API cannot forbid tool calls in a conversation that has tool calls; "
                "use tool_choice auto",
                "tool_choice",
            )
        return None
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(request.tools):
        tools.extend(_tool(tool, f"tools[{i}]"))
    config: dict[str, Any] = {"tools": tools}
    if choice is not None:
        config["toolChoice"] = choice
    return config


def _tool(tool: pb.Tool, where: str) -> list[dict[str, Any]]:
    if tool.type != "function":
        raise invalid_request(
            f"Bedrock's Converse API takes function tools only, not {tool.type!r}", f"{where}.type"
        )
    if not tool.HasField("function") or not tool.function.name:
        raise invalid_request("a function tool needs `function.name`", f"{where}.function.name")
    function = tool.function
    spec: dict[str, Any] = {"name": function.name}
    if function.HasField("description") and function.description:
        spec["description"] = function.description
    # The schema's exact text: integers and key order as the caller wrote them.
    schema = (
        orjson.Fragment(function.parameters_json) if function.HasField("parameters_json") else _EMPTY_SCHEMA
    )
    spec["inputSchema"] = {"json": schema}
    if function.HasField("strict"):
        spec["strict"] = function.strict
    entries: list[dict[str, Any]] = [{"toolSpec": spec}]
    for extra, at in ((function.extra_json, f"{where}.function"), (tool.extra_json, where)):
        for key, value in (codec.loads(extra.encode()) if extra else {}).items():
            if key == "cache_control":
                entries.append(cache_point(value, f"{at}.cache_control"))
            elif value is not None:
                raise invalid_request(f"Bedrock's tools have no `{key}`", f"{at}.{key}")
    return entries


def _tool_choice(request: pb.ChatCompletionRequest) -> dict[str, Any] | str | None:
    """Converse's toolChoice, "none" for OpenAI's none, or None for the default (auto)."""
    kind = request.WhichOneof("tool_choice")
    if kind == "tool_choice_mode":
        mode = request.tool_choice_mode
        if mode == "none":
            return "none"
        if mode == "auto":
            return {"auto": {}}
        if mode == "required":
            return {"any": {}}
        raise invalid_request(f"tool_choice must be auto, none or required, not {mode!r}", "tool_choice")
    if kind == "tool_choice_json":
        return {"tool": {"name": named_function(request.tool_choice_json)}}
    return None


def _json_schema(response_format: pb.ResponseFormat) -> dict[str, Any]:
    schema = response_format.json_schema
    if not schema.HasField("schema_json"):
        raise invalid_request(
            "a json_schema response_format needs its `schema`", "response_format.json_schema"
        )
    # Converse takes the schema as a JSON string, not an object.
    definition: dict[str, Any] = {"schema": schema.schema_json}
    if schema.name:
        definition["name"] = schema.name
    if schema.HasField("description"):
        definition["description"] = schema.description
    return {"type": "json_schema", "structure": {"jsonSchema": definition}}


def _add_extra(body: dict[str, Any], extra_json: str) -> None:
    """The caller's extra body keys: Converse's own go top level (over what was built from the
    chat fields, as the caller's explicit choice), the rest to the model."""
    extra: dict[str, Any] = {}
    codec.merge_extra(extra, extra_json)
    model_fields: dict[str, Any] = {}
    explicit = extra.pop("additionalModelRequestFields", None)
    if explicit is not None:
        if not isinstance(explicit, dict):
            raise invalid_request(
                "additionalModelRequestFields must be an object", "additionalModelRequestFields"
            )
        model_fields.update(explicit)
    for key, value in extra.items():
        if key in _BUILT_KEYS:
            raise invalid_request(
                f"`{key}` is built from the chat-completions fields; set those instead", key
            )
        if key in CONVERSE_KEYS:
            body[key] = value
        else:
            model_fields[key] = value
    if model_fields:
        body["additionalModelRequestFields"] = model_fields
