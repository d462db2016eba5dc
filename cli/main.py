"""``switchyard serve | service | gateway | keys | token``: run Switchyard, or administer it.

- ``serve``: both in one process. The REST gateway calls the service in-process
  (``--backend inprocess``, the default) or over its own gRPC port
  (``--backend grpc``); the gRPC port stays open for gRPC consumers either way.
- ``service``: the gRPC service alone.  ``gateway``: the REST gateway alone,
  reaching the service at ``--service`` (else ``server.service_address``).

Ctrl-C / SIGTERM stop cleanly: the gateway finishes in-flight requests, then
the service does, within ``server.shutdown_grace_s``.

- ``keys create|list|revoke``: virtual keys, through the running service's Admin API
  (an admin credential from ``--token`` or ``$SWITCHYARD_ADMIN_TOKEN``).
- ``keys generate``: print a fresh ``sk-bf-`` secret (for keys declared in the config file).
- ``token mint``: sign a development JWT with ``auth.jwt.secret``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import sys
from collections.abc import Coroutine

from switchyard import logs
from switchyard.config import Config, ConfigError, load_config, port_number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchyard", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the REST gateway and the gRPC service in one process"),
        ("service", "run the gRPC service alone"),
        ("gateway", "run the REST gateway alone"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument(
            "--config", help="YAML config file (default: $SWITCHYARD_CONFIG, else the built-in one)"
        )
        # Strings, checked in _with_overrides: a bad value is then one line like any config error.
        if name in ("serve", "gateway"):
            cmd.add_argument("--http-port", metavar="PORT", help="override server.http_port")
        if name in ("serve", "service"):
            cmd.add_argument("--grpc-port", metavar="PORT", help="override server.grpc_port")
        if name == "gateway":
            cmd.add_argument(
                "--service",
                metavar="HOST:PORT",
                help="where the service listens, host:port or unix:/path (override server.service_address)",
            )
        if name == "serve":
            cmd.add_argument(
                "--backend",
                choices=("inprocess", "grpc"),
                default="inprocess",
                help="how the gateway reaches the service (default: inprocess)",
            )
    from cli import admin

    admin.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command in ("keys", "token"):
        from cli import admin

        raise SystemExit(admin.run(args))

    try:
        config = _with_overrides(load_config(args.config), args)
    except ConfigError as exc:
        print(f"switchyard: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.configure(config.logging)
    from cli import runner

    if args.command == "serve":
        _run(runner.run_both(config, args.backend))
    elif args.command == "service":
        _run(runner.run_service(config))
    else:
        _run(runner.run_gateway(config))


def _with_overrides(config: Config, args: argparse.Namespace) -> Config:
    server = config.server
    if getattr(args, "http_port", None) is not None:
        server = dataclasses.replace(server, http_port=port_number(args.http_port, "--http-port"))
    if getattr(args, "grpc_port", None) is not None:
        server = dataclasses.replace(server, grpc_port=port_number(args.grpc_port, "--grpc-port"))
    if getattr(args, "service", None) is not None:
        server = dataclasses.replace(server, service_address=_service_address(args.service))
    return dataclasses.replace(config, server=server)


def _service_address(text: str) -> str:
    if text.startswith("unix:") and len(text) > len("unix:"):
        return text
    host, sep, port = text.rpartition(":")
    if not (sep and host.strip("[]") and port.isdigit() and int(port) in range(1, 65536)):
        raise ConfigError("--service", f"must be host:port (port 1 to 65535) or unix:/path (got {text!r})")
    return text


def _run(coro: Coroutine[None, None, None]) -> None:
    # Startup objects (modules, config, protobuf descriptors) never die: freeze them out of
    # the collector's view, and collect young objects less often. Measured with a 20 ms
    # upstream at concurrency 32: p99 ~50 ms -> ~36 ms, p50 also lower, RSS unchanged.
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    main()
