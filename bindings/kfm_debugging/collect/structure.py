"""What each node of a compiled StateGraph reads and writes, without running it.

The analysis layer asks of two nodes that run one after the other whether
they could share a superstep (neither reads a key the other writes), and which
nodes LangGraph already caches.  Both are questions about the graph as built,
answered here because collect/ is the only layer that knows LangGraph.  The
answer is plain frozen dataclasses holding no LangGraph object, so the layers
above can keep and serialise it, and it keeps no graph alive.

Where each answer comes from:

* reads: a node whose input schema is narrower than the state is handed only
  its input channels (the compiled node's ``channels``): that is exact.
  Otherwise the node function's source is parsed with ``ast`` and its state
  parameter followed: ``state["k"]``, ``state.get("k")``, ``"k" in state``
  and ``state.k`` name keys; any other use hands the whole state to code the
  parse does not follow, so the reads are unknown (None), the use and its line
  being the reason.
* writes: the dict literals and ``Command(update=...)`` literals the function
  returns.  Any other returned value (a variable, a call) makes them unknown:
  what it holds is decided at run time.
* edges and policies: the builder's edges and branches, the compiled nodes'
  cache and retry policies, the graph's cache.

It never raises for any graph: what it cannot determine is None with a reason,
and a graph that is not a StateGraph gets no nodes and says why.  An unknown
is the safe answer for the analysis (it assumes everything), so every doubt
becomes one rather than a guess.
"""

from __future__ import annotations

import ast
import functools
import inspect
import linecache
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# The one channel of a state that is a single value (StateGraph(Annotated[
# list, add]) ...) rather than a dict of keys.
_ROOT = "__root__"
# How many wrappers (partials, bound methods, decorators) are followed to the
# function a node runs: enough for any real stack, finite for a cyclic one.
_UNWRAP_MAX = 32


@dataclass(frozen=True)
class NodeIO:
    """One node: the state keys it reads and writes, and how that is known."""

    name: str
    # State keys the node's function reads; None = unknown (assume all).
    reads: frozenset[str] | None
    # Where reads come from, or why they are unknown.
    reads_how: str
    # Keys it can write; None = unknown (assume all).
    writes: frozenset[str] | None
    writes_how: str
    cache_policy: bool
    retry_policy: bool
    # Plain edges out of the node (joins included), END as "__end__".
    successors: tuple[str, ...]
    # Conditional edges out of it, or it routes with Command(goto=...).
    conditional: bool


@dataclass(frozen=True)
class GraphStructure:
    """A graph's nodes as NodeIO, its state keys, and whether it has a cache."""

    nodes: dict[str, NodeIO]
    state_keys: tuple[str, ...]
    # The graph was compiled with a cache (a BaseCache).
    cache: bool
    # "" or why nothing could be read.
    reason: str


def graph_structure(graph: Any) -> GraphStructure:
    """The static structure of ``graph`` (a compiled graph; an uncompiled
    StateGraph is read too).  Never raises."""
    cache = _has_cache(graph)
    try:
        return _describe(graph, cache)
    except Exception as exc:  # whatever the graph holds, the answer is "unknown"
        return GraphStructure({}, (), cache, f"could not read the graph: {_exc(exc)}")


# ---------------------------------------------------------------------------
# The graph.


def _has_cache(graph: Any) -> bool:
    try:
        c = getattr(graph, "cache", None)
        if c is None:
            return False
        try:
            from langgraph.cache.base import BaseCache
        except ImportError:  # pragma: no cover - layout without the cache module
            return True
        return isinstance(c, BaseCache)
    except Exception:
        return False


