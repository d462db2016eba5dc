"""The gRPC face of the embeddings engine: errors become rich statuses here, as for chat."""

from __future__ import annotations

import grpc

from service.embeddings.engine import EmbeddingsEngine
from service.servicer import answer_unary
from switchyard.v1 import embeddings_pb2 as epb
from switchyard.v1 import embeddings_pb2_grpc


class EmbeddingsServicer(embeddings_pb2_grpc.EmbeddingsServicer):
    def __init__(self, engine: EmbeddingsEngine) -> None:
        self.engine = engine

    async def Create(  # gRPC method names are CamelCase
        self, request: epb.EmbeddingsRequest, context: grpc.aio.ServicerContext
    ) -> epb.EmbeddingsResponse:
        create = self.engine.create
        return await answer_unary(context, lambda left, meta, rid: create(request, left, meta, rid))
