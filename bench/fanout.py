"""Fan-out: one deployment to N simulated hosts, next to a bare WebSocket floor.

For each N: a real `flotilla server` subprocess (SQLite by default, PostgreSQL with
--database-url), N hosts registered in one transaction, and N real agents with a FAKE Docker
driver in another process (`bench.sim_agents`: real WebSocket clients and protocol; the
driver is an in-memory simulation used only for this benchmark, never evidence a feature
works). Then the same deploys again with a fresh server and N lean hosts
(`bench.lean_hosts`: the agents' messages without their work, see there why). Measured: POST of a deployment to all N (max_parallel N) until GET says succeeded;
the server's RSS per connected agent; the server's CPU while N agents idle (heartbeats).
The floor: `bench.transport_floor`, a bare aiohttp WebSocket server pushing a message of the
same size to N clients (another process) and waiting for one reply from each.

(Over 400 lines: one experiment read top to bottom, its processes, runs, profiles and
report; the shared parts live in bench/common.py, the simulated hosts in their own modules.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter as Tally
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from agent.codec import encode
from agent.health import SETTLE_SECONDS
from agent.protocol import Assignment, ContainerSpec, DesiredState, Instance, Prepull, Status
from bench.common import (
    ROOT,
    Api,
    Stopwatch,
    free_port,
    invocation,
    log,
    machine,
    now_utc,
)
from bench.common import (
    metric as common_metric,
)

NAME = "fanout"
RESULT_FILE = "fanout"
TITLE = "Fan-out: one deployment to N simulated hosts, next to a bare WebSocket floor"
APP = "fanout"
TERMINAL = {"failed", "rolled_back", "cancelled", "superseded"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
SIM_NOTE = (
    "The hosts are SIMULATED: real agent code (agent.runner.Agent) and real WebSocket clients "
    "(agent.client.Connection) speaking the real protocol, with bench/fake_driver.py, an "
    "in-memory fake Docker driver that answers at once. The fake driver is used only in this "
    "benchmark to stand in for thousands of hosts; it is never evidence that a feature works. "
    "Each N is measured twice: with those agents, all N in one process, where their summed "
    "work (about 225 us of CPU per agent per deploy) is on the critical path, as it is not "
    "on a real fleet, whose hosts work in parallel; and with lean hosts (bench/lean_hosts.py, "
    "the 'lean hosts' rows), which send the same messages at the cost of the floor's own "
    "clients, so that their time is the server's and the wire's."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hosts", default="100,1000", help="comma-separated N values")
    parser.add_argument("--runs", type=int, default=3, help="measured deploys per N")
    parser.add_argument(
        "--sims",
        default="agents,lean",
        help="simulated hosts, comma-separated: agents (real agent code, fake driver), lean "
        "(bench/lean_hosts.py: the agents' messages without their work)",
    )
    parser.add_argument("--floor-runs", type=int, default=5, help="floor pushes per N")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="idle CPU window")
    parser.add_argument("--database-url", default="", help="PostgreSQL admin URL (scratch DB)")
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="earlier releases that succeeded, of 20 apps no host runs now, in the database "
        "before the first deploy (a server with a past)",
    )
    parser.add_argument("--connect-rate", type=float, default=400.0, help="agent connects/s")
    parser.add_argument("--timeout", type=float, default=600.0, help="per deploy, seconds")
    parser.add_argument("--profile-dir", default="", help="py-spy profiles of the server here")
    parser.add_argument(
        "--profile-every-deploy",
        action="store_true",
        help="with --profile-dir, profile every counted deploy (one file each), not only the "
        "first: one deploy gives too few samples to split a server's time reliably",
    )
    parser.add_argument("--profile-rate", type=int, default=50, help="py-spy samples/s")
    parser.add_argument(
        "--profile-sims",
        action="store_true",
        help="with --profile-dir, profile the simulated agents too, with py-spy --nonblocking "
        "(pausing 10,000 agents to sample them once stalled a run)",
    )
    parser.add_argument(
        "--health",
        choices=("cmd", "none"),
        default="cmd",
        help="cmd: deploy with a command health check (the fake driver's exec answers at "
        "once), ready when it first passes; none: no check, so each agent waits out its "
        "1 s settle time (agent/health.py SETTLE_SECONDS)",
    )


# ---- processes ----------------------------------------------------------------------------


def raise_fd_limit() -> None:
    """Children inherit it: the server needs a descriptor per agent."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def settled_rss(pid: int, samples: int = 5, every: float = 0.4) -> float:
    values = []
    for _ in range(samples):
        values.append(rss_kib(pid))
        time.sleep(every)
    return float(statistics.median(values))


