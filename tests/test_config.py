"""Config loading: defaults, env references, and errors that name the bad key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from switchyard.config import ConfigError, Secret, load_config, parse_config


def _parse(raw: dict, **env: str):  # type: ignore[no-untyped-def]
    return parse_config(raw, env=env)


def test_default_config_loads_without_any_environment() -> None:
    config = load_config(None, env={})
    assert config.server.http_port == 8080
    assert config.server.grpc_port == 50051
    assert set(config.providers) == {"azure", "openai"}
    assert config.providers["azure"].keys == ()  # ${AZURE_OPENAI_API_KEY:-} unset: no key


def test_switchyard_config_env_var_chooses_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"server": {"http_port": 9999}}))
    assert load_config(None, env={"SWITCHYARD_CONFIG": str(path)}).server.http_port == 9999


def test_env_references_resolve_and_secrets_do_not_print() -> None:
    config = _parse(
        {
            "providers": {
                "azure": {"base_url": "${EP}", "keys": [{"value": "${K}", "weight": 2, "models": ["gpt-*"]}]}
            }
        },
        EP="https://x.example",
        K="super-secret",
    )
    provider = config.providers["azure"]
    assert provider.base_url == "https://x.example"
    assert provider.keys[0].secret == Secret("super-secret")
    assert "super-secret" not in repr(config)
    assert "super-secret" not in str(config.redacted())
    assert config.redacted()["providers"]["azure"]["keys"][0]["secret"] == "***"


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"sever": {}}, "sever"),
        ({"server": {"http_port": "eighty"}}, "server.http_port"),
        ({"server": {"unknown": 1}}, "server.unknown"),
        ({"logging": {"raw_request": "yes"}}, "logging.raw_request"),
        ({"providers": {"p": {"kind": "bedrock", "base_url": "http://x"}}}, "providers.p.kind"),
        ({"providers": {"azure": {}}}, "providers.azure.base_url"),
        ({"providers": {"azure": {"base_url": "ftp://x"}}}, "providers.azure.base_url"),
        (
            {"providers": {"azure": {"base_url": "http://x", "keys": [{"value": "${NOPE}"}]}}},
            "providers.azure.keys[0].value",
        ),
        (
            {"providers": {"azure": {"base_url": "http://x", "keys": [{"value": "k", "weight": 0}]}}},
            "providers.azure.keys[0].weight",
        ),
        ({"providers": {"azure": {"base_url": "http://x", "auth": "basic"}}}, "providers.azure.auth"),
        (
            {"providers": {"azure": {"base_url": "http://x"}}, "deployments": {"d": {"targets": []}}},
            "deployments.d.targets",
        ),
        (
            {
                "providers": {"azure": {"base_url": "http://x"}},
                "deployments": {"d": {"targets": [{"provider": "nope", "model": "m"}]}},
            },
            "deployments.d.targets[0].provider",
        ),
        (
            {
                "providers": {"azure": {"base_url": "http://x"}},
                "deployments": {
                    "d": {"targets": [{"provider": "azure", "model": "m"}], "fallbacks": ["nope/m"]}
                },
            },
            "deployments.d.fallbacks[0]",
        ),
        ({"providers": {"openai": {"base_url": "http://x"}}}, "routing.default_provider"),
    ],
)
def test_bad_config_names_the_key(raw: dict, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(raw)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"config error at {path}:")


def test_bad_config_stops_the_cli_with_the_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"retries": {"max_retries": -1}}))
    result = subprocess.run(
        [sys.executable, "-m", "switchyard", "service", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "config error at retries.max_retries" in result.stderr


def test_the_readme_config_reference_is_a_valid_config() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Configuration reference", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    env = {
        "AZURE_OPENAI_ENDPOINT": "https://x.example",
        "AZURE_KEY_1": "k1",
        "GROQ_API_KEY": "k2",
        "OPENAI_API_KEY": "k3",
    }
    config = parse_config(yaml.safe_load(block), env=env)
    assert config.deployments["gpt-4o"].fallbacks == ("openai/gpt-4o", "groq/llama-3.3-70b-versatile")
    assert config.providers["azure"].keys[0].models == ("gpt-4o*",)
