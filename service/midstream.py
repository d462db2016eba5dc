"""Mid-stream failover: a stream that breaks after content went out continues on a fallback.

Before the first content chunk a failing stream simply falls back (``service/resilience.py``).
After it, the caller holds part of an answer, and ending with an error loses it all. So when a
stream is cut, stalls or sends an error event (a provider-caused failure, never a caller error),
and a later target of the route plan is left, the engine asks that target to *continue* the
answer:

- **Continuation.** The fallback gets the original conversation plus the text the caller has
  received, as a final assistant message (a prefill), with its trailing whitespace removed
  (Anthropic refuses a prefill that ends in whitespace, and the others tokenise better without
  it). ``max_tokens`` shrinks by the tokens already sent. Only targets whose provider
  ``accepts_prefill`` are asked; the others are skipped (a ``prefill_unsupported`` attempt).
- **Restart.** When the caller has received no text yet (only the role chunk, or tool calls
  that were still held, see below), there is nothing to continue: the fallback gets the
  original request and any target will do.
- **The seam** (:class:`Seam`). The continuation's first characters are held until it is clear
  how they join what the caller has:

  1. the caller's text ended in whitespace: the continuation's leading whitespace is dropped
     (it would double the space); otherwise it is kept (a new word begins);
  2. the fallback *restarted* the answer instead of continuing it (its text begins with the
     caller's text): what the caller already has is dropped, and the rest is sent. A restart
     that drifts from the caller's text after ``MIN_OVERLAP`` characters cannot be joined
     without retracting text, so the continuation fails (the caller gets the original error);
     one that ends before it got past the caller's text adds nothing;
  3. the fallback *repeated the tail* of the prefill before continuing (``MIN_OVERLAP`` or more
     characters that end the caller's text): the repeat is dropped;
  4. otherwise the continuation is sent as it is.

  Shorter overlaps than ``MIN_OVERLAP`` are kept: below that, an overlap is as likely to be the
  text's own repetition ("that that") as the model's.
- **Tool calls are never spliced** (:class:`ToolCallHold`). While failover is possible, each
  tool call's deltas are held until the call is complete (the next call starts, or the choice
  finishes) and then sent whole, as one delta. A failure inside a call therefore loses only
  held deltas: with no text sent, the fallback restarts the whole answer. Once a complete call
  has gone out, the answer cannot be continued (no dialect takes a prefill of tool calls), and
  a later failure ends with the original error.
- **What else cannot be continued:** a refusal, audio, or content parts already sent; ``n`` > 1.
  The fallback's reasoning (thinking) is not shown after the seam: the caller has text
  already, and thinking after text would read as part of the answer. Its tokens are billed.
- **Honest accounting.** The broken attempt's tokens were generated and are billed: its usage
  (the upstream's own, or an estimate from the request size and the text sent, marked
  ``usage_estimated``) and cost go into its entry of ``extra_fields.attempts``, and into the
  call's usage and cost (:func:`add_usage`), which the final usage chunk reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from service.pricing import estimate_prompt_tokens
from switchyard.v1 import chat_pb2 as pb

__all__ = [
    "MIN_OVERLAP",
    "Seam",
    "SeamError",
    "Splice",
    "ToolCallHold",
    "add_usage",
    "continuation_request",
    "estimated_usage",
]

# An overlap at the seam this long or longer is the model repeating itself, not the text's own.
MIN_OVERLAP = 8
# How much of the continuation is held to look for a repeated tail of the prefill.
TAIL_WINDOW = 64
# Characters per token, for estimates only (the upstream's own count wins when it has one).
CHARS_PER_TOKEN = 4


class SeamError(Exception):
    """The continuation cannot be joined to what the caller has without retracting text."""


class Splice:
    """One stream's failover state: what the caller has received, the tool calls held back,
    and (after a failover) the seam and the stream's identity, which the continuation keeps."""

    __slots__ = (
        "_segment_start",
        "_text",
        "blocked",
        "created",
        "hold",
        "reasoning_sent",
        "seam",
        "stream_id",
    )

    def __init__(self) -> None:
        self._text: list[str] = []
        self.blocked: str | None = None  # why the answer can no longer be continued
        self.reasoning_sent = False
        self.hold = ToolCallHold()
        self.seam: Seam | None = None
        self.stream_id: str | None = None
        self.created = 0
        self._segment_start = 0  # where the current upstream's text begins in ``text``

    @property
    def text(self) -> str:
        """The text the caller has received."""
        if len(self._text) > 1:
            self._text[:] = ["".join(self._text)]
        return self._text[0] if self._text else ""

    def shape(self, chunk: pb.ChatCompletionChunk) -> Sequence[pb.ChatCompletionChunk]:
        """The chunks to send for ``chunk`` (tool calls held, the seam applied); noted as sent."""
        choices = chunk.choices
        if not choices and self.seam is None:
            return (chunk,)  # usage, or Azure's prompt filter results: nothing to hold or note
        if self.stream_id is None:
            self.stream_id, self.created = chunk.id, chunk.created
        elif self.seam is not None:
            if not self._after_seam(chunk):
                return ()
        elif len(choices) == 1 and not self.hold.holding:
            delta = choices[0].delta
            if not (delta.tool_calls or delta.refusal or choices[0].index):
                # The common chunk: text (or reasoning) of the only choice.
                if delta.text:
                    self._text.append(delta.text)
                elif delta.reasoning or delta.reasoning_details:
                    self.reasoning_sent = True
                if delta.HasField("audio") or delta.HasField("parts"):
                    self.blocked = "audio or content parts were sent"
                return (chunk,)
        out = self.hold.take(chunk)
        for piece in out:
            self._note(piece)
        return out

    def end(self, template: pb.ChatCompletionChunk | None) -> Sequence[pb.ChatCompletionChunk]:
        """The stream ended without a finish chunk: what is still held goes out."""
        if template is None:
            return ()
        out: list[pb.ChatCompletionChunk] = []
        if self.seam is not None:
            tail = self.seam.flush()
            if tail:
                chunk = _like(template, self.stream_id or template.id, self.created)
                chunk.choices.add(index=0).delta.text = tail
                out.append(chunk)
        out += self.hold.flush(template)
        for piece in out:
            self._note(piece)
        return out

    def failed(self) -> str | None:
        """The stream broke: why the answer cannot be continued (None: it can)."""
        self.hold.discard()
        return self.blocked

    def segment_text(self) -> str:
        """The text the current upstream sent the caller (what a broken attempt generated)."""
        return self.text[self._segment_start :]

    def continue_from(self) -> str:
        """A fallback takes over: the seam for its text, given what the caller has."""
        text = self.text
        self.seam = Seam(text)
        self._segment_start = len(text)
        return text

    def _after_seam(self, chunk: pb.ChatCompletionChunk) -> bool:
        """Rewrite a continuation's chunk for the caller; False: nothing of it is sent."""
        assert self.seam is not None and self.stream_id is not None
        chunk.id, chunk.created = self.stream_id, self.created
        if not chunk.choices:
            return chunk.HasField("usage")  # Azure's prompt filter results were sent already
        for choice in chunk.choices:
            delta = choice.delta
            delta.ClearField("role")  # the caller has the role chunk
            if delta.reasoning or delta.reasoning_details:
                # The caller has text already; thinking after it would read as the answer.
                delta.ClearField("reasoning")
                del delta.reasoning_details[:]
            text = self.seam.feed(delta.text) if delta.text else ""
            if choice.finish_reason or delta.tool_calls:
                text += self.seam.flush()
            if text:
                delta.text = text
            else:
                delta.ClearField("text")
        return True

    def _note(self, chunk: pb.ChatCompletionChunk) -> None:
        for choice in chunk.choices:
            delta = choice.delta
            if choice.index != 0:
                self.blocked = "the answer has several choices"
            if delta.text:
                self._text.append(delta.text)
            if delta.tool_calls:
                self.blocked = "a complete tool call was sent"
            if delta.refusal or delta.HasField("audio") or delta.HasField("parts"):
                self.blocked = "a refusal, audio or content parts were sent"
            if delta.reasoning or delta.reasoning_details:
                self.reasoning_sent = True


