"""Converts stored release specs into the agent's wire types, at the edge."""

from __future__ import annotations

from typing import Any

from agent.protocol import ContainerSpec, HealthSpec, PortSpec

# the pids limit of a release recorded before deployments recorded the server's default
DEFAULT_PIDS_LIMIT = 4096
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def memory_bytes(value: str | None) -> int | None:
    """Bytes from a memory size such as `512m` (k, m, g: powers of 1024); None if unset."""
    if not value:
        return None
    unit = value[-1].lower() if value[-1].isalpha() else ""
    number = value[:-1] if unit else value
    return int(number) * _UNITS[unit]


def stop_first(spec: dict[str, Any], strategy: dict[str, Any]) -> bool:
    """stop-first when asked, or when a fixed host port is published (it cannot be shared)."""
    order = strategy.get("order")
    if order:
        return bool(order == "stop-first")
    return any(p.get("host") for p in spec.get("ports", []))


def container_spec(
    spec: dict[str, Any],
    strategy: dict[str, Any],
    secrets: tuple[tuple[str, str], ...] = (),
) -> ContainerSpec:
    """The ContainerSpec an agent runs for a release deployed with `strategy`, with the
    values of the secrets it names (`secrets`: (environment or file name, value))."""
    resources = spec.get("resources") or {}
    health = spec.get("health")
    command = spec.get("command")
    return ContainerSpec(
        image=spec["image"],
        command=tuple(command) if command is not None else None,
        env=tuple(sorted((spec.get("env") or {}).items())),
        ports=tuple(_port(p) for p in spec.get("ports", [])),
        memory=memory_bytes(resources.get("memory")),
        cpus=resources.get("cpus"),
        pids_limit=resources.get("pids") or DEFAULT_PIDS_LIMIT,
        restart=spec.get("restart", "unless-stopped"),
        labels=tuple(sorted((spec.get("labels") or {}).items())),
        health=(
            HealthSpec(
                type=health["type"],
                port=health.get("port"),
                path=health.get("path", "/"),
                command=tuple(health.get("command") or ()),
                interval=health.get("interval", 1.0),
                timeout=health.get("timeout", 1.0),
                retries=health.get("retries", 3),
                start_period=health.get("start_period", 0.0),
            )
            if health
            else None
        ),
        min_healthy_time=float(strategy.get("min_healthy_time", 0.0)),
        stop_first=stop_first(spec, strategy),
        user=spec.get("user"),
        read_only=bool(spec.get("read_only", False)),
        security_profile=spec.get("security_profile", "baseline"),
        secrets=secrets,
        secrets_dir=spec.get("secrets_dir") if spec.get("secrets_as") == "files" else None,
        privileged=bool(spec.get("privileged", False)),
        network_mode=spec.get("network_mode", "bridge"),
        pid_mode=spec.get("pid_mode", "private"),
        ipc_mode=spec.get("ipc_mode", "private"),
        cap_add=tuple(spec.get("cap_add") or ()),
        networks=tuple(spec.get("networks") or ()),
        devices=tuple(spec.get("devices") or ()),
        mounts=tuple(
            (m["source"], m["target"], bool(m.get("read_only", False)))
            for m in spec.get("mounts") or ()
        ),
        volumes=tuple(
            (v["source"], v["target"], bool(v.get("read_only", False)))
            for v in spec.get("volumes") or ()
            if v.get("type", "volume") == "volume"
        ),
        tmpfs=tuple(
            (v["target"], memory_bytes(v.get("size")))
            for v in spec.get("volumes") or ()
            if v.get("type") == "tmpfs"
        ),
    )


def _port(raw: dict[str, Any]) -> PortSpec:
    return PortSpec(
        container=raw["container"],
        host=raw.get("host", 0),
        host_ip=raw.get("host_ip", "127.0.0.1"),
        protocol=raw.get("protocol", "tcp"),
    )
