"""Text corpora as token streams: tokenizers, vocabulary, encoding to compact numpy arrays.

Pure functions of their inputs (no model, no torch), so each is tested with hand-made examples.
An encoded corpus is a 1-D numpy array of the smallest unsigned integer type that holds the
vocabulary (uint8 for Tiny Shakespeare's 66 symbols), not a Python list: a 1 GB text becomes
1 GB of uint8 rather than ~30 GB of Python ints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqtool.errors import SeqtoolError, reading_user_file

UNK = "<unk>"
NEWLINE = "\n"

# Words (with inner apostrophes such as "don't"), single punctuation marks, and newlines: line
# structure matters for poetry and plays, so "\n" is a token of its own.
WORD_PATTERN = re.compile(r"\w+(?:'\w+)*|[^\w\s]|\n")
# Detokenizing writes "word, word." rather than "word , word ." (and re-tokenizes to the same tokens).
CLOSING_PUNCTUATION = frozenset(",.;:!?)]}")
_OPENING_BRACKETS = frozenset("([{")


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file; errors name the file (and the byte offset for bad encodings)."""
    path = Path(path)
    with reading_user_file(path, expected="a text file"):
        text = path.read_bytes().decode("utf-8-sig")
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise SeqtoolError(f"{path}: the file is empty")
    return text


def tokenize(text: str, tokenizer: str) -> list[str]:
    """Split text into tokens: characters, or words/punctuation/newlines."""
    if tokenizer == "char":
        return list(text)
    return WORD_PATTERN.findall(text)


def detokenize_pieces(tokens: Iterable[str], tokenizer: str, continues_line: bool = False) -> Iterator[str]:
    """The text of each token with the spacing that goes before it, for streaming output.

    `continues_line`: the tokens continue text that ends mid-line (a prompt), so the first word
    needs a separating space.
    """
    if tokenizer == "char":
        yield from tokens
        return
    glue_next = not continues_line  # no space before the next token (line start, after an opening bracket)
    for token in tokens:
        if token == NEWLINE:
            yield NEWLINE
            glue_next = True
            continue
        yield token if glue_next or token in CLOSING_PUNCTUATION else " " + token
        glue_next = token in _OPENING_BRACKETS


def detokenize(tokens: Iterable[str], tokenizer: str) -> str:
    return "".join(detokenize_pieces(tokens, tokenizer))


def smallest_dtype(vocab_size: int) -> type[np.unsignedinteger]:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return dtype
    raise SeqtoolError(f"vocabulary of {vocab_size} tokens is too large")


