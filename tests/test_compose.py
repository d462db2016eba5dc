"""No Docker engine runs here, so check docker-compose.yml against the CLI and config instead."""

from __future__ import annotations

from pathlib import Path

import yaml

from switchyard.cli import build_parser
from switchyard.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _mounted_config(service: dict) -> Path:
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        if target == "/etc/switchyard/config.yaml":
            return ROOT / source
    raise AssertionError("config is not mounted")


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
        config = load_config(
            args.config.replace("/etc/switchyard/config.yaml", str(_mounted_config(service))), env={}
        )
        port = args.grpc_port if name == "service" else args.http_port
        default_port = config.server.grpc_port if name == "service" else config.server.http_port
        assert port == default_port, f"{name}: --port and the mounted config disagree"
        published = {int(p.split(":")[1]) for p in service["ports"]}
        assert port in published, f"{name}: container port {port} is not published"
        assert service["healthcheck"]["test"], f"{name} has no healthcheck"
        assert service["build"] == "."


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
    for folder in ("switchyard", "service", "gateway", "protos"):
        assert f"COPY {folder}" in dockerfile


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