def _like(template: pb.ChatCompletionChunk, stream_id: str, created: int) -> pb.ChatCompletionChunk:
    return pb.ChatCompletionChunk(
        id=stream_id, created=created, model=template.model, object=template.object or "chat.completion.chunk"
    )


class ToolCallHold:
    """Holds each streamed tool call until it is complete, then releases it as one delta."""

    __slots__ = ("_calls", "_template")

    def __init__(self) -> None:
        self._calls: dict[int, pb.ToolCall] = {}
        self._template: pb.ChatCompletionChunk | None = None

    def take(self, chunk: pb.ChatCompletionChunk) -> list[pb.ChatCompletionChunk]:
        """The chunks to send for ``chunk``: complete calls first, then what is left of it."""
        out: list[pb.ChatCompletionChunk] = []
        for choice in chunk.choices:
            if not (choice.HasField("delta") and choice.delta.tool_calls):
                continue
            for call in choice.delta.tool_calls:
                index = call.index if call.HasField("index") else 0
                if index not in self._calls:
                    out += self._release(chunk, below=index)
                    self._calls[index] = held = pb.ToolCall(index=index)
                else:
                    held = self._calls[index]
                if call.HasField("id"):
                    held.id = call.id
                if call.HasField("type"):
                    held.type = call.type
                if call.HasField("function"):
                    function = call.function
                    if function.HasField("name"):
                        held.function.name = held.function.name + function.name
                    if function.HasField("arguments"):
                        held.function.arguments = held.function.arguments + function.arguments
                if call.extra_json and not held.extra_json:
                    held.extra_json = call.extra_json
            del choice.delta.tool_calls[:]
        if any(choice.finish_reason for choice in chunk.choices):
            out += self.flush(chunk)
        if _carries_anything(chunk):
            out.append(chunk)
        return out

    def flush(self, template: pb.ChatCompletionChunk) -> list[pb.ChatCompletionChunk]:
        """Every held call, complete now (the choice finished or the stream ended)."""
        return self._release(template, below=None)

    @property
    def holding(self) -> bool:
        return bool(self._calls)

    def _release(self, template: pb.ChatCompletionChunk, below: int | None) -> list[pb.ChatCompletionChunk]:
        out = []
        for index in sorted(self._calls):
            if below is not None and index >= below:
                break
            call = self._calls.pop(index)
            chunk = _like(template, template.id, template.created)
            chunk.choices.add(index=0).delta.tool_calls.append(call)
            out.append(chunk)
        return out

    def discard(self) -> None:
        """A failure: the held calls are lost with their attempt (the fallback restarts them)."""
        self._calls.clear()


