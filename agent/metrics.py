"""The agent's Prometheus metrics: one registry per process, served on its own /metrics."""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

RECONCILE_SECONDS = Histogram(
    "flotilla_agent_reconcile_duration_seconds",
    "Time of one reconcile pass.",
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "flotilla_agent_reconcile_errors_total",
    "Reconcile passes that failed with an unexpected error.",
    registry=REGISTRY,
)
CONTAINER_ACTIONS = Counter(
    "flotilla_agent_container_actions_total",
    "Container actions by kind (pull, run, start, stop, remove) and result (ok, error).",
    ["action", "result"],
    registry=REGISTRY,
)
PULL_SECONDS = Histogram(
    "flotilla_agent_image_pull_duration_seconds",
    "Time to pull an image.",
    registry=REGISTRY,
)
DOCKER_SECONDS = Histogram(
    "flotilla_agent_docker_api_duration_seconds",
    "Latency of Docker Engine calls by call (list, images, pull, run, start, stop, remove).",
    ["call"],
    registry=REGISTRY,
)
PULLS = Counter(
    "flotilla_agent_image_pulls_total",
    "Image pulls by result (ok, error).",
    ["result"],
    registry=REGISTRY,
)
HEALTH_PROBES = Counter(
    "flotilla_agent_health_probes_total",
    "Health probes by type (http, tcp, cmd) and result (ok, fail).",
    ["type", "result"],
    registry=REGISTRY,
)
ENGINE_UP = Gauge(
    "flotilla_agent_docker_engine_up",
    "1 while the host's Docker Engine answers, 0 while it does not.",
    registry=REGISTRY,
)
DRIFT_HEALS = Counter(
    "flotilla_agent_drift_heals_total",
    "Instances the agent restarted or recreated after they were stopped or removed by hand.",
    registry=REGISTRY,
)


@functools.cache
def child(metric: Any, *labels: str) -> Any:
    """The metric's child for these label values, looked up once per process: `labels()`
    takes a lock and builds a key on every call, a tenth of a reconcile pass's time."""
    return metric.labels(*labels)


for _result in ("ok", "error"):  # present from the start, so rate() and increase() see them
    PULLS.labels(_result)
