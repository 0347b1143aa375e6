"""Request and response bodies, each defined once as a typed pydantic model.

The same models validate input (unknown fields rejected, strict types) and generate the
published OpenAPI document. Past 400 lines because every body a handler validates or answers
through is here, the document's one source; the answers handlers build as plain values are
described in server/api/answers.py.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from server.policy import RULES, Rule
from server.states import HostStatus
from server.wire import memory_bytes

DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"

# The distribution reference grammar, simplified: [registry[:port]/]path[:tag][@digest]
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOSTPART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
# as Docker reads it: a first component is a registry only with a dot, a port, or localhost
_DOMAIN = rf"(?:(?:{_HOSTPART}(?:\.{_HOSTPART})+(?::[0-9]+)?|{_HOSTPART}:[0-9]+|localhost)/)"
_TAG = r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"  # ASCII: Docker's \w
_DIGEST = r"(?:@sha256:[a-f0-9]{64})?"
IMAGE_REF = re.compile(rf"^{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*{_TAG}{_DIGEST}$")
_MEMORY = re.compile(r"^([1-9][0-9]*)([bkmg]?)$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _image(value: str) -> str:
    if len(value) > 512 or not IMAGE_REF.fullmatch(value):
        raise ValueError("not a valid image reference (such as nginx:1.27 or registry:5000/app:v2)")
    return value


def _ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("not an IP address") from None
    return value


MAX_MEMORY_BYTES = 2**50  # 1 PiB: beyond any host, and within what JSON carries exactly


def _memory(value: str) -> str:
    if not _MEMORY.fullmatch(value):
        raise ValueError("memory must be a number with an optional unit b, k, m or g, e.g. 256m")
    if (memory_bytes(value) or 0) > MAX_MEMORY_BYTES:
        raise ValueError("memory must be at most 1 PiB (1048576g)")
    return value


def _env(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not _ENV_NAME.fullmatch(key):
            raise ValueError(f"{key!r} is not a valid environment variable name")
    return value


def _labels(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if key.startswith("flotilla."):
            raise ValueError(f"label {key!r}: the flotilla. prefix is reserved")
        if not key or len(key) > 255:
            raise ValueError("label names must be 1-255 characters")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"{value[:80]!r} is not a valid environment variable name")
    return value


_SYSTEM_DIRS = ("/", "/bin", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr")


def _secrets_dir(value: str) -> str:
    parts = value.split("/")
    if not value.startswith("/") or any(p in (".", "..") for p in parts) or len(value) > 255:
        raise ValueError("must be an absolute path without . or .. (such as /run/secrets)")
    if value.rstrip("/") in ("", *_SYSTEM_DIRS) or not _PATH.fullmatch(value):
        raise ValueError("must be a directory of its own, such as /run/secrets")
    return value.rstrip("/")


def _doc(**schema: Any) -> Any:
    """What an AfterValidator enforces, said in the JSON Schema as well (the document's
    only: the validator stays the rule, and its message the one a client sees)."""
    return Field(json_schema_extra=schema)


_MEMORY_DOC = r"^[1-9][0-9]*[bkmgBKMG]?$"
_LABEL = {"minLength": 1, "maxLength": 255, "not": {"pattern": r"^flotilla\."}}
_USER = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$"
_PATH = re.compile(r"^(/[A-Za-z0-9._-]+)+/?$")
DnsLabel = Annotated[str, Field(pattern=DNS_LABEL, min_length=1, max_length=63)]
EnvName = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_env_name)]
ImageRef = Annotated[str, AfterValidator(_image), _doc(pattern=IMAGE_REF.pattern, maxLength=512)]
Seconds = Annotated[float, Field(ge=0, le=86400)]


class Strict(BaseModel):
    """The base of request bodies: unknown fields rejected, strict types, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PortIn(Strict):
    """A port to publish: the container's, and a host port (0: Docker picks one)."""

    container: int = Field(ge=1, le=65535)
    host: int = Field(default=0, ge=0, le=65535)
    host_ip: Annotated[
        str, AfterValidator(_ip), _doc(anyOf=[{"format": "ipv4"}, {"format": "ipv6"}])
    ] = "127.0.0.1"
    protocol: Literal["tcp", "udp"] = "tcp"


