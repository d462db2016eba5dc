"""The async entry points behind ``switchyard serve | service | gateway``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Generator

import uvicorn

from gateway.app import create_app
from gateway.backend import ChatBackend, GrpcBackend, InProcessBackend
from switchyard.config import Config
from switchyard.grpc_options import grpc_options


async def run_service(config: Config) -> None:
    from service.server import serve  # the gateway-only process never loads the service stack

    with _store_errors():
        await serve(config)


async def run_gateway(config: Config) -> None:
    await _run_http(
        config, lambda: GrpcBackend(config.server.grpc_target, grpc_options(config)), on_stop=None
    )


async def run_both(config: Config, backend: str = "inprocess") -> None:
    from service.server import start_service

    with _store_errors():
        running = await start_service(config)
    factory: Callable[[], ChatBackend]
    if backend == "inprocess":
        factory = lambda: InProcessBackend(running.servicer, running.admin, lambda: running.serving)  # noqa: E731
    else:
        factory = lambda: GrpcBackend(config.server.grpc_target, grpc_options(config))  # noqa: E731
    await _run_http(config, factory, on_stop=lambda: running.stop(config.server.shutdown_grace_s))


class _Server(uvicorn.Server):
    """uvicorn.Server whose signals we handle, so the gRPC side can stop after it has drained."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def request_exit(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


async def _run_http(
    config: Config, factory: Callable[[], ChatBackend], on_stop: Callable[[], Awaitable[None]] | None
) -> None:
    server = _Server(
        uvicorn.Config(
            create_app(config, factory),
            host=config.server.http_host,
            port=config.server.http_port,
            http="httptools",
            loop="none",
            lifespan="on",
            access_log=False,
            log_level=config.logging.level,
            timeout_graceful_shutdown=int(config.server.shutdown_grace_s),
        )
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_exit)
    try:
        await server.serve()
    finally:
        if on_stop is not None:
            await on_stop()
    if not server.started:
        raise SystemExit(1)


@contextlib.contextmanager
def _store_errors() -> Generator[None, None, None]:
    """A store that cannot be opened at start is a clear one-line error, not a traceback."""
    from service.store import StoreError

    try:
        yield
    except StoreError as exc:
        print(f"switchyard: cannot open the store: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
