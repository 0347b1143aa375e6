"""Deploy latency: POST a deployment until the new container answers, next to `docker run`.

One host (`flotilla dev`: server and agent in one process, SQLite), one replica, an image
already present on the engine (no pull on either side). Floor and Flotilla runs alternate, and
which of the two goes first alternates too, so both share the machine's noise.

(Over 400 lines: one experiment read top to bottom, its processes, runs, milestones and
report; the shared parts live in bench/common.py.)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from agent.health import SETTLE_SECONDS
from bench.common import (
    ROOT,
    Api,
    EngineInfo,
    Stopwatch,
    build_image,
    docker_engine,
    free_port,
    get_text,
    invocation,
    log,
    machine,
    metric,
    now_utc,
)

NAME = "deploy-latency"
RESULT_FILE = "deploy_latency"
TITLE = "Deploy latency: POST to an answering container, next to `docker run`"
APP = "bench"
IMAGE_REPO = "flotilla-bench/web"
TERMINAL = {"failed", "rolled_back", "cancelled", "superseded"}

# `flotilla dev` log lines (format "%(asctime)s ...", millisecond resolution, local time).
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=10, help="measured runs (default %(default)s)")
    parser.add_argument(
        "--poll",
        type=float,
        default=0.010,
        help="seconds between probes of the container's port (default %(default)s)",
    )
    parser.add_argument(
        "--api-poll",
        type=float,
        default=0.015,
        help="seconds between GETs of the Flotilla API (default %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="give up on one run after this many seconds"
    )


def image(k: int) -> str:
    return f"{IMAGE_REPO}:v{k}"


def text_of(k: int) -> str:
    return f"flotilla-bench web v{k}"


# ---- the flotilla dev process -----------------------------------------------------------


class DevServer:
    """`flotilla dev` as a subprocess with its own data dir and port; stopped by its handle."""

    def __init__(self, docker_url: str, host_name: str) -> None:
        self.host_name = host_name
        self.data_dir = Path(tempfile.mkdtemp(prefix="flt-bench-dev."))
        self.port = free_port()
        self.log_path = self.data_dir / "dev.log"
        self._log = self.log_path.open("ab")
        args = [
            sys.executable,
            "-m",
            "server.cli.main",
            "dev",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--docker-host",
            docker_url,
            "--host-name",
            host_name,
        ]
        self.command = " ".join(["flotilla", *args[3:]])
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ)
        )
        self.api = Api(self.port)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """/readyz answers, admin.token exists, and the local agent is connected."""
        deadline = time.monotonic() + timeout
        token_file = self.data_dir / "admin.token"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"flotilla dev exited ({self.proc.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"flotilla dev not ready within {timeout}s:\n{self.tail()}")
            with contextlib.suppress(OSError):
                if self.api.call("GET", "/readyz")[0] == 200 and token_file.exists():
                    self.api.token = token_file.read_text().strip()
                    status, body = self.api.call("GET", "/v1/hosts")
                    hosts = body.get("hosts", []) if status == 200 else []
                    if any(
                        h["name"] == self.host_name and h["status"] == "connected" for h in hosts
                    ):
                        return
            time.sleep(0.1)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_events(self) -> list[tuple[float, str]]:
        """(wall-clock time, message) of every timestamped line of the dev log."""
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            m = _LOG_TIME.match(line)
            if m:
                stamp = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                events.append((stamp, line[m.end() :]))
        return events

    def stop(self) -> None:
        self.api.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                log("flotilla dev did not stop on SIGTERM within 20s; killing it")
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def remove_data_dir(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


# ---- one run of each kind -----------------------------------------------------------------


@dataclass
class FloorRun:
    image: str
    run_returned: float  # create + start returned
    answered: float  # GET / answered with the image's text


@dataclass
class FlotillaRun:
    image: str
    release: int
    deployment: int
    post_wall: float  # time.time() just before the POST, to line up with the dev log
    accepted: float  # POST answered 202
    visible: float  # GET /v1/apps/bench shows the release running with a published port
    answered: float  # GET / on that port answered with the image's text
    succeeded: float  # GET /v1/deployments/{id} says succeeded
    api_calls: int
    phases: dict[str, float] = field(default_factory=dict)


def floor_once(client: docker.DockerClient, k: int, poll: float, timeout: float) -> FloorRun:
    """`docker run -d -p 127.0.0.1::80 IMAGE` (create + start through the SDK's low-level API,
    then the published port as `docker port` reads it) until GET / answers."""
    api = client.api
    watch = Stopwatch()
    created = api.create_container(
        image(k),
        ports=[80],
        host_config=api.create_host_config(port_bindings={80: ("127.0.0.1",)}),
    )
    cid = str(created["Id"])
    try:
        api.start(cid)
        bindings = api.port(cid, 80)
        run_returned = watch()
        port = int(next(b["HostPort"] for b in bindings if b["HostIp"] == "127.0.0.1"))
        want = text_of(k)
        while get_text(port) != want:
            if watch() > timeout:
                raise RuntimeError(f"docker run of {image(k)}: no answer within {timeout}s")
            time.sleep(poll)
        answered = watch()
    finally:
        api.remove_container(cid, force=True)
    return FloorRun(image(k), run_returned, answered)


def _published_port(app: dict[str, Any], host: str, release: int) -> int | None:
    for h in app.get("hosts", []):
        if h["name"] != host:
            continue
        for inst in h["instances"]:
            if inst["release"] == release and inst["state"] == "running":
                for p in inst["ports"]:
                    if p["container"] == 80:
                        return int(p["host_port"])
    return None


def flotilla_once(
    dev: DevServer, k: int, poll: float, api_poll: float, timeout: float
) -> FlotillaRun:
    """POST a deployment of vK; poll the API for its port and the port for vK's text."""
    api = dev.api
    body = {"image": image(k), "ports": [{"container": 80}]}
    want = text_of(k)
    post_wall = time.time()
    watch = Stopwatch()
    status, answer = api.call("POST", f"/v1/apps/{APP}/deployments", body)
    accepted = watch()
    if status != 202:
        raise RuntimeError(f"POST deployment of {image(k)} answered {status}: {answer}")
    release, dep_id = int(answer["release"]), int(answer["id"])
    port: int | None = None
    visible = answered = succeeded = None
    calls = 1
    next_api = 0.0
    while answered is None or succeeded is None:
        now = watch()
        if now > timeout:
            raise RuntimeError(
                f"deployment {dep_id} of {image(k)}: not answering/succeeded within {timeout}s"
                f"\n{dev.tail()}"
            )
        if now >= next_api:
            next_api = now + api_poll
            if port is None:
                _, app = api.call("GET", f"/v1/apps/{APP}")
                calls += 1
                port = _published_port(app, dev.host_name, release)
                if port is not None:
                    visible = watch()
            if succeeded is None:
                _, dep = api.call("GET", f"/v1/deployments/{dep_id}")
                calls += 1
                if dep["status"] == "succeeded":
                    succeeded = watch()
                elif dep["status"] in TERMINAL:
                    raise RuntimeError(f"deployment {dep_id} ended {dep['status']}: {dep}")
        if port is not None and answered is None and get_text(port) == want:
            answered = watch()
        if answered is None or succeeded is None:
            time.sleep(poll)
    assert visible is not None
    return FlotillaRun(
        image(k), release, dep_id, post_wall, accepted, visible, answered, succeeded, calls
    )


