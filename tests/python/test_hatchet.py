"""A kfm export read by LLNL Hatchet: `kfm report --format hatchet` writes
Hatchet's literal format (the reader that keeps the node hierarchy and any
metric), and hatchet.GraphFrame.from_literal must rebuild the same tree with
the export's counts and times.

Needs llnl-hatchet (not a dependency of the package: it pins pandas and
pulls much in) and the kfm command of a CMake build (KFM_CLI, `kfm` on PATH,
or build*/bindings/cli/kfm in the repository); skipped, saying which, when
either is missing."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

hatchet = pytest.importorskip(
    "hatchet", reason="llnl-hatchet is not installed (pip install llnl-hatchet)"
)

from kfm_debugging import _kfm  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def kfm_cli() -> str:
    from kfm_debugging import _cli

    bundled = _cli.executable()  # what pip install puts in the package
    found = os.environ.get("KFM_CLI") or (str(bundled) if os.access(bundled, os.X_OK)
                                          else shutil.which("kfm"))
    if not found:
        built = sorted(glob.glob(str(REPO / "build*" / "bindings" / "cli" / "kfm")))
        found = built[0] if built else None
    if not found or not os.access(found, os.X_OK):
        pytest.skip("the kfm command is not built (set KFM_CLI to <build>/bindings/cli/kfm)")
    return found


def test_hatchet_reads_the_tree_and_values(tmp_path: Path) -> None:
    cli = kfm_cli()
    export = tmp_path / "prof.json"
    # main > solve (3x) > kernel (2x each); main > io (1x).
    s = _kfm.Session("level=basic,rate=off")
    s.start()
    s.enter_name("main")
    for _ in range(3):
        s.enter_name("solve")
        for _ in range(2):
            s.enter_name("kernel")
            s.exit_name("kernel")
        s.exit_name("solve")
    s.enter_name("io")
    s.exit_name("io")
    s.exit_name("main")
    s.stop()
    s.export(str(export))
    s.close()
    truth = {n["name"]: n for n in json.loads(export.read_text())["nodes"]}

    lit = tmp_path / "lit.json"
    subprocess.run([cli, "report", "--format", "hatchet", "-o", str(lit), str(export)], check=True)
    gf = hatchet.GraphFrame.from_literal(json.loads(lit.read_text()))

    roots = gf.graph.roots
    assert [r.frame["name"] for r in roots] == ["main"]
    main = roots[0]
    assert sorted(c.frame["name"] for c in main.children) == ["io", "solve"]
    solve = next(c for c in main.children if c.frame["name"] == "solve")
    assert [c.frame["name"] for c in solve.children] == ["kernel"]
    assert len(list(gf.graph.traverse())) == 4

    df = gf.dataframe.reset_index().set_index("name")
    assert df.loc["kernel", "count"] == 6
    assert df.loc["solve", "count"] == 3
    assert df.loc["io", "count"] == 1
    assert df.loc["main", "count"] == 1
    for name in ("main", "solve", "kernel", "io"):
        assert df.loc[name, "time (inc)"] == pytest.approx(truth[name]["total_ns"] / 1e9, rel=1e-12)
        assert df.loc[name, "time"] == pytest.approx(truth[name]["exclusive_ns"] / 1e9, rel=1e-12)
    # Hatchet's own view agrees that main includes its children.
    assert df.loc["main", "time (inc)"] >= df.loc["solve", "time (inc)"] + df.loc["io", "time (inc)"]
    assert "time (inc)" in gf.inc_metrics