class ResourcesIn(Strict):
    """Limits on one instance: memory (e.g. 256m), CPUs and processes. A deployment without
    memory or pids gets the server's defaults (--default-memory, --default-pids-limit)."""

    memory: Annotated[str, AfterValidator(_memory), _doc(pattern=_MEMORY_DOC)] | None = None
    cpus: float | None = Field(default=None, gt=0, le=512)
    pids: int | None = Field(default=None, ge=1, le=4_194_304)  # processes (threads count)


class HostSelector(Strict):
    """Which hosts a deployment targets: those named and carrying the labels (default: all)."""

    names: list[DnsLabel] | None = Field(default=None, max_length=10000)
    labels: dict[str, str] | None = None


def _abs_path(value: str) -> str:
    if not value.startswith("/") or "\0" in value:
        raise ValueError("must be an absolute path")
    return value


AbsPath = Annotated[str, Field(max_length=4096), AfterValidator(_abs_path)]


class VolumeIn(Strict):
    """A named volume (kept across releases and rollbacks) or a tmpfs mount in the container."""

    type: Literal["volume", "tmpfs"] = "volume"
    source: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")] | None = None
    target: AbsPath
    read_only: bool = False
    size: Annotated[str, AfterValidator(_memory)] | None = None  # tmpfs: e.g. 64m

    @model_validator(mode="after")
    def _source_for_volumes(self) -> VolumeIn:
        if self.type == "volume" and self.source is None:
            raise ValueError("a named volume needs a source (its name)")
        if self.type == "tmpfs" and self.source is not None:
            raise ValueError("a tmpfs mount has no source")
        return self


class MountIn(Strict):
    """A bind mount of a host path into the container (needs the app's policy: server.policy)."""

    source: AbsPath
    target: AbsPath
    read_only: bool = False


class RegistryIn(Strict):
    """POST /v1/registries: credentials for one registry host (`host[:port]`, as in an image
    reference: `registry.example.com`, `127.0.0.1:5000`; Docker Hub is `docker.io`)."""

    registry: Annotated[
        str, Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?$", max_length=255)
    ]
    username: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=4096)


class RegistryOut(BaseModel):
    """A registry's credentials in a response: never the password."""

    registry: str
    username: str
    updated_at: dt.datetime
    updated_by: str


class RegistrySetOut(BaseModel):
    """POST /v1/registries' answer: the registry and the user name, never the password."""

    registry: str
    username: str


class RegistryListOut(BaseModel):
    """GET /v1/registries."""

    registries: list[RegistryOut]


class PolicyIn(Strict):
    """PUT /v1/apps/{app}/policy: the rules of server.policy an admin allows for the app."""

    allow: list[Rule] = Field(default_factory=list, max_length=len(RULES))


class PolicyOut(BaseModel):
    """An app's policy in a response."""

    app: str
    allow: list[str]
    rules: list[str]  # every rule there is


class HealthIn(Strict):
    """The health probe an instance must pass before it counts as ready."""

    type: Literal["http", "tcp", "cmd"]
    port: int | None = Field(default=None, ge=1, le=65535)
    path: str = Field(default="/", pattern=r"^/", max_length=1000)
    command: list[str] | None = Field(default=None, min_length=1, max_length=100)
    interval: float = Field(default=1.0, gt=0, le=3600)
    timeout: float = Field(default=1.0, gt=0, le=3600)
    retries: int = Field(default=3, ge=1, le=1000)
    start_period: Seconds = 0.0

    @model_validator(mode="after")
    def _command_for_cmd(self) -> HealthIn:
        if self.type == "cmd" and not self.command:
            raise ValueError("a cmd health check needs a command")
        return self


class StrategyIn(Strict):
    """How a rollout proceeds: batch size, order, canaries, deadlines, rollback."""

    max_parallel: int = Field(default=1, ge=1, le=100000)
    order: Literal["start-first", "stop-first"] | None = None
    canary: int = Field(default=0, ge=0, le=100000)
    auto_promote: bool = False
    min_healthy_time: Seconds = 0.0
    healthy_deadline: float = Field(default=60.0, gt=0, le=86400)
    progress_deadline: float = Field(default=600.0, gt=0, le=604800)
    auto_rollback: bool = True
    # a host that went away is reconnecting, not failing, this long (its deadline waits)
    reconnect_grace: float = Field(default=30.0, ge=0, le=3600)
    # a target host away longer than reconnect_grace when the deployment starts: skipped
    # (listed as `skipped`, assigned the release when the deployment succeeds) or waited for
    disconnected: Literal["skip", "wait"] = "skip"


