import numpy as np
import pytest

from seqtool.data.text import (
    UNK,
    Vocabulary,
    batchify,
    bptt_windows,
    detokenize,
    read_text,
    split_by_position,
    tokenize,
)
from seqtool.errors import SeqtoolError


def test_char_vocabulary_round_trips_text_exactly():
    text = "To be, or not to be:\nthat is the question. Æsop — ünïcödé ✓\n"
    vocab = Vocabulary.build(text, "char")
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    assert ids.dtype == np.uint8


def test_vocabulary_orders_by_frequency_with_unk_first():
    vocab = Vocabulary.build("aaabbc", "char")
    assert vocab.tokens == [UNK, "a", "b", "c"] and vocab.counts == [0, 3, 2, 1]
    assert vocab.encode("cabz").tolist() == [3, 1, 2, 0]  # z was never seen: <unk>


def test_word_tokenizer_keeps_punctuation_and_newlines():
    tokens = tokenize("ROMEO: I don't know.\nNo!", "word")
    assert tokens == ["ROMEO", ":", "I", "don't", "know", ".", "\n", "No", "!"]
    assert tokenize(detokenize(tokens, "word"), "word") == tokens
    assert detokenize(tokens, "word") == "ROMEO: I don't know.\nNo!"
    odd = ["(", "a", ",", "b", ")", "'", "c", "!", "\n", "d"]
    assert detokenize(odd, "word") == "(a, b) ' c!\nd"
    assert tokenize(detokenize(odd, "word"), "word") == odd


def test_word_vocabulary_min_freq_maps_rare_words_to_unk():
    vocab = Vocabulary.build("a a a b b c", "word", min_freq=2)
    assert vocab.tokens == [UNK, "a", "b"] and vocab.counts == [1, 3, 2]
    assert vocab.encode("a c d b").tolist() == [1, 0, 0, 2]


def test_encoded_dtype_grows_with_the_vocabulary():
    words = " ".join(f"w{i}" for i in range(300))
    vocab = Vocabulary.build(words, "word")
    assert vocab.encode(words).dtype == np.uint16
    assert vocab.decode(vocab.encode(words)) == words


def test_vocabulary_survives_its_plain_data_form():
    vocab = Vocabulary.build("hello world", "char")
    again = Vocabulary.from_dict(vocab.to_dict())
    assert again.tokens == vocab.tokens and again.encode("low").tolist() == vocab.encode("low").tolist()


def test_batchify_matches_the_docstring_picture():
    stream = np.arange(26)  # a..z
    rows = batchify(stream, 4)
    assert rows.shape == (4, 6)
    assert rows[0].tolist() == [0, 1, 2, 3, 4, 5]  # a b c d e f
    assert rows[3].tolist() == [18, 19, 20, 21, 22, 23]  # s t u v w x; y z dropped


def test_bptt_windows_leave_room_for_the_shifted_target():
    assert bptt_windows(6, 4, full_only=False) == [(0, 4), (4, 1)]
    assert bptt_windows(6, 4, full_only=True) == [(0, 4)]
    assert bptt_windows(9, 4, full_only=True) == [(0, 4), (4, 4)]


def test_split_by_position_is_contiguous():
    text = "0123456789" * 10
    train, val, test = split_by_position(text, 0.1, 0.2)
    assert train + val + test == text
    assert (len(train), len(val), len(test)) == (70, 10, 20)


def test_read_text_handles_bom_and_windows_line_endings(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbfline one\r\nline two\r\n")
    assert read_text(path) == "line one\nline two\n"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"  \n\n", "the file is empty"),
        (b"good text then \xff\xfe bad", "not UTF-8 text .invalid byte 0xff at byte offset 15"),
    ],
)
def test_read_text_errors_say_what_and_where(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(SeqtoolError, match=message):
        read_text(path)


def test_read_text_missing_file(tmp_path):
    with pytest.raises(SeqtoolError, match="data file not found"):
        read_text(tmp_path / "nope.txt")
