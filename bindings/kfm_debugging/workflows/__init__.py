"""Workflows across runs: benchmarks and optimisation experiments
(benchmark.py), the continuous profiling log and its trends (continuous.py),
baselines and regression checks (baseline.py).

They run the graph only through a ``run(state, config)`` callable that
returns one run's figures (Debugger.measure), and compare sets of runs with
analysis/stats.py: medians with intervals and named tests, never two single
runs.
"""