class DeploymentIn(Strict):
    """POST /v1/apps/{app}/deployments."""

    image: ImageRef
    command: list[Annotated[str, Field(max_length=10000)]] | None = Field(
        default=None, max_length=1000
    )
    env: Annotated[
        dict[str, Annotated[str, Field(max_length=65536)]],
        AfterValidator(_env),
        _doc(propertyNames={"pattern": _ENV_NAME.pattern}),
    ] = Field(default_factory=dict)
    ports: list[PortIn] = Field(default_factory=list, max_length=100)
    replicas: int = Field(default=1, ge=1, le=100)
    resources: ResourcesIn | None = None
    restart: Literal["no", "on-failure", "unless-stopped", "always"] = "unless-stopped"
    labels: Annotated[dict[str, str], AfterValidator(_labels), _doc(propertyNames=_LABEL)] = Field(
        default_factory=dict
    )
    message: str | None = Field(default=None, max_length=2000)
    hosts: HostSelector | None = None
    health: HealthIn | None = None
    strategy: StrategyIn | None = None
    # who the container's process runs as: USER, UID, USER:GROUP or UID:GID (default: the image's)
    user: Annotated[str, Field(pattern=_USER, max_length=65)] | None = None
    read_only: bool = False  # a read-only root file system
    # baseline: Docker's default capabilities minus NET_RAW; restricted: none but
    # NET_BIND_SERVICE, and a non-root `user` (Kubernetes' Pod Security Standards' names)
    security_profile: Literal["baseline", "restricted"] = "baseline"
    # secrets the container gets: ["NAME"] (as $NAME) or {"ENV_OR_FILE_NAME": "SECRET_NAME"}
    secrets: (
        Annotated[list[EnvName], Field(max_length=100)]
        | Annotated[dict[EnvName, EnvName], Field(max_length=100)]
        | None
    ) = None
    secrets_as: Literal["env", "files"] = "env"
    # files: one file per secret in this directory, a read-only mount of a tmpfs
    secrets_dir: Annotated[str, AfterValidator(_secrets_dir)] = "/run/secrets"
    # what hands a container the host: refused (403) unless the app's policy allows the rule
    privileged: bool = False
    network_mode: Literal["bridge", "host"] = "bridge"
    pid_mode: Literal["private", "host"] = "private"
    ipc_mode: Literal["private", "host"] = "private"
    cap_add: list[Annotated[str, Field(pattern=r"^[A-Z_]{2,32}$")]] = Field(
        default_factory=list, max_length=40
    )
    devices: list[Annotated[str, Field(pattern=r"^/dev/[A-Za-z0-9_./-]{1,200}$")]] = Field(
        default_factory=list, max_length=20
    )
    mounts: list[MountIn] = Field(default_factory=list, max_length=50)
    # named volumes (created by the agent, labelled with the app, kept across releases and
    # rollbacks) and tmpfs mounts
    volumes: list[VolumeIn] = Field(default_factory=list, max_length=50)
    # user-defined bridge networks the agent makes on each host (flotilla-NAME); the app's
    # name is its DNS alias there, so apps on one network reach each other by name
    networks: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,49}$")]] = Field(
        default_factory=list, max_length=10
    )

    @model_validator(mode="after")
    def _ports_unique(self) -> DeploymentIn:
        if self.networks and self.network_mode == "host":
            raise ValueError("networks: a container on the host's network joins no other")
        fixed = [(p.host_ip, p.host, p.protocol) for p in self.ports if p.host]
        if len(fixed) != len(set(fixed)):
            raise ValueError("ports: the same host port is published twice")
        if fixed and self.replicas > 1:
            raise ValueError("ports: a fixed host port allows only one replica per host")
        if fixed and self.strategy and self.strategy.order == "start-first":
            raise ValueError(
                "strategy.order: start-first cannot work with a fixed host port "
                "(the new instance could not bind it while the old one runs); use stop-first "
                "or an ephemeral host port (0)"
            )
        if self.security_profile == "restricted" and (
            self.user is None or self.user.split(":")[0] in ("0", "root")
        ):
            raise ValueError(
                "user: security_profile restricted needs a non-root user (such as 1000 or nobody)"
            )
        if self.secrets_as == "env" and isinstance(self.secrets, dict | list):
            names = self.secrets if isinstance(self.secrets, list) else list(self.secrets)
            clash = sorted(set(names) & set(self.env))
            if clash:
                raise ValueError(f"secrets: {', '.join(clash)} is also set in env")
        health = self.health
        published = {p.container for p in self.ports}
        if health and health.type != "cmd" and health.port not in (None, *published):
            raise ValueError("health.port must be one of the published container ports")
        return self


