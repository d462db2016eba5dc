"""Model prices, and the USD cost of a call from its token usage.

Where prices come from, highest precedence first:

1. ``pricing.models`` in the config;
2. ``pricing.file`` (JSON, or YAML: anything not named ``*.json``);
3. the shipped table, ``service/data/prices.json`` (providers' list prices).

Both files have the shape ``{"models": {"<name>": {"input": .., "output": .., ...}}}``
with the fields of :class:`~switchyard.config.ModelPrice`, in USD per million
tokens (``per_request``: USD per call). Keys starting with ``_`` are notes and are
ignored at every level. A name may be provider-qualified (``"azure/gpt-4o"``) to
price one provider differently from the others.

How :meth:`PriceTable.lookup` finds a model's price, first hit wins:

1. ``provider/model`` exactly as given;
2. ``model`` exactly as given;
3. normalised forms of ``model``, each tried as ``provider/form`` and then ``form``,
   each step applied on top of the previous one: lowercased; without a
   ``provider/`` prefix (``openai/gpt-4o``, or an ARN's ``…:inference-profile/``);
   a Bedrock model id without its cross-region prefix and version
   (``us.anthropic.claude-…-v1:0`` -> ``anthropic.claude-…``); without a trailing date
   version (``-2024-08-06``, ``-20241022``, ``@20241022``); without ``-latest``
   (``claude-3-5-sonnet-latest``).

An unknown model has no price (``None``); the caller decides what that means.

Token accounting, which follows OpenAI's (Azure's is the same, and the Anthropic
adapter converts to it): ``prompt_tokens`` *includes* cached and cache-write
tokens, and ``completion_tokens`` *includes* reasoning tokens. So the cost splits
the prompt into uncached / cache-read / cache-write parts and the completion into
visible output / reasoning parts, and each token is priced exactly once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from switchyard.config import ModelPrice, PricingConfig
from switchyard.v1 import chat_pb2 as pb

SHIPPED_PRICES_PATH = Path(__file__).with_name("data") / "prices.json"
DEFAULT_CACHE_SIZE = 4096

_PER_MILLION = 1_000_000
_PRICE_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelPrice))
_DATE_SUFFIX = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8})$")
_LATEST_SUFFIX = "-latest"
# Bedrock ids: a cross-region inference prefix (us., eu., global.…) in front of a vendor's id
# (anthropic.claude-…), and a version suffix (-v1:0, -v2:0, :0) after it.
_BEDROCK_REGION_PREFIX = re.compile(r"^(?:us|us-gov|eu|apac|jp|au|ca|global)\.(?=[a-z0-9-]+\.)")
_BEDROCK_VERSION = re.compile(r"^([a-z0-9-]+\..+?)(?:-v\d+(?::\d+)?|:\d+)$")


class PriceTable:
    """Prices by model name, merged from layers (later layers win), with a lookup cache."""

    def __init__(self, *layers: Mapping[str, ModelPrice], cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        """Build from ``layers``, lowest precedence first (shipped, file, config)."""
        exact: dict[str, ModelPrice] = {}
        folded: dict[str, ModelPrice] = {}
        # Folded per layer, in order, so a later layer wins even when its key differs
        # only in case from an earlier one ("GPT-4o" in config over shipped "gpt-4o").
        for layer in layers:
            for name, price in layer.items():
                exact[name] = price
                folded[name.lower()] = price
        self._exact = exact
        self._folded = folded
        self._cache: dict[tuple[str, str], ModelPrice | None] = {}
        self._cache_size = max(cache_size, 1)

    @classmethod
    def load(cls, config: PricingConfig) -> PriceTable:
        """The shipped table, overlaid by ``config.file`` (if set), overlaid by ``config.models``.

        Raises ValueError naming the file (and the model) when a price file is invalid.
        """
        layers = [read_price_file(SHIPPED_PRICES_PATH)]
        if config.file:
            layers.append(read_price_file(config.file))
        layers.append(dict(config.models))
        return cls(*layers)

    @property
    def models(self) -> Mapping[str, ModelPrice]:
        """Every priced name after merging (read-only)."""
        return MappingProxyType(self._exact)

    def __len__(self) -> int:
        return len(self._exact)

    def lookup(self, model: str, provider: str = "") -> ModelPrice | None:
        """The price for ``model`` served by ``provider``, or None when unknown (see module doc)."""
        key = (provider, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        price = self._resolve(model, provider)
        # Model names come from callers, so the cache must be bounded. Clearing it
        # when full is simpler than LRU bookkeeping and safe without a lock; a
        # refill costs a few dict probes per distinct name.
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[key] = price
        return price

    # Delegates, so a holder of the table needs no second import for the arithmetic.
    def cost(self, price: ModelPrice, usage: pb.Usage) -> pb.Cost:
        """Same as the module-level :func:`cost`."""
        return cost(price, usage)

    def worst_case_usd(self, price: ModelPrice, prompt_tokens: int, max_output_tokens: int) -> float:
        """Same as the module-level :func:`worst_case_usd`."""
        return worst_case_usd(price, prompt_tokens, max_output_tokens)

    def _resolve(self, model: str, provider: str) -> ModelPrice | None:
        if provider and (price := self._exact.get(f"{provider}/{model}")) is not None:
            return price
        if (price := self._exact.get(model)) is not None:
            return price
        qualifier = provider.lower()
        for form in _normalised_forms(model):
            if qualifier and (price := self._folded.get(f"{qualifier}/{form}")) is not None:
                return price
            if (price := self._folded.get(form)) is not None:
                return price
        return None


def _normalised_forms(model: str) -> list[str]:
    """Ever more normalised spellings of ``model``, each step applied to the previous one."""
    name = model.strip().lower()
    forms = [name]
    if "/" in name:
        name = name.rsplit("/", 1)[1]
        forms.append(name)
    bedrock = _BEDROCK_VERSION.sub(r"\1", _BEDROCK_REGION_PREFIX.sub("", name))
    if bedrock != name:
        name = bedrock
        forms.append(name)
    undated = _DATE_SUFFIX.sub("", name)
    if undated != name:
        name = undated
        forms.append(name)
    if name.endswith(_LATEST_SUFFIX) and len(name) > len(_LATEST_SUFFIX):
        forms.append(name[: -len(_LATEST_SUFFIX)])
    return forms


# ---------------------------------------------------------------- price files


def read_price_file(path: str | os.PathLike[str]) -> dict[str, ModelPrice]:
    """Read a price file (``{"models": {name: {field: number}}}``; JSON, or YAML unless ``*.json``).

    Raises ValueError naming the file, and the model when one entry is at fault.
    """
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"price file {where}: cannot be read: {exc.strerror or exc}") from exc
    try:
        raw: Any = json.loads(text) if where.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"price file {where}: not valid {_format_name(where)}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"price file {where}: must be a mapping with a 'models' key")
    for key in raw:
        if key != "models" and not str(key).startswith("_"):
            raise ValueError(f"price file {where}: unknown key {key!r} (expected 'models')")
    models = raw.get("models")
    if not isinstance(models, dict):
        raise ValueError(f"price file {where}: 'models' must be a mapping of model name to price")
    prices: dict[str, ModelPrice] = {}
    for name, spec in models.items():
        model = str(name)
        if model.startswith("_"):
            continue
        if not model.strip():
            raise ValueError(f"price file {where}: a model name is empty")
        prices[model] = _parse_price(spec, f"price file {where}: model {model!r}")
    return prices


def _format_name(path: str) -> str:
    return "JSON" if path.endswith(".json") else "YAML"


def _parse_price(spec: Any, where: str) -> ModelPrice:
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: must be a mapping of price fields")
    values: dict[str, float] = {}
    for key, value in spec.items():
        field = str(key)
        if field.startswith("_"):
            continue
        if field not in _PRICE_FIELDS:
            raise ValueError(
                f"{where}: unknown field {field!r} (expected one of: {', '.join(sorted(_PRICE_FIELDS))})"
            )
        # bool is an int subclass: `true` must not silently price a token at $1/M.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: {field} must be a number (USD), not {value!r}")
        number = float(value)
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"{where}: {field} must be a non-negative number, not {value!r}")
        values[field] = number
    for required in ("input", "output"):
        if required not in values:
            raise ValueError(f"{where}: {required} is required (USD per million tokens)")
    return ModelPrice(**values)


# ---------------------------------------------------------------- arithmetic


def cost(price: ModelPrice, usage: pb.Usage) -> pb.Cost:
    """The USD cost of one call's ``usage`` at ``price``.

    Cached prompt tokens are ``prompt_tokens_details.cached_tokens`` (OpenAI/Azure)
    or else ``cached_read_tokens``; cache writes are ``cached_write_tokens``; the
    rest of ``prompt_tokens`` is uncached input. Reasoning tokens are part of
    ``completion_tokens`` and are priced at ``reasoning`` (default: ``output``), the
    remainder at ``output``. Counts that do not add up (details above the totals)
    never make a negative charge. Citation and search costs are left unset.
    """
    prompt_details = usage.prompt_tokens_details
    prompt = max(usage.prompt_tokens, 0)
    cached = max(prompt_details.cached_tokens or prompt_details.cached_read_tokens, 0)
    writes = max(prompt_details.cached_write_tokens, 0)
    uncached = max(prompt - cached - writes, 0)

    completion = max(usage.completion_tokens, 0)
    reasoning = max(usage.completion_tokens_details.reasoning_tokens, 0)
    visible = max(completion - reasoning, 0)

    cached_price = price.input if price.cached_input is None else price.cached_input
    write_price = price.input if price.cache_write is None else price.cache_write
    reasoning_price = price.output if price.reasoning is None else price.reasoning

    # Sum token*price first and divide once: one rounding instead of three.
    input_cost = (uncached * price.input + cached * cached_price + writes * write_price) / _PER_MILLION
    output_cost = visible * price.output / _PER_MILLION
    reasoning_cost = reasoning * reasoning_price / _PER_MILLION
    request_cost = price.per_request
    return pb.Cost(
        input_tokens_cost=input_cost,
        output_tokens_cost=output_cost,
        reasoning_tokens_cost=reasoning_cost,
        request_cost=request_cost,
        total_cost=input_cost + output_cost + reasoning_cost + request_cost,
    )


def worst_case_usd(price: ModelPrice, prompt_tokens: int, max_output_tokens: int) -> float:
    """The most a call can cost, to reserve against a budget before it is made.

    The prompt is priced at ``input`` and every possible output token at the dearer
    of ``output`` and ``reasoning``, plus ``per_request``. A cache write's premium
    over ``input`` is not added: the prompt count this is given is already a
    generous estimate (see :func:`estimate_prompt_tokens`).
    """
    reasoning_price = price.output if price.reasoning is None else price.reasoning
    output_price = max(price.output, reasoning_price)
    tokens_usd = (
        max(prompt_tokens, 0) * price.input + max(max_output_tokens, 0) * output_price
    ) / _PER_MILLION
    return tokens_usd + price.per_request


def estimate_prompt_tokens(body_bytes: int) -> int:
    """A deliberately generous prompt-token estimate from the request body's size: ~bytes/3, at least 1.

    It feeds a budget reservation, which must not undershoot: an undershoot lets
    concurrent calls spend past the cap, while an overshoot only holds some budget
    until the real usage settles it. English text and code run about 4 bytes per
    token and the JSON framing (keys, quotes, escapes) is not tokens at all, so
    bytes/3 over-counts them; CJK text (3 bytes a character in UTF-8, roughly a
    token each) comes out about even; base64 images over-count by far, as an
    image is billed by its size in tiles, not its bytes. No tokenizer is needed,
    so this is cheap and model-agnostic.
    """
    return max(1, -(-body_bytes // 3))
