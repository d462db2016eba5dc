"""Build, run and stop the gRPC server (grpc.aio), with health checking and reflection."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace import TracerProvider

from service.admin import AdminServicer
from service.counters import open_counters
from service.embeddings import EmbeddingsEngine, EmbeddingsServicer
from service.engine import ChatEngine
from service.governance import Governance
from service.health import health_for
from service.pipeline import Plugin
from service.plugins import AccessLogPlugin, GovernancePlugin, MetricsPlugin, TracingPlugin
from service.plugins.cache import CachePlugin, Embedder, ResponseCache, build_cache
from service.plugins.cache.semantic import EngineEmbedder
from service.plugins.tracing import build_tracer_provider
from service.pricing import PriceTable
from service.providers import Provider, ProviderContext, build_provider
from service.providers import check as check_providers
from service.request_log import RequestLogWriter
from service.routing import Router
from service.servicer import ChatCompletionsServicer
from service.stats import ServiceStats
from service.store import open_store
from switchyard.config import Config, ConfigError
from switchyard.grpc_options import grpc_options, server_options
from switchyard.metrics import CircuitStateGauge, ProcessMetrics, serve_metrics
from switchyard.open_streams import STREAM_END_S, OpenStreams
from switchyard.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    chat_pb2,
    chat_pb2_grpc,
    embeddings_pb2,
    embeddings_pb2_grpc,
)

log = logging.getLogger("switchyard.service")

SERVICE_NAME = chat_pb2.DESCRIPTOR.services_by_name["ChatCompletions"].full_name
ADMIN_SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name
EMBEDDINGS_SERVICE_NAME = embeddings_pb2.DESCRIPTOR.services_by_name["Embeddings"].full_name


@dataclass
class RunningService:
    server: grpc.aio.Server
    health: grpc_health.aio.HealthServicer
    servicer: ChatCompletionsServicer
    admin: AdminServicer
    governance: Governance
    providers: dict[str, Provider]
    port: int
    metrics: ProcessMetrics
    tracer_provider: TracerProvider | None = None
    metrics_server: asyncio.Server | None = None
    cache: ResponseCache | None = None
    serving: bool = True
    embeddings: EmbeddingsServicer | None = None

    async def stop(self, grace_s: float) -> None:
        """Report NOT_SERVING, finish in-flight calls within ``grace_s``, close upstream clients,
        then flush the request log (nothing logged so far is lost) and close the store.

        Streams still open when the grace ends get an answer (UNAVAILABLE,
        ``server_shutting_down``) rather than being cut; gRPC's own cancel, a moment
        later, is the backstop for unary calls."""
        self.serving = False
        await self.health.enter_graceful_shutdown()
        stopping = asyncio.ensure_future(self.server.stop(grace_s + STREAM_END_S))
        await self.servicer.engine.streams.end_after(grace_s)
        await stopping
        await asyncio.gather(*(p.aclose() for p in self.providers.values()), return_exceptions=True)
        if self.cache is not None:
            await self.cache.aclose()  # after the calls: their pending writes finish first
        await self.governance.aclose()
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.tracer_provider is not None:
            # Exports what is still batched; blocking, so off the loop.
            await asyncio.to_thread(self.tracer_provider.shutdown)


async def start_governance(config: Config) -> Governance:
    """Open the store (running migrations), the counters and the price table; seed config keys.

    On failure nothing stays open: the store's thread would otherwise keep the process alive."""
    try:
        prices = PriceTable.load(config.pricing)  # first: it opens nothing
    except ValueError as exc:
        raise ConfigError("pricing.file", str(exc)) from None
    store = open_store(config.store.url)
    await store.open()
    governance: Governance | None = None
    try:
        logs = RequestLogWriter(store, config.request_logs) if config.request_logs.enabled else None
        governance = Governance(config, store, open_counters(config.store.redis_url), prices, logs)
        await governance.start()
    except BaseException:
        if governance is not None:
            await governance.aclose()  # closes the store too
        else:
            await store.aclose()
        raise
    return governance


def build_plugins(
    config: Config,
    governance: Governance,
    metrics: ProcessMetrics,
    streams: OpenStreams,
    tracer_provider: TracerProvider | None,
    cache: ResponseCache | None = None,
) -> list[Plugin]:
    """The pipeline's plugins, in order. Telemetry first: its post hooks then run for every
    call, refused ones included; a telemetry plugin that is off is not in the list at all.
    The response cache comes after governance: a caller is admitted and rate limited before
    a hit is served (a hit is still a request), and it is not in the list when it is off."""
    telemetry = config.telemetry
    plugins: list[Plugin] = []
    if tracer_provider is not None:
        plugins.append(TracingPlugin(tracer_provider, telemetry.tracing, config.providers))
    if telemetry.metrics.enabled:
        plugins.append(MetricsPlugin(metrics, streams, governance.logs))
    if config.logging.access_log:
        plugins.append(AccessLogPlugin())
    plugins.append(GovernancePlugin(governance))
    if cache is not None:
        plugins.append(CachePlugin(cache))
    return plugins


async def start_cache(
    config: Config, metrics: ProcessMetrics | None, embedder: Embedder | None = None
) -> ResponseCache | None:
    """The response cache, opened; None when it is off. A store that cannot be opened (Redis
    down, an unwritable file) stops the start, as the governance store does."""
    if not config.cache.enabled:
        return None
    cache = build_cache(config.cache, config.store.redis_url, metrics, embedder)
    try:
        await cache.open()
    except Exception as exc:
        await cache.aclose()
        raise ConfigError("cache.store", f"the response cache cannot be opened: {exc}") from None
    return cache


