"""Price lookup, price files and cost arithmetic (service/pricing.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from service.pricing import (
    SHIPPED_PRICES_PATH,
    PriceTable,
    cost,
    estimate_prompt_tokens,
    read_price_file,
    worst_case_usd,
)
from switchyard.config import ModelPrice, PricingConfig
from switchyard.v1 import chat_pb2 as pb

GPT4O = ModelPrice(input=2.5, output=10.0, cached_input=1.25)
AZURE_GPT4O = ModelPrice(input=2.0, output=8.0)
SONNET = ModelPrice(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
O_MODEL = ModelPrice(input=1.1, output=4.4, cached_input=0.55)

# USD per million input tokens, OpenAI's list prices.
EMBEDDING_PRICES = {
    "text-embedding-3-small": 0.02,
    "text-embedding-3-large": 0.13,
    "text-embedding-ada-002": 0.1,
}
REQUIRED_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-4-turbo",
    "gpt-4",
    "gpt-3.5-turbo",
    "o1",
    "o1-mini",
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "claude-3-5-sonnet",
    "claude-3-5-haiku",
    "claude-3-7-sonnet",
    "claude-3-opus",
    "claude-3-haiku",
    "claude-sonnet-4",
    "claude-opus-4",
    "claude-opus-4-1",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
)


@pytest.fixture(scope="module")
def shipped() -> PriceTable:
    return PriceTable.load(PricingConfig())


def _table() -> PriceTable:
    return PriceTable(
        {"gpt-4o": GPT4O, "claude-3-5-sonnet": SONNET, "azure/gpt-4o": AZURE_GPT4O, "o3-mini": O_MODEL}
    )


def _usage(
    prompt: int,
    completion: int,
    *,
    cached: int | None = None,
    cached_read: int | None = None,
    cached_write: int | None = None,
    reasoning: int | None = None,
) -> pb.Usage:
    usage = pb.Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
    if cached is not None:
        usage.prompt_tokens_details.cached_tokens = cached
    if cached_read is not None:
        usage.prompt_tokens_details.cached_read_tokens = cached_read
    if cached_write is not None:
        usage.prompt_tokens_details.cached_write_tokens = cached_write
    if reasoning is not None:
        usage.completion_tokens_details.reasoning_tokens = reasoning
    return usage


# ---------------------------------------------------------------- lookup


def test_exact_name_is_found() -> None:
    assert _table().lookup("gpt-4o") == GPT4O


def test_provider_qualified_entry_overrides_for_that_provider_only() -> None:
    table = _table()
    assert table.lookup("gpt-4o", "azure") == AZURE_GPT4O
    assert table.lookup("gpt-4o", "openai") == GPT4O
    assert table.lookup("gpt-4o") == GPT4O
    # The override also applies to a normalised spelling of the model.
    assert table.lookup("GPT-4o-2024-08-06", "Azure") == AZURE_GPT4O


def test_exact_match_beats_normalisation() -> None:
    dated = ModelPrice(input=5.0, output=15.0)
    table = PriceTable({"gpt-4o": GPT4O, "gpt-4o-2024-05-13": dated})
    assert table.lookup("gpt-4o-2024-05-13") == dated
    assert table.lookup("gpt-4o-2024-08-06") == GPT4O


@pytest.mark.parametrize("model", ["GPT-4o", "Gpt-4O", " gpt-4o "])
def test_case_and_surrounding_space_are_ignored(model: str) -> None:
    assert _table().lookup(model) == GPT4O


@pytest.mark.parametrize(
    "model",
    ["gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet@20241022"],
)
def test_trailing_date_versions_are_stripped(model: str) -> None:
    assert _table().lookup(model) is not None
    assert _table().lookup(model) in (GPT4O, SONNET)


def test_latest_alias_maps_to_the_family() -> None:
    assert _table().lookup("claude-3-5-sonnet-latest") == SONNET
    assert _table().lookup("Claude-3-5-Sonnet-LATEST") == SONNET


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("openai/gpt-4o", GPT4O),
        ("anthropic/claude-3-5-sonnet-20241022", SONNET),
        ("OpenAI/O3-mini-2025-01-31", O_MODEL),
    ],
)
def test_provider_prefix_in_the_model_is_stripped(model: str, expected: ModelPrice) -> None:
    assert _table().lookup(model) == expected


def test_a_prefixed_model_can_hit_a_provider_qualified_entry() -> None:
    assert _table().lookup("azure/gpt-4o") == AZURE_GPT4O


@pytest.mark.parametrize("model", ["gpt-7", "", "-latest", "gpt-4o-mini", "claude-3-5-sonnet-v2@20241022"])
def test_unknown_models_have_no_price(model: str) -> None:
    assert _table().lookup(model) is None


def test_results_and_misses_are_cached_and_the_cache_is_bounded() -> None:
    table = PriceTable({"gpt-4o": GPT4O}, cache_size=3)
    assert table.lookup("GPT-4o") == GPT4O
    assert table.lookup("nope") is None
    assert table._cache == {("", "GPT-4o"): GPT4O, ("", "nope"): None}
    for i in range(10):
        table.lookup(f"model-{i}")
    assert len(table._cache) <= 3
    assert table.lookup("GPT-4o") == GPT4O


def test_later_layers_win_even_when_the_key_differs_in_case() -> None:
    override = ModelPrice(input=1.0, output=2.0)
    table = PriceTable({"gpt-4o": GPT4O}, {"GPT-4O": override})
    assert table.lookup("gpt-4o") == GPT4O  # exact spelling still matches its own entry
    assert table.lookup("Gpt-4o") == override


# ---------------------------------------------------------------- loading


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_beats_file_beats_shipped(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"prices{suffix}"
    doc = {
        "_comment": "contract prices",
        "models": {
            "gpt-4o": {"input": 1, "output": 4, "_note": "contract"},
            "gpt-4o-mini": {"input": 0.1, "output": 0.5, "per_request": 0.001},
            "azure/o3": {"input": 9, "output": 9},
        },
    }
    path.write_text(json.dumps(doc) if suffix == ".json" else yaml.safe_dump(doc))
    from_config = ModelPrice(input=0.5, output=0.5)
    table = PriceTable.load(PricingConfig(file=str(path), models={"gpt-4o": from_config}))

    assert table.lookup("gpt-4o") == from_config
    assert table.lookup("gpt-4o-mini") == ModelPrice(input=0.1, output=0.5, per_request=0.001)
    assert table.lookup("o3", "azure") == ModelPrice(input=9.0, output=9.0)
    assert table.lookup("o3", "openai") == ModelPrice(input=2.0, output=8.0, cached_input=0.5)
    assert table.lookup("claude-3-haiku") == read_price_file(SHIPPED_PRICES_PATH)["claude-3-haiku"]


BAD_FILES = [
    ("[1, 2]", None),
    ('{"prices": {}}', None),
    ('{"models": [1]}', None),
    ('{"models": {"m-bad": 3}}', "m-bad"),
    ('{"models": {"m-bad": {"input": 1}}}', "m-bad"),
    ('{"models": {"m-bad": {"input": -1, "output": 1}}}', "m-bad"),
    ('{"models": {"m-bad": {"input": true, "output": 1}}}', "m-bad"),
    ('{"models": {"m-bad": {"input": "1", "output": 1}}}', "m-bad"),
    ('{"models": {"m-bad": {"input": 1, "output": 1, "inptu": 2}}}', "m-bad"),
    ('{"models": {"m-bad": {"input": 1, "output": Infinity}}}', "m-bad"),
    ('{"models": {"m-bad": ', None),
]


@pytest.mark.parametrize(("text", "model"), BAD_FILES)
def test_a_bad_price_file_names_the_file_and_model(tmp_path: Path, text: str, model: str | None) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.json") as info:
        PriceTable.load(PricingConfig(file=str(path)))
    if model is not None:
        assert repr(model) in str(info.value)


def test_bad_yaml_and_missing_files_are_value_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models: {gpt-4o: [")
    with pytest.raises(ValueError, match=r"bad\.yaml.*YAML"):
        read_price_file(path)
    with pytest.raises(ValueError, match=r"missing\.json"):
        read_price_file(tmp_path / "missing.json")


def test_the_shipped_table_is_complete_and_sane(shipped: PriceTable) -> None:
    raw = json.loads(SHIPPED_PRICES_PATH.read_text())
    assert "list prices" in raw["_comment"].lower()
    prices = read_price_file(SHIPPED_PRICES_PATH)
    assert set(REQUIRED_MODELS) | set(EMBEDDING_PRICES) <= set(prices)
    for name, price in prices.items():
        assert price.input > 0, name
        if name in EMBEDDING_PRICES:  # input tokens only, no cache
            assert (price.input, price.output, price.cached_input) == (EMBEDDING_PRICES[name], 0.0, None), (
                name
            )
            continue
        assert price.output > 0, name
        assert price.cached_input is not None, name
        assert price.cached_input <= price.input, name
        if price.cache_write is not None:
            assert price.cache_write >= price.input, name
        assert shipped.lookup(name) == price


def test_shipped_table_serves_real_provider_ids(shipped: PriceTable) -> None:
    assert shipped.lookup("gpt-4o-2024-08-06") == shipped.lookup("gpt-4o")
    assert shipped.lookup("gpt-4o-2024-05-13") != shipped.lookup("gpt-4o")
    assert shipped.lookup("claude-3-5-sonnet-20241022") == shipped.lookup("claude-3-5-sonnet")
    assert shipped.lookup("claude-3-7-sonnet-latest") == shipped.lookup("claude-3-7-sonnet")
    assert shipped.lookup("claude-sonnet-4@20250514") == shipped.lookup("claude-sonnet-4")
    assert shipped.lookup("claude-haiku-4-5-20251001") == shipped.lookup("claude-haiku-4-5")
    assert shipped.lookup("gpt-4.1-mini", "azure") == shipped.lookup("gpt-4.1-mini")


# ---------------------------------------------------------------- cost


def test_cost_plain() -> None:
    result = cost(GPT4O, _usage(1000, 500))
    assert result.input_tokens_cost == pytest.approx(0.0025, rel=1e-12)  # 1000 * 2.5 / 1M
    assert result.output_tokens_cost == pytest.approx(0.005, rel=1e-12)  # 500 * 10 / 1M
    assert result.reasoning_tokens_cost == 0.0
    assert result.request_cost == 0.0
    assert result.total_cost == pytest.approx(0.0075, rel=1e-12)
    assert not result.HasField("citation_tokens_cost")
    assert not result.HasField("search_queries_cost")


def test_cost_with_cached_prompt_tokens() -> None:
    # 1000 prompt, 600 cached: 400 * 2.5 + 600 * 1.25 = 1750 -> 0.00175
    result = cost(GPT4O, _usage(1000, 100, cached=600))
    assert result.input_tokens_cost == pytest.approx(0.00175, rel=1e-12)
    assert result.total_cost == pytest.approx(0.00175 + 0.001, rel=1e-12)


def test_cached_read_tokens_count_when_cached_tokens_is_absent() -> None:
    assert cost(GPT4O, _usage(1000, 0, cached_read=600)).input_tokens_cost == pytest.approx(0.00175)
    # OpenAI's field wins when both are present.
    assert cost(GPT4O, _usage(1000, 0, cached=200, cached_read=600)).input_tokens_cost == pytest.approx(
        (800 * 2.5 + 200 * 1.25) / 1e6
    )


def test_cached_input_defaults_to_the_input_price() -> None:
    price = ModelPrice(input=2.0, output=8.0)
    assert cost(price, _usage(1000, 0, cached=600)).input_tokens_cost == pytest.approx(0.002)


def test_cost_with_cache_writes() -> None:
    # 10000 prompt = 2000 cache reads + 5000 cache writes + 3000 uncached; 200 out.
    result = cost(SONNET, _usage(10_000, 200, cached_read=2000, cached_write=5000))
    # 3000 * 3.0 + 2000 * 0.3 + 5000 * 3.75 = 9000 + 600 + 18750 = 28350
    assert result.input_tokens_cost == pytest.approx(0.02835, rel=1e-12)
    assert result.output_tokens_cost == pytest.approx(0.003, rel=1e-12)  # 200 * 15
    assert result.total_cost == pytest.approx(0.03135, rel=1e-12)


def test_cache_write_price_defaults_to_the_input_price() -> None:
    price = ModelPrice(input=3.0, output=15.0)
    assert cost(price, _usage(1000, 0, cached_write=1000)).input_tokens_cost == pytest.approx(0.003)


def test_reasoning_tokens_are_part_of_completion_tokens() -> None:
    # 2000 completion tokens of which 1500 reasoning: 500 * 4.4 + 1500 * 4.4 (reasoning at output).
    result = cost(O_MODEL, _usage(100, 2000, reasoning=1500))
    assert result.output_tokens_cost == pytest.approx(500 * 4.4 / 1e6, rel=1e-12)
    assert result.reasoning_tokens_cost == pytest.approx(1500 * 4.4 / 1e6, rel=1e-12)
    assert result.input_tokens_cost == pytest.approx(100 * 1.1 / 1e6, rel=1e-12)
    assert result.total_cost == pytest.approx((100 * 1.1 + 2000 * 4.4) / 1e6, rel=1e-12)


def test_reasoning_tokens_use_their_own_price_when_set() -> None:
    price = ModelPrice(input=1.0, output=4.0, reasoning=2.0)
    result = cost(price, _usage(0, 1000, reasoning=250))
    assert result.output_tokens_cost == pytest.approx(0.003, rel=1e-12)  # 750 * 4
    assert result.reasoning_tokens_cost == pytest.approx(0.0005, rel=1e-12)  # 250 * 2
    assert result.total_cost == pytest.approx(0.0035, rel=1e-12)


def test_per_request_price_is_added() -> None:
    price = ModelPrice(input=1.0, output=2.0, per_request=0.01)
    result = cost(price, _usage(1000, 1000))
    assert result.request_cost == pytest.approx(0.01)
    assert result.total_cost == pytest.approx(0.001 + 0.002 + 0.01, rel=1e-12)
    assert cost(price, _usage(0, 0)).total_cost == pytest.approx(0.01)


def test_details_above_the_totals_never_charge_negative_amounts() -> None:
    result = cost(SONNET, _usage(100, 50, cached=80, cached_write=80, reasoning=90))
    # No uncached input is left; the reported cache reads/writes and reasoning are still billed.
    assert result.input_tokens_cost == pytest.approx((80 * 0.3 + 80 * 3.75) / 1e6, rel=1e-12)
    assert result.output_tokens_cost == 0.0
    assert result.reasoning_tokens_cost == pytest.approx(90 * 15.0 / 1e6, rel=1e-12)
    negative = cost(SONNET, _usage(-5, -5, cached=-3, cached_write=-3, reasoning=-3))
    for value in (
        negative.input_tokens_cost,
        negative.output_tokens_cost,
        negative.reasoning_tokens_cost,
        negative.total_cost,
    ):
        assert value == 0.0


def test_cost_of_an_empty_usage_is_zero() -> None:
    assert cost(GPT4O, pb.Usage()).total_cost == 0.0


# ---------------------------------------------------------------- reservation


def test_worst_case_prices_all_output_at_the_dearer_rate() -> None:
    assert worst_case_usd(GPT4O, 1000, 500) == pytest.approx((1000 * 2.5 + 500 * 10.0) / 1e6, rel=1e-12)
    dear_reasoning = ModelPrice(input=1.0, output=4.0, reasoning=6.0, per_request=0.02)
    assert worst_case_usd(dear_reasoning, 2000, 1000) == pytest.approx(0.002 + 0.006 + 0.02, rel=1e-12)
    cheap_reasoning = ModelPrice(input=1.0, output=4.0, reasoning=1.0)
    assert worst_case_usd(cheap_reasoning, 0, 1000) == pytest.approx(0.004, rel=1e-12)
    assert worst_case_usd(GPT4O, -1, -1) == 0.0


@pytest.mark.parametrize(
    ("body_bytes", "tokens"), [(0, 1), (1, 1), (3, 1), (4, 2), (3000, 1000), (3001, 1001)]
)
def test_prompt_estimate_is_a_third_of_the_bytes_rounded_up(body_bytes: int, tokens: int) -> None:
    assert estimate_prompt_tokens(body_bytes) == tokens


def test_the_table_offers_the_arithmetic_as_methods() -> None:
    table = _table()
    usage = _usage(1000, 500, cached=600)
    assert table.cost(GPT4O, usage) == cost(GPT4O, usage)
    assert table.worst_case_usd(GPT4O, 1000, 500) == worst_case_usd(GPT4O, 1000, 500)
