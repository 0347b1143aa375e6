"""The database schema as typed SQLAlchemy 2 models. Change it only with an Alembic migration."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = dict[str, Any]


def utcnow() -> dt.datetime:
    """Now, timezone-aware in UTC: the default of every timestamp column."""
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    """The models' base: stable constraint names, JSON and UTC timestamp column types."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        Json: JSON,
        dt.datetime: DateTime(timezone=True),
    }


class Token(Base):
    """An API token: only its hash is kept, with its comma-separated scopes, the apps it is
    confined to (None: every app), its expiry and when it was last used (to the minute)."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    apps: Mapped[list[str] | None] = mapped_column(JSON)
    expires_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]


class Host(Base):
    """A registered host: its labels, its agent's token hash and connection, its generation."""

    __tablename__ = "hosts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    labels: Mapped[Json] = mapped_column(default=dict)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    connected: Mapped[bool] = mapped_column(default=False)
    # no target of new deployments (what runs there stays): POST /v1/hosts/{name}/cordon
    cordoned: Mapped[bool] = mapped_column(default=False, server_default=false())
    last_seen: Mapped[dt.datetime | None]
    agent_version: Mapped[str | None] = mapped_column(String(50))
    docker_version: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class HostStatus(Base):
    """A host's last status (the agent's report, about 1 KiB of JSON), apart from the host.

    Every deploy bumps the generation of each target host, and reads and copies host rows: with
    the status in the row, a deploy to 10,000 hosts rewrote and read 10 MiB of it, which made
    the pass before the first push 120-150 ms slower. A host registered since has no row
    until it first reports; one that never reported before the move has an empty status.
    """

    __tablename__ = "host_statuses"
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), primary_key=True)
    observed: Mapped[Json] = mapped_column(default=dict)
    reported_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class App(Base):
    """An app: its current release, and the last release number handed out."""

    __tablename__ = "apps"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    current_release: Mapped[int | None]
    last_release: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Release(Base):
    """One numbered release of an app: its image and spec, and its outcome once known."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("app_id", "number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id"), index=True)
    number: Mapped[int]
    image: Mapped[str] = mapped_column(String(512))
    digest: Mapped[str | None] = mapped_column(String(100))
    spec: Mapped[Json]
    outcome: Mapped[str | None] = mapped_column(String(20))
    created_by: Mapped[str] = mapped_column(String(100))
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Deployment(Base):
    """One rollout of a release (a deploy or a rollback) to the hosts its selector picks."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("app_id", "idempotency_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id"), index=True)
    release: Mapped[int]
    kind: Mapped[str] = mapped_column(String(20))  # deploy | rollback
    trigger: Mapped[str] = mapped_column(String(100))  # a token's name, or "auto"
    status: Mapped[str] = mapped_column(String(20), index=True)
    strategy: Mapped[Json]
    selector: Mapped[Json]
    reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    rollback_of: Mapped[int | None]
    promoted: Mapped[bool] = mapped_column(default=False)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    progress_at: Mapped[dt.datetime | None]  # last resume or promote: restarts progress_deadline
    # bumped by every write of this deployment's target rows: the controller's copy of them
    # is valid while it is the version that copy was made at
    targets_version: Mapped[int] = mapped_column(default=0, server_default="0")


class DeploymentHost(Base):
    """One target host of a deployment and its progress (pending, updating, healthy, failed)."""

    __tablename__ = "deployment_hosts"
    __table_args__ = (
        # its index also serves every read of a deployment's rows (by deployment_id)
        UniqueConstraint("deployment_id", "host_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"))
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"))
    host_name: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(20))
    previous_release: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[Json] = mapped_column(default=dict)
    assigned_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Assignment(Base):
    """The desired state of one app on one host. The rollout controller is the only writer."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("host_id", "app_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), index=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id"))
    release: Mapped[int]
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Event(Base):
    """The append-only audit log."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(50))
    actor: Mapped[str] = mapped_column(String(100))
    app: Mapped[str | None] = mapped_column(String(63), index=True)
    deployment_id: Mapped[int | None]
    host: Mapped[str | None] = mapped_column(String(63))
    message: Mapped[str] = mapped_column(Text)


class Audit(Base):
    """Who called what, from where, and what came of it: every mutating API call and every
    refused one (401, 403, 429). Apart from `events` (what happened to apps and hosts, read
    scope, the webhooks' source): this holds source addresses and refusals, admin only."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(100), index=True)  # a token's name
    action: Mapped[str] = mapped_column(String(100))  # e.g. token.create
    target: Mapped[str | None] = mapped_column(String(300))  # e.g. app=web
    source: Mapped[str | None] = mapped_column(String(100))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    request_id: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[int]  # the HTTP status answered
    detail: Mapped[str | None] = mapped_column(Text)


class Webhook(Base):
    """An outbound notification target. The secret is kept as given: it keys every signature."""

    __tablename__ = "webhooks"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)  # patterns such as "deployment.*"
    secret: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[dt.datetime | None]  # a server replica is sending its deliveries


class WebhookDelivery(Base):
    """The outbox: one event for one webhook, written in the transaction of the event.

    No foreign key to webhooks on purpose: deleting a webhook must never fail the transaction
    of a rollout that is enqueueing for it; the sender only reads deliveries of live webhooks.
    """

    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(index=True)
    event: Mapped[str] = mapped_column(String(50))
    payload: Mapped[Json]  # at, app, deployment, host, message
    status: Mapped[str] = mapped_column(String(20), index=True)  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[dt.datetime]
    delivered_at: Mapped[dt.datetime | None]


class Secret(Base):
    """One version of an app's secret, encrypted (server/secret_box.py): never the value.

    Every set of a name adds a version, numbered after the newest one kept (sets of one name
    wait for each other: db/secrets.put); the newest one is `live` until the name is set
    again or removed. A removal deletes the versions no release names, so a set after it
    may number from where the versions kept end. An older version stays while a release
    names it in its spec's `secret_versions`, so a rollback runs with the values it ran with.
    Keyed by the app's name, not its row: a secret can be set before the app's first deploy.
    """

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("app", "name", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    app: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[int]
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    live: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AppPolicy(Base):
    """The security rules (server/policy.py) an admin allowed for one app. Keyed by the app's
    name, like secrets: a policy can be set before the app's first deploy."""

    __tablename__ = "app_policies"
    app: Mapped[str] = mapped_column(String(63), primary_key=True)
    allow: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class VolumePurge(Base):
    """An app removed with `?volumes=true`: the host's agent removes the app's volumes once
    its containers are gone. Kept (level-triggered: every push says so, an agent that was
    away does it when it comes back) until a deployment of the app targets the host again,
    whose release may then create volumes of the same names (`db/target_rows.insert_targets`)."""

    __tablename__ = "volume_purges"
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
