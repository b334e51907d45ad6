import hashlib
import io
import json
import os
import zipfile

import pytest
import torch

from seqtool.checkpoint import FORMAT_VERSION, MAGIC, load_checkpoint, save_checkpoint
from seqtool.errors import SeqtoolError


def test_round_trip_keeps_tensors_and_plain_data(tmp_path):
    payload = {"config": {"a": 1}, "model": {"w": torch.randn(3, 4)}, "names": ["x", "y"], "step": 5}
    save_checkpoint(tmp_path / "c.pt", payload)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded["model"]["w"], payload["model"]["w"])
    assert loaded["names"] == ["x", "y"] and loaded["step"] == 5
    assert not list(tmp_path.glob("*.seqtool-tmp"))  # the temporary file was renamed away


def _rewrite(path, body: bytes, **header_changes):
    data = path.read_bytes()
    end = data.find(b"\n", len(MAGIC))
    header = json.loads(data[len(MAGIC) : end])
    header.update(header_changes)
    path.write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + body)


def _body(path) -> bytes:
    data = path.read_bytes()
    return data[data.find(b"\n", len(MAGIC)) + 1 :]


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"config": {}, "model": {"w": torch.ones(100)}})
    return path


def test_truncated_checkpoint_is_named(saved):
    saved.write_bytes(saved.read_bytes()[:-50])
    with pytest.raises(SeqtoolError, match=f"{saved}.*truncated"):
        load_checkpoint(saved)


def test_bit_flip_is_caught_by_the_checksum(saved):
    data = bytearray(saved.read_bytes())
    data[-100] ^= 0x01
    saved.write_bytes(bytes(data))
    with pytest.raises(SeqtoolError, match=f"{saved} is corrupt .checksum mismatch"):
        load_checkpoint(saved)


def test_newer_format_version_says_so(saved):
    _rewrite(saved, _body(saved), format_version=FORMAT_VERSION + 1)
    with pytest.raises(SeqtoolError, match="newer than this seqtool supports"):
        load_checkpoint(saved)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "x.pt"
    path.write_text("hello")
    with pytest.raises(SeqtoolError, match="not a seqtool checkpoint"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this would create a file: the classic code-execution checkpoint."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_in_a_checkpoint_is_never_executed(tmp_path, saved):
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"config": {}, "model": {}, "evil": _Payload(str(marker))}, buffer, pickle_protocol=2)
    body = buffer.getvalue()
    _rewrite(saved, body, sha256=hashlib.sha256(body).hexdigest(), payload_bytes=len(body))
    with pytest.raises(SeqtoolError, match="refused to load"):
        load_checkpoint(saved)
    assert not marker.exists()
    # the payload really is live: it calls os.system when unpickled without restrictions
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        raw = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"system" in raw
