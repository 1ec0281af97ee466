"""The ``kfm`` console script of the Python package: runs the kfm command
(``kfm run`` / ``report`` / ``trace``, README "HPC jobs") that the wheel
carries in ``kfm_debugging/bin``, with the preload library beside it in
``kfm_debugging/lib``."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def executable() -> Path:
    """The bundled kfm command's path (it may not exist: a source checkout)."""
    return Path(__file__).resolve().parent / "bin" / "kfm"


def main() -> None:
    exe = executable()
    if not os.access(exe, os.X_OK):
        sys.stderr.write(f"kfm: the kfm command is not in this installation ({exe} is missing): "
                         f"it is built by `pip install` of kfm-debugging, or by CMake "
                         f"(<build>/bindings/cli/kfm)\n")
        raise SystemExit(127)
    os.execv(exe, [str(exe), *sys.argv[1:]])
