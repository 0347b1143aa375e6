"""Rollback latency: a warm manual rollback next to `docker start`, and an automatic rollback.

One host (`flotilla dev`: server and agent in one process, SQLite), one replica, images
already present on the engine.

1. Warm manual rollback: release A then release B of app `rb` run; B is current and A's
   container is retained, stopped. POST /v1/apps/rb/rollback {"release": A} until A's text
   answers on the port of the restarted container (which must be A's original container),
   then a rollback to B (also timed) prepares the next run. Interleaved with the floor: a
   stopped container of image A (`docker start` until its port answers), alternating which
   of the two goes first.
2. Automatic rollback: release A of app `rb-auto` is healthy (HTTP health check); a release
   whose image answers 404 on /health is deployed with healthy_deadline 5 s; timed until the
   automatic rollback deployment succeeded and release A answers. Once with the default
   start-first order (A never stops) and once with stop-first (A is stopped first, so the
   rollback restarts it).

(Over 400 lines: one experiment read top to bottom, its processes, runs, milestones and
report; the shared parts live in bench/common.py.)
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import docker

from bench.common import (
    Api,
    EngineInfo,
    Stopwatch,
    build_image,
    build_image_variant,
    docker_engine,
    get_text,
    invocation,
    log,
    machine,
    metric,
    now_utc,
)
from bench.deploy_latency import DevServer

NAME = "rollback-latency"
RESULT_FILE = "rollback_latency"
TITLE = "Rollback latency: warm manual rollback next to `docker start`, and automatic rollback"
APP_WARM = "rb"
APP_AUTO = "rb-auto"
IMAGE_A = "flotilla-bench/rb:a"
IMAGE_B = "flotilla-bench/rb:b"
IMAGE_BAD = "flotilla-bench/rb:bad"  # --no-health: GET /health answers 404
TEXT = {IMAGE_A: "a", IMAGE_B: "b", IMAGE_BAD: "bad"}
HEALTH = {"type": "http", "port": 80, "path": "/health", "interval": 0.5, "retries": 3}
PORTS = [{"container": 80}]
TERMINAL = {"succeeded", "failed", "rolled_back", "cancelled", "superseded"}
ORDERS = ("start-first", "stop-first")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs", type=int, default=10, help="warm rollbacks and floor runs (default %(default)s)"
    )
    parser.add_argument(
        "--auto-runs",
        type=int,
        default=None,
        help="automatic rollbacks per order (default: --runs)",
    )
    parser.add_argument(
        "--auto-orders",
        default=",".join(ORDERS),
        help="strategy orders of the failing deploy, comma separated (default %(default)s)",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=0.010,
        help="seconds between probes of a container's port (default %(default)s)",
    )
    parser.add_argument(
        "--api-poll",
        type=float,
        default=0.015,
        help="seconds between GETs of the Flotilla API (default %(default)s)",
    )
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="keep flotilla dev's data dir (and its log, dev.log) for a look at the timings",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="give up on one run after this many seconds"
    )


# ---- API helpers --------------------------------------------------------------------------


def running(app: dict[str, Any], host: str, release: int) -> list[tuple[str, int | None]]:
    """(container id, published host port of container port 80) of each running instance of
    `release` on `host`, as GET /v1/apps/{app} shows them."""
    out = []
    for h in app.get("hosts", []):
        if h["name"] != host:
            continue
        for inst in h["instances"]:
            if inst["release"] == release and inst["state"] == "running":
                ports = [int(p["host_port"]) for p in inst["ports"] if p["container"] == 80]
                out.append((str(inst["container_id"]), ports[0] if ports else None))
    return out


def instance_ids(api: Api, app: str, host: str, release: int) -> list[str]:
    """Container ids of every instance of `release` (running or not)."""
    status, body = api.call("GET", f"/v1/apps/{app}")
    if status != 200:
        raise RuntimeError(f"GET /v1/apps/{app} answered {status}: {body}")
    return [
        str(inst["container_id"])
        for h in body.get("hosts", [])
        if h["name"] == host
        for inst in h["instances"]
        if inst["release"] == release
    ]


def wait_deployment(api: Api, dep_id: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, dep = api.call("GET", f"/v1/deployments/{dep_id}")
        if status == 200 and dep["status"] in TERMINAL:
            return dict(dep)
        if time.monotonic() > deadline:
            raise RuntimeError(f"deployment {dep_id} not finished within {timeout}s: {dep}")
        time.sleep(0.05)


def deploy(dev: DevServer, app: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Untimed: POST a deployment and wait until it succeeded."""
    status, answer = dev.api.call("POST", f"/v1/apps/{app}/deployments", body)
    if status != 202:
        raise RuntimeError(f"POST deployment {body} answered {status}: {answer}")
    dep = wait_deployment(dev.api, int(answer["id"]), timeout)
    if dep["status"] != "succeeded":
        raise RuntimeError(f"deployment of {body['image']} ended {dep['status']}: {dep}")
    return dep


