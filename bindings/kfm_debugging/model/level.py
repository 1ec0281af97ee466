"""ProfilingLevel: how much the Debugger measures."""

from __future__ import annotations

import enum
import logging
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


class LogLevel(enum.IntEnum):
    """Levels of the "kfm_debugging" logger (Debugger(..., log_level=...)):
    the logging module's own numbers, so LogLevel.DEBUG == logging.DEBUG."""

    NOTSET = logging.NOTSET
    DEBUG = logging.DEBUG
    INFO = logging.INFO
    WARNING = logging.WARNING
    ERROR = logging.ERROR
    CRITICAL = logging.CRITICAL

    @classmethod
    def parse(cls, level: Any) -> int:
        """A logging level number from a LogLevel, a logging number (any
        int >= 0) or a name ("DEBUG", "debug", "LogLevel.DEBUG")."""
        if isinstance(level, int) and not isinstance(level, bool):
            if level < 0:
                raise ValueError(f"log_level must be >= 0, not {level!r}")
            return int(level)
        if isinstance(level, str):
            key = level.strip().upper()
            if key.startswith("LOGLEVEL."):
                key = key[len("LOGLEVEL."):]
            if key == "WARN":
                key = "WARNING"
            if key in cls.__members__:
                return int(cls[key])
        valid = ", ".join(cls.__members__)
        raise ValueError(f"unknown log_level {level!r}; valid: {valid} (names or LogLevel "
                         f"members), or a logging level number")


LEVEL_NAMES = {lv: lv.name for lv in ProfilingLevel}  # enum .name is a descriptor call
