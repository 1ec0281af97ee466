"""The kfm command as `pip install` leaves it: the `kfm` console script runs
the kfm executable the wheel carries (kfm_debugging/bin), which preloads
its library from kfm_debugging/lib into an unmodified program."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SANITIZER

from kfm_debugging import _cli

pytestmark = pytest.mark.skipif(
    bool(SANITIZER), reason="a sanitizer build's preload library needs the sanitizer's runtime "
                            "first in LD_PRELOAD: the command is tested in the plain build")


def _script() -> list[str]:
    """The installed console script, else the same entry point run by this Python."""
    exe = Path(sys.executable).parent / "kfm"
    return [str(exe)] if exe.exists() else [sys.executable, "-c",
                                             "from kfm_debugging._cli import main; main()"]


def test_installed_kfm_runs_and_reports_a_program(tmp_path: Path) -> None:
    if not os.access(_cli.executable(), os.X_OK):
        pytest.skip(f"not an installed package: {_cli.executable()} is missing (source tree)")
    out = tmp_path / "prof.json"
    env = {k: v for k, v in os.environ.items() if k not in ("KFM_CONFIG", "LD_PRELOAD")}
    r = subprocess.run([*_script(), "run", "-o", str(out), "--", "/bin/sleep", "0.05"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["truncated"] is None
    rep = subprocess.run([*_script(), "report", "--format", "json", str(out)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert rep.returncode == 0, rep.stderr
    merged = json.loads(rep.stdout)
    # The whole program is one root node named after it, at least its 50 ms sleep.
    assert merged["profiles"] == 1 and merged["unreadable"] == 0
    (root,) = merged["nodes"]
    assert root["name"] == "sleep" and root["calls"] == 1
    assert 50e6 <= root["total_ns_mean"] < 50e6 + 5e9
    bad = subprocess.run([*_script(), "run", "--", str(tmp_path / "no-such-program")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 127 and "no-such-program" in bad.stderr


def test_missing_executable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(_cli, "executable", lambda: tmp_path / "bin" / "kfm")
    with pytest.raises(SystemExit) as e:
        _cli.main()
    assert e.value.code == 127
    assert str(tmp_path / "bin" / "kfm") in capsys.readouterr().err
