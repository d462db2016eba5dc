"""No Docker engine runs here, so check docker-compose.yml and the Dockerfile by reading them
against the CLI and the config loader."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from cli.main import build_parser
from switchyard.config import DEFAULT_CONFIG_PATH, load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIG_MOUNT = "/etc/switchyard/config.yaml"
# The sections of the config the gateway reads (gateway/app.py); it loads the whole file, though.
GATEWAY_SECTIONS = ("server", "timeouts")

_CONFIG_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")
_COMPOSE_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def _mounted_config(service: dict[str, Any]) -> Path:
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        if target == CONFIG_MOUNT:
            return ROOT / source
    raise AssertionError("config is not mounted")


def _port_mappings(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) for each short-syntax entry; ip "" is every interface."""
    mappings = []
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        ip = parts[0] if len(parts) == 3 else ""
        mappings.append((ip, int(parts[-2]), int(parts[-1])))
    return mappings


def _config_refs(node: Any) -> dict[str, bool]:
    """Every ${VAR} in a raw config tree -> whether it has a default."""
    refs: dict[str, bool] = {}
    if isinstance(node, dict):
        for value in node.values():
            for name, has_default in _config_refs(value).items():
                refs[name] = refs.get(name, True) and has_default
    elif isinstance(node, list):
        for value in node:
            for name, has_default in _config_refs(value).items():
                refs[name] = refs.get(name, True) and has_default
    elif isinstance(node, str):
        for match in _CONFIG_REF.finditer(node):
            refs[match.group(1)] = refs.get(match.group(1), True) and match.group(2) is not None
    return refs


def _needed_env(container: str, config_path: Path) -> set[str]:
    raw = yaml.safe_load(config_path.read_text())
    refs = _config_refs(raw)
    if container == "service":
        return set(refs)
    # The gateway needs what its sections read, and every ${VAR} without a default, or the
    # file does not load at all.
    needed = {name for name, has_default in refs.items() if not has_default}
    for section in GATEWAY_SECTIONS:
        needed |= set(_config_refs(raw.get(section)))
    return needed


