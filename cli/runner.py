"""The async entry points behind ``switchyard serve | service | gateway``.

Every failure at start is one ``switchyard: …`` line and a non-zero exit, with nothing
left running: supervisors (systemd, container runtimes) restart a process that exits,
not one that hangs. Ports are bound first, before any store, thread or task is opened,
so a port already in use has nothing to clean up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Generator

import uvicorn

from gateway.app import create_app
from gateway.backend import ChatBackend, GrpcBackend, InProcessBackend
from switchyard.config import Config, ConfigError
from switchyard.grpc_options import grpc_options
from switchyard.metrics import OpenStreamsGauge, ProcessMetrics
from switchyard.open_streams import STREAM_END_S, OpenStreams

log = logging.getLogger("switchyard.gateway")


class ListenError(OSError):
    """A port cannot be listened on; the message is the whole story, for one line."""


async def run_service(config: Config) -> None:
    from service.server import serve  # the gateway-only process never loads the service stack

    with _start_errors(), _store_errors():
        _bind(config.server.grpc_host, config.server.grpc_port, "gRPC", probe=True)
        telemetry = config.telemetry
        if telemetry.metrics_port and telemetry.metrics.enabled:
            _bind(telemetry.metrics_host, telemetry.metrics_port, "metrics", probe=True)
        await serve(config)


async def run_gateway(config: Config) -> None:
    with _start_errors():
        sockets = _bind(config.server.http_host, config.server.http_port, "HTTP")
    await _run_http(
        config,
        lambda: GrpcBackend(config.server.grpc_target, grpc_options(config)),
        sockets,
        on_stop=None,
        metrics=ProcessMetrics(config.telemetry.metrics),
    )


async def run_both(config: Config, backend: str = "inprocess") -> None:
    from service.server import start_service

    with _start_errors(), _store_errors():
        sockets = _bind(config.server.http_host, config.server.http_port, "HTTP")
        try:
            _bind(config.server.grpc_host, config.server.grpc_port, "gRPC", probe=True)
            running = await start_service(config, metrics=ProcessMetrics(config.telemetry.metrics))
        except BaseException:
            _close(sockets)
            raise
    factory: Callable[[], ChatBackend]
    if backend == "inprocess":
        factory = lambda: InProcessBackend(  # noqa: E731
            running.servicer, running.admin, lambda: running.serving, running.embeddings
        )
    else:
        factory = lambda: GrpcBackend(config.server.grpc_target, grpc_options(config))  # noqa: E731
    grace = config.server.shutdown_grace_s
    await _run_http(
        config,
        factory,
        sockets,
        on_stop=lambda: running.stop(grace),
        # The service ends its streams at the grace with an answer, which the gateway passes on.
        service_streams=running.servicer.engine.streams,
        metrics=running.metrics,  # one process, one registry: the service's series
    )


class _Server(uvicorn.Server):
    """uvicorn.Server whose signals we handle, so the gRPC side can stop after it has drained."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def request_exit(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:  # uvicorn announces itself only when it binds the port on its own
            log.info("REST gateway listening on http://%s", _where(self.config.host, self.config.port))


async def _run_http(
    config: Config,
    factory: Callable[[], ChatBackend],
    sockets: list[socket.socket],
    on_stop: Callable[[], Awaitable[None]] | None,
    service_streams: OpenStreams | None = None,
    metrics: ProcessMetrics | None = None,
) -> None:
    app = create_app(config, factory, metrics if config.telemetry.metrics.enabled else None)
    if metrics is not None and service_streams is None:  # a gateway alone counts its own streams
        metrics.registry.register(OpenStreamsGauge(app.state.open_streams))
    grace = config.server.shutdown_grace_s
    server = _Server(
        uvicorn.Config(
            app,
            host=config.server.http_host,
            port=config.server.http_port,
            http="httptools",
            loop="none",
            lifespan="on",
            access_log=False,
            log_level=config.logging.level,
            # uvicorn's records go to the root logger, in the process's one format (text or JSON).
            log_config=None,
            # A backstop only: streams are ended with an answer at the grace (below), so
            # uvicorn's own cancel, which cuts a response mid-body, should find nothing left.
            timeout_graceful_shutdown=math.ceil(grace + _GATEWAY_MARGIN_S + STREAM_END_S + 1),
        )
    )
    loop = asyncio.get_running_loop()
    ending: list[asyncio.Task[None]] = []

    def on_signal() -> None:
        server.request_exit()
        if not ending:
            ending.append(loop.create_task(_end_streams(app.state.open_streams, grace, service_streams)))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        # uvicorn leaves by sys.exit(3) when the app's startup fails; that is our exit 1 below.
        with contextlib.suppress(SystemExit):
            await server.serve(sockets=sockets)
    finally:
        _close(sockets)
        for task in ending:
            task.cancel()
        if on_stop is not None:
            await on_stop()
    if not server.started:
        print("switchyard: the REST gateway did not start (the log above says why)", file=sys.stderr)
        raise SystemExit(1)


# How much longer than the grace a gateway alone waits before ending its streams itself.
_GATEWAY_MARGIN_S = 2.0


async def _end_streams(streams: OpenStreams, grace_s: float, service_streams: OpenStreams | None) -> None:
    """At the end of the grace, open streams get one SSE error event instead of a cut."""
    if service_streams is not None:
        await service_streams.end_after(grace_s)  # the gateway passes the service's answer on
        await streams.end_after(0)  # and ends what is left at once
    else:
        # A gateway alone waits a moment longer: a service stopping at the same time ends the
        # same streams at its grace with its own answer, and logs them as such (503, not 499).
        await streams.end_after(grace_s + _GATEWAY_MARGIN_S)


def _bind(host: str, port: int, kind: str, *, probe: bool = False) -> list[socket.socket]:
    """Bind ``host:port`` as the server will, or raise ListenError saying why not.

    ``probe``: only check, and close at once (grpc binds its own sockets). A probe of ``::``
    stays dual-stack, as grpc binds it, so an IPv4 listener on the port is found too.
    """
    bare, where = host.strip("[]"), _where(host, port)
    try:
        found = socket.getaddrinfo(bare or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {where} ({kind}): {_reason(exc)}") from None
    addresses = list(dict.fromkeys(found))
    # Several families (host ""): each IPv6 socket must not also claim IPv4, or they collide.
    # asyncio (which uvicorn would use) always binds IPv6 alone; we keep that for HTTP.
    v6only = not probe or len({info[0] for info in addresses}) > 1
    sockets: list[socket.socket] = []
    try:
        for family, kind_, proto, _name, address in addresses:
            sock = socket.socket(family, kind_, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and v6only:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        _close(sockets)
        raise ListenError(f"cannot listen on {where} ({kind}): {_reason(exc)}") from None
    if probe:
        _close(sockets)
        return []
    return sockets


def _where(host: str, port: int) -> str:
    bare = host.strip("[]")
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"


def _reason(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _close(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


@contextlib.contextmanager
def _start_errors() -> Generator[None, None, None]:
    """A start that fails is one line and an exit, not a traceback."""
    try:
        yield
    except ConfigError as exc:  # a config value only the start could check (a price file's content)
        print(f"switchyard: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:  # ListenError, or a port lost to a race between our check and grpc's bind
        print(f"switchyard: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


@contextlib.contextmanager
def _store_errors() -> Generator[None, None, None]:
    """A store that cannot be opened at start is a clear one-line error, not a traceback."""
    from service.store import StoreError  # only where the service runs: the gateway never loads it

    try:
        yield
    except StoreError as exc:
        print(f"switchyard: cannot open the store: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