def settle(client: docker.DockerClient, host: str, app: str, timeout: float = 30.0) -> None:
    """Untimed: wait until the agent has stopped the previous release (one running)."""
    deadline = time.monotonic() + timeout
    labels = [f"flotilla.host={host}", f"flotilla.app={app}"]
    while time.monotonic() < deadline:
        if len(client.containers.list(filters={"label": labels})) <= 1:
            break
        time.sleep(0.05)
    time.sleep(0.3)


# ---- the warm manual rollback and its floor -----------------------------------------------


@dataclass
class FloorRun:
    start_returned: float  # `docker start` returned
    port_read: float  # `docker port` returned (the port may change on every start)
    answered: float  # GET / answered with the image's text
    host_port: int


@dataclass
class RollbackRun:
    target: int  # the release rolled back to
    deployment: int
    post_wall: float  # time.time() just before the POST, to line up with the dev log
    accepted: float  # POST answered 202
    visible: float  # GET /v1/apps shows the target release running with a published port
    answered: float  # GET / on that port answered with the release's text
    succeeded: float  # GET /v1/deployments/{id} says succeeded
    container_id: str
    same_container: bool  # the retained container was restarted, not a new one created
    api_calls: int
    phases: dict[str, float] = field(default_factory=dict)


def floor_once(api: docker.APIClient, cid: str, poll: float, timeout: float) -> FloorRun:
    """`docker start CID` (the SDK's low-level start), `docker port`, GET / until it answers;
    then (untimed) `docker stop`."""
    want = TEXT[IMAGE_A]
    watch = Stopwatch()
    api.start(cid)
    start_returned = watch()
    bindings = api.port(cid, 80)
    port_read = watch()
    port = int(next(b["HostPort"] for b in bindings if b["HostIp"] == "127.0.0.1"))
    while get_text(port) != want:
        if watch() > timeout:
            raise RuntimeError(f"docker start of {cid[:12]}: no answer within {timeout}s")
        time.sleep(poll)
    answered = watch()
    api.stop(cid, timeout=10)
    return FloorRun(start_returned, port_read, answered, port)


def rollback_once(
    dev: DevServer,
    target: int,
    text: str,
    original: str,
    poll: float,
    api_poll: float,
    timeout: float,
) -> RollbackRun:
    """POST /v1/apps/rb/rollback {"release": target}; poll the API for the target's running
    instance and its port, the port for the release's text, the deployment for succeeded."""
    api = dev.api
    post_wall = time.time()
    watch = Stopwatch()
    status, answer = api.call(
        "POST", f"/v1/apps/{APP_WARM}/rollback", {"release": target, "reason": "bench"}
    )
    accepted = watch()
    if status != 202:
        raise RuntimeError(f"POST rollback to {target} answered {status}: {answer}")
    dep_id = int(answer["id"])
    port: int | None = None
    cid = ""
    visible = answered = succeeded = None
    calls = 1
    next_api = 0.0
    while answered is None or succeeded is None:
        now = watch()
        if now > timeout:
            raise RuntimeError(
                f"rollback {dep_id} to {target}: not answering/succeeded within {timeout}s"
                f"\n{dev.tail()}"
            )
        if now >= next_api:
            next_api = now + api_poll
            if port is None:
                _, app = api.call("GET", f"/v1/apps/{APP_WARM}")
                calls += 1
                found = [(c, p) for c, p in running(app, dev.host_name, target) if p]
                if found:
                    cid, port = found[0]
                    visible = watch()
            if succeeded is None:
                _, dep = api.call("GET", f"/v1/deployments/{dep_id}")
                calls += 1
                if dep["status"] == "succeeded":
                    succeeded = watch()
                elif dep["status"] in TERMINAL:
                    raise RuntimeError(f"rollback {dep_id} ended {dep['status']}: {dep}")
        if port is not None and answered is None and get_text(port) == text:
            answered = watch()
        if answered is None or succeeded is None:
            time.sleep(poll)
    assert visible is not None
    return RollbackRun(
        target,
        dep_id,
        post_wall,
        accepted,
        visible,
        answered,
        succeeded,
        cid,
        cid == original,
        calls,
    )


