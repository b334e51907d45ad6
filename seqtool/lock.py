"""One writer per run directory: an operating-system lock on a file beside it. No torch here, so
`seqtool runs` can tell running runs apart quickly.

The lock is the kernel's (`flock`, or `msvcrt.locking` on Windows): it is released when its
holder exits, however it exits, so there is no stale lock to guess about. The file also holds the
holder's host and PID, for the message a second writer gets.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from seqtool.errors import SeqtoolError, UnwritableFile

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt


def lock_path(run_dir: Path) -> Path:
    return run_dir.parent / f".{run_dir.name}.lock"


def _try_lock(fd: int, shared: bool = False) -> bool:
    """Take the lock on `fd` without waiting; False when another process holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:  # BlockingIOError, or PermissionError from msvcrt
        return False
    return True


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[Path]:
    """Hold the run directory's lock for the block; a second process refuses at once, naming the
    holder. The file sits beside the run directory, so a run that fails before writing anything
    leaves no directory behind."""
    lock = lock_path(run_dir)
    while True:
        try:  # the folder the user named for the run must be one seqtool can write in
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UnwritableFile(lock, exc) from exc
        if not _try_lock(fd):
            owner = _read_owner(fd)
            os.close(fd)
            raise SeqtoolError(
                f"run directory {run_dir} is in use by process {owner.split()[-1] if owner else '(unknown)'}"
                f"{' on ' + owner.split()[0] if owner else ''} (lock {lock}); wait for it, stop it, or use another --run-dir"
            )
        if _same_file(fd, lock):
            break
        os.close(fd)  # the holder removed the file as we opened it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        yield lock
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # before the release, so no one locks a file that is going away
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _read_owner(fd: int, wait_s: float = 1.0) -> str:
    """The holder's "host pid". It writes them just after taking the lock, so a process that
    finds the lock taken at that very moment waits for them (up to `wait_s`)."""
    deadline, owner = time.monotonic() + wait_s, ""
    while not owner and time.monotonic() < deadline:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            owner = os.read(fd, 200).decode(errors="replace").strip()
        except OSError:
            return ""
        time.sleep(0 if owner else 0.01)
    return owner


def is_locked(run_dir: Path) -> bool:
    """Whether a process holds the run directory's lock now (training in it)."""
    lock = lock_path(run_dir)
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        return not _try_lock(fd, shared=True)
    finally:
        os.close(fd)
