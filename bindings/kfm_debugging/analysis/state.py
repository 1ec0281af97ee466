"""State size: the timeline, each node's impact, the analysis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import Section, StateImpact, StateSizeAnalysis, StateSizeTimeline

if TYPE_CHECKING:
    from ..collect.run import RunData


def state_availability(rd: RunData) -> Section:
    if not rd.rec.state_tracking:
        return Section(False, f"state tracking was off for this run (default from "
                              f"ProfilingLevel.DETAILED; this run: {rd.level.name}; "
                              f"pass Debugger(..., state_tracking=True) to force it)")
    if not rd.rec.state_timeline:
        return Section(False, "no superstep applied writes")
    return Section()


def state_size_timeline(rd: RunData) -> StateSizeTimeline:
    av = state_availability(rd)
    if not av.available:
        return StateSizeTimeline(available=False, reason=av.reason, points=[])
    return StateSizeTimeline(available=True, reason="",
                             measure="deep sizeof of state channels",
                             points=[dict(p) for p in rd.rec.state_timeline])


def node_state_impact(rd: RunData) -> dict[str, StateImpact]:
    """Per node: how much each superstep it ran in changed the state.
    Raises Unavailable (a RuntimeError) without state tracking."""
    state_availability(rd).require("state size")
    out: dict[str, StateImpact] = {}
    tl = rd.rec.state_timeline
    for prev, cur in zip(tl, tl[1:]):
        names = [n for n in cur["nodes"] if not n.startswith("__")]
        if not names:
            continue
        db = cur["size_bytes"] - prev["size_bytes"]
        di = cur["items"] - prev["items"]
        written = cur.get("written") or {}
        wb = {n: written.get(n, (0, 0))[0] for n in names}
        wi = {n: written.get(n, (0, 0))[1] for n in names}
        sb, si = sum(wb.values()), sum(wi.values())
        for n in names:
            # One node: the step's change.  Several (parallel branches):
            # the change shared in proportion to what each wrote.
            fb = wb[n] / sb if sb else 1.0 / len(names)
            fi = wi[n] / si if si else 1.0 / len(names)
            s = out.setdefault(n, StateImpact(n, 0, 0, 0, 0))
            s.steps += 1
            s.bytes_delta += round(db * fb)
            s.items_delta += round(di * fi)
            s.max_state_bytes = max(s.max_state_bytes, cur["size_bytes"])
    return out


def state_size_analysis(rd: RunData) -> StateSizeAnalysis:
    av = state_availability(rd)
    if not av.available:
        return StateSizeAnalysis(available=False, reason=av.reason)
    tl = rd.rec.state_timeline
    # The state starts once LangGraph's own steps (input, __start__) wrote it.
    first = 0
    while first + 1 < len(tl) and all(n.startswith("__") for n in tl[first + 1]["nodes"] or ["__"]):
        first += 1
    tl = tl[first:]
    sizes = [p["size_bytes"] for p in tl]
    i_max = max(range(len(sizes)), key=sizes.__getitem__)
    return StateSizeAnalysis(
        available=True, reason="",
        measure="deep sizeof of state channels (sys.getsizeof over reachable objects)",
        initial_bytes=sizes[0], final_bytes=sizes[-1], max_bytes=sizes[i_max],
        max_after=tl[i_max]["nodes"],
        growth_bytes=sizes[-1] - sizes[0],
        initial_items=tl[0]["items"], final_items=tl[-1]["items"],
        steps=len(tl),
        measure_ms=rd.rec.state_ns / 1e6,
        nodes=node_state_impact(rd),
        unsizable_count=sum(rd.rec.unsizable.values()),
        unsizable=[{"type": t, "reason": r, "count": c}
                   for (t, r), c in rd.rec.unsizable.items()],
    )
