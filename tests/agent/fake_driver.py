"""An in-memory Docker Engine for unit tests of the agent runner's logic, and nothing else.

It is a stand-in that lets those tests say what the engine holds and what goes wrong (a pull
that fails, a container that crashes, a probe that fails) without a Docker daemon. It is
never evidence that the Docker integration works: the real driver (`agent/docker_driver.py`)
is tested by the end-to-end tests against a real engine (tests/e2e).

It keeps the real driver's contract where the runner depends on it: `list_instances` returns
only the containers labelled with the driver's host, a container name is unique in the engine
(several agents may share one engine), `run` creates and starts, and stopping a container
leaves it exited with code 143 (SIGTERM), as `docker stop` does. bench/fake_driver.py is not
used here: it is a benchmark's simulation (every image present, every probe passing) and
offers none of the failures these tests inject.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from dataclasses import dataclass, field, replace

from agent.protocol import Assignment, Instance, RegistryAuth, pinned_ref, run_ref


def digest_of(ref: str) -> str:
    """The fake registry digest of an image reference."""
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()


@dataclass
class FakeEngine:
    """The state of one engine, which several hosts' drivers may share.

    `steps` records every change the engine made, in order, as (verb, container name or
    image): what a user would see in `docker events`.
    """

    images: set[str] = field(default_factory=set)
    containers: dict[str, Instance] = field(default_factory=dict)
    logs: dict[str, list[str]] = field(default_factory=dict)
    pull_errors: dict[str, str] = field(default_factory=dict)  # image -> the error's message
    run_errors: list[str] = field(default_factory=list)  # the next runs fail with these, in turn
    unhealthy: set[str] = field(default_factory=set)  # images whose probe command fails
    list_failures: int = 0  # the next this many listings fail (the engine's socket broke)
    down: bool = False  # the engine does not answer at all (every call fails)
    dies_on_pull: bool = False  # the engine goes down during the next pull
    # images whose pull hangs (a registry that accepts and never answers) until released
    held: dict[str, threading.Event] = field(default_factory=dict)
    pulls_begun: list[str] = field(default_factory=list)  # every pull asked for, in order
    steps: list[tuple[str, str]] = field(default_factory=list)
    volumes: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (app, host)
    # what a tag's local image is (its digest; else `digest_of(tag)`): a test moves a tag
    tags: dict[str, str] = field(default_factory=dict)
    image_of: dict[str, str] = field(default_factory=dict)  # container id -> its image's digest
    looked_up: list[str] = field(default_factory=list)  # image references inspected, in order
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)  # calls come from threads

    def of(self, host: str, app: str | None = None) -> list[Instance]:
        """The containers labelled with `host` (and `app`), oldest first."""
        return [i for i in self.containers.values() if i.host == host and app in (None, i.app)]

    def add(self, inst: Instance) -> None:
        """Put a container in the engine as if someone else created it."""
        self.containers[inst.container_id] = inst

    def hold(self, ref: str) -> None:
        """Make pulls of `ref` hang until `release(ref)`."""
        self.held[ref] = threading.Event()

    def release(self, ref: str) -> None:
        """Let the hung pulls of `ref` go on (and succeed)."""
        self.held.pop(ref).set()

    def release_all(self) -> None:
        """Let every hung pull go on: a test's cleanup, so that no thread waits forever."""
        for ref in list(self.held):
            self.release(ref)

    def crash(self, container_id: str, exit_code: int, logs: list[str], *, state: str) -> None:
        """Make a container's process die: `state` "exited", or "restarting" (the engine
        restarts it by its restart policy, and it keeps dying)."""
        self.containers[container_id] = replace(
            self.containers[container_id], state=state, exit_code=exit_code
        )
        self.logs[container_id] = logs


