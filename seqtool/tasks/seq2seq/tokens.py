"""How each side of a pair is cut into tokens (characters, words or whitespace-separated symbols)
and joined back."""

from __future__ import annotations

from typing import Literal

from seqtool.data.text import WORD_PATTERN, detokenize

Tokenizer = Literal["char", "word", "whitespace"]
UNKNOWN = "<unk>"  # what a token outside the vocabulary reads as


def tokenize(text: str, tokenizer: str) -> list[str]:
    if tokenizer == "char":
        return list(text)
    return WORD_PATTERN.findall(text) if tokenizer == "word" else text.split()


def join_tokens(tokens: list[str], tokenizer: str) -> str:
    return " ".join(tokens) if tokenizer == "whitespace" else detokenize(tokens, tokenizer)


def output_tokens(text: str, tokenizer: str) -> list[str]:
    """A decoded output's tokens as the model wrote them: `tokenize`, with each `<unk>` kept one
    token (the word tokenizer alone reads it as `<`, `unk`, `>`)."""
    tokens: list[str] = []
    for k, piece in enumerate(text.split(UNKNOWN)):
        tokens += ([UNKNOWN] if k else []) + tokenize(piece, tokenizer)
    return tokens
