"""The Docker driver: a host's containers and images. Every method blocks: call it through a
thread.

`DockerDriver` is what the agent calls (agent/driver.py is its interface); no other module
calls the Docker SDK but the driver modules it uses: agent/docker_api.py (the connection),
agent/docker_volumes.py (volumes and networks), agent/docker_logs.py (a container's output).
It uses the SDK's low-level APIClient: one `containers` call returns state, labels and ports
of every instance, where the high-level API would inspect each container in turn.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from agent.docker_api import (  # before the SDK: see agent/docker_api.py
    DriverError,
    EngineConnection,
    explain,
)

# isort: split
import docker.errors

from agent import docker_logs, docker_volumes
from agent.protocol import (
    LABEL_APP,
    LABEL_DEPLOYMENT,
    LABEL_HOST,
    LABEL_RELEASE,
    LABEL_REPLICA,
    Assignment,
    Instance,
    PublishedPort,
    RegistryAuth,
    pinned_ref,
)
from agent.secret_files import DEFAULT_SECRETS_ROOT, forget_secrets, write_secrets

log = logging.getLogger(__name__)

_EXITED = re.compile(r"(?:Exited|Restarting) \((-?\d+)\)")
_RESTART: dict[str, dict[str, str | int] | None] = {
    "no": None,
    "on-failure": {"Name": "on-failure", "MaximumRetryCount": 0},
    "unless-stopped": {"Name": "unless-stopped"},
    "always": {"Name": "always"},
}


class DockerDriver(EngineConnection):
    """Runs one host's instances on a Docker Engine."""

    def __init__(
        self,
        host: str,
        base_url: str | None = None,
        timeout: int = 60,
        secrets_root: Path = DEFAULT_SECRETS_ROOT,
    ) -> None:
        super().__init__(base_url, timeout)
        self.host = host
        self.secrets_root = secrets_root
        self._images: dict[str, str] = {}  # container id -> image id, of the last listing

    def list_instances(self) -> list[Instance]:
        """Every container that carries this host's label, running or not."""
        rows = self.api.containers(all=True, filters={"label": f"{LABEL_HOST}={self.host}"})
        result = []
        images = {}
        for row in rows:
            inst = _instance(row)
            if inst is not None:
                result.append(inst)
                images[inst.container_id] = str(row.get("ImageID", ""))
        self._images = images
        return result

    def container_images(self) -> Mapping[str, str]:
        """The image id of each container of the last `list_instances`, by container id."""
        return self._images

    def image_id(self, ref: str) -> str | None:
        """The id of the local image `ref` names (a tag, `repo@digest`, or an image id)."""
        try:
            info = self.api.inspect_image(ref)  # type: ignore[no-untyped-call]
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            log.warning("inspect image failed host=%s image=%s: %s", self.host, ref, exc)
            return None
        return str(info.get("Id", "")) or None

    def present_images(self, refs: set[str]) -> dict[str, str]:
        """Map each locally present image reference to its digest (or image id)."""
        found: dict[str, str] = {}
        for ref in refs:
            try:
                info = self.api.inspect_image(ref)  # type: ignore[no-untyped-call]
            except docker.errors.ImageNotFound:
                continue
            except docker.errors.APIError as exc:
                log.warning("inspect image failed host=%s image=%s: %s", self.host, ref, exc)
                continue
            found[ref] = _digest_of(ref, info)
        return found

    def pull(self, ref: str, auth: RegistryAuth | None = None) -> None:
        """Pull an image reference (with the registry's credentials, if given); raise
        DriverError if the Engine refuses."""
        repo, tag = _split_ref(ref)
        login = {"username": auth.username, "password": auth.password} if auth else None
        try:
            self.api.pull(repo, tag=tag, auth_config=login)
        except docker.errors.APIError as exc:
            raise DriverError(f"pull {ref} failed: {explain(exc)}") from exc

    def run(self, assignment: Assignment, replica: int, name: str) -> str:
        """Create and start one instance; return its container id."""
        spec = assignment.spec
        labels = dict(spec.labels)
        labels.update(
            {
                LABEL_APP: assignment.app,
                LABEL_RELEASE: str(assignment.release),
                LABEL_HOST: self.host,
                LABEL_DEPLOYMENT: str(assignment.deployment),
                LABEL_REPLICA: str(replica),
            }
        )
        bindings: dict[int | str, Any] = {}
        for p in spec.ports:
            key = f"{p.container}/{p.protocol}"
            bindings[key] = (p.host_ip, p.host) if p.host else (p.host_ip,)
        env = dict(spec.env)
        binds: dict[str, Mapping[str, str]] = {}
        if spec.secrets and spec.secrets_dir is None:
            env.update(spec.secrets)
        elif spec.secrets and spec.secrets_dir is not None:
            source = write_secrets(self.secrets_root, name, spec.secrets)
            binds[str(source)] = {"bind": spec.secrets_dir, "mode": "ro"}
        for host_path, target, read_only in spec.mounts:  # the app's policy allowed them
            binds[host_path] = {"bind": target, "mode": "ro" if read_only else "rw"}
        for name_in_spec, target, read_only in spec.volumes:
            volume = docker_volumes.named_volume(self.api, self.host, assignment.app, name_in_spec)
            binds[volume] = {"bind": target, "mode": "ro" if read_only else "rw"}
        tmpfs = {t: f"size={size}" if size else "" for t, size in spec.tmpfs}
        restricted = spec.security_profile == "restricted"
        added = ["NET_BIND_SERVICE"] if restricted else []
        added += [c for c in spec.cap_add if c not in added]
        host = spec.network_mode == "host"
        networks = [docker_volumes.network(self.api, n) for n in spec.networks]
        host_config = self.api.create_host_config(
            binds=binds or None,
            port_bindings=None if host else bindings,
            privileged=spec.privileged,
            network_mode="host" if host else (networks[0] if networks else None),
            pid_mode="host" if spec.pid_mode == "host" else None,
            ipc_mode="host" if spec.ipc_mode == "host" else None,
            devices=[f"{d}:{d}:rwm" for d in spec.devices] or None,
            restart_policy=_RESTART.get(spec.restart),
            mem_limit=spec.memory,
            nano_cpus=int(spec.cpus * 1e9) if spec.cpus else None,
            # a tiny init as PID 1 forwards SIGTERM: processes that ignore it as PID 1
            # (busybox httpd, most shells) then stop at once instead of after the timeout
            init=True,
            # the baseline of every container (README, Security): no privilege gained through
            # setuid binaries, no raw sockets (ARP/ICMP spoofing), a bounded process count
            security_opt=["no-new-privileges:true"],
            cap_drop=["ALL"] if restricted else ["NET_RAW"],
            cap_add=added or None,
            pids_limit=spec.pids_limit,
            read_only=spec.read_only,
            tmpfs=tmpfs or None,
        )
        try:
            created = self.api.create_container(
                self._image_to_run(spec.image, spec.digest),
                command=list(spec.command) if spec.command is not None else None,
                name=name,
                environment=env,
                user=spec.user or "",
                labels=labels,
                ports=[(p.container, p.protocol) for p in spec.ports],
                host_config=host_config,
                networking_config=docker_volumes.endpoints(self.api, networks[:1], assignment.app),
            )
            for network in networks[1:]:
                self.api.connect_container_to_network(
                    created["Id"], network, aliases=[assignment.app]
                )
        except docker.errors.APIError as exc:
            forget_secrets(self.secrets_root, name)
            raise DriverError(f"create {name} failed: {explain(exc)}") from exc
        cid = str(created["Id"])
        self.start(cid)
        return cid

    def _image_to_run(self, image: str, digest: str | None) -> str:
        """What a container of a release is created from: its image, or, pinned, exactly the
        pinned image: `repo@digest` if the engine has it, else the image whose id the pin is
        (a local image, never pushed: its digest is its id), by its tag while the tag is
        that image (what `docker ps` shows), else by the id. Missing: the create fails."""
        if digest is None:
            return image
        pinned = pinned_ref(image, digest)
        if self.image_id(pinned) is not None:
            return pinned
        if self.image_id(image) == digest:
            return image
        return digest if self.image_id(digest) == digest else pinned

    def start(self, container_id: str) -> None:
        """Start an existing container."""
        try:
            self.api.start(container_id)
        except docker.errors.APIError as exc:
            raise DriverError(f"start {container_id[:12]} failed: {explain(exc)}") from exc

    def stop(self, container_id: str, timeout: int = 10) -> None:
        """Stop a container, killing it after `timeout` seconds; one already gone is fine."""
        try:
            self.api.stop(container_id, timeout=timeout)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise DriverError(f"stop {container_id[:12]} failed: {explain(exc)}") from exc

    def remove_volumes(self, app: str) -> list[str]:
        """Remove the app's named volumes on this host (agent/docker_volumes.py); their
        names."""
        return docker_volumes.remove_volumes(self.api, self.host, app)

    def remove(self, container_id: str) -> None:
        """Remove a container, forcibly if it runs; one already gone is fine. Its secret
        files go with it."""
        name = ""
        try:
            info = self.api.inspect_container(container_id)
            name = str(info.get("Name", "")).lstrip("/")
        except docker.errors.APIError:
            pass
        try:
            self.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise DriverError(f"remove {container_id[:12]} failed: {explain(exc)}") from exc
        forget_secrets(self.secrets_root, name)

    def remove_image(self, ref: str) -> None:
        """Remove an image no container uses any more; one still in use is kept (409), and so
        is one built or imported locally (no registry digest): it could not be pulled back."""
        try:
            info = self.api.inspect_image(ref)  # type: ignore[no-untyped-call]
            if not info.get("RepoDigests"):
                return
            self.api.remove_image(ref)
        except docker.errors.APIError as exc:
            log.debug("image kept host=%s image=%s: %s", self.host, ref, explain(exc))

    def exec_ok(self, container_id: str, command: tuple[str, ...]) -> bool:
        """Run a command inside the container (a `cmd` health probe); True if it exits 0."""
        try:
            created = self.api.exec_create(container_id, list(command))
            self.api.exec_start(created["Id"])
            info = self.api.exec_inspect(created["Id"])
        except docker.errors.APIError:
            return False
        return info.get("ExitCode") == 0

    def logs(self, container_id: str, lines: int = 20) -> list[str]:
        """The last `lines` lines of a container's output (agent/docker_logs.py)."""
        return docker_logs.last_lines(self.api, container_id, lines)

    def open_logs(
        self, container_id: str, *, follow: bool, tail: int | None, since: float | None
    ) -> Any:
        """A container's output as a blocking stream of stamped chunks whose `close()` ends
        it from another thread (agent/docker_logs.py, for agent/logs.py)."""
        return docker_logs.open_logs(self.api, container_id, follow=follow, tail=tail, since=since)

    def watch_events(self, wake: Any, stop: threading.Event) -> None:
        """Call `wake()` on every container event of this host until `stop` is set."""
        filters = {"type": "container", "label": f"{LABEL_HOST}={self.host}"}
        stream = self.api.events(filters=filters, decode=True)
        done = threading.Event()
        closer = threading.Thread(target=_close_when, args=(stop, done, stream), daemon=True)
        closer.start()
        try:
            for _ in _iterate(stream):
                if stop.is_set():
                    break
                wake()
        finally:
            done.set()


