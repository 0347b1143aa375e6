"""Soak: random faults of issue 20 against a live fleet, for a configurable time.

`python -m bench soak --minutes N [--seed S]` (`make soak`) runs scenarios in a random
order (each kind once before any repeats) from the fault suite's set (tests/e2e/fault_scenarios.py: server kill -9 at three points of a
rollout, agent kill and restart, agent SIGSTOP/SIGCONT, a Docker Engine and a PostgreSQL
restart mid-deploy, SIGTERM with a waiting client, racing deploys and rollbacks), each on a
fresh server and 3 agents (subprocesses), and checks the same invariants after every fault
(tests/e2e/faults.verify). A scenario that breaks an invariant is recorded with its first
line and the soak goes on. The figures go to bench/results/soak.json and bench/RESULTS.md.

Engine: DOCKER_HOST, or a private one (bench.common.docker_engine); the Engine and
PostgreSQL restarts use private ones of their own. Kills of the server run on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import docker

from bench.common import docker_engine, invocation, log, machine, metric, now_utc
from tests.e2e import fault_scenarios
from tests.e2e.fault_scenarios import SCENARIOS, Setting
from tests.e2e.faults import CONVERGED_WITHIN, ENDED_WITHIN, Figure, table

NAME = "soak"
RESULT_FILE = "soak"
TITLE = "Soak: random faults against a live server, 3 agents and a real Docker Engine"
IMAGES = ("flotilla-soak/web:v1", "flotilla-soak/web:v2", "flotilla-soak/web:v3")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The soak's options."""
    parser.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        help="how long to keep starting faults (default %(default)s); the last one finishes",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run random scenarios until --minutes passed; the result for bench/results/soak.json."""
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    random.seed(seed)  # the racing scenario shuffles its calls with the global generator
    figures: list[Figure] = []
    failures: list[tuple[str, str]] = []
    ran: collections.Counter[str] = collections.Counter()
    with docker_engine() as eng:
        client = docker.DockerClient(base_url=eng.url)
        docker_version = str(client.version()["Version"])
        client.close()
        fault_scenarios.build_images(eng.url, IMAGES)
        deadline = time.monotonic() + args.minutes * 60
        with tempfile.TemporaryDirectory(prefix="flt-soak.", dir="/tmp") as scratch:
            setting = Setting(Path(scratch), eng.url, IMAGES)
            bag: list[str] = []
            while time.monotonic() < deadline:
                if not bag:  # every kind once, in a random order, before any repeats
                    bag = sorted(SCENARIOS)
                    rng.shuffle(bag)
                name = bag.pop()
                ran[name] += 1
                log(f"soak: {name} (#{sum(ran.values())})")
                try:
                    figures += asyncio.run(SCENARIOS[name](setting))
                except AssertionError as exc:
                    first = (str(exc).splitlines() or ["(no message)"])[0][:300]
                    failures.append((name, first))
                    log(f"soak: {name} FAILED: {first}")
    print(table(figures))
    return _result(args, seed, docker_version, figures, failures, ran)


def _result(
    args: argparse.Namespace,
    seed: int,
    docker_version: str,
    figures: list[Figure],
    failures: list[tuple[str, str]],
    ran: collections.Counter[str],
) -> dict[str, Any]:
    by_kind: dict[str, list[float]] = collections.defaultdict(list)
    for f in figures:
        by_kind[f.scenario.split(" #")[0]].append(f.converge_s)
    metrics = [
        metric(f"converge_{i}", f"{kind}: time to converge after the fault", samples)
        for i, (kind, samples) in enumerate(sorted(by_kind.items()))
    ]
    if figures:
        all_s = [f.converge_s for f in figures]
        metrics.append(metric("converge_all", "**every fault: time to converge**", all_s))
    notes = [
        f"Scenarios run: {', '.join(f'{k} {n}' for k, n in sorted(ran.items()))}; faults "
        f"checked: {len(figures)}; scenarios that broke an invariant: {len(failures)}.",
    ]
    notes += [f"- FAILED {name}: {first}" for name, first in failures]
    return {
        "title": TITLE,
        "description": (
            "Random scenarios of the fault suite (tests/e2e/fault_scenarios.py), each on a "
            "fresh `flotilla server` and 3 `flotilla agent`s (subprocesses) on a real Docker "
            "Engine. After every fault: no acknowledged deployment lost, every deployment "
            f"ended within {ENDED_WITHIN:.0f} s, no release marked bad, no traceback, and the "
            "fleet converged to the last accepted desired state (one running instance per "
            f"replica of the current release, nothing else) within {CONVERGED_WITHIN:.0f} s. "
            "Time to converge is counted from the fault's end (a restart, SIGCONT, ...)."
        ),
        "date": now_utc(),
        "command": invocation(),
        "machine": machine(docker_version),
        "parameters": {"minutes": args.minutes, "seed": seed},
        "metrics": metrics,
        "notes": notes,
    }
