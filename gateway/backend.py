"""How the gateway reaches the service: over a gRPC channel, or in-process.

Both backends drive the same ``ChatCompletionsServicer`` and ``EmbeddingsServicer`` methods
and decode errors with the same ``switchyard.errors.decode_status``, so a REST caller gets
the same answer whichever way ``switchyard`` runs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import grpc
from google.protobuf.message import Message

from switchyard.errors import DecodedError, decode_status
from switchyard.grpc_options import BALANCING_OPTIONS, RECONNECT_OPTIONS
from switchyard.v1 import admin_pb2_grpc, chat_pb2_grpc, embeddings_pb2_grpc
from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import embeddings_pb2 as epb

if TYPE_CHECKING:  # the gateway-only process never imports the service stack
    from service.admin import AdminServicer
    from service.embeddings import EmbeddingsServicer
    from service.servicer import ChatCompletionsServicer

Metadata = Sequence[tuple[str, str]]
ADMIN_TIMEOUT_S = 30.0


class BackendError(Exception):
    def __init__(self, error: DecodedError) -> None:
        super().__init__(error.body.error.message)
        self.error = error


class ChatBackend(Protocol):
    async def create(
        self, request: pb.ChatCompletionRequest, metadata: Metadata, timeout_s: float
    ) -> pb.ChatCompletionResponse: ...

    def create_stream(
        self, request: pb.ChatCompletionRequest, metadata: Metadata, timeout_s: float | None
    ) -> AsyncIterator[pb.ChatCompletionChunk]:
        """Raises BackendError, at the first read for an error before any chunk.

        ``timeout_s`` None: no deadline on the whole stream (a long generation may
        run for many minutes); the service still bounds the wait for the first chunk.
        """
        ...

    async def embed(
        self, request: epb.EmbeddingsRequest, metadata: Metadata, timeout_s: float
    ) -> epb.EmbeddingsResponse:
        """Call ``Embeddings.Create``; raises BackendError."""
        ...

    async def admin(self, method: str, request: Message, metadata: Metadata) -> Message:
        """Call the Admin service's ``method``; raises BackendError."""
        ...

    async def ready(self) -> bool: ...

    async def aclose(self) -> None: ...


class GrpcBackend:
    """One long-lived channel to the service (create it inside the running loop).

    Calls are not ``wait_for_ready``: while the service is down they fail at once with
    UNAVAILABLE (503 to the REST caller) instead of queueing until their deadline.
    """

    def __init__(self, target: str, options: Sequence[tuple[str, int]]) -> None:
        self._channel = grpc.aio.insecure_channel(
            target, options=[*options, *RECONNECT_OPTIONS, *BALANCING_OPTIONS]
        )
        self._stub = chat_pb2_grpc.ChatCompletionsStub(self._channel)
        self._embeddings = embeddings_pb2_grpc.EmbeddingsStub(self._channel)
        self._admin = admin_pb2_grpc.AdminStub(self._channel)
        self._health_check = self._channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=lambda _: b"",
            response_deserializer=lambda data: data,
        )

    async def create(
        self, request: pb.ChatCompletionRequest, metadata: Metadata, timeout_s: float
    ) -> pb.ChatCompletionResponse:
        try:
            return await self._stub.Create(request, metadata=metadata, timeout=timeout_s)
        except grpc.aio.AioRpcError as err:
            raise _backend_error(err) from None

    async def create_stream(
        self, request: pb.ChatCompletionRequest, metadata: Metadata, timeout_s: float | None
    ) -> AsyncIterator[pb.ChatCompletionChunk]:
        call = self._stub.CreateStream(request, metadata=metadata, timeout=timeout_s)
        try:
            while True:
                chunk = await call.read()
                if chunk is grpc.aio.EOF:
                    return
                yield chunk
        except grpc.aio.AioRpcError as err:
            raise _backend_error(err) from None
        finally:
            call.cancel()  # a no-op once the call is done; cancels the service side otherwise

    async def embed(
        self, request: epb.EmbeddingsRequest, metadata: Metadata, timeout_s: float
    ) -> epb.EmbeddingsResponse:
        try:
            return await self._embeddings.Create(request, metadata=metadata, timeout=timeout_s)
        except grpc.aio.AioRpcError as err:
            raise _backend_error(err) from None

    async def admin(self, method: str, request: Message, metadata: Metadata) -> Message:
        try:
            return await getattr(self._admin, method)(request, metadata=metadata, timeout=ADMIN_TIMEOUT_S)  # type: ignore[no-any-return]
        except grpc.aio.AioRpcError as err:
            raise _backend_error(err) from None

    async def ready(self) -> bool:
        try:
            # HealthCheckResponse{status: SERVING} is b"\x08\x01".
            return await self._health_check(b"", timeout=2.0) == b"\x08\x01"
        except grpc.aio.AioRpcError:
            return False

    async def aclose(self) -> None:
        await self._channel.close()


