"""Continuous profiling: one JSON line per profiled run appended to a log,
read back later (by another process, on another day) as trends per node.

Why a log and not a database: runs come from several processes at once (a
service's workers, a CI matrix), and each must add its line without knowing
of the others, without a server, and without ever failing the run it
measures.  So:

- Each line is a whole record written by one ``os.write`` on an
  ``O_APPEND`` descriptor under an exclusive ``flock``: lines from different
  processes never interleave, and a reader taking the lock shared never sees
  half a line.
- Rotation happens under the same lock: path.{n-1} -> path.{n}, ...,
  path -> path.1.  A writer that still holds the old file notices after
  taking the lock (its descriptor's inode is no longer the path's) and
  reopens, so no line lands in a rotated file after the rotation.
- The log is checked when it is created (an unwritable path raises
  OSError naming it there); afterwards a failing append is counted and
  logged once, never raised into the user's run.

Reading joins path.N ... path.1 and path, oldest first, skips (and counts)
lines that are not records, and trends() summarises every node's series
with analysis/stats.trend: Theil-Sen slope per run with its 95% interval,
change points, and a verdict.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import math
import numbers
import os
import re
import socket
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from .._files import _write_all
from ..analysis import stats
from ..model.stats import Trend
from ..model.trends import LogData, NodeTrend, Shift, Trends

_logger = logging.getLogger("kfm_debugging")

VERSION = 1
METRICS = ("execution_time", "memory_usage", "calls")
UNITS = {"execution_time": "ms", "memory_usage": "MB", "calls": "calls", "total_ms": "ms"}
DEFAULT_METRICS = ("execution_time", "memory_usage")
MAX_BYTES = 10 * 2**20
BACKUPS = 3
# Theil-Sen and the change-point search grow quadratically with the series
# (200 runs: ~0.15 s a series); without last=, trends cover this many runs.
MAX_TREND_RUNS = 200
SPARK_RUNS = 40
SPARK = "▁▂▃▄▅▆▇█"
# A slope or shift whose whole effect is below this share of the median is
# "flat": run-to-run drift (a busier machine) reaches statistical
# significance over enough runs without being a change anyone acts on.
MATERIAL = 0.05
TOTAL = "(run)"  # the node name of the whole run's total_ms trend
_REOPENS = 20  # rotations seen in a row before an append gives up


def check_metrics(metrics: Iterable[str] | str) -> tuple[str, ...]:
    """The metrics as a tuple, or ValueError naming the accepted ones."""
    if isinstance(metrics, str):
        metrics = [metrics]
    out = tuple(metrics)
    bad = [m for m in out if m not in METRICS]
    if bad or not out:
        what = f"unknown metric(s) {', '.join(map(repr, bad))}" if bad else "no metric given"
        raise ValueError(f"{what}; accepted: {', '.join(METRICS)}")
    return tuple(dict.fromkeys(out))


def _count(name: str, v: Any, least: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < least:
        raise ValueError(f"{name} must be an int >= {least}, not {v!r}")
    return v


def _number(v: Any) -> float | int | None:
    """A figure as JSON allows it: finite, rounded to 0.1 us / 100 bytes
    (numpy's numbers too)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    if isinstance(v, numbers.Integral):
        return int(v)
    f = float(v)
    return round(f, 4) if math.isfinite(f) else None


def _is_current(real: str, fd: int) -> bool:
    """Whether fd is still the file at the path (not rotated or removed)."""
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (fst.st_ino, fst.st_dev)


class ContinuousLog:
    """An append-only log of profiled runs, one JSON line per run, shared
    safely by any number of processes and threads.

    ContinuousLog(path, metrics=("execution_time", "memory_usage"),
                  max_bytes=10 MiB, backups=3)

    metrics: the per-node figures kept (execution_time ms, memory_usage MB,
        calls); a run's total_ms and error are always kept.
    max_bytes: a line that would take the file past this size first rotates
        it: path -> path.1 -> ... -> path.{backups}; the oldest is dropped.
        backups=0 drops the whole file.
    Raises OSError naming path when it cannot be appended to (or its folder
    cannot take the rotated files), ValueError for bad arguments.  After
    that, append() never raises: failures are counted in ``failures``
    (``last_error`` says the latest) and the first is logged.
    """

    def __init__(self, path: str | os.PathLike[str],
                 metrics: Iterable[str] | str = DEFAULT_METRICS,
                 max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        self.path = os.path.abspath(os.fspath(path))  # a later chdir must not move the log
        self.metrics = check_metrics(metrics)
        self.max_bytes = _count("max_bytes", max_bytes, 1)
        self.backups = _count("backups", backups, 0)
        self.written = 0
        self.failures = 0
        self.last_error: str | None = None
        # Rotation renames the file itself, not a symlink to it.
        self._real = os.path.realpath(self.path)
        self._host = socket.gethostname()
        self._lock = threading.Lock()
        self._fd = -1
        self._pid = 0
        self._readable = False
        try:
            self._open()
            folder = os.path.dirname(self._real)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, f"its folder {folder!r} is not writable, and "
                                      f"rotation renames the log there")
        except OSError as e:
            self.close()
            raise OSError(e.errno, f"cannot append to the continuous profiling log "
                          f"{self.path!r}: {e.strerror}", self.path) from None

    def __repr__(self) -> str:
        return (f"ContinuousLog({self.path!r}, metrics={list(self.metrics)}, "
                f"max_bytes={self.max_bytes}, backups={self.backups})")

    def __enter__(self) -> ContinuousLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- writing -------------------------------------------------------------
    def _open(self) -> None:
        self.close()
        flags = os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOCTTY
        try:  # readable, to mend a line left unfinished (disk full) before the next
            fd, self._readable = os.open(self._real, flags | os.O_RDWR, 0o666), True
        except PermissionError:
            fd, self._readable = os.open(self._real, flags | os.O_WRONLY, 0o666), False
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file (a log is rotated by renaming it)")
        # A forked child must not share this open file: flock locks belong to
        # the open file, so parent and child would both hold the lock at once.
        self._fd, self._pid = fd, os.getpid()

    def _rotate(self) -> None:
        p = self._real
        if self.backups == 0:
            os.unlink(p)
            return
        for n in range(self.backups - 1, 0, -1):
            try:
                os.rename(f"{p}.{n}", f"{p}.{n + 1}")
            except FileNotFoundError:
                pass
        os.rename(p, p + ".1")

    def _write(self, data: bytes) -> None:
        for _ in range(_REOPENS):
            if self._fd < 0:
                self._open()
            fd = self._fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if _is_current(self._real, fd):
                    size = os.fstat(fd).st_size
                    if not size or size + len(data) <= self.max_bytes:
                        if size and self._readable and os.pread(fd, 1, size - 1) != b"\n":
                            data = b"\n" + data
                        _write_all(fd, data)
                        return
                    self._rotate()
            finally:
                # Explicitly: a forked child may share this open file, and
                # closing ours alone would leave the lock held by its copy.
                fcntl.flock(fd, fcntl.LOCK_UN)
            self.close()  # rotated, by us or another writer: on to the path's new file
        raise OSError(errno.EAGAIN, f"the log was rotated or replaced {_REOPENS} times in a row "
                      f"while appending")

    def line(self, record: Mapping[str, Any]) -> bytes:
        """The JSON line append() writes for record (a run's figures as
        analysis.run_figures gives them, with "graph")."""
        nodes: dict[str, dict[str, Any]] = {}
        for name, figs in (record.get("nodes") or {}).items():
            if isinstance(figs, Mapping):
                nodes[str(name)] = {m: _number(figs[m]) for m in self.metrics if m in figs}
        err = record.get("error")
        level = record.get("level")
        rec = {"v": VERSION, "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
               "pid": os.getpid(), "host": self._host, "graph": record.get("graph"),
               "level": None if level is None else str(getattr(level, "name", level)),
               "total_ms": _number(record.get("total_ms")),
               "error": None if err is None else str(err), "nodes": nodes}
        return (json.dumps(rec, allow_nan=False, separators=(",", ":")) + "\n").encode()

    def append(self, record: Mapping[str, Any]) -> bool:
        """Append one run's line; True when written.  Never raises: a
        failure is counted in ``failures`` and the first one logged."""
        try:
            data = self.line(record)
            if self._pid != os.getpid():  # forked: a lock and an open file of our own
                self._lock = threading.Lock()
                self.close()  # our copy only: the parent's lock stays the parent's
            # Threads share the open file, hence its flock: they queue here.
            with self._lock:
                self._write(data)
        except Exception as e:  # noqa: BLE001 - the log must never fail the user's run
            self.failed(e)
            return False
        self.written += 1
        return True

    def failed(self, e: BaseException) -> None:
        """Count a run that could not be logged (and log the first)."""
        self.failures += 1
        self.last_error = f"{type(e).__name__}: {e}"
        if self.failures == 1:
            _logger.warning("continuous profiling: a run could not be appended to %r (%s); "
                            "further failures are only counted (ContinuousLog.failures)",
                            self.path, self.last_error)


def after_run(log: ContinuousLog, rd_figures: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
              graph_name: str | None, level: Any,
              sink: Callable[[Mapping[str, Any]], Any] | None = None) -> bool:
    """What the Debugger does after each profiled run: append the run's
    figures (analysis.run_figures, or a function returning them, so that an
    error computing them is counted like a failed write) with the graph's
    name.  The figures' own level (what the run was measured at, KFM_CONFIG
    included) wins over level, which fills in when they have none.  sink,
    when given, gets the same record after the append (an OTLP exporter's
    export_run; it must not raise).  Never raises; True when the line was
    written."""
    try:
        figs = rd_figures() if callable(rd_figures) else rd_figures
        rec = dict(figs)
        rec["graph"] = graph_name
        if rec.get("level") is None:
            rec["level"] = level
    except Exception as e:  # noqa: BLE001 - as in append: never the run's failure
        log.failed(e)
        return False
    ok = log.append(rec)
    if sink is not None:
        sink(rec)
    return ok


# -- reading ---------------------------------------------------------------------
def _rotated(real: str) -> list[str]:
    """path.N files next to the log, oldest (largest N) first."""
    folder, base = os.path.split(real)
    pat = re.compile(re.escape(base) + r"\.([0-9]+)")
    try:
        names = os.listdir(folder or ".")
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), n) for n in names if (m := pat.fullmatch(n))]
    return [os.path.join(folder, n) for _, n in sorted(found, reverse=True)]