async def start_service(
    config: Config,
    address: str | None = None,
    metrics: ProcessMetrics | None = None,
    serve_metrics_port: bool = False,
) -> RunningService:
    """Start the service on ``address`` (default: grpc_host:grpc_port; ``unix:/path`` works).

    ``metrics``: the process's registry (the REST gateway in the same process serves it);
    ``serve_metrics_port``: serve it on ``telemetry.metrics_port`` (a service running alone).

    The port is bound first, so a port in use fails before anything is opened; a failure
    after that closes what was opened (governance, upstream clients) before it propagates."""
    check_providers(config.providers)  # a bad provider section fails before anything opens
    address = address or f"{config.server.grpc_host}:{config.server.grpc_port}"
    # Two servers must never silently share a port.
    server = grpc.aio.server(
        options=[*grpc_options(config), *server_options(config), ("grpc.so_reuseport", 0)]
    )
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:  # grpc says only "Failed to bind"; its own log line above says why
        port = 0
    if port == 0 and not address.startswith("unix:"):
        raise OSError(f"cannot listen on {address} (gRPC): grpc could not bind it")
    for name, provider in config.providers.items():
        if not provider.keys:
            log.warning(
                "provider %r has no keys configured: calls routed to it get 502 no_keys_available", name
            )
    providers: dict[str, Provider] = {}
    governance: Governance | None = None
    metrics = metrics or ProcessMetrics(config.telemetry.metrics)
    tracer_provider = build_tracer_provider(config.telemetry.tracing)
    metrics_server: asyncio.Server | None = None
    cache: ResponseCache | None = None
    try:
        telemetry = config.telemetry
        if serve_metrics_port and telemetry.metrics_port and telemetry.metrics.enabled:
            try:
                metrics_server = await serve_metrics(metrics, telemetry.metrics_host, telemetry.metrics_port)
            except OSError as exc:
                where = f"{telemetry.metrics_host}:{telemetry.metrics_port}"
                raise OSError(f"cannot listen on {where} (metrics): {exc.strerror or exc}") from None
        governance = await start_governance(config)
        stats = ServiceStats()
        context = ProviderContext(config.timeouts, stats, keep_raw=config.logging.raw_request)
        providers = {name: build_provider(p, context) for name, p in config.providers.items()}
        streams = OpenStreams()
        # The cache's semantic lookup embeds through the embeddings engine, built after the
        # plugins (it runs them): the embedder is bound to it once it exists.
        embedder = (
            EngineEmbedder(config.cache.semantic.embedding_model) if config.cache.semantic.enabled else None
        )
        cache = await start_cache(config, metrics if config.telemetry.metrics.enabled else None, embedder)
        plugins = build_plugins(config, governance, metrics, streams, tracer_provider, cache)
        # One set of circuit breakers for chat and embeddings: a failing key or upstream is the same.
        health = health_for(config)
        engine = ChatEngine(
            config, providers, plugins, router=Router(config, health=health), stats=stats, streams=streams
        )
        embeddings_engine = EmbeddingsEngine(
            config, providers, plugins, router=Router(config, health=health), price=governance.price_usage
        )
        if embedder is not None:
            embedder.engine = embeddings_engine
        embeddings = EmbeddingsServicer(embeddings_engine)
        servicer = ChatCompletionsServicer(engine)
        admin = AdminServicer(governance, engine.stats, engine.health, cache, config)
        if config.telemetry.metrics.enabled:
            # Registered with breakers off too (no series then): dashboards and alerts find the family.
            breakers = engine.health
            metrics.registry.register(CircuitStateGauge(breakers.target_states if breakers else tuple))
        chat_pb2_grpc.add_ChatCompletionsServicer_to_server(servicer, server)
        embeddings_pb2_grpc.add_EmbeddingsServicer_to_server(embeddings, server)
        admin_pb2_grpc.add_AdminServicer_to_server(admin, server)
        health_servicer = grpc_health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                EMBEDDINGS_SERVICE_NAME,
                ADMIN_SERVICE_NAME,
                grpc_health.SERVICE_NAME,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        await server.start()
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        await health_servicer.set(EMBEDDINGS_SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    except BaseException:
        await server.stop(None)
        await asyncio.gather(*(p.aclose() for p in providers.values()), return_exceptions=True)
        if cache is not None:
            await cache.aclose()
        if governance is not None:
            await governance.aclose()
        if metrics_server is not None:
            metrics_server.close()
        if tracer_provider is not None:
            tracer_provider.shutdown()
        raise
    log.info("gRPC service listening on %s", address if address.startswith("unix:") else f"port {port}")
    return RunningService(
        server,
        health_servicer,
        servicer,
        admin,
        governance,
        providers,
        port,
        metrics,
        tracer_provider,
        metrics_server,
        cache,
        embeddings=embeddings,
    )


async def serve(config: Config) -> None:
    """Run the service alone until SIGINT/SIGTERM, then stop gracefully."""
    running = await start_service(config, serve_metrics_port=True)
    await wait_for_signal()
    log.info("stopping: finishing in-flight calls (grace %.0fs)", config.server.shutdown_grace_s)
    await running.stop(config.server.shutdown_grace_s)


async def wait_for_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
