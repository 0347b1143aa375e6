"""A fake Docker driver, in memory: ONLY for simulating thousands of hosts in benchmarks.

It implements `agent.driver.Driver` with the bookkeeping of `agent.reconcile.simulate`:
every call answers at once, every image is always present, `exec_ok` is always True, and a
"container" is a row in a dict. It is never evidence that a feature works: the integration
and end-to-end tests use the real Docker Engine. The fan-out benchmark uses it so that one
process can stand in for 10,000 hosts and the measurement is about the server and the wire.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from dataclasses import replace

from agent.protocol import Assignment, Instance, PublishedPort, RegistryAuth

FAKE_DOCKER_VERSION = "fake-0 (bench simulation)"


@functools.lru_cache(maxsize=256)
def fake_digest(ref: str) -> str:
    """A stable fake digest per image, hashed once for all the process's hosts."""
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()


class FakeDriver:
    """One simulated host's engine (see the module docstring: a benchmark tool only)."""

    _ids = itertools.count(1)  # unique container ids across every fake host of the process
    _ports = itertools.count(20000)

    def __init__(self, host: str, on_run: object = None) -> None:
        self.host = host
        self._containers: dict[str, Instance] = {}
        self.on_run = on_run  # optional callback(image) when a container is created
        self.calls = 0

    def version(self) -> str:
        return FAKE_DOCKER_VERSION

    def close(self) -> None:
        """Nothing to release."""

    def reachable(self) -> bool:
        """The simulated Engine always answers."""
        return True

    def list_instances(self) -> list[Instance]:
        self.calls += 1
        return list(self._containers.values())

    def present_images(self, refs: set[str]) -> dict[str, str]:
        self.calls += 1
        return {ref: fake_digest(ref) for ref in refs}

    def pull(self, ref: str, auth: RegistryAuth | None = None) -> None:
        self.calls += 1

    def run(self, assignment: Assignment, replica: int, name: str) -> str:
        """Like `simulate` for a Run, with an id that stays unique after removals."""
        self.calls += 1
        cid = f"sim{next(self._ids):012x}"
        ports = tuple(
            PublishedPort(p.container, p.host_ip, p.host or next(self._ports) % 65536, p.protocol)
            for p in assignment.spec.ports
        )
        self._containers[cid] = Instance(
            container_id=cid,
            name=name,
            host=self.host,
            app=assignment.app,
            release=assignment.release,
            replica=replica,
            deployment=assignment.deployment,
            state="running",
            image=assignment.spec.image,
            ports=ports,
        )
        if callable(self.on_run):
            self.on_run(assignment.spec.image)
        return cid

    def start(self, container_id: str) -> None:
        self.calls += 1
        self._containers[container_id] = replace(
            self._containers[container_id], state="running", exit_code=None
        )

    def stop(self, container_id: str, timeout: int = 10) -> None:
        self.calls += 1
        self._containers[container_id] = replace(
            self._containers[container_id], state="exited", exit_code=143
        )

    def remove(self, container_id: str) -> None:
        self.calls += 1
        self._containers.pop(container_id, None)

    def remove_image(self, ref: str) -> None:
        self.calls += 1

    def exec_ok(self, container_id: str, command: tuple[str, ...]) -> bool:
        self.calls += 1
        return True

    def logs(self, container_id: str, lines: int = 20) -> list[str]:
        self.calls += 1
        return []

    def image_id(self, ref: str) -> str | None:
        """Every image is present: its id is its fake digest."""
        self.calls += 1
        return fake_digest(ref)

    def container_images(self) -> dict[str, str]:
        """Containers are not told apart by image in the simulation."""
        return {}

    def remove_volumes(self, app: str) -> list[str]:
        """The simulation has no volumes."""
        self.calls += 1
        return []
