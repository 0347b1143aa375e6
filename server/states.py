"""Every state and event kind the server stores, as enums: one module, one spelling.

They are `StrEnum`s: a member is equal to its string, so rows, JSON and the API keep the
plain words (`"running"`, `"deployment_failed"`) while code names them. A deployment moves
`pending -> running -> (paused) -> succeeded | failed | rolled_back | cancelled | superseded`;
each of its target hosts `pending -> updating -> healthy | failed`, or `skipped` from the
start (away when the deployment started).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from enum import StrEnum

from agent import protocol


class DeploymentStatus(StrEnum):
    """Where a deployment is."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"


TERMINAL = frozenset(
    {
        DeploymentStatus.SUCCEEDED,
        DeploymentStatus.FAILED,
        DeploymentStatus.ROLLED_BACK,
        DeploymentStatus.CANCELLED,
        DeploymentStatus.SUPERSEDED,
    }
)
ACTIVE = frozenset({DeploymentStatus.PENDING, DeploymentStatus.RUNNING, DeploymentStatus.PAUSED})
UNDER_WAY = frozenset({DeploymentStatus.PENDING, DeploymentStatus.RUNNING})  # paused is not


class TargetState(StrEnum):
    """Where one target host of a deployment is (the judgement's verdicts, too)."""

    PENDING = "pending"
    UPDATING = "updating"
    HEALTHY = "healthy"
    FAILED = "failed"
    # away longer than the strategy's reconnect_grace when the deployment started: not waited
    # for, done for the deployment's success, assigned the release when it succeeds
    SKIPPED = "skipped"


class Disconnected(StrEnum):
    """What a deployment does with a target host away longer than its reconnect_grace when
    it starts (the strategy's `disconnected`)."""

    SKIP = "skip"  # listed as skipped, assigned the release when the deployment succeeds
    WAIT = "wait"  # waited for, as any host


class DeploymentKind(StrEnum):
    """Whether a deployment rolls a release out or back."""

    DEPLOY = "deploy"
    ROLLBACK = "rollback"


class Outcome(StrEnum):
    """What became of a release (None until a deployment of it ends)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BAD = "bad"  # failed and was rolled back automatically
    ROLLED_BACK = "rolled_back"  # succeeded, then a rollback went past it


class Action(StrEnum):
    """What an operator can ask of a deployment under way (POST /v1/deployments/{id}/...)."""

    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    CANCEL = "cancel"


class DeliveryStatus(StrEnum):
    """A webhook delivery in the outbox: waiting for its (next) attempt, or done."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the delivery policy's give_up_after


class HostStatus(StrEnum):
    """A host as GET /v1/hosts and flotilla_hosts show it."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    ENGINE_UNAVAILABLE = "engine_unavailable"  # connected, but its Docker Engine does not answer


def host_status(connected: bool, engine_error: str | None) -> HostStatus:
    """The one rule for a host's status: its agent's connection, then its Engine."""
    if not connected:
        return HostStatus.DISCONNECTED
    return HostStatus.CONNECTED if engine_error is None else HostStatus.ENGINE_UNAVAILABLE


class EventKind(StrEnum):
    """The audit log's kinds; server.webhooks maps some of them to public names."""

    DEPLOY_REQUESTED = "deploy_requested"
    ROLLBACK_REQUESTED = "rollback_requested"
    DEPLOY_STARTED = "deploy_started"
    ROLLBACK_STARTED = "rollback_started"
    BATCH_DONE = "deployment_batch_done"
    PAUSED = "deployment_paused"  # by the controller: the canaries are healthy
    PAUSE = "deployment_pause"  # operators' requests
    RESUME = "deployment_resume"
    PROMOTE = "deployment_promote"
    CANCEL = "deployment_cancel"
    SUCCEEDED = "deployment_succeeded"
    FAILED = "deployment_failed"
    ROLLED_BACK = "deployment_rolled_back"
    CANCELLED = "deployment_cancelled"
    SUPERSEDED = "deployment_superseded"
    HOST_ADDED = "host_added"
    HOST_TOKEN_ROTATED = "host_token_rotated"
    HOST_REMOVED = "host_removed"
    HOST_CORDONED = "host_cordoned"
    HOST_UNCORDONED = "host_uncordoned"
    HOST_DRAINED = "host_drained"  # cordoned, and every app removed from it
    HOST_CONNECTED = "host_connected"
    HOST_DISCONNECTED = "host_disconnected"
    HOST_SESSION_REPLACED = "host_session_replaced"  # a second connection for the host
    HOST_SEND_TIMED_OUT = "host_send_timed_out"  # a frame waited on its agent: connection cut
    DRIFT_HEALED = protocol.DRIFT_HEALED  # an agent's (agent/protocol.py)
    HOST_ENGINE_UNAVAILABLE = "host_engine_unavailable"  # seen in the agent's status
    HOST_ENGINE_AVAILABLE = "host_engine_available"
    APP_REMOVED = "app_removed"  # from every host, or from hosts a new release dropped
    SECRET_SET = "secret_set"  # names and versions only, never a value
    SECRET_REMOVED = "secret_removed"


def started(kind: DeploymentKind | str) -> EventKind:
    """The event of a deployment of this kind starting."""
    return EventKind(f"{kind}_started")


def ended(status: DeploymentStatus | str) -> EventKind:
    """The event of a deployment reaching `status` (paused, or a terminal one)."""
    return EventKind(f"deployment_{status}")


def requested(action: Action | str) -> EventKind:
    """The event of an operator asking for `action`."""
    return EventKind(f"deployment_{action}")


# The event kinds webhooks publish, under stable public names; a kind not here (host_added,
# *_requested, host_token_rotated, ...) is never delivered. Several kinds may share a name.
PUBLIC_EVENTS: dict[str, str] = {
    EventKind.DEPLOY_STARTED: "deployment.started",
    EventKind.ROLLBACK_STARTED: "deployment.started",
    EventKind.BATCH_DONE: "deployment.batch_done",
    EventKind.PAUSED: "deployment.paused",  # paused by the controller (canaries healthy)
    EventKind.PAUSE: "deployment.paused",  # paused through the API: takes effect at once
    EventKind.RESUME: "deployment.resumed",
    EventKind.PROMOTE: "deployment.promoted",
    EventKind.SUCCEEDED: "deployment.succeeded",
    EventKind.FAILED: "deployment.failed",
    EventKind.ROLLED_BACK: "deployment.rolled_back",
    EventKind.CANCELLED: "deployment.cancelled",
    EventKind.SUPERSEDED: "deployment.superseded",
    EventKind.HOST_CONNECTED: "host.connected",
    EventKind.HOST_DISCONNECTED: "host.disconnected",
    EventKind.HOST_SESSION_REPLACED: "host.session_replaced",
    EventKind.HOST_SEND_TIMED_OUT: "host.send_timed_out",
    EventKind.DRIFT_HEALED: "host.drift_healed",
    EventKind.APP_REMOVED: "app.removed",
    EventKind.HOST_ENGINE_UNAVAILABLE: "host.engine_unavailable",
    EventKind.HOST_ENGINE_AVAILABLE: "host.engine_available",
    EventKind.HOST_CORDONED: "host.cordoned",
    EventKind.HOST_UNCORDONED: "host.uncordoned",
    EventKind.HOST_DRAINED: "host.drained",
}


def public_name(kind: str) -> str | None:
    """The public name of an internal event kind, or None if it is not published."""
    return PUBLIC_EVENTS.get(kind)


def matches(patterns: Iterable[str], name: str) -> bool:
    """Does any of a webhook's patterns (`*` matches any run of characters) select the
    public event `name`?"""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)