def _container_env(service: dict[str, Any], host: Mapping[str, str]) -> dict[str, str]:
    """The environment compose gives a container, for a given host environment."""

    def interpolate(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name, operator, default = match.groups()
            value = host.get(name)
            if operator == ":-" and not value:
                return default
            if operator == "-" and value is None:
                return default
            return value or ""

        return _COMPOSE_REF.sub(one, text)

    declared = service.get("environment") or {}
    if isinstance(declared, list):  # "NAME=value", or a bare "NAME"
        declared = {name: value if sep else None for name, sep, value in (i.partition("=") for i in declared)}
    env: dict[str, str] = {}
    for name, value in declared.items():
        if value is None:  # a bare name: the host's value, or unset in the container
            if name in host:
                env[name] = host[name]
        else:
            env[name] = interpolate(str(value))
    return env


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per Dockerfile line, continuations joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in _dockerfile():
        if instruction == "ENV":
            words = shlex.split(args)
            if "=" in words[0]:
                env.update(word.partition("=")[::2] for word in words)
            else:
                env[words[0]] = " ".join(words[1:])
    return env


def test_each_container_runs_a_valid_cli_command_on_its_published_port() -> None:
    services = _compose()["services"]
    assert set(services) == {"service", "gateway", "postgres", "redis"}
    parser = build_parser()
    for name in ("service", "gateway"):
        service = services[name]
        command = service["command"]
        assert command[0] == "switchyard"
        args = parser.parse_args(command[1:])
        assert args.command == name
        config = load_config(args.config.replace(CONFIG_MOUNT, str(_mounted_config(service))), env={})
        port = int(args.grpc_port if name == "service" else args.http_port)
        default_port = config.server.grpc_port if name == "service" else config.server.http_port
        assert port == default_port, f"{name}: --port and the mounted config disagree"
        published = {container_port for _, _, container_port in _port_mappings(service)}
        assert port in published, f"{name}: container port {port} is not published"
        assert service["healthcheck"]["test"], f"{name} has no healthcheck"
        assert service["build"] == "."


def test_every_container_restarts_after_a_crash_or_a_reboot() -> None:
    for name, service in _compose()["services"].items():
        assert service.get("restart") in ("always", "unless-stopped"), f"{name} has no restart policy"


def test_the_grpc_port_with_the_admin_api_is_published_on_loopback_only() -> None:
    service = _compose()["services"]["service"]
    args = build_parser().parse_args(service["command"][1:])
    mappings = [m for m in _port_mappings(service) if m[2] == int(args.grpc_port)]
    assert mappings
    for ip, _, _ in mappings:
        assert ip == "127.0.0.1", f"the gRPC port is published on {ip or 'every interface'}"


def test_the_postgres_healthcheck_fails_during_first_time_setup() -> None:
    services = _compose()["services"]
    postgres = services["postgres"]
    test = postgres["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert test[1] == "pg_isready"
    flags = dict(zip(test[2::2], test[3::2], strict=True))
    # The image's entrypoint runs its init scripts against a temporary server that listens only on
    # the Unix socket; checking over TCP passes only once the real server is up.
    assert "-h" in flags and not flags["-h"].startswith("/"), "pg_isready must check over TCP"
    store = urlsplit(load_config(_mounted_config(services["service"]), env={}).store.url)
    assert flags.get("-U") == postgres["environment"]["POSTGRES_USER"] == store.username
    assert flags.get("-d") == postgres["environment"]["POSTGRES_DB"] == store.path.lstrip("/")


def test_containers_get_every_variable_their_mounted_config_reads() -> None:
    services = _compose()["services"]
    for name in ("service", "gateway"):
        service = services[name]
        config_path = _mounted_config(service)
        needed = _needed_env(name, config_path)
        host = {var: f"host-value-of-{var}" for var in needed}
        env = _container_env(service, host)
        missing = sorted(var for var in needed if env.get(var) != host[var])
        assert not missing, f"{name} does not pass through {missing}"
        # With nothing set on the host, the config's own defaults apply: an empty value passed in
        # would override them (an empty base_url fails to load).
        assert load_config(config_path, env=_container_env(service, {})) == load_config(config_path, env={})
    assert "SWITCHYARD_ADMIN_TOKEN" in _needed_env("service", _mounted_config(services["service"]))
    assert "OPENAI_BASE_URL" in _needed_env("service", _mounted_config(services["service"]))


def test_gateway_reaches_the_service_container() -> None:
    services = _compose()["services"]
    config = load_config(_mounted_config(services["gateway"]), env={})
    host, _, port = config.server.service_address.partition(":")
    assert host == "service"
    assert int(port) == config.server.grpc_port
    assert services["gateway"]["depends_on"]["service"]["condition"] == "service_healthy"
    # Inside a container the servers must listen beyond loopback.
    assert config.server.http_host == "0.0.0.0"
    assert config.server.grpc_host == "0.0.0.0"


def test_dockerfile_installs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install" in dockerfile
    # Every package the project installs (pyproject's list), so a new one cannot be forgotten.
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for folder in (*(name.rstrip("*") for name in packages["include"]), "protos"):
        assert f"COPY {folder} " in dockerfile, folder


def test_a_plain_docker_run_serves_the_built_in_config_on_every_interface() -> None:
    instructions = _dockerfile()
    assert not any(instruction == "ENTRYPOINT" for instruction, _ in instructions)
    command = json.loads([args for instruction, args in instructions if instruction == "CMD"][-1])
    assert command[0] == "switchyard"
    args = build_parser().parse_args(command[1:])
    assert args.command == "serve"
    image_env = _image_env()
    # Nothing is mounted on a plain `docker run`: the config must be the one inside the package.
    config = load_config(args.config, env=image_env)
    assert Path(config.source) == DEFAULT_CONFIG_PATH
    # `docker run -p 8080:8080 image` reaches the server only if it listens beyond loopback.
    assert config.server.http_host == "0.0.0.0"
    assert config.server.grpc_host == "0.0.0.0"
    exposed = {
        int(port) for instruction, ports in instructions if instruction == "EXPOSE" for port in ports.split()
    }
    assert {config.server.http_port, config.server.grpc_port} <= exposed


def test_the_built_in_config_still_binds_loopback_outside_a_container() -> None:
    config = load_config(DEFAULT_CONFIG_PATH, env={})
    assert config.server.http_host == "127.0.0.1"
    assert config.server.grpc_host == "127.0.0.1"


def test_the_service_keeps_its_state_in_the_compose_postgres_and_redis() -> None:
    services = _compose()["services"]
    config = load_config(_mounted_config(services["service"]), env={})
    assert config.store.url.startswith("postgresql://") and "@postgres:" in config.store.url
    assert config.store.redis_url.startswith("redis://redis:")
    assert config.auth.required is True
    for dependency in ("postgres", "redis"):
        assert services["service"]["depends_on"][dependency]["condition"] == "service_healthy"
        assert services[dependency]["healthcheck"]["test"]
    assert "SWITCHYARD_ADMIN_TOKEN" in services["service"]["environment"]
