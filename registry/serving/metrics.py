"""Prometheus metrics of the recommendation service (``GET /metrics``; ``prometheus_client``).

Each app has its own :class:`prometheus_client.CollectorRegistry`, so several
apps in one process (tests, or two registries served side by side) never clash.

* ``cfreg_model_info{model_id, model_type, version}``: 1 for the served model;
* ``cfreg_model_swaps_total``: times the loader replaced the served model;
* ``cfreg_reload_checks_total`` / ``cfreg_reload_failures_total``: reload checks run and failed;
* ``cfreg_model_load_duration_seconds``: histogram of model reads from disk;
* ``cfreg_request_duration_seconds{endpoint, method, status}``: histogram of request
  latency, labelled with the route template (``/recommend/{user_id}``), never the raw
  path, so user ids cannot blow up the label set.

The loader counters are read from :meth:`ModelLoader.get_stats` at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .loader import ModelLoader

__all__ = ["CONTENT_TYPE_LATEST", "MetricsMiddleware", "ServiceMetrics"]

UNMATCHED = "<unmatched>"
LOAD_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _LoaderCollector(Collector):
    """The loader's state as metrics, read when Prometheus scrapes."""

    def __init__(self, loader: ModelLoader) -> None:
        self.loader = loader

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("cfreg_model_info", "The served model (value 1).",
                                 labels=["model_id", "model_type", "version"])
        state = self.loader.get_current_model()
        if state is not None:
            info.add_metric([state.model_id, state.model_type, state.version], 1)
        yield info
        stats = self.loader.get_stats()
        yield CounterMetricFamily("cfreg_model_swaps", "Times the served model was replaced.", value=stats["swap_count"])
        yield CounterMetricFamily("cfreg_reload_checks", "Reload checks run.", value=stats["reload_count"])
        yield CounterMetricFamily("cfreg_reload_failures", "Reload checks that failed.", value=stats["reload_failures"])
        yield GaugeMetricFamily("cfreg_loader_cache_bytes", "Bytes held by the loader cache.", value=stats["cache_bytes"])


class ServiceMetrics:
    """The metrics of one app: a registry, the loader collector and the two histograms.

    Args:
        loader: the loader the app serves from; its disk reads feed the load histogram
            until :meth:`close`.
    """

    def __init__(self, loader: ModelLoader) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_LoaderCollector(loader))
        self.load_duration = Histogram(
            "cfreg_model_load_duration_seconds", "Model reads from disk (verify and install included).",
            buckets=LOAD_BUCKETS, registry=self.registry,
        )
        self.request_duration = Histogram(
            "cfreg_request_duration_seconds", "HTTP request latency by route template.",
            ["endpoint", "method", "status"], buckets=REQUEST_BUCKETS, registry=self.registry,
        )
        self._remove_listener = loader.add_load_listener(lambda _model_id, seconds: self.load_duration.observe(seconds))

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)

    def close(self) -> None:
        """Stop observing the loader (the shared loader outlives the app)."""
        self._remove_listener()


class MetricsMiddleware:
    """ASGI middleware that times every HTTP request into ``request_duration``.

    The metrics object is looked up per request (``app.state.metrics``), so the
    middleware can be installed before the lifespan creates it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            metrics = getattr(getattr(scope.get("app"), "state", None), "metrics", None)
            if metrics is not None:
                route = scope.get("route")
                endpoint = getattr(route, "path", None) or UNMATCHED
                metrics.request_duration.labels(endpoint, scope.get("method", ""), str(status)).observe(
                    time.perf_counter() - started
                )