# ---- the automatic rollback ---------------------------------------------------------------


@dataclass
class AutoRun:
    order: str
    bad_release: int
    bad_deployment: int
    rollback_deployment: int
    post_wall: float
    accepted: float
    bad_rolled_back: float  # the failing deployment reported rolled_back
    rollback_succeeded: float  # the automatic rollback deployment reported succeeded
    a_answers: float  # A answers (after its last outage, if it had one)
    a_down: float  # from A's first failed probe to its answer again (0: it never failed)
    a_failed_probes: int
    same_container: bool  # A's instance after the run is the one from before it
    api_calls: int
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def done(self) -> float:
        """Both: A answers, and the rollback succeeded."""
        return max(self.a_answers, self.rollback_succeeded)


def auto_once(
    dev: DevServer,
    release_a: int,
    original: str,
    order: str,
    poll: float,
    api_poll: float,
    timeout: float,
) -> AutoRun:
    """POST a release whose health check fails; follow the failing deployment, the automatic
    rollback it starts, and release A's answers on its (current) published port."""
    api = dev.api
    host = dev.host_name
    want = TEXT[IMAGE_A]
    strategy: dict[str, Any] = {"healthy_deadline": 5}
    if order != "start-first":
        strategy["order"] = order
    body = {"image": IMAGE_BAD, "ports": PORTS, "health": HEALTH, "strategy": strategy}
    post_wall = time.time()
    watch = Stopwatch()
    status, answer = api.call("POST", f"/v1/apps/{APP_AUTO}/deployments", body)
    accepted = watch()
    if status != 202:
        raise RuntimeError(f"POST deployment {body} answered {status}: {answer}")
    bad_release, bad_id = int(answer["release"]), int(answer["id"])
    calls = 1
    port: int | None = None
    cid = ""
    rb_id: int | None = None
    rolled_back = succeeded = None
    first_fail: float | None = None
    a_answers: float | None = None  # first good probe after the last failure
    failed_probes = 0
    next_api = 0.0
    while True:
        now = watch()
        if now > timeout:
            raise RuntimeError(
                f"auto rollback of deployment {bad_id} ({order}): not done within {timeout}s"
                f"\n{dev.tail()}"
            )
        if now >= next_api:
            next_api = now + api_poll
            _, app = api.call("GET", f"/v1/apps/{APP_AUTO}")
            calls += 1
            found = [(c, p) for c, p in running(app, host, release_a) if p]
            cid, port = found[0] if found else ("", None)
            if rolled_back is None:
                _, dep = api.call("GET", f"/v1/deployments/{bad_id}")
                calls += 1
                if dep["status"] == "rolled_back":
                    rolled_back = watch()
                elif dep["status"] in TERMINAL:
                    raise RuntimeError(f"deployment {bad_id} ended {dep['status']}: {dep}")
            elif rb_id is None:
                _, listing = api.call("GET", f"/v1/deployments?app={APP_AUTO}")
                calls += 1
                rb_id = next(
                    (int(d["id"]) for d in listing["deployments"] if d["rollback_of"] == bad_id),
                    None,
                )
            if rb_id is not None and succeeded is None:
                _, dep = api.call("GET", f"/v1/deployments/{rb_id}")
                calls += 1
                if dep["status"] == "succeeded":
                    succeeded = watch()
                elif dep["status"] in TERMINAL:
                    raise RuntimeError(f"rollback {rb_id} ended {dep['status']}: {dep}")
        ok = port is not None and get_text(port, timeout=0.5) == want
        t = watch()
        if ok:
            if a_answers is None:
                a_answers = t
        else:
            failed_probes += 1
            first_fail = t if first_fail is None else first_fail
            a_answers = None
        if succeeded is not None and a_answers is not None:
            break
        time.sleep(poll)
    assert rolled_back is not None and rb_id is not None
    a_down = a_answers - first_fail if first_fail is not None else 0.0
    return AutoRun(
        order,
        bad_release,
        bad_id,
        rb_id,
        post_wall,
        accepted,
        rolled_back,
        succeeded,
        a_answers,
        a_down,
        failed_probes,
        cid == original,
        calls,
    )


