"""How the Debugger names its engine nodes (shared by collect/ and analysis/).

A graph node N is four engine nodes: "N" (the task), "N/setup",
"N/compute" and "N/state_update".  Nodes of subgraphs are "outer|inner".
"""

from __future__ import annotations

import hashlib

PARALLEL = "(parallel)"  # the state update of a superstep of several nodes
WARMUP = "__kfm_thread_setup__"  # one transition before the run (thread set-up)
GRAPH = "__graph__"  # the whole run
LOOP = "__loop__"  # LangGraph's own writes (input, bookkeeping)
SUFFIXES = ("/setup", "/compute", "/state_update")


def engine_name(name: str) -> str:
    """The engine's name for a node: names up to 230 bytes as they are.

    The engine accepts names up to 255 bytes (and the suffixes of SUFFIXES
    take up to 13 more); deep subgraph paths are cut from the left so the
    node's own name survives, behind a digest of the whole name so that two
    long names sharing their tail stay two nodes."""
    b = name.encode()
    if len(b) <= 230:
        return name
    digest = hashlib.blake2b(b, digest_size=6).hexdigest()
    return "..." + digest + ":" + b[-200:].decode("utf-8", "ignore")


def base_name(engine: str | None) -> str | None:
    """An engine node's graph node: the name without its span suffix."""
    if engine is None:
        return None
    for suf in SUFFIXES:
        if engine.endswith(suf):
            return engine[: -len(suf)]
    return engine


def ns_path(ns: str) -> str:
    """'outer:<id>|1|inner:<id>' -> 'outer|inner' (LangGraph's checkpoint_ns
    without task ids and numeric disambiguators)."""
    return "|".join(p.split(":", 1)[0] for p in ns.split("|") if p and not p.isdigit())
