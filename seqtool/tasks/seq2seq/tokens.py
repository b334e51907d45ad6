"""How each side of a pair is cut into tokens (characters, words, whitespace-separated symbols, or
learned subword pieces) and joined back."""

from __future__ import annotations

from typing import Literal

from seqtool.data.text import WORD_PATTERN, detokenize
from seqtool.tasks.seq2seq.subwords import Subwords

Tokenizer = Literal["char", "word", "whitespace", "bpe", "unigram"]
SUBWORD_TOKENIZERS = ("bpe", "unigram")
UNKNOWN = "<unk>"  # what a token outside the vocabulary reads as


def tokenize(text: str, tokenizer: str) -> list[str]:
    """A rule-based tokenizer's tokens (char, word or whitespace)."""
    if tokenizer == "char":
        return list(text)
    return WORD_PATTERN.findall(text) if tokenizer == "word" else text.split()


def join_tokens(tokens: list[str], tokenizer: str) -> str:
    return " ".join(tokens) if tokenizer == "whitespace" else detokenize(tokens, tokenizer)


class Codec:
    """One side's tokenizer: text to the tokens the model reads or writes, tokens back to text,
    and the units the token error rate counts (words of the text, for subword pieces)."""

    def __init__(self, tokenizer: str, subwords: Subwords | None = None):
        self.tokenizer, self.subwords = tokenizer, subwords

    def tokens(self, text: str) -> list[str]:
        return self.subwords.tokens(text) if self.subwords is not None else tokenize(text, self.tokenizer)

    def join(self, tokens: list[str]) -> str:
        return self.subwords.join(tokens) if self.subwords is not None else join_tokens(tokens, self.tokenizer)

    def normal(self, text: str) -> str:
        """A reference or source text as outputs are scored against it: a rule tokenizer's
        tokens joined back (its spacing), or the text itself beside subword output."""
        return text.strip() if self.subwords is not None else self.join(self.tokens(text))

    def units(self, text: str) -> list[str]:
        return text.split() if self.subwords is not None else tokenize(text, self.tokenizer)

    def output_tokens(self, text: str) -> list[str]:
        """A decoded output's tokens as the model wrote them: `tokens`, with each `<unk>` kept one
        token (the word tokenizer alone reads it as `<`, `unk`, `>`)."""
        tokens: list[str] = []
        for k, piece in enumerate(text.split(UNKNOWN)):
            tokens += ([UNKNOWN] if k else []) + (self.tokens(piece) if piece.strip() or self.subwords is None else [])
        return tokens
