"""Shared pieces of the benchmarks: engine, images, HTTP probes, statistics, machine, results."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"


def log(message: str) -> None:
    """Progress goes to stderr, so stdout stays free for the figures."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ---- Docker Engine ------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineInfo:
    url: str
    private: bool  # started by the benchmark (and stopped by it), not shared with anyone


@contextlib.contextmanager
def docker_engine() -> Iterator[EngineInfo]:
    """The engine at DOCKER_HOST; if unset, a private one from scripts/docker-engine.sh.

    A private engine lives in a fresh /tmp/flt-bench.XXXX and is stopped by that script (by
    its pidfile) when the block ends; a shared engine is never stopped.
    """
    url = os.environ.get("DOCKER_HOST")
    if url:
        yield EngineInfo(url, private=False)
        return
    script = ROOT / "scripts" / "docker-engine.sh"
    state = tempfile.mkdtemp(prefix="flt-bench.", dir="/tmp")
    log(f"DOCKER_HOST is unset: starting a private engine in {state}")
    try:
        out = subprocess.run(
            [str(script), "start", state], check=True, stdout=subprocess.PIPE, text=True
        )
        yield EngineInfo(out.stdout.strip(), private=True)
    finally:
        log(f"stopping the private engine in {state}")
        subprocess.run([str(script), "stop", state], check=False)
        shutil.rmtree(state, ignore_errors=True)


def build_image(tag: str, text: str, docker_url: str) -> None:
    """scripts/build-image.sh TAG --text TEXT --no-check (idempotent: no-op when up to date)."""
    subprocess.run(
        [str(ROOT / "scripts" / "build-image.sh"), tag, "--text", text, "--no-check"],
        check=True,
        env={**os.environ, "DOCKER_HOST": docker_url},
        stdout=subprocess.DEVNULL,
    )


def build_image_variant(tag: str, text: str, docker_url: str, *flags: str) -> None:
    """Like build_image, with extra scripts/build-image.sh flags (e.g. "--no-health")."""
    subprocess.run(
        [str(ROOT / "scripts" / "build-image.sh"), tag, "--text", text, "--no-check", *flags],
        check=True,
        env={**os.environ, "DOCKER_HOST": docker_url},
        stdout=subprocess.DEVNULL,
    )


# ---- HTTP ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_text(port: int, path: str = "/", timeout: float = 1.0) -> str | None:
    """GET http://127.0.0.1:PORT/PATH; the stripped body on 200, None on anything else.

    A fresh connection each time, like a client arriving; a published port may accept (the
    userland proxy) before the container listens, so resets and empty replies count as "not
    yet".
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return None
        return body.decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class Api:
    """A tiny blocking REST client for the Flotilla API on 127.0.0.1 (one kept-alive socket)."""

    def __init__(self, port: int, token: str = "", timeout: float = 10.0) -> None:
        self.port = port
        self.token = token
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout
                )
            try:
                self._conn.request(method, path, body=data, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException):
                self.close()  # the server closed a kept-alive socket: retry once on a new one
                if attempt == 2:
                    raise
                continue
            text = raw.decode("utf-8", "replace")
            try:
                return resp.status, json.loads(text) if text else None
            except ValueError:
                return resp.status, text
        raise AssertionError("unreachable")


# ---- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was actually measured."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(samples: Sequence[float]) -> dict[str, Any]:
    """median, min, max, and p90 when there are at least 10 samples (else it is just max)."""
    out: dict[str, Any] = {
        "n": len(samples),
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "p90": percentile(samples, 90) if len(samples) >= 10 else None,
        "samples": list(samples),
    }
    return out


class Stopwatch:
    """Seconds since construction, on the monotonic clock."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


# ---- machine ------------------------------------------------------------------------------


def metric(key: str, label: str, samples: Sequence[float], unit: str = "s") -> dict[str, Any]:
    """One row of a result: its key, label, unit and the statistics of its samples."""
    return {"key": key, "label": label, "unit": unit, **summary(samples)}


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def _code_measured() -> str:
    dirty = _git("status", "--porcelain", "--", "server", "agent", "migrations")
    return _git("rev-parse", "--short", "HEAD") + (
        " (server/agent have uncommitted changes)" if dirty and dirty != "unknown" else ""
    )


# read when the benchmark starts, not when it writes its results minutes later: the code
# it runs is the code of the start
CODE_MEASURED = _code_measured()


def machine(docker_version: str) -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "docker": docker_version,
        "python": platform.python_version(),
        "commit": CODE_MEASURED,
    }


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def invocation() -> str:
    """The command that produced these figures, as a user would type it."""
    engine = os.environ.get("DOCKER_HOST")
    prefix = f"DOCKER_HOST={engine} " if engine else ""
    return prefix + " ".join(["python -m bench", *sys.argv[1:]])


# ---- results ------------------------------------------------------------------------------


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.0f} ms"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:g} {unit}".strip()


def _render(result: dict[str, Any]) -> list[str]:
    m = result["machine"]
    lines = [f"## {result['title']}", "", result.get("description", ""), ""]
    lines += [
        f"- Date: {result['date']}",
        f"- Command: `{result['command']}`",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; "
        f"kernel {m['kernel']}; Docker {m['docker']}; Python {m['python']}; "
        f"flotilla {m['commit']}",
    ]
    for key, value in result.get("parameters", {}).items():
        lines.append(f"- {key}: {value}")
    lines += ["", "| measurement | n | median | min | max | p90 |", "|---|---|---|---|---|---|"]
    for metric in result["metrics"]:
        unit = metric.get("unit", "s")
        lines.append(
            f"| {metric['label']} | {metric['n']} | {_fmt(metric['median'], unit)} "
            f"| {_fmt(metric['min'], unit)} | {_fmt(metric['max'], unit)} "
            f"| {_fmt(metric['p90'], unit)} |"
        )
    if result.get("commands"):
        lines += ["", "Exact operations timed:", ""]
        lines += [f"- {k}: {v}" for k, v in result["commands"].items()]
    if result.get("notes"):
        lines += ["", *[f"{note}" for note in result["notes"]]]
    lines.append("")
    return lines


def write_results_md() -> Path:
    """Rebuild bench/RESULTS.md from every bench/results/*.json."""
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python -m bench` (`make bench`) from `bench/results/*.json`; do not edit",
        "by hand. Figures are from one machine and one run each: compare ratios more than",
        "absolute times. Timings are never asserted anywhere.",
        "",
    ]
    files = sorted(RESULTS_DIR.glob("*.json")) if RESULTS_DIR.is_dir() else []
    if not files:
        lines.append("No results yet: run `python -m bench`.")
    for path in files:
        lines += _render(json.loads(path.read_text()))
    RESULTS_MD.write_text("\n".join(lines).rstrip() + "\n")
    return RESULTS_MD
