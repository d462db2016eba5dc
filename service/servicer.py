"""The gRPC face of the chat engine: errors become rich statuses at this edge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc

from service.engine import ChatEngine, ChatError
from switchyard.errors import encode_status
from switchyard.request_id import HEADER as REQUEST_ID_HEADER
from switchyard.request_id import request_id_from_metadata
from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import chat_pb2_grpc

T = TypeVar("T")
# What a unary RPC's engine call takes: the time left, the call metadata and the request id.
EngineCall = Callable[[float | None, tuple[tuple[str, str | bytes], ...], str], Awaitable[T]]


async def answer_unary(context: grpc.aio.ServicerContext, call: EngineCall[T]) -> T:
    """A unary RPC of any engine: the request id goes back as initial metadata, on success and
    on error alike, and a ``ChatError`` becomes the rich status."""
    metadata = tuple(context.invocation_metadata() or ())
    request_id = request_id_from_metadata(metadata)
    await context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
    try:
        return await call(context.time_remaining(), metadata, request_id)
    except ChatError as err:
        await context.abort(*encode_status(err.body, err.retry_after_s))
        raise AssertionError("unreachable") from None  # abort() always raises


class ChatCompletionsServicer(chat_pb2_grpc.ChatCompletionsServicer):
    def __init__(self, engine: ChatEngine) -> None:
        self.engine = engine

    async def Create(  # gRPC method names are CamelCase
        self, request: pb.ChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChatCompletionResponse:
        create = self.engine.create
        return await answer_unary(context, lambda left, meta, rid: create(request, left, meta, rid))

    async def CreateStream(  # gRPC method names are CamelCase
        self, request: pb.ChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ChatCompletionChunk]:
        metadata = context.invocation_metadata() or ()
        request_id = request_id_from_metadata(metadata)
        await context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
        stream = self.engine.create_stream(request, context.time_remaining(), metadata, request_id)
        try:
            async for chunk in stream:
                yield chunk
        except ChatError as err:
            await context.abort(*encode_status(err.body, err.retry_after_s))
        finally:
            # On cancel (client gone, deadline) this closes the upstream stream
            # too. CancelledError itself is never swallowed here.
            await stream.aclose()  # type: ignore[attr-defined]
