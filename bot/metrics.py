"""Prometheus metrics of the bot, served at /metrics."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

HTTP_REQUESTS = Counter(
    "nexus_http_requests_total",
    "HTTP requests answered, by route and status code.",
    ["route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "nexus_http_request_duration_seconds",
    "Time to answer an HTTP request, by route.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
DATABASE_UP = Gauge(
    "nexus_database_up", "1 when the last readiness check reached the database.", registry=REGISTRY
)
FEATURE_ENABLED = Gauge(
    "nexus_feature_enabled",
    "1 when a feature has the credentials it needs, else 0.",
    ["feature"],
    registry=REGISTRY,
)
ALERTS_INGESTED = Counter(
    "nexus_alerts_ingested_total", "Alertmanager alerts stored.", registry=REGISTRY
)
INBOX_APPLIED = Counter(
    "nexus_inbox_applied_total",
    "Accepted webhook bodies applied to incidents, by source.",
    ["source"],
    registry=REGISTRY,
)
INBOX_FAILED = Counter(
    "nexus_inbox_failed_total",
    "Accepted webhook bodies given up on after repeated failures (kept in the inbox table).",
    registry=REGISTRY,
)
INBOX_ROWS = Gauge(
    "nexus_inbox_rows",
    "Inbox rows by state (pending: accepted, not yet applied; failed: given up on), "
    "as of the worker's last idle moment.",
    ["state"],
    registry=REGISTRY,
)
INBOX_LAG = Histogram(
    "nexus_inbox_lag_seconds",
    "Time from a webhook's 202 to its body being applied to incidents.",
    ["source"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
INGEST_REFUSED = Counter(
    "nexus_ingest_refused_total",
    "Alertmanager batches answered 503 because the ingest backlog was full.",
    registry=REGISTRY,
)
HTTP_LIMITED = Counter(
    "nexus_http_limited_total",
    "Requests and connections cut short by an HTTP limit (bot/http_limits.py), by reason: "
    "request_timeout (408 or close), over_concurrency (503), connection_evicted (an idle "
    "connection closed to make room), connection_refused (503, every connection busy).",
    ["reason"],
    registry=REGISTRY,
)
SWEEP_LAST_SUCCESS = Gauge(
    "nexus_job_last_success_timestamp_seconds",
    "Unix time a periodic sweep last finished without error (the process start until then), "
    "by sweep: config/prometheus/nexus-bot-health.rules.yaml alerts when it stalls.",
    ["sweep"],
    registry=REGISTRY,
)