@dataclass
class Vocabulary:
    """Token <-> id mapping with the training counts (the unigram baseline needs them).

    Id 0 is always `<unk>`, so text outside the training vocabulary still encodes.
    """

    tokenizer: str
    tokens: list[str]
    counts: list[int]

    def __post_init__(self) -> None:
        self.ids = {token: i for i, token in enumerate(self.tokens)}  # token -> id

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, text: str, tokenizer: str, min_freq: int = 1) -> Vocabulary:
        if tokenizer == "char":
            codepoints = _codepoints(text)
            values, counts = np.unique(codepoints, return_counts=True)
            pairs = [(chr(int(v)), int(c)) for v, c in zip(values, counts, strict=True)]
        else:
            words, counts = np.unique(np.array(tokenize(text, tokenizer), dtype=object), return_counts=True)
            pairs = [(str(w), int(c)) for w, c in zip(words, counts, strict=True)]
        return cls.from_counts(tokenizer, [t for t, _ in pairs], [c for _, c in pairs], min_freq)

    @classmethod
    def from_counts(cls, tokenizer: str, tokens: list[str], counts: list[int], min_freq: int = 1) -> Vocabulary:
        pairs = list(zip(tokens, counts, strict=True))
        kept = [(t, c) for t, c in pairs if c >= min_freq and t != UNK]
        unk_count = sum(c for t, c in pairs if c < min_freq or t == UNK)
        # Most frequent first (ties by token) so ids are stable and small ids are common tokens.
        kept.sort(key=lambda pair: (-pair[1], pair[0]))
        return cls(tokenizer, [UNK] + [t for t, _ in kept], [unk_count] + [c for _, c in kept])

    def encode(self, text: str) -> np.ndarray:
        """Text -> 1-D array of ids in the smallest dtype; unknown tokens map to `<unk>` (0)."""
        dtype = smallest_dtype(len(self))
        if self.tokenizer == "char":
            # Vectorised: look every code point up in the sorted code points of the vocabulary.
            codepoints = _codepoints(text)
            known = np.array([ord(t) for t in self.tokens[1:]], dtype=np.uint32)
            order = np.argsort(known)
            sorted_known = known[order]
            position = np.clip(np.searchsorted(sorted_known, codepoints), 0, max(len(known) - 1, 0))
            if len(known) == 0:
                return np.zeros(len(codepoints), dtype=dtype)
            found = sorted_known[position] == codepoints
            ids = np.where(found, order[position] + 1, 0)
            return ids.astype(dtype)
        index = self.ids
        tokens = tokenize(text, self.tokenizer)
        return np.fromiter((index.get(t, 0) for t in tokens), dtype=dtype, count=len(tokens))

    def unknown_tokens(self, text: str) -> list[str]:
        return sorted({t for t in tokenize(text, self.tokenizer) if t not in self.ids})

    def decode(self, ids: Iterable[int]) -> str:
        return detokenize((self.tokens[i] for i in ids), self.tokenizer)

    def to_dict(self) -> dict:
        return {"tokenizer": self.tokenizer, "tokens": list(self.tokens), "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        return cls(data["tokenizer"], list(data["tokens"]), [int(c) for c in data["counts"]])


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def split_by_position(text: str, val_fraction: float, test_fraction: float) -> tuple[str, str, str]:
    """Contiguous train | val | test split: the held-out parts are the end of the text, so that
    validation measures continuing text the model has not seen rather than interleaved lines."""
    n = len(text)
    n_test = int(n * test_fraction)
    n_val = int(n * val_fraction)
    train_end = n - n_val - n_test
    return text[:train_end], text[train_end : n - n_test], text[n - n_test :]


def batchify(stream: np.ndarray, batch_size: int) -> np.ndarray:
    """Cut a token stream into `batch_size` equal contiguous rows, dropping the remainder.

    With the stream a b c ... x and batch_size 4 (the remainder y z dropped):

        ┌ a b c d e f ┐
        │ g h i j k l │    row r continues, batch after batch, where row r stopped;
        │ m n o p q r │    columns are time. Shape (batch_size, len(stream) // batch_size).
        └ s t u v w x ┘
    """
    length = len(stream) // batch_size
    return stream[: batch_size * length].reshape(batch_size, length)


def bptt_windows(num_columns: int, seq_len: int, full_only: bool) -> list[tuple[int, int]]:
    """(start, length) of the truncated-BPTT windows over a batchified array.

    The target of column t is column t + 1, so inputs stop one column short of the end. With
    seq_len 4 on the 6 columns above: inputs a b c d -> targets b c d e, then e -> f (a short
    final window, dropped when `full_only`, so that training batches all have one shape).
    """
    usable = num_columns - 1
    windows = [(start, min(seq_len, usable - start)) for start in range(0, usable, seq_len)]
    if full_only:
        windows = [(s, n) for s, n in windows if n == seq_len]
    return windows


def vocabulary_metadata(vocabulary: Vocabulary, tokenizer: str, lowercase: bool) -> dict[str, Any]:
    """How an exported model's deployment turns text into ids and back, as JSON data."""
    return {
        "tokenizer": tokenizer,
        "lowercase": lowercase,
        "token_pattern": WORD_PATTERN.pattern if tokenizer == "word" else None,
        "tokens": list(vocabulary.tokens),
        "unknown_id": 0,
        "how": ("one token per character" if tokenizer == "char" else "tokens are the matches of token_pattern (Python re)")
        + "; a token's id is its position in tokens, and a token not in it maps to unknown_id",
        "detokenize": "concatenate"
        if tokenizer == "char"
        else "join with single spaces, but no space before any of ,.;:!?)]} or after any of ([{, and none around a newline token",
    }