def idle_cpu(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """% of one core each process used over `seconds`."""
    before = {k: cpu_seconds(p) for k, p in pids.items()}
    watch = Stopwatch()
    time.sleep(seconds)
    wall = watch()
    return {k: 100.0 * (cpu_seconds(p) - before[k]) / wall for k, p in pids.items()}


class Child:
    """A subprocess with its output in a log file (or piped), stopped by its handle."""

    def __init__(
        self, args: list[str], log_path: Path, pipe: bool = False, env: dict[str, str] | None = None
    ) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            stdin=subprocess.PIPE if pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe else self._log,
            stderr=self._log,
            env=env or dict(os.environ),
            text=pipe,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        if pipe:
            assert self.proc.stdout is not None
            threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def readline(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(
                f"{self.args[2]}: no answer within {timeout}s:\n{self.tail()}"
            ) from None

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Profiler:
    """py-spy record of one process, raw (collapsed) stacks, stopped with SIGINT."""

    def __init__(self, pid: int, path: Path, nonblocking: bool = False, rate: int = 50) -> None:
        self.path = path
        exe = Path(sys.executable).parent / "py-spy"
        self.proc = subprocess.Popen(
            [
                str(exe),
                "record",
                "--gil",
                "--format",
                "raw",
                "-o",
                str(path),
                "--pid",
                str(pid),
                "-r",
                str(rate),
                # without pausing the process: its samples may be torn, but it keeps pace
                *(["--nonblocking"] if nonblocking else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> dict[str, Any]:
        time.sleep(0.5)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return top_frames(self.path)


def top_frames(path: Path, n: int = 12) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Tally[str] = Tally()
    incl: Tally[str] = Tally()
    total = 0
    if not path.exists():
        return {"samples": 0, "self": [], "inclusive": []}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        k = int(count)
        total += k
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].split("/")[-1] + ")"
                  for f in stack.split(";") if f]  # fmt: skip
        if frames:
            own[frames[-1]] += k
        for f in set(frames):
            incl[f] += k

    def pct(count: int) -> float:
        return round(100.0 * count / total, 1) if total else 0.0

    skip = ("<module>", "run_forever", "_run_once", "run (", "run_app", "main (", "_run (")
    return {
        "samples": total,
        "self": [(f, pct(c)) for f, c in own.most_common(n)],
        "inclusive": [(f, pct(c)) for f, c in incl.most_common(n * 4) if not f.startswith(skip)][
            :n
        ],
    }


# ---- databases and the server -----------------------------------------------------------


@contextlib.contextmanager
def scratch_database(admin_url: str, prefix: str) -> Iterator[str]:
    """CREATE DATABASE bench_...; yield its URL; DROP it after (PostgreSQL only)."""
    import asyncpg  # type: ignore[import-untyped]

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    base, _, _ = admin_url.rpartition("/")
    plain = admin_url.replace("postgresql+asyncpg://", "postgresql://")

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(plain)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def register_hosts(url: str, names: list[str], history: int = 0) -> list[str]:
    """Migrate, then add every host in ONE transaction (flotilla host add is one process
    each), and `history` earlier releases that succeeded (see --history)."""
    from server.db import migrate, store
    from server.db.session import create_engine, create_sessions

    migrate.upgrade(url)

    async def add() -> list[str]:
        engine = create_engine(url)
        try:
            async with create_sessions(engine).begin() as session:
                tokens = [await store.add_host(session, n, {"role": "sim"}) for n in names]
                await _seed_history(session, history)
                return tokens
        finally:
            await engine.dispose()

    return asyncio.run(add())


HISTORY_APPS = 20

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


async def _seed_history(session: AsyncSession, releases: int) -> None:
    """`releases` releases that succeeded, spread evenly over HISTORY_APPS apps that no host
    runs now (apps retired, or moved to other hosts): a server that has been deploying for
    a while. Written straight to the tables, as the hosts are."""
    from sqlalchemy import insert

    from server.db.models import App, Release
    from server.states import Outcome

    if releases <= 0:
        return
    per_app = -(-releases // HISTORY_APPS)
    for a in range(HISTORY_APPS):
        numbers = range(1, min(per_app, releases - a * per_app) + 1)
        if not numbers:
            break
        app = App(name=f"history-{a}", last_release=numbers[-1], current_release=numbers[-1])
        session.add(app)
        await session.flush()
        rows = [
            {"app_id": app.id, "number": n, "image": f"history/{a}:{n}", "outcome": Outcome.SUCCEEDED,
             "spec": {"image": f"history/{a}:{n}", "replicas": 1}, "created_by": "bench"}
            for n in numbers
        ]  # fmt: skip
        await session.execute(insert(Release), rows)


class Server:
    """`flotilla server` as a subprocess with its own data dir and port."""

    def __init__(self, data_dir: Path, database_url: str = "") -> None:
        self.data_dir = data_dir
        self.port = free_port()
        args = [sys.executable, "-m", "server.cli.main", "server", "--data-dir", str(data_dir)]
        args += ["--listen", f"127.0.0.1:{self.port}"]
        if database_url:
            args += ["--database-url", database_url]
        self.command = "flotilla " + " ".join(args[3:])
        self.child = Child(args, data_dir / "server.log")
        self.api = Api(self.port, timeout=120)

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        token_file = self.data_dir / "admin.token"
        while True:
            if self.child.proc.poll() is not None:
                raise RuntimeError(f"flotilla server exited:\n{self.child.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"flotilla server not ready:\n{self.child.tail()}")
            with contextlib.suppress(OSError):
                if self.api.call("GET", "/readyz")[0] == 200 and token_file.exists():
                    self.api.token = token_file.read_text().strip()
                    return
            time.sleep(0.1)

    def connected_hosts(self) -> int:
        status, body = self.api.call("GET", "/v1/hosts")
        if status != 200:
            return -1
        return sum(h["status"] == "connected" for h in body["hosts"])

    def stop(self) -> None:
        self.api.close()
        self.child.stop()


# ---- message sizes ------------------------------------------------------------------------


def flotilla_sizes() -> tuple[int, int]:
    """Bytes of a desired-state push (one app, release 2, pre-pull) and of a status report
    (new instance running, old one stopped), as agent.protocol encodes them."""
    spec = ContainerSpec(image="fanout/web:v2", labels=(("team", "bench"),))
    desired = DesiredState(
        host="sim-00001",
        generation=7,
        assignments=(Assignment(APP, 2, 2, 1, spec),),
        prepull=(Prepull(APP, 2, "fanout/web:v2"),),
    )
    inst = Instance("sim0000000000a1", "flotilla-fanout-2-0.sim-00001", "sim-00001", APP, 2, 0, 2,
                    "running", image="fanout/web:v2", ready=True)  # fmt: skip
    old = Instance("sim0000000000a0", "flotilla-fanout-1-0.sim-00001", "sim-00001", APP, 1, 0, 1,
                   "exited", exit_code=143, image="fanout/web:v1")  # fmt: skip
    status = Status(
        "sim-00001",
        7,
        (inst, old),
        (("fanout/web:v1", "sha256:" + "a" * 64), ("fanout/web:v2", "sha256:" + "b" * 64)),
    )
    return len(encode(desired)), len(encode(status))


# ---- one N --------------------------------------------------------------------------------


def host_names(n: int) -> list[str]:
    return [f"sim-{i:05d}" for i in range(n)]


def start_sims(
    server_url: str, tokens: Path, n: int, rate: float, work: Path, lean: bool = False
) -> Child:
    args = [sys.executable, "-m", "bench.sim_agents", "--server", server_url]
    args += ["--tokens", str(tokens), "--count", str(n), "--rate", str(rate)]
    if lean:
        args.append("--lean")
    return Child(args, work / "sim_agents.log", pipe=True)


def wait_connected(sims: Child, server: Server, n: int, timeout: float) -> float:
    """Until the sims say every agent is connected (the server's GET /v1/hosts is only
    logged: it judges hosts by last_seen, which idle agents no longer refresh)."""
    watch = Stopwatch()
    line = sims.readline(timeout)
    if not line.startswith("connected"):
        raise RuntimeError(f"sim_agents: {line}\n{sims.tail()}")
    up = int(line.split()[1])
    log(f"sims: {line}; GET /v1/hosts says {server.connected_hosts()} connected")
    if up < n:
        raise RuntimeError(f"only {up}/{n} agents connected ({line})\n{sims.tail()}")
    return watch()


HEALTH_CHECK = {"type": "cmd", "command": ["true"], "interval": 0.5}


def deploy_once(
    server: Server, sims: Child, n: int, k: int, args: argparse.Namespace
) -> dict[str, Any]:
    image = f"fanout/web:v{k}"
    timeout = args.timeout
    body: dict[str, Any] = {
        "image": image,
        "strategy": {"max_parallel": n, "healthy_deadline": timeout},
    }
    if args.health == "cmd":
        body["health"] = HEALTH_CHECK
    sims.send("stats -")
    before = json.loads(sims.readline(120))
    cpu_before = {"server": cpu_seconds(server.pid), "sims": cpu_seconds(sims.pid)}
    post_wall = time.time()
    watch = Stopwatch()
    status, answer = server.api.call("POST", f"/v1/apps/{APP}/deployments", body)
    accepted = watch()
    if status != 202:
        raise RuntimeError(f"POST answered {status}: {answer}")
    dep_id = int(answer["id"])
    final = None
    while watch() < timeout:
        # a long poll, as `flotilla deploy --wait` does: answered as soon as it ends
        wait = max(1, min(100, int(timeout - watch())))
        _, dep = server.api.call("GET", f"/v1/deployments/{dep_id}?wait={wait}")
        if dep["status"] == "succeeded" or dep["status"] in TERMINAL:
            final = dep["status"]
            break
    elapsed = watch()
    cpu = {
        "server": cpu_seconds(server.pid) - cpu_before["server"],
        "sims": cpu_seconds(sims.pid) - cpu_before["sims"],
    }
    sims.send(f"stats {image}")
    stats = json.loads(sims.readline(120))
    ran = sorted(t - post_wall for t in stats["ran"])
    timeline = deploy_timeline(stats, post_wall)
    return {
        "timeline": timeline,
        # CPU seconds each process used from the POST until the answer: which side is busy
        "cpu_seconds": cpu,
        # statuses the agents sent from the POST until the answer (and the stats call)
        "statuses_per_agent": (stats["status_sent"] - before["status_sent"]) / n,
        # lean hosts: the messages' bytes (what the floor's are sized by); 0 for agents
        "message_bytes": {
            key: stats.get(key, 0) - before.get(key, 0)
            for key in ("status_sent", "status_bytes", "desired_taken", "desired_bytes")
        },
        "image": image,
        "deployment": dep_id,
        "status": final or "timeout",
        "accepted": accepted,
        "elapsed": elapsed,
        "agents_ran": len(ran),
        "first_ran": ran[0] if ran else None,
        "median_ran": statistics.median(ran) if ran else None,
        "last_ran": ran[-1] if ran else None,
    }


def deploy_timeline(stats: dict[str, Any], post_wall: float) -> dict[str, float | None]:
    """When the first, the median and the last agent passed each step of one deploy, in
    seconds after the POST: took the desired state that lists the image to pre-pull, sent the
    status that lists the image, took the assignment, created the container, sent the status
    that says it is ready. A deploy that one batch takes whole has no pre-pull round: its
    first push already carries the assignment (and lists the image to pull as well)."""

    def after(key: str) -> list[float]:
        return [t - post_wall for t in stats[key] if t >= post_wall]

    steps = {step: after(step) for step in TIMELINE_STEPS}
    out: dict[str, float | None] = {}
    for step, values in steps.items():
        out[f"{step}_first"] = min(values) if values else None
        out[f"{step}_median"] = statistics.median(values) if values else None
        out[f"{step}_last"] = max(values) if values else None
        out[f"{step}_count"] = len(values)
    return out


def measure_flotilla(
    n: int, args: argparse.Namespace, work: Path, lean: bool = False
) -> dict[str, Any]:
    """Deploys to N simulated hosts: real agents, or lean hosts (bench/lean_hosts.py), whose
    deploys are measured alike; the idle figures (RSS per agent, idle CPU) are the agents'."""
    names = host_names(n)
    out: dict[str, Any] = {"n": n, "hosts": "lean" if lean else "agents"}
    work.mkdir(exist_ok=True)
    with contextlib.ExitStack() as stack:
        if args.database_url:
            url = stack.enter_context(scratch_database(args.database_url, f"bench_fanout_{n}"))
        else:
            url = f"sqlite+aiosqlite:///{work / 'flotilla.db'}"
        watch = Stopwatch()
        tokens = register_hosts(url, names, args.history)
        out["register_seconds"] = watch()
        tokens_file = work / "tokens.txt"
        tokens_file.write_text("".join(f"{a} {b}\n" for a, b in zip(names, tokens, strict=True)))
        server = Server(work, args.database_url and url)
        stack.callback(server.stop)
        server.wait_ready()
        out["server_command"] = server.command
        time.sleep(2)
        out["rss0_kib"] = settled_rss(server.pid)
        kind = "lean hosts" if lean else "agents"
        log(f"fanout N={n}: server up (RSS {out['rss0_kib'] / 1024:.0f} MiB), starting {kind}")
        sims = start_sims(server.url, tokens_file, n, args.connect_rate, work, lean)
        stack.callback(sims.stop)
        out["connect_seconds"] = wait_connected(sims, server, n, timeout=max(120, n / 20))
        log(f"fanout N={n}: {n} {kind} connected after {out['connect_seconds']:.1f}s; settling")
        time.sleep(5)
        if not lean:
            measure_idle(server, sims, n, args, out)
        runs = []
        for k in range(1, args.runs + 2):
            prof = sims_prof = None
            if args.profile_dir and (k == 2 or (k > 2 and args.profile_every_deploy)):
                label = f"{'lean-' if lean else ''}{n}" + (f"-v{k}" if k > 2 else "")
                where = Path(args.profile_dir)
                rate = args.profile_rate
                prof = Profiler(server.pid, where / f"fanout-deploy-{label}.txt", rate=rate)
                if args.profile_sims:
                    sims_prof = Profiler(
                        sims.pid, where / f"fanout-sims-{label}.txt", True, rate=rate
                    )
            r = deploy_once(server, sims, n, k, args)
            if prof is not None:  # the results keep the first counted deploy's summary
                out.setdefault("profile_deploy", prof.stop())
            if sims_prof is not None:
                out.setdefault("profile_sims_deploy", sims_prof.stop())
            r["warmup"] = k == 1
            runs.append(r)
            log(
                f"fanout N={n} ({kind}) deploy v{k}{' (first, not counted)' if k == 1 else ''}: "
                f"{r['status']} after {r['elapsed']:.2f}s; {r['agents_ran']} hosts ran it, "
                f"last at {r['last_ran'] if r['last_ran'] is None else round(r['last_ran'], 2)}s; "
                f"{r['statuses_per_agent']:.1f} statuses per host; CPU s server "
                f"{r['cpu_seconds']['server']:.1f}, sims {r['cpu_seconds']['sims']:.1f}"
            )
            log(
                "  timeline (first/median/last, s after POST): "
                + "; ".join(
                    f"{step} {_s(r['timeline'][step + '_first'])}/"
                    f"{_s(r['timeline'][step + '_median'])}/"
                    f"{_s(r['timeline'][step + '_last'])} (n={r['timeline'][step + '_count']})"
                    for step in TIMELINE_STEPS
                )
            )
            time.sleep(3)
        out["runs"] = runs
        out["sims_connected_at_end"] = json.loads(_ask(sims, "stats -"))["connected"]
        out["server_alive"] = server.child.proc.poll() is None
    return out


def measure_idle(
    server: Server, sims: Child, n: int, args: argparse.Namespace, out: dict[str, Any]
) -> None:
    """RSS and CPU with N connected agents heartbeating."""
    sims.send("stats -")
    before = json.loads(sims.readline(60))
    prof = None
    if args.profile_dir:
        prof = Profiler(server.pid, Path(args.profile_dir) / f"fanout-idle-{n}.txt")
    cpu = idle_cpu({"server": server.pid, "sims": sims.pid}, args.idle_seconds)
    if prof is not None:
        out["profile_idle"] = prof.stop()
    sims.send("stats -")
    after = json.loads(sims.readline(60))
    out["idle_cpu_pct"] = cpu["server"]
    out["sims_cpu_pct"] = cpu["sims"]
    out["status_per_s"] = (after["status_sent"] - before["status_sent"]) / (
        after["seconds"] - before["seconds"]
    )
    out["rss_idle_kib"] = settled_rss(server.pid)
    out["rss_sims_kib"] = rss_kib(sims.pid)
    out["rss_per_agent_kib"] = (out["rss_idle_kib"] - out["rss0_kib"]) / n
    log(
        f"fanout N={n}: idle CPU {cpu['server']:.1f}% (sims {cpu['sims']:.1f}%), "
        f"{out['status_per_s']:.0f} status/s, RSS/agent {out['rss_per_agent_kib']:.1f} KiB"
    )


TIMELINE_STEPS = ("prepull_taken", "pulled_sent", "assignment_taken", "ran", "ready_sent")
TIMELINE_LABELS = {
    "prepull_taken": "took the pre-pull",
    "pulled_sent": "reported the image",
    "assignment_taken": "took the assignment",
    "ran": "created the container",
    "ready_sent": "reported it ready",
}


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ask(child: Child, line: str) -> str:
    child.send(line)
    return child.readline(60)


def message_sizes(measured: dict[str, Any] | None) -> tuple[int, int, str]:
    """The floor's push and reply sizes: the mean sizes of the desired states the lean hosts
    took and of the statuses they sent in the counted deploys (the same bytes both ways);
    without lean hosts, those of a typical desired state and status."""
    counted = [r["message_bytes"] for r in (measured or {}).get("runs", []) if not r["warmup"]]
    taken = sum(m["desired_taken"] for m in counted)
    sent = sum(m["status_sent"] for m in counted)
    if taken and sent:
        push = sum(m["desired_bytes"] for m in counted) / taken
        reply = sum(m["status_bytes"] for m in counted) / sent
        return round(push), round(reply), "the lean hosts' messages in the counted deploys"
    push_size, status_size = flotilla_sizes()
    return push_size, status_size, "a typical desired state and status"


def measure_floor(
    n: int,
    args: argparse.Namespace,
    work: Path,
    status_interval: float,
    sizes: tuple[int, int, str] | None = None,
) -> dict[str, Any]:
    push_size, status_size, sized_by = sizes or message_sizes(None)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"n": n, "push_bytes": push_size, "reply_bytes": status_size}
    out["sized_by"] = sized_by
    out["status_interval"] = status_interval
    server = Child(
        [sys.executable, "-m", "bench.transport_floor", "serve", "--port", str(port)],
        work / "floor-server.log",
    )
    clients = None
    try:
        api = Api(port, timeout=600)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                if api.call("GET", "/count")[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"floor server not up:\n{server.tail()}")
            time.sleep(0.05)
        time.sleep(1)
        out["rss0_kib"] = settled_rss(server.pid)
        clients = Child(
            [sys.executable, "-m", "bench.transport_floor", "clients", "--url", url,
             "--count", str(n), "--reply-size", str(status_size),
             "--status-interval", f"{status_interval:.3f}", "--rate", str(args.connect_rate * 2)],
            work / "floor-clients.log", pipe=True,
        )  # fmt: skip
        line = clients.readline(max(120, n / 20))
        if api.call("GET", "/count")[1]["connected"] < n:
            raise RuntimeError(f"floor: {line}\n{clients.tail()}")
        time.sleep(3)
        cpu = idle_cpu({"server": server.pid}, args.idle_seconds)
        out["idle_cpu_pct"] = cpu["server"]
        out["rss_idle_kib"] = settled_rss(server.pid)
        out["rss_per_conn_kib"] = (out["rss_idle_kib"] - out["rss0_kib"]) / n
        pushes = []
        for _ in range(args.floor_runs + 1):
            status, body = api.call("POST", f"/push?size={push_size}")
            if status != 200 or body["replies"] < n:
                raise RuntimeError(f"floor push: {status} {body}")
            pushes.append(body["elapsed"])
            time.sleep(0.5)
        out["push_first"] = pushes[0]
        out["push"] = pushes[1:]
        api.close()
    finally:
        if clients is not None:
            clients.stop()
        server.stop()
    log(
        f"floor N={n}: push->all replies median {statistics.median(out['push']) * 1000:.0f} ms, "
        f"RSS/conn {out['rss_per_conn_kib']:.1f} KiB, idle CPU {out['idle_cpu_pct']:.1f}%"
    )
    return out


# ---- the benchmark ------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    if args.profile_dir:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in str(args.hosts).split(",") if s.strip()]
    kinds = {k.strip() for k in str(args.sims).split(",") if k.strip()}
    if not kinds or kinds - {"agents", "lean"}:
        raise SystemExit(f"--sims: agents, lean or both, not {args.sims!r}")
    per_n = []
    for n in sizes:
        work = Path(tempfile.mkdtemp(prefix=f"flt-fanout-{n}."))
        entry: dict[str, Any] = {"n": n, "work_dir": str(work)}
        rate = 0.0
        if "agents" in kinds:
            try:
                entry["flotilla"] = measure_flotilla(n, args, work)
                rate = entry["flotilla"]["status_per_s"]
            except Exception as exc:
                log(f"fanout N={n} failed: {exc}")
                entry["flotilla_error"] = str(exc)[-2000:]
        if "lean" in kinds:
            try:
                entry["flotilla_lean"] = measure_flotilla(n, args, work / "lean", lean=True)
            except Exception as exc:
                log(f"fanout N={n} with lean hosts failed: {exc}")
                entry["flotilla_lean_error"] = str(exc)[-2000:]
        try:
            # the floor's clients send status-sized messages at the rate the agents did
            sized = message_sizes(entry.get("flotilla_lean"))
            entry["floor"] = measure_floor(n, args, work, n / rate if rate > 0 else 0.0, sized)
        except Exception as exc:
            log(f"floor N={n} failed: {exc}")
            entry["floor_error"] = str(exc)[-2000:]
        for db in [
            *work.glob("flotilla.db*"),
            *work.glob("lean/flotilla.db*"),
        ]:  # tens of MiB each; the logs stay for a look
            db.unlink()
        per_n.append(entry)
    return _result(args, per_n)


def _result(args: argparse.Namespace, per_n: list[dict[str, Any]]) -> dict[str, Any]:
    metrics: list[dict[str, Any]] = []
    notes = [SIM_NOTE, ""]

    def metric(key: str, label: str, samples: list[float], unit: str) -> None:
        if samples:
            metrics.append(common_metric(key, label, samples, unit))

    def deploys(
        fo: dict[str, Any], fl: dict[str, Any] | None, key: str, kind: str, ratio_label: str
    ) -> None:
        """The counted deploys' times to success and to the last container, and the ratio of
        the first to the floor."""
        n = fo["n"]
        counted = [r for r in fo["runs"] if not r["warmup"]]
        ok = [r["elapsed"] for r in counted if r["status"] == "succeeded"]
        label = f"**N={n} flotilla{kind}: POST until deployment succeeded**"
        metric(f"fanout_{key}succeeded_{n}", label, ok, "s")
        metric(
            f"fanout_{key}last_ran_{n}",
            f"N={n} flotilla{kind}: POST until the last {'host' if key else 'agent'} created "
            "its container",
            [r["last_ran"] for r in counted if r["last_ran"] is not None],
            "s",
        )
        if fl and ok:
            ratio = statistics.median(ok) / statistics.median(fl["push"])
            metric(f"ratio_{key}{n}", f"N={n} {ratio_label}", [ratio], "x")

    for e in per_n:
        n = e["n"]
        fl, fo = e.get("floor"), e.get("flotilla")
        if fl:
            metric(f"floor_push_{n}", f"N={n} floor: push to all, all replied", fl["push"], "s")
        if fo:
            deploys(fo, fl, "", "", "ratio of medians succeeded/floor")
            metric(
                f"rss_per_agent_{n}",
                f"N={n} server RSS per connected agent (target < 40 KiB)",
                [fo["rss_per_agent_kib"]],
                "KiB",
            )
            metric(
                f"idle_cpu_{n}",
                f"N={n} server CPU, idle agents heartbeating (% of a core)",
                [fo["idle_cpu_pct"]],
                "%",
            )
            notes.append(
                f"- N={n}: registered in {fo['register_seconds']:.1f} s, all connected "
                f"{fo['connect_seconds']:.1f} s after the sims reported; server RSS "
                f"{fo['rss0_kib'] / 1024:.0f} MiB with 0 agents, {fo['rss_idle_kib'] / 1024:.0f} MiB "
                f"with {n}; idle CPU {fo['idle_cpu_pct']:.1f}% of a core with "
                f"{fo['status_per_s']:.0f} status messages/s from the agents (sim process "
                f"{fo['sims_cpu_pct']:.0f}%, RSS {fo['rss_sims_kib'] / 1024:.0f} MiB). "
                f"First deploy (not counted): {fo['runs'][0]['status']} after "
                f"{fo['runs'][0]['elapsed']:.2f} s."
            )
        if fo:
            notes.append(_where_time_goes(n, fo, "agents"))
        lean = e.get("flotilla_lean")
        if lean:
            deploys(
                lean, fl, "lean_", ", lean hosts", "lean hosts: ratio of medians succeeded/floor"
            )
            notes.append(_where_time_goes(n, lean, "lean hosts"))
        if fl:
            notes.append(
                f"- N={n} floor: {fl['push_bytes']} B push, {fl['reply_bytes']} B reply (sized "
                f"by {fl.get('sized_by', 'a typical desired state and status')}); RSS "
                f"{fl['rss_per_conn_kib']:.1f} KiB per connection; idle CPU "
                f"{fl['idle_cpu_pct']:.1f}% with a {fl['reply_bytes']} B message per client "
                + (
                    f"every {fl['status_interval']:.1f} s (the agents' measured rate)."
                    if fl["status_interval"]
                    else "never (the agents sent none while idle)."
                )
            )
        for key in ("floor_error", "flotilla_error", "flotilla_lean_error"):
            if key in e:
                notes.append(f"- N={n} {key}: {e[key]}")
    notes += [
        "",
        "Targets (from the issue): fan-out within 3x the bare floor (~1 s for 1,000 hosts, "
        "~3 s for 10,000), < 40 KiB server RSS per agent, idle CPU < 10% of a core with "
        "10,000 agents. "
        + (
            f"Each deploy has a command health check ({HEALTH_CHECK}): the pass that starts a "
            "new instance probes it at once and, as the fake instance passes, retires the old "
            "one in the same pass (agent/runner.py, agent/health.py EARLY_PROBE_OFFSETS). "
            if args.health == "cmd"
            else "No health check (--health none): an agent reports a new instance ready only "
            f"after it has run for {SETTLE_SECONDS:g} s (agent/health.py SETTLE_SECONDS). "
        )
        + "So a host sends one status per deploy: running, ready, the old instance stopped. "
        "Idle agents send their full "
        "status every 5 minutes, each at a random point of that interval (agent/client.py "
        "REFRESH_SECONDS): the idle window sees that steady rate (its status/s in "
        "bench/results/fanout.json), and the floor's clients send as many. "
        "These deploys go out in one batch (max_parallel N, every host connected), so they "
        "have no pre-pull round: the first push carries the assignment (server/rollout/"
        "planner.py). Before that change, every deploy to more than one host first waited for "
        "every host to report the new image. "
        "The simulated agents share the machine's two cores with the server: at 10,000 they "
        "are a large part of the time (see the timeline, and each deploy's CPU seconds of "
        "the server and of the agents' process in bench/results/fanout.json): one process "
        "does the work of N agents one after the other, about 225 us of CPU per agent per "
        "deploy, where a real fleet's hosts work in parallel. The lean hosts' rows compare "
        "like with like: the floor's clients only reply, and so do the lean hosts, with the "
        "same client library and the agents' own messages; what is left is the server's "
        "work over the same wire. Both are reported as measured. The simulation's process "
        "uses the server's base collector settings (server/gc_tuning.py tune_for_server): "
        "10,000 agents in one heap made CPython's full collections slow, which 10,000 real "
        "agents, each with a small heap of its own, do not pay. The floor's server and "
        "clients use the same settings (bench/transport_floor.py), so both sides stand on the "
        "same footing. The Flotilla server also holds young collections back while a rollout "
        "runs and catches up after it (collect_between_rollouts).",
    ]
    return {
        "benchmark": NAME,
        "title": TITLE,
        "description": (
            "For each N: POST one deployment to all N hosts (max_parallel N) and wait with "
            "GET /v1/deployments/{id}?wait= (a long poll, as `flotilla deploy --wait` does) "
            "until it succeeded; server RSS and CPU with N idle "
            "agents; and a bare aiohttp WebSocket server pushing the same bytes to N clients "
            "(bench/transport_floor.py). " + SIM_NOTE
        ),
        "date": now_utc(),
        "command": invocation(),
        "machine": machine("none (fake driver)"),
        "parameters": {
            "hosts": args.hosts,
            "database": "PostgreSQL (scratch database)" if args.database_url else "SQLite",
            "runs per N": f"{args.runs} (after one first deploy, not counted)",
            "idle window": f"{args.idle_seconds:.0f} s",
            "agent connects": f"{args.connect_rate:.0f}/s",
            "processes": "flotilla server, bench.sim_agents, this bench: three processes",
            "history": f"{args.history} earlier releases that succeeded, of {HISTORY_APPS} "
            "apps no host runs now",
        },
        "metrics": metrics,
        "notes": notes,
        "raw": per_n,
    }


def _where_time_goes(n: int, fo: dict[str, Any], kind: str) -> str:
    """A note: when the last host passed each step of a deploy, and each side's CPU."""
    counted = [r for r in fo["runs"] if not r["warmup"]]
    steps = []
    for step, label in TIMELINE_LABELS.items():
        values = [r["timeline"][f"{step}_last"] for r in counted]
        values = [v for v in values if v is not None]
        if values:
            steps.append(f"{label} {statistics.median(values):.2f}")
    done = [r["elapsed"] for r in counted if r["status"] == "succeeded"]
    if done:
        steps.append(f"deployment succeeded {statistics.median(done):.2f}")
    failed = [r["status"] for r in counted if r["status"] != "succeeded"]
    if failed:
        steps.append(f"{len(failed)} counted deploys did not succeed: {failed}")
    cpu = [r["cpu_seconds"] for r in counted if "cpu_seconds" in r]
    busy = (
        f" CPU used during a deploy (median): server "
        f"{statistics.median(c['server'] for c in cpu):.1f} s, simulated {kind} "
        f"{statistics.median(c['sims'] for c in cpu):.1f} s."
        if cpu
        else ""
    )
    return (
        f"- N={n}, {kind}, where the time goes (s after the POST, the last of the {n} hosts, "
        f"median of the counted runs): " + "; ".join(steps) + "." + busy
    )
