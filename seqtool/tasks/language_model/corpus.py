"""Text corpora of any size as token-id arrays, with an on-disk cache for large files.

Small files are read whole (`read_text`) and split by character position. A file larger than
`STREAM_ABOVE_BYTES` is never held in memory as text: it is read in chunks cut at line ends,
tokenized chunk by chunk, and its ids are written to a flat token file that training reads as a
numpy memmap (pages come from the OS cache as the batches need them). Building it takes one
tokenizing pass:

1. each chunk's tokens get provisional ids in order of first appearance, written to a temporary
   file (uint16 for characters, uint32 for words);
2. the training part's token counts (a bincount over the first part of that file) give the
   vocabulary, as for a small file;
3. a lookup table turns provisional ids into vocabulary ids, streamed into the token file.

The token file is keyed by the text file's path, size and mtime, the tokenizer and the
vocabulary, so a later run, a resumed run and `evaluate` reuse it; a changed file gets a new key.
A second small file, keyed by the split settings as well, remembers the vocabulary a fresh run
builds, so that even the counting pass is skipped the second time. Large files are split by token
position (the held-out parts are the last tokens), small ones by character position.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from seqtool.checkpoint import atomic_write_text
from seqtool.data.text import WORD_PATTERN, Vocabulary, read_text, smallest_dtype, split_by_position
from seqtool.errors import SeqtoolError, reading_user_file

STREAM_ABOVE_BYTES = 32 * 2**20  # files larger than this are encoded in chunks into the cache
CHUNK_BYTES = 16 * 2**20
CACHE_FORMAT = 1
_BOM = b"\xef\xbb\xbf"


def load_corpus(
    path: str | Path,
    tokenizer: str,
    min_freq: int,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    vocabulary: Vocabulary | None = None,
    cache_dir: Path | None = None,
) -> tuple[Vocabulary, dict[str, np.ndarray]]:
    """The vocabulary (built from the training part unless given) and the train/val/test id
    arrays of one text file; the held-out parts are the end of the file."""
    path = Path(path)
    size = _file_size(path)
    if cache_dir is None or size <= STREAM_ABOVE_BYTES:
        train, val, test = split_by_position(read_text(path), val_fraction, test_fraction)
        if vocabulary is None:
            vocabulary = Vocabulary.build(train, tokenizer, min_freq)
        return vocabulary, {"train": vocabulary.encode(train), "val": vocabulary.encode(val), "test": vocabulary.encode(test)}
    ids, vocabulary = _cached_ids(path, tokenizer, min_freq, val_fraction, test_fraction, vocabulary, cache_dir)
    train_end, val_end = _token_split(len(ids), val_fraction, test_fraction)
    return vocabulary, {"train": ids[:train_end], "val": ids[train_end:val_end], "test": ids[val_end:]}


def _token_split(count: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    n_test, n_val = int(count * test_fraction), int(count * val_fraction)
    return count - n_val - n_test, count - n_test


def _file_size(path: Path) -> int:
    with reading_user_file(path, expected="a text file"):
        if path.is_dir():
            raise IsADirectoryError(path)
        return path.stat().st_size


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([CACHE_FORMAT, *map(str, parts)]).encode()).hexdigest()[:16]


def _cached_ids(
    path: Path,
    tokenizer: str,
    min_freq: int,
    val_fraction: float,
    test_fraction: float,
    vocabulary: Vocabulary | None,
    cache_dir: Path,
) -> tuple[np.ndarray, Vocabulary]:
    stat = path.stat()
    source = (path.resolve(), stat.st_size, stat.st_mtime_ns, tokenizer)
    vocab_file = cache_dir / f"{path.stem}-{_key(*source, min_freq, val_fraction, test_fraction)}.vocab.json"
    if vocabulary is None and vocab_file.is_file():
        vocabulary = Vocabulary.from_dict(json.loads(vocab_file.read_text(encoding="utf-8")))

    def tokens_file_for(vocabulary: Vocabulary) -> Path:
        return cache_dir / f"{path.stem}-{_key(*source, vocabulary.tokens)}.tokens"

    if vocabulary is not None:
        tokens_file = tokens_file_for(vocabulary)
        meta_file = tokens_file.with_suffix(".json")
        if tokens_file.is_file() and meta_file.is_file():
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            return np.memmap(tokens_file, dtype=meta["dtype"], mode="r", shape=(meta["count"],)), vocabulary

    provisional = cache_dir / f"{path.stem}.{os.getpid()}.provisional"
    temporary: Path | None = None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        names, count = _write_provisional_ids(path, tokenizer, provisional)
        if count < 2:
            raise SeqtoolError(f"{path}: the file has {count} tokens")
        pid_dtype = np.uint16 if tokenizer == "char" else np.uint32
        if vocabulary is None:
            train_end, _ = _token_split(count, val_fraction, test_fraction)
            counts = np.zeros(len(names), dtype=np.int64)
            for block in _blocks(provisional, pid_dtype, 0, train_end):
                counts += np.bincount(block, minlength=len(names))
            vocabulary = Vocabulary.from_counts(tokenizer, names, counts.tolist(), min_freq)
            atomic_write_text(vocab_file, json.dumps(vocabulary.to_dict()))
        lookup = np.array([vocabulary.ids.get(name, 0) for name in names], dtype=smallest_dtype(len(vocabulary)))
        tokens_file = tokens_file_for(vocabulary)
        temporary = tokens_file.with_suffix(f".{os.getpid()}.seqtool-tmp")
        with temporary.open("wb") as handle:
            for block in _blocks(provisional, pid_dtype, 0, count):
                lookup[block].tofile(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, tokens_file)
        atomic_write_text(
            tokens_file.with_suffix(".json"), json.dumps({"dtype": lookup.dtype.name, "count": count, "source": str(path)})
        )
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename) == path:
            raise SeqtoolError(f"cannot read {path}: {exc.strerror or exc}") from None
        raise SeqtoolError(  # a full disk or an unwritable folder: the cache, not the data, is at fault
            f"could not write the token cache for {path} in {cache_dir}: {exc.strerror or exc}; free space or make it writable"
        ) from None
    finally:
        provisional.unlink(missing_ok=True)
        if temporary is not None:
            temporary.unlink(missing_ok=True)  # already renamed when all went well
    return np.memmap(tokens_file, dtype=lookup.dtype, mode="r", shape=(count,)), vocabulary


def _blocks(path: Path, dtype: type, start: int, stop: int, size: int = 2**24) -> Iterator[np.ndarray]:
    """Consecutive slices [start, stop) of a flat binary id file, read with plain file reads (not
    a memmap: streamed pages then stay out of this process's resident memory)."""
    itemsize = np.dtype(dtype).itemsize
    with path.open("rb") as handle:
        for offset in range(start, stop, size):
            handle.seek(offset * itemsize)
            yield np.fromfile(handle, dtype=dtype, count=min(size, stop - offset))


def _write_provisional_ids(path: Path, tokenizer: str, out: Path) -> tuple[list[str], int]:
    """Tokenize `path` chunk by chunk into ids numbered by first appearance; returns the tokens
    in id order and how many ids were written."""
    names: list[str] = []
    count = 0
    with out.open("wb") as handle:
        if tokenizer == "char":
            # A dense table over all Unicode code points: one gather per chunk, no sorting.
            table = np.zeros(0x110000, dtype=np.uint16)
            seen = np.zeros(0x110000, dtype=bool)
            for text in _text_chunks(path):
                codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
                new = np.flatnonzero(np.bincount(codepoints, minlength=0x110000).astype(bool) & ~seen)
                if len(new):
                    if len(names) + len(new) > np.iinfo(np.uint16).max:
                        raise SeqtoolError(f"{path}: more than 65,535 distinct characters; use data.tokenizer: word")
                    table[new] = np.arange(len(names), len(names) + len(new))
                    seen[new] = True
                    names.extend(chr(int(c)) for c in new)
                table[codepoints].tofile(handle)
                count += len(codepoints)
        else:
            index: dict[str, int] = {}
            for text in _text_chunks(path):
                tokens = WORD_PATTERN.findall(text)
                ids = np.fromiter((index.setdefault(t, len(index)) for t in tokens), dtype=np.uint32, count=len(tokens))
                ids.tofile(handle)
                count += len(tokens)
            names = list(index)
    return names, count


def _text_chunks(path: Path) -> Iterator[str]:
    """The file's text in pieces of about CHUNK_BYTES, each ending after a newline (or a space)
    where possible, so no word and no \\r\\n pair is cut; errors name the byte offset."""
    offset, carry = 0, b""
    with path.open("rb") as handle:
        first = True
        while True:
            raw = handle.read(CHUNK_BYTES)
            data = carry + raw
            if first and data.startswith(_BOM):
                data, offset = data[len(_BOM) :], len(_BOM)
            first = False
            if not raw:
                if data:
                    yield _decode(data, path, offset)
                return
            cut = data.rfind(b"\n") + 1 or data.rfind(b" ") + 1
            if not cut:  # one enormous line: cut at a UTF-8 character boundary
                cut = len(data)
                while cut > 0 and data[cut - 1] & 0xC0 == 0x80:
                    cut -= 1
                cut = cut - 1 if cut and data[cut - 1] >= 0xC0 else cut
            yield _decode(data[:cut], path, offset)
            offset += cut
            carry = data[cut:]


def _decode(data: bytes, path: Path, offset: int) -> str:
    with reading_user_file(path, offset=offset):
        return data.decode("utf-8").replace("\r\n", "\n")
