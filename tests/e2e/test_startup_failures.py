"""A start that fails says why in one line and exits 1 at once, leaving nothing running.

Supervisors (systemd, container runtimes) restart a process that exits, not one that hangs.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import base_config, free_port, secret_env


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port that another program listens on."""
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        yield blocker.getsockname()[1]


def start(command: list[str], config: dict, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    config["store"] = {"url": f"sqlite:///{tmp_path / 'switchyard.db'}"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cli", *command, "--config", str(path)],
        capture_output=True,
        text=True,
        env=secret_env(),
        timeout=20,  # before the fix the process never exited: this kills it and fails the test
    )
    return done, time.monotonic() - began


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        (["serve"], "gRPC"),
        (["serve"], "HTTP"),
        (["serve", "--backend", "grpc"], "HTTP"),
        (["service"], "gRPC"),
        (["gateway"], "HTTP"),
    ],
)
def test_a_port_in_use_is_one_line_and_exit_1(
    command: list[str], kind: str, taken_port: int, tmp_path: Path
) -> None:
    ports = {"HTTP": free_port(), "gRPC": free_port()}
    ports[kind] = taken_port
    done, elapsed = start(command, base_config("http://127.0.0.1:9", ports["HTTP"], ports["gRPC"]), tmp_path)
    line = f"switchyard: cannot listen on 127.0.0.1:{taken_port} ({kind}): address already in use"
    assert done.returncode == 1, done.stderr
    assert line in done.stderr.splitlines(), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    # Python's start-up is most of this; governance, stores and threads must not hold it open.
    assert elapsed < 5, elapsed


def test_the_other_port_is_free_again_after_a_failed_serve(taken_port: int, tmp_path: Path) -> None:
    """``serve`` with its HTTP port taken had already started the gRPC side: it is gone too."""
    grpc_port = free_port()
    done, _ = start(["serve"], base_config("http://127.0.0.1:9", taken_port, grpc_port), tmp_path)
    assert done.returncode == 1, done.stderr
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", grpc_port))  # raises if anything still listens there


def test_an_unusable_price_file_is_one_line_and_exits(tmp_path: Path) -> None:
    """A failure after the store was opened must not leave its thread holding the process open."""
    prices = tmp_path / "prices.json"
    prices.write_text('{"gpt-x": {"input": "free"}}')
    config = base_config("http://127.0.0.1:9", free_port(), free_port())
    config["pricing"] = {"file": str(prices)}
    done, elapsed = start(["service"], config, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("switchyard: ")] == [
        line for line in done.stderr.splitlines() if "prices.json" in line
    ]
    assert elapsed < 5, elapsed
