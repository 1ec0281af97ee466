"""Workflows built on the Debugger's runs (empty for now).

This package will hold what runs a graph many times and compares the runs:
benchmarks (``run_benchmark``, ``compare_benchmark_configs``), optimization
experiments (``run_optimization_experiments``) and continuous profiling
(``enable_continuous_profiling``, baselines and regressions).  Each is built
from collect/ (runs), model/ (results loaded back with ``from_dict``),
analysis/ and render/, like the Debugger itself.
"""