def _carries_anything(chunk: pb.ChatCompletionChunk) -> bool:
    if chunk.HasField("usage") or chunk.search_results or chunk.citations or chunk.videos:
        return True
    for choice in chunk.choices:
        if choice.finish_reason or choice.HasField("logprobs") or choice.extra_json:
            return True
        if choice.HasField("delta"):
            delta = choice.delta
            if (
                delta.text
                or delta.refusal
                or delta.reasoning
                or delta.reasoning_details
                or delta.HasField("role")
                or delta.HasField("audio")
                or delta.HasField("parts")
                or delta.extra_json
            ):
                return True
    return not chunk.choices  # e.g. Azure's prompt filter results


class Seam:
    """Joins a continuation's text to the text the caller has (see the module docstring)."""

    __slots__ = ("_buffer", "_sent", "_trailing_space", "decided")

    def __init__(self, sent: str) -> None:
        self._sent = sent.rstrip()
        self._trailing_space = len(sent) > len(self._sent)
        self._buffer = ""
        self.decided = not self._sent  # nothing to join to: pass everything through

    def feed(self, text: str) -> str:
        """The part of ``text`` to send now ("" while the seam is undecided)."""
        if self.decided:
            return text
        self._buffer += text
        return self._decide(final=False)

    def flush(self) -> str:
        """The continuation ended (or something other than text came): decide with what there is."""
        if self.decided:
            return ""
        return self._decide(final=True)

    def _decide(self, *, final: bool) -> str:
        head = self._buffer.lstrip()
        if not head and not final:
            return ""  # only whitespace so far: which rule applies is not known yet
        sent = self._sent
        # Rule 2, a restart: the continuation so far is a prefix of what was sent.
        common = min(len(head), len(sent))
        if head[:common] == sent[:common]:
            if len(head) > len(sent):
                return self._done(_join(head[len(sent) :], self._trailing_space))
            if final:
                return self._done("")  # a restart that ended early: the caller has all of it
            return ""  # keep watching: it may still turn out to be a restart
        if _shared_prefix(head, sent) >= MIN_OVERLAP:
            raise SeamError("the fallback restarted the answer with different text")
        # Rule 3, a repeated tail. While what came so far occurs in the caller's text, a longer
        # repeat is still possible: wait (up to TAIL_WINDOW characters) for the rest of it.
        if not final and len(head) < TAIL_WINDOW and len(sent) >= MIN_OVERLAP and head in sent:
            return ""
        for size in range(min(len(head), len(sent), TAIL_WINDOW), MIN_OVERLAP - 1, -1):
            if sent.endswith(head[:size]):
                return self._done(_join(head[size:], self._trailing_space))
        # Rules 1 and 4.
        return self._done(head if self._trailing_space else self._buffer)

    def _done(self, text: str) -> str:
        self.decided = True
        self._buffer = ""
        return text


