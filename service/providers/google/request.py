"""The canonical request -> a Gemini ``generateContent`` body (the same for AI Studio and Vertex AI).

What Gemini cannot honour is refused here, as a 400 naming the field, so the caller learns what to
change instead of getting an upstream error or a silently different answer. ``docs/providers/
google.md`` has the field-by-field table; keep the two in step.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import orjson

from service.errors import GatewayError, invalid_request
from service.providers.canonical import named_function, stop_sequences
from switchyard import codec
from switchyard.v1 import chat_pb2 as pb

from .contents import convert_messages

# How schemas go out: Google's OpenAPI subset (`parameters`, `responseSchema`: every model takes
# it), or JSON Schema as written (`parametersJsonSchema`, `responseJsonSchema`: Gemini 2.5 on).
SchemaDialect = Literal["openapi", "json_schema"]

# reasoning_effort -> thinkingBudget for the models that take a budget (Gemini 2.x). low, medium
# and high are what Google's own OpenAI-compatible endpoint uses; minimal is the smallest budget
# every 2.5 model accepts (Flash-Lite's floor); xhigh is 2.5 Pro's ceiling (Flash stops at 24576).
THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}
# reasoning_effort -> thinkingLevel for the models that take a level (Gemini 3 on), which cannot
# turn thinking off.
THINKING_LEVELS = {"minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH", "xhigh": "XHIGH"}
_GEMINI_MAJOR = re.compile(r"gemini-(\d+)")
# OpenAI's tool_choice modes -> functionCallingConfig modes.
TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# OpenAI's service tiers -> Gemini's (`auto` is Gemini's default too, so it is not sent).
SERVICE_TIERS = {"auto": None, "default": "standard", "flex": "flex", "priority": "priority"}


def build_body(request: pb.ChatCompletionRequest, model: str, schemas: SchemaDialect) -> dict[str, Any]:
    """The body of a generateContent call; raises a 400 GatewayError for what cannot be sent.

    Values may be ``orjson.Fragment`` (exact JSON text): serialise with orjson.
    """
    problem = next(_unsupported(request), None)
    if problem is not None:
        raise problem
    system, contents = convert_messages(request.messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        body["tools"] = _tools(request.tools, schemas)
        choice = _tool_choice(request)
        if choice is not None:
            body["toolConfig"] = {"functionCallingConfig": choice}
    config = _generation_config(request, model, schemas)
    if config:
        body["generationConfig"] = config
    if request.HasField("service_tier"):
        tier = SERVICE_TIERS[request.service_tier]
        if tier is not None:
            body["serviceTier"] = tier
    if request.extra_json:
        # Last, so a Gemini-native key (safetySettings, cachedContent, labels…) is the one sent;
        # an object merges into ours (generationConfig: {topK: 40} keeps the mapped settings).
        _merge(body, request.extra_json)
    return body


def _unsupported(request: pb.ChatCompletionRequest) -> Iterator[GatewayError]:
    """Values with no Gemini equivalent. Their neutral values (empty logit_bias, parallel tool
    calls allowed) change nothing, so they are dropped."""
    if request.logit_bias.values:
        yield invalid_request("Gemini has no logit bias", "logit_bias")
    if request.HasField("parallel_tool_calls") and not request.parallel_tool_calls:
        yield invalid_request(
            "Gemini cannot be limited to one tool call per turn; leave parallel_tool_calls unset or true",
            "parallel_tool_calls",
        )
    if request.HasField("service_tier") and request.service_tier not in SERVICE_TIERS:
        yield invalid_request(
            f"Gemini's service tiers are {', '.join(SERVICE_TIERS)}, not {request.service_tier!r}",
            "service_tier",
        )
    if request.response_format.type not in ("", "text", "json_object", "json_schema"):
        yield invalid_request(
            f"Gemini has no response_format {request.response_format.type!r}", "response_format.type"
        )


def _generation_config(
    request: pb.ChatCompletionRequest, model: str, schemas: SchemaDialect
) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, key in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("frequency_penalty", "frequencyPenalty"),
        ("presence_penalty", "presencePenalty"),
    ):
        if request.HasField(name):
            config[key] = getattr(request, name)
    cap = next((f for f in ("max_completion_tokens", "max_tokens") if request.HasField(f)), None)
    if cap is not None:
        # Gemini's cap, like OpenAI's max_completion_tokens, counts the thinking too.
        config["maxOutputTokens"] = getattr(request, cap)
    stop = stop_sequences(request)
    if stop:
        config["stopSequences"] = stop
    if request.HasField("n"):
        config["candidateCount"] = request.n
    if request.logprobs:
        config["responseLogprobs"] = True
        if request.HasField("top_logprobs"):
            config["logprobs"] = request.top_logprobs
    elif request.top_logprobs:
        raise invalid_request("top_logprobs needs logprobs: true", "top_logprobs")
    config.update(_response_format(request.response_format, schemas))
    if request.HasField("reasoning_effort"):
        config["thinkingConfig"] = _thinking(request.reasoning_effort, model)
    return config


def _response_format(response_format: pb.ResponseFormat, schemas: SchemaDialect) -> dict[str, Any]:
    if response_format.type not in ("json_object", "json_schema"):
        return {}
    config: dict[str, Any] = {"responseMimeType": "application/json"}
    schema = response_format.json_schema
    if response_format.type == "json_schema" and schema.HasField("schema_json"):
        key = "responseSchema" if schemas == "openapi" else "responseJsonSchema"
        config[key] = orjson.Fragment(schema.schema_json)
    return config


def _thinking(effort: str, model: str) -> dict[str, Any]:
    major = _GEMINI_MAJOR.search(model)
    if major is not None and int(major.group(1)) >= 3:
        level = THINKING_LEVELS.get(effort)
        if level is None:
            raise invalid_request(
                f"{model} cannot turn thinking off; the least is reasoning_effort minimal",
                "reasoning_effort",
            )
        return {"thinkingLevel": level, "includeThoughts": True}
    budget = THINKING_BUDGETS[effort]
    # With thinking on, its summary comes back (as `reasoning`), as Anthropic's thinking does.
    return {"thinkingBudget": budget, "includeThoughts": budget > 0}


def _tools(tools: Iterable[pb.Tool], schemas: SchemaDialect) -> list[dict[str, Any]]:
    declarations: list[dict[str, Any]] = []
    native: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if tool.type != "function":
            # Gemini's own tools ({"type": "google_search"}, code_execution, url_context…) go out
            # as {type: {their other fields}}.
            settings: dict[str, Any] = {}
            if tool.extra_json:
                codec.merge_extra(settings, tool.extra_json)
            native.append({tool.type: settings})
            continue
        if not tool.HasField("function") or not tool.function.name:
            raise invalid_request("a function tool needs `function.name`", f"{where}.function.name")
        function = tool.function
        declaration: dict[str, Any] = {"name": function.name}
        if function.HasField("description"):
            declaration["description"] = function.description
        if function.HasField("parameters_json"):
            key = "parameters" if schemas == "openapi" else "parametersJsonSchema"
            # The schema's exact text: integers and key order as the caller wrote them.
            declaration[key] = orjson.Fragment(function.parameters_json)
        declarations.append(declaration)
    return ([{"functionDeclarations": declarations}] if declarations else []) + native


def _tool_choice(request: pb.ChatCompletionRequest) -> dict[str, Any] | None:
    kind = request.WhichOneof("tool_choice")
    if kind == "tool_choice_mode":
        mode = TOOL_CHOICE_MODES.get(request.tool_choice_mode)
        if mode is None:
            raise invalid_request(
                f"tool_choice must be auto, none or required, not {request.tool_choice_mode!r}",
                "tool_choice",
            )
        return {"mode": mode}
    if kind == "tool_choice_json":
        return {"mode": "ANY", "allowedFunctionNames": [named_function(request.tool_choice_json)]}
    return None


def _merge(body: dict[str, Any], extra_json: str) -> None:
    extra: dict[str, Any] = {}
    codec.merge_extra(extra, extra_json)
    for key, value in extra.items():
        ours = body.get(key)
        if isinstance(ours, dict) and isinstance(value, dict):
            ours.update(value)
        else:
            body[key] = value
