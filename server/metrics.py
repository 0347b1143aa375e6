"""The server's Prometheus metrics, on a registry passed in (one per app, so tests are isolated)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass(frozen=True)
class Metrics:
    """The server's metrics, all on one registry."""

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
    host_app_release: Gauge
    app_hosts: Gauge
    hosts: Gauge
    host_last_seen: Gauge
    instances: Gauge
    agent_refused: Counter
    agent_sessions_replaced: Counter
    agent_send_timeouts: Counter
    agent_disconnects: Counter
    audit_dropped: Counter


def create_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    """Create and register every server metric, on `registry` or a new one."""
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
        host_app_release=Gauge(
            "flotilla_host_app_release",
            "The release of the app each host runs (its newest running instance).",
            ["host", "app"],
            registry=registry,
        ),
        app_hosts=Gauge(
            "flotilla_app_hosts",
            "Hosts assigned to the app by state: updated (running the current release), "
            "healthy (its instances ready), unhealthy (not ready or failing), pending (not yet "
            "running the release assigned to it).",
            ["app", "state"],
            registry=registry,
        ),
        hosts=Gauge(
            "flotilla_hosts",
            "Registered hosts by status (connected, disconnected, engine_unavailable).",
            ["status"],
            registry=registry,
        ),
        host_last_seen=Gauge(
            "flotilla_host_last_seen_timestamp_seconds",
            "When the server last heard from each host's agent (Unix time).",
            ["host"],
            registry=registry,
        ),
        instances=Gauge(
            "flotilla_instances",
            "Instances by app and state (running, ready, exited, restarting, ...).",
            ["app", "state"],
            registry=registry,
        ),
        agent_refused=Counter(
            "flotilla_agent_reports_refused_total",
            "Parts of agents' messages the server refused or ignored, by reason: foreign (an "
            "app, image or host the agent was not told of), kind (an event kind agents may not "
            "emit), rate (past the per-host rate: coalesced or dropped), frame (a message that "
            "does not parse, breaks a cap, or is too large: the connection is closed), "
            "certificate (mutual TLS: a client certificate missing or for another host; the "
            "connection is refused), stream (log lines for a stream this server did not open "
            "to that host, or has closed).",
            ["reason"],
            registry=registry,
        ),
        agent_sessions_replaced=Counter(
            "flotilla_agent_sessions_replaced_total",
            "Agent connections closed because a newer one for the same host arrived (a stolen "
            "token, or an agent that restarted before its old socket timed out).",
            registry=registry,
        ),
        agent_send_timeouts=Counter(
            "flotilla_agent_send_timeouts_total",
            "Agent connections cut because a frame waited on them for 5 s (an agent that reads "
            "nothing: hung, or hostile). The agent reconnects and gets its whole desired state.",
            registry=registry,
        ),
        agent_disconnects=Counter(
            "flotilla_agent_disconnects_total",
            "Agent connections that ended after their hello, by cause: heartbeat (no answer "
            "to the server's heartbeat: the agent or its network hangs), broken (no close "
            "frame), agent (the agent closed it), send_timeout (a frame waited on it: cut), "
            "bad_frame and bad_message (refused: closed), rotated and removed (an admin cut "
            "the host off), stopping (the server stopping: rarely scraped), server (the server "
            "ended it otherwise: its handler failed, a bug the log shows). A connection replaced "
            "by a newer one for the same host is not counted here "
            "(flotilla_agent_sessions_replaced_total).",
            ["cause"],
            registry=registry,
        ),
        audit_dropped=Counter(
            "flotilla_audit_dropped_total",
            "Audit entries dropped because too many were waiting to be written (a database "
            "outage, or a flood of refused calls).",
            registry=registry,
        ),
    )
