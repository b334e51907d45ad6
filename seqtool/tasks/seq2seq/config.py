"""The seq2seq config sections, and the starter config `seqtool init` proposes for a table of pairs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from seqtool.schema import FileSplitData, TokenModelConfig, TrainingConfig, option, test_fraction_option
from seqtool.tasks import Starter
from seqtool.tasks.seq2seq.tokens import Tokenizer, tokenize

DEFAULT_VOCAB_SIZE = 8000  # pieces per subword vocabulary when data.vocab_size is null


@dataclass
class Seq2SeqData(FileSplitData):
    """A CSV/TSV of pairs; `path` is split at random (seeded)."""

    source_column: str = option("source", "column holding the input sequence")
    target_column: str = option("target", "column holding the output sequence")
    source_tokenizer: Tokenizer = option(
        "word",
        "char, word (words and punctuation), whitespace (space-separated symbols), or subword pieces learned on the "
        "training part with SentencePiece: bpe (byte-pair encoding) or unigram (unigram language model)",
    )
    target_tokenizer: Tokenizer = option("word", "as source_tokenizer, for the target side")
    share_vocabulary: bool = option(
        False, "one vocabulary (and embedding) for both sides; for subwords, one model learned on both"
    )
    vocab_size: int | None = option(
        None, f"pieces per subword vocabulary (bpe, unigram; null: {DEFAULT_VOCAB_SIZE:,}, or set it lower for small data)", ge=8
    )
    min_freq: int = option(1, "rarer tokens map to `<unk>` (char, word and whitespace tokenizers)", ge=1)
    max_source_length: int = option(100, "longer sources are truncated (and counted)", ge=1)
    max_target_length: int = option(100, "longer targets are truncated (and counted); also the decoding limit", ge=1)
    test_fraction: float = test_fraction_option(0.1)


@dataclass
class Seq2SeqModel(TokenModelConfig):
    bidirectional: bool = option(True, "the encoder reads the source in both directions")
    attention: Literal["dot", "general", "bahdanau", "none"] = option(
        "general", "Luong dot or general (bilinear), Bahdanau additive, or none (the final state alone)"
    )
    input_feeding: bool = option(True, "feed each step's attentional state into the next step (Luong)")
    tie_embeddings: bool = option(False, "share the decoder's input embedding and output matrix (embedding_size == hidden_size)")
    beam_size: int = option(
        1, "beams when evaluate, predict, serve and training's validation decode (--beam-size overrides); 1: greedy", ge=1
    )
    length_penalty: float = option(
        1.0, "beam search's GNMT length-penalty exponent (--length-penalty overrides; 0: none)", ge=0.0
    )
    copy_unknown: bool = option(
        True, "each <unk> in an output becomes the source token the attention points at (Luong et al. 2015)"
    )


@dataclass
class Seq2SeqTraining(TrainingConfig):
    label_smoothing: float = option(0.1, "share of each target's probability spread over the vocabulary", ge=0.0, lt=1.0)


MAX_STARTER_LENGTH = 200  # longer sequences are truncated by a starter config (and counted)


PAIR_NAMES = (("source", "target"), ("src", "tgt"), ("input", "output"), ("question", "answer"))


def _tokenizer_for(values: pd.Series) -> Tokenizer | None:
    """whitespace for space-separated symbols (phonemes), word for prose, None for single words
    (spelled out by characters, or words when the other side is prose: decided by the caller)."""
    sample = values.astype(str).head(2000)
    if not sample.str.contains(" ").mean() > 0.5:
        return None
    symbols = sample.str.split().explode()
    return "whitespace" if symbols.str.fullmatch(r"[A-Z]{1,3}[0-9]?").mean() > 0.9 else "word"


SUBWORD_TYPES = 2000  # prose pairs with more distinct words than this get a shared BPE vocabulary


def _subword_size(types: int) -> int:
    """A shared vocabulary about a sixth of the word types, in thousands, 1,000 to 8,000: 4,000 for
    the 23,564 types of the bundled English-German messages, the size tuned on them."""
    return int(min(8, max(1, round(types / 6000)))) * 1000


def starter_config(path: Path, frame: pd.DataFrame, source: str, target: str, fit: int) -> Starter:
    guessed = {column: _tokenizer_for(frame[column]) for column in (source, target)}
    prose = "word" in guessed.values()  # single words beside prose (answers, glossaries) are words
    tokenizers = {column: tokenizer or ("word" if prose else "char") for column, tokenizer in guessed.items()}
    tokens = {column: [tokenize(str(t), tokenizers[column]) for t in frame[column]] for column in (source, target)}
    longest = {column: max(map(len, tokens[column])) for column in (source, target)}
    lengths = {column: min(n, MAX_STARTER_LENGTH) for column, n in longest.items()}
    cut = [f"{c} at {MAX_STARTER_LENGTH} tokens (the longest has {n})" for c, n in longest.items() if n > MAX_STARTER_LENGTH]
    reasons = [
        f"columns '{source}' and '{target}' hold the source and target sequences ({len(frame):,} pairs)",
        f"tokenizers: {tokenizers[source]} for the source, {tokenizers[target]} for the target",
        f"maximum lengths {lengths[source]} / {lengths[target]} tokens" + (f": truncates {', '.join(cut)}" if cut else ""),
    ]
    header = f"""# Starter config written by `seqtool init {path}`; edit freely. Reference: docs/config.md
