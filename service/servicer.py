"""The gRPC face of the chat engine: errors become rich statuses at this edge."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from service.engine import ChatEngine, ChatError
from switchyard.errors import encode_status
from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import chat_pb2_grpc


class ChatCompletionsServicer(chat_pb2_grpc.ChatCompletionsServicer):
    def __init__(self, engine: ChatEngine) -> None:
        self._engine = engine

    async def Create(  # gRPC method names are CamelCase
        self, request: pb.ChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChatCompletionResponse:
        try:
            return await self._engine.create(
                request, context.time_remaining(), context.invocation_metadata() or ()
            )
        except ChatError as err:
            await context.abort(*encode_status(err.body, err.retry_after_s))
            raise AssertionError("unreachable") from None  # abort() always raises

    async def CreateStream(  # gRPC method names are CamelCase
        self, request: pb.ChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ChatCompletionChunk]:
        stream = self._engine.create_stream(
            request, context.time_remaining(), context.invocation_metadata() or ()
        )
        try:
            async for chunk in stream:
                yield chunk
        except ChatError as err:
            await context.abort(*encode_status(err.body, err.retry_after_s))
        finally:
            # On cancel (client gone, deadline) this closes the upstream stream
            # too. CancelledError itself is never swallowed here.
            await stream.aclose()  # type: ignore[attr-defined]
