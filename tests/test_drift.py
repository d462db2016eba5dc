"""What the docs and metadata say must match what the code does (each of these drifted once)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from service.pipeline import EMBEDDING_REQUEST_TYPE, REQUEST_TYPE, STREAM_REQUEST_TYPE
from service.providers import KINDS

ROOT = Path(__file__).resolve().parent.parent


def test_the_proto_documents_the_request_types_the_engine_sends() -> None:
    proto = (ROOT / "protos/switchyard/v1/chat.proto").read_text()
    comment = proto.split("message ExtraFields {", 1)[1].split("string request_type = 1;", 1)[0]
    assert set(re.findall(r'"([a-z_.]+)"', comment)) == {
        REQUEST_TYPE,
        STREAM_REQUEST_TYPE,
        EMBEDDING_REQUEST_TYPE,
    }


def test_the_package_description_names_only_providers_that_exist() -> None:
    description = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["description"]
    named = {"anthropic": "Anthropic", "gemini": "Gemini", "bedrock": "Bedrock", "vertex": "Vertex"}
    for kind, name in named.items():
        assert (name in description) == (kind in KINDS), (kind, description)


def test_the_readme_says_what_scripts_test_runs() -> None:
    script = (ROOT / "scripts/test").read_text()
    development = (ROOT / "README.md").read_text().split("## Development", 1)[1].split("\n## ", 1)[0]
    for tool in ("ruff check", "ruff format --check", "mypy", "pytest"):
        assert tool.split()[-1] in script and tool in development, tool