task: seq2seq
seed: 1
data:
  path: {path}
  source_column: {source}
  target_column: {target}
"""
    types = len({t for column in (source, target) if tokenizers[column] == "word" for text in tokens[column] for t in text})
    if types > SUBWORD_TYPES:
        size = _subword_size(types)
        reasons[1] = (
            f"{types:,} distinct words: one BPE vocabulary of {size:,} pieces shared by both sides "
            "(no word is unknown, names and numbers are spelled the same on both)"
        )
        pieces = {column: min(2 * n, MAX_STARTER_LENGTH) for column, n in lengths.items()}  # a word is a piece or more
        reasons[2] = f"maximum lengths {pieces[source]} / {pieces[target]} pieces (twice the longest in words)"
        return Starter(fit, header + _subword_recipe(size, pieces[source], pieces[target]), reasons)
    return Starter(
        fit, header + _word_recipe(tokenizers[source], tokenizers[target], lengths[source], lengths[target], len(frame)), reasons
    )


def _subword_recipe(size: int, source_length: int, target_length: int) -> str:
    """configs/messages_en_de.yaml's recipe (docs/benchmarks.md) with a vocabulary sized to the data."""
    return f"""  source_tokenizer: bpe   # char | word | whitespace | bpe | unigram (subwords)
  target_tokenizer: bpe
  share_vocabulary: true
  vocab_size: {size}
  max_source_length: {source_length}
  max_target_length: {target_length}
  val_fraction: 0.05
  test_fraction: 0.05
model:
  type: gru
  hidden_size: 256
  num_layers: 1
  embedding_size: 256
  tie_embeddings: true
  dropout: 0.3
  bidirectional: true
  attention: general           # dot | general | bahdanau | none
  input_feeding: false
  beam_size: 5
training:
  batch_size: 128
  epochs: null
  max_time: 10m
  lr: 3e-3
  eval_every: 400
  label_smoothing: 0.1
  ema_decay: 0.999
"""


def _word_recipe(source_tokenizer: str, target_tokenizer: str, source_length: int, target_length: int, pairs: int) -> str:
    return f"""  source_tokenizer: {source_tokenizer}   # char | word | whitespace | bpe | unigram (subwords)
  target_tokenizer: {target_tokenizer}
  min_freq: {2 if pairs > 5000 else 1}   # rarer tokens map to <unk>
  max_source_length: {source_length}
  max_target_length: {target_length}
  val_fraction: 0.05
  test_fraction: 0.05
model:
  type: lstm
  hidden_size: 256
  num_layers: 1
  embedding_size: 128
  dropout: 0.2
  bidirectional: true
  attention: general           # dot | general | bahdanau | none
  input_feeding: false
training:
  batch_size: 64
  epochs: null
  max_time: 10m
  lr: 3e-3
  eval_every: 400
  label_smoothing: 0.1
"""