def _describe(graph: Any, cache: bool) -> GraphStructure:
    try:
        from langgraph.graph.state import StateGraph
        from langgraph.pregel import Pregel
    except ImportError as exc:  # pragma: no cover
        return GraphStructure({}, (), cache, f"LangGraph cannot be imported: {_exc(exc)}")
    compiled: dict[str, Any] = {}
    if isinstance(graph, Pregel):
        builder = getattr(graph, "builder", None)
        if not isinstance(builder, StateGraph):
            return GraphStructure({}, (), cache, (
                f"not a compiled StateGraph ({_type(graph)} without a StateGraph builder, "
                "e.g. built with Pregel/NodeBuilder or the functional API @entrypoint): "
                "no state schema, edges or node functions to read"))
        compiled = dict(graph.nodes)
    elif isinstance(graph, StateGraph):
        builder = graph
    else:
        return GraphStructure({}, (), cache, f"not a LangGraph graph: {_type(graph)}")

    # Every channel a node can be given or write: the state schema's and those
    # that input schemas add (private state), plus managed values.
    state_keys = tuple(builder.channels) + tuple(
        k for k in getattr(builder, "managed", {}) if k not in builder.channels)
    succ: dict[str, set[str]] = {}
    for start, end in builder.edges:
        succ.setdefault(start, set()).add(end)
    # A join (add_edge([a, b], c)) also runs c after each of a and b.
    for starts, end in getattr(builder, "waiting_edges", ()):
        for start in starts:
            succ.setdefault(start, set()).add(end)
    branched = {src for src, branches in builder.branches.items() if branches}

    parses: dict[str, ast.Module | None] = {}
    nodes: dict[str, NodeIO] = {}
    for name, spec in builder.nodes.items():
        try:
            nodes[name] = _node_io(name, spec, compiled.get(name), builder, state_keys,
                                   tuple(sorted(succ.get(name, ()))), name in branched,
                                   parses)
        except Exception as exc:
            nodes[name] = NodeIO(name, None, f"could not read the node: {_exc(exc)}", None,
                                 f"could not read the node: {_exc(exc)}", False, False,
                                 tuple(sorted(succ.get(name, ()))), name in branched)
    return GraphStructure(nodes, state_keys, cache, "")


def _node_io(name: str, spec: Any, pnode: Any, builder: Any, state_keys: tuple[str, ...],
             successors: tuple[str, ...], branched: bool,
             parses: dict[str, ast.Module | None]) -> NodeIO:
    # The compiled node carries the builder's defaults (set_node_defaults)
    # applied at compile time; an uncompiled spec may lack them.
    policies = pnode if pnode is not None else spec
    cache_policy = getattr(policies, "cache_policy", None) is not None
    retry_policy = bool(getattr(policies, "retry_policy", None))
    conditional = branched or bool(getattr(spec, "ends", None))

    if pnode is not None:
        channels = pnode.channels
    else:
        channels = list(builder.schemas.get(spec.input_schema, ()))
        if channels == [_ROOT]:
            channels = _ROOT

    src = _source_of(spec.runnable, parses)
    if isinstance(src, str):
        reads: frozenset[str] | None = None
        reads_how = writes_how = src
        writes: frozenset[str] | None = None
    else:
        fdef, param, how, wrapped = src
        reads, reads_how = _reads(fdef, param, how, wrapped, set(state_keys))
        writes, writes_how, goto = _writes(fdef, how, set(state_keys))
        conditional = conditional or goto or _annotated_command(fdef)

    if isinstance(channels, str) or state_keys == (_ROOT,):
        # A root state (StateGraph(Annotated[list, add]) ...) is one value:
        # every node reads it whole, and any update replaces or extends it.
        reads, reads_how = frozenset((_ROOT,)), "the state is a single root value"
        writes, writes_how = frozenset((_ROOT,)), "the state is a single root value"
    elif set(channels) < set(state_keys):
        schema = getattr(spec.input_schema, "__name__", "")
        reads = frozenset(channels)
        reads_how = f"input schema {schema}".rstrip()
    return NodeIO(name, reads, reads_how, writes, writes_how, cache_policy, retry_policy,
                  successors, conditional)