def _close_when(stop: threading.Event, done: threading.Event, stream: Any) -> None:
    """Close the blocking event stream once the agent stops, so its thread can end."""
    while not stop.wait(0.5):
        if done.is_set():
            return
    try:
        stream.close()
    except Exception:  # closing a dead stream may raise anything; we are leaving anyway
        pass


def _iterate(stream: Any) -> Iterator[Any]:
    try:
        yield from stream
    except Exception as exc:  # a closed or broken stream ends the watch; the caller retries
        log.debug("docker event stream ended: %s", exc)


def _instance(row: dict[str, Any]) -> Instance | None:
    labels = row.get("Labels") or {}
    try:
        release = int(labels[LABEL_RELEASE])
        replica = int(labels.get(LABEL_REPLICA, "0"))
        deployment = int(labels.get(LABEL_DEPLOYMENT, "0"))
        app = labels[LABEL_APP]
        host = labels[LABEL_HOST]
    except (KeyError, ValueError):
        return None  # not one of ours, or damaged labels: never touch it
    status = str(row.get("Status", ""))
    match = _EXITED.search(status)
    health = "none"
    if "(healthy)" in status:
        health = "healthy"
    elif "(unhealthy)" in status:
        health = "unhealthy"
    elif "(health: starting)" in status:
        health = "starting"
    ports = tuple(
        PublishedPort(
            container=int(p["PrivatePort"]),
            host_ip=str(p.get("IP", "")),
            host_port=int(p["PublicPort"]),
            protocol=str(p.get("Type", "tcp")),
        )
        for p in row.get("Ports") or []
        if p.get("PublicPort")
    )
    names = row.get("Names") or [""]
    return Instance(
        container_id=str(row["Id"]),
        name=str(names[0]).lstrip("/"),
        host=host,
        app=app,
        release=release,
        replica=replica,
        deployment=deployment,
        state=str(row.get("State", "unknown")),
        health=health,
        exit_code=int(match.group(1)) if match else None,
        image=str(row.get("Image", "")),
        ports=ports,
    )


def _digest_of(ref: str, info: dict[str, Any]) -> str:
    """The digest of a local image as `ref`'s repository knows it (its RepoDigests entry for
    that repository), or, for an image never pulled from there, its id."""
    digests = [str(d) for d in info.get("RepoDigests") or []]
    repo = pinned_ref(ref, "x")[:-2]
    for entry in digests:
        name, _, digest = entry.partition("@")
        if name == repo or name == f"docker.io/{repo}" or name == f"docker.io/library/{repo}":
            return digest
    return str(info.get("Id", ""))  # not from this repository: its own id, never another's


def _split_ref(ref: str) -> tuple[str, str | None]:
    if "@" in ref:
        return ref, None
    name, _, tag = ref.rpartition(":")
    if name and "/" not in tag:
        return name, tag
    return ref, "latest"