# ---- dev log phases -----------------------------------------------------------------------


def _window(
    events: list[tuple[float, str]], start: float, length: float
) -> list[tuple[float, str]]:
    """The log lines of one run, timed from its POST: from just before the POST until just
    after the bench saw the run end (the next run starts only after a settle pause)."""
    return [(t - start, m) for t, m in events if start - 0.001 <= t <= start + length + 0.05]


def _first(after: list[tuple[float, str]], needle: str) -> float | None:
    """The first line containing `needle` not followed by a digit (release=1 is not 12)."""
    pattern = re.compile(re.escape(needle) + r"(?!\d)")
    return next((t for t, m in after if pattern.search(m)), None)


def warm_phases(dev: DevServer, runs: list[RollbackRun], other: dict[int, int]) -> None:
    """Line each rollback up with the dev log: agent took the desired state, its `docker
    start` of the retained container returned, its stop of the other release returned, the
    controller finished the deployment."""
    events = dev.log_events()
    host = dev.host_name
    for run in runs:
        after = _window(events, run.post_wall, run.succeeded)
        prefix = f"host={host} app={APP_WARM} release="
        for key, value in (
            ("agent_got_desired_state", _first(after, f"desired state host={host} ")),
            ("agent_start_returned", _first(after, f"start {prefix}{run.target}")),
            ("agent_stop_other_returned", _first(after, f"stop {prefix}{other[run.target]}")),
            (
                "server_deployment_finished",
                _first(after, f"deployment finished app={APP_WARM} deployment={run.deployment} "),
            ),
        ):
            if value is not None:
                run.phases[key] = value


def auto_phases(dev: DevServer, runs: list[AutoRun], release_a: int) -> None:
    events = dev.log_events()
    host = dev.host_name
    for run in runs:
        after = _window(events, run.post_wall, run.done)
        prefix = f"host={host} app={APP_AUTO} release="
        bad = run.bad_release
        for key, value in (
            ("agent_run_bad_returned", _first(after, f"run {prefix}{bad}")),
            ("agent_stop_a_returned", _first(after, f"stop {prefix}{release_a}")),
            (
                "server_auto_rollback",
                _first(after, f"auto rollback app={APP_AUTO} deployment={run.bad_deployment} "),
            ),
            ("agent_start_a_returned", _first(after, f"start {prefix}{release_a}")),
            ("agent_run_a_returned", _first(after, f"run {prefix}{release_a}")),
            ("agent_stop_bad_returned", _first(after, f"stop {prefix}{bad}")),
            (
                "server_rollback_finished",
                _first(
                    after,
                    f"deployment finished app={APP_AUTO} deployment={run.rollback_deployment} ",
                ),
            ),
        ):
            if value is not None:
                run.phases[key] = value


# ---- cleanup ------------------------------------------------------------------------------


def cleanup(client: docker.DockerClient, host: str, floor_ids: list[str]) -> None:
    """Remove what this benchmark created: the dev host's containers (its host name is
    random, so the label is ours alone) and the floor containers, by id."""
    for c in client.containers.list(all=True, filters={"label": f"flotilla.host={host}"}):
        try:
            c.remove(force=True)
        except docker.errors.APIError as exc:
            log(f"could not remove {(c.id or '')[:12]}: {exc}")
    for cid in floor_ids:
        try:
            client.api.remove_container(cid, force=True)
        except docker.errors.APIError as exc:
            log(f"could not remove floor container {cid[:12]}: {exc}")