# ---------------------------------------------------------------------------
# The node's function and its definition in the source.


class _Found:
    """The function a node runs, once its wrappers are taken off."""

    __slots__ = ("fn", "skip", "bound", "via")

    def __init__(self, fn: Any, skip: int, bound: frozenset[str], via: list[str]) -> None:
        self.fn = fn
        # Leading positional parameters already filled (self, partial args)
        # and keyword-bound ones: the state is the first positional one left.
        self.skip = skip
        self.bound = bound
        self.via = via


def _source_of(runnable: Any, parses: dict[str, ast.Module | None]
               ) -> str | tuple[ast.AST, str, str, bool]:
    """(definition, state parameter, description, whether it was wrapped) or
    why there is none."""
    from langchain_core.runnables import Runnable, RunnableLambda
    from langgraph.pregel import Pregel

    try:
        from langgraph._internal._runnable import RunnableCallable
        functions: tuple[type, ...] = (RunnableCallable, RunnableLambda)
    except ImportError:  # pragma: no cover - private module moved
        functions = (RunnableLambda,)
    if isinstance(runnable, Pregel):
        return (f"a subgraph ({_type(runnable)}) as node: it is handed the whole "
                "state, its own nodes decide what it reads and writes")
    if isinstance(runnable, Runnable) and not isinstance(runnable, functions):
        # A chat model, a tool, a chain: its `func`, if any, is not called
        # with the state.
        return (f"source unavailable: the node is a {_type(runnable)}, not a function "
                "(it is handed the whole state)")
    # RunnableCallable (what add_node makes of a function) and RunnableLambda
    # (generators) keep the function; a sync one's afunc is LangGraph's
    # executor wrapper, so func comes first.
    fn = getattr(runnable, "func", None) or getattr(runnable, "afunc", None)
    if fn is None or not callable(fn):
        return f"source unavailable: the node is a {_type(runnable)} without a function"
    found = _unwrap(fn)
    if isinstance(found, str):
        return found
    fdef = _definition(found.fn, parses)
    if isinstance(fdef, str):
        return fdef
    args = fdef.args  # type: ignore[attr-defined]
    params = [a.arg for a in (*args.posonlyargs, *args.args)]
    free = [p for p in params[found.skip:] if p not in found.bound]
    what = _describe_fn(found)
    if not free:
        if args.vararg is not None:
            return f"{what}: the state arrives in *{args.vararg.arg}, not followed"
        return f"{what}: no positional parameter receives the state"
    return fdef, free[0], what, bool(found.via)


def _unwrap(fn: Any) -> _Found | str:
    skip, bound, via = 0, frozenset(), []  # type: ignore[var-annotated]
    for _ in range(_UNWRAP_MAX):
        if isinstance(fn, functools.partial):
            skip += len(fn.args)
            bound |= frozenset(fn.keywords)
            via.append("functools.partial")
            fn = fn.func
        elif isinstance(fn, (staticmethod, classmethod)):
            fn = fn.__func__
        elif inspect.ismethod(fn):
            skip += 1  # self / cls
            fn = fn.__func__
        elif inspect.isfunction(fn):
            wrapped = getattr(fn, "__wrapped__", None)
            if wrapped is None or not callable(wrapped):
                return _Found(fn, skip, bound, via)
            # A functools.wraps decorator: what the node does is the wrapped
            # function's (the wrapper only passes the state on).
            via.append("a functools.wraps decorator")
            fn = wrapped
        elif callable(fn) and inspect.isfunction(getattr(type(fn), "__call__", None)):
            skip += 1  # an instance whose class defines __call__
            via.append(f"instance of {type(fn).__qualname__}")
            fn = type(fn).__call__
        else:
            name = getattr(fn, "__qualname__", None)
            named = f"{name} ({_type(fn)})" if isinstance(name, str) else _type(fn)
            return f"source unavailable: {named} is not a Python function"
    return "source unavailable: too many wrappers around the node's function"


