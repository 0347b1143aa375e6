"""Agent footprint: RSS and CPU of a real `flotilla agent` managing 20 containers.

A real `flotilla server` (SQLite) and a real `flotilla agent` subprocess on the real Docker
Engine (DOCKER_HOST, or a private one): 20 replicas of a test image with ephemeral ports.
Measured: the agent's RSS and CPU while idle, then its RSS while it runs 1,000 more
reconcile passes. The agent reconciles on every container event of its host (and every
5 s, and on every push); the CLI has no poll-interval flag, so the passes are driven by
harmless `docker exec <container> true` calls on its containers (exec events wake the loop),
and counted from the agent's own /metrics (flotilla_agent_reconcile_duration_seconds_count).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import docker
import docker.errors

from bench.common import (
    Stopwatch,
    build_image,
    docker_engine,
    free_port,
    invocation,
    log,
    machine,
    now_utc,
    summary,
)
from bench.fanout import Child, Server, cpu_seconds, register_hosts, rss_kib, settled_rss

NAME = "agent-footprint"
RESULT_FILE = "agent_footprint"
TITLE = "Agent footprint: RSS and CPU of `flotilla agent` with 20 containers"
APP = "footprint"
IMAGE = "flotilla-bench/web:v1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replicas", type=int, default=20)
    parser.add_argument("--passes", type=int, default=1000, help="reconcile passes to drive")
    parser.add_argument("--idle-windows", type=int, default=3, help="idle CPU windows")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="per idle window")


def reconcile_count(metrics_port: int) -> int:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith("flotilla_agent_reconcile_duration_seconds_count"):
            return int(float(line.split()[-1]))
    return 0


def wait_deployment(server: Server, dep_id: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, dep = server.api.call("GET", f"/v1/deployments/{dep_id}")
        if dep["status"] not in ("pending", "running", "paused"):
            return str(dep["status"])
        time.sleep(0.2)
    return "timeout"


def run(args: argparse.Namespace) -> dict[str, Any]:
    host = f"bench-fp-{uuid.uuid4().hex[:6]}"
    out: dict[str, Any] = {"host": host}
    with docker_engine() as engine, contextlib.ExitStack() as stack:
        client = docker.DockerClient(base_url=engine.url, timeout=120)
        stack.callback(client.close)
        stack.callback(_cleanup, client, host)
        docker_version = str(client.version()["Version"])
        build_image(IMAGE, "flotilla-bench web v1", engine.url)
        work = Path(tempfile.mkdtemp(prefix="flt-footprint."))
        url = f"sqlite+aiosqlite:///{work / 'flotilla.db'}"
        (token,) = register_hosts(url, [host])
        server = Server(work)
        stack.callback(server.stop)
        server.wait_ready()
        metrics_port = free_port()
        agent_args = [
            sys.executable, "-m", "server.cli.main", "agent", "--server", server.url,
            "--name", host, "--token", token, "--docker-host", engine.url,
            "--metrics-listen", f"127.0.0.1:{metrics_port}",
        ]  # fmt: skip
        agent = Child(agent_args, work / "agent.log")
        stack.callback(agent.stop)
        out["agent_command"] = "flotilla " + " ".join(agent_args[3:]).replace(token, "TOKEN")
        time.sleep(2)
        out["rss_empty_kib"] = settled_rss(agent.pid)
        body = {"image": IMAGE, "replicas": args.replicas, "ports": [{"container": 80}]}
        status, answer = server.api.call("POST", f"/v1/apps/{APP}/deployments", body)
        if status != 202:
            raise RuntimeError(f"POST answered {status}: {answer}")
        watch = Stopwatch()
        final = wait_deployment(server, int(answer["id"]), 300)
        out["deploy_status"], out["deploy_seconds"] = final, watch()
        labels = [f"flotilla.host={host}", f"flotilla.app={APP}"]
        containers = client.containers.list(filters={"label": labels})
        out["running_containers"] = len(containers)
        log(f"agent-footprint: deploy {final} in {watch():.1f}s, {len(containers)} running")
        if final != "succeeded" or len(containers) != args.replicas:
            raise RuntimeError(f"deploy {final}, {len(containers)} running:\n{agent.tail()}")
        time.sleep(5)
        cpu, rss = [], []
        passes0 = reconcile_count(metrics_port)
        for _ in range(args.idle_windows):
            c0, w = cpu_seconds(agent.pid), Stopwatch()
            time.sleep(args.idle_seconds)
            cpu.append(100 * (cpu_seconds(agent.pid) - c0) / w())
            rss.append(float(rss_kib(agent.pid)))
        idle_passes = reconcile_count(metrics_port) - passes0
        out.update(idle_cpu_pct=cpu, idle_rss_kib=rss, idle_passes=idle_passes)
        log(f"agent-footprint: idle CPU {cpu} %, RSS {[r / 1024 for r in rss]} MiB")
        # 1,000 reconcile passes, woken by exec events on the agent's own containers
        start = reconcile_count(metrics_port)
        c0, w = cpu_seconds(agent.pid), Stopwatch()
        execs, trail = 0, []
        api = client.api
        while (done := reconcile_count(metrics_port) - start) < args.passes and w() < 900:
            cid = containers[execs % len(containers)].id
            exec_id = api.exec_create(cid, ["true"])["Id"]
            api.exec_start(exec_id)
            execs += 1
            if execs % 100 == 0:
                trail.append((done, float(rss_kib(agent.pid))))
        out["passes"] = reconcile_count(metrics_port) - start
        out["pass_seconds"] = w()
        out["pass_cpu_pct"] = 100 * (cpu_seconds(agent.pid) - c0) / w()
        out["execs"] = execs
        out["rss_trail_kib"] = trail
        time.sleep(3)
        out["rss_after_kib"] = settled_rss(agent.pid)
        log(
            f"agent-footprint: {out['passes']} passes in {out['pass_seconds']:.0f}s "
            f"({execs} execs); RSS after {out['rss_after_kib'] / 1024:.1f} MiB"
        )
    shutil.rmtree(work, ignore_errors=True)  # kept when the run failed: its logs are there
    return _result(args, out, docker_version)


def _cleanup(client: docker.DockerClient, host: str) -> None:
    for c in client.containers.list(all=True, filters={"label": f"flotilla.host={host}"}):
        with contextlib.suppress(docker.errors.APIError):
            c.remove(force=True)


def _result(args: argparse.Namespace, out: dict[str, Any], docker_version: str) -> dict[str, Any]:
    mib = 1 / 1024
    metrics = [
        {"key": "idle_rss", "label": f"agent RSS, idle with {args.replicas} containers",
         "unit": "MiB", **summary([r * mib for r in out["idle_rss_kib"]])},
        {"key": "idle_cpu", "label": "agent CPU, idle (% of a core, per window)",
         "unit": "%", **summary(out["idle_cpu_pct"])},
        {"key": "rss_after_passes", "label": f"agent RSS after {out['passes']} reconcile passes",
         "unit": "MiB", **summary([out["rss_after_kib"] * mib])},
    ]  # fmt: skip
    growth = (out["rss_after_kib"] - statistics.median(out["idle_rss_kib"])) * mib
    notes = [
        f"Agent RSS with no containers yet: {out['rss_empty_kib'] * mib:.1f} MiB. Deploy of "
        f"{args.replicas} replicas: {out['deploy_status']} in {out['deploy_seconds']:.1f} s. "
        f"{out['idle_passes']} reconcile passes happened during the idle windows "
        f"({args.idle_windows} x {args.idle_seconds:.0f} s).",
        f"Reconcile passes: {out['passes']} in {out['pass_seconds']:.0f} s, woken by "
        f"{out['execs']} `docker exec CONTAINER true` calls (the CLI has no poll-interval flag; "
        "exec events are container events of the host, which wake the loop); agent CPU "
        f"meanwhile {out['pass_cpu_pct']:.0f}% of a core. RSS growth over the passes: "
        f"{growth:+.1f} MiB; RSS every 100 execs (passes, MiB): "
        + ", ".join(f"({p}, {r * mib:.1f})" for p, r in out["rss_trail_kib"]),
    ]
    return {
        "benchmark": NAME,
        "title": TITLE,
        "description": (
            "A real `flotilla agent` process on the real Docker Engine, managing "
            f"{args.replicas} containers of one app (deployed through a real `flotilla "
            "server`): RSS (/proc/PID/status VmRSS) and CPU (/proc/PID/stat) idle, and RSS "
            f"after {args.passes} reconcile passes."
        ),
        "date": now_utc(),
        "command": invocation(),
        "machine": machine(docker_version),
        "parameters": {
            "replicas": args.replicas,
            "agent": out["agent_command"],
            "idle": f"{args.idle_windows} windows of {args.idle_seconds:.0f} s",
        },
        "metrics": metrics,
        "notes": notes,
        "raw": out,
    }
