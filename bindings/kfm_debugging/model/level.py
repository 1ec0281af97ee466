"""ProfilingLevel: how much the Debugger measures."""

from __future__ import annotations

import enum
from typing import Any


class ProfilingLevel(enum.IntEnum):
    """How much the Debugger measures; each level includes the ones below."""

    BASIC = 0
    STANDARD = 1
    DETAILED = 2
    COMPREHENSIVE = 3

    @classmethod
    def parse(cls, level: Any) -> ProfilingLevel:
        """A ProfilingLevel from itself, its name (any case) or its number."""
        if isinstance(level, ProfilingLevel):
            return level
        if isinstance(level, str):
            key = level.strip().upper()
            if key.startswith("PROFILINGLEVEL."):
                key = key[len("PROFILINGLEVEL.") :]
            if key in cls.__members__:
                return cls[key]
        elif isinstance(level, int) and not isinstance(level, bool):
            try:
                return cls(level)
            except ValueError:
                pass
        valid = ", ".join(f"ProfilingLevel.{m}" for m in cls.__members__)
        raise ValueError(f"unknown profiling level {level!r}; valid levels: {valid}")


LEVEL_NAMES = {lv: lv.name for lv in ProfilingLevel}  # enum .name is a descriptor call
