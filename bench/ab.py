"""Interleaved A/B of one benchmark between two git revisions, both figures in the same run.

    python -m bench ab --bench fanout --a 4fd1e55 --b HEAD --rounds 3 -- --sims lean --hosts 1000
    python -m bench.ab ...                                  (the same, without bench/__main__)

Each revision gets a detached `git worktree` under a fresh /tmp/flt-ab.XXXX (removed at the
end, each worktree by its own path). Round r runs the benchmark once from each worktree, A
then B on even rounds and B then A on odd ones, so neither side always goes first. A run is
`PYTHON -m bench NAME ARGS...` with cwd and PYTHONPATH set to its worktree: the bench, the
server and agent subprocesses it starts (`python -m server.cli.main` with cwd=its root) and
their migrations are that revision's code, not the editable install the venv points at
/work/main (checked before the first round: `server.__file__` and friends must lie in the
worktree, and each result's `machine.commit` must name the worktree's commit). Both sides
use the same interpreter (default /work/main/.venv/bin/python), the same Docker Engine
(DOCKER_HOST, or one private engine started here for the whole A/B) and a TMPDIR of their
own per run.

Each run writes its result into its own worktree's bench/results/ (emptied before the
run); it is moved to OUT/runs/ROUND-SIDE.json with the run's log beside it, so nothing in
the main tree is overwritten. OUT (default bench/results/ab/STAMP-NAME/) then gets ab.md
(per metric: A median, B median, B/A, and every round's values; the issue 16 gate checks
that apply) and ab.json. With --record, bench/results/ab_NAME.json is written too, in the
format bench/common.py renders, and bench/RESULTS.md is rebuilt from bench/results/.

A metric's value in one run is that run's median of it; "A median" is the median of those
over the rounds. B/A is the ratio of the two medians; the per-round ratios are in ab.json
and in the recorded result.

(Over 400 lines: the runner, its worktrees and the gate's verdicts are one procedure read top
to bottom; splitting it would scatter the order of a round across files.)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, ROOT, docker_engine, log, machine, now_utc
from bench.common import write_results_md as rebuild_results_md

DEFAULT_A = "4fd1e55"
DEFAULT_PYTHON = ROOT / ".venv" / "bin" / "python"
BENCHES = ("fanout", "deploy-latency", "rollback-latency", "agent-footprint", "api-load")
DOCKERLESS = {"fanout", "api-load"}
# the packages whose origin decides what code a run measures
PACKAGES = ("bench", "server", "agent", "migrations")


# ---- issue 16's gate ----------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """One "must not regress" check of issue 16 on one metric's A and B medians."""

    key: str
    rule: str  # "ratio" (B/A <= 1 + limit), "abs" (|B - A| <= limit), "max" (B <= limit)
    limit: float
    text: str

    def check(self, a: float, b: float) -> bool:
        if self.rule == "ratio":
            return b <= a * (1.0 + self.limit)
        if self.rule == "abs":
            return abs(b - a) <= self.limit
        return b <= self.limit


GATES: dict[str, list[Gate]] = {
    "deploy-latency": [
        Gate("ratio_per_pair", "ratio", 0.10, "deploy/`docker run` ratio within 10% of A"),
    ],
    "rollback-latency": [
        Gate("ratio_per_pair", "ratio", 0.10, "warm rollback/`docker start` within 10% of A"),
    ],
    "fanout": [
        Gate("fanout_lean_succeeded_1000", "ratio", 0.10, "1,000 lean hosts within 10% of A"),
        Gate("fanout_lean_succeeded_10000", "ratio", 0.10, "10,000 lean hosts within 10% of A"),
        Gate("ratio_lean_100", "max", 3.0, "100 lean hosts at most 3x the floor"),
    ],
    "agent-footprint": [
        Gate("idle_rss", "abs", 2.0, "agent RSS idle within ±2 MiB of A"),
        Gate("rss_after_passes", "abs", 2.0, "agent RSS after the passes within ±2 MiB of A"),
    ],
}


# ---- git worktrees ------------------------------------------------------------------------


