"""One writer per run directory: a lock file beside it with the owner's host and PID. No torch
here, so `seqtool runs` can tell running runs apart quickly."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from seqtool.errors import SeqtoolError


def lock_path(run_dir: Path) -> Path:
    return run_dir.parent / f".{run_dir.name}.lock"


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[Path]:
    """One writer per run directory: a lock file beside it holds the owner's host and PID.

    A second process refuses to start; a lock left by a process that no longer exists (killed,
    machine rebooted) is taken over. The file sits beside the run directory, so a run that fails
    before writing anything leaves no directory behind.
    """
    lock = lock_path(run_dir)
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = lock.read_text(errors="replace").strip() if lock.exists() else ""
            if lock_owner_alive(owner):
                raise SeqtoolError(
                    f"run directory {run_dir} is in use by process {owner.split()[-1]} on {owner.split()[0]} "
                    f"(lock {lock}); wait for it, stop it, or use another --run-dir"
                ) from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(me + "\n")
        break
    else:
        raise SeqtoolError(f"could not take the lock {lock} for {run_dir}")
    try:
        yield lock
    finally:
        if lock.exists() and lock.read_text(errors="replace").strip() == me:
            lock.unlink()


def lock_owner_alive(owner: str) -> bool:
    parts = owner.split()
    if len(parts) != 2 or not parts[1].isdigit():
        return False  # unreadable or half-written: treat as stale
    host, pid = parts[0], int(parts[1])
    if host != socket.gethostname():
        return True  # cannot check another machine's processes: assume it is alive
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
