"""The parts of a deployment spec that are bodies of their own: published ports, resource
limits, the host selector, volumes and bind mounts, and the health probe."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from server.api.schemas.fields import DnsLabel, Seconds, Strict, documented
from server.wire import memory_bytes

_MEMORY = re.compile(r"^([1-9][0-9]*)([bkmg]?)$", re.IGNORECASE)


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


_MEMORY_DOC = r"^[1-9][0-9]*[bkmgBKMG]?$"


class PortIn(Strict):
    """A port to publish: the container's, and a host port (0: Docker picks one)."""

    container: int = Field(ge=1, le=65535)
    host: int = Field(default=0, ge=0, le=65535)
    host_ip: Annotated[
        str, AfterValidator(_ip), documented(anyOf=[{"format": "ipv4"}, {"format": "ipv6"}])
    ] = "127.0.0.1"
    protocol: Literal["tcp", "udp"] = "tcp"


class ResourcesIn(Strict):
    """Limits on one instance: memory (e.g. 256m), CPUs and processes. A deployment without
    memory or pids gets the server's defaults (--default-memory, --default-pids-limit)."""

    memory: Annotated[str, AfterValidator(_memory), documented(pattern=_MEMORY_DOC)] | None = None
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
