"""Bottlenecks, what each node is, and the changes its measurements point to.

Every finding names the figures that led to it and every suggestion carries
an expected gain computed from the run (a what-if over the measured
supersteps, or the time the change removes); a figure that was not measured
is reported as unavailable, never guessed.  The thresholds below are the
only judgement calls; they are module constants so that reports can quote
them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import (
    Bottleneck,
    CpuUsage,
    CriticalPath,
    Finding,
    MemoryProfile,
    NodeAnalysis,
    NodeSuggestions,
    NodeTiming,
    StateImpact,
    Suggestion,
    Unavailable,
    WhatIf,
)
from ..model.level import ProfilingLevel
from .memory import memory_profile
from .resources import cpu_usage
from .state import node_state_impact
from .steps import critical_path, sequential_pairs, what_if
from .timing import node_timing

if TYPE_CHECKING:
    from ..collect.run import RunData

CPU_BOUND = 0.7  # Computation CPU / wall at or above: the node computes
WAITING = 0.3  # at or below: the node waits (I/O, network, sleep, locks, a model)
PREEMPTED = 3.0  # involuntary switches at least this many times the voluntary ones:
#                  a node between the two ratios was runnable, not waiting
MIN_MS = 1.0  # shorter parts are not classified (timer and scheduling noise)
PART_HEAVY = 0.25  # Setup or State update at or above this share of the node
MEMORY_MB = 32.0  # an RSS rise at or above this in one node is memory-heavy
MANY_CALLS = 3  # calls at or above this in one run: a loop
MODEL_SHARE = 0.5  # model calls at or above this share of the Computation: the model's time
LOW_IPC = 1.0  # instructions per cycle below this, with counters
L1_MISSES_PER_KINS = 20.0  # L1 data misses per 1000 instructions above this


def _check_threshold(threshold_percent: Any) -> float:
    if (isinstance(threshold_percent, bool) or not isinstance(threshold_percent, (int, float))
            or not 0 <= threshold_percent <= 100 or math.isnan(threshold_percent)):
        raise ValueError(f"threshold_percent must be a number from 0 to 100, "
                         f"not {threshold_percent!r}")
    return float(threshold_percent)


@dataclass
class Evidence:
    """What the analysis of one run reads, gathered once."""

    rd: RunData
    timing: dict[str, NodeTiming]
    cp: CriticalPath
    cpu: CpuUsage
    mem: MemoryProfile
    state: dict[str, StateImpact] | None
    state_reason: str
    structure: Any
    tokens: dict[str, dict[str, Any]] | None
    tokens_reason: str

    @property
    def total_ms(self) -> float:
        return self.cp.total_ms or 0.0

    def critical(self, name: str) -> float:
        if self.cp.available:
            return self.cp.critical_ms.get(name, 0.0)
        t = self.timing[name]
        return t.percent * self.total_ms / 100.0

    def percent(self, name: str) -> float:
        return 100.0 * self.critical(name) / self.total_ms if self.total_ms > 0 else 0.0


def gather(rd: RunData) -> Evidence:
    timing = node_timing(rd)
    cp = critical_path(rd, {n: t.total_ms for n, t in timing.items()})
    state: dict[str, StateImpact] | None = None
    state_reason = ""
    try:
        state = node_state_impact(rd)
    except Unavailable as e:
        state_reason = e.reason
    tokens = None
    tokens_reason = ""
    if rd.tokens is None:
        tokens_reason = (f"LLM token usage is collected from ProfilingLevel.DETAILED up "
                         f"(this run: {rd.level.name})" if rd.level < ProfilingLevel.DETAILED
                         else "LLM token usage was not collected: langchain_core is not usable")
    else:
        tokens = {n: {**v, "model_ms": v.get("model_ns", 0) / 1e6}
                  for n, v in rd.tokens.by_node().items()}
    return Evidence(rd=rd, timing=timing, cp=cp, cpu=cpu_usage(rd, timing),
                    mem=memory_profile(rd), state=state, state_reason=state_reason,
                    structure=rd.structure(), tokens=tokens, tokens_reason=tokens_reason)


def _unknown_node(ev: Evidence, node: Any) -> str:
    if not isinstance(node, str) or node not in ev.timing:
        known = ", ".join(repr(n) for n in ev.timing) or "none"
        raise KeyError(f"unknown node {node!r}; nodes in the last run: {known}")
    return node


# -- per-node figures ------------------------------------------------------------
def counters(rd: RunData, name: str) -> dict[str, float]:
    """Hardware counter totals of the node and the ratios they give."""
    from .common import node_metric_sum

    out: dict[str, float] = {}
    for m in rd.report["metrics"]:
        if m.get("backend") == "papi" and m["name"] != "papi.perf::TASK-CLOCK":
            v = node_metric_sum(rd, name, m["name"])
            if v is not None:
                out[m["name"]] = v

    def find(*keys: str) -> float | None:
        for k, v in out.items():
            if any(x in k.upper() for x in keys):
                return v
        return None

    ins = find("TOT_INS", "INSTRUCTIONS")
    cyc = find("TOT_CYC", "CYCLES")
    l1 = find("L1_DCM", "L1-DCACHE-LOAD-MISSES")
    if ins and cyc:
        out["ipc"] = ins / cyc
    if ins and l1 is not None:
        out["l1_dcm_per_kins"] = 1000.0 * l1 / ins
    return out


def counters_unavailable(rd: RunData) -> str | None:
    if rd.level < ProfilingLevel.COMPREHENSIVE:
        return f"hardware counters are read at ProfilingLevel.COMPREHENSIVE (this run: {rd.level.name})"
    papi = [b for b in rd.report["backends"] if b["name"] == "papi"]
    if not papi:
        return "this kfm build has no counter backend (PAPI)"
    b = papi[0]
    if not (b["enabled"] and b["available"]):
        return f"papi: {b['reason']}"
    return None


def gpu_figures(rd: RunData, name: str) -> dict[str, Any]:
    """CUPTI's kernel and copy times of the node's spans (ms), when measured."""
    if rd.level < ProfilingLevel.COMPREHENSIVE:
        return {}
    d = rd.backend_details("cupti")
    nodes = d.get("nodes") if isinstance(d, dict) else None
    if not isinstance(nodes, dict):
        return {}
    out = {"kernel_ms": 0.0, "launches": 0, "memcpy_ms": 0.0, "sync_ms": 0.0}
    seen = False
    for suf in ("", "/setup", "/compute", "/state_update"):
        en = rd.enode(name + suf)
        t = nodes.get(str(en["id"])) if en else None
        if t:
            seen = True
            out["kernel_ms"] += t.get("kernel_ns", 0) / 1e6
            out["launches"] += t.get("launches", 0)
            out["memcpy_ms"] += t.get("memcpy_ns", 0) / 1e6
            out["sync_ms"] += t.get("sync_ns", 0) / 1e6
    return out if seen else {}


def _findings(ev: Evidence, name: str) -> tuple[list[Finding], str | None, dict[str, str]]:
    """A node's classes with their evidence, why it is slow by nature (or
    None), and the figures that could not be used; computed once per node
    (bottlenecks, suggestions and the node's analysis all ask), a copy each
    time since callers add to the unavailable figures."""
    key = ("findings", name)
    got = ev.rd.memo.get(key)
    if got is None:
        got = ev.rd.memo[key] = _classify(ev, name)
    found, nature, unavailable = got
    return list(found), nature, dict(unavailable)


def _classify(ev: Evidence, name: str) -> tuple[list[Finding], str | None, dict[str, str]]:
    t = ev.timing[name]
    rd = ev.rd
    out: list[Finding] = []
    unavailable: dict[str, str] = {}
    nature = None
    r = ev.cpu.nodes.get(name) if ev.cpu.available else None
    if r is None:
        unavailable["cpu"] = ev.cpu.reason or "no CPU time for this node"
    comp = t.computation_ms
    comp_cpu = r.computation_cpu_ms if r is not None else None
    tok = (ev.tokens or {}).get(name)
    if comp >= MIN_MS and comp_cpu is not None:
        ratio = comp_cpu / comp
        fig = {"computation_ms": round(comp, 3), "computation_cpu_ms": round(comp_cpu, 3),
               "cpu_ratio": round(ratio, 3), "cpu_source": r.cpu_source}
        vol = r.voluntary_switches or 0.0
        invol = r.involuntary_switches or 0.0
        # Off the CPU without having blocked: descheduled while runnable (the
        # machine's CPUs were busy), not waiting for anything.
        preempted = ratio > WAITING and invol >= PREEMPTED * max(vol, 1.0)
        if ratio >= CPU_BOUND or preempted:
            fig.update(voluntary_switches=vol, involuntary_switches=invol)
            out.append(Finding("cpu-bound", f"computes: CPU {comp_cpu:.1f} ms of "
                               f"{comp:.1f} ms in its function ({100 * ratio:.0f}%)"
                               + (f"; off the CPU only when preempted ({invol:.0f} involuntary "
                                  f"switches, {vol:.0f} voluntary): the CPUs were busy"
                                  if ratio < CPU_BOUND else ""), fig))
        elif ratio <= WAITING:
            wait = comp - comp_cpu
            what = []
            for key, label in (("voluntary_switches", "voluntary context switches"),
                               ("io_read_bytes", "bytes read"), ("io_write_bytes", "bytes written"),
                               ("net_rx_bytes", "bytes received"), ("net_tx_bytes", "bytes sent")):
                v = getattr(r, key, None)
                if v:
                    fig[key] = v
                    what.append(f"{v:.0f} {label}")
            fig["wait_ms"] = round(wait, 3)
            out.append(Finding("waiting", f"waits {wait:.1f} ms of {comp:.1f} ms in its function "
                               f"(CPU {comp_cpu:.1f} ms, {100 * ratio:.0f}%)"
                               + (": " + ", ".join(what) if what else ""), fig))
        else:
            out.append(Finding("mixed", f"CPU {comp_cpu:.1f} ms of {comp:.1f} ms in its "
                               f"function ({100 * ratio:.0f}%): part computing, part waiting", fig))
    if tok and tok.get("calls"):
        model_ms = tok.get("model_ms")
        fig = {k: tok[k] for k in ("calls", "input_tokens", "output_tokens", "total_tokens")
               if k in tok}
        if model_ms is not None:
            fig["model_ms"] = round(model_ms, 3)
        summ = (f"{tok['calls']} model call(s), {tok.get('total_tokens', 0)} tokens"
                + (f", {model_ms:.1f} ms in the model" if model_ms is not None else ""))
        out.append(Finding("model-call", summ, fig))
        share = model_ms / comp if model_ms is not None and comp > 0 else None
        if share is not None and share >= MODEL_SHARE and tok["calls"] <= max(t.calls, 1):
            nature = (f"{100 * share:.0f}% of its function is {tok['calls']} model call(s) "
                      f"({model_ms:.1f} ms, {tok.get('total_tokens', 0)} tokens): the time is the "
                      f"model's, not the graph's")
    for part, ms in (("setup", t.setup_ms), ("state-update", t.state_update_ms)):
        if ms >= MIN_MS and t.total_ms > 0 and ms / t.total_ms >= PART_HEAVY:
            fig = {f"{part.replace('-', '_')}_ms": round(ms, 3), "total_ms": round(t.total_ms, 3)}
            label = "Setup (task preparation, input reading)" if part == "setup" else \
                "State update (writes, routing, reducers)"
            if part == "state-update" and ev.state is not None and name in ev.state:
                si = ev.state[name]
                fig.update(state_bytes_delta=si.bytes_delta, max_state_bytes=si.max_state_bytes,
                           steps=si.steps)
                label += (f"; the state changed by {si.bytes_delta:+d} bytes over {si.steps} "
                          f"step(s), up to {si.max_state_bytes} bytes")
            out.append(Finding(f"{part}-heavy", f"{label}: {ms:.1f} ms of {t.total_ms:.1f} ms "
                               f"({100 * ms / t.total_ms:.0f}%)", fig))
    if ev.mem.available:
        nm = ev.mem.nodes.get(name)
        if nm is not None:
            rise = max(nm.peak_mb or 0.0, nm.impact_mb)
            if rise >= MEMORY_MB:
                out.append(Finding("memory-heavy", f"RSS rose {rise:.1f} MB while it ran "
                                   f"(kept after it: {nm.impact_mb:+.1f} MB)",
                                   {"peak_rise_mb": round(rise, 3),
                                    "impact_mb": round(nm.impact_mb, 3),
                                    "peak_rss_mb": nm.peak_rss_mb}))
    else:
        unavailable["memory"] = ev.mem.reason
    if t.attempts > t.calls and t.calls:
        out.append(Finding("retries", f"{t.attempts - t.calls} failed attempt(s) over "
                           f"{t.calls} call(s)", {"attempts": t.attempts, "calls": t.calls}))
    if t.calls >= MANY_CALLS:
        out.append(Finding("many-calls", f"called {t.calls} times, {t.average_ms:.2f} ms each "
                           f"on average", {"calls": t.calls, "average_ms": round(t.average_ms, 3)}))
    cu = counters_unavailable(rd)
    if cu:
        unavailable["counters"] = cu
    else:
        c = counters(rd, name)
        if "ipc" in c and c["ipc"] < LOW_IPC and comp >= MIN_MS:
            out.append(Finding("low-ipc", f"{c['ipc']:.2f} instructions per cycle: stalls "
                               f"(memory, dependencies)", {"ipc": round(c["ipc"], 3)}))
        if c.get("l1_dcm_per_kins", 0.0) > L1_MISSES_PER_KINS:
            out.append(Finding("cache-misses", f"{c['l1_dcm_per_kins']:.1f} L1 data cache "
                               f"misses per 1000 instructions",
                               {"l1_dcm_per_kins": round(c["l1_dcm_per_kins"], 3)}))
    g = gpu_figures(rd, name)
    if g and t.total_ms > 0:
        share = g["kernel_ms"] / t.total_ms
        if share >= 0.5:
            out.append(Finding("gpu-bound", f"GPU kernels ran {g['kernel_ms']:.1f} ms of its "
                               f"{t.total_ms:.1f} ms", g))
        elif g["launches"] and any(f.kind == "waiting" for f in out):
            out.append(Finding("gpu-idle", f"it waits while its GPU kernels ran only "
                               f"{g['kernel_ms']:.1f} ms of {t.total_ms:.1f} ms", g))
    return out, nature, unavailable


# -- bottlenecks -------------------------------------------------------------------
def slow_nodes(ev: Evidence, threshold_percent: float) -> list[str]:
    """Nodes whose time on the critical path is at least threshold_percent
    of the run, slowest first."""
    thr = _check_threshold(threshold_percent)
    names = [n for n in ev.timing if ev.percent(n) >= thr and ev.critical(n) > 0]
    return sorted(names, key=lambda n: -ev.critical(n))


def slowest_node(ev: Evidence) -> str | None:
    if not ev.timing:
        return None
    return max(ev.timing, key=lambda n: (ev.critical(n), ev.timing[n].total_ms))


def bottleneck(ev: Evidence, name: str) -> Bottleneck:
    """One node as a bottleneck: its time, its share of the critical path,
    its findings."""
    _unknown_node(ev, name)
    t = ev.timing[name]
    f, nature, unav = _findings(ev, name)
    if not ev.cp.available:
        unav["critical path"] = ev.cp.reason
    return Bottleneck(name=name, execution_time=t.total_ms, critical_ms=ev.critical(name),
                      percent=ev.percent(name), calls=t.calls, findings=f,
                      slow_by_nature=nature, unavailable=unav)


def bottlenecks(ev: Evidence, threshold_percent: float) -> dict[str, Bottleneck]:
    return {n: bottleneck(ev, n) for n in slow_nodes(ev, threshold_percent)}


def as_bottlenecks(ev: Evidence, b: Any) -> dict[str, Bottleneck]:
    """bottlenecks()' result as given, node names (a name or an iterable),
    or None: the bottlenecks at the default threshold (10%)."""
    if b is None:
        return bottlenecks(ev, 10.0)
    if isinstance(b, dict) and all(isinstance(x, Bottleneck) for x in b.values()):
        return dict(b)
    if isinstance(b, str):
        b = [b]
    try:
        names = list(b)
    except TypeError:
        raise TypeError(f"bottlenecks must be identify_bottlenecks()'s result or node "
                        f"names, not {type(b).__name__}") from None
    return {n: bottleneck(ev, n) for n in names}


# -- suggestions ---------------------------------------------------------------------
def _writes(ev: Evidence, name: str) -> tuple[frozenset[str] | None, str]:
    w = ev.rd.rec.wrote.get(name)
    if w is not None:
        return frozenset(w), "measured"
    io = ev.structure.nodes.get(name) if ev.structure is not None else None
    if io is not None and io.writes is not None:
        return io.writes, "source"
    return None, ev.state_reason or "unknown"


def _parallel(ev: Evidence) -> list[Suggestion]:
    """Consecutive one-node supersteps that neither reads what the other
    writes: they could run in one superstep."""
    out: list[Suggestion] = []
    if not ev.cp.available or ev.structure is None:
        return out
    nodes = ev.structure.nodes
    for a, b in sequential_pairs(ev.cp):
        na, nb = a.nodes[0], b.nodes[0]
        ia, ib = nodes.get(na), nodes.get(nb)
        if ia is None or ib is None or ia.conditional or nb not in ia.successors:
            continue
        if ib.reads is None or ia.reads is None:
            continue
        wa, how_a = _writes(ev, na)
        wb, how_b = _writes(ev, nb)
        if wa is None or wb is None:
            continue
        if ib.reads & wa or ia.reads & wb or wa & wb:
            continue
        da, db = a.tasks[0].end_ms - a.tasks[0].start_ms, b.tasks[0].end_ms - b.tasks[0].start_ms
        gain = min(da, db)
        ev_ = {"first": na, "second": nb, "first_task_ms": round(da, 3),
               "second_task_ms": round(db, 3), f"{nb}_reads": sorted(ib.reads),
               f"{nb}_reads_from": ib.reads_how, f"{na}_writes": sorted(wa),
               f"{na}_writes_from": how_a, f"{na}_reads": sorted(ia.reads),
               f"{nb}_writes": sorted(wb), "removed_step_overhead_ms": round(
                   b.prepare_ms + b.wait_ms + b.apply_ms, 3)}
        text = (f"'{nb}' runs after '{na}' but reads none of what '{na}' writes "
                f"({', '.join(sorted(wa)) or 'nothing'}), and '{na}' reads none of what "
                f"'{nb}' writes: fan both out from '{na}''s predecessor so they run in one "
                f"superstep (the step then lasts max({da:.1f}, {db:.1f}) ms instead of both)")
        for me, other in ((na, nb), (nb, na)):
            out.append(Suggestion(
                node=me, kind="parallelize",
                issue=f"runs in its own superstep next to independent '{other}'",
                suggestion=text, expected_gain_ms=gain,
                gain_basis="the shorter of the two tasks (the removed superstep's own overhead, "
                           f"{b.prepare_ms + b.wait_ms + b.apply_ms:.2f} ms, comes on top)",
                evidence=ev_, also=[other]))
    return out


def _repeated_inputs(ev: Evidence, name: str) -> tuple[int, str]:
    """How many of the node's runs had an input it had seen before in this
    run (same versions of every channel it reads), and why unknown."""
    rec = ev.rd.rec
    if ev.state is None:
        return 0, ev.state_reason
    tl = rec.state_timeline
    vers = rec.st_versions
    io = ev.structure.nodes.get(name) if ev.structure is not None else None
    reads = io.reads if io is not None else None
    seen: set[tuple[Any, ...]] = set()
    repeats = 0
    for j in range(1, min(len(tl), len(vers))):
        if name not in tl[j]["nodes"]:
            continue
        before = vers[j - 1]
        if not before:
            return 0, "LangGraph kept no channel versions"
        keys = sorted(before) if reads is None else sorted(reads)
        key = tuple((k, before.get(k)) for k in keys)
        if key in seen:
            repeats += 1
        seen.add(key)
    return repeats, ""


def node_suggestions(ev: Evidence, name: str) -> list[Suggestion]:
    """Every suggestion for the node: estimates by expected gain, then upper
    bounds by gain."""
    _unknown_node(ev, name)
    t = ev.timing[name]
    findings, nature, _u = _findings(ev, name)
    kinds = {f.kind: f for f in findings}
    out = [s for s in _parallel(ev) if s.node == name]
    rd = ev.rd
    top = "|" not in name
    if "waiting" in kinds and nature is None and top:
        f = kinds["waiting"]
        cpu = f.evidence["computation_cpu_ms"]
        wi = what_if(rd, name, t.computation_ms / max(cpu, 1e-3))
        if t.calls >= 2:
            per = t.computation_ms / t.calls
            out.append(Suggestion(
                node=name, kind="batch", issue=f"waits in {t.calls} separate calls",
                suggestion=(f"its {t.calls} calls wait one after the other ({per:.1f} ms each): "
                            f"issue them together (a Send fan-out, a batch request or "
                            f"asyncio.gather) so the run waits about once"),
                expected_gain_ms=min(per * (t.calls - 1), wi.saved_ms),
                gain_basis="all calls but one overlapped, each as long as their mean (at most "
                           "the what-if with every wait overlapped)",
                evidence={**f.evidence, "calls": t.calls}))
        out.append(Suggestion(
            node=name, kind="concurrency", issue=f.summary,
            suggestion=("it spends its time waiting, not computing: make the waits concurrent "
                        "(an async node awaiting them together, or a thread pool inside the "
                        "node) or overlap them with other nodes (a parallel branch)"),
            expected_gain_ms=wi.saved_ms,
            gain_basis=(f"upper bound: the run replayed with the node's function as long as its "
                        f"CPU time ({cpu:.1f} ms), every wait overlapped"),
            evidence=f.evidence, upper_bound=True))
    if "cpu-bound" in kinds and top:
        f = kinds["cpu-bound"]
        wi = what_if(rd, name, 2.0)
        out.append(Suggestion(
            node=name, kind="computation", issue=f.summary,
            suggestion=("its time is its own computation: profile inside the function "
                        "(e.g. pyinstrument) for the hot lines, or move the work out of "
                        "the run (precompute, cache the result)"),
            expected_gain_ms=wi.saved_ms,
            gain_basis="the run replayed with the node's function 2x faster",
            evidence={**f.evidence, "what_if_2x_ms": round(wi.estimated_ms, 3)}))
    io = ev.structure.nodes.get(name) if ev.structure is not None else None
    cached = bool(io is not None and io.cache_policy and ev.structure.cache)
    rep, _why = _repeated_inputs(ev, name)
    if rep and not cached:
        per = t.total_ms / max(t.calls, 1)
        out.append(Suggestion(
            node=name, kind="cache",
            issue=f"ran {rep} more time(s) on an input it had already seen in this run",
            suggestion=("if it is deterministic, give it a node cache: "
                        "add_node(..., cache_policy=CachePolicy()) and compile(cache="
                        "InMemoryCache()); repeated inputs are then not recomputed"),
            expected_gain_ms=rep * per,
            gain_basis=f"{rep} repeated run(s) x {per:.2f} ms mean",
            evidence={"repeated_inputs": rep, "calls": t.calls,
                      "reads": sorted(io.reads) if io is not None and io.reads else "all"}))
    others = [x for n, x in ev.timing.items() if n != name]
    for part, kind in (("state-update", "state-update"), ("setup", "setup")):
        f = kinds.get(f"{part}-heavy")
        if f is None:
            continue
        attr = "state_update_ms" if part == "state-update" else "setup_ms"
        mine = getattr(t, attr)
        # What the same work costs where it is cheapest in this run: LangGraph's
        # own floor for preparing a task or applying a write.
        per_call = [getattr(x, attr) / max(x.calls, 1) for x in others if x.calls]
        typical = (min(per_call) if per_call else 0.0) * max(t.calls, 1)
        gain = max(mine - typical, 0.0)
        if part == "state-update":
            text = ("its writes are expensive to apply: keep less in the state (large values "
                    "by reference), or use a cheaper reducer (append instead of copying the "
                    "whole list)")
        else:
            narrow = ""
            if io is not None and io.reads is not None and len(io.reads) < len(
                    ev.structure.state_keys):
                narrow = f" it reads only {', '.join(sorted(io.reads))} ({io.reads_how}):"
            text = (f"preparing its task is expensive (input reading, configuration):{narrow} "
                    f"give it an input schema with only the keys it reads")
        out.append(Suggestion(
            node=name, kind=kind, issue=f.summary, suggestion=text, expected_gain_ms=gain,
            gain_basis=f"upper bound: down to the cheapest other node's, per call "
                       f"({typical:.2f} ms in all)",
            evidence={**f.evidence, "others_min_ms": round(typical, 3)}, upper_bound=True))
    if "retries" in kinds:
        f = kinds["retries"]
        failed = t.computation_ms * (t.attempts - t.calls) / max(t.attempts, 1)
        out.append(Suggestion(
            node=name, kind="retries", issue=f.summary,
            suggestion="its failed attempts cost time: fix the cause of the failures, or fail "
                       "faster (a timeout) before retrying",
            expected_gain_ms=failed,
            gain_basis="the failed attempts' share of its Computation (attempts of equal length)",
            evidence=f.evidence))
    if "memory-heavy" in kinds:
        f = kinds["memory-heavy"]
        out.append(Suggestion(
            node=name, kind="memory", issue=f.summary,
            suggestion="free or stream its intermediates (process in chunks, drop references "
                       "before returning) to lower the process's peak",
            expected_gain_ms=None, gain_basis=f"memory: up to {f.evidence['peak_rise_mb']:.1f} MB "
                                              f"of peak RSS, no time gain measured",
            evidence=f.evidence))
    # A change worth less than the timer's noise is not worth suggesting.
    out = [s for s in out if s.expected_gain_ms is None or s.expected_gain_ms >= MIN_MS]
    # Estimates first, then upper bounds, each by gain.
    out.sort(key=lambda s: (s.upper_bound, -(s.expected_gain_ms or 0.0)))
    return out


def suggestions_for(ev: Evidence, names: list[str]) -> dict[str, NodeSuggestions]:
    out: dict[str, NodeSuggestions] = {}
    for name in names:
        _unknown_node(ev, name)
        sug = node_suggestions(ev, name)
        _f, nature, _u = _findings(ev, name)
        if sug:
            best = sug[0]
            out[name] = NodeSuggestions(node=name, issue=best.issue, suggestion=best.suggestion,
                                        expected_gain_ms=best.expected_gain_ms, suggestions=sug,
                                        slow_by_nature=nature)
        elif nature is not None:
            out[name] = NodeSuggestions(node=name, issue="slow by nature: " + nature,
                                        suggestion="none in the graph: the time is the model's "
                                                   "(a smaller or faster model, fewer tokens)",
                                        expected_gain_ms=None, suggestions=[],
                                        slow_by_nature=nature)
        else:
            out[name] = NodeSuggestions(node=name, issue="no measured cause found",
                                        suggestion="none: no measurement of this run points to "
                                                   "a change", expected_gain_ms=None)
    return out


# -- one node ------------------------------------------------------------------------
def node_analysis(ev: Evidence, name: str) -> NodeAnalysis:
    _unknown_node(ev, name)
    rd = ev.rd
    t = ev.timing[name]
    findings, nature, unav = _findings(ev, name)
    res = ev.cpu.nodes.get(name) if ev.cpu.available else None
    mem = ev.mem.nodes.get(name) if ev.mem.available else None
    st = ev.state.get(name) if ev.state is not None else None
    if ev.state is None:
        unav["state"] = ev.state_reason
    cu = counters_unavailable(rd)
    g = gpu_figures(rd, name)
    if not g:
        gu = "GPU figures come from CUPTI at ProfilingLevel.COMPREHENSIVE"
        if rd.level >= ProfilingLevel.COMPREHENSIVE:
            b = [x for x in rd.report["backends"] if x["name"] == "cupti"]
            gu = f"cupti: {b[0]['reason']}" if b and b[0]["reason"] else \
                "no GPU activity was attributed to this node"
        unav["gpu"] = gu
    whatifs: list[WhatIf] = []
    if ev.cp.available:
        for k in (2.0, math.inf):
            whatifs.append(what_if(rd, name, k))
    else:
        unav["what-if"] = ev.cp.reason
    tok = (ev.tokens or {}).get(name)
    if ev.tokens is None:
        unav["tokens"] = ev.tokens_reason
    return NodeAnalysis(
        name=name, level=rd.level.name, timing=t, critical_ms=ev.critical(name),
        percent=ev.percent(name), slack_ms=ev.cp.slack_ms.get(name, 0.0) if ev.cp.available
        else 0.0, resources=res, memory=mem, state=st,
        counters={} if cu else counters(rd, name), gpu=g, tokens=dict(tok) if tok else None,
        findings=findings, slow_by_nature=nature, what_if=whatifs, unavailable=unav)


def estimate_speedup(ev: Evidence, name: str, factor: float) -> WhatIf:
    _unknown_node(ev, name)
    if not ev.cp.available:
        raise Unavailable("what-if", ev.cp.reason)
    return what_if(ev.rd, name, factor)


__all__ = ["Evidence", "as_bottlenecks", "bottleneck", "bottlenecks", "estimate_speedup", "gather", "node_analysis",
           "node_suggestions", "slow_nodes", "slowest_node", "suggestions_for"]
