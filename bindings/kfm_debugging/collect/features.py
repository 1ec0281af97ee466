"""LangGraph features a benchmark flag turns on, applied to the graph for real.

A benchmark config or an optimization strategy is a set of flags; they reach
the graph's nodes as ``config["configurable"]``, so a node can read them.  A
flag that names a LangGraph feature is not left to the nodes: comparing
"with cache" against "without" measures nothing unless LangGraph really
caches, so the graph is rebuilt with that feature on.  This is the only
place outside the hooks that knows how a compiled graph is put together.

Flags recognised (any other flag is only passed in ``configurable``):

  cache_enabled / enable_caching  (True)
      LangGraph's node cache: the graph is recompiled from its builder with
      an ``InMemoryCache`` (the graph's own cache when it has one) and a
      default ``CachePolicy`` (the node's input pickled as the key, no
      expiry) on every node that has none.  A node whose input repeats is
      then not run again: its result comes from the cache.  Error-handler
      nodes are left uncached, as LangGraph itself does.  A graph without a
      builder (a Pregel built by hand, an ``@entrypoint``) cannot be
      recompiled: the flag is then reported as not applied, with why.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import weakref
from collections.abc import Mapping
from typing import Any

from .runner import graph_kind

log = logging.getLogger("kfm_debugging")

CACHE_FLAGS = ("cache_enabled", "enable_caching")
FEATURE_FLAGS = CACHE_FLAGS

# One cached variant per original graph: the Debugger keeps an engine session
# per graph it runs, so a new variant for every benchmark would leave one
# session behind each time.  Per graph, one variant per key (the flags): the
# cache key is the node's input only, so configs whose other flags differ
# must not share a cache and be served each other's results.
_CACHED: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
# The variants whose cache this module made (and so may empty).
_OWN_CACHE: weakref.WeakSet[Any] = weakref.WeakSet()


def node_cache_unsupported(graph: Any) -> str | None:
    """Why with_node_cache cannot rebuild graph, or None when it can."""
    kind = graph_kind(graph)
    if kind is None:
        return f"not a LangGraph graph ({type(graph).__name__})"
    builder = graph if kind == "builder" else getattr(graph, "builder", None)
    if graph_kind(builder) != "builder" or not hasattr(builder, "nodes"):
        return ("the graph has no builder to recompile from (a Pregel built directly or by "
                "@entrypoint): LangGraph's node cache is set when a StateGraph is compiled")
    return None


def with_node_cache(graph: Any, key: str = "") -> Any | None:
    """graph recompiled with LangGraph's node cache, or None when it has no
    builder (node_cache_unsupported says why).

    The user's graph is left as it was: the builder is copied and each node
    spec replaced, since compiling writes defaults into the specs.  The same
    variant comes back for the same graph and key, its cache emptied, so
    that every benchmark starts cold and its warm-up run is the one that
    fills it; another key gets another variant with its own cache."""
    if node_cache_unsupported(graph) is not None:
        return None
    try:
        per_key = _CACHED.setdefault(graph, {})
    except TypeError:  # unhashable graph: no reuse
        per_key = {}
    variant = per_key.get(key)
    if variant is None:
        variant = per_key[key] = _recompile_cached(graph)
    elif variant in _OWN_CACHE:
        variant.cache.clear()
    return variant


def _recompile_cached(graph: Any) -> Any:
    from langgraph.cache.memory import InMemoryCache
    from langgraph.types import CachePolicy

    compiled = graph_kind(graph) == "compiled"
    src = graph.builder if compiled else graph
    builder = _copy_builder(src)
    policy = CachePolicy()
    builder.nodes = {
        name: (spec if spec.cache_policy is not None or getattr(spec, "is_error_handler", False)
               else dataclasses.replace(spec, cache_policy=policy))
        for name, spec in builder.nodes.items()
    }
    cache = getattr(graph, "cache", None) if compiled else None
    own = cache is None
    kw: dict[str, Any] = {"cache": InMemoryCache() if own else cache}
    if compiled:
        # What the graph was compiled with, so that only the cache differs.
        accepted = inspect.signature(builder.compile).parameters
        carried = {
            "checkpointer": getattr(graph, "checkpointer", None),
            "store": getattr(graph, "store", None),
            "interrupt_before": getattr(graph, "interrupt_before_nodes", None) or None,
            "interrupt_after": getattr(graph, "interrupt_after_nodes", None) or None,
            "debug": getattr(graph, "debug", False),
            "name": getattr(graph, "name", None),
            "transformers": list(getattr(graph, "stream_transformers", None) or ()) or None,
        }
        kw.update({k: v for k, v in carried.items() if k in accepted})
    variant = builder.compile(**kw)
    if own:
        _OWN_CACHE.add(variant)
    log.debug("node cache: %s recompiled with %s on %d node(s)", getattr(graph, "name", "graph"),
              type(kw["cache"]).__name__, len(builder.nodes))
    return variant


def _copy_builder(src: Any) -> Any:
    """A shallow copy of a StateGraph that compiles without touching src.

    A builder whose node defaults name an error handler gets that handler
    node added by its first compile, and a second compile refuses to add it
    again; the copy leaves the generated node out for compile to re-add."""
    import copy

    b = copy.copy(src)
    b.nodes = dict(src.nodes)
    defaults = getattr(src, "_node_defaults", None)
    if getattr(defaults, "error_handler", None) is not None:
        try:
            from langgraph.graph.state import _DEFAULT_ERROR_HANDLER_NODE
        except ImportError:  # pragma: no cover - other LangGraph versions
            return b
        b.nodes.pop(_DEFAULT_ERROR_HANDLER_NODE, None)
    return b


def apply_features(graph: Any | None, flags: Mapping[str, Any]) -> tuple[Any | None, list[str]]:
    """(the graph to run, notes): graph with the LangGraph features flags
    turn on, or None for the caller's default graph (with notes: a feature
    flag could not be applied), and one note per feature flag saying what
    was applied or why not."""
    notes: list[str] = []
    on = [k for k in CACHE_FLAGS if flags.get(k)]
    if not on:
        return None, notes
    what = "/".join(on)
    if graph is None:
        notes.append(f"{what}: node cache not applied: no graph given to recompile "
                     "(the flag only reached the nodes in configurable)")
        return None, notes
    why = node_cache_unsupported(graph)
    if why is not None:
        notes.append(f"{what}: node cache not applied: {why}")
        return None, notes
    variant = with_node_cache(graph, key=repr(sorted(flags.items(), key=lambda kv: str(kv[0]))))
    cached = sum(1 for s in variant.builder.nodes.values() if s.cache_policy is not None)
    notes.append(f"{what}: LangGraph node cache on ({type(variant.cache).__name__}, "
                 f"{cached} of {len(variant.builder.nodes)} node(s) with a CachePolicy)")
    return variant, notes
