#!/usr/bin/env python3
"""Checks a kfm export from tests/c/gpu/test_gpu_real.c against its ground truth.

usage: check_export.py EXPORT.json EXPECT.json

EXPECT holds, per node name, the exact kernel launch count and, where the
test timed its kernels with CUDA events, their total in ms; the launches
made outside every node; and the tolerance for kernel time.  Every failed
check is printed (not only the first); the exit status is 1 if any failed.
"""
import json
import sys


def main(export_path, expect_path):
    d = json.load(open(export_path))
    want = json.load(open(expect_path))
    bad = []

    def check(ok, what):
        if not ok:
            bad.append(what)

    ids = {n["name"]: str(n["id"]) for n in d["nodes"]}
    info = d.get("backend_info", {})
    c = info.get("cupti")
    if not c or not c.get("available"):
        print("cupti not available in the export: %s" % json.dumps(c))
        return 1
    gnodes = c["nodes"]
    tol = want["time_tolerance"]
    for name, w in want.items():
        if not isinstance(w, dict):
            continue
        got = c["unattributed"] if name == "unattributed" else gnodes.get(ids.get(name, "?"), {})
        launches = got.get("launches", 0)
        check(launches == w["launches"],
              "%s: %d kernel launches, want exactly %d" % (name, launches, w["launches"]))
        if "event_ms" in w:
            ns = got.get("kernel_ns", 0)
            ev = w["event_ms"] * 1e6
            check(ev > 0 and abs(ns - ev) <= tol * ev,
                  "%s: kernel time %.3f ms, CUDA events %.3f ms (tolerance %.0f %%)"
                  % (name, ns / 1e6, ev / 1e6, 100 * tol))
        check(got.get("untimed", 0) == 0, "%s: %d untimed records" % (name, got.get("untimed", 0)))
    # Nothing waiting, nothing lost, nobody else's ids.
    check(c["pending"] == 0, "pending records: %d" % c["pending"])
    for k, v in c["dropped"].items():
        check(v == 0, "dropped.%s = %d" % (k, v))
    for k, v in c.get("external_ids_refused", {}).items():
        check(v == 0, "external_ids_refused.%s = %d" % (k, v))
    check(c.get("stale_ids_popped", 0) == 0, "stale ids popped: %s" % c.get("stale_ids_popped"))
    check("start_error" not in c, "start_error: %s" % c.get("start_error"))
    # Kernel table entries name the device they ran on, and a node's kernel
    # time per device adds up to its kernel time.
    for nid, g in gnodes.items():
        for k in g.get("kernels", []):
            check("device" in k, "node %s kernel %s has no device" % (nid, k.get("name")))
        by_dev = sum(g.get("kernel_ns_by_device", {}).values())
        check(by_dev == g.get("kernel_ns", 0),
              "node %s: kernel_ns_by_device sums to %d, kernel_ns is %d"
              % (nid, by_dev, g.get("kernel_ns", 0)))

    # NVML, where the build and the machine have it: plausible units.
    n = info.get("nvml")
    if n and n.get("available"):
        for dev in n["devices"]:
            check(str(dev.get("uuid") or "").startswith(("GPU-", "MIG-")),
                  "nvml device %s uuid %r" % (dev.get("index"), dev.get("uuid")))
        ranges = {".util": (0, 100), ".mem_util": (0, 100), ".power": (1000, 3000000),
                  ".sm_clock": (50, 5000), ".mem_clock": (50, 20000), ".temp": (1, 125)}
        seen = 0
        for node in d["nodes"]:
            for metric, v in (node.get("sampled") or {}).items():
                if not metric.startswith("nvml.") or v is None:
                    continue
                for suffix, (lo, hi) in ranges.items():
                    if metric.endswith(suffix):
                        seen += 1
                        check(lo <= v <= hi, "%s in node %s = %s, outside %s..%s"
                              % (metric, node["name"], v, lo, hi))
                if metric.endswith(".mem_used"):
                    totals = [x.get("memory_total") for x in n["devices"]]
                    check(v > 0 and all(t is None or v <= t for t in totals),
                          "%s = %s bytes, totals %s" % (metric, v, totals))
        check(seen > 0, "no NVML value sampled in any node")
    else:
        print("nvml not in the export (%s): NVML units not checked"
              % (n.get("reason") if n else "not built"))

    for b in bad:
        print("FAIL: " + b)
    if not bad:
        print("gpu export: all checks passed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
