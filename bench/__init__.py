"""Flotilla benchmarks: `python -m bench` (what `make bench` runs).

Each benchmark is a module with NAME, TITLE, `add_arguments(parser)` and `run(args)`, listed in
`bench.__main__.BENCHMARKS` (or `ON_DEMAND`: run only when named, like the soak). A run writes bench/results/NAME.json; bench/RESULTS.md is rebuilt
from every JSON file present. Benchmarks report figures; they never assert timings and are
never part of `make test`.
"""
