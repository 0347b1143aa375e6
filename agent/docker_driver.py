"""The only module that knows the Docker SDK. Every method blocks: call it through a thread.

(Over 400 lines: every Docker call the agent makes is here, so that no other module
imports the SDK; each method is one Engine operation.)

It uses the SDK's low-level APIClient: one `containers` call returns state, labels and ports
of every instance, where the high-level API would inspect each container in turn.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

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
    volume_name,
)

# The Engine API answers JSON, always UTF-8, so requests' character detection is never used,
# yet importing charset_normalizer costs every agent 2.6 MiB of RSS. requests supports running
# without a detector (Response.apparent_encoding then says UTF-8); a None entry in sys.modules
# is Python's documented way to make an import fail. A process that already has one keeps it.
for _detector in ("charset_normalizer", "chardet"):
    sys.modules.setdefault(_detector, None)  # type: ignore[arg-type]
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Unable to find acceptable character detection")
    import docker
    import docker.errors

log = logging.getLogger(__name__)

# secrets asked for as files: one folder per container under this root, on a tmpfs
DEFAULT_SECRETS_ROOT = Path("/dev/shm/flotilla-secrets")

_EXITED = re.compile(r"(?:Exited|Restarting) \((-?\d+)\)")
_RESTART: dict[str, dict[str, str | int] | None] = {
    "no": None,
    "on-failure": {"Name": "on-failure", "MaximumRetryCount": 0},
    "unless-stopped": {"Name": "unless-stopped"},
    "always": {"Name": "always"},
}


class DriverError(Exception):
    """A Docker operation failed; `message` is safe to show to users."""


class DockerDriver:
    """Runs one host's instances on a Docker Engine."""

    def __init__(
        self,
        host: str,
        base_url: str | None = None,
        timeout: int = 60,
        secrets_root: Path = DEFAULT_SECRETS_ROOT,
    ) -> None:
        self.host = host
        self.secrets_root = secrets_root
        self.base_url = base_url
        self.timeout = timeout
        self._api: docker.APIClient | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._images: dict[str, str] = {}  # container id -> image id, of the last listing

    @property
    def api(self) -> docker.APIClient:
        """The Engine's API client, made at first use: making one asks the Engine for its API
        version, and an agent must start (and keep trying) while the Engine is down."""
        with self._lock:
            if self._closed:  # a pull's or a log reader's thread outliving the agent
                raise DriverError("the agent is stopping: no more calls to the Engine")
            if self._api is None:
                self._socket_answers()
                if self.base_url:
                    self._api = docker.APIClient(base_url=self.base_url, timeout=self.timeout)
                else:
                    self._api = docker.from_env(timeout=self.timeout).api
            return self._api

    def close(self) -> None:
        """Close the connection to the Engine; later calls raise DriverError (a closed
        client would open new connections that nothing closes)."""
        with self._lock:
            self._closed = True
            if self._api is not None:
                self._api.close()

    def reachable(self) -> bool:
        """Does the Engine answer a ping now?"""
        try:
            self._socket_answers()
            return bool(self.api.ping())
        except Exception:  # any failure to answer is the answer
            return False

    def _socket_answers(self) -> None:
        """Raise DriverError if nothing listens on the Engine's unix socket. Checked with a
        plain socket: the SDK's unix adapter leaves a socket open (to the garbage collector)
        on every failed connect, which an agent waiting for its Engine would do every 2 s."""
        url = self.base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        if not url.startswith(("unix://", "http+unix://")):
            return
        path = url.split("://", 1)[1]
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(2.0)
            probe.connect(path)
        except OSError as exc:
            raise DriverError(f"cannot connect to the Docker Engine at {url}: {exc}") from exc
        finally:
            probe.close()

    def version(self) -> str:
        """The Engine's version, or "unknown"."""
        return str(self.api.version().get("Version", "unknown"))

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
            raise DriverError(f"pull {ref} failed: {_explain(exc)}") from exc

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
            source = self._write_secrets(name, spec.secrets)
            binds[str(source)] = {"bind": spec.secrets_dir, "mode": "ro"}
        for host_path, target, read_only in spec.mounts:  # the app's policy allowed them
            binds[host_path] = {"bind": target, "mode": "ro" if read_only else "rw"}
        for name_in_spec, target, read_only in spec.volumes:
            volume = self._volume(assignment.app, name_in_spec)
            binds[volume] = {"bind": target, "mode": "ro" if read_only else "rw"}
        tmpfs = {t: f"size={size}" if size else "" for t, size in spec.tmpfs}
        restricted = spec.security_profile == "restricted"
        added = ["NET_BIND_SERVICE"] if restricted else []
        added += [c for c in spec.cap_add if c not in added]
        host = spec.network_mode == "host"
        networks = [self._network(n) for n in spec.networks]
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
                networking_config=self._endpoints(networks[:1], assignment.app),
            )
            for network in networks[1:]:
                self.api.connect_container_to_network(
                    created["Id"], network, aliases=[assignment.app]
                )
        except docker.errors.APIError as exc:
            self._forget_secrets(name)
            raise DriverError(f"create {name} failed: {_explain(exc)}") from exc
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
            raise DriverError(f"start {container_id[:12]} failed: {_explain(exc)}") from exc

    def stop(self, container_id: str, timeout: int = 10) -> None:
        """Stop a container, killing it after `timeout` seconds; one already gone is fine."""
        try:
            self.api.stop(container_id, timeout=timeout)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise DriverError(f"stop {container_id[:12]} failed: {_explain(exc)}") from exc

    def _write_secrets(self, name: str, secrets: tuple[tuple[str, str], ...]) -> Path:
        """The container's secret files, in a folder of its own under the secrets root (a
        tmpfs: /dev/shm by default), bind-mounted read-only. The root is 0700 (no other host
        user reaches them); inside, files are 0444 so that a non-root container user reads
        them."""
        root = self.secrets_root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        root.chmod(0o700)
        folder = root / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(mode=0o755)
        folder.chmod(0o755)
        for file_name, value in secrets:
            path = folder / file_name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            with os.fdopen(fd, "w") as f:
                f.write(value)
        return folder

    def _network(self, name: str) -> str:
        """The Engine's name of a user-defined bridge network, created on first use (labelled
        as Flotilla's) and kept: several apps share it, and it costs nothing idle."""
        full = f"flotilla-{name}"
        if not self.api.networks(names=[full]):
            try:
                self.api.create_network(
                    full, driver="bridge", labels={"flotilla.network": name}, check_duplicate=True
                )
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # made by a concurrent create: fine
                    raise DriverError(f"create network {full} failed: {_explain(exc)}") from exc
        return full

    def _endpoints(self, networks: list[str], app: str) -> dict[str, Any] | None:
        """The networking config of a container created on `networks` (one at most): its
        app's name as its DNS alias there."""
        if not networks:
            return None
        endpoint = self.api.create_endpoint_config(aliases=[app])
        # a dict by network, as the SDK documents (its type stubs say one EndpointConfig)
        return self.api.create_networking_config({networks[0]: endpoint})  # type: ignore[arg-type]

    def _volume(self, app: str, source: str) -> str:
        """The Engine's name of an app's named volume, created (labelled with the app and
        this host) on first use and never removed with a container: its data outlives every
        release and rollback. Named per app: another app's `data` is another volume."""
        name = volume_name(app, source)
        try:
            self.api.inspect_volume(name)
        except docker.errors.NotFound:
            labels = {LABEL_APP: app, LABEL_HOST: self.host}
            try:
                self.api.create_volume(name, labels=labels)
            except docker.errors.APIError as exc:
                raise DriverError(f"create volume {name} failed: {_explain(exc)}") from exc
        return name

    def remove_volumes(self, app: str) -> list[str]:
        """Remove the app's named volumes on this host: only those labelled as Flotilla's for
        this app and this host, and named as its volumes are (`volume_name`); nothing else.
        Their names; raise DriverError if one cannot go (a container still uses it)."""
        labels = [f"{LABEL_APP}={app}", f"{LABEL_HOST}={self.host}"]
        try:
            found = self.api.volumes(filters={"label": labels}).get("Volumes") or []
        except docker.errors.APIError as exc:
            raise DriverError(f"list volumes of {app} failed: {_explain(exc)}") from exc
        prefix = volume_name(app, "")
        removed = []
        for volume in found:
            name = str(volume.get("Name", ""))
            mine = volume.get("Labels") or {}
            if not name.startswith(prefix) or mine.get(LABEL_APP) != app:
                continue
            if mine.get(LABEL_HOST) != self.host:
                continue
            try:
                self.api.remove_volume(name)
            except docker.errors.NotFound:
                continue
            except docker.errors.APIError as exc:
                raise DriverError(f"remove volume {name} failed: {_explain(exc)}") from exc
            removed.append(name)
        return sorted(removed)

    def _forget_secrets(self, name: str) -> None:
        """Delete a container's secret files (it was removed, or never created)."""
        if name and "/" not in name and name not in (".", ".."):
            shutil.rmtree(self.secrets_root / name, ignore_errors=True)

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
            raise DriverError(f"remove {container_id[:12]} failed: {_explain(exc)}") from exc
        self._forget_secrets(name)

    def remove_image(self, ref: str) -> None:
        """Remove an image no container uses any more; one still in use is kept (409), and so
        is one built or imported locally (no registry digest): it could not be pulled back."""
        try:
            info = self.api.inspect_image(ref)  # type: ignore[no-untyped-call]
            if not info.get("RepoDigests"):
                return
            self.api.remove_image(ref)
        except docker.errors.APIError as exc:
            log.debug("image kept host=%s image=%s: %s", self.host, ref, _explain(exc))

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
        """The last `lines` lines of a container's output; none if the Engine cannot say."""
        try:
            raw = self.api.logs(container_id, tail=lines)
        except docker.errors.APIError:
            return []
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return text.splitlines()[-lines:]

    def open_logs(
        self, container_id: str, *, follow: bool, tail: int | None, since: float | None
    ) -> Any:
        """A container's output, stdout and stderr as the Engine interleaves them, each line
        stamped with its time: a blocking iterator of byte chunks (a chunk is not a line)
        whose `close()` ends it from another thread (agent/logs.py)."""
        stream = self.api.logs(
            container_id,
            stream=True,
            follow=follow,
            timestamps=True,
            tail="all" if tail is None else tail,
            since=since,
        )
        return _LogFeed(stream)

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


def _explain(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)


class _LogFeed:
    """A container's output whose `close()` also ends its HTTP response: the SDK's stream
    closes its socket only while the response is still being read, so a stream that had
    ended (`--tail` without `--follow`) kept its Engine connection until it was collected."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Any:
        return iter(self._stream)

    def close(self) -> None:
        """End the stream (from any thread) and give its connection back."""
        with contextlib.suppress(Exception):
            self._stream.close()
        response = getattr(self._stream, "_response", None)  # where the SDK keeps it
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()
