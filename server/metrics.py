"""The server's Prometheus metrics, on a registry passed in (one per app, so tests are isolated)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    deployments: Counter
    rollbacks: Counter
    deployment_duration: Histogram
    in_progress: Gauge
    app_release: Gauge
    agent_connections: Gauge
    drift_heals: Counter
    http_requests: Counter
    http_duration: Histogram


def create_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    registry = registry or CollectorRegistry()
    return Metrics(
        registry=registry,
        deployments=Counter(
            "flotilla_deployments_total",
            "Finished deployments by app, kind (deploy, rollback) and outcome.",
            ["app", "kind", "outcome"],
            registry=registry,
        ),
        rollbacks=Counter(
            "flotilla_rollbacks_total",
            "Rollbacks started, by app and trigger (manual or auto).",
            ["app", "trigger"],
            registry=registry,
        ),
        deployment_duration=Histogram(
            "flotilla_deployment_duration_seconds",
            "Time from a deployment's start to its end.",
            ["app", "kind", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
        in_progress=Gauge(
            "flotilla_deployments_in_progress",
            "Deployments pending, running or paused, by app.",
            ["app"],
            registry=registry,
        ),
        app_release=Gauge(
            "flotilla_app_release",
            "The app's current release number.",
            ["app"],
            registry=registry,
        ),
        agent_connections=Gauge(
            "flotilla_agent_connections",
            "Agents connected to this server process.",
            registry=registry,
        ),
        drift_heals=Counter(
            "flotilla_drift_heals_total",
            "Instances agents restarted or recreated after they were stopped or removed by hand.",
            ["app"],
            registry=registry,
        ),
        http_requests=Counter(
            "flotilla_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        ),
        http_duration=Histogram(
            "flotilla_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["route", "method"],
            registry=registry,
        ),
    )