MAX_RELEASE = 2**31 - 1


def _base(value: object) -> str | int:
    if value == "current":
        return "current"
    if type(value) is int and 1 <= value <= MAX_RELEASE:
        return value
    raise ValueError('must be "current" or a release number (1 or more)')


# one error named `base` (a union would name each member: base.literal[...], base.int)
BaseRelease = Annotated[
    str | int,
    PlainValidator(_base),
    WithJsonSchema(
        {"oneOf": [{"const": "current"}, {"type": "integer", "minimum": 1, "maximum": MAX_RELEASE}]}
    ),
]


class DeploymentPatchIn(Strict):
    """POST /v1/apps/{app}/deployments with `base`: a JSON merge patch (RFC 7396) on the base
    release's document (its spec, strategy and hosts); `null` removes a key. The fields are
    those of DeploymentIn; the merged document is validated as a DeploymentIn."""

    base: BaseRelease
    image: JsonValue = None
    command: JsonValue = None
    env: JsonValue = None
    ports: JsonValue = None
    replicas: JsonValue = None
    resources: JsonValue = None
    restart: JsonValue = None
    labels: JsonValue = None
    message: JsonValue = None
    hosts: JsonValue = None
    health: JsonValue = None
    strategy: JsonValue = None
    user: JsonValue = None
    read_only: JsonValue = None
    security_profile: JsonValue = None
    secrets: JsonValue = None
    secrets_as: JsonValue = None
    secrets_dir: JsonValue = None
    privileged: JsonValue = None
    network_mode: JsonValue = None
    pid_mode: JsonValue = None
    ipc_mode: JsonValue = None
    cap_add: JsonValue = None
    devices: JsonValue = None
    mounts: JsonValue = None
    volumes: JsonValue = None
    networks: JsonValue = None


class SecretIn(Strict):
    """PUT /v1/apps/{app}/secrets/{name}: the value, 1 to 65536 characters."""

    value: str = Field(min_length=1, max_length=65536)


class SecretOut(BaseModel):
    """A secret in a response: its name and live version, never its value."""

    name: str
    version: int
    updated_at: dt.datetime
    updated_by: str


class RollbackIn(Strict):
    """POST /v1/apps/{app}/rollback."""

    release: int | None = Field(default=None, ge=1, le=2**31 - 1)
    reason: str | None = Field(default=None, max_length=2000)
    strategy: StrategyIn | None = None
    force: bool = False  # roll back to a release marked bad all the same


class ChangeOut(BaseModel):
    """One difference between two release documents, at a JSON Pointer path."""

    path: str
    op: Literal["add", "remove", "change"]
    old: JsonValue = None
    new: JsonValue = None


class ReleaseDiffOut(BaseModel):
    """GET /v1/apps/{app}/releases/{n}/diff: what changed from release `against` to `release`."""

    app: str
    release: int
    against: int | None
    changes: list[ChangeOut]


class DryRunOut(BaseModel):
    """POST /v1/apps/{app}/deployments?dry_run=true: the spec a deploy would create, its
    changes against the current release, and the hosts it would target; nothing is created."""

    dry_run: Literal[True] = True
    app: str
    base: int | None
    current_release: int | None
    spec: dict[str, JsonValue]
    changes: list[ChangeOut]
    hosts: list[str]


class HostState(BaseModel):
    """One target host of a deployment in a response: its state and evidence."""

    name: str
    state: str
    error: str | None = None
    previous_release: int | None = None
    evidence: dict[str, object] = Field(default_factory=dict)
    # pulling the release's image: pending or updating, neither the image nor an instance of
    # the release there yet (GET /v1/deployments/{id}, while the deployment is under way)
    pulling: bool = False


class DeploymentOut(BaseModel):
    """A deployment in a response, with its target hosts."""

    id: int
    app: str
    release: int
    kind: str
    trigger: str
    status: str
    reason: str | None = None
    error: str | None = None
    rollback_of: int | None = None
    strategy: dict[str, object]
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    hosts: list[HostState]
    # opaque; changes whenever the status or a host's state does (`?wait=S&version=V`
    # answers once it is not V)
    version: str = ""