def _read_fd(fd: int) -> bytes:
    chunks = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def _slurp(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _contents(real: str, include_rotated: bool) -> list[tuple[str, bytes]]:
    """(file, bytes) oldest first.  The current file is held with a shared
    lock meanwhile, so that no writer rotates the files under the reader
    (writers wait for the read: bytes only, no parsing, under the lock)."""
    for _ in range(_REOPENS):
        try:
            fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1
        try:
            if fd >= 0:
                fcntl.flock(fd, fcntl.LOCK_SH)
                if not _is_current(real, fd):
                    continue  # rotated between open and lock
            out = [(p, b) for p in (_rotated(real) if include_rotated else [])
                   if (b := _slurp(p)) is not None]
            if fd >= 0:
                out.append((real, _read_fd(fd)))
            return out
        finally:
            if fd >= 0:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
    raise OSError(errno.EAGAIN, "the log kept being rotated while it was read")


def _record(line: bytes) -> dict[str, Any] | None:
    try:
        r = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    if not isinstance(r, dict) or r.get("v") != VERSION:
        return None
    nodes = r.get("nodes")
    if not isinstance(nodes, dict) or not all(isinstance(v, dict) for v in nodes.values()):
        return None
    return r


def read_log(path: str | os.PathLike[str], include_rotated: bool = True) -> LogData:
    """The log's records, oldest first: path.N ... path.1, then path.  Lines
    that are not records are skipped and counted.  OSError (naming path)
    when there is no log or it cannot be read."""
    shown = os.fspath(path)
    real = os.path.realpath(shown)
    try:
        files = _contents(real, include_rotated)
    except OSError as e:
        raise OSError(e.errno, f"cannot read the continuous profiling log {shown!r}: "
                      f"{e.strerror}", shown) from None
    if not files:
        raise FileNotFoundError(errno.ENOENT, f"no continuous profiling log at {shown!r} "
                                f"(nor rotated files {shown}.N)", shown)
    out = LogData(path=shown, files=[p for p, _ in files])
    for p, data in files:
        for i, line in enumerate(data.split(b"\n"), 1):
            if not line.strip():
                continue
            r = _record(line)
            if r is not None:
                out.records.append(r)
                continue
            out.malformed += 1
            if out.first_malformed_file is None:
                out.first_malformed_file, out.first_malformed_line = p, i
    return out


# -- trends ------------------------------------------------------------------------
def sparkline(values: list[float], width: int = SPARK_RUNS) -> str:
    """The last width values as ▁..█, scaled from their minimum to maximum."""
    ys = values[-width:]
    if not ys:
        return ""
    lo, hi = min(ys), max(ys)
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return SPARK[0] * len(ys)
    top = len(SPARK) - 1
    return "".join(SPARK[round((v - lo) / (hi - lo) * top)] for v in ys)


def _material(delta: float, median: float) -> bool:
    return median == 0 or abs(delta) >= MATERIAL * abs(median)


def _verdict(t: Trend, shifts: list[Shift], span: float, median: float) -> str:
    """rising/falling: the slope's interval excludes 0 and its effect over
    the runs is material; shifted up/down: the latest material shift, unless
    every shift goes one way along such a slope (a ramp seen as steps)."""
    if t.slope is None:
        return "too few runs"
    rising = t.slope_low > 0 and _material(t.slope * span, median)
    falling = t.slope_high < 0 and _material(t.slope * span, median)
    if shifts:
        ups = {s.after > s.before for s in shifts}
        if len(shifts) >= 2 and ups == {True} and rising:
            return "rising"
        if len(shifts) >= 2 and ups == {False} and falling:
            return "falling"
        return "shifted up" if shifts[-1].after > shifts[-1].before else "shifted down"
    return "rising" if rising else "falling" if falling else "flat"


def _median(ys: list[float]) -> float:
    s = sorted(ys)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _l1(ys: list[float]) -> float:
    m = _median(ys)
    return sum(abs(y - m) for y in ys)


def _placed(ys: list[float], cps: list[int], min_size: int = 3) -> list[int]:
    """Each change point moved to where the level changes within its segment
    (the split with the least absolute deviation from the two sides'
    medians).  stats.change_points finds whether the level shifts, but
    places the shift by the smallest Mann-Whitney p-value over splits whose
    p-values scipy computes two ways (exact when a side has 8 values or
    fewer, a normal approximation above), which favours splits with a short
    side: a step at run 10 of 20 came out at 8 or 12 whenever the runs just
    before it happened to be the slowest of their level."""
    out = list(cps)
    for j, cp in enumerate(out):
        lo = out[j - 1] if j else 0
        hi = out[j + 1] if j + 1 < len(out) else len(ys)
        ks = range(lo + min_size, hi - min_size + 1)
        if len(ks) > 1:
            out[j] = min(ks, key=lambda k: (_l1(ys[lo:k]) + _l1(ys[k:hi]), abs(k - cp)))
    return out


def _shifts(ys: list[float], xs: list[int], cps: list[int]) -> tuple[list[int], list[Shift]]:
    """The change points placed, and the shifts at them, the least material
    dropped (its neighbours then joined) until every shift left is material."""
    cps = list(cps)
    while True:
        # Placed apart by their neighbours, but kept strictly inside and
        # increasing whatever happens: every segment has values.
        cps = sorted({c for c in _placed(ys, cps) if 0 < c < len(ys)})
        bounds = [0, *cps, len(ys)]
        shifts = [Shift(index=cp, run=xs[cp] + 1, before=_median(ys[bounds[k]:cp]),
                        after=_median(ys[cp:bounds[k + 2]])) for k, cp in enumerate(cps)]
        weak = [s for s in shifts if not _material(s.after - s.before, s.before)]
        if not weak:
            return cps, shifts
        cps.remove(min(weak, key=lambda s: abs(s.after - s.before) / abs(s.before)).index)


def node_trend(node: str, metric: str, points: list[tuple[int, float]]) -> NodeTrend:
    """The trend of one series: points are (run index, value) in log order."""
    xs = [i for i, _ in points]
    ys = [float(v) for _, v in points]
    out = NodeTrend(node=node, metric=metric, unit=UNITS.get(metric, ""), n=len(ys),
                    values=ys, runs=xs)
    if not ys:
        out.verdict = "no values" + (" (memory is measured from ProfilingLevel.STANDARD)"
                                     if metric == "memory_usage" else "")
        return out
    out.last, out.median, out.sparkline = ys[-1], _median(ys), sparkline(ys)
    t = out.trend = stats.trend(ys, xs)
    t.change_points, out.shifts = _shifts(ys, xs, t.change_points)
    out.verdict = _verdict(t, out.shifts, float(xs[-1] - xs[0]), out.median)
    return out


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def trends(data: LogData, metrics: Iterable[str] | str | None = None,
           nodes: Iterable[str] | str | None = None, last: int | None = None,
           graph: str | None = None) -> Trends:
    """Per node and metric, and for the whole run's total_ms: the series
    over the log's runs, its trend (stats.trend), last value, median and
    sparkline.  metrics: default those the log has; nodes: default all, in
    order of first appearance; last: the most recent runs covered (default
    up to MAX_TREND_RUNS); graph: only runs of that graph name."""
    recs = [r for r in data.records if graph is None or r.get("graph") == graph]
    total_runs = len(recs)
    n = MAX_TREND_RUNS if last is None else _count("last", last, 1)
    recs = recs[-n:]
    seen = list(dict.fromkeys(k for r in recs for k in r["nodes"]))
    if metrics is None:
        have = {m for r in recs for v in r["nodes"].values() for m in v}
        ms = tuple(m for m in METRICS if m in have)
    else:
        ms = check_metrics(metrics)
    if nodes is None:
        names = seen
    else:
        names = [nodes] if isinstance(nodes, str) else list(nodes)
        unknown = [x for x in names if x not in seen]
        if unknown:
            raise ValueError(f"node(s) {', '.join(map(repr, unknown))} not in the log's runs; "
                             f"in them: {', '.join(map(repr, seen)) or 'none'}")
    out = Trends(path=data.path, runs=len(recs), total_runs=total_runs,
                 processes=len({(r.get("host"), r.get("pid")) for r in recs}),
                 malformed=data.malformed, first_malformed_file=data.first_malformed_file,
                 first_malformed_line=data.first_malformed_line, files=list(data.files),
                 graphs=sorted({str(g) for r in recs if (g := r.get("graph")) is not None}),
                 metrics=list(ms))
    out.total = node_trend(TOTAL, "total_ms", [(i, r["total_ms"]) for i, r in enumerate(recs)
                                               if _is_num(r.get("total_ms"))])
    for name in names:
        out.nodes[name] = {m: node_trend(name, m, [
            (i, v) for i, r in enumerate(recs)
            if isinstance(f := r["nodes"].get(name), dict) and _is_num(v := f.get(m))])
            for m in ms}
    return out


__all__ = ["ContinuousLog", "METRICS", "after_run", "check_metrics", "node_trend", "read_log",
           "sparkline", "trends"]


def log_runs(data: LogData, last: int = 20) -> list[tuple[str, dict[str, Any]]]:
    """The last runs of a log as (label, {node: {metric: value}}) for the
    heat map of nodes x runs: labelled by their time (UTC) and process."""
    out = []
    for r in data.records[-last:]:
        ts = str(r.get("ts") or "")
        out.append((f"{ts[5:10]} {ts[11:19]} pid {r.get('pid')}", dict(r.get("nodes") or {})))
    return out
