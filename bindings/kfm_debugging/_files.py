"""Writing a file the user asked for, the way the engine's output= does
(engine/src/outfile.c), so that the Python exports behave the same.

- Symlinks are followed to their final target; a dangling one gets its
  target created (as a shell's ``>`` does).
- A FIFO or a device is written in place (no rename), so it stays what it
  is.  A FIFO is opened non-blocking: with no reader it fails at once.
- A regular (or new) file is written to an unnamed ``O_TMPFILE`` file in the
  target's folder, linked in and renamed over the target only when
  complete, so a killed process leaves no temporary.  Where the file system
  lacks ``O_TMPFILE``, a random ``.kfm-*.tmp`` name is created with
  ``O_CREAT|O_EXCL|O_NOFOLLOW`` (a planted symlink is never followed).  An
  existing file's permission bits (and owner, where allowed) are kept.

Any failure raises OSError naming the path, with the failing call's errno,
leaves an earlier file intact and removes whatever was created.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat

__all__ = ["atomic_write"]

_MAX_HOPS = 40
# For tests: True skips O_TMPFILE, exercising the named temporary.
_NO_TMPFILE = False


def _resolve(path: str) -> str:
    """Follows symlinks to the file that would be written; a missing last
    component ends the walk (it will be created)."""
    cur = path
    for _ in range(_MAX_HOPS + 1):
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return cur  # the folder is checked when it is opened
        if not stat.S_ISLNK(st.st_mode):
            return cur
        link = os.readlink(cur)
        # A relative link is relative to the folder holding it.
        cur = link if os.path.isabs(link) else os.path.join(os.path.dirname(cur), link)
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _random_name() -> str:
    return f".kfm-{secrets.token_hex(6)}.tmp"


def _write_in_place(dirfd: int, name: str, data: bytes, is_fifo: bool) -> None:
    try:
        fd = os.open(name, os.O_WRONLY | os.O_TRUNC | os.O_NONBLOCK | os.O_NOCTTY
                     | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    except OSError as e:
        if is_fifo and e.errno == errno.ENXIO:
            raise OSError(e.errno, "it is a FIFO and no process has it open for reading "
                          f"({e.strerror})") from None
        raise
    try:
        os.set_blocking(fd, True)  # a slow reader must be waited for
        _write_all(fd, data)
    finally:
        os.close(fd)


def _link(fd: int, dirfd: int, name: str) -> None:
    os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dirfd, follow_symlinks=True)


def _write_replacing(dirfd: int, name: str, data: bytes, old: os.stat_result | None) -> None:
    fd = -1
    tmp = None
    if not _NO_TMPFILE and hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        try:
            fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666, dir_fd=dirfd)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    try:
        if fd < 0:
            for _ in range(100):
                tmp = _random_name()
                try:
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o666, dir_fd=dirfd)
                    break
                except FileExistsError:
                    tmp = None
            else:
                raise OSError(errno.EEXIST, os.strerror(errno.EEXIST))
        if old is not None:
            # Keep owner and mode (chown first: it clears set-id bits).  Best
            # effort: the content matters most.
            try:
                if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                    os.fchown(fd, old.st_uid, old.st_gid)
            except OSError:
                pass
            try:
                os.fchmod(fd, stat.S_IMODE(old.st_mode))
            except OSError:
                pass
        _write_all(fd, data)
        if tmp is None:
            # Unnamed: straight under the target's name when there is none,
            # else under a fresh name renamed over it.
            try:
                _link(fd, dirfd, name)
                return
            except FileExistsError:
                pass
            for _ in range(100):
                try:
                    tmp = _random_name()
                    _link(fd, dirfd, tmp)
                    break
                except FileExistsError:
                    tmp = None
            else:
                raise OSError(errno.EEXIST, os.strerror(errno.EEXIST))
        os.close(fd)
        fd = -1
        os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        tmp = None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp is not None:
            try:
                os.unlink(tmp, dir_fd=dirfd)
            except OSError:
                pass


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> str:
    """Writes data (str is encoded as UTF-8) to path as described in the
    module's docstring.  Returns path; raises OSError naming it."""
    path = os.fspath(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    final = None
    try:
        for _ in range(3):
            final = _resolve(path)
            folder, name = os.path.split(final)
            if not name:
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
            dirfd = os.open(folder or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                try:
                    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                except FileNotFoundError:
                    st = None
                if st is not None and stat.S_ISLNK(st.st_mode):
                    continue  # a symlink appeared since the walk: go round again
                if st is None or stat.S_ISREG(st.st_mode):
                    _write_replacing(dirfd, name, data, st)
                elif stat.S_ISDIR(st.st_mode):
                    raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
                else:
                    _write_in_place(dirfd, name, data, stat.S_ISFIFO(st.st_mode))
                return path
            finally:
                os.close(dirfd)
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
    except OSError as e:
        where = repr(path) if final in (None, path) else f"{path!r} (symlink to {final!r})"
        raise OSError(e.errno, f"cannot write {where}: {e.strerror}", path) from None
