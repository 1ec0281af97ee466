"""Exports against hostile or failing targets (issue "Reliability", item 3).

Debugger.export_timing_data (Python, kfm_debugging._files) and
Debugger.export_profile (the engine's outfile.c) must: write a FIFO in place
when it has a reader and fail at once naming it when it has none; leave
/dev/null a device and report /dev/full's ENOSPC; write through symlinks
(a dangling one gets its target created); never follow symlinks planted at
temporary names; and on an unwritable folder, a directory, a missing folder
or RLIMIT_FSIZE raise OSError with the errno, naming the path, with the
earlier file intact byte for byte and no temporary left.  A process killed
mid-export leaves no temporary either.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import chain
from kfm_debugging import Debugger, ProfilingLevel, _files
from kfm_debugging._kfm import Session

Export = Callable[[Debugger, str], Any]


def _timing(d: Debugger, p: str) -> Any:
    return d.export_timing_data(p, include_engine_profile=True)


def _profile(d: Debugger, p: str) -> Any:
    return d.export_profile(p)


EXPORTS = [pytest.param(_timing, id="timing_data"), pytest.param(_profile, id="profile")]


def _check(txt: str, export: Export) -> None:
    data = json.loads(txt)
    if export is _timing:
        assert data["schema"] == "kfm_debugging.timing/1"
    else:
        assert data["schema"] == "kfm.profile"


@pytest.fixture(scope="module")
def debugger() -> Debugger:
    def work(s: dict) -> dict:
        return {"items": [s.get("n", 0)]}

    g = chain(*[(f"n{i}", work) for i in range(20)])
    d = Debugger(g, profiling_level=ProfilingLevel.DETAILED)
    d.run({"input": "x", "n": 1})
    return d


def _names(d: Path) -> list[str]:
    return sorted(os.listdir(d))


def _oserror(e: pytest.ExceptionInfo[OSError], path: Any, code: int) -> None:
    assert e.value.errno == code, e.value
    assert str(path) in str(e.value)
    assert os.strerror(code) in str(e.value)


# --- FIFOs --------------------------------------------------------------------
_READER = textwrap.dedent("""
    import os, select, sys, time
    # Opened non-blocking before the export, so the writer finds a reader.
    fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
    stop_after = int(sys.argv[2])
    print("READY", flush=True)
    buf = bytearray()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        select.select([fd], [], [], 0.01)
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            continue
        if chunk:
            buf += chunk
            if stop_after and len(buf) >= stop_after:
                break
        elif buf:
            break  # EOF after the data; before it, no writer has come yet
    os.close(fd)
    sys.stdout.buffer.write(bytes(buf))
