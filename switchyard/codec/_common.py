"""The shared machinery of the codec: the error type, the JSON type checks and the two
table-driven walkers (JSON dict -> constructor kwargs, message -> JSON dict).

Both walkers run off per-message tables built once, at import, from the generated
descriptors; at run time they do a dict lookup per *present* key or field and nothing else:

- Decoding walks the caller's dict (so unknown keys are found for free and land in the
  message's ``extra_json``), checks each value's JSON type and builds a tree of plain
  kwargs dicts. The caller hands that tree to the message constructor once, and upb
  builds the whole message in C (faster than setting attributes one by one).
- Encoding walks ``Message.ListFields()``, which yields only the fields that are set
  (optional scalars with presence, non-empty repeated fields, the set member of a
  oneof), so "emit only what is set" needs no HasField calls. Keys that must always be
  present come from a per-type template dict that the set fields overwrite.

Conventions taken from ``protos/switchyard/v1/chat.proto``: a field ``foo_json`` holds
the JSON text of key ``foo``; ``extra_json`` holds the object of keys the proto does not
model; the messages in ``JSON_WRAPPERS`` exist only to give a list or map presence (or
oneof membership) and are written in JSON as their single field's value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Container, Mapping
from operator import attrgetter
from typing import Any, Final

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor

__all__ = [
    "JSON_WRAPPERS",
    "MAX_JSON_DEPTH",
    "BadValue",
    "CodecError",
    "Decoder",
    "Encoder",
    "bad_type",
    "check_str",
    "decoder",
    "define_decoder",
    "define_encoder",
    "encoder",
    "json_depth_over",
    "json_text",
    "json_text_depth_over",
    "list_of",
    "many",
    "merge_extra",
    "skip",
]


class CodecError(ValueError):
    """Caller JSON of the wrong shape/type.

    ``param`` is the dotted path of the offending value (``messages[0].content``,
    ``temperature``, or ``body`` for the body itself); ``message`` is for humans.
    """

    param: str
    message: str

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message

    def __reduce__(self) -> tuple[type[CodecError], tuple[str, str]]:
        return (type(self), (self.param, self.message))


class BadValue(Exception):
    """A wrong value deep inside a document. ``param`` starts relative to the value that
    failed and each enclosing object or list prefixes its key on the way out, so the
    happy path never builds a path string."""

    __slots__ = ("detail", "kind", "param")

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.param = ""

    def under(self, key: str) -> BadValue:
        p = self.param
        self.param = key if not p else key + p if p[0] == "[" else f"{key}.{p}"
        return self

    def public(self, root: str = "body") -> CodecError:
        param = self.param or root
        return CodecError(param, f"Invalid {self.kind} for '{param}': {self.detail}")


_TYPE_NAMES: Final = {
    type(None): "null",
    bool: "a boolean",
    int: "an integer",
    float: "a decimal",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def bad_type(expected: str, value: Any) -> BadValue:
    got = _TYPE_NAMES.get(type(value)) or f"a {type(value).__name__}"
    return BadValue("type", f"expected {expected}, but got {got} instead.")


# ------------------------------------------------------------------ scalar checks
# Each takes a non-null JSON value and returns what goes into the proto field.

_I32: Final = (-(2**31), 2**31 - 1)
_I64: Final = (-(2**63), 2**63 - 1)


def check_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    raise bad_type("a string", v)


def check_bool(v: Any) -> bool:
    if v is True or v is False:
        return v
    raise bad_type("a boolean", v)


def check_double(v: Any) -> float:
    if type(v) is float:
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        try:
            return float(v)
        except OverflowError:
            raise BadValue("value", "number out of range.") from None
    raise bad_type("a number", v)


def _check_int(v: Any, lo: int, hi: int) -> int:
    # Integral floats (JSON `5.0`) are accepted; bools and fractions are not.
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
        raise bad_type("an integer", v)
    v = int(v)
    if lo <= v <= hi:
        return v
    raise BadValue("value", f"expected an integer between {lo} and {hi}.")


def check_int32(v: Any) -> int:
    if type(v) is int and -2147483648 <= v <= 2147483647:
        return v
    return _check_int(v, *_I32)


def check_int64(v: Any) -> int:
    if type(v) is int and -9223372036854775808 <= v <= 9223372036854775807:
        return v
    return _check_int(v, *_I64)


# How deep a free-form JSON value (a schema, tool_choice, an unknown key) may nest. Deeper
# values are refused where they come in, with a 400 naming the field: orjson stops at 254
# levels and the standard library at the interpreter's recursion limit, so without a
# limit of our own a deep enough body would fail somewhere inside instead.
MAX_JSON_DEPTH: Final = 64


def json_depth_over(v: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Does ``v`` nest more than ``limit`` arrays/objects deep? Iterative, so any depth is safe."""
    stack: list[tuple[Any, int]] = [(v, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def json_text_depth_over(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """The same for JSON text. Counting brackets bounds the depth from above at C speed, so
    only texts with many brackets are parsed; text that is not JSON raises ValueError."""
    if text.count("{") + text.count("[") <= limit:
        return False
    return json_depth_over(loads(text.encode()), limit)


def _too_deep() -> BadValue:
    return BadValue("value", f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")


def json_text(v: Any) -> str:
    """Any JSON value -> its compact JSON text, key order kept (for ``*_json`` fields)."""
    try:
        raw = orjson.dumps(v)
    except orjson.JSONEncodeError:
        raw = None  # too deep for orjson, or an integer beyond 64 bits
    if (raw is None or raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH) and json_depth_over(v):
        raise _too_deep()
    if raw is not None:
        return raw.decode()
    try:
        # orjson refuses integers beyond 64 bits; the standard library keeps them exact.
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise bad_type("a JSON value", v) from None


# A run of 20 digits may be an integer beyond 64 bits, which orjson would read as a float.
_LONG_INTEGER = re.compile(rb"\d{20}")


def loads(raw: bytes) -> Any:
    """Parse a caller's JSON body exactly: orjson, unless it holds an integer orjson would round.

    Raises ``ValueError`` (``orjson.JSONDecodeError`` or ``json.JSONDecodeError``) on bad JSON.
    """
    if _LONG_INTEGER.search(raw) is None:
        return orjson.loads(raw)
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


_SCALAR_CHECKS: Final[dict[int, Callable[[Any], Any]]] = {
    FieldDescriptor.TYPE_STRING: check_str,
    FieldDescriptor.TYPE_BOOL: check_bool,
    FieldDescriptor.TYPE_DOUBLE: check_double,
    FieldDescriptor.TYPE_INT32: check_int32,
    FieldDescriptor.TYPE_INT64: check_int64,
}

JSON_WRAPPERS: Final = frozenset(
    {
        "switchyard.v1.StringList",  # stop: [..]
        "switchyard.v1.LogitBias",  # logit_bias: {..}
        "switchyard.v1.ContentParts",  # content: [..]
        "switchyard.v1.TopLogProbMap",  # logprobs.top_logprobs[i]: {..}
    }
)

# ------------------------------------------------------------------ decoding

Decoder = Callable[[Any], Any]
# JSON key -> (field name, decoder). The decoder gets non-null values only, except when the
# field name is "" (a JSON union mapped to a oneof): then it gets every value, null too,
# and returns (field name, value) or None for "leave unset".
Spec = dict[str, tuple[str, Decoder]]

_DECODERS: dict[str, Decoder] = {}


def _fill(d: dict[str, Any], spec: Spec, kw: dict[str, Any]) -> dict[str, Any] | None:
    """Decode the known keys of ``d`` into ``kw``; return the unknown ones (or None)."""
    unknown: dict[str, Any] | None = None
    for key, v in d.items():
        entry = spec.get(key)
        if entry is None:
            if unknown is None:
                unknown = {}
            unknown[key] = v
            continue
        field, dec = entry
        try:
            if field:
                if v is not None:  # JSON null: leave the field unset
                    kw[field] = dec(v)
            else:
                picked = dec(v)
                if picked is not None:
                    kw[picked[0]] = picked[1]
        except BadValue as e:
            raise e.under(key) from None
    return unknown


def _object_decoder(spec: Spec, keep_extra: bool) -> Decoder:
    def decode(v: Any) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise bad_type("an object", v)
        kw: dict[str, Any] = {}
        unknown = _fill(v, spec, kw)
        if unknown is not None and keep_extra:
            try:
                kw["extra_json"] = json_text(unknown)
            except BadValue:
                # Name the key that holds the bad value (rare path: only on errors).
                for key, value in unknown.items():
                    try:
                        json_text({key: value})
                    except BadValue as e:
                        raise e.under(key) from None
                raise
        return kw

    return decode


def list_of(dec: Decoder) -> Decoder:
    def decode(v: Any) -> list[Any]:
        if not isinstance(v, list):
            raise bad_type("an array", v)
        out = []
        for i, x in enumerate(v):
            try:
                out.append(dec(x))
            except BadValue as e:
                raise e.under(f"[{i}]") from None
        return out

    return decode


def map_of(dec: Decoder) -> Decoder:
    def decode(v: Any) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise bad_type("an object", v)
        out = {}
        for k, x in v.items():
            try:
                out[k] = dec(x)
            except BadValue as e:
                raise e.under(k) from None
        return out

    return decode


def _field_decoder(fd: FieldDescriptor) -> Decoder:
    mt = fd.message_type
    if mt is not None and mt.GetOptions().map_entry:
        return map_of(_SCALAR_CHECKS[mt.fields_by_name["value"].type])
    dec = decoder(mt) if mt is not None else _SCALAR_CHECKS[fd.type]
    return list_of(dec) if fd.is_repeated else dec


def decoder(desc: Descriptor) -> Decoder:
    """The decoder of a message type: the registered one, else the default one."""
    dec = _DECODERS.get(desc.full_name)
    return dec if dec is not None else define_decoder(desc)


def define_decoder(desc: Descriptor, overrides: Spec | None = None, exclude: Container[str] = ()) -> Decoder:
    """Build and register the decoder of ``desc``: every field under its own name (``foo_json``
    under ``foo``), except the fields in ``exclude``; ``overrides`` adds or replaces keys.
    Must run before anything else asks for this type's decoder."""
    if desc.full_name in _DECODERS:
        raise RuntimeError(f"decoder for {desc.full_name} defined twice")
    if desc.full_name in JSON_WRAPPERS:
        (fd,) = desc.fields
        inner, name = _field_decoder(fd), fd.name

        def unwrap(v: Any) -> dict[str, Any]:
            return {name: inner(v)}

        _DECODERS[desc.full_name] = unwrap
        return unwrap
    fields = desc.fields_by_name
    spec: Spec = {}
    # Registered before the spec is filled in, so recursive types find themselves.
    _DECODERS[desc.full_name] = dec = _object_decoder(spec, "extra_json" in fields)
    for fd in desc.fields:
        name = fd.name
        if name == "extra_json" or name in exclude:
            continue
        if name.endswith("_json"):
            spec[name[:-5]] = (name, json_text)
        else:
            spec[name] = (name, _field_decoder(fd))
    if overrides:
        spec.update(overrides)
    return dec


# ------------------------------------------------------------------ encoding

Encoder = Callable[[Any], Any]
# A field conversion: (key, None) copies the value as it is; (key, f) stores f(value);
# (None, f) calls f(out_dict, value) to do something else (merge, skip).
Rule = tuple[str | None, Callable[..., Any] | None]

_ENCODERS: dict[str, Encoder] = {}


def merge_extra(out: dict[str, Any], text: str) -> None:
    if _LONG_INTEGER.search(text.encode()) is None:
        out.update(orjson.loads(text))
    else:
        # Values holding integers beyond 64 bits go out as their exact text.
        out.update({k: orjson.Fragment(json_text(v)) for k, v in json.loads(text).items()})


def skip(out: dict[str, Any], value: Any) -> None:
    return None


def many(enc: Encoder) -> Encoder:
    return lambda items: [enc(m) for m in items]


def _encoder_table(desc: Descriptor, overrides: Mapping[str, Rule]) -> dict[FieldDescriptor, Rule]:
    table: dict[FieldDescriptor, Rule] = {}
    for fd in desc.fields:
        name = fd.name
        rule = overrides.get(name)
        if rule is None:
            rule = _default_rule(fd)
        table[fd] = rule
    return table


def _default_rule(fd: FieldDescriptor) -> Rule:
    name, mt = fd.name, fd.message_type
    if name == "extra_json":
        return (None, merge_extra)
    if name.endswith("_json"):
        return (name[:-5], orjson.Fragment)  # exact text, not re-parsed
    if mt is not None:
        if mt.GetOptions().map_entry:
            return (name, dict)
        enc = encoder(mt)
        return (name, many(enc) if fd.is_repeated else enc)
    if fd.type not in _SCALAR_CHECKS:
        raise TypeError(f"{fd.full_name}: needs an explicit encoder rule")
    return (name, list if fd.is_repeated else None)


def encoder(desc: Descriptor) -> Encoder:
    """The encoder of a message type: the registered one, else the default one."""
    enc = _ENCODERS.get(desc.full_name)
    return enc if enc is not None else define_encoder(desc)


def define_encoder(
    desc: Descriptor,
    *,
    new: Callable[[], dict[str, Any]] = dict,
    overrides: Mapping[str, Rule] | None = None,
    register: bool = True,
) -> Encoder:
    """Build (and by default register) the encoder of ``desc``. ``new`` returns a fresh dict
    holding the keys that are always emitted, with their defaults; set fields overwrite
    them in place and the other set fields follow in field-number order."""
    if register and desc.full_name in _ENCODERS:
        raise RuntimeError(f"encoder for {desc.full_name} defined twice")
    if desc.full_name in JSON_WRAPPERS:
        (fd,) = desc.fields
        _key, conv = _default_rule(fd)
        assert conv is not None  # wrapped fields are repeated or maps
        get = attrgetter(fd.name)

        def wrap(msg: Any) -> Any:
            return conv(get(msg))

        _ENCODERS[desc.full_name] = wrap
        return wrap
    table: dict[FieldDescriptor, Rule] = {}

    def enc(msg: Any) -> dict[str, Any]:
        out = new()
        for fd, value in msg.ListFields():
            key, conv = table[fd]
            if key is None:
                conv(out, value)  # type: ignore[misc]  # a merging rule writes into `out` itself
            elif conv is None:
                out[key] = value
            else:
                out[key] = conv(value)
        return out

    if register:
        _ENCODERS[desc.full_name] = enc  # before the table: recursive types find themselves
    table.update(_encoder_table(desc, overrides or {}))
    return enc
