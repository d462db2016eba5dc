"""Field rules: which request fields an upstream cannot take, each written as one short string.

    logit_bias                        refused whenever it is set
    n!=1                              refused unless it is 1
    response_format.type=json_schema  refused when it has that value
    messages[].name                   ``[]`` looks into every item of a list

A value after ``=``/``!=`` is read as JSON when it parses (``1``, ``true``, ``"x"``), else as a
bare string (``json_schema``). A field that is absent or JSON null never breaks a rule.
Rules are written in the caller's field names, before any rename.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

_RULE = re.compile(
    r"^\s*(?P<path>[A-Za-z_]\w*(?:\[\])?(?:\.[A-Za-z_]\w*(?:\[\])?)*)"
    r"\s*(?:(?P<op>!=|=)\s*(?P<value>\S.*?))?\s*$"
)


@dataclass(frozen=True, slots=True)
class FieldRule:
    text: str
    steps: tuple[tuple[str, bool], ...]  # (key, look into every item of its list)
    op: str  # "" (set at all), "=" or "!="
    value: Any

    @classmethod
    def parse(cls, text: str) -> FieldRule:
        """Raises ValueError saying what is wrong with ``text``."""
        found = _RULE.match(text)
        if found is None:
            raise ValueError(
                f"{text!r} is not a field rule (`field`, `field=value`, `field!=value`; "
                "`a.b` for a nested field, `a[].b` for every item of a list)"
            )
        steps = tuple((part.removesuffix("[]"), part.endswith("[]")) for part in found["path"].split("."))
        op = found["op"] or ""
        value: Any = None
        if op:
            raw = found["value"]
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                value = raw
        return cls(text, steps, op, value)

    def broken_at(self, body: Mapping[str, Any]) -> tuple[str, Any] | None:
        """The first place where ``body`` breaks the rule, as (its path, e.g. ``messages[2].name``,
        its value), or None."""
        for where, value in _walk(body, self.steps, ""):
            if self.op == "" or (self.op == "=") == _same(value, self.value):
                return where, value
        return None

    def explain(self, where: str, value: Any, provider: str) -> str:
        if self.op == "!=":
            return f"provider {provider!r} takes `{where}` only as {_show(self.value)} (or unset)"
        if self.op == "=":
            return f"provider {provider!r} does not support `{where}` = {_show(value)}"
        return f"provider {provider!r} does not support `{where}`; it is refused rather than dropped"


def _walk(node: Any, steps: tuple[tuple[str, bool], ...], where: str) -> Iterator[tuple[str, Any]]:
    node = _plain(node)
    if not steps:
        if node is not None:
            yield where, node
        return
    (key, every), rest = steps[0], steps[1:]
    if not isinstance(node, dict) or node.get(key) is None:
        return
    value = node[key]
    here = f"{where}.{key}" if where else key
    if not every:
        yield from _walk(value, rest, here)
        return
    items = _plain(value)
    if isinstance(items, list):
        for i, item in enumerate(items):
            yield from _walk(item, rest, f"{here}[{i}]")


def _plain(value: Any) -> Any:
    # The body holds free-form JSON (tool_choice objects, schemas) as exact text; a rule that
    # looks inside it needs the value.
    if isinstance(value, orjson.Fragment):
        return orjson.loads(orjson.dumps(value))
    return value


def _same(a: Any, b: Any) -> bool:
    # JSON's true is not its 1, though Python's True == 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _show(value: Any) -> str:
    return orjson.dumps(value).decode()