""")


def _reader(fifo: Path, stop_after: int = 0) -> subprocess.Popen[bytes]:
    """A reader in another process: Session.export keeps the GIL while it
    writes, so a reader thread of this process could not run."""
    r = subprocess.Popen([sys.executable, "-c", _READER, str(fifo), str(stop_after)],
                         stdout=subprocess.PIPE)
    assert r.stdout is not None and r.stdout.readline() == b"READY\n"
    return r


@pytest.mark.parametrize("export", EXPORTS)
def test_fifo_with_reader(debugger: Debugger, export: Export, tmp_path: Path) -> None:
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    r = _reader(fifo)
    export(debugger, str(fifo))
    got, _ = r.communicate(timeout=60)
    _check(got.decode(), export)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert _names(tmp_path) == ["out.json"]


@pytest.mark.parametrize("export", EXPORTS)
def test_fifo_without_reader(debugger: Debugger, export: Export, tmp_path: Path) -> None:
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        export(debugger, str(fifo))
    assert time.monotonic() - t0 < 2.0  # at once, no hang
    _oserror(e, fifo, errno.ENXIO)
    assert "no process has it open for reading" in str(e.value)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert _names(tmp_path) == ["out.json"]


@pytest.mark.parametrize("via", ["python", "engine"])
def test_fifo_reader_leaves(via: str, tmp_path: Path) -> None:
    """A reader that leaves mid-write: EPIPE as OSError (Python ignores
    SIGPIPE; the engine blocks it while writing).  Both writers get far more
    than the pipe holds, so they are mid-write when the reader goes."""
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    if via == "engine":
        s = Session("level=basic,rate=off,trace=on,trace_ring=40016,trace_events=40016")
        a = s.register("node")
        s.start()
        for _ in range(20000):  # ~3 MB
            s.enter(a)
            s.exit(a)
        s.stop()
    r = _reader(fifo, stop_after=100)
    with pytest.raises(OSError) as e:
        if via == "python":
            _files.atomic_write(str(fifo), b"x" * (4 << 20))
        else:
            s.export(str(fifo))
    r.communicate(timeout=60)
    _oserror(e, fifo, errno.EPIPE)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# --- devices ------------------------------------------------------------------
@pytest.mark.parametrize("export", EXPORTS)
def test_dev_null_stays_a_device(debugger: Debugger, export: Export, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root could replace /dev/null: the case needs root")
    before = os.lstat("/dev/null")
    export(debugger, "/dev/null")
    link = tmp_path / "null.json"
    link.symlink_to("/dev/null")
    export(debugger, str(link))
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_rdev, after.st_ino) == (before.st_rdev, before.st_ino)
    assert link.is_symlink()
    assert not [n for n in os.listdir("/dev") if n.startswith((".kfm-", "null.tmp"))]


@pytest.mark.parametrize("export", EXPORTS)
def test_dev_full_enospc(debugger: Debugger, export: Export) -> None:
    with pytest.raises(OSError) as e:
        export(debugger, "/dev/full")
    _oserror(e, "'/dev/full'", errno.ENOSPC)
    assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)


# --- symlinks -----------------------------------------------------------------
@pytest.mark.parametrize("export", EXPORTS)
def test_symlinks(debugger: Debugger, export: Export, tmp_path: Path) -> None:
    target = tmp_path / "target.json"
    target.write_text('{"old": true}\n')
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to("target.json")  # relative to its folder
    link2 = tmp_path / "link2.json"
    link2.symlink_to(link)  # a chain
    assert export(debugger, str(link2)) in (str(link2), None)
    assert link.is_symlink() and link2.is_symlink()
    assert os.readlink(link) == "target.json"
    _check(target.read_text(), export)
    assert stat.S_IMODE(os.lstat(target).st_mode) == 0o640  # the replaced file's mode

    dangling = tmp_path / "dangling.json"
    dangling.symlink_to("created.json")
    old = os.umask(0o022)
    try:
        export(debugger, str(dangling))
    finally:
        os.umask(old)
    assert dangling.is_symlink()
    created = tmp_path / "created.json"
    _check(created.read_text(), export)
    assert stat.S_IMODE(os.lstat(created).st_mode) == 0o644

    nowhere = tmp_path / "dangling2.json"
    nowhere.symlink_to("nodir/x.json")
    with pytest.raises(OSError) as e:
        export(debugger, str(nowhere))
    _oserror(e, nowhere, errno.ENOENT)
    assert "nodir/x.json" in str(e.value)

    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    with pytest.raises(OSError) as e:
        export(debugger, str(tmp_path / "loop1"))
    _oserror(e, tmp_path / "loop1", errno.ELOOP)
    assert _names(tmp_path) == ["created.json", "dangling.json", "dangling2.json", "link.json",
                                "link2.json", "loop1", "loop2", "target.json"]


# --- planted symlinks ---------------------------------------------------------
@pytest.mark.parametrize("export", EXPORTS)
@pytest.mark.parametrize("named", [False, True], ids=["tmpfile", "named"])
def test_planted_symlinks(debugger: Debugger, export: Export, named: bool, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Symlinks at every name a temporary could plausibly take (old
    '<out>.tmp.<pid>' and neighbours, usual tool names) pointing at a victim."""
    if named and export is _profile:
        pytest.skip("the engine's named fallback is forced from C (test_export_fault)")
    monkeypatch.setattr(_files, "_NO_TMPFILE", named)
    folder = tmp_path / "d"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    out = folder / "out.json"
    pid = os.getpid()
    names = {f"out.json.tmp.{p}" for p in range(pid - 2, pid + 3)}
    names |= {"out.json.tmp", "out.json~", "out.json.new", "out.json.part", ".out.json.tmp",
              ".kfm-.tmp", "tmp", "out.tmp"}
    for n in names:
        (folder / n).symlink_to(victim)
    for again in (False, True):  # a new target, then an existing one
        export(debugger, str(out))
        _check(out.read_text(), export)
        assert stat.S_ISREG(os.lstat(out).st_mode)
    assert victim.read_bytes() == b"precious\n"
    assert _names(folder) == sorted(names | {"out.json"})
    assert all((folder / n).is_symlink() for n in names)


# --- folders, directories, limits ---------------------------------------------
@pytest.mark.parametrize("export", EXPORTS)
def test_directory_and_missing_folder(debugger: Debugger, export: Export, tmp_path: Path) -> None:
    adir = tmp_path / "adir"
    adir.mkdir()
    with pytest.raises(OSError) as e:
        export(debugger, str(adir))
    _oserror(e, adir, errno.EISDIR)
    assert adir.is_dir() and _names(adir) == []
    missing = tmp_path / "nope" / "p.json"
    with pytest.raises(OSError) as e:
        export(debugger, str(missing))
    _oserror(e, missing, errno.ENOENT)
    assert _names(tmp_path) == ["adir"]


_CHILD_PRELUDE = textwrap.dedent("""
    import os, signal, sys, time
    sys.path.insert(0, {tests!r})
    from conftest import chain
    from kfm_debugging import Debugger, ProfilingLevel
    def work(s):
        return {{"items": [1]}}
    d = Debugger(chain(*[(f"n{{i}}", work) for i in range(5)]),
                 profiling_level=ProfilingLevel.DETAILED)
    d.run({{"input": "x"}})
""")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.pop("KFM_CONFIG", None)
    return env


