"""Prometheus metrics shared by the apps; each app serves them on its own port at /metrics, or
on a metrics port of their own (`HttpSettings.metrics_port`, set in Kubernetes)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "milepost_http_requests_total",
    "HTTP requests by app, method, route template and status.",
    ["app", "method", "route", "status"],
)
REQUEST_LATENCY = Histogram(
    "milepost_http_request_duration_seconds",
    "HTTP request latency by app, method and route template.",
    ["app", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
