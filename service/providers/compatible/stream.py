"""A compatible upstream's stream: OpenAI's, with reasoning renamed and search results kept.

Perplexity sends ``search_results``, ``citations`` and ``videos`` on its last chunks, not
necessarily the one with the finish reason. The caller's last chunk is the finish chunk when
it did not ask for usage and the usage chunk when it did, so both get whatever the stream has
carried so far: whichever comes last, the caller finds the results there.
"""

from __future__ import annotations

from typing import Any

from service.providers.compatible import adapt
from service.providers.compatible.options import CompatibleOptions
from service.providers.openai_wire import OpenAIStream
from switchyard.v1 import chat_pb2 as pb

_RESULT_FIELDS = ("search_results", "citations", "videos")


class CompatibleStream(OpenAIStream):
    __slots__ = ("_options", "_results")

    def __init__(self, options: CompatibleOptions) -> None:
        super().__init__()
        self._options = options
        self._results: pb.ChatCompletionChunk | None = None  # the result fields seen so far

    def decode(self, parsed: dict[str, Any]) -> pb.ChatCompletionChunk:
        options = self._options
        if options.reasoning_field:
            adapt.reasoning_from_upstream(parsed, "delta", options.reasoning_field)
        if options.usage_fields:
            adapt.usage_from_upstream(parsed, options.usage_fields)
        chunk = super().decode(parsed)
        if chunk.search_results or chunk.citations or chunk.videos:
            self._remember(chunk)
        elif self._results is not None and _is_final(chunk):
            chunk.MergeFrom(self._results)
        return chunk

    def _remember(self, chunk: pb.ChatCompletionChunk) -> None:
        results = self._results
        if results is None:
            results = self._results = pb.ChatCompletionChunk()
        for name in _RESULT_FIELDS:
            got = getattr(chunk, name)
            if got:
                results.ClearField(name)
                getattr(results, name).extend(got)
            elif getattr(results, name) and _is_final(chunk):
                getattr(chunk, name).extend(getattr(results, name))


def _is_final(chunk: pb.ChatCompletionChunk) -> bool:
    if not chunk.choices:
        return chunk.HasField("usage")
    return any(choice.finish_reason for choice in chunk.choices)