def _describe_fn(found: _Found) -> str:
    name = getattr(found.fn, "__qualname__", "?")
    return f"{name} via {', '.join(found.via)}" if found.via else name


def _definition(fn: Any, parses: dict[str, ast.Module | None]) -> ast.AST | str:
    """fn's FunctionDef / AsyncFunctionDef / Lambda, with the file's line
    numbers, or why it cannot be found."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return f"source unavailable: {_type(fn)} has no code object"
    filename = code.co_filename
    if filename not in parses:
        parses[filename] = _parse_file(filename, getattr(fn, "__globals__", None))
    tree = parses[filename]
    hit = _find(tree, code) if tree is not None else None
    if hit is None:
        # A file that does not parse as a whole (edited since import), or no
        # file: inspect's own extraction of the block, if it has one.
        try:
            text = textwrap.dedent(inspect.getsource(fn))
            part = ast.parse(text)
        except (OSError, TypeError, SyntaxError, ValueError):
            where = f"{filename}:{code.co_firstlineno}"
            return f"source unavailable for {getattr(fn, '__qualname__', '?')} ({where})"
        ast.increment_lineno(part, code.co_firstlineno - 1)
        hit = _find(part, code, lenient=True)
        if hit is None:
            return (f"source unavailable: no single definition of {code.co_name} "
                    f"at {filename}:{code.co_firstlineno}")
    return hit


def _parse_file(filename: str, module_globals: Any) -> ast.Module | None:
    try:
        lines = linecache.getlines(filename, module_globals)
        return ast.parse("".join(lines)) if lines else None
    except Exception:  # unreadable, or not Python as it stands on disk now
        return None


def _find(tree: ast.AST, code: Any, lenient: bool = False) -> ast.AST | None:
    line = code.co_firstlineno
    n_pos = code.co_posonlyargcount + code.co_argcount
    names = list(code.co_varnames[:n_pos])

    def same_params(node: Any) -> bool:
        return [a.arg for a in (*node.args.posonlyargs, *node.args.args)] == names

    if code.co_name == "<lambda>":
        cands = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda) and same_params(n)
                 and (n.lineno == line or lenient)]
        if len(cands) > 1:
            cands = _by_position(cands, code)
    else:
        # co_firstlineno is the first decorator's line for a decorated def.
        cands = [n for n in ast.walk(tree)
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and n.name == code.co_name and same_params(n)
                 and (lenient or line in (n.lineno, *(d.lineno for d in n.decorator_list)))]
    return cands[0] if len(cands) == 1 else None


def _by_position(cands: list[ast.Lambda], code: Any) -> list[ast.Lambda]:
    """Of several lambdas on one line, the one whose span holds all of the
    code's instruction positions (the innermost if nested)."""
    positions = getattr(code, "co_positions", None)
    if positions is None:  # pragma: no cover - before 3.11
        return cands
    spans = [(ln, col, eln, ecol) for ln, eln, col, ecol in positions()
             if ln is not None and col is not None and eln is not None and ecol is not None
             and (ln, col, eln, ecol) != (code.co_firstlineno, 0, code.co_firstlineno, 0)]
    if not spans:
        return cands
    hold = [n for n in cands
            if all((n.lineno, n.col_offset) <= (ln, col)
                   and (eln, ecol) <= (n.end_lineno or 0, n.end_col_offset or 0)
                   for ln, col, eln, ecol in spans)]
    if len(hold) > 1:
        size = min(_span(n) for n in hold)
        hold = [n for n in hold if _span(n) == size]
    return hold


def _span(n: ast.Lambda) -> tuple[int, int]:
    return ((n.end_lineno or 0) - n.lineno, (n.end_col_offset or 0) - n.col_offset)


# ---------------------------------------------------------------------------
# Reads: how the function uses its state parameter.