def settle(client: docker.DockerClient, host: str, timeout: float = 30.0) -> None:
    """Untimed: wait until the agent has stopped the previous release (one running)."""
    deadline = time.monotonic() + timeout
    labels = [f"flotilla.host={host}", f"flotilla.app={APP}"]
    while time.monotonic() < deadline:
        if len(client.containers.list(filters={"label": labels})) <= 1:
            break
        time.sleep(0.05)
    time.sleep(0.3)


def add_phases(dev: DevServer, runs: list[FlotillaRun]) -> None:
    """Line each run up with the dev log (ms resolution): when the agent took the new desired
    state, when its create+start returned, when its stop of the old release returned, and when
    the controller finished the deployment."""
    events = dev.log_events()
    host = dev.host_name
    for run in runs:
        after = [(t - run.post_wall, msg) for t, msg in events if t >= run.post_wall - 0.001]
        desired = next((t for t, m in after if f"desired state host={host} " in m), None)
        ran = next(
            (t for t, m in after if f"run host={host} app={APP} release={run.release}" in m),
            None,
        )
        stopped = next(
            (t for t, m in after if f"stop host={host} app={APP} release={run.release - 1}" in m),
            None,
        )
        finished = next(
            (
                t
                for t, m in after
                if f"deployment finished app={APP} deployment={run.deployment} " in m
            ),
            None,
        )
        for key, value in (
            ("agent_got_desired_state", desired),
            ("agent_run_returned", ran),
            ("agent_stop_old_returned", stopped),
            ("server_deployment_finished", finished),
        ):
            if value is not None:
                run.phases[key] = value


def cleanup(client: docker.DockerClient, engine: EngineInfo, host: str) -> None:
    """Remove what the dev process created: its host's containers (and only the bench app's on
    a shared engine)."""
    labels = [f"flotilla.host={host}"] + ([] if engine.private else [f"flotilla.app={APP}"])
    for c in client.containers.list(all=True, filters={"label": labels}):
        with contextlib.suppress(docker.errors.APIError):
            c.remove(force=True)


