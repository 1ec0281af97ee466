"""The environment's fingerprint a baseline is saved with: what, when it
differs, makes run times incomparable (another CPU, core count, engine,
Python or LangGraph), so that a comparison can say so before its verdict.

Unlike environment() (collect/env.py) it needs no run: a baseline compared
in CI is loaded from files, with no graph run in that process.
"""

from __future__ import annotations

import os
import platform
from typing import Any

from .env import _cpu_model, _version

# The fields in the order a warning names them.
FIELDS = ("cpu", "cpus", "kfm_debugging", "engine", "python", "langgraph", "os")


def fingerprint() -> dict[str, Any]:
    """{cpu, cpus, kfm_debugging, engine, python, langgraph, os} of this
    process: the CPU model, logical cores, the package's and the engine's
    versions, Python's, LangGraph's (None when not installed), and the OS
    (system, release, machine)."""
    from .. import __version__
    from .._kfm import version

    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "kfm_debugging": __version__,
        "engine": version,
        "python": platform.python_version(),
        "langgraph": _version("langgraph"),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
    }


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The fields whose values differ between two fingerprints (a field one
    of them lacks counts as None there), known fields first."""
    keys = [k for k in FIELDS if k in a or k in b]
    keys += sorted(k for k in set(a) | set(b) if k not in FIELDS)
    return [k for k in keys if a.get(k) != b.get(k)]