# ---- the benchmark ------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs: int = args.runs
    auto_runs: int = args.auto_runs if args.auto_runs is not None else runs
    orders = [o.strip() for o in args.auto_orders.split(",") if o.strip()]
    for o in orders:
        if o not in ORDERS:
            raise SystemExit(f"--auto-orders: unknown order {o!r} (known: {', '.join(ORDERS)})")
    with docker_engine() as engine:
        client = docker.DockerClient(base_url=engine.url, timeout=120)
        host = f"bench-{uuid.uuid4().hex[:6]}"
        dev: DevServer | None = None
        floor_ids: list[str] = []
        try:
            docker_version = str(client.version()["Version"])
            log(f"building {IMAGE_A}, {IMAGE_B}, {IMAGE_BAD} on {engine.url}")
            build_image(IMAGE_A, TEXT[IMAGE_A], engine.url)
            build_image(IMAGE_B, TEXT[IMAGE_B], engine.url)
            build_image_variant(IMAGE_BAD, TEXT[IMAGE_BAD], engine.url, "--no-health")

            # The floor's container: like the agent's (init, 127.0.0.1::80), started once,
            # stopped, then started and stopped again in every run.
            api = client.api
            created = api.create_container(
                IMAGE_A,
                ports=[80],
                labels={"flotilla-bench": host},
                host_config=api.create_host_config(port_bindings={80: ("127.0.0.1",)}, init=True),
            )
            floor_cid = str(created["Id"])
            floor_ids.append(floor_cid)
            floor_once(api, floor_cid, args.poll, args.timeout)  # warm-up, not counted

            dev = DevServer(engine.url, host)
            dev.wait_ready()
            log(f"flotilla dev up on 127.0.0.1:{dev.port} (host {host}, data {dev.data_dir})")

            # ---- 1 and 2: warm manual rollback, interleaved with the floor
            dep_a = deploy(dev, APP_WARM, {"image": IMAGE_A, "ports": PORTS}, args.timeout)
            rel_a = int(dep_a["release"])
            settle(client, host, APP_WARM)
            (orig_a,) = instance_ids(dev.api, APP_WARM, host, rel_a)
            dep_b = deploy(dev, APP_WARM, {"image": IMAGE_B, "ports": PORTS}, args.timeout)
            rel_b = int(dep_b["release"])
            settle(client, host, APP_WARM)
            (orig_b,) = instance_ids(dev.api, APP_WARM, host, rel_b)
            original = {rel_a: orig_a, rel_b: orig_b}
            text = {rel_a: TEXT[IMAGE_A], rel_b: TEXT[IMAGE_B]}
            other = {rel_a: rel_b, rel_b: rel_a}

            def roll(target: int) -> RollbackRun:
                assert dev is not None
                r = rollback_once(
                    dev,
                    target,
                    text[target],
                    original[target],
                    args.poll,
                    args.api_poll,
                    args.timeout,
                )
                settle(client, host, APP_WARM)
                return r

            # warm-up, not counted: one rollback to A and back to B
            warm_first = [roll(rel_a), roll(rel_b)]
            log(
                f"warm-up: rollback to A answered after {warm_first[0].answered * 1000:.0f} ms "
                f"(same container: {warm_first[0].same_container})"
            )
            floors: list[FloorRun] = []
            backs: list[RollbackRun] = []
            forwards: list[RollbackRun] = []
            for i in range(runs):
                order = ("floor", "flotilla") if i % 2 == 0 else ("flotilla", "floor")
                for kind in order:
                    if kind == "floor":
                        floors.append(floor_once(api, floor_cid, args.poll, args.timeout))
                    else:
                        backs.append(roll(rel_a))
                        forwards.append(roll(rel_b))
                    time.sleep(0.2)
                log(
                    f"run {i + 1}/{runs}: docker start {floors[-1].answered * 1000:.0f} ms, "
                    f"warm rollback {backs[-1].answered * 1000:.0f} ms "
                    f"(succeeded {backs[-1].succeeded * 1000:.0f} ms, "
                    f"same container {backs[-1].same_container}), "
                    f"roll forward {forwards[-1].answered * 1000:.0f} ms"
                )

            # ---- 3: automatic rollback
            autos: dict[str, list[AutoRun]] = {}
            dep = deploy(
                dev,
                APP_AUTO,
                {"image": IMAGE_A, "ports": PORTS, "health": HEALTH},
                args.timeout,
            )
            auto_a = int(dep["release"])
            settle(client, host, APP_AUTO)
            for order in orders:
                autos[order] = []
                for i in range(auto_runs):
                    (before,) = instance_ids(dev.api, APP_AUTO, host, auto_a)
                    r = auto_once(
                        dev, auto_a, before, order, args.poll, args.api_poll, args.timeout
                    )
                    settle(client, host, APP_AUTO)
                    autos[order].append(r)
                    log(
                        f"auto {order} {i + 1}/{auto_runs}: bad deploy rolled_back "
                        f"{r.bad_rolled_back * 1000:.0f} ms, rollback succeeded "
                        f"{r.rollback_succeeded * 1000:.0f} ms, A answers "
                        f"{r.a_answers * 1000:.0f} ms (down {r.a_down * 1000:.0f} ms)"
                    )
                    time.sleep(0.2)
            warm_phases(dev, [*warm_first, *backs, *forwards], other)
            for order_runs in autos.values():
                auto_phases(dev, order_runs, auto_a)
        finally:
            if dev is not None:
                dev.stop()
            cleanup(client, host, floor_ids)
            client.close()
        assert dev is not None
        dev_command = dev.command
        if args.keep_data:
            log(f"kept flotilla dev's data dir and log: {dev.log_path}")
        else:
            dev.remove_data_dir()
    return _result(args, engine, docker_version, dev_command, floors, backs, forwards, autos)


