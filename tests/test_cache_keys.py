"""The cache key: every request field is classified, each included field changes the key and
each excluded one does not (parametrised over the proto, so a new field must be classified)."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor

from service.plugins.cache.keys import EXCLUDED, INCLUDED, exact_key, message_text, semantic_scope
from switchyard.v1 import chat_pb2 as pb

FIELDS = pb.ChatCompletionRequest.DESCRIPTOR.fields


def base() -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(
        model="gpt-4o",
        messages=[pb.ChatMessage(role="system", text="be brief"), pb.ChatMessage(role="user", text="hi")],
    )


def set_value(request: pb.ChatCompletionRequest, field: FieldDescriptor) -> None:
    """Give ``field`` a value it does not have in :func:`base`."""
    name = field.name
    if name == "messages":
        request.messages.add(role="user", text="another turn")
        return
    if name == "model":
        request.model = "gpt-4o-mini"
        return
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        target = getattr(request, name)
        if field.is_repeated:
            target = target.add()
        _fill(target)
        return
    value: Any
    if field.type == FieldDescriptor.TYPE_STRING:
        value = '{"x": 1}' if name.endswith("_json") else "v"
    elif field.type == FieldDescriptor.TYPE_BOOL:
        value = True
    elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        value = 0.5
    else:
        value = 7
    if field.is_repeated:
        getattr(request, name).append(value)
    else:
        setattr(request, name, value)


def _fill(message: Any) -> None:
    """Set one field of a nested message (its first settable scalar, or a map entry)."""
    for sub in message.DESCRIPTOR.fields:
        if sub.message_type is not None and sub.message_type.GetOptions().map_entry:
            getattr(message, sub.name)["k"] = 1.0
            return
        if sub.type == FieldDescriptor.TYPE_STRING and not sub.is_repeated:
            setattr(message, sub.name, "v")
            return
        if sub.type == FieldDescriptor.TYPE_BOOL:
            setattr(message, sub.name, True)
            return
        if sub.type == FieldDescriptor.TYPE_STRING:
            getattr(message, sub.name).append("v")
            return
    raise AssertionError(f"no settable field in {message.DESCRIPTOR.name}")


def test_every_proto_field_is_classified_once() -> None:
    names = {f.name for f in FIELDS}
    assert not set(INCLUDED) & set(EXCLUDED)
    unclassified = names - set(INCLUDED) - set(EXCLUDED)
    assert not unclassified, f"classify these request fields in service/plugins/cache/keys.py: {unclassified}"
    assert set(INCLUDED) | set(EXCLUDED) == names


@pytest.mark.parametrize("field", [f for f in FIELDS if f.name in INCLUDED], ids=lambda f: f.name)
def test_each_included_field_changes_the_key(field: FieldDescriptor) -> None:
    changed = base()
    set_value(changed, field)
    assert changed != base()
    assert exact_key(changed, "key:a") != exact_key(base(), "key:a")


@pytest.mark.parametrize("field", [f for f in FIELDS if f.name in EXCLUDED], ids=lambda f: f.name)
def test_each_excluded_field_leaves_the_key(field: FieldDescriptor) -> None:
    changed = base()
    set_value(changed, field)
    assert changed != base()
    assert exact_key(changed, "key:a") == exact_key(base(), "key:a")


def test_the_key_is_deterministic_and_partitioned() -> None:
    one = base()
    one.logit_bias.values.update({"1": 1.0, "2": -1.0, "3": 0.5})
    two = base()
    two.logit_bias.values.update({"3": 0.5, "2": -1.0, "1": 1.0})  # map order differs
    assert exact_key(one, "key:a") == exact_key(two, "key:a")
    assert exact_key(one, "key:a") != exact_key(one, "key:b")
    assert exact_key(one, "key:a") != exact_key(one, "key:a", "narrow")
    # No way for a partition to run into the cache key.
    assert exact_key(one, "key:a", "b") != exact_key(one, "key:ab", "")
    assert len(exact_key(one, "key:a")) == 40


def test_deployment_and_model_name_one_target() -> None:
    by_deployment = pb.ChatCompletionRequest(deployment_id="chat", messages=base().messages)
    by_model = pb.ChatCompletionRequest(model="chat", messages=base().messages)
    assert exact_key(by_deployment, "p") == exact_key(by_model, "p")
    # Beside a deployment, the body's model is not what routes: it does not change the key.
    with_model = pb.ChatCompletionRequest(deployment_id="chat", model="ignored", messages=base().messages)
    assert exact_key(with_model, "p") == exact_key(by_deployment, "p")
    other = pb.ChatCompletionRequest(deployment_id="chat-2", messages=base().messages)
    assert exact_key(other, "p") != exact_key(by_deployment, "p")


def test_schema_text_is_hashed_as_written() -> None:
    """Key order in a schema is the order a model writes structured output in."""
    a, b = base(), base()
    a.tools.add(type="function", function=pb.FunctionDefinition(name="f", parameters_json='{"a":1,"b":2}'))
    b.tools.add(type="function", function=pb.FunctionDefinition(name="f", parameters_json='{"b":2,"a":1}'))
    assert exact_key(a, "p") != exact_key(b, "p")


def test_the_semantic_scope_ignores_only_the_embedded_text() -> None:
    a, b = base(), base()
    b.messages[-1].text = "hello there"
    assert semantic_scope(a, 1) == semantic_scope(b, 1)
    b.messages[0].text = "another system prompt"  # not embedded: must match exactly
    assert semantic_scope(a, 1) != semantic_scope(b, 1)
    c = base()
    c.temperature = 0.1
    assert semantic_scope(a, 1) != semantic_scope(c, 1)


def test_message_text_is_text_only() -> None:
    assert message_text(pb.ChatMessage(role="user", text="hi")) == "hi"
    parts = pb.ContentParts(
        parts=[pb.ContentPart(type="text", text="a"), pb.ContentPart(type="text", text="b")]
    )
    assert message_text(pb.ChatMessage(role="user", parts=parts)) == "a\nb"
    image = pb.ContentParts(parts=[pb.ContentPart(type="image_url", image_url=pb.ImageUrl(url="http://x"))])
    assert message_text(pb.ChatMessage(role="user", parts=image)) is None