def _join(rest: str, after_space: bool) -> str:
    return rest.lstrip() if after_space else rest


def _shared_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def continuation_request(
    request: pb.ChatCompletionRequest, prefill: str, tokens_sent: int
) -> pb.ChatCompletionRequest:
    """The request a fallback continues the answer from: the conversation, then ``prefill``."""
    follow_up = pb.ChatCompletionRequest()
    follow_up.CopyFrom(request)
    if not prefill:
        return follow_up  # a restart
    follow_up.messages.add(role="assistant", text=prefill)
    for field in ("max_tokens", "max_completion_tokens"):
        if follow_up.HasField(field):
            setattr(follow_up, field, max(1, getattr(follow_up, field) - tokens_sent))
    return follow_up


def estimated_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimated_usage(body_bytes: int, text: str) -> pb.Usage:
    """What a broken attempt likely consumed, when it broke before reporting its usage."""
    prompt = estimate_prompt_tokens(body_bytes)
    completion = estimated_tokens(text)
    return pb.Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


_COST_FIELDS = (
    "input_tokens_cost",
    "output_tokens_cost",
    "reasoning_tokens_cost",
    "citation_tokens_cost",
    "search_queries_cost",
    "request_cost",
    "total_cost",
)


def add_usage(total: pb.Usage, part: pb.Usage) -> None:
    """Add ``part``'s tokens (and cost, where both are priced) into ``total``."""
    total.prompt_tokens += part.prompt_tokens
    total.completion_tokens += part.completion_tokens
    total.total_tokens += part.total_tokens
    for details in ("prompt_tokens_details", "completion_tokens_details"):
        if part.HasField(details):
            into = getattr(total, details)
            for field, value in getattr(part, details).ListFields():
                if isinstance(value, int):
                    setattr(into, field.name, getattr(into, field.name) + value)
    if total.HasField("cost") and part.HasField("cost"):
        for name in _COST_FIELDS:
            if part.cost.HasField(name):
                setattr(total.cost, name, getattr(total.cost, name) + getattr(part.cost, name))
    else:
        total.ClearField("cost")  # one part has no price: the sum has none either
