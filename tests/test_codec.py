"""The JSON dict <-> proto converters in switchyard.codec."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import orjson
import pytest

from switchyard.codec import (
    CodecError,
    error_from_dict,
    error_to_dict,
    request_from_dict,
    request_to_dict,
    response_from_dict,
    response_to_dict,
)
from switchyard.v1 import chat_pb2 as pb


def wire(d: dict[str, Any]) -> Any:
    """What a client sees: the dict serialised with orjson and parsed back."""
    return orjson.loads(orjson.dumps(d))


# ------------------------------------------------------------------ requests

# Not alphabetical, with ints, floats, nesting and an empty object.
PARAMETERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "zeta": {"type": "integer", "minimum": 1, "maximum": 10},
        "alpha": {"type": "number", "multipleOf": 1.5, "default": 3.0},
        "mid": {"type": "array", "items": {"type": "string", "enum": ["b", "a"]}, "maxItems": 3},
        "free": {},
    },
    "required": ["zeta", "alpha"],
    "additionalProperties": False,
}

RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number", "maximum": 1}},
    "required": ["answer", "confidence"],
    "additionalProperties": False,
}

FULL_REQUEST: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "You are terse.", "name": "sys"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA==", "vendor_hint": 2}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,AA==", "filename": "a.pdf"},
                },
                {"type": "file", "file": {"file_id": "file-123"}},
                {"type": "text", "text": "cache me", "cache_control": {"type": "ephemeral"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 3}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "noop", "arguments": "{}"}},
            ],
            "refusal": "none",
            "reasoning": "The user wants weather.",
            "reasoning_details": [
                {
                    "id": "rs_1",
                    "index": 0,
                    "type": "reasoning.summary",
                    "summary": "weather",
                    "text": "thinking",
                    "signature": "sig==",
                    "data": "opaque",
                }
            ],
            "annotations": [
                {
                    "type": "url_citation",
                    "url_citation": {
                        "start_index": 0,
                        "end_index": 12,
                        "title": "Weather",
                        "url": "https://w.test",
                        "sources": [{"b": 1, "a": 1.5}],
                        "type": "web",
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "ok"}]},
        {"role": "assistant", "content": "Here is audio.", "audio": {"id": "audio_1"}},
        {"role": "user", "content": "", "vendor_field": {"k": [1, 2.5, None]}},
    ],
    "stream": True,
    "max_tokens": 256,
    "max_completion_tokens": 512,
    "temperature": 0.7,
    "top_p": 1,
    "frequency_penalty": -0.5,
    "presence_penalty": 0,
    "logit_bias": {"50256": -100, "1234": 2.5},
    "logprobs": True,
    "top_logprobs": 3,
    "n": 2,
    "stop": "\n\n",
    "seed": 2**62 + 1,
    "user": "user-1",
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather by city",
                "parameters": PARAMETERS_SCHEMA,
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "noop"}, "cache_control": {"type": "ephemeral"}},
        {"type": "custom", "custom": {"name": "grammar", "format": {"type": "text"}}},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "description": "An answer",
            "strict": True,
            "schema": RESPONSE_SCHEMA,
        },
    },
    "reasoning_effort": "low",
    "service_tier": "default",
    "stream_options": {"include_usage": True, "include_obfuscation": False},
    "fallbacks": ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4"],
    "metadata": {"team": "search", "n": 1},
    "store": False,
}


def test_full_request_round_trip() -> None:
    req = request_from_dict(FULL_REQUEST, deployment_id="gpt-4o-eu", api_version="2024-10-21")
    assert req.deployment_id == "gpt-4o-eu"
    assert req.api_version == "2024-10-21"
    out = request_to_dict(req)
    assert "deployment_id" not in out
    assert "api_version" not in out
    assert wire(out) == FULL_REQUEST


def test_request_does_not_mutate_input() -> None:
    body = copy.deepcopy(FULL_REQUEST)
    request_to_dict(request_from_dict(body))
    assert body == FULL_REQUEST


def test_request_json_text_fields_keep_exact_text_and_key_order() -> None:
    req = request_from_dict(FULL_REQUEST)
    schema_text = orjson.dumps(PARAMETERS_SCHEMA)
    assert req.tools[0].function.parameters_json.encode() == schema_text
    assert req.response_format.json_schema.schema_json.encode() == orjson.dumps(RESPONSE_SCHEMA)
    out = request_to_dict(req)
    params = out["tools"][0]["function"]["parameters"]
    assert isinstance(params, orjson.Fragment)  # embedded, not re-parsed
    assert orjson.dumps(params) == schema_text
    assert orjson.dumps(wire(out)["tools"][0]["function"]["parameters"]) == schema_text
    # 1 stays an integer and 1.5 / 3.0 stay floats on the wire.
    assert b'"minimum":1,' in schema_text
    assert b'"multipleOf":1.5,"default":3.0' in schema_text


def test_request_unknown_keys_go_to_extra_json() -> None:
    req = request_from_dict(FULL_REQUEST)
    assert orjson.loads(req.extra_json) == {"metadata": {"team": "search", "n": 1}, "store": False}
    assert req.extra_json == '{"metadata":{"team":"search","n":1},"store":false}'  # original order
    assert orjson.loads(req.messages[6].extra_json) == {"vendor_field": {"k": [1, 2.5, None]}}
    assert orjson.loads(req.messages[1].parts.parts[2].image_url.extra_json) == {"vendor_hint": 2}
    assert orjson.loads(req.messages[1].parts.parts[6].extra_json) == {"cache_control": {"type": "ephemeral"}}
    assert orjson.loads(req.tools[2].extra_json) == {
        "custom": {"name": "grammar", "format": {"type": "text"}}
    }
    assert orjson.loads(req.stream_options.extra_json) == {"include_obfuscation": False}


def test_request_content_variants() -> None:
    req = request_from_dict(FULL_REQUEST)
    assert req.messages[0].WhichOneof("content") == "text"
    assert req.messages[1].WhichOneof("content") == "parts"
    assert req.messages[2].WhichOneof("content") == "null_content"
    assert req.messages[6].WhichOneof("content") == "text"  # "" is still a string
    assert request_from_dict({"messages": [{"role": "user"}]}).messages[0].WhichOneof("content") is None
    empty_parts = request_from_dict({"messages": [{"role": "user", "content": []}]})
    assert request_to_dict(empty_parts) == {"messages": [{"role": "user", "content": []}]}


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("stop", ["END", "\n"], "stop_list"),
        ("stop", [], "stop_list"),
        ("stop", "END", "stop_string"),
        ("tool_choice", {"type": "function", "function": {"name": "get_weather"}}, "tool_choice_json"),
        ("tool_choice", "required", "tool_choice_mode"),
        ("response_format", {"type": "json_object"}, "response_format"),
        ("logit_bias", {}, "logit_bias"),
    ],
)
def test_request_union_variants_round_trip(key: str, value: Any, field: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], key: value}
    req = request_from_dict(body)
    assert req.HasField(field)
    assert wire(request_to_dict(req)) == body


def test_tool_choice_object_text_is_exact() -> None:
    choice = {"type": "function", "function": {"name": "f"}}
    req = request_from_dict({"messages": [], "tool_choice": choice})
    assert req.tool_choice_json == '{"type":"function","function":{"name":"f"}}'
    assert orjson.dumps(request_to_dict(req)["tool_choice"]) == orjson.dumps(choice)


def test_minimal_request_has_no_zero_values() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert request_to_dict(request_from_dict(body)) == body
    with_model = {"model": "gpt-4o", **body}
    assert list(request_to_dict(request_from_dict(with_model))) == ["model", "messages"]


def test_request_zero_values_that_were_sent_survive() -> None:
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
        "temperature": 0,
        "max_tokens": 0,
        "seed": 0,
        "logprobs": False,
        "parallel_tool_calls": False,
        "user": "",
        "stream_options": {"include_usage": False},
    }
    assert wire(request_to_dict(request_from_dict(body))) == body


def test_request_nulls_mean_unset() -> None:
    body = {
        "messages": [{"role": "user", "content": "hi", "name": None}],
        "temperature": None,
        "stop": None,
        "tool_choice": None,
        "tools": None,
        "response_format": None,
    }
    req = request_from_dict(body)
    assert not req.HasField("temperature")
    assert req.WhichOneof("stop") is None
    assert req.WhichOneof("tool_choice") is None
    assert not req.messages[0].HasField("name")
    assert request_to_dict(req) == {"messages": [{"role": "user", "content": "hi"}]}


def test_request_integers_accepted_for_doubles_and_int64_exact() -> None:
    req = request_from_dict({"messages": [], "temperature": 1, "seed": -(2**63), "max_tokens": 5.0})
    assert req.temperature == 1.0
    assert req.seed == -(2**63)
    assert req.max_tokens == 5
    assert request_to_dict(req)["seed"] == -(2**63)


# ------------------------------------------------------------------ responses

FULL_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1730000000,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "logprobs": {
                "content": [
                    {
                        "token": "Hi",
                        "logprob": -0.25,
                        "bytes": [72, 105],
                        "top_logprobs": [
                            {"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
                            {"token": "Hello", "logprob": -1.5, "bytes": []},
                        ],
                    },
                    {"token": "!", "logprob": 0, "bytes": [33], "top_logprobs": []},
                ],
                "refusal": [{"token": "no", "logprob": -3.0, "bytes": [110, 111], "top_logprobs": []}],
                "text_offset": [0, 2],
                "token_logprobs": [-0.25, -0.5],
                "tokens": ["Hi", "!"],
                "top_logprobs": [{"Hi": -0.25, "Hello": -1.5}, {"!": -0.5}],
            },
            "text": "legacy text",
            "message": {
                "role": "assistant",
                "name": "bot",
                "content": "Hi!",
                "tool_call_id": "call_0",
                "refusal": "I cannot",
                "audio": {"id": "audio_1", "data": "UklGRg==", "expires_at": 1730003600, "transcript": "Hi"},
                "reasoning": "Greeting.",
                "reasoning_details": [
                    {
                        "id": "rs_1",
                        "index": 0,
                        "type": "reasoning.summary",
                        "summary": "s",
                        "text": "t",
                        "signature": "sig",
                        "data": "d",
                    }
                ],
                "annotations": [
                    {
                        "type": "url_citation",
                        "url_citation": {
                            "start_index": 0,
                            "end_index": 3,
                            "title": "Example",
                            "url": "https://example.test",
                            "sources": {"z": 1, "a": [1.5, "x"]},
                            "type": "web",
                        },
                    }
                ],
                "tool_calls": [
                    {
                        "index": 0,
                        "type": "function",
                        "id": "call_1",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            "content_filter_results": {
                "hate": {"filtered": False, "severity": "safe"},
                "self_harm": {"filtered": False, "severity": "safe"},
            },
        }
    ],
    "service_tier": "default",
    "system_fingerprint": "fp_abc",
    "usage": {
        "prompt_tokens": 20,
        "prompt_tokens_details": {
            "text_tokens": 10,
            "audio_tokens": 1,
            "image_tokens": 2,
            "cached_read_tokens": 3,
            "cached_write_tokens": 4,
            "cached_tokens": 0,
        },
        "completion_tokens": 30,
        "completion_tokens_details": {
            "text_tokens": 5,
            "accepted_prediction_tokens": 0,
            "audio_tokens": 1,
            "citation_tokens": 2,
            "num_search_queries": 3,
            "reasoning_tokens": 4,
            "image_tokens": 6,
            "rejected_prediction_tokens": 7,
        },
        "total_tokens": 50,
        "cost": {
            "input_tokens_cost": 0.0001,
            "output_tokens_cost": 0.0002,
            "reasoning_tokens_cost": 0,
            "citation_tokens_cost": 0.5,
            "search_queries_cost": 1,
            "request_cost": 0.25,
            "total_cost": 1.7503,
        },
    },
    "extra_fields": {
        "request_type": "chat.completion",
        "provider": "azure",
        "model_requested": "gpt-4o",
        "model_deployment": "gpt-4o-eu",
        "latency": 412,
        "chunk_index": 0,
        "raw_request": {"model": "gpt-4o", "messages": [], "temperature": 1.0, "n": 1},
        "raw_response": {"id": "chatcmpl-abc", "z": None, "a": [1, 2.5]},
        "cache_debug": {
            "cache_hit": True,
            "cache_id": "c1",
            "hit_type": "semantic",
            "requested_provider": "azure",
            "requested_model": "gpt-4o",
            "provider_used": "azure",
            "model_used": "gpt-4o",
            "input_tokens": 20,
            "threshold": 0.8,
            "similarity": 0.93,
        },
        "attempts": [
            {
                "provider": "openai",
                "model": "gpt-4o",
                "status_code": 429,
                "error_type": "rate_limit",
                "message": "Too many requests",
            },
            {
                "provider": "anthropic",
                "model": "claude",
                "status_code": 0,
                "error_type": "timeout",
                "message": "",
            },
        ],
    },
    "search_results": [
        {
            "title": "T",
            "url": "https://s.test",
            "date": "2024-01-01",
            "last_updated": "2024-02-01",
            "snippet": "snip",
            "source": "web",
        }
    ],
    "videos": [
        {
            "url": "https://v.test/1",
            "thumbnail_url": "https://v.test/1.jpg",
            "thumbnail_width": 640,
            "thumbnail_height": 360,
            "duration": 12.5,
        }
    ],
    "citations": ["https://example.test", "https://s.test"],
    "prompt_filter_results": [
        {"prompt_index": 0, "content_filter_results": {"jailbreak": {"filtered": False, "detected": False}}}
    ],
}

TOOL_CALL_CHUNKS: list[dict[str, Any]] = [
    {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1730000001,
        "model": "gpt-4o",
        "system_fingerprint": "fp_s",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ],
                },
                "finish_reason": None,
            }
        ],
    },
    {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1730000001,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
                "finish_reason": None,
            }
        ],
        "extra_fields": {
            "request_type": "chat.completion.chunk",
            "provider": "openai",
            "model_requested": "gpt-4o",
            "model_deployment": "gpt-4o",
            "latency": 7,
            "chunk_index": 1,
        },
    },
    {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1730000001,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "content": "",
                    "refusal": "",
                    "reasoning": "hm",
                    "reasoning_details": [{"index": 0, "type": "reasoning.text", "text": "hm"}],
                    "audio": {"id": "a1", "data": "AA==", "expires_at": 0, "transcript": ""},
                },
                "finish_reason": None,
                "content_filter_results": {},
            }
        ],
    },
    {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1730000001,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
    },
]

USAGE_CHUNK: dict[str, Any] = {
    "id": "chatcmpl-s",
    "object": "chat.completion.chunk",
    "created": 1730000001,
    "model": "gpt-4o",
    "choices": [],
    "usage": {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}

N2_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-n2",
    "object": "chat.completion",
    "created": 1730000002,
    "model": "gpt-4o-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "One."}, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "Two."}, "finish_reason": "length"},
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
}


def test_full_response_round_trip() -> None:
    msg = response_from_dict(FULL_RESPONSE)
    assert isinstance(msg, pb.ChatCompletionResponse)
    out = response_to_dict(msg)
    assert wire(out) == FULL_RESPONSE
    assert type(out["created"]) is int
    # raw_request/raw_response go out as the exact text, not re-parsed.
    raw = FULL_RESPONSE["extra_fields"]["raw_response"]
    assert msg.extra_fields.raw_response_json == orjson.dumps(raw).decode()
    assert orjson.dumps(out["extra_fields"]["raw_response"]) == orjson.dumps(raw)


def test_full_response_keeps_azure_filter_results_in_extra_json() -> None:
    msg = response_from_dict(FULL_RESPONSE)
    assert list(orjson.loads(msg.extra_json)) == ["prompt_filter_results"]
    assert list(orjson.loads(msg.choices[0].extra_json)) == ["content_filter_results"]


@pytest.mark.parametrize("chunk", TOOL_CALL_CHUNKS)
def test_stream_chunk_round_trip(chunk: dict[str, Any]) -> None:
    msg = response_from_dict(chunk, pb.ChatCompletionChunk)
    assert isinstance(msg, pb.ChatCompletionChunk)
    out = response_to_dict(msg)
    assert wire(out) == chunk
    assert out["choices"][0]["index"] == 0
    assert "finish_reason" in out["choices"][0]


def test_usage_only_chunk_round_trip() -> None:
    out = response_to_dict(response_from_dict(USAGE_CHUNK, pb.ChatCompletionChunk))
    assert out["choices"] == []
    assert wire(out) == USAGE_CHUNK


def test_n2_response_round_trip() -> None:
    msg = response_from_dict(N2_RESPONSE)
    assert [c.index for c in msg.choices] == [0, 1]
    assert wire(response_to_dict(msg)) == N2_RESPONSE


def test_minimal_response_presence() -> None:
    upstream = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    }
    out = response_to_dict(response_from_dict(upstream))
    assert out == upstream
    assert "usage" not in out


def test_chunk_always_keys_from_an_empty_message() -> None:
    chunk = pb.ChatCompletionChunk(choices=[pb.Choice(delta=pb.ChatMessage())])
    out = response_to_dict(chunk)
    assert out == {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [{"index": 0, "finish_reason": None, "delta": {}}],
    }
    assert type(out["created"]) is int


def test_response_nulls_are_unset_and_dropped() -> None:
    upstream = {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "system_fingerprint": None,
        "usage": None,
        "choices": [
            {
                "index": 0,
                "delta": {"content": "a", "refusal": None, "tool_calls": None},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    }
    msg = response_from_dict(upstream, pb.ChatCompletionChunk)
    assert not msg.HasField("usage")
    assert not msg.HasField("system_fingerprint")
    assert not msg.choices[0].HasField("logprobs")
    assert response_to_dict(msg) == {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "finish_reason": None, "delta": {"content": "a"}}],
    }


def test_response_logprob_bytes_null_and_log_probs_spelling() -> None:
    upstream = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "log_probs": {
                    "content": [
                        {
                            "token": "<x>",
                            "logprob": -1,
                            "bytes": None,
                            "top_logprobs": [{"token": "<x>", "logprob": -1, "bytes": None}],
                        }
                    ]
                },
            }
        ],
    }
    out = response_to_dict(response_from_dict(upstream))
    assert out["choices"][0]["logprobs"] == {
        "content": [
            {
                "token": "<x>",
                "logprob": -1.0,
                "bytes": [],
                "top_logprobs": [{"token": "<x>", "logprob": -1.0, "bytes": []}],
            }
        ]
    }


def test_usage_always_has_the_three_counts() -> None:
    msg = pb.ChatCompletionResponse(usage=pb.Usage(cost=pb.Cost(total_cost=0.0)))
    assert response_to_dict(msg)["usage"] == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "cost": {"total_cost": 0.0},
    }


def test_extra_fields_only_when_set_and_always_keys_inside() -> None:
    assert "extra_fields" not in response_to_dict(pb.ChatCompletionResponse())
    msg = pb.ChatCompletionResponse(extra_fields=pb.ExtraFields(provider="openai"))
    assert response_to_dict(msg)["extra_fields"] == {
        "request_type": "",
        "provider": "openai",
        "model_requested": "",
        "model_deployment": "",
        "latency": 0,
    }


# ------------------------------------------------------------------ errors


def _msgs(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"model": "m", "messages": list(messages)}


USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], "body"),
        ("not an object", "body"),
        ({"messages": [USER], "temperature": "hot"}, "temperature"),
        ({"messages": [USER], "temperature": True}, "temperature"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [USER, "hi"]}, "messages[1]"),
        ({"messages": [USER, None]}, "messages[1]"),
        (_msgs({"role": "user", "content": 5}), "messages[0].content"),
        (_msgs({"role": "user", "content": {"type": "text"}}), "messages[0].content"),
        (_msgs({"role": 1, "content": "x"}), "messages[0].role"),
        (_msgs({"role": "user", "content": ["x"]}), "messages[0].content[0]"),
        (
            _msgs(
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "a"},
                        {"type": "image_url", "image_url": {"url": 5}},
                    ],
                }
            ),
            "messages[0].content[1].image_url.url",
        ),
        (
            _msgs({"role": "assistant", "tool_calls": [{"id": "c", "function": {"arguments": {}}}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            _msgs({"role": "assistant", "audio": {"id": "a", "expires_at": "soon"}}),
            "messages[0].audio.expires_at",
        ),
        ({"messages": [USER], "max_tokens": 1.5}, "max_tokens"),
        ({"messages": [USER], "max_tokens": True}, "max_tokens"),
        ({"messages": [USER], "n": 2**40}, "n"),
        ({"messages": [USER], "seed": 2**64}, "seed"),
        ({"messages": [USER], "stream": "yes"}, "stream"),
        ({"messages": [USER], "stop": ["a", 1]}, "stop[1]"),
        ({"messages": [USER], "stop": 5}, "stop"),
        ({"messages": [USER], "tool_choice": 5}, "tool_choice"),
        ({"messages": [USER], "tools": {"type": "function"}}, "tools"),
        (
            {"messages": [USER], "tools": [{"type": "function", "function": {"name": 5}}]},
            "tools[0].function.name",
        ),
        ({"messages": [USER], "logit_bias": {"50256": "x"}}, "logit_bias.50256"),
        ({"messages": [USER], "logit_bias": [1]}, "logit_bias"),
        (
            {"messages": [USER], "response_format": {"type": "json_schema", "json_schema": {"strict": "y"}}},
            "response_format.json_schema.strict",
        ),
        ({"messages": [USER], "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
        ({"messages": [USER], "fallbacks": ["a", None]}, "fallbacks[1]"),
        ({"messages": [USER], "model": 4}, "model"),
    ],
)
def test_request_codec_errors(body: Any, param: str) -> None:
    with pytest.raises(CodecError) as exc:
        request_from_dict(body)
    assert exc.value.param == param
    assert f"'{param}'" in exc.value.message
    assert isinstance(exc.value, ValueError)


def test_codec_error_message_and_pickle() -> None:
    with pytest.raises(CodecError) as exc:
        request_from_dict({"messages": [USER], "temperature": "hot"})
    err = exc.value
    assert err.message == "Invalid type for 'temperature': expected a number, but got a string instead."
    assert str(err) == err.message
    again = pickle.loads(pickle.dumps(err))
    assert (again.param, again.message) == (err.param, err.message)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"id": "x", "created": "yesterday", "choices": []}, "created"),
        ({"id": 5}, "id"),
        ({"choices": {}}, "choices"),
        ({"choices": [{"index": "0"}]}, "choices[0].index"),
        ({"choices": [{"delta": {"content": 1}}]}, "choices[0].delta.content"),
        (
            {"choices": [{"message": {"tool_calls": [{"function": {"arguments": {}}}]}}]},
            "choices[0].message.tool_calls[0].function.arguments",
        ),
        (
            {"choices": [{"logprobs": {"content": [{"bytes": ["a"]}]}}]},
            "choices[0].logprobs.content[0].bytes[0]",
        ),
        ({"usage": {"prompt_tokens": "1"}}, "usage.prompt_tokens"),
        ({"extra_fields": {"attempts": [{"status_code": "500"}]}}, "extra_fields.attempts[0].status_code"),
        ([], "body"),
    ],
)
def test_response_codec_errors(body: Any, param: str) -> None:
    with pytest.raises(CodecError) as exc:
        response_from_dict(body, pb.ChatCompletionChunk)
    assert exc.value.param == param


# ------------------------------------------------------------------ error bodies

FULL_ERROR: dict[str, Any] = {
    "event_id": "evt_1",
    "type": "rate_limit_error",
    "is_bifrost_error": False,
    "status_code": 429,
    "error": {
        "type": "rate_limit_error",
        "code": "429",
        "message": "Rate limit reached",
        "param": "model",
        "event_id": "evt_1",
    },
    "extra_fields": {
        "provider": "azure",
        "model_requested": "gpt-4o",
        "request_type": "chat.completion",
        "attempts": [
            {
                "provider": "azure",
                "model": "gpt-4o",
                "status_code": 429,
                "error_type": "rate_limit",
                "message": "slow",
            },
            {
                "provider": "openai",
                "model": "gpt-4o",
                "status_code": 0,
                "error_type": "timeout",
                "message": "",
            },
        ],
    },
}


def test_error_round_trip() -> None:
    err = error_from_dict(FULL_ERROR)
    assert err.status_code == 429
    assert error_to_dict(err) == FULL_ERROR


def test_minimal_error_round_trip_and_presence() -> None:
    body = {
        "type": "invalid_request_error",
        "is_bifrost_error": True,
        "status_code": 400,
        "error": {"message": "bad"},
        "extra_fields": {"provider": "", "model_requested": "", "request_type": ""},
    }
    err = error_from_dict(body)
    assert not err.HasField("event_id")
    assert not err.error.HasField("param")
    assert error_to_dict(err) == body
    assert error_to_dict(pb.ErrorBody()) == {
        "type": "",
        "is_bifrost_error": False,
        "status_code": 0,
        "error": {"message": ""},
        "extra_fields": {"provider": "", "model_requested": "", "request_type": ""},
    }


def test_error_from_upstream_openai_body() -> None:
    upstream = {"error": {"message": "nope", "type": "invalid_request_error", "param": None, "code": 400}}
    err = error_from_dict(upstream)
    assert err.error.code == "400"
    assert not err.error.HasField("param")
    with pytest.raises(CodecError) as exc:
        error_from_dict({"status_code": "429"})
    assert exc.value.param == "status_code"


def test_integers_beyond_64_bits_survive_the_rest_path() -> None:
    from switchyard.codec import loads

    raw = (
        b'{"messages":[{"role":"user","content":"x"}],'
        b'"tools":[{"type":"function","function":{"name":"f","parameters":{"maximum":123456789012345678901234567890}}}],'
        b'"vendor":{"id":98765432109876543210987}}'
    )
    body = loads(raw)
    assert body["vendor"]["id"] == 98765432109876543210987  # an int, not a rounded float
    out = orjson.dumps(request_to_dict(request_from_dict(body)))
    assert b'"maximum":123456789012345678901234567890' in out
    assert b'"vendor":{"id":98765432109876543210987}' in out
    assert loads(b'{"a": 1.5}') == {"a": 1.5}
    with pytest.raises(orjson.JSONDecodeError):
        loads(b"{not json")