def git(*args: str, cwd: Path = ROOT) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def resolve(rev: str) -> str:
    """The full commit id of REV (a branch, tag, HEAD~2, short hash...)."""
    try:
        return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"ab: {rev!r} is not a commit of {ROOT}") from None


@contextlib.contextmanager
def worktree(path: Path, commit: str) -> Iterator[Path]:
    """A detached worktree of COMMIT at PATH; removed (that path only) when the block ends."""
    git("worktree", "add", "--detach", "--quiet", str(path), commit)
    try:
        yield path
    finally:
        try:
            git("worktree", "remove", "--force", str(path))
        except subprocess.CalledProcessError as exc:
            log(f"git worktree remove {path} failed ({exc.stderr.strip()}); removing the dir")
            shutil.rmtree(path, ignore_errors=True)


def overlay_bench(tree: Path, rev: str) -> None:
    """Replace TREE's bench/ with REV's (--bench-code): the same measuring code both sides."""
    shutil.rmtree(tree / "bench")
    git("checkout", "--quiet", rev, "--", "bench", cwd=tree)


# ---- one side -----------------------------------------------------------------------------


@dataclass
class Side:
    """One revision: its worktree and the environment its runs get."""

    label: str  # "A" or "B"
    rev: str  # as given
    commit: str  # full id
    tree: Path
    python: Path
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # package -> its __init__.py

    def prepare(self, docker_host: str | None) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["PYTHONPATH"] = str(self.tree)
        if docker_host:
            env["DOCKER_HOST"] = docker_host
        self.env = env

    def check_imports(self) -> dict[str, str]:
        """Where `import server` etc. resolve from in this side's runs: must be its worktree."""
        code = (
            "import json, importlib\n"
            f"print(json.dumps({{m: importlib.import_module(m).__file__ for m in {PACKAGES!r}}}))"
        )
        out = subprocess.run(
            [str(self.python), "-c", code],
            cwd=self.tree,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        files: dict[str, str] = json.loads(out.stdout)
        for module, file in files.items():
            if not Path(file).resolve().is_relative_to(self.tree.resolve()):
                raise SystemExit(
                    f"ab: side {self.label} would import {module} from {file}, not from its "
                    f"worktree {self.tree}"
                )
        self.files = files
        # byte-compiled once here, so no run (the first of each side) pays for it
        subprocess.run(
            [str(self.python), "-m", "compileall", "-q", *PACKAGES],
            cwd=self.tree,
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return files


@dataclass
class Run:
    """One run of the benchmark from one side."""

    round: int
    side: str
    seconds: float
    returncode: int
    result_path: str | None
    log_path: str
    metrics: dict[str, dict[str, Any]]  # key -> the result's metric row
    commit_measured: str
    docker: str
    load_before: float  # 1-minute load average as the run started: a busy machine shows here


def run_once(
    side: Side, name: str, bench_args: Sequence[str], rnd: int, out: Path, tmp: Path, timeout: float
) -> Run:
    """`python -m bench NAME ARGS` from the side's worktree; its result moved into OUT/runs."""
    results = side.tree / "bench" / "results"
    shutil.rmtree(results, ignore_errors=True)  # the checked-in results must not pass for new
    results.mkdir(parents=True)
    run_tmp = tmp / f"{rnd}{side.label.lower()}"
    run_tmp.mkdir(parents=True)
    stem = f"r{rnd}-{side.label}"
    log_path = out / "runs" / f"{stem}.log"
    cmd = [str(side.python), "-m", "bench", name, *bench_args]
    load = os.getloadavg()[0]
    log(f"round {rnd} {side.label} ({side.commit[:7]}, load {load:.1f}): {' '.join(cmd[1:])}")
    if load > 0.5 * (os.cpu_count() or 1):
        log(f"warning: load average {load:.1f} before a run: something else is using the CPU")
    started = time.monotonic()
    with log_path.open("wb") as f:
        f.write(f"$ cd {side.tree} && {' '.join(cmd)}\n".encode())
        f.flush()
        try:
            proc = subprocess.run(
                cmd,
                cwd=side.tree,
                env={**side.env, "TMPDIR": str(run_tmp)},
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=timeout or None,
            )
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = -1
            f.write(f"\nab: timed out after {timeout:.0f} s\n".encode())
    seconds = time.monotonic() - started
    found = sorted(results.glob("*.json"))
    result: dict[str, Any] = {}
    result_path = None
    if found:
        dest = out / "runs" / f"{stem}.json"
        shutil.move(found[0], dest)
        result_path = str(dest)
        result = json.loads(dest.read_text())
    if rc == 0 and result:
        shutil.rmtree(run_tmp, ignore_errors=True)
    else:  # the bench's own work dirs (server logs...) stay for a look
        shutil.move(run_tmp, out / "runs" / f"{stem}-tmp")
    metrics = {m["key"]: m for m in result.get("metrics", [])}
    measured = str(result.get("machine", {}).get("commit", ""))
    if result and not measured.startswith(side.commit[:7]):
        raise SystemExit(
            f"ab: round {rnd} {side.label} measured {measured!r}, not {side.commit[:7]}: "
            f"the run did not use its worktree's code (log: {log_path})"
        )
    status = f"{len(metrics)} metrics" if rc == 0 and result else f"FAILED rc={rc}"
    log(f"round {rnd} {side.label}: {status} in {seconds:.0f} s (log {log_path})")
    return Run(
        rnd,
        side.label,
        seconds,
        rc,
        result_path,
        str(log_path),
        metrics,
        measured,
        str(result.get("machine", {}).get("docker", "")),
        load,
    )


# ---- the table ----------------------------------------------------------------------------


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 10 else f"{value:.2f} s"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.4g} {unit}"


def median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(b: float | None, a: float | None) -> float | None:
    return b / a if a and b is not None else None


def summarize(runs: list[Run], rounds: int) -> list[dict[str, Any]]:
    """Per metric (in the order the results list them): labels, values per round, medians."""
    order: dict[str, dict[str, Any]] = {}
    for run in runs:
        for key, m in run.metrics.items():
            order.setdefault(key, {"key": key, "label": m["label"], "unit": m.get("unit", "s")})
    rows = []
    for key, row in order.items():
        per: dict[str, list[float | None]] = {"A": [None] * rounds, "B": [None] * rounds}
        for run in runs:
            if key in run.metrics:
                per[run.side][run.round] = float(run.metrics[key]["median"])
        a = [v for v in per["A"] if v is not None]
        b = [v for v in per["B"] if v is not None]
        round_ratios = [ratio(vb, va) for va, vb in zip(per["A"], per["B"], strict=True)]
        rows.append(
            {
                **row,
                "a": per["A"],
                "b": per["B"],
                "a_median": median_or_none(a),
                "b_median": median_or_none(b),
                "b_over_a": ratio(median_or_none(b), median_or_none(a)),
                "round_ratios": round_ratios,
            }
        )
    return rows


def gate_lines(name: str, rows: list[dict[str, Any]]) -> list[str]:
    by_key = {r["key"]: r for r in rows}
    lines = []
    for gate in GATES.get(name, []):
        row = by_key.get(gate.key)
        if row is None or row["a_median"] is None or row["b_median"] is None:
            lines.append(f"- {gate.text} (`{gate.key}`): NO DATA")
            continue
        a, b = row["a_median"], row["b_median"]
        verdict = "pass" if gate.check(a, b) else "**FAIL**"
        lines.append(
            f"- {gate.text} (`{gate.key}`): A {fmt(a, row['unit'])}, B {fmt(b, row['unit'])}"
            f" (B/A {b / a:.3f}): {verdict}"
        )
    return lines


def markdown(name: str, rounds: int, runs: list[Run]) -> tuple[list[str], list[str]]:
    """(the A/B table's lines, the gate lines)."""
    rows = summarize(runs, rounds)
    rounds_head = " | ".join(f"r{i} A / B" for i in range(rounds))
    lines = [
        f"| metric | A median | B median | B/A | {rounds_head} |",
        "|---|---|---|---|" + "---|" * rounds,
    ]
    for row in rows:
        unit = row["unit"]
        per_round = " | ".join(
            f"{fmt(va, unit)} / {fmt(vb, unit)}" for va, vb in zip(row["a"], row["b"], strict=True)
        )
        b_over_a = f"{row['b_over_a']:.3f}" if row["b_over_a"] is not None else "-"
        lines.append(
            f"| {row['label']} | {fmt(row['a_median'], unit)} | {fmt(row['b_median'], unit)} "
            f"| {b_over_a} | {per_round} |"
        )
    failed = [
        f"r{r.round} {r.side} (rc {r.returncode}, log {r.log_path})"
        for r in runs
        if r.returncode != 0 or r.result_path is None
    ]
    if failed:
        lines += ["", "Failed runs: " + "; ".join(failed)]
    return lines, gate_lines(name, rows)


def recorded_result(
    name: str,
    a: Side,
    b: Side,
    rounds: int,
    bench_args: Sequence[str],
    runs: list[Run],
    table: list[str],
    gates: list[str],
    command: str,
) -> dict[str, Any]:
    """A result in bench/common.py's format: B/A per round as its metrics, the table as notes."""
    rows = summarize(runs, rounds)
    metrics = []
    for row in rows:
        samples = [r for r in row["round_ratios"] if r is not None]
        if samples:
            metrics.append(
                {
                    "key": row["key"],
                    "label": f"B/A per round: {row['label']}",
                    "unit": "x",
                    "n": len(samples),
                    "median": statistics.median(samples),
                    "min": min(samples),
                    "max": max(samples),
                    "p90": None,
                    "samples": samples,
                }
            )
    docker = next((r.docker for r in runs if r.docker), "unknown")
    mach = machine(docker)
    mach["commit"] = f"A {a.commit[:7]} vs B {b.commit[:7]}"
    return {
        "benchmark": f"ab-{name}",
        "title": f"A/B {name}: A {a.rev} ({a.commit[:7]}) vs B {b.rev} ({b.commit[:7]})",
        "description": (
            f"`python -m bench {name} {' '.join(bench_args)}` run alternately from a worktree "
            f"of each revision, {rounds} round(s), A first on even rounds and B first on odd "
            "ones (bench/ab.py). A run's value of a metric is its median; the table's A and "
            "B are the medians of those over the rounds; the rows just below are the "
            "per-round B/A ratios."
        ),
        "date": now_utc(),
        "command": command,
        "machine": mach,
        "parameters": {
            "A": f"{a.rev} = {a.commit}",
            "B": f"{b.rev} = {b.commit}",
            "rounds": rounds,
            "order": "A,B then B,A, alternating",
            "1-min load average before each run": ", ".join(
                f"r{r.round}{r.side} {r.load_before:.1f}" for r in runs
            ),
        },
        "metrics": metrics,
        "notes": [*(["Issue 16 gate:", "", *gates, ""] if gates else []), *table],
    }


# ---- main ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench ab",
        description="Interleaved A/B of one benchmark between two git revisions.",
        epilog="Arguments after `--` go to the benchmark, e.g. -- --sims lean --hosts 1000.",
    )
    parser.add_argument("--bench", required=True, choices=BENCHES, help="benchmark to run")
    parser.add_argument("--a", default=DEFAULT_A, help="revision A (default %(default)s)")
    parser.add_argument("--b", default="HEAD", help="revision B (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of A+B (default 3)")
    parser.add_argument(
        "--python", default=str(DEFAULT_PYTHON), help="interpreter for both (default the venv)"
    )
    parser.add_argument(
        "--bench-code",
        default="own",
        help="own: each side runs its revision's bench/ (default); or a REV whose bench/ "
        "replaces both worktrees' (the same measuring code on both sides)",
    )
    parser.add_argument("--out", default="", help="output dir (default bench/results/ab/...)")
    parser.add_argument(
        "--record",
        action="store_true",
        help="also write bench/results/ab_NAME.json and rebuild bench/RESULTS.md",
    )
    parser.add_argument(
        "--timeout", type=float, default=0.0, help="seconds per run, 0 = none (default)"
    )
    return parser


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(ab's own arguments, the benchmark's: everything after the first `--`)."""
    args = list(argv)
    if "--" in args:
        i = args.index("--")
        return args[:i], args[i + 1 :]
    return args, []


def main(argv: Sequence[str] | None = None) -> int:
    own, bench_args = split_argv(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(own)
    if args.rounds < 1:
        raise SystemExit("ab: --rounds must be at least 1")
    name: str = args.bench
    python = Path(args.python)
    a_commit, b_commit = resolve(args.a), resolve(args.b)
    bench_rev = None if args.bench_code == "own" else resolve(args.bench_code)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else RESULTS_DIR / "ab" / f"{stamp}-{name}"
    (out / "runs").mkdir(parents=True, exist_ok=True)
    command = (
        "python -m bench ab "
        + " ".join(own)
        + (" -- " + " ".join(bench_args) if bench_args else "")
    )
    if bench_rev is None and git("diff", "--stat", a_commit, b_commit, "--", "bench"):
        log("note: bench/ differs between A and B; each side runs its own (see --bench-code)")

    base = Path(tempfile.mkdtemp(prefix="flt-ab.", dir="/tmp"))
    runs: list[Run] = []
    try:
        with contextlib.ExitStack() as stack:
            needs_docker = name not in DOCKERLESS
            docker_host = os.environ.get("DOCKER_HOST")
            if needs_docker and not docker_host:
                docker_host = stack.enter_context(docker_engine()).url
            sides = []
            for label, rev, commit in (("A", args.a, a_commit), ("B", args.b, b_commit)):
                tree = stack.enter_context(worktree(base / label.lower(), commit))
                if bench_rev is not None:
                    overlay_bench(tree, bench_rev)
                side = Side(label, rev, commit, tree, python)
                side.prepare(docker_host)
                files = side.check_imports()
                log(f"{label} = {rev} ({commit[:7]}) in {tree}: server from {files['server']}")
                sides.append(side)
            tmp = base / "tmp"
            for rnd in range(args.rounds):
                order = sides if rnd % 2 == 0 else sides[::-1]
                for side in order:
                    runs.append(run_once(side, name, bench_args, rnd, out, tmp, args.timeout))
    finally:
        shutil.rmtree(base, ignore_errors=True)

    a_side, b_side = sides
    table, gates = markdown(name, args.rounds, runs)
    head = [
        f"# A/B {name}: A {args.a} ({a_commit[:7]}) vs B {args.b} ({b_commit[:7]})",
        "",
        f"- Command: `{command}`",
        f"- Date: {now_utc()}; {args.rounds} round(s), A,B then B,A alternating",
        "- Run times: " + ", ".join(f"r{r.round}{r.side} {r.seconds:.0f} s" for r in runs),
        f"- 1-min load average before each run ({os.cpu_count()} cores): "
        + ", ".join(f"r{r.round}{r.side} {r.load_before:.1f}" for r in runs),
        *(
            f"- {sd.label}: `{sd.files['server']}` (bench, agent, migrations beside it)"
            for sd in sides
        ),
        "",
    ]
    text = "\n".join([*head, *(["Issue 16 gate:", "", *gates, ""] if gates else []), *table])
    print(text)
    (out / "ab.md").write_text(text + "\n")
    (out / "ab.json").write_text(
        json.dumps(
            {
                "benchmark": name,
                "command": command,
                "a": {"rev": args.a, "commit": a_commit},
                "b": {"rev": args.b, "commit": b_commit},
                "rounds": args.rounds,
                "bench_args": bench_args,
                "runs": [r.__dict__ for r in runs],
                "metrics": summarize(runs, args.rounds),
            },
            indent=2,
        )
        + "\n"
    )
    log(f"wrote {out / 'ab.md'} and {out / 'ab.json'}")
    if args.record:
        result = recorded_result(
            name, a_side, b_side, args.rounds, bench_args, runs, table, gates, command
        )
        path = RESULTS_DIR / f"ab_{name.replace('-', '_')}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {path} and {rebuild_results_md()}")
    failed = any(r.returncode != 0 or r.result_path is None for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
