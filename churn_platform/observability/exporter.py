"""`churn-platform metrics serve`: the collector on ``/metrics`` over HTTP (prometheus_client's
WSGI server, one thread per request), until SIGTERM or SIGINT."""

import logging
import signal
import threading

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest, start_http_server

from churn_platform.observability.collector import PlatformCollector

log = logging.getLogger(__name__)


def registry_for(collector: PlatformCollector) -> CollectorRegistry:
    """The platform's metrics and the exporter's own process metrics (memory, CPU, open files)."""
    registry = CollectorRegistry(auto_describe=False)  # a scrape, not registration, reads the instance
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


def render(collector: PlatformCollector) -> bytes:
    """One scrape in the Prometheus text format."""
    return generate_latest(registry_for(collector))


def serve(collector: PlatformCollector, host: str, port: int) -> None:
    server, thread = start_http_server(port, addr=host, registry=registry_for(collector))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("serving the platform's metrics on http://%s:%s/metrics", host, port)
    try:
        while not stop.wait(1):
            if not thread.is_alive():
                raise RuntimeError("the metrics HTTP server stopped")
    finally:
        server.shutdown()
        server.server_close()
        collector.close()
