"""Large corpora: chunked encoding into the token cache equals encoding the whole text, and the
cache is reused while the file is unchanged."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import yaml
from conftest import make_corpus, tiny_config

from seqtool.data.text import Vocabulary, read_text, tokenize
from seqtool.errors import SeqtoolError
from seqtool.tasks.language_model import corpus as corpus_io


@pytest.fixture
def streaming(monkeypatch):
    """Every file takes the streaming path, in chunks of 1,000 bytes (so chunks end everywhere)."""
    monkeypatch.setattr(corpus_io, "STREAM_ABOVE_BYTES", 0)
    monkeypatch.setattr(corpus_io, "CHUNK_BYTES", 1000)


def awkward_text() -> str:
    """Multi-byte characters, CRLF line ends, a long line without newlines, a rare word."""
    lines = make_corpus(300).splitlines()
    lines[10] = "café naïve 日本語 — “quoted” zephyr"
    lines[40] = " ".join(["longline"] * 400)
    return "\r\n".join(lines) + "\r\n"


def test_chunked_character_encoding_equals_whole_text(tmp_path, streaming):
    path = tmp_path / "c.txt"
    path.write_bytes(b"\xef\xbb\xbf" + awkward_text().encode("utf-8"))  # with a byte-order mark
    streamed_vocab, streamed = corpus_io.load_corpus(path, "char", 1, 0.1, 0.05, cache_dir=tmp_path / "cache")
    whole_vocab, whole = corpus_io.load_corpus(path, "char", 1, 0.1, 0.05, cache_dir=None)
    assert streamed_vocab == whole_vocab
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(streamed[split], whole[split])
    assert isinstance(streamed["train"], np.memmap) and streamed["train"].dtype == np.uint8


def test_chunked_word_encoding_splits_by_token_and_counts_the_training_part(tmp_path, streaming):
    path = tmp_path / "w.txt"
    path.write_text(awkward_text(), encoding="utf-8", newline="")
    vocab, splits = corpus_io.load_corpus(path, "word", 2, 0.2, 0.0, cache_dir=tmp_path / "cache")
    tokens = tokenize(read_text(path), "word")
    train_end = len(tokens) - int(len(tokens) * 0.2)
    counts = Counter(tokens[:train_end])
    assert vocab == Vocabulary.from_counts("word", list(counts), list(counts.values()), 2)
    assert "zephyr" not in vocab.ids  # seen once: below min_freq
    ids = np.array([vocab.ids.get(t, 0) for t in tokens])
    np.testing.assert_array_equal(np.concatenate([splits["train"], splits["val"]]), ids)
    assert len(splits["train"]) == train_end and len(splits["test"]) == 0


def test_the_cache_is_reused_until_the_file_changes(tmp_path, streaming, monkeypatch):
    path = tmp_path / "c.txt"
    path.write_text(make_corpus(200), encoding="utf-8")
    cache = tmp_path / "cache"
    vocab, first = corpus_io.load_corpus(path, "char", 1, 0.1, cache_dir=cache)
    encode = corpus_io._write_provisional_ids

    def refuse(*args):
        raise AssertionError("re-encoded although the cache holds this file")

    monkeypatch.setattr(corpus_io, "_write_provisional_ids", refuse)
    again_vocab, again = corpus_io.load_corpus(path, "char", 1, 0.1, cache_dir=cache)  # a new run
    assert again_vocab == vocab
    np.testing.assert_array_equal(again["train"], first["train"])
    corpus_io.load_corpus(path, "char", 1, 0.1, vocabulary=vocab, cache_dir=cache)  # resume / evaluate
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".json", ".tokens"]  # no temporary left

    path.write_text(make_corpus(200, seed=1), encoding="utf-8")  # new content, new size/mtime
    with pytest.raises(AssertionError, match="re-encoded"):
        corpus_io.load_corpus(path, "char", 1, 0.1, cache_dir=cache)
    monkeypatch.setattr(corpus_io, "_write_provisional_ids", encode)
    _, changed = corpus_io.load_corpus(path, "char", 1, 0.1, cache_dir=cache)
    assert not np.array_equal(changed["train"][:500], first["train"][:500])


def test_bad_bytes_in_a_later_chunk_are_named_by_offset(tmp_path, streaming):
    path = tmp_path / "bad.txt"
    text = make_corpus(200).encode("utf-8")
    path.write_bytes(text[:2500] + b"\xff" + text[2500:])
    with pytest.raises(SeqtoolError, match=r"invalid byte 0xff at byte offset 2500"):
        corpus_io.load_corpus(path, "char", 1, 0.1, cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*provisional*"))


def test_training_and_evaluating_through_the_cache(tmp_path, corpus, streaming, run_cli):
    config = tmp_path / "lm.yaml"
    config.write_text(yaml.safe_dump(tiny_config(corpus, training={"max_steps": 10})))
    assert run_cli("train", config, "--run-dir", tmp_path / "runs/a").code == 0
    cache = tmp_path / "runs/.seqtool-cache"
    assert len(list(cache.glob("*.tokens"))) == 1
    result = run_cli("evaluate", tmp_path / "runs/a", "--json")
    assert result.code == 0, result
    assert len(list(cache.glob("*.tokens"))) == 1  # evaluate read the same token file


def test_a_full_disk_while_caching_is_one_clear_error_and_leaves_no_partial_files(tmp_path, streaming, monkeypatch):
    path = tmp_path / "c.txt"
    path.write_text(make_corpus(), encoding="utf-8")
    cache = tmp_path / "cache"

    real_replace = corpus_io.os.replace

    def no_space(source, target):  # the disk fills up while the token file itself is written
        if str(target).endswith(".tokens"):
            raise OSError(28, "No space left on device", str(target))
        real_replace(source, target)

    monkeypatch.setattr(corpus_io.os, "replace", no_space)
    with pytest.raises(SeqtoolError, match="could not write the token cache .*No space left on device"):
        corpus_io.load_corpus(path, "char", 1, 0.1, cache_dir=cache)
    left = sorted(p.name for p in cache.iterdir())
    assert len(left) == 1 and left[0].endswith(".vocab.json"), left  # the vocabulary, whole; nothing partial
