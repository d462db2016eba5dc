"""The embeddings capability in OpenAI's dialect: ``POST …/embeddings``, written once.

OpenAI, Azure OpenAI and every OpenAI-compatible provider take the same body and answer
with the same JSON; they differ only in the URL (``embeddings_url``) and, as for chat, in
the auth header and whether the body names the model. A provider class declares the
capability by subclassing :class:`OpenAIEmbeddings` instead of ``OpenAIWire``; providers
whose APIs have no such endpoint here (Anthropic, Gemini, Vertex AI, Bedrock) simply do not
(``base.Embedder`` is what the engine checks).

**Vectors pass through as they came.** ``encoding_format`` goes upstream as the caller set
it and the answer comes back in that form: ``base64`` as its decoded bytes (``float32_le``),
never unpacked into numbers, and ``float`` as doubles, so each number's JSON text
round-trips exactly. Asking the upstream for base64 and converting for a ``float`` caller
would save parsing the numbers' text, but it would change the numbers' printed digits
(float32 widened to double) and depend on every compatible server supporting base64, which
not all do; a caller who wants the cheap form asks for it (the ``openai`` SDK does by default).
"""

from __future__ import annotations

import orjson

from service.providers.base import Prepared
from service.providers.openai_wire import OpenAIWire
from service.routing import Target
from switchyard import codec
from switchyard.config import KeyConfig
from switchyard.v1 import embeddings_pb2 as epb

EMBEDDINGS_PATH = "/embeddings"


class OpenAIEmbeddings(OpenAIWire):
    """An OpenAI-dialect provider that also serves embeddings; subclasses give ``embeddings_url``."""

    def embeddings_url(self, prepared: Prepared, key: KeyConfig) -> str:
        raise NotImplementedError

    def prepare_embeddings(self, request: epb.EmbeddingsRequest, target: Target) -> Prepared:
        body = codec.embeddings_request_to_dict(request)
        body.pop("fallbacks", None)
        if self.body_names_model or "model" in body:
            body["model"] = target.model
        version = request.api_version if request.HasField("api_version") else None
        return Prepared(target, orjson.dumps(body), False, version or None)

    async def embed(self, prepared: Prepared, key: KeyConfig) -> epb.EmbeddingsResponse:
        content = await self.post(prepared, key, self.embeddings_url(prepared, key))
        data = self.json_object(prepared, content)
        try:
            answer = codec.embeddings_response_from_dict(data)
        except codec.CodecError as exc:
            raise self.bad_response(prepared, exc.message) from None
        if not answer.data:
            raise self.bad_response(prepared, "an embeddings answer without `data`")
        if self._keep_raw:
            extra = answer.extra_fields
            extra.raw_request_json = prepared.body.decode()
            extra.raw_response_json = content.decode()
        return answer
