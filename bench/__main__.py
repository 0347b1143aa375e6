"""`python -m bench [NAME [OPTIONS]]`: run all benchmarks, or one, and rewrite bench/RESULTS.md.

    python -m bench                              every benchmark with its defaults
    python -m bench deploy-latency --runs 10     one benchmark
    python -m bench --report                     only rebuild RESULTS.md from bench/results/
    python -m bench soak --minutes N             random faults for N minutes (`make soak`;
                                                 on demand only: never part of the full run)
    python -m bench ab --bench NAME [--a REV --b REV --rounds N] [-- BENCH ARGS]
                                                 interleaved A/B of two revisions (bench/ab.py)

Uses the Docker Engine at DOCKER_HOST, or starts a private one (scripts/docker-engine.sh).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from bench import agent_footprint, api_load, deploy_latency, fanout, rollback_latency, soak
from bench.common import log, write_result, write_results_md

# Later benchmarks (fan-out, API load) are added here.
BENCHMARKS: dict[str, ModuleType] = {
    m.NAME: m for m in (deploy_latency, rollback_latency, fanout, api_load, agent_footprint)
}
# Run only when named: `python -m bench` alone does not start them.
ON_DEMAND: dict[str, ModuleType] = {soak.NAME: soak}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--report", action="store_true", help="only rebuild RESULTS.md from bench/results/"
    )
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name, module in {**BENCHMARKS, **ON_DEMAND}.items():
        module.add_arguments(sub.add_parser(name, help=module.TITLE))
    return parser


def run_one(module: ModuleType, args: argparse.Namespace) -> None:
    log(f"running {module.NAME}")
    result = module.run(args)
    path = write_result(module.RESULT_FILE, result)
    log(f"wrote {path}")
    for metric in result["metrics"]:
        unit = metric["unit"]
        scale, suffix = (1000.0, " ms") if unit == "s" else (1.0, f" {unit}")
        print(
            f"{module.NAME}: {metric['key']}: median {metric['median'] * scale:.1f}{suffix} "
            f"min {metric['min'] * scale:.1f}{suffix} max {metric['max'] * scale:.1f}{suffix}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "ab":  # not a benchmark: it runs one from two git worktrees
        from bench import ab

        return ab.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.report:
        if args.benchmark:
            run_one({**BENCHMARKS, **ON_DEMAND}[args.benchmark], args)
        else:
            for name, module in BENCHMARKS.items():
                run_one(module, build_parser().parse_args([name]))
    path = write_results_md()
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
