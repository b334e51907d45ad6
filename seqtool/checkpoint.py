"""Checkpoints as data, never code: safe loading, checksums, atomic writes.

File layout (`*.pt`):

    SEQTOOL-CHECKPOINT\\n
    {"format_version": 1, "sha256": "...", "payload_bytes": N}\\n
    <payload: torch.save of a dict holding only tensors, numbers, strings, lists and dicts>

The payload is read with `torch.load(weights_only=True)`, which refuses to build arbitrary
objects, so a crafted file cannot run code. The checksum catches truncated or bit-flipped files
with an error naming the file instead of garbage weights. Writes go to a temporary file in the
same directory, are fsynced, then renamed over the target: a crash mid-write leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import secrets
import zipfile
from pathlib import Path
from typing import Any

from seqtool.errors import SeqtoolError, UnwritableFile, first_line, reading_user_file

MAGIC = b"SEQTOOL-CHECKPOINT\n"
FORMAT_VERSION = 1
BEST = "best.pt"
LAST = "last.pt"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a mix."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.seqtool-tmp"
    # Mode 0666 as any new file gets, less the umask, which the kernel applies: reading the umask
    # would mean setting it, for a moment, in every thread of the process.
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:  # no such folder, a read-only disk: the one place every write says so
        raise UnwritableFile(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise UnwritableFile(path, exc) from exc
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    header = {"format_version": FORMAT_VERSION, "sha256": hashlib.sha256(body).hexdigest(), "payload_bytes": len(body)}
    if "train_state" in payload:  # so `seqtool runs` can say where a run stands without torch
        header["step"] = int(payload["train_state"]["step"])
    try:
        atomic_write_bytes(path, MAGIC + json.dumps(header).encode() + b"\n" + body)
    except OSError as exc:
        raise SeqtoolError(
            f"could not write checkpoint {path}: {exc.strerror or exc}; the previous checkpoint is unchanged"
        ) from None


def read_header(path: Path) -> dict[str, Any] | None:
    """The JSON header of a checkpoint plus `intact`: whether the file holds as many payload bytes
    as the header promises (a cheap check for truncation, without reading the payload or
    importing torch). None when the file is missing or has no seqtool header."""
    try:
        with Path(path).open("rb") as handle:
            start = handle.read(len(MAGIC) + 4096)
            size = os.fstat(handle.fileno()).st_size
    except OSError:
        return None
    header_end = start.find(b"\n", len(MAGIC))
    if not start.startswith(MAGIC) or header_end < 0:
        return None
    try:
        header = json.loads(start[len(MAGIC) : header_end])
        expected = header_end + 1 + int(header["payload_bytes"])
    except (ValueError, KeyError, TypeError):
        return None
    return {**header, "intact": size == expected}


def resolve_checkpoint(target: str | Path) -> Path:
    """A run directory means its best checkpoint (falling back to last); a file means itself."""
    target = Path(target)
    if target.is_dir():
        for name in (BEST, LAST):
            if (target / name).is_file():
                return target / name
        raise SeqtoolError(f"no checkpoint in {target} (expected {BEST} or {LAST})")
    if not target.exists():
        raise SeqtoolError(f"checkpoint not found: {target}")
    return target


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and verify a checkpoint; every failure is a SeqtoolError naming the file."""
    import torch

    path = Path(path)
    with reading_user_file(path, what="checkpoint", expected="a checkpoint file"):
        data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise SeqtoolError(f"{path} is not a seqtool checkpoint (missing header)")
    header_end = data.find(b"\n", len(MAGIC))
    try:
        header = json.loads(data[len(MAGIC) : header_end])
        version = int(header["format_version"])
        expected_hash = str(header["sha256"])
        expected_size = int(header["payload_bytes"])
    except (ValueError, KeyError, TypeError):
        raise SeqtoolError(f"{path}: corrupt checkpoint header") from None
    if version > FORMAT_VERSION:
        raise SeqtoolError(
            f"{path} has checkpoint format version {version}, newer than this seqtool supports "
            f"({FORMAT_VERSION}); upgrade seqtool to read it"
        )
    body = data[header_end + 1 :]
    if len(body) != expected_size:
        raise SeqtoolError(f"{path} is truncated ({len(body)} of {expected_size} payload bytes)")
    if hashlib.sha256(body).hexdigest() != expected_hash:
        raise SeqtoolError(f"{path} is corrupt (checksum mismatch)")
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as exc:  # refused or damaged
        raise SeqtoolError(f"{path}: refused to load checkpoint payload ({first_line(exc)})") from None
    if not isinstance(payload, dict) or "config" not in payload or "model" not in payload:
        raise SeqtoolError(f"{path}: checkpoint payload lacks config or model weights")
    return payload
