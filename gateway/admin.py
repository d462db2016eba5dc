"""REST transcoding of the gRPC ``Admin`` service under ``/api/``.

The routes are not written out here: they are read from the ``google.api.http``
options in ``protos/switchyard/v1/admin.proto``, so the proto stays the one source
of truth. Path variables and query parameters fill request fields, the body fills
``*`` or the named field, and the reply is the response message as JSON (field
names as in the proto; 64-bit integers as numbers). Admin calls are rare, so this
uses protobuf's ``json_format`` for parsing rather than the hot path's codec.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from google.api import annotations_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.backend import BackendError, ChatBackend, Metadata
from gateway.errors import error_response, gateway_error
from switchyard.codec import message_to_json
from switchyard.v1 import admin_pb2, chat_pb2

ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["Admin"]
_VARIABLE = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_.]*)\}")
_MAX_ADMIN_BODY = 1024 * 1024
_NO_STORE = {"cache-control": "no-store"}


def admin_routes(backend: Callable[[], ChatBackend], forwarded: Callable[[Request], Metadata]) -> list[Route]:
    """One Starlette route per HTTP binding of every Admin method."""
    routes: list[Route] = []
    for method in ADMIN_SERVICE.methods:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        for binding in (rule, *rule.additional_bindings):
            verb = binding.WhichOneof("pattern")
            template = getattr(binding, verb)
            body_field = binding.body
            path = _VARIABLE.sub(lambda m: "{" + m.group(1).replace(".", "__") + "}", template)
            endpoint = _endpoint(method, body_field, backend, forwarded)
            routes.append(Route(path, endpoint, methods=[verb.upper()]))
    return routes


def _endpoint(
    method: MethodDescriptor,
    body_field: str,
    backend: Callable[[], ChatBackend],
    forwarded: Callable[[Request], Metadata],
) -> Callable[[Request], Any]:
    request_class: type[Message] = _message_class(method.input_type.name)

    async def endpoint(request: Request) -> Response:
        message = request_class()
        try:
            if body_field:
                raw = await request.body()
                if len(raw) > _MAX_ADMIN_BODY:
                    return gateway_error(413, "request_too_large", "admin request body is too large")
                data = orjson.loads(raw) if raw.strip() else {}
                if not isinstance(data, dict):
                    return gateway_error(400, "invalid_request_error", "the body must be a JSON object")
                target = message if body_field == "*" else getattr(message, body_field)
                json_format.ParseDict(_lists_as_string_lists(data, target), target)
            query = _query_values(dict(request.query_params.items()), message)
            if query:
                json_format.ParseDict(query, message)
            for name, value in request.path_params.items():
                _set_path(message, name.split("__"), value)
        except (orjson.JSONDecodeError, json_format.ParseError) as exc:
            return gateway_error(400, "invalid_request_error", f"bad admin request: {exc}")
        try:
            reply = await backend().admin(method.name, message, forwarded(request))
        except BackendError as err:
            return error_response(err.error)
        # no-store: answers may hold a new key's secret (create, rotate) and are never worth caching.
        return Response(
            orjson.dumps(message_to_json(reply)), media_type="application/json", headers=_NO_STORE
        )

    return endpoint


def _lists_as_string_lists(data: dict[str, Any], target: Message) -> dict[str, Any]:
    """Let REST callers write ``"allowed_models": ["a*"]`` for a ``StringList`` field (proto3 needs
    the wrapper message to tell "set to empty" from "unchanged")."""
    fields = target.DESCRIPTOR.fields_by_name
    return {
        name: {"values": value}
        if isinstance(value, list)
        and name in fields
        and fields[name].message_type is chat_pb2.StringList.DESCRIPTOR
        else value
        for name, value in data.items()
    }


_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def _query_values(query: dict[str, str], message: Message) -> dict[str, Any]:
    """Query strings are text; json_format wants a JSON bool for a bool field (``?errors_only=true``)."""
    fields = message.DESCRIPTOR.fields_by_name
    return {
        name: _BOOLS.get(value.lower(), value)
        if name in fields and fields[name].type == fields[name].TYPE_BOOL
        else value
        for name, value in query.items()
    }


def _message_class(name: str) -> type[Message]:
    return getattr(admin_pb2, name)  # type: ignore[no-any-return]


def _set_path(message: Message, parts: list[str], value: str) -> None:
    for part in parts[:-1]:
        message = getattr(message, part)
    setattr(message, parts[-1], value)