_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _own_nodes(fdef: ast.AST) -> Iterator[ast.AST]:
    """The nodes of fdef's body in fdef's own scope: nested functions,
    lambdas and classes are yielded but not entered (comprehensions are)."""
    body: list[ast.AST] = (
        [fdef.body] if isinstance(fdef, ast.Lambda) else list(fdef.body))  # type: ignore[attr-defined]
    stack: list[ast.AST] = list(reversed(body))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, _NESTED):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _parents(fdef: ast.AST) -> dict[ast.AST, ast.AST]:
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(fdef):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    return parents


def _reads(fdef: ast.AST, p: str, what: str, wrapped: bool, keys: set[str]
           ) -> tuple[frozenset[str] | None, str]:
    parents = _parents(fdef)
    reads: dict[str, str] = {}  # key -> how it was read, first occurrence order
    other: list[tuple[int, str]] = []
    for node in _own_nodes(fdef):
        if isinstance(node, _NESTED):
            why = _captures(node, p)
            if why:
                other.append((node.lineno, why))  # type: ignore[attr-defined]
            continue
        if isinstance(node, ast.Name) and node.id == p:
            key, use = _use(node, p, parents, keys)
            if key is not None:
                reads.setdefault(key, use)
            else:
                other.append((node.lineno, use))
    if other:
        other.sort()
        line, use = other[0]
        more = f" (and {len(other) - 1} more)" if len(other) > 1 else ""
        return None, f"{use} on line {line}{more} in {what}"
    if not reads:
        return frozenset(), f"source: {p} is not read ({what})"
    # A wrapped function is named, since the node's own name does not say it.
    return frozenset(reads), f"source: {', '.join(reads.values())}" + (
        f" (in {what})" if wrapped else "")


def _captures(nested: ast.AST, p: str) -> str:
    """Why a nested function/lambda/class makes the reads unknown, or ''."""
    if not isinstance(nested, ast.ClassDef):
        a = nested.args  # type: ignore[attr-defined]
        params = {x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)}
        params |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
        # Defaults and decorators are evaluated in the enclosing scope.
        outer = [*a.defaults, *(d for d in a.kw_defaults if d is not None),
                 *getattr(nested, "decorator_list", ())]
        if any(isinstance(n, ast.Name) and n.id == p for o in outer for n in ast.walk(o)):
            return f"{p} used in the definition of an inner function"
        if p in params:
            return ""  # its own parameter of that name: another variable
    inside = nested.body  # type: ignore[attr-defined]
    body = inside if isinstance(inside, list) else [inside]
    if any(isinstance(n, ast.Name) and n.id == p for b in body for n in ast.walk(b)):
        if isinstance(nested, ast.Lambda):
            return f"{p} captured by a lambda"
        kind = "class" if isinstance(nested, ast.ClassDef) else "inner function"
        return f"{p} captured by {kind} {nested.name}"  # type: ignore[attr-defined]
    return ""