def _backend_error(err: grpc.aio.AioRpcError) -> BackendError:
    return BackendError(decode_status(err.code(), err.details(), tuple(err.trailing_metadata() or ())))


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Metadata) -> None:
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


class _InProcessContext:
    """The slice of ``grpc.aio.ServicerContext`` the servicer uses, for direct calls."""

    def __init__(self, metadata: Metadata, timeout_s: float | None) -> None:
        self._metadata = tuple(metadata)
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    async def send_initial_metadata(self, metadata: Metadata) -> None:
        return None  # the gateway made the request id it would carry, and already answers with it

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()) -> None:
        raise _Aborted(code, details, trailing_metadata)


class InProcessBackend:
    """Calls the servicer directly, as grpc-gateway's in-process registration does: no
    serialisation and no socket, but the same servicer code and the same error statuses."""

    def __init__(
        self,
        servicer: ChatCompletionsServicer,
        admin: AdminServicer,
        is_serving: Callable[[], bool],
        embeddings: EmbeddingsServicer | None = None,
    ) -> None:
        self._servicer = servicer
        self._admin = admin
        self._is_serving = is_serving
        self._embeddings = embeddings

    async def create(
        self, request: pb.ChatCompletionRequest, metadata: Metadata, timeout_s: float
    ) -> pb.ChatCompletionResponse:
        try:
            return await self._servicer.Create(request, _InProcessContext(metadata, timeout_s))  # type: ignore[arg-type]
        except _Aborted as err:
            raise BackendError(decode_status(err.code, err.details, err.trailing_metadata)) from None

    async def create_stream(
        self, request: pb.ChatCompletionRequest, metadata: Metadata, timeout_s: float | None
    ) -> AsyncIterator[pb.ChatCompletionChunk]:
        stream = self._servicer.CreateStream(request, _InProcessContext(metadata, timeout_s))  # type: ignore[arg-type]
        try:
            async for chunk in stream:
                yield chunk
        except _Aborted as err:
            raise BackendError(decode_status(err.code, err.details, err.trailing_metadata)) from None
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def embed(
        self, request: epb.EmbeddingsRequest, metadata: Metadata, timeout_s: float
    ) -> epb.EmbeddingsResponse:
        if self._embeddings is None:
            raise BackendError(decode_status(grpc.StatusCode.UNIMPLEMENTED, "embeddings are not served", ()))
        try:
            return await self._embeddings.Create(request, _InProcessContext(metadata, timeout_s))  # type: ignore[arg-type]
        except _Aborted as err:
            raise BackendError(decode_status(err.code, err.details, err.trailing_metadata)) from None

    async def admin(self, method: str, request: Message, metadata: Metadata) -> Message:
        try:
            return await getattr(self._admin, method)(request, _InProcessContext(metadata, ADMIN_TIMEOUT_S))  # type: ignore[no-any-return]
        except _Aborted as err:
            raise BackendError(decode_status(err.code, err.details, err.trailing_metadata)) from None

    async def ready(self) -> bool:
        return self._is_serving()

    async def aclose(self) -> None:
        return None
