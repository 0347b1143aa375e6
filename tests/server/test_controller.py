"""The rollout controller through its public calls, on SQLite and PostgreSQL: a deployment's
first pass assigns its hosts and asks the hub to push; the hosts' statuses (through the
status store) carry it to its end; the controller's copy of the targets is dropped when
someone else wrote them; an operator's pause holds the next batch; deadlines need no news.

The hub is a stand-in that records pushes (every host connected): what is tested is the
controller's reading, judging and writing, not the WebSocket (tests/e2e does that)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select, update

from agent.protocol import AppProblem, Instance, Status
from server.db import deploys, store, target_rows
from server.db.models import Deployment, DeploymentHost, Host
from server.db.session import Sessions
from server.metrics import create_metrics
from server.rollout.controller import Controller
from server.rollout.wakeups import Wakeups
from server.states import DeploymentStatus, Outcome
from server.statuses import StatusStore
from server.turns import Phase, Turns

SPEC = {"image": "web:v1", "replicas": 1}


@dataclass
class FakeHosts:
    """Every host connected; pushes recorded."""

    pushed: list[set[str]] = field(default_factory=list)

    def presence(self, host: str) -> tuple[bool, float | None]:
        return True, None

    def push_now(self, hosts: Iterable[str]) -> None:
        self.pushed.append(set(hosts))


@dataclass
class Rig:
    sessions: Sessions
    controller: Controller
    statuses: StatusStore
    wakeups: Wakeups
    turns: Turns
    hosts: FakeHosts
    ids: dict[str, int]

    async def deploy(self, image: str, **strategy: object) -> Deployment:
        spec = {**SPEC, "image": image}
        deployment, _ = await deploys.deploy(
            self.sessions,
            "web",
            spec,
            actor="test",
            message=None,
            strategy={"max_parallel": len(self.ids), "healthy_deadline": 60, **strategy},
            selector={},
            idempotency_key=None,
            body_hash="x",
        )
        self.controller.rollout_requested()
        return deployment

    def report(self, host: str, release: int, ready: bool = True, problem: str = "") -> None:
        """The host runs `release` (ready or not, with a problem or not) and has pulled
        web:v1 (the pre-pull)."""
        instance = Instance("c", "n", host, "web", release, 1, 1, "running", ready=ready)
        problems = (AppProblem("web", release, "unhealthy", problem),) if problem else ()
        pulled = (("web:v1", "sha256:1"),)
        status = Status(host, 1, instances=(instance,), digests=pulled, problems=problems)
        self.statuses.record(self.ids[host], host, status)
        self.wakeups.host(host)

    async def status(self, deployment_id: int) -> str:
        async with self.sessions() as session:
            deployment, _ = await store.deployment_and_app(session, deployment_id)
            return deployment.status

    async def states(self, deployment_id: int) -> dict[str, str]:
        async with self.sessions() as session:
            rows = await target_rows.deployment_hosts(session, deployment_id)
        return {r.host_name: r.state for r in rows}


async def rig(sessions: Sessions, hosts: int = 2) -> Rig:
    async with sessions.begin() as session:
        for i in range(hosts):
            await store.add_host(session, f"h{i}", {})
    async with sessions() as session:
        ids = dict((await session.execute(select(Host.name, Host.id))).all())
    turns = Turns()
    statuses = StatusStore(sessions, turns)
    wakeups = Wakeups(turns)
    fake = FakeHosts()
    ctl = Controller(sessions, create_metrics(), statuses, fake, turns, wakeups, interval=0)
    return Rig(sessions, ctl, statuses, wakeups, turns, fake, ids)


async def test_a_deployment_goes_from_first_pass_to_success(sessions: Sessions) -> None:
    r = await rig(sessions)
    d = await r.deploy("web:v1")
    assert r.turns.is_on(Phase.ROLLING)  # from the request on
    assert await r.controller.run_once()  # it asked the hub to push
    assert r.hosts.pushed == [{"h0", "h1"}]
    assert await r.states(d.id) == {"h0": "updating", "h1": "updating"}
    r.report("h0", d.release)
    await r.controller.run_once()
    assert await r.states(d.id) == {"h0": "healthy", "h1": "updating"}
    assert await r.status(d.id) == DeploymentStatus.RUNNING
    finished = r.controller.finished
    r.report("h1", d.release, ready=False)  # running, not ready yet
    await r.controller.run_once()
    assert await r.status(d.id) == DeploymentStatus.RUNNING
    r.report("h1", d.release)
    await r.controller.run_once()
    assert await r.status(d.id) == DeploymentStatus.SUCCEEDED
    async with sessions() as session:  # the end's other writes, in the same commit
        app = await store.get_app(session, "web")
        release = await store.get_release(session, app, d.release)
        deployment, _ = await store.deployment_and_app(session, d.id)
    assert app.current_release == d.release
    assert release is not None and release.outcome == Outcome.SUCCEEDED
    assert deployment.finished_at is not None and deployment.started_at is not None
    assert finished.is_set()  # those long-polling for its end are woken
    assert r.turns.is_on(Phase.ANSWERING)
    assert not r.turns.is_on(Phase.ROLLING)


async def test_a_problem_report_fails_the_host_with_its_evidence(sessions: Sessions) -> None:
    r = await rig(sessions, hosts=1)
    d = await r.deploy("web:v1")
    await r.controller.run_once()
    r.report("h0", d.release, ready=False, problem="health check failed")
    await r.controller.run_once()
    assert await r.status(d.id) == DeploymentStatus.FAILED  # no good release to go back to
    async with sessions() as session:
        (row,) = await target_rows.deployment_hosts(session, d.id)
    assert row.state == "failed"
    assert row.evidence["problems"][0]["message"] == "health check failed"


async def test_targets_written_by_someone_else_are_read_again(sessions: Sessions) -> None:
    """The controller's copy of a deployment's targets is valid only at the version it wrote."""
    r = await rig(sessions)
    d = await r.deploy("web:v1")
    await r.controller.run_once()
    async with sessions.begin() as session:  # another writer marks h1 healthy
        await session.execute(
            update(DeploymentHost)
            .where(DeploymentHost.deployment_id == d.id, DeploymentHost.host_name == "h1")
            .values(state="healthy")
        )
        await session.execute(
            update(Deployment)
            .where(Deployment.id == d.id)
            .values(targets_version=Deployment.targets_version + 1)
        )
    r.report("h0", d.release)
    await r.controller.run_once()
    assert await r.status(d.id) == DeploymentStatus.SUCCEEDED


async def test_a_paused_deployment_assigns_no_new_batch(sessions: Sessions) -> None:
    r = await rig(sessions)
    d = await r.deploy("web:v1", max_parallel=1)
    await r.controller.run_once()  # two batches: nothing stops before every host pulled
    assert await r.states(d.id) == {"h0": "pending", "h1": "pending"}
    r.report("h0", 0)
    r.report("h1", 0)  # both have the image, and run nothing of the release yet
    await r.controller.run_once()
    assert await r.states(d.id) == {"h0": "updating", "h1": "pending"}
    async with sessions.begin() as session:
        deployment = await session.get(Deployment, d.id)
        assert deployment is not None
        deployment.status = DeploymentStatus.PAUSED  # as POST .../pause leaves it
    r.controller.deployment_changed(d.id)
    r.report("h0", d.release)
    await r.controller.run_once()
    assert await r.states(d.id) == {"h0": "healthy", "h1": "pending"}
    assert not r.turns.is_on(Phase.ROLLING)  # a paused rollout holds nothing back


async def test_a_deadline_fails_a_host_without_any_news(sessions: Sessions) -> None:
    r = await rig(sessions, hosts=1)
    d = await r.deploy("web:v1", healthy_deadline=0)
    await r.controller.run_once()
    await r.controller.run_once()  # no status came: the timer's pass
    async with sessions() as session:
        deployment, _ = await store.deployment_and_app(session, d.id)
    assert deployment.status == DeploymentStatus.FAILED
    assert "healthy_deadline" in (deployment.error or "")