# ---- the benchmark ------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs: int = args.runs
    with docker_engine() as engine:
        client = docker.DockerClient(base_url=engine.url, timeout=120)
        # A host name of its own: an agent named like another one on a shared engine would
        # stop that one's containers (they are "its" containers with no assignment).
        host = f"bench-{uuid.uuid4().hex[:6]}"
        dev: DevServer | None = None
        try:
            docker_version = str(client.version()["Version"])
            log(f"building {IMAGE_REPO}:v1..v{runs + 1} on {engine.url}")
            for k in range(1, runs + 2):
                build_image(image(k), text_of(k), engine.url)
            dev = DevServer(engine.url, host)
            dev.wait_ready()
            log(f"flotilla dev up on 127.0.0.1:{dev.port} (host {host}, data {dev.data_dir})")

            # Warm-up, not counted: the first deploy of the app (nothing to replace) and one
            # docker run, so both sides start with warm caches.
            floor_once(client, 1, args.poll, args.timeout)
            first = flotilla_once(dev, 1, args.poll, args.api_poll, args.timeout)
            settle(client, host)
            log(f"warm-up: first deploy answered after {first.answered * 1000:.0f} ms")

            floors: list[FloorRun] = []
            deploys: list[FlotillaRun] = []
            for i in range(runs):
                k = i + 2
                order = ("floor", "flotilla") if i % 2 == 0 else ("flotilla", "floor")
                for kind in order:
                    if kind == "floor":
                        floors.append(floor_once(client, k, args.poll, args.timeout))
                    else:
                        deploys.append(
                            flotilla_once(dev, k, args.poll, args.api_poll, args.timeout)
                        )
                        settle(client, host)
                    time.sleep(0.2)
                log(
                    f"run {i + 1}/{runs}: docker run {floors[-1].answered * 1000:.0f} ms, "
                    f"flotilla {deploys[-1].answered * 1000:.0f} ms "
                    f"(succeeded {deploys[-1].succeeded * 1000:.0f} ms)"
                )
            add_phases(dev, [first, *deploys])
        finally:
            if dev is not None:
                dev.stop()
            cleanup(client, engine, host)
            client.close()
        assert dev is not None
        dev_command = dev.command
        dev.remove_data_dir()
    return _result(args, engine, docker_version, dev_command, first, floors, deploys)


