"""The machine and versions a profile was measured with: the environment's
fingerprint a baseline is saved with (what, when it differs, makes run times
incomparable: another CPU, core count, engine, Python or LangGraph), and
the helpers collect/env.py reports with.

It needs no run and imports no LangGraph (package versions come from their
metadata): a baseline compared in CI is loaded from files, with no graph run
in that process, by workflows/ that may not reach collect/.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any


def package_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None

# The fields in the order a warning names them.
FIELDS = ("cpu", "cpus", "kfm_debugging", "engine", "python", "langgraph", "os")


def fingerprint() -> dict[str, Any]:
    """{cpu, cpus, kfm_debugging, engine, python, langgraph, os} of this
    process: the CPU model, logical cores, the package's and the engine's
    versions, Python's, LangGraph's (None when not installed), and the OS
    (system, release, machine)."""
    from . import __version__
    from ._kfm import version

    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "kfm_debugging": __version__,
        "engine": version,
        "python": platform.python_version(),
        "langgraph": package_version("langgraph"),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
    }


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The fields whose values differ between two fingerprints (a field one
    of them lacks counts as None there), known fields first."""
    keys = [k for k in FIELDS if k in a or k in b]
    keys += sorted(k for k in set(a) | set(b) if k not in FIELDS)
    return [k for k in keys if a.get(k) != b.get(k)]
