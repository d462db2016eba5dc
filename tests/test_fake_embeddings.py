"""The fake upstream's embeddings: its vectors make paraphrases close and unrelated texts far
apart, and it speaks OpenAI's and Azure's embeddings API (float and base64, ``dimensions``,
scripted failures, recorded requests)."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.embeddings import DEFAULT_DIMS, cosine, embed, words
from tests.fakes.upstream import FakeUpstream, Reply

PARAPHRASES = [
    ("How do I reset my password?", "I need to reset the password, how can I do it"),
    ("What is the weather like in Paris today?", "Paris weather today"),
    ("Cancel my subscription please", "how can I cancel the subscription"),
    ("The cat sat on the mat", "the cats sat on mats"),
]
UNRELATED = [
    ("How do I reset my password?", "What is the weather like in Paris today?"),
    ("Cancel my subscription please", "The cat sat on the mat"),
    ("Recommend a good pizza place", "Explain quantum entanglement simply"),
]


@pytest.mark.parametrize(("a", "b"), PARAPHRASES)
def test_paraphrases_are_close(a: str, b: str) -> None:
    assert cosine(embed(a), embed(b)) >= 0.6


@pytest.mark.parametrize(("a", "b"), UNRELATED)
def test_unrelated_texts_are_far_apart(a: str, b: str) -> None:
    assert abs(cosine(embed(a), embed(b))) <= 0.2


def test_vectors_are_unit_length_float32_and_deterministic() -> None:
    vector = embed("Hello there, general Kenobi")
    assert len(vector) == DEFAULT_DIMS
    assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-6)
    assert vector == list(struct.unpack(f"<{DEFAULT_DIMS}f", struct.pack(f"<{DEFAULT_DIMS}f", *vector)))
    assert vector == embed("hello THERE general kenobi!")  # case and punctuation do not matter
    assert words("The cats and the dogs") == ["cat", "dog"]
    assert len(embed("x", 16)) == 16


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def test_openai_path_float_and_base64_agree(fake: FakeUpstream) -> None:
    fake.reset()
    url = f"{fake.url}/v1/embeddings"
    floats = httpx.post(url, json={"model": "text-embedding-3-small", "input": ["a cat", "a dog"]}).json()
    packed = httpx.post(url, json={"input": "a cat", "encoding_format": "base64", "dimensions": 32}).json()

    assert floats["object"] == "list"
    assert floats["model"] == "text-embedding-3-small"
    assert [d["index"] for d in floats["data"]] == [0, 1]
    assert floats["data"][0]["embedding"] == embed("a cat")
    assert floats["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    raw = base64.b64decode(packed["data"][0]["embedding"])
    assert list(struct.unpack("<32f", raw)) == embed("a cat", 32)
    assert [r.path for r in fake.requests] == ["/v1/embeddings", "/v1/embeddings"]
    assert fake.requests[1].body["encoding_format"] == "base64"


def test_azure_path_token_inputs_and_refusals(fake: FakeUpstream) -> None:
    fake.reset()
    url = f"{fake.url}/openai/deployments/emb-dep/embeddings?api-version=2024-10-21"
    answer = httpx.post(url, json={"input": [[1, 2], [3]]}, headers={"api-key": "k"}).json()
    assert answer["model"] == "emb-dep"
    assert answer["data"][1]["embedding"] == embed("tok3")
    recorded = fake.requests[-1]
    assert (recorded.deployment, recorded.api_version, recorded.header("api-key")) == (
        "emb-dep",
        "2024-10-21",
        "k",
    )
    for body in ({"input": []}, {"input": "x", "encoding_format": "int8"}, {"input": [1, "a"]}):
        assert httpx.post(url, json=body).status_code == 400


def test_scripted_failures_apply_to_embeddings(fake: FakeUpstream) -> None:
    fake.reset()
    fake.script(Reply.status(503), Reply.status(429, headers={"retry-after": "1"}), match="emb-flaky")
    url = f"{fake.url}/openai/deployments/emb-flaky/embeddings"
    first = httpx.post(url, json={"input": "x"})
    second = httpx.post(url, json={"input": "x"})
    third = httpx.post(url, json={"input": "x"})
    assert (first.status_code, second.status_code, third.status_code) == (503, 429, 200)
    assert second.headers["retry-after"] == "1"
    fake.script(Reply.drop())
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{fake.url}/v1/embeddings", json={"input": "x"})
