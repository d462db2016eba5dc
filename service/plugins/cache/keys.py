"""The cache key: a deterministic hash of the canonical request, inside the caller's partition.

Two requests share an exact-match key when every field that can change the answer is equal.
Each ``ChatCompletionRequest`` field is classified here, and ``tests/test_cache_keys.py``
checks the classification against the proto: a field added to the proto and not listed in
one of the two tables fails that test, so no field is ever silently in or out of the key.

**In the key** (``INCLUDED``): the target the caller named (``deployment_id``, else ``model``:
the one the router routes by), ``api_version``, ``messages``, every sampling and output
parameter (``max_tokens``, ``max_completion_tokens``, ``temperature``, ``top_p``, penalties,
``logit_bias``, ``logprobs``, ``top_logprobs``, ``n``, ``stop``, ``seed``), ``tools``,
``tool_choice``, ``parallel_tool_calls``, ``response_format``, ``reasoning_effort``,
``service_tier`` and ``extra_json`` (unknown body keys go upstream, so they may change it).

**Not in the key** (``EXCLUDED``): ``stream`` and ``stream_options`` (a unary answer can serve a
stream and the other way round), ``fallbacks`` (where to go when the primary fails, not what
it answers), ``user`` (an end-user id for abuse tracking), and ``cache`` (these controls).

JSON-text fields (tool schemas, ``response_format`` schemas, unknown keys) are hashed as
their exact text, not re-ordered: the order of a schema's properties is the order a model
writes structured output in, so two orderings are two requests.

The hash is SHA-256 over the partition and the request serialised deterministically
(``SerializeToString(deterministic=True)``: map entries sorted, fields in number order), so
it is the same in every process and replica running the same proto. The id shows nothing
of the request or of any credential: a virtual key's *id* (never its secret) names the
partition, and only the digest leaves this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from switchyard.v1 import chat_pb2 as pb

# Why each field is (or is not) part of the key. Oneof members are listed by field name.
INCLUDED: dict[str, str] = {
    "deployment_id": "the target the caller named (deployment), folded with `model` into one target",
    "model": "the target the caller named (model), when no deployment is given",
    "api_version": "an upstream API version may answer with other fields",
    "messages": "the conversation",
    "max_tokens": "caps the answer",
    "max_completion_tokens": "caps the answer",
    "temperature": "sampling",
    "top_p": "sampling",
    "frequency_penalty": "sampling",
    "presence_penalty": "sampling",
    "logit_bias": "sampling",
    "logprobs": "adds log probabilities to the answer",
    "top_logprobs": "adds log probabilities to the answer",
    "n": "the number of choices",
    "stop_string": "stop sequences",
    "stop_list": "stop sequences",
    "seed": "sampling",
    "tools": "what the model may call",
    "tool_choice_mode": "what the model may call",
    "tool_choice_json": "what the model may call",
    "parallel_tool_calls": "what the model may call",
    "response_format": "the answer's format",
    "reasoning_effort": "how the model reasons",
    "service_tier": "reported in the answer",
    "extra_json": "unknown body keys are sent upstream and may change the answer",
}
EXCLUDED: dict[str, str] = {
    "stream": "a unary answer serves a stream and the other way round",
    "stream_options": "usage is always kept; the caller's choice applies on replay",
    "fallbacks": "where to go when the primary fails, not what it answers",
    "user": "an end-user id for abuse tracking, not part of the prompt",
    "cache": "these cache controls",
}

# Cleared from a copy of the request before hashing. deployment_id and model are replaced by
# the one target they name (as the router reads them), so `deployment: x` and `model: x`
# without a deployment are the same request, and `model` beside a deployment is ignored.
_CLEARED = (*EXCLUDED, "deployment_id")


def target_of(request: pb.ChatCompletionRequest) -> str:
    """What the router routes by: the deployment id, else the model."""
    return request.deployment_id or request.model


def _digest(partition: str, cache_key: str, canonical: pb.ChatCompletionRequest) -> str:
    digest = hashlib.sha256()
    # Lengths first, so no partition or cache key can run into the next part.
    for part in (partition.encode(), cache_key.encode()):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    digest.update(canonical.SerializeToString(deterministic=True))
    return digest.hexdigest()[:40]


def _canonical(request: pb.ChatCompletionRequest) -> pb.ChatCompletionRequest:
    copy = pb.ChatCompletionRequest()
    copy.CopyFrom(request)
    target = target_of(request)
    for name in _CLEARED:
        copy.ClearField(name)
    copy.model = target
    return copy


def exact_key(request: pb.ChatCompletionRequest, partition: str, cache_key: str = "") -> str:
    """The entry id of ``request`` in ``partition`` (narrowed by ``cache_key``): 40 hex digits."""
    return _digest(partition, cache_key, _canonical(request))


def semantic_scope(request: pb.ChatCompletionRequest, embedded: int) -> str:
    """What must match exactly for a semantic hit: everything but the text of the last
    ``embedded`` messages (those are compared by meaning). The model, the parameters, the
    system prompt and earlier turns all stay in it, and so do those messages' roles."""
    copy = _canonical(request)
    messages: Sequence[pb.ChatMessage] = copy.messages
    for message in messages[len(messages) - embedded :]:
        message.ClearField("content")
    return _digest("", "", copy)


def message_text(message: pb.ChatMessage) -> str | None:
    """A message's text, or None when it holds anything else (images, audio, tool calls):
    those are not compared by meaning."""
    if message.tool_calls or message.HasField("audio") or message.extra_json:
        return None
    kind = message.WhichOneof("content")
    if kind == "text":
        return message.text
    if kind == "parts":
        texts = []
        for part in message.parts.parts:
            if part.type != "text" or part.extra_json:
                return None
            texts.append(part.text)
        return "\n".join(texts)
    return None
