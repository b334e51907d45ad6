"""The one exception type whose message is meant for the user.

Anything raised as `SeqtoolError` is a problem with the user's input (config, data, checkpoint,
command line). The CLI prints its message as a single `Error: ...` line and exits with code 2.
Every other exception is a bug in seqtool and keeps its traceback. Opening a file the user named
is the one place an OS error is the user's to fix: `reading_user_file` says so, once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


class SeqtoolError(Exception):
    """A problem the user can fix; the message says what and where."""


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its type's name when it has none): what a
    one-line error says of a library's failure."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@contextlib.contextmanager
def reading_user_file(path: str | Path, what: str = "data", expected: str = "a file", offset: int = 0) -> Iterator[None]:
    """Read a file the user named inside this block: a missing, unreadable or not-UTF-8 file
    becomes one `SeqtoolError` naming it (what it is, and the byte offset of bad encoding,
    `offset` being where the bytes decoded in the block start in the file). Only a user's path
    goes through here, so an OS error anywhere else stays a bug with its traceback."""
    try:
        yield
    except FileNotFoundError:
        raise SeqtoolError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise SeqtoolError(f"{what} path is a directory, not {expected}: {path}") from None
    except PermissionError:
        raise SeqtoolError(f"{what} file is not readable (permission denied): {path}") from None
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start] if isinstance(exc.object, (bytes, bytearray)) else None
        shown = f"invalid byte 0x{byte:02x}" if byte is not None else "invalid byte"
        raise SeqtoolError(f"{path}: not UTF-8 text ({shown} at byte offset {offset + exc.start})") from None
    except OSError as exc:
        raise SeqtoolError(f"{what} file {path} cannot be read: {exc.strerror or exc}") from None


class UnwritableFile(SeqtoolError, OSError):
    """A file could not be written (a folder that does not exist, a full or read-only disk): one
    `Error:` line naming it. It is still an OSError, with the cause's errno and strerror, so a
    caller with more to say (a checkpoint: "the previous one is unchanged") catches it as one."""

    def __init__(self, path: str | Path, cause: OSError):
        OSError.__init__(self, cause.errno, cause.strerror, str(path))
        self.message = f"could not write {path}: {cause.strerror or cause}"

    def __str__(self) -> str:
        return self.message


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving a resumable checkpoint.

    `exit_code` follows the shell convention 128 + signal: 130 for Ctrl-C, 143 for SIGTERM.
    """

    def __init__(self, signum: int, checkpoint: object):
        self.exit_code = 128 + signum
        self.checkpoint = checkpoint
        self.resume_command = "seqtool train CONFIG --resume"
        self.quiet = False  # True in processes other than rank 0 under torchrun: one message is enough
        super().__init__(f"resumable checkpoint saved to {checkpoint}")
