"""The deployment spec: POST /v1/apps/{app}/deployments' body, whole (DeploymentIn, which
also checks a spec file in the CLI) or as a merge patch on a release's (DeploymentPatchIn).

The spec's parts that are bodies of their own are server/api/schemas/spec_parts.py's, its
strategy server/api/schemas/strategy.py's.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    JsonValue,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from server.api.schemas.fields import Labels, Strict, documented
from server.api.schemas.spec_parts import (
    HealthIn,
    HostSelector,
    MountIn,
    PortIn,
    ResourcesIn,
    VolumeIn,
)
from server.api.schemas.strategy import StrategyIn

# The distribution reference grammar, simplified: [registry[:port]/]path[:tag][@digest]
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOSTPART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
# as Docker reads it: a first component is a registry only with a dot, a port, or localhost
_DOMAIN = rf"(?:(?:{_HOSTPART}(?:\.{_HOSTPART})+(?::[0-9]+)?|{_HOSTPART}:[0-9]+|localhost)/)"
_TAG = r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"  # ASCII: Docker's \w
_DIGEST = r"(?:@sha256:[a-f0-9]{64})?"
IMAGE_REF = re.compile(rf"^{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*{_TAG}{_DIGEST}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _image(value: str) -> str:
    if len(value) > 512 or not IMAGE_REF.fullmatch(value):
        raise ValueError("not a valid image reference (such as nginx:1.27 or registry:5000/app:v2)")
    return value


def _env(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not _ENV_NAME.fullmatch(key):
            raise ValueError(f"{key!r} is not a valid environment variable name")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"{value[:80]!r} is not a valid environment variable name")
    return value


_PATH = re.compile(r"^(/[A-Za-z0-9._-]+)+/?$")
_SYSTEM_DIRS = ("/", "/bin", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr")


def _secrets_dir(value: str) -> str:
    parts = value.split("/")
    if not value.startswith("/") or any(p in (".", "..") for p in parts) or len(value) > 255:
        raise ValueError("must be an absolute path without . or .. (such as /run/secrets)")
    if value.rstrip("/") in ("", *_SYSTEM_DIRS) or not _PATH.fullmatch(value):
        raise ValueError("must be a directory of its own, such as /run/secrets")
    return value.rstrip("/")


_USER = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$"
EnvName = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_env_name)]
ImageRef = Annotated[
    str, AfterValidator(_image), documented(pattern=IMAGE_REF.pattern, maxLength=512)
]


class DeploymentIn(Strict):
    """POST /v1/apps/{app}/deployments."""

    image: ImageRef
    command: list[Annotated[str, Field(max_length=10000)]] | None = Field(
        default=None, max_length=1000
    )
    env: Annotated[
        dict[str, Annotated[str, Field(max_length=65536)]],
        AfterValidator(_env),
        documented(propertyNames={"pattern": _ENV_NAME.pattern}),
    ] = Field(default_factory=dict)
    ports: list[PortIn] = Field(default_factory=list, max_length=100)
    replicas: int = Field(default=1, ge=1, le=100)
    resources: ResourcesIn | None = None
    restart: Literal["no", "on-failure", "unless-stopped", "always"] = "unless-stopped"
    labels: Labels = Field(default_factory=dict)
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
