"""Benchmarks and optimization experiments on real LangGraph graphs, run
through a real Debugger.measure: a flag that makes one node 30 ms slower is
found on that node and in the total, equal configs give "no significant
difference" (false positives counted), LangGraph's node cache really used by
a caching strategy, interleaved and rotated order, uncounted warm-ups,
callable configs, failing configs, bad configs, the JSON round trip.

Sleeps are a few ms, so that the whole file stays short; a significance test
that should not fire is allowed to fire at its 5% rate, so the assertions
that a difference is absent are taken over a few repetitions.
"""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

import pytest
from conftest import chain
from langchain_core.runnables import RunnableConfig

from kfm_debugging import Debugger
from kfm_debugging.collect.features import (
    apply_features,
    node_cache_unsupported,
    with_node_cache,
)
from kfm_debugging.model.bench import BenchComparison, BenchmarkResults, ExperimentResults
from kfm_debugging.render import bench as render_bench
from kfm_debugging.workflows.benchmark import (
    compare_benchmark_configs,
    recommended_strategy,
    run_benchmark,
    run_optimization_experiments,
)


def sleeper(ms: float, key: str) -> Any:
    def node(s: dict[str, Any]) -> dict[str, Any]:
        time.sleep(ms / 1000)
        return {key: 1} if key != "items" else {"items": [1]}
    return node