def _result(
    args: argparse.Namespace,
    engine: EngineInfo,
    docker_version: str,
    dev_command: str,
    first: FlotillaRun,
    floors: list[FloorRun],
    deploys: list[FlotillaRun],
) -> dict[str, Any]:
    floor = [f.answered for f in floors]
    flot = [d.answered for d in deploys]
    ratios = [d / f for d, f in zip(flot, floor, strict=True)]
    metrics = [
        metric("floor_answered", "floor: `docker run` until its port answers", floor),
        metric("flotilla_answered", "**flotilla: POST until the new container answers**", flot),
        metric("ratio_per_pair", "ratio flotilla/floor, per interleaved pair", ratios, "x"),
        metric(
            "floor_run_returned",
            "floor: create+start+port returned",
            [f.run_returned for f in floors],
        ),
        metric("flotilla_accepted", "flotilla: POST answered 202", [d.accepted for d in deploys]),
        metric(
            "flotilla_visible",
            "flotilla: GET /v1/apps shows the release running with its port",
            [d.visible for d in deploys],
        ),
        metric(
            "flotilla_succeeded",
            "flotilla: GET /v1/deployments/{id} says succeeded",
            [d.succeeded for d in deploys],
        ),
    ]
    for key, label in (
        ("agent_got_desired_state", "flotilla (dev log): agent took the new desired state"),
        ("agent_run_returned", "flotilla (dev log): agent's create+start returned"),
        ("agent_stop_old_returned", "flotilla (dev log): agent's stop of the old release returned"),
        ("server_deployment_finished", "flotilla (dev log): controller marked it succeeded"),
    ):
        samples = [d.phases[key] for d in deploys if key in d.phases]
        if samples:
            metrics.append(metric(key, label, samples))
    med_floor, med_flot = statistics.median(floor), statistics.median(flot)
    notes = [
        f"Median ratio of medians flotilla/floor: **{med_flot / med_floor:.2f}x** "
        f"({med_flot * 1000:.0f} ms vs {med_floor * 1000:.0f} ms). "
        f"First deploy of the app (warm-up, not counted): answered after "
        f"{first.answered * 1000:.0f} ms, succeeded after {first.succeeded * 1000:.0f} ms.",
        "",
        "Every time is measured from just before the call (the POST, or the create of "
        "`docker run`); 'dev log' rows line the bench's wall clock up with `flotilla dev`'s "
        "log timestamps (millisecond resolution). Measured deploys replace a running release "
        "(v2..vN+1 over v1..vN, start-first: ephemeral ports); the images are local, so "
        "neither side pulls. The bench polls the API every "
        f"{args.api_poll * 1000:.0f} ms (apps and deployment: about "
        f"{statistics.median([d.api_calls for d in deploys]):.0f} API calls per deploy) and "
        f"the port every {args.poll * 1000:.0f} ms. The API polling shares `flotilla dev`'s "
        "one process (event loop, GIL) with the agent, so it slows the agent a little: "
        "`--api-poll 0.2` shows how much (with coarser 'visible' times).",
    ]
    notes += _breakdown(deploys, floors)
    return {
        "benchmark": NAME,
        "title": TITLE,
        "description": (
            "The median time, over the runs, from POST /v1/apps/bench/deployments to the new "
            "container answering on one host (`flotilla dev`: server + agent in one process, "
            "SQLite), next to the time of a plain `docker run` of the same image until its "
            "port answers. Floor and Flotilla runs are interleaved, alternating which goes "
            "first."
        ),
        "date": now_utc(),
        "command": invocation(),
        "machine": machine(docker_version),
        "parameters": {
            "runs": len(deploys),
            "engine": f"{engine.url} ({'private, started by the bench' if engine.private else 'shared'})",
            "flotilla process": f"`{dev_command}` (a subprocess, separate from the load generator)",
            "poll intervals": f"port {args.poll * 1000:.0f} ms, API {args.api_poll * 1000:.0f} ms",
        },
        "commands": {
            "floor": (
                "`docker run -d -p 127.0.0.1::80 flotilla-bench/web:vK`, done through the Docker SDK's "
                "low-level API (create_container + start + port), then GET / every "
                f"{args.poll * 1000:.0f} ms until it answers vK's text; removed by id after"
            ),
            "flotilla": (
                '`POST /v1/apps/bench/deployments {"image": "flotilla-bench/web:vK", '
                '"ports": [{"container": 80}]}`, then GET /v1/apps/bench until release K runs '
                "with a published port, GET / on it until vK's text, and GET "
                "/v1/deployments/{id} until succeeded"
            ),
        },
        "metrics": metrics,
        "notes": notes,
        "raw": {
            "first_deploy": first.__dict__,
            "floor": [f.__dict__ for f in floors],
            "flotilla": [d.__dict__ for d in deploys],
        },
    }


def _breakdown(deploys: list[FlotillaRun], floors: list[FloorRun]) -> list[str]:
    """Where the time goes, from the medians of the phases (only those that were seen)."""

    def med(key: str) -> float | None:
        values = [d.phases[key] for d in deploys if key in d.phases]
        return statistics.median(values) if len(values) == len(deploys) else None

    desired, ran = med("agent_got_desired_state"), med("agent_run_returned")
    stopped, finished = med("agent_stop_old_returned"), med("server_deployment_finished")
    visible = statistics.median([d.visible for d in deploys])
    answered = statistics.median([d.answered for d in deploys])
    succeeded = statistics.median([d.succeeded for d in deploys])
    floor_run = statistics.median([f.run_returned for f in floors])
    floor_answer = statistics.median([f.answered for f in floors])
    if desired is None or ran is None:
        return []
    ms = 1000
    lines = [
        "",
        "Where the time goes (medians, milestones from POST):",
        "",
        f"1. POST to the agent holding the new desired state: {desired * ms:.0f} ms "
        "(POST's transaction, controller woken, targets and assignment written, push over "
        "the agent's WebSocket).",
        f"2. Agent's create+start of the container returned: +{(ran - desired) * ms:.0f} ms "
        f"(the floor's create+start+port takes {floor_run * ms:.0f} ms).",
        f"3. Instance visible in GET /v1/apps (status report, its database write, the bench's "
        f"poll): +{(visible - ran) * ms:.0f} ms.",
        f"4. Container answering on its port: +{(answered - visible) * ms:.0f} ms (the floor "
        f"answers {(floor_answer - floor_run) * ms:.0f} ms after its create+start returned).",
    ]
    if stopped is not None and finished is not None:
        lines.append(
            f"5. Deployment `succeeded` only at {succeeded * ms:.0f} ms: the agent's stop of the "
            f"old release returned at {stopped * ms:.0f} ms and the controller finished the "
            f"deployment at {finished * ms:.0f} ms. These deploys have no health check, so "
            f"the agent calls the new instance ready once it has run for {SETTLE_SECONDS:g} s "
            "(agent/health.py SETTLE_SECONDS); then it reports it and stops the old release "
            "(start-first), and the controller judges the host done once that stop is "
            "reported."
        )
    return lines
