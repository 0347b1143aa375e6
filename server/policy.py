"""The rules that keep a container from owning its host. Pure: a spec and the rules an admin
allowed for its app in, the rules it breaks out.

Modelled on Kubernetes' Pod Security Standards (baseline): a deployment may not ask for what
would hand its container the host, unless an admin allowed that rule for the app
(`PUT /v1/apps/{app}/policy`):

- `privileged`: `"privileged": true`;
- `host_network`, `host_pid`, `host_ipc`: the host's namespaces (`network_mode`, `pid_mode`,
  `ipc_mode` set to `"host"`);
- `capabilities`: `cap_add` beyond SAFE_CAPABILITIES (the baseline's list: NET_RAW, which every
  container loses, and SYS_ADMIN and the like need the rule);
- `devices`: any host device;
- `host_paths`: any bind mount of a host path (`mounts`).

Some host paths are refused whatever the policy says (DANGEROUS_PATHS): the Docker socket is
root on the host, and `/`, `/etc`, `/proc`, `/sys` and `/var/lib/docker` hold the host itself.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any, Literal, get_args

Rule = Literal[
    "privileged",
    "host_network",
    "host_pid",
    "host_ipc",
    "capabilities",
    "devices",
    "host_paths",
]
RULES: tuple[str, ...] = get_args(Rule)

# Kubernetes' baseline profile's allowed additions (Docker's defaults, NET_RAW excepted)
SAFE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)

DANGEROUS_PATHS = {
    "/var/run/docker.sock": "the Docker socket: whoever reaches it is root on the host",
    "/run/docker.sock": "the Docker socket: whoever reaches it is root on the host",
    "/": "the host's root file system",
    "/etc": "the host's configuration (users, sudoers, services)",
    "/proc": "the host's processes and kernel settings",
    "/sys": "the host's kernel and devices",
    "/var/lib/docker": "the Docker Engine's state (every container's files)",
}


@dataclass(frozen=True)
class Breach:
    """One rule a spec breaks: the rule (None: never allowed), the field, and why."""

    rule: str | None
    field: str
    message: str


def breaches(spec: Mapping[str, Any], allowed: Set[str]) -> list[Breach]:
    """The rules `spec` (a deployment body's fields) breaks that `allowed` does not allow,
    and the host paths no policy allows."""
    found: list[Breach] = []

    def need(rule: str, field: str, message: str) -> None:
        if rule not in allowed:
            found.append(Breach(rule, field, f"{message} (rule {rule!r}: an admin may allow it)"))

    if spec.get("privileged"):
        need("privileged", "privileged", "a privileged container is root on the host")
    for field, rule in (
        ("network_mode", "host_network"),
        ("pid_mode", "host_pid"),
        ("ipc_mode", "host_ipc"),
    ):
        if spec.get(field) == "host":
            need(rule, field, f"{field} host shares the host's namespace")
    for i, cap in enumerate(spec.get("cap_add") or ()):
        if cap not in SAFE_CAPABILITIES:
            need("capabilities", f"cap_add.{i}", f"capability {cap} is not in the safe list")
    for i, _ in enumerate(spec.get("devices") or ()):
        need("devices", f"devices.{i}", "a host device gives direct access to the hardware")
    for i, mount in enumerate(spec.get("mounts") or ()):
        source = posixpath.normpath(str(mount.get("source", "")))
        danger = DANGEROUS_PATHS.get(source)
        if danger is not None:
            message = f"a bind mount of {source} is never allowed: {danger}"
            found.append(Breach(None, f"mounts.{i}.source", message))
        else:
            need("host_paths", f"mounts.{i}.source", f"a bind mount of the host path {source}")
    return found