@pytest.mark.parametrize("export", EXPORTS)
def test_unwritable_folder(export: Export) -> None:
    """Run unprivileged (root ignores folder permissions) in a child."""
    top = Path(tempfile.mkdtemp(prefix="kfm-ro-"))
    try:
        top.chmod(0o755)
        ro = top / "ro"
        ro.mkdir()
        keep = ro / "keep.json"
        keep.write_text('{"old": true}\n')
        keep.chmod(0o666)  # the file itself is writable
        ro.chmod(0o555)
        call = ("d.export_timing_data(p)" if export is _timing else "d.export_profile(p)")
        script = _CHILD_PRELUDE.format(tests=str(Path(__file__).parent)) + textwrap.dedent(f"""
            p = {str(keep)!r}
            try:
                {call}
            except OSError as e:
                print(e.errno, e, flush=True)
        """)
        cmd = [sys.executable, "-c", script]
        if os.geteuid() == 0:
            # Root without the capabilities that bypass permissions (the
            # interpreter may live where another user could not run it).
            if shutil.which("setpriv") is None:
                pytest.skip("as root this needs setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
            cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(), timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"{errno.EACCES} "), r.stdout
        assert str(keep) in r.stdout and "Permission denied" in r.stdout
        assert keep.read_text() == '{"old": true}\n'
        assert _names(ro) == ["keep.json"]
    finally:
        (top / "ro").chmod(0o755)
        subprocess.run(["rm", "-rf", str(top)], check=False)


@pytest.mark.parametrize("export", EXPORTS)
@pytest.mark.parametrize("named", [False, True], ids=["tmpfile", "named"])
def test_fsize_limit(debugger: Debugger, export: Export, named: bool, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    """EFBIG (Python ignores SIGXFSZ): the earlier file byte for byte, no temporary."""
    monkeypatch.setattr(_files, "_NO_TMPFILE", named)
    keep = tmp_path / "keep.json"
    old = b'{"old": true, "pad": "0123456789"}\n'
    keep.write_bytes(old)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(OSError) as e:
            export(debugger, str(keep))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    _oserror(e, keep, errno.EFBIG)
    assert keep.read_bytes() == old
    assert _names(tmp_path) == ["keep.json"]
    export(debugger, str(keep))  # within the limit again: replaced
    _check(keep.read_text(), export)
    assert _names(tmp_path) == ["keep.json"]


# --- killed mid-export --------------------------------------------------------
def _open_in(pid: int, folder: str) -> list[int]:
    """Sizes of the files (not the folder itself) process pid has open in folder."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(folder + "/"):
                found.append(os.stat(f"/proc/{pid}/fd/{fd}").st_size)
        except OSError:
            continue  # closed meanwhile
    return found


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("export", EXPORTS)
def test_killed_mid_export(export: Export, sig: int, tmp_path: Path) -> None:
    """The child is held mid-write, deterministically: for export_timing_data
    its os.write writes half the data and then waits; for export_profile (a
    C write loop) it is caught with the temporary open and stopped.  Then it
    is killed: the folder holds the earlier file alone."""
    folder = os.path.realpath(tmp_path)
    out = os.path.join(folder, "out.json")
    Path(out).write_text('{"old": true}\n')
    if export is _timing:
        body = f"""
            real_write = os.write
            def held_write(fd, data):
                n = real_write(fd, bytes(data)[: len(data) // 2])
                print("MID", flush=True)
                time.sleep(600)
                return n
            os.write = held_write
            d.export_timing_data({out!r}, include_engine_profile=True)
        """
        script = _CHILD_PRELUDE.format(tests=str(Path(__file__).parent)) + textwrap.dedent(body)
    else:
        script = textwrap.dedent(f"""
            from kfm_debugging._kfm import Session
            s = Session("level=basic,rate=off,trace=on,trace_ring=800016,trace_events=800016")
            a = s.register("node")
            s.start()
            for _ in range(400000):
                s.enter(a)
                s.exit(a)
            s.stop()
            print("EXPORTING", flush=True)
            s.export({out!r})
        """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                         env=_child_env())
    try:
        assert p.stdout is not None
        if export is _timing:
            assert p.stdout.readline().strip() == "MID"
            assert _open_in(p.pid, folder), "the child holds its temporary open"
        else:
            assert p.stdout.readline().strip() == "EXPORTING"
            t0 = time.monotonic()
            while not any(size > 0 for size in _open_in(p.pid, folder)):
                assert p.poll() is None, "the export ended before it was caught mid-write"
                assert time.monotonic() - t0 < 60
                time.sleep(0.0002)
            os.kill(p.pid, signal.SIGSTOP)
            os.waitpid(p.pid, os.WUNTRACED)
            assert _open_in(p.pid, folder), "stopped mid-write"
        # Mid-write, the temporary has no name in the folder.
        assert _names(tmp_path) == ["out.json"]
        os.kill(p.pid, sig)
        os.kill(p.pid, signal.SIGCONT)
        assert p.wait(timeout=60) == -sig
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if p.stdout:
            p.stdout.close()
    assert _names(tmp_path) == ["out.json"]
    assert Path(out).read_text() == '{"old": true}\n'
