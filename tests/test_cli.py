"""``switchyard serve|service|gateway`` command lines: overrides, and one-line errors for bad ones."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cli import main as cli
from cli import runner
from switchyard.config import Config


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Stand-ins for the runner: record the command and the config it would have run with."""
    seen: dict[str, Any] = {}

    def recorder(name: str) -> Any:
        async def run(config: Config, *args: Any) -> None:
            seen["command"], seen["config"], seen["args"] = name, config, args

        return run

    for name in ("run_both", "run_service", "run_gateway"):
        monkeypatch.setattr(runner, name, recorder(name))
    monkeypatch.setattr(cli, "_run", lambda coro: asyncio.run(coro))
    return seen


def fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Runs the CLI expecting exit 2; returns the single line it wrote to stderr."""
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("switchyard: "), err
    return err


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["serve", "--grpc-port", "70000"], "--grpc-port"),
        (["serve", "--http-port", "99999"], "--http-port"),
        (["service", "--grpc-port", "0"], "--grpc-port"),
        (["gateway", "--http-port", "-5"], "--http-port"),
        (["gateway", "--http-port", "eighty"], "--http-port"),
    ],
)
def test_a_port_override_outside_1_to_65535_is_a_one_line_error(
    argv: list[str], flag: str, started: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--grpc-port 70000`` used to listen on 4464 (70000 mod 65536)."""
    err = fails(argv, capsys)
    assert flag in err and "1 to 65535" in err
    assert started == {}  # nothing was started


@pytest.mark.parametrize("service", ["localhost", "host:70000", "host:", ""])
def test_a_bad_service_address_is_a_one_line_error(
    service: str, started: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    err = fails(["gateway", "--service", service], capsys)
    assert "--service" in err
    assert started == {}


def test_overrides_reach_the_config(started: dict[str, Any]) -> None:
    cli.main(["serve", "--http-port", "18080", "--grpc-port", "15051", "--backend", "grpc"])
    assert started["command"] == "run_both"
    assert (started["config"].server.http_port, started["config"].server.grpc_port) == (18080, 15051)
    assert started["args"] == ("grpc",)


@pytest.mark.parametrize("address", ["10.0.0.7:50051", "unix:/run/switchyard.sock", "[::1]:5"])
def test_gateway_service_overrides_the_service_address(address: str, started: dict[str, Any]) -> None:
    cli.main(["gateway", "--service", address, "--http-port", "18081"])
    assert started["command"] == "run_gateway"
    assert started["config"].server.service_address == address
    assert started["config"].server.grpc_target == address
    assert started["config"].server.http_port == 18081


@pytest.mark.parametrize(
    ("command", "flag"),
    [("service", "--http-port"), ("gateway", "--grpc-port"), ("service", "--service")],
)
def test_each_command_takes_only_the_flags_that_mean_something_to_it(command: str, flag: str) -> None:
    """A flag a command would ignore is refused (the README lists which command takes which)."""
    with pytest.raises(SystemExit) as caught:
        cli.main([command, flag, "1"])
    assert caught.value.code == 2
