"""Every HTTP response carries ``x-request-id``: the caller's, or one made here.

A pure ASGI middleware (no Request objects on the hot path). It puts the id in the
scope under ``SCOPE_KEY`` so the routes forward it to the service as call metadata and
put it in the error bodies they make themselves (the contract's ``event_id``).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchyard.request_id import HEADER, request_id_from_headers

SCOPE_KEY = "switchyard.request_id"
_HEADER = HEADER.encode()


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from_headers(scope["headers"])
        scope[SCOPE_KEY] = request_id
        header = (_HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


def request_id_of(scope: Scope) -> str | None:
    value = scope.get(SCOPE_KEY)
    return value if isinstance(value, str) else None
