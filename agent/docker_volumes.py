"""An app's named volumes and the user-defined networks on the Docker Engine.

Both are Engine objects that containers share and that outlive them: a volume is created on
first use and kept through every release and rollback until its app is removed with
`?volumes=true` (agent/volumes.py decides when); a network is created on first use and kept
(several apps share it, and it costs nothing idle). Every function blocks: call it through a
thread.
"""

from __future__ import annotations

from typing import Any

from agent.docker_api import DriverError, explain  # before the SDK: see agent/docker_api.py

# isort: split
import docker
import docker.errors

from agent.protocol import LABEL_APP, LABEL_HOST, volume_name


def network(api: docker.APIClient, name: str) -> str:
    """The Engine's name of a user-defined bridge network, created on first use (labelled
    as Flotilla's) and kept: several apps share it, and it costs nothing idle."""
    full = f"flotilla-{name}"
    if not api.networks(names=[full]):
        try:
            api.create_network(
                full, driver="bridge", labels={"flotilla.network": name}, check_duplicate=True
            )
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # made by a concurrent create: fine
                raise DriverError(f"create network {full} failed: {explain(exc)}") from exc
    return full


def endpoints(api: docker.APIClient, networks: list[str], app: str) -> dict[str, Any] | None:
    """The networking config of a container created on `networks` (one at most): its
    app's name as its DNS alias there."""
    if not networks:
        return None
    endpoint = api.create_endpoint_config(aliases=[app])
    # a dict by network, as the SDK documents (its type stubs say one EndpointConfig)
    return api.create_networking_config({networks[0]: endpoint})  # type: ignore[arg-type]


def named_volume(api: docker.APIClient, host: str, app: str, source: str) -> str:
    """The Engine's name of an app's named volume, created (labelled with the app and
    this host) on first use and never removed with a container: its data outlives every
    release and rollback. Named per app: another app's `data` is another volume."""
    name = volume_name(app, source)
    try:
        api.inspect_volume(name)
    except docker.errors.NotFound:
        labels = {LABEL_APP: app, LABEL_HOST: host}
        try:
            api.create_volume(name, labels=labels)
        except docker.errors.APIError as exc:
            raise DriverError(f"create volume {name} failed: {explain(exc)}") from exc
    return name


def remove_volumes(api: docker.APIClient, host: str, app: str) -> list[str]:
    """Remove the app's named volumes on this host: only those labelled as Flotilla's for
    this app and this host, and named as its volumes are (`volume_name`); nothing else.
    Their names; raise DriverError if one cannot go (a container still uses it)."""
    labels = [f"{LABEL_APP}={app}", f"{LABEL_HOST}={host}"]
    try:
        found = api.volumes(filters={"label": labels}).get("Volumes") or []
    except docker.errors.APIError as exc:
        raise DriverError(f"list volumes of {app} failed: {explain(exc)}") from exc
    prefix = volume_name(app, "")
    removed = []
    for volume in found:
        name = str(volume.get("Name", ""))
        mine = volume.get("Labels") or {}
        if not name.startswith(prefix) or mine.get(LABEL_APP) != app:
            continue
        if mine.get(LABEL_HOST) != host:
            continue
        try:
            api.remove_volume(name)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            raise DriverError(f"remove volume {name} failed: {explain(exc)}") from exc
        removed.append(name)
    return sorted(removed)
