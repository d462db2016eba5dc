"""The gRPC face of the embeddings engine: errors become rich statuses here, as for chat."""

from __future__ import annotations

import grpc

from service.embeddings.engine import EmbeddingsEngine
from service.pipeline import ChatError
from switchyard.errors import encode_status
from switchyard.request_id import HEADER as REQUEST_ID_HEADER
from switchyard.request_id import request_id_from_metadata
from switchyard.v1 import embeddings_pb2 as epb
from switchyard.v1 import embeddings_pb2_grpc


class EmbeddingsServicer(embeddings_pb2_grpc.EmbeddingsServicer):
    def __init__(self, engine: EmbeddingsEngine) -> None:
        self.engine = engine

    async def Create(  # gRPC method names are CamelCase
        self, request: epb.EmbeddingsRequest, context: grpc.aio.ServicerContext
    ) -> epb.EmbeddingsResponse:
        metadata = context.invocation_metadata() or ()
        request_id = request_id_from_metadata(metadata)
        # The request id goes back as initial metadata, on success and on error alike.
        await context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
        try:
            return await self.engine.create(request, context.time_remaining(), metadata, request_id)
        except ChatError as err:
            await context.abort(*encode_status(err.body, err.retry_after_s))
            raise AssertionError("unreachable") from None  # abort() always raises