class ReleaseOut(BaseModel):
    """A release of an app in a response."""

    number: int
    image: str
    digest: str | None
    outcome: str | None
    created_at: dt.datetime
    created_by: str
    message: str | None


class PublishedPortOut(BaseModel):
    """A published port of an instance in a response."""

    container: int
    host_ip: str
    host_port: int
    protocol: str


class InstanceOut(BaseModel):
    """One container of an app on a host, as its agent last reported it."""

    container_id: str
    name: str
    release: int
    state: str
    ready: bool
    ports: list[PublishedPortOut]


class AppHostOut(BaseModel):
    """One host of an app in a response: what runs there and its state."""

    name: str
    release: int | None
    state: str
    instances: list[InstanceOut]


class AppOut(BaseModel):
    """An app in a response: its current release, spec and hosts."""

    name: str
    current_release: int | None
    spec: dict[str, object] | None
    created_at: dt.datetime
    hosts: list[AppHostOut] = Field(default_factory=list)


class HostOut(BaseModel):
    """A host in a response, with whether its agent is connected."""

    name: str
    labels: dict[str, str]
    status: HostStatus
    last_seen: dt.datetime | None
    agent_version: str | None
    docker_version: str | None
    engine_error: str | None = None  # why its Docker Engine does not answer
    cordoned: bool = False  # no target of new deployments (POST /v1/hosts/{name}/cordon)
    schedulable: bool = True  # not cordoned


class HostDrained(HostOut):
    """POST /v1/hosts/{name}/drain: the host, and the apps removed from it."""

    removed: list[str]


def _webhook_url(value: str) -> str:
    from server import webhooks  # appended here: keep the imports at the top untouched

    return webhooks.check_url(value)


def _event_pattern(value: str) -> str:
    from server import webhooks

    return webhooks.check_pattern(value)


class WebhookIn(Strict):
    """POST /v1/webhooks."""

    url: Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_webhook_url)]
    events: list[Annotated[str, AfterValidator(_event_pattern)]] = Field(
        default_factory=lambda: ["*"], min_length=1, max_length=100
    )
    secret: str = Field(min_length=16, max_length=200)


class WebhookOut(BaseModel):
    """A webhook as the API shows it: never with its secret."""

    id: int
    url: str
    events: list[str]
    created_by: str
    created_at: dt.datetime


class WebhookDeliveryOut(BaseModel):
    """One webhook delivery in a response: its state and last attempt."""

    id: int
    event: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: dt.datetime
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None


TOKEN_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
MAX_EXPIRES_IN = 10 * 366 * 86400  # ten years, in seconds


def _token_name(value: str) -> str:
    if not re.fullmatch(TOKEN_NAME, value):
        raise ValueError(
            "1-63 characters of A-Z, a-z, 0-9, '.', '_' and '-', first a letter or digit"
        )
    return value


class TokenIn(Strict):
    """POST /v1/tokens."""

    name: Annotated[str, AfterValidator(_token_name), _doc(pattern=TOKEN_NAME)]
    scopes: list[Literal["read", "rollback", "deploy", "admin"]] = Field(min_length=1, max_length=4)
    apps: list[DnsLabel] | None = Field(default=None, min_length=1, max_length=100)
    expires_in: int | None = Field(default=None, ge=1, le=MAX_EXPIRES_IN)


class TokenOut(BaseModel):
    """A token as GET /v1/tokens shows it: never the token, never its hash."""

    name: str
    scopes: list[str]
    apps: list[str] | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    expires_at: dt.datetime | None
    expired: bool


class TokenCreated(TokenOut):
    """POST /v1/tokens' answer: the token itself, this once."""

    token: str


class HostIn(Strict):
    """POST /v1/hosts."""

    name: DnsLabel
    labels: Annotated[dict[str, str], AfterValidator(_labels), _doc(propertyNames=_LABEL)] = Field(
        default_factory=dict
    )


class HostToken(BaseModel):
    """A host's new token, shown once (POST /v1/hosts, POST /v1/hosts/{name}/token)."""

    name: str
    labels: dict[str, str]
    token: str


# the answers described for the document only live in server/api/answers.py