def _const_str(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _use(name: ast.Name, p: str, parents: dict[ast.AST, ast.AST], keys: set[str]
         ) -> tuple[str | None, str]:
    """(key read, how) for a read of one key, or (None, the use) otherwise."""
    if not isinstance(name.ctx, ast.Load):
        return None, f"{p} rebound" if isinstance(name.ctx, ast.Store) else f"{p} deleted"
    parent = parents.get(name)
    if isinstance(parent, ast.Subscript) and parent.value is name:
        if not isinstance(parent.ctx, ast.Load):
            return None, f"{_snip(parent)} assigned"
        key = _const_str(parent.slice)
        if key is None:
            return None, f"{p}[{_snip(parent.slice)}]"
        return key, f"{p}[{key!r}]"
    if isinstance(parent, ast.Attribute) and parent.value is name:
        call = parents.get(parent)
        called = isinstance(call, ast.Call) and call.func is parent
        if not isinstance(parent.ctx, ast.Load):
            return None, f"{p}.{parent.attr} assigned"
        if called and parent.attr == "get":
            key = _const_str(call.args[0]) if call.args else None  # type: ignore[union-attr]
            if key is None:
                return None, f"{_snip(call)}"  # type: ignore[arg-type]
            return key, f"{p}.get({key!r})"
        if called:
            return None, f"{p}.{parent.attr}() called"
        if parent.attr in keys:
            return parent.attr, f"{p}.{parent.attr}"
        return None, f"{p}.{parent.attr} (not a state key)"
    if isinstance(parent, ast.Compare):
        for i, right in enumerate(parent.comparators):
            if right is name:
                left = parent.left if i == 0 else parent.comparators[i - 1]
                key = _const_str(left)
                if key is not None and isinstance(parent.ops[i], (ast.In, ast.NotIn)):
                    return key, f"{key!r} in {p}"
        return None, f"{p} compared ({_snip(parent)})"
    # Everything below hands the whole state to other code.
    if isinstance(parent, ast.Starred):
        star = parent
        parent = parents.get(parent)
        if isinstance(parent, ast.Call):
            return None, f"*{p} passed to {_callee(parent)}"
        return None, f"*{p} unpacked ({_snip(star)})"
    if isinstance(parent, ast.keyword):
        call = parents.get(parent)
        arg = f"**{p}" if parent.arg is None else f"{p}"
        return None, f"{arg} passed to {_callee(call)}"
    if isinstance(parent, ast.Call):
        if parent.func is name:
            return None, f"{p} called"
        return None, f"{p} passed to {_callee(parent)}"
    if isinstance(parent, ast.Dict):
        unpacked = any(v is name and k is None for k, v in zip(parent.keys, parent.values))
        return None, f"{{**{p}}} unpacked" if unpacked else f"{p} stored in a dict"
    if isinstance(parent, (ast.For, ast.AsyncFor, ast.comprehension)) and parent.iter is name:
        return None, f"{p} iterated"
    if isinstance(parent, ast.Return):
        return None, f"{p} returned"
    if isinstance(parent, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
        targets = getattr(parent, "targets", None) or [parent.target]  # type: ignore[attr-defined]
        return None, f"{p} assigned to {', '.join(_snip(t) for t in targets)}"
    if isinstance(parent, (ast.Yield, ast.YieldFrom)):
        return None, f"{p} yielded"
    if isinstance(parent, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
        return None, f"{p} used in a comprehension"
    return None, f"{p} used in `{_snip(parent)}`" if parent is not None else f"{p} used"


def _callee(call: ast.AST | None) -> str:
    if isinstance(call, ast.Call):
        return f"{_snip(call.func)}()"
    return "a call"


def _snip(node: ast.AST | None, limit: int = 40) -> str:
    if node is None:
        return "?"
    try:
        text = ast.unparse(node)
    except Exception:
        return type(node).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------------------
# Writes: what the function returns.


def _writes(fdef: ast.AST, what: str, keys: set[str]
            ) -> tuple[frozenset[str] | None, str, bool]:
    """(keys written or None, how, whether a return routes with goto)."""
    if isinstance(fdef, ast.Lambda):
        returns: list[tuple[int, ast.AST | None]] = [(fdef.body.lineno, fdef.body)]
    else:
        returns = []
        for node in _own_nodes(fdef):
            if isinstance(node, ast.Return):
                returns.append((node.lineno, node.value))
            elif isinstance(node, (ast.Yield, ast.YieldFrom)):
                # A generator node's update is what it yields, combined by
                # LangGraph: not followed.
                return None, f"a generator (yield on line {node.lineno}) in {what}", False
    written: set[str] = set()
    how: list[str] = []
    goto = False
    failed = ""
    for line, value in returns:
        got, kind, routes = _returned(value, line)
        goto = goto or routes
        if got is None:
            failed = failed or f"{kind} on line {line} in {what}"
        else:
            written |= got
            how.append(f"{kind} on line {line}")
    if failed:
        return None, failed, goto
    if not returns:
        return frozenset(), f"source: no return ({what})", goto
    dropped = sorted(written - keys)
    note = ""
    if dropped:
        # LangGraph keeps only the keys that are channels of the graph.
        note = f"; not state keys, ignored by LangGraph: {', '.join(map(repr, dropped))}"
    return frozenset(written & keys), f"source: {', '.join(how)}{note}", goto


def _returned(value: ast.AST | None, line: int) -> tuple[set[str] | None, str, bool]:
    """(keys, what was returned, routes) for one returned expression; keys
    None when it is not a literal the parse can read."""
    if value is None or (isinstance(value, ast.Constant) and value.value is None):
        return set(), "None", False
    if isinstance(value, ast.Dict):
        got = _dict_keys(value)
        return (got, "dict literal", False) if got is not None else (
            None, f"returns a dict with a computed key ({_snip(value)})", False)
    if isinstance(value, ast.IfExp):
        a, ka, ga = _returned(value.body, line)
        b, kb, gb = _returned(value.orelse, line)
        if a is None or b is None:
            return None, ka if a is None else kb, ga or gb
        return a | b, f"{ka} / {kb}", ga or gb
    if isinstance(value, ast.Call) and _is_command(value.func):
        return _command(value)
    if isinstance(value, ast.Name):
        return None, f"returns the variable {value.id}", False
    if isinstance(value, ast.Call):
        return None, f"returns the result of {_callee(value)}", False
    return None, f"returns `{_snip(value)}`", False


def _dict_keys(d: ast.Dict) -> set[str] | None:
    got: set[str] = set()
    for k in d.keys:
        key = _const_str(k)
        if key is None:  # **other or a computed key
            return None
        got.add(key)
    return got


def _is_command(func: ast.AST) -> bool:
    return (isinstance(func, ast.Name) and func.id == "Command") or (
        isinstance(func, ast.Attribute) and func.attr == "Command")


def _command(call: ast.Call) -> tuple[set[str] | None, str, bool]:
    kw = {k.arg: k.value for k in call.keywords if k.arg is not None}
    goto = "goto" in kw and not (
        (isinstance(kw["goto"], ast.Constant) and kw["goto"].value in (None, ""))
        or (isinstance(kw["goto"], (ast.List, ast.Tuple)) and not kw["goto"].elts))
    if call.args or any(k.arg is None for k in call.keywords):
        return None, f"returns `{_snip(call)}`", goto
    graph = kw.get("graph")
    if graph is not None and not (isinstance(graph, ast.Constant) and graph.value is None):
        # Command(graph=Command.PARENT, ...) updates another graph's state.
        return set(), "Command(graph=...) (updates another graph)", goto
    update = kw.get("update")
    if update is None or (isinstance(update, ast.Constant) and update.value is None):
        return set(), "Command without update", goto
    if isinstance(update, ast.Dict):
        got = _dict_keys(update)
        if got is not None:
            return got, "Command(update={...})", goto
    elif isinstance(update, (ast.List, ast.Tuple)):
        # update=[("key", value), ...]
        pairs = [_const_str(e.elts[0]) if isinstance(e, ast.Tuple) and len(e.elts) == 2
                 else None for e in update.elts]
        if all(k is not None for k in pairs):
            return {k for k in pairs if k is not None}, "Command(update=[...])", goto
    return None, f"returns Command(update={_snip(update)})", goto


def _annotated_command(fdef: ast.AST) -> bool:
    """The def's return annotation names Command (it may route with goto)."""
    ann = getattr(fdef, "returns", None)
    if ann is None:
        return False
    for node in ast.walk(ann):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                inner = ast.parse(node.value, mode="eval")
            except SyntaxError:
                continue
            if any(_is_command(n) for n in ast.walk(inner)):
                return True
        elif _is_command(node):
            return True
    return False


def _type(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _exc(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
