"""Config loading: defaults, env references, and errors that name the bad key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service.providers import check as check_providers
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
        ({"providers": {"azure": {"base_url": "ftp://x"}}}, "providers.azure.base_url"),
        (
            {"providers": {"azure": {"base_url": "http://x", "keys": [{"value": "${NOPE}"}]}}},
            "providers.azure.keys[0].value",
        ),
        (
            {"providers": {"azure": {"base_url": "http://x", "keys": [{"value": "k", "weight": 0}]}}},
            "providers.azure.keys[0].weight",
        ),
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
        [sys.executable, "-m", "cli", "service", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "config error at retries.max_retries" in result.stderr


GOOD_VK = "sk-bf-" + "A" * 43


def test_the_readme_config_reference_is_a_valid_config() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Configuration reference", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    env = {
        "AZURE_OPENAI_ENDPOINT": "https://x.example",
        "AZURE_KEY_1": "k1",
        "GROQ_API_KEY": "k2",
        "OPENAI_API_KEY": "k3",
        "SWITCHYARD_ADMIN_TOKEN": "adm",
        "SWITCHYARD_JWT_SECRET": "jwt",
        "SEARCH_INDEXER_KEY": GOOD_VK,
        "ANTHROPIC_API_KEY": "k4",
    }
    raw = yaml.safe_load(block)
    raw["auth"]["jwt"].pop("public_key_file")  # files that exist only on the reader's machine
    raw["auth"]["jwt"].pop("jwks_file")
    config = parse_config(raw, env=env)
    assert config.deployments["gpt-4o"].fallbacks == ("openai/gpt-4o", "groq/llama-3.3-70b-versatile")
    assert config.providers["azure"].keys[0].models == ("gpt-4o*",)
    assert config.deployments["gpt-4o"].targets[0].base_model == "gpt-4o"
    assert config.virtual_keys[0].team_id == "search"
    assert config.pricing.models["azure/gpt-4o"].input == 2.75
    check_providers(config.providers)  # every provider section is one its kind accepts


# ---------------------------------------------------------------- governance sections


def test_default_config_requires_auth_and_uses_embedded_state() -> None:
    config = load_config(None, env={})
    assert config.auth.required is True
    assert config.auth.admin_token is None  # SWITCHYARD_ADMIN_TOKEN unset
    assert config.store.url == "sqlite:///switchyard.db"
    assert config.store.redis_url == ""
    assert config.request_logs.enabled is True and config.request_logs.include_content is False
    admin = load_config(None, env={"SWITCHYARD_ADMIN_TOKEN": "boot"}).auth.admin_token
    assert admin == Secret("boot")


def test_governance_sections_parse() -> None:
    config = _parse(
        {
            "auth": {
                "admin_token": "${ADMIN}",
                "jwt": {"algorithms": ["HS256", "ES256"], "secret": "${JWT}", "audience": "a", "leeway_s": 5},
            },
            "store": {"url": "postgresql://u@h/db", "redis_url": "redis://r:6379/0"},
            "request_logs": {"include_content": True, "queue_size": 5},
            "pricing": {"models": {"m": {"input": 1, "output": 2.5}}, "reserve_max_tokens": 100},
            "teams": {"t1": {"budget": {"max_usd": 10, "reset": "1w"}}},
            "virtual_keys": [
                {
                    "id": "app",
                    "value": "${VK}",
                    "team_id": "t1",
                    "allowed_models": ["gpt-*"],
                    "budget": {"max_usd": 1.5, "reset": "1d", "calendar_aligned": False},
                    "rate_limit": {"requests_per_minute": 60},
                    "expires_at": "2030-01-01T00:00:00",
                }
            ],
        },
        ADMIN="adm",
        JWT="jwt-secret",
        VK=GOOD_VK,
    )
    assert config.auth.jwt.algorithms == ("HS256", "ES256")
    assert config.auth.jwt.secret == Secret("jwt-secret")
    assert config.pricing.models["m"].output == 2.5
    assert config.teams["t1"].budget is not None and config.teams["t1"].budget.reset == "1w"
    (key,) = config.virtual_keys
    assert key.secret == Secret(GOOD_VK) and key.team_id == "t1"
    assert key.budget is not None and key.budget.calendar_aligned is False
    assert key.rate_limit is not None and key.rate_limit.requests_per_minute == 60
    assert key.rate_limit.tokens_per_minute is None
    assert key.expires_at == 1893456000.0
    assert GOOD_VK not in repr(config) and "jwt-secret" not in str(config.redacted())


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"auth": {"jwt": {"algorithms": ["none"]}}}, "auth.jwt.algorithms"),
        ({"auth": {"jwt": {"algorithms": ["HS256", "HS384"]}}}, "auth.jwt.algorithms"),
        ({"auth": {"jwt": {"public_key_file": "/no/such.pem"}}}, "auth.jwt.public_key_file"),
        ({"auth": {"required": "no"}}, "auth.required"),
        ({"auth": {"bogus": 1}}, "auth.bogus"),
        ({"virtual_keys": [{"id": "a", "value": "sk-short"}]}, "virtual_keys[0].value"),
        ({"virtual_keys": [{"id": "a", "value": "plain-" + "A" * 43}]}, "virtual_keys[0].value"),
        ({"virtual_keys": [{"value": "sk-bf-" + "A" * 43}]}, "virtual_keys[0].id"),
        (
            {"virtual_keys": [{"id": "a", "value": "sk-bf-" + "A" * 43, "team_id": "nope"}]},
            "virtual_keys[0].team_id",
        ),
        (
            {
                "virtual_keys": [
                    {"id": "a", "value": "sk-bf-" + "A" * 43, "budget": {"max_usd": 1, "reset": "2d"}}
                ]
            },
            "virtual_keys[0].budget.reset",
        ),
        ({"teams": {"t": {"budget": {"reset": "1d"}}}}, "teams.t.budget.max_usd"),
        ({"pricing": {"models": {"m": {"input": 1}}}}, "pricing.models.m.output"),
        ({"pricing": {"file": "/no/such/prices.json"}}, "pricing.file"),
        ({"store": {"bogus": 1}}, "store.bogus"),
        ({"store": {"url": "mysql://x/y"}}, "store.url"),
        ({"store": {"redis_url": "http://r"}}, "store.redis_url"),
        ({"request_logs": {"queue_size": -1}}, "request_logs.queue_size"),
    ],
)
def test_governance_errors_name_the_key(raw: dict, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(raw)
    assert info.value.path == path, str(info.value)


def test_duplicate_virtual_key_ids_are_refused() -> None:
    keys = [{"id": "a", "value": GOOD_VK}, {"id": "a", "value": GOOD_VK}]
    with pytest.raises(ConfigError) as info:
        _parse({"virtual_keys": keys})
    assert info.value.path == "virtual_keys[1].id"


# ---------------------------------------------------------------- ports and env references


@pytest.mark.parametrize("key", ["http_port", "grpc_port"])
@pytest.mark.parametrize("port", [0, -1, 65536, 99999, "${PORT}"])
def test_a_port_outside_1_to_65535_names_the_key(key: str, port: int | str) -> None:
    """99999 used to be accepted, and the OS then listened on 99999 mod 65536."""
    with pytest.raises(ConfigError) as caught:
        _parse({"server": {key: port}}, PORT="70000")
    assert caught.value.path == f"server.{key}"
    assert "1 to 65535" in str(caught.value)


@pytest.mark.parametrize("port", [1, 65535, "${PORT}"])
def test_ports_at_the_edges_of_the_range_are_accepted(port: int | str) -> None:
    config = _parse({"server": {"http_port": port, "grpc_port": port}}, PORT="65535")
    assert config.server.http_port == config.server.grpc_port == (65535 if port == "${PORT}" else port)


@pytest.mark.parametrize(
    "value",
    ["${AZURE_KEY", "prefix-${AZURE_KEY", "${AZURE_KEY:-default", "${1BAD}", "${}", "${A:-${B}}"],
)
def test_a_malformed_env_reference_names_the_key(value: str) -> None:
    """An unterminated ``${VAR`` used to be taken literally: the key went upstream as ``${VAR``."""
    raw = {"providers": {"azure": {"base_url": "http://x", "keys": [{"value": value}]}}}
    with pytest.raises(ConfigError) as caught:
        _parse(raw, AZURE_KEY="k", A="a", B="b")
    assert caught.value.path == "providers.azure.keys[0].value"
    assert "${" in str(caught.value)


def test_an_env_value_may_itself_contain_a_dollar_brace() -> None:
    """Only the file's own text is checked: a secret that happens to contain ``${`` is fine."""
    raw = {"providers": {"azure": {"base_url": "http://x", "keys": [{"value": "${K}"}]}}}
    assert _parse(raw, K="p${w").providers["azure"].keys[0].secret.value == "p${w"


def test_a_dollar_without_a_brace_stays_literal() -> None:
    raw = {"providers": {"azure": {"base_url": "http://x", "keys": [{"value": "a$b{c}$"}]}}}
    assert _parse(raw).providers["azure"].keys[0].secret.value == "a$b{c}$"