# ---- the result ---------------------------------------------------------------------------


def _med(values: list[float]) -> float:
    return statistics.median(values)


def _result(
    args: argparse.Namespace,
    engine: EngineInfo,
    docker_version: str,
    dev_command: str,
    floors: list[FloorRun],
    backs: list[RollbackRun],
    forwards: list[RollbackRun],
    autos: dict[str, list[AutoRun]],
) -> dict[str, Any]:
    floor = [f.answered for f in floors]
    warm = [b.answered for b in backs]
    metrics = [
        metric("floor_answered", "floor: `docker start` until its port answers", floor),
        metric(
            "warm_answered",
            "**warm rollback: POST until release A's restarted container answers**",
            warm,
        ),
        metric(
            "ratio_per_pair",
            "ratio warm rollback/floor, per interleaved pair",
            [w / f for w, f in zip(warm, floor, strict=True)],
            "x",
        ),
        metric(
            "floor_start_returned",
            "floor: `docker start` returned",
            [f.start_returned for f in floors],
        ),
        metric("warm_accepted", "warm rollback: POST answered 202", [b.accepted for b in backs]),
        metric(
            "warm_visible",
            "warm rollback: GET /v1/apps shows A running with its port",
            [b.visible for b in backs],
        ),
        metric(
            "warm_succeeded",
            "warm rollback: GET /v1/deployments/{id} says succeeded",
            [b.succeeded for b in backs],
        ),
    ]
    for key, label in (
        ("agent_got_desired_state", "warm rollback (dev log): agent took the new desired state"),
        ("agent_start_returned", "warm rollback (dev log): agent's `docker start` returned"),
        (
            "agent_stop_other_returned",
            "warm rollback (dev log): agent's stop of release B returned",
        ),
        ("server_deployment_finished", "warm rollback (dev log): controller marked it succeeded"),
    ):
        samples = [b.phases[key] for b in backs if key in b.phases]
        if samples:
            metrics.append(metric(key, label, samples))
    metrics.append(
        metric(
            "forward_answered",
            "roll forward (rollback to B, its retained container): POST until B answers",
            [f.answered for f in forwards],
        )
    )
    for order, runs in autos.items():
        if not runs:
            continue
        k = order.replace("-", "_")
        metrics += [
            metric(
                f"auto_{k}_done",
                f"**auto rollback ({order}): POST of the failing release until A answers "
                "and the rollback succeeded**",
                [r.done for r in runs],
            ),
            metric(
                f"auto_{k}_rolled_back",
                f"auto rollback ({order}): failing deployment reports rolled_back",
                [r.bad_rolled_back for r in runs],
            ),
            metric(
                f"auto_{k}_succeeded",
                f"auto rollback ({order}): rollback deployment reports succeeded",
                [r.rollback_succeeded for r in runs],
            ),
            metric(
                f"auto_{k}_a_answers",
                f"auto rollback ({order}): A answers (after its outage, if any)",
                [r.a_answers for r in runs],
            ),
            metric(
                f"auto_{k}_a_down",
                f"auto rollback ({order}): A not answering (first failed probe to answer)",
                [r.a_down for r in runs],
            ),
        ]
        for key, label in (
            ("agent_run_bad_returned", "agent's create+start of the failing release returned"),
            ("agent_stop_a_returned", "agent's stop of A returned"),
            ("server_auto_rollback", "controller started the automatic rollback"),
            ("agent_start_a_returned", "agent's `docker start` of A's container returned"),
            ("agent_run_a_returned", "agent's create+start of a new container for A returned"),
            ("agent_stop_bad_returned", "agent's stop of the failing release returned"),
        ):
            samples = [r.phases[key] for r in runs if key in r.phases]
            if samples:
                metrics.append(
                    metric(f"auto_{k}_{key}", f"auto rollback ({order}, dev log): {label}", samples)
                )
    same = sum(b.same_container for b in backs)
    same_fwd = sum(f.same_container for f in forwards)
    med_floor, med_warm = _med(floor), _med(warm)
    notes = [
        f"Median ratio of medians warm rollback/floor: **{med_warm / med_floor:.2f}x** "
        f"({med_warm * 1000:.0f} ms vs {med_floor * 1000:.0f} ms). Release A's instance after "
        f"the rollback was its original container (restarted, not recreated) in {same}/"
        f"{len(backs)} rollbacks (roll forward to B: {same_fwd}/{len(forwards)}).",
    ]
    for order, runs in autos.items():
        if runs:
            kept = sum(r.same_container for r in runs)
            failed = sum(r.a_failed_probes > 0 for r in runs)
            recreated = sum("agent_run_a_returned" in r.phases for r in runs)
            notes.append(
                f"Auto rollback, {order}: {len(runs)} runs; A's probe failed at least once in "
                f"{failed} of them; A's instance at the end was its container from before "
                f"the run in {kept}/{len(runs)}."
                + (
                    f" In {recreated} runs the agent had removed A's container while it "
                    "deployed the failing release (it retains the newest old releases by "
                    "release number, and the failing releases of earlier runs are newer than "
                    "A), so the rollback created a new container instead of restarting it."
                    if recreated
                    else ""
                )
            )
    notes += [
        "",
        "Every time is measured from just before the call (the POST, or `docker start`); "
        "'dev log' rows line the bench's wall clock up with `flotilla dev`'s log timestamps "
        "(millisecond resolution). Warm rollbacks go to release A whose container the agent "
        "retained (stopped) when B replaced it; each is followed by an (also timed) rollback "
        "to B, so only two releases ever exist and both stay retained. The floor's container "
        "is created like the agent's (`--init -p 127.0.0.1::80`), and started and stopped "
        "again in every run. The automatic rollback's failing release has an image without "
        "/health (404) and the same HTTP health check as A (interval 0.5 s, retries 3), "
        "strategy healthy_deadline 5 s; 'A answers' is the first answer of A's published "
        "port (re-read from GET /v1/apps every API poll) after its last failed probe. "
        f"The bench polls the API every {args.api_poll * 1000:.0f} ms and ports every "
        f"{args.poll * 1000:.0f} ms.",
    ]
    notes += _breakdown(backs, floors)
    return {
        "benchmark": NAME,
        "title": TITLE,
        "description": (
            "A manual rollback to the previous release on one host (`flotilla dev`: server + "
            "agent in one process, SQLite): the agent restarts the retained container, so "
            "the floor is `docker start` of a stopped container of the same image until its "
            "port answers (interleaved, alternating which goes first). Then the automatic "
            "rollback after a release fails its health check."
        ),
        "date": now_utc(),
        "command": invocation(),
        "machine": machine(docker_version),
        "parameters": {
            "runs": f"{len(backs)} warm rollbacks and floor runs; automatic rollbacks: "
            + ", ".join(f"{len(r)} {o}" for o, r in autos.items()),
            "engine": f"{engine.url} ({'private, started by the bench' if engine.private else 'shared'})",
            "flotilla process": f"`{dev_command}` (a subprocess, separate from the load generator)",
            "poll intervals": f"port {args.poll * 1000:.0f} ms, API {args.api_poll * 1000:.0f} ms",
        },
        "commands": {
            "floor": (
                "`docker start CID` of a stopped `docker create --init -p 127.0.0.1::80 "
                "flotilla-bench/rb:a` (Docker SDK low-level start), `docker port CID 80`, then "
                f"GET / every {args.poll * 1000:.0f} ms until it answers `a`; `docker stop` "
                "untimed; the container is removed by id at the end"
            ),
            "warm rollback": (
                '`POST /v1/apps/rb/rollback {"release": A}` while release B runs, then GET '
                "/v1/apps/rb until release A runs with a published port, GET / on it until "
                "`a`, and GET /v1/deployments/{id} until succeeded"
            ),
            "auto rollback": (
                '`POST /v1/apps/rb-auto/deployments {"image": "flotilla-bench/rb:bad", "ports": '
                '[{"container": 80}], "health": {"type": "http", "port": 80, "path": '
                '"/health", "interval": 0.5, "retries": 3}, "strategy": {"healthy_deadline": 5'
                '[, "order": "stop-first"]}}` while release A (healthy) runs; then the failing '
                "deployment until rolled_back, the automatic rollback (rollback_of it) until "
                "succeeded, and A's port until it answers `a`"
            ),
        },
        "metrics": metrics,
        "notes": notes,
        "raw": {
            "floor": [f.__dict__ for f in floors],
            "warm_rollback": [b.__dict__ for b in backs],
            "roll_forward": [f.__dict__ for f in forwards],
            "auto_rollback": {o: [r.__dict__ for r in rs] for o, rs in autos.items()},
        },
    }