def maybe_slow(s: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    # 30 ms more when the benchmark config sets the flag "slow".
    time.sleep(0.002 + (0.030 if config["configurable"].get("slow") else 0.0))
    return {"out": "done"}


def debugger(*nodes: tuple[str, Any]) -> Debugger:
    return Debugger(chain(*nodes).compile(), profiling_level="BASIC")


def features(d: Debugger) -> Any:
    """What the Debugger passes: feature flags applied to its graph."""
    return partial(apply_features, d.graph)


# -- statistics on real runs -------------------------------------------------------
def test_slow_flag_is_found_on_its_node_only() -> None:
    # The slow node is last: right after a 30 ms idle, LangGraph's own
    # bookkeeping for the next node runs cold (measured ~0.1 ms slower, a
    # real difference the node comparison rightly reports), which is not what
    # this test is about.
    d = debugger(("a", sleeper(2, "n")), ("c", sleeper(2, "items")), ("b", maybe_slow))
    cfg = {"runs": 8, "configs": [{"name": "fast"}, {"name": "slow", "slow": True}],
           "test_cases": [{"input": "x", "id": "one"}]}
    only = []
    for _ in range(3):
        r = run_benchmark(d.measure, cfg, features=features(d))
        cmp = compare_benchmark_configs(r, "fast", "slow")
        case = cmp.cases["one"]
        # A real 30 ms difference is found every time, in the node and the total.
        assert case.total.significant and case.total.comparison.delta > 25
        assert case.nodes["b"].significant and case.nodes["b"].comparison.delta > 25
        assert cmp.verdict.startswith("slow is slower than fast on 1 of 1 case(s)")
        only.append(not case.nodes["a"].significant and not case.nodes["c"].significant)
        if only[-1]:
            break
    # The unchanged nodes: a false positive is allowed at its rate, not always.
    assert any(only), only
    back = compare_benchmark_configs(r, "slow", "fast")
    assert back.verdict.startswith("fast is faster than slow")
    text = render_bench.bench_comparison(cmp)
    assert "Verdict: slow is slower than fast" in text and "b: slower: +" in text


def test_equal_configs_no_significant_difference() -> None:
    # One node: each comparison costs bootstraps (~0.3 s), and the verdict
    # rests on the total.
    d = debugger(("a", sleeper(3, "n")))
    cfg = {"runs": 8, "configs": [{"name": "A", "same": 1}, {"name": "B", "same": 1}],
           "test_cases": [{"input": "x"}]}
    verdicts = []
    for _ in range(5):
        cmp = compare_benchmark_configs(run_benchmark(d.measure, cfg, features=features(d)), "A", "B")
        verdicts.append(cmp.verdict)
    false_positives = sum(not v.startswith("no significant difference") for v in verdicts)
    print(f"A/A false positives: {false_positives} of 5")
    assert false_positives <= 1, verdicts


def test_caching_strategy_uses_langgraph_cache_and_wins() -> None:
    d = debugger(("prep", sleeper(1, "n")), ("slow", sleeper(20, "out")))
    strategies = {"baseline": {}, "caching": {"enable_caching": True}}
    res = run_optimization_experiments(d.measure, {"input": "same every run"}, strategies,
                                       runs_per_strategy=6, features=features(d))
    assert res.baseline == "baseline" and "named 'baseline'" in res.baseline_reason
    # LangGraph's cache really served the node: the warm-up filled it, and
    # no counted run called the node again.
    assert [f["nodes"]["slow"]["calls"] for f in res.figures["caching"]] == [0] * 6
    assert [f["nodes"]["slow"]["calls"] for f in res.figures["baseline"]] == [1] * 6
    assert res.stats["caching"].nodes["slow"].median < 5 < res.stats["baseline"].nodes["slow"].median
    assert "LangGraph node cache on" in res.features["caching"][0]
    assert res.recommendation == "caching"
    assert res.recommendation_reason.startswith("caching is significantly faster than baseline")
    assert recommended_strategy(res) == (res.recommendation, res.recommendation_reason)
    # The user's graph is left as it was.
    assert d.graph.cache is None and d.graph.builder.nodes["slow"].cache_policy is None
    text = render_bench.optimization_experiments(res)
    assert "Recommended strategy: caching" in text and "vs baseline" in text


def test_equal_strategies_recommend_baseline_with_reason() -> None:
    d = debugger(("a", sleeper(3, "n")))
    got = []
    for _ in range(3):
        res = run_optimization_experiments(d.measure, {"input": "x"},
                                           {"plain": {}, "tweaked": {"noop": True}},
                                           runs_per_strategy=5)
        assert res.baseline == "plain" and "no flags" in res.baseline_reason
        got.append(res.recommendation)
        if got.count("plain") == 2:
            break
    # The test is one-sided (faster only): ~2.5% false positives a try.
    assert got.count("plain") >= 2, got
    assert res.recommendation_reason.startswith(
        "no strategy is significantly faster than plain: tweaked ")
    assert "p=" in res.recommendation_reason


def test_baseline_is_the_first_when_every_strategy_sets_flags() -> None:
    d = debugger(("a", sleeper(0, "n")))
    res = run_optimization_experiments(d.measure, {"input": "x"},
                                       {"x1": {"x": 1}, "x2": {"x": 2}}, runs_per_strategy=1)
    assert res.baseline == "x1" and "first strategy" in res.baseline_reason
    assert res.recommendation == "x1" and "too few runs" in res.recommendation_reason


# -- order, warm-up, configs ----------------------------------------------------------
def test_order_interleaved_rotated_and_warmup_not_counted() -> None:
    seen: list[dict[str, Any]] = []
    first_call: dict[str, bool] = {}
    paid: list[int] = []

    def node(s: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        flags = dict(config["configurable"])
        seen.append(flags)
        key = f"{flags.get('v')}/{s['input']}"
        if key not in first_call:  # a first run per config and case pays a 40 ms set-up
            first_call[key] = True
            paid.append(len(seen) - 1)  # which run paid it, in execution order
            time.sleep(0.04)
        return {"n": 1}

    d = debugger(("a", node))
    cfg = {"runs": 4, "configs": [{"name": "x", "v": 1}, {"name": "y", "v": 2},
                                  {"name": "z", "v": 3}],
           "test_cases": [{"input": "p", "id": "p"}, {"input": "q", "id": "q"}]}
    r = run_benchmark(d.measure, cfg)
    warm = [o for o in r.order if o["repetition"] is None]
    counted = [o for o in r.order if o["repetition"] is not None]
    assert r.order[:6] == warm and len(warm) == 6 and len(counted) == 4 * 2 * 3
    # Each (repetition, case) runs every config once, rotated by one each time.
    blocks = [[o["config"] for o in counted[i:i + 3]] for i in range(0, len(counted), 3)]
    names = ["x", "y", "z"]
    for k, b in enumerate(blocks):
        rep, case = divmod(k, 2)
        s = (rep + case) % 3
        assert b == names[s:] + names[:s]
    assert {b[0] for b in blocks} == set(names)
    # The flags reached the nodes in configurable.
    assert {f["v"] for f in seen} == {1, 2, 3}
    # The warm-ups took the 40 ms set-ups: no counted run did (which run paid
    # is recorded, not inferred from times a loaded machine can stretch).
    assert sorted(paid) == list(range(6)) and all(r.order[i]["repetition"] is None for i in paid)
    for c in names:
        for case in ("p", "q"):
            assert r.stats[c][case].total.n == 4 and len(r.figures[c][case]) == 4
    assert "uncounted" in r.warmup_policy

    first_call.clear()
    paid.clear()
    seen.clear()
    cold = run_benchmark(d.measure, {**cfg, "warmup": False})
    assert all(o["repetition"] is not None for o in cold.order)
    assert max(cold.stats["x"]["p"].total.samples) > 35
    assert "none" in cold.warmup_policy


def test_callable_configs_and_failing_config() -> None:
    d = debugger(("a", sleeper(1, "n")))

    def rebuilt() -> Any:
        return chain(("a", sleeper(1, "n")), ("extra", sleeper(1, "out"))).compile()

    def broken() -> Any:
        def fail(s: dict[str, Any]) -> dict[str, Any]:
            raise ValueError("bad input for broken")
        return chain(("a", fail)).compile()

    def from_config() -> dict[str, Any]:
        return {"configurable": {"v": 1}}

    def five() -> int:
        return 5

    from_config.name = "as_config"  # type: ignore[attr-defined]
    cfg = {"runs": 3, "configs": [{"name": "plain"}, rebuilt, broken, from_config, five],
           "test_cases": [{"input": "x"}]}
    r = run_benchmark(d.measure, cfg)
    assert r.configs == ["plain", "rebuilt", "broken", "as_config", "five"]
    assert "expects a LangGraph graph" in r.errors["five"]["case0"].first
    assert list(r.stats["rebuilt"]["case0"].nodes) == ["a", "extra"]
    assert list(r.stats["plain"]["case0"].nodes) == ["a"]
    err = r.errors["broken"]["case0"]
    assert err.count == 3 and "ValueError: bad input for broken" in err.first
    assert r.stats["broken"]["case0"].total.n == 0
    for ok in ("plain", "rebuilt", "as_config"):
        assert r.stats[ok]["case0"].total.n == 3 and ok not in r.errors
    cmp = compare_benchmark_configs(r, "plain", "broken")
    assert "not compared" in cmp.verdict
    text = render_bench.benchmark_results(r)
    assert "3 (ValueError: bad input for broken)" in text and "median ms" in text


def test_bad_configs_raise_naming_the_value() -> None:
    d = debugger(("a", sleeper(0, "n")))
    ok = {"runs": 2, "configs": [{"name": "a"}], "test_cases": [{"input": "x"}]}
    bad = [
        ({**ok, "runs": 0}, "0"),
        ({**ok, "runs": "3"}, "'3'"),
        ({**ok, "runs": True}, "True"),
        ({**ok, "configs": []}, "configs"),
        ({**ok, "configs": [{"name": "a"}, {"name": "a", "f": 1}]}, "duplicate config name 'a'"),
        ({**ok, "configs": [{"f": 1}]}, "{'f': 1}"),
        ({**ok, "configs": [42]}, "42"),
        ({**ok, "test_cases": ["hello"]}, "'hello'"),
        ({**ok, "test_cases": [{"id": "s"}, {"id": "s"}]}, "duplicate test case id 's'"),
        ({**ok, "run": 3}, "'run'"),
        ({**ok, "warmup": "yes"}, "'yes'"),
        ({"runs": 2, "configs": [{"name": "a"}]}, "'test_cases'"),
    ]
    for cfg, says in bad:
        with pytest.raises(ValueError) as e:
            run_benchmark(d.measure, cfg)
        assert says in str(e.value), (cfg, str(e.value))
    with pytest.raises(ValueError, match="progress"):
        run_benchmark(d.measure, ok, progress="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="runs_per_strategy must be an int >= 1, not 0"):
        run_optimization_experiments(d.measure, {}, {"b": {}}, runs_per_strategy=0)
    with pytest.raises(ValueError, match="strategy 'b'"):
        run_optimization_experiments(d.measure, {}, {"b": 3})
    r = run_benchmark(d.measure, ok)
    with pytest.raises(KeyError, match="'nope'.*known: 'a'"):
        compare_benchmark_configs(r, "a", "nope")
    with pytest.raises(RuntimeError, match="run_benchmark"):
        compare_benchmark_configs(None, "a", "b")


def test_results_round_trip_json_and_quiet_without_terminal(capfd: Any) -> None:
    d = debugger(("a", sleeper(1, "n")))
    cfg = {"runs": 3, "configs": [{"name": "A"}, {"name": "B", "f": 1}],
           "test_cases": [{"input": "x", "id": "s"}]}
    r = run_benchmark(d.measure, cfg, progress=True)
    assert capfd.readouterr().err == ""  # no terminal: no progress bar
    back = BenchmarkResults.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r
    cmp = compare_benchmark_configs(back, "A", "B")
    assert cmp == compare_benchmark_configs(r, "A", "B")
    assert BenchComparison.from_dict(json.loads(json.dumps(cmp.to_dict()))) == cmp
    assert back.stats["A"]["s"]["total"].n == 3  # readable as a mapping too
    e = run_optimization_experiments(d.measure, {"input": "x"}, {"baseline": {}, "f": {"f": 1}})
    assert ExperimentResults.from_dict(json.loads(json.dumps(e.to_dict()))) == e


def test_node_cache_transform() -> None:
    from langgraph.cache.memory import InMemoryCache
    from langgraph.func import entrypoint

    g = chain(("a", sleeper(0, "n"))).compile(name="mine")
    v = with_node_cache(g)
    assert v is not None and v is not g and v.name == "mine"
    assert isinstance(v.cache, InMemoryCache) and v.builder.nodes["a"].cache_policy is not None
    assert g.cache is None and g.builder.nodes["a"].cache_policy is None
    assert with_node_cache(g) is v  # one variant per graph: one engine session
    # Configs with other flags get their own cache: the key is the input only.
    one, _ = apply_features(g, {"cache_enabled": True, "k": 1})
    two, _ = apply_features(g, {"cache_enabled": True, "k": 2})
    assert one is not two and one.cache is not two.cache
    assert apply_features(g, {"k": 1, "cache_enabled": True})[0] is one

    # A builder whose defaults add an error-handler node compiles again.
    def boom(s: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("x")

    b = chain(("a", sleeper(0, "n")), ("z", boom))
    b.set_node_defaults(error_handler=lambda s: {"out": "handled"})
    h = b.compile()
    hv = with_node_cache(h)
    assert hv is not None and hv.invoke({"input": "x"})["out"] == "handled"
    assert all(spec.cache_policy is None for spec in h.builder.nodes.values())

    @entrypoint()
    def flow(x: int) -> int:
        return x

    assert with_node_cache(flow) is None
    assert "no builder" in (node_cache_unsupported(flow) or "")
    d = Debugger(flow, profiling_level="BASIC")
    r = run_benchmark(d.measure, {"runs": 1, "configs": [{"name": "c", "cache_enabled": True}],
                                  "test_cases": [{"x": 1}]}, features=features(d))
    assert "not applied" in r.features["c"][0] and "no builder" in r.features["c"][0]
