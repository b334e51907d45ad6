"""`training.pretrain: language_model`: a classifier that trains its own language models first.

In one `seqtool train`, before the classifier itself, a language model of the classifier's shape
(cell, sizes, tokenizer) learns to predict the next word of the training texts, plus the texts of
`data.unlabelled` when given, and never the validation or test texts. A bidirectional classifier
also gets a backward model, started from the forward one's weights so that the two begin from
one embedding. Each is an ordinary language-model run in a subfolder of the run directory
(`pretrain-forward/`, `pretrain-backward/`, see `seqtool.tasks.Phase`), so `--resume` continues
whichever phase was interrupted. The classifier then starts from their best checkpoints exactly
as with `--init-from` (`seqtool.tasks.seeding`).

The texts go to the language model one per line, shuffled (so that its validation tail, cut
from the end of the file, is a fair sample of them), lower-cased when the classifier lower-cases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from seqtool.data import csvfile
from seqtool.data.text import read_text
from seqtool.errors import SeqtoolError
from seqtool.schema import Config
from seqtool.tasks import Phase

FORWARD, BACKWARD = "pretrain-forward", "pretrain-backward"
CORPUS = "pretrain-texts.txt"
LM_VAL_FRACTION = 0.05  # of the pretraining texts: it chooses the language model's checkpoint


def phases(config: Config, training_texts: pd.Series, folder: Path) -> list[Phase]:
    """The language models to train before the classifier, and the file of texts they read."""
    unlabelled = read_unlabelled(config.data.unlabelled, config.data.text_column) if config.data.unlabelled else None
    texts = pd.concat([training_texts, unlabelled]) if unlabelled is not None else training_texts
    corpus = _corpus(texts, config)
    extra = f" + {len(unlabelled):,} unlabelled from {config.data.unlabelled}" if unlabelled is not None else ""
    described = f"language model on {len(training_texts):,} training texts{extra}"
    directions = ("forward", "backward") if config.model.bidirectional else ("forward",)
    found = []
    for direction in directions:
        lm = _language_model_config(config, folder / CORPUS, direction)
        name = FORWARD if direction == "forward" else BACKWARD
        start = (FORWARD,) if direction == "backward" else ()
        files = {CORPUS: corpus} if direction == "forward" else {}
        found.append(Phase(name, lm, f"{direction} {described}", start, files))
    return found


def _language_model_config(config: Config, corpus: Path, direction: str) -> dict:
    """The classifier's shape, the pretraining budget and rates, and the classifier's device and
    precision. A word model uses the adaptive softmax: the full one over a vocabulary of ten
    thousand words costs most of the step."""
    model, training, data = config.model, config.training, config.data
    shape = {key: getattr(model, key) for key in ("type", "hidden_size", "num_layers", "embedding_size", "dropout")}
    shape |= {"nonlinearity": model.nonlinearity, "forget_bias": model.forget_bias}
    return {
        "task": "language_model",
        "seed": config.seed,
        "data": {"path": str(corpus), "tokenizer": data.tokenizer, "min_freq": data.min_freq, "val_fraction": LM_VAL_FRACTION},
        "model": shape | {"direction": direction, "output": "adaptive" if data.tokenizer == "word" else "full"},
        "training": {
            "batch_size": training.pretrain_batch_size,
            "seq_len": training.pretrain_seq_len,
            "epochs": training.pretrain_epochs,
            "max_time": training.pretrain_max_time,
            "lr": training.pretrain_lr,
            "warmup_steps": 50,
            "scheduler": "cosine",
            "grad_clip": 1.0,
            "eval_every": training.eval_every,
            "log_every": training.log_every,
            "device": training.device,
            "precision": training.precision,
        },
    }


def _corpus(texts: pd.Series, config: Config) -> str:
    """One text per line (line breaks inside a text become spaces), in a seeded shuffle."""
    order = np.random.default_rng(config.seed).permutation(len(texts))
    lines = texts.astype(str).iloc[order].str.replace(r"\s*\n\s*", " ", regex=True).str.strip()
    if config.data.lowercase:
        lines = lines.str.lower()
    return "\n".join(lines[lines != ""]) + "\n"


def read_unlabelled(path: str, text_column: str) -> pd.Series:
    """`data.unlabelled`: a CSV or TSV with the text column, or a text file of one text per line.
    A missing, empty or binary file is one error naming the key and the file."""
    try:
        texts = _unlabelled_texts(path, text_column)
    except SeqtoolError as exc:
        raise SeqtoolError(f"data.unlabelled: {exc}") from None
    texts = texts[texts.str.strip() != ""]
    if texts.empty:
        raise SeqtoolError(f"data.unlabelled: {path} holds no text")
    return texts


def _unlabelled_texts(path: str, text_column: str) -> pd.Series:
    if Path(path).suffix.lower() in (".csv", ".tsv"):
        frame = csvfile.read_csv(path)
        csvfile.check_columns(frame, {"text_column": [text_column]}, path)
        return frame[text_column].dropna().astype(str)
    text = read_text(path)  # missing, not UTF-8, or empty: one line naming it
    if "\x00" in text:
        raise SeqtoolError(f"{path} is a binary file (it holds NUL bytes), not text of one text per line")
    return pd.Series(text.splitlines())