def _breakdown(backs: list[RollbackRun], floors: list[FloorRun]) -> list[str]:
    """Where the warm rollback's time goes, from the medians of the phases."""

    def med(key: str) -> float | None:
        values = [b.phases[key] for b in backs if key in b.phases]
        return _med(values) if len(values) == len(backs) else None

    desired, started = med("agent_got_desired_state"), med("agent_start_returned")
    stopped, finished = med("agent_stop_other_returned"), med("server_deployment_finished")
    if desired is None or started is None:
        return []
    visible = _med([b.visible for b in backs])
    answered = _med([b.answered for b in backs])
    succeeded = _med([b.succeeded for b in backs])
    f_start = _med([f.start_returned for f in floors])
    f_answer = _med([f.answered for f in floors])
    ms = 1000
    lines = [
        "",
        "Where the warm rollback's time goes (medians, milestones from POST):",
        "",
        f"1. POST to the agent holding the new desired state: {desired * ms:.0f} ms.",
        f"2. Agent's `docker start` of the retained container returned: "
        f"+{(started - desired) * ms:.0f} ms (the floor's `docker start` takes "
        f"{f_start * ms:.0f} ms).",
        f"3. Instance visible in GET /v1/apps (status report, its database write, the bench's "
        f"poll): +{(visible - started) * ms:.0f} ms.",
        f"4. Container answering on its port: +{(answered - visible) * ms:.0f} ms (the floor "
        f"answers {(f_answer - f_start) * ms:.0f} ms after its start returned).",
    ]
    if stopped is not None and finished is not None:
        lines.append(
            f"5. Deployment `succeeded` at {succeeded * ms:.0f} ms: the agent's stop of "
            f"release B returned at {stopped * ms:.0f} ms, the controller finished at "
            f"{finished * ms:.0f} ms (without a health check the agent calls an instance "
            "ready after it kept running for 1 s, and retires B only then)."
        )
    return lines
