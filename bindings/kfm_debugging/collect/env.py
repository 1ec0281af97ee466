"""The environment a run was measured in, for reports: versions, platform,
the engine's backends and why any is unavailable, the machine's topology.

Here in collect/ because it names LangGraph and the other packages whose
versions explain a profile."""

from __future__ import annotations

import os
import platform
from typing import TYPE_CHECKING, Any

from .._platform import cpu_model, package_version

if TYPE_CHECKING:
    from .run import RunData

_PACKAGES = ("langgraph", "langchain-core", "matplotlib")


def topology_summary(topo: Any) -> str:
    """One line from the hwloc backend's description: packages, cores,
    PUs, NUMA nodes, caches, GPUs; or why there is none."""
    if not isinstance(topo, dict):
        return "unavailable: no description"
    if "unavailable" in topo:
        return f"unavailable: {topo['unavailable']}"
    if topo.get("available") is False:
        return f"unavailable: {topo.get('reason')}"
    parts = [f"{topo.get(k)} {label}" for k, label in (
        ("packages", "package(s)"), ("cores", "core(s)"), ("pus", "PU(s)")) if k in topo]
    numa = topo.get("numa_nodes") or []
    if numa:
        mem = sum(n.get("memory_bytes") or 0 for n in numa) / 2**30
        parts.append(f"{len(numa)} NUMA node(s), {mem:.1f} GiB")
    caches = [f"L{c.get('level')} {c.get('type', '')} {(c.get('size_bytes') or 0) // 1024} KiB"
              f" x{c.get('count')}" for c in topo.get("caches") or []]
    if caches:
        parts.append("caches " + ", ".join(caches))
    gpus = topo.get("gpus") or []
    parts.append(f"{len(gpus)} GPU(s)" + (": " + ", ".join(str(g.get("name")) for g in gpus)
                                          if gpus else ""))
    return "; ".join(parts)


def environment(rd: RunData) -> dict[str, Any]:
    from .. import __version__
    from .._kfm import version

    topo = rd.backend_details("hwloc")
    summ = rd.report["summary"]
    return {
        "level": rd.level.name,
        "requested_level": rd.requested.name,
        "kfm_debugging": __version__,
        "engine": version,
        "python": platform.python_version(),
        "packages": {p: package_version(p) for p in _PACKAGES},
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "clock": summ.get("clock"),
        "sampler_hz": summ.get("rate_hz"),
        "backends": [{"name": b["name"], "enabled": bool(b["enabled"]),
                      "available": bool(b["available"]), "reason": b["reason"]}
                     for b in rd.report["backends"]],
        "topology": topo,
        "topology_summary": topology_summary(topo),
    }