class FakeDriver:
    """One host's view of a `FakeEngine`, with the methods of `agent.driver.Driver`."""

    def __init__(self, engine: FakeEngine, host: str) -> None:
        self.engine = engine
        self.host = host

    def reachable(self) -> bool:
        return not self.engine.down

    def _check(self) -> None:
        if self.engine.down:
            raise RuntimeError("Cannot connect to the Docker daemon at unix:///fake.sock")

    def list_instances(self) -> list[Instance]:
        with self.engine._lock:
            self._check()
            if self.engine.list_failures > 0:
                self.engine.list_failures -= 1
                raise RuntimeError("Cannot connect to the Docker daemon")
            return self.engine.of(self.host)

    def _digest(self, ref: str) -> str:
        """The digest of the local image `ref` names (a `repo@digest` names its digest)."""
        return ref.split("@", 1)[1] if "@" in ref else self.engine.tags.get(ref, digest_of(ref))

    def present_images(self, refs: set[str]) -> dict[str, str]:
        with self.engine._lock:
            self.engine.looked_up += sorted(refs)
            return {ref: self._digest(ref) for ref in refs if ref in self.engine.images}

    def image_id(self, ref: str) -> str | None:
        with self.engine._lock:
            if ref in self.engine.images:
                return self._digest(ref)
            # as the Engine: `repo@digest` names a local image of that repository and digest
            digest = ref.partition("@")[2]
            tags = [i for i in self.engine.images if pinned_ref(i, digest) == ref]
            return digest if digest and any(self._digest(t) == digest for t in tags) else None

    def container_images(self) -> dict[str, str]:
        with self.engine._lock:
            return dict(self.engine.image_of)

    def pull(self, ref: str, auth: RegistryAuth | None = None) -> None:
        with self.engine._lock:
            self.engine.pulls_begun.append(ref)
            gate = self.engine.held.get(ref)
        if gate is not None:
            gate.wait(60)  # never forever: a test that forgets to release it still ends
        with self.engine._lock:
            if self.engine.dies_on_pull:
                self.engine.down = True
            self._check()
            if ref in self.engine.pull_errors:
                raise RuntimeError(self.engine.pull_errors[ref])
            self.engine.images.add(ref)
            self.engine.steps.append(("pull", ref))

    def run(self, assignment: Assignment, replica: int, name: str) -> str:
        with self.engine._lock:
            self._check()
            spec = assignment.spec
            image = run_ref(spec.image, spec.digest)
            by_tag = spec.image in self.engine.images and self._digest(spec.image) == spec.digest
            if image not in self.engine.images and not by_tag:
                raise RuntimeError(f"No such image: {image}")
            if image not in self.engine.images:  # as the driver: by its tag, which is the pin
                image = spec.image
            if any(i.name == name for i in self.engine.containers.values()):
                raise RuntimeError(f"Conflict. The container name {name!r} is already in use")
            if self.engine.run_errors:
                raise RuntimeError(self.engine.run_errors.pop(0))
            cid = f"c{next(self.engine._ids):04d}"
            self.engine.containers[cid] = Instance(
                container_id=cid,
                name=name,
                host=self.host,
                app=assignment.app,
                release=assignment.release,
                replica=replica,
                deployment=assignment.deployment,
                state="running",
                image=image,
            )
            self.engine.image_of[cid] = spec.digest or self._digest(image)
            self.engine.steps.append(("run", name))
            return cid

    def start(self, container_id: str) -> None:
        with self.engine._lock:
            inst = self.engine.containers.get(container_id)
            if inst is None:
                raise RuntimeError(f"No such container: {container_id}")
            self.engine.containers[container_id] = replace(inst, state="running", exit_code=None)
            self.engine.steps.append(("start", inst.name))

    def stop(self, container_id: str, timeout: int = 10) -> None:
        with self.engine._lock:
            inst = self.engine.containers.get(container_id)
            if inst is None:
                return  # as the real driver: a container already gone is stopped
            self.engine.containers[container_id] = replace(inst, state="exited", exit_code=143)
            self.engine.steps.append(("stop", inst.name))

    def remove(self, container_id: str) -> None:
        with self.engine._lock:
            inst = self.engine.containers.pop(container_id, None)
            if inst is not None:
                self.engine.steps.append(("remove", inst.name))

    def remove_image(self, ref: str) -> None:
        with self.engine._lock:
            self.engine.images.discard(ref)
            self.engine.steps.append(("remove_image", ref))

    def exec_ok(self, container_id: str, command: tuple[str, ...]) -> bool:
        with self.engine._lock:
            inst = self.engine.containers.get(container_id)
            if inst is None or inst.state != "running":
                return False
            return inst.image not in self.engine.unhealthy

    def logs(self, container_id: str, lines: int = 20) -> list[str]:
        with self.engine._lock:
            return self.engine.logs.get(container_id, [])[-lines:]

    def remove_volumes(self, app: str) -> list[str]:
        with self.engine._lock:
            self._check()
            gone = sorted(
                v for v, (a, h) in self.engine.volumes.items() if (a, h) == (app, self.host)
            )
            for name in gone:
                del self.engine.volumes[name]
                self.engine.steps.append(("volume rm", name))
            return gone
