"""What the tests and ``bench/`` share: free ports, the test config, the secrets it reads from the
environment, and real Switchyard processes (:func:`start_stack`) pointed at the fake upstreams.

``tests/conftest.py`` holds only fixtures built from these.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

AZURE_KEY = "az-secret-key-0123456789abcdef"
OPENAI_KEY = "sk-openai-secret-0123456789abcdef"
ROTATE_KEYS = ("rot-key-a-secret-000111", "rot-key-b-secret-222333")
ENTRA_TOKEN = "entra-token-secret-abcdef"
OPEN_MODE_ADMIN_TOKEN = "open-mode-admin-token-93c1f0"
ANTHROPIC_KEY = "sk-ant-test-secret-0123456789abcdef"
SECRETS = (AZURE_KEY, OPENAI_KEY, *ROTATE_KEYS, ENTRA_TOKEN, OPEN_MODE_ADMIN_TOKEN, ANTHROPIC_KEY)
# The Anthropic model the e2e config routes to: in the shipped price table, cache prices included.
CLAUDE = "claude-sonnet-4-5"


REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_config(upstream_url: str, http_port: int, grpc_port: int, anthropic_url: str = "") -> dict:
    """The test config: every provider points at the fake upstream (Anthropic at its own fake,
    when ``anthropic_url`` is given); backoff is fast."""
    config: dict[str, Any] = {
        "server": {
            "http_port": http_port,
            "grpc_port": grpc_port,
            "max_body_bytes": 1_000_000,
            "shutdown_grace_s": 5,
        },
        "routing": {"default_provider": "azure"},
        "retries": {"max_retries": 2, "backoff_initial_ms": 1, "backoff_max_ms": 5, "max_retry_after_s": 5},
        "timeouts": {"connect_s": 2, "read_s": 2, "total_s": 20},
        # The session's stacks are shared by many tests, and an upstream that one test breaks
        # on purpose must not be skipped in the next: tests/e2e/test_circuit.py turns them on.
        "resilience": {"circuit": {"enabled": False}},
        "logging": {"level": "info", "raw_request": True},
        # The routing/resilience suites run in open mode; tests/e2e/test_governance*.py turn auth on.
        "auth": {"required": False, "admin_token": "${SY_TEST_ADMIN_TOKEN}"},
        "providers": {
            "azure": {
                "kind": "azure",
                "base_url": upstream_url,
                "api_version": "2024-10-21",
                "keys": [{"value": "${SY_TEST_AZURE_KEY}"}],
            },
            # No api_version configured: the caller's is used.
            "azure-rotating": {
                "kind": "azure",
                "base_url": upstream_url,
                "keys": [
                    {"value": "${SY_TEST_ROT_A}", "weight": 1},
                    {"value": "${SY_TEST_ROT_B}", "weight": 1},
                ],
            },
            "entra": {
                "kind": "azure",
                "auth": "bearer",
                "base_url": upstream_url,
                "keys": [{"value": "${SY_TEST_ENTRA}", "models": ["entra-*"]}],
            },
            "openai": {
                "kind": "openai",
                "base_url": upstream_url + "/v1",
                "keys": [{"value": "${SY_TEST_OPENAI_KEY}"}],
            },
        },
        "deployments": {
            "chat": {
                "targets": [{"provider": "azure", "model": "chat-prod"}],
                "fallbacks": ["openai/gpt-fb-config"],
            },
            "weighted": {
                "targets": [
                    {"provider": "azure", "model": "weighted-a", "weight": 1},
                    {"provider": "openai", "model": "weighted-b", "weight": 3},
                ]
            },
            "rotating": {"targets": [{"provider": "azure-rotating", "model": "rotating-dep"}]},
        },
    }
    if anthropic_url:
        config["providers"]["anthropic"] = {
            "kind": "anthropic",
            "base_url": anthropic_url,
            "keys": [{"value": "${SY_TEST_ANTHROPIC_KEY}"}],
        }
        config["deployments"]["claude"] = {
            "targets": [{"provider": "anthropic", "model": CLAUDE}],
            "fallbacks": ["azure/claude-fallback"],
        }
        config["deployments"]["azure-then-claude"] = {
            "targets": [{"provider": "azure", "model": "azure-first"}],
            "fallbacks": [f"anthropic/{CLAUDE}"],
        }
    return config


def secret_env() -> dict[str, str]:
    return {
        **os.environ,
        "SY_TEST_AZURE_KEY": AZURE_KEY,
        "SY_TEST_OPENAI_KEY": OPENAI_KEY,
        "SY_TEST_ROT_A": ROTATE_KEYS[0],
        "SY_TEST_ROT_B": ROTATE_KEYS[1],
        "SY_TEST_ENTRA": ENTRA_TOKEN,
        "SY_TEST_ADMIN_TOKEN": OPEN_MODE_ADMIN_TOKEN,
        "SY_TEST_ANTHROPIC_KEY": ANTHROPIC_KEY,
        "PYTHONUNBUFFERED": "1",
    }


@dataclass
class Stack:
    """Running Switchyard processes: REST at ``base_url``, gRPC at ``grpc_target``."""

    mode: str
    base_url: str
    grpc_target: str
    config_path: Path
    log_paths: list[Path]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.log_paths)

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# The processes of each mode, as arguments to the `switchyard` command (the order of Stack.processes).
COMMANDS = {
    "inprocess": [["serve"]],
    "grpc-loopback": [["serve", "--backend", "grpc"]],
    "split": [["service"], ["gateway"]],
}


def start_stack(
    mode: str,
    config: dict,
    workdir: Path,
    env: dict[str, str] | None = None,
    *,
    module: str = "cli",
    ready_timeout_s: float = 30.0,
) -> Stack:
    """Start Switchyard in ``mode`` ("inprocess", "grpc-loopback" or "split") and wait until ready.

    ``env`` adds environment variables (secrets the config refers to as ``${VAR}``); each process
    also gets ``SY_PROCESS_ROLE`` (serve, service or gateway). ``module`` is what ``python -m`` runs:
    the ``switchyard`` command, or a wrapper of it (``bench.traced``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config.setdefault("store", {"url": f"sqlite:///{workdir / 'switchyard.db'}"})
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    http_port, grpc_port = config["server"]["http_port"], config["server"]["grpc_port"]
    commands = COMMANDS[mode]
    stack = Stack(mode, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", config_path, [])
    env = {**secret_env(), **(env or {})}
    for i, args in enumerate(commands):
        log_path = workdir / f"{args[0]}-{i}.log"
        stack.log_paths.append(log_path)
        with log_path.open("wb") as log:
            stack.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", module, *args, "--config", str(config_path)],
                    cwd=REPO_ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**env, "SY_PROCESS_ROLE": args[0]},
                )
            )
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        for proc in stack.processes:
            if proc.poll() is not None:
                stack.stop()
                raise RuntimeError(f"switchyard exited early ({mode}):\n{stack.logs()}")
        try:
            if httpx.get(f"{stack.base_url}/ready", timeout=1).status_code == 200:
                return stack
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stack.stop()
    raise RuntimeError(f"switchyard did not become ready ({mode}):\n{stack.logs()}")
