"""Sentiment classification: RNN, LSTM, GRU and bidirectional LSTM on the shipped config, and
the speed of tokenizing 100k rows.

Each variant trains with the shipped settings, changing only the model type and direction, then
is scored on the held-out 10% beside the majority-class baseline.

    .venv/bin/python benchmarks/classify_quality.py [--config configs/sentiment_lstm.yaml] [--rows 100000]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from seqtool import engine
from seqtool.configure import load_config
from seqtool.tasks.classify import table

VARIANTS = {
    "RNN": ["model.type=rnn", "model.bidirectional=false"],
    "LSTM": ["model.type=lstm", "model.bidirectional=false"],
    "GRU": ["model.type=gru", "model.bidirectional=false"],
    "BiLSTM": ["model.type=lstm", "model.bidirectional=true"],
}


def tokenization_speed(config_path: str, rows: int) -> tuple[int, float]:
    """Seconds to tokenize, build the vocabulary and encode `rows` texts (the corpus repeated)."""
    config = load_config(config_path)
    texts = pd.read_csv(config.data.path)[config.data.text_column]
    texts = pd.concat([texts] * (rows // len(texts) + 1), ignore_index=True).iloc[:rows]
    start = time.perf_counter()
    tokens = table.tokenize_column(texts, config.data.tokenizer, config.data.lowercase)
    vocabulary = table.build_vocabulary(tokens, config.data.tokenizer, config.data.min_freq)
    table.encode_column(tokens, vocabulary, config.data.max_length)
    return len(texts), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/sentiment_lstm.yaml")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    console = Console()
    result = Table(title=f"{args.config}: held-out validation part")
    for column in ("model", "train s", "accuracy", "macro-F1"):
        result.add_column(column, justify="right" if column != "model" else "left")
    metrics = {}
    for name in args.variants.split(","):
        config = load_config(args.config, VARIANTS[name])
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            engine.train(config, Path(tmp) / "run", console=Console(file=io.StringIO()))
            seconds = time.perf_counter() - start
            metrics = engine.evaluate(Path(tmp) / "run").metrics
        result.add_row(name, f"{seconds:.0f}", f"{metrics['accuracy']:.4f}", f"{metrics['macro_f1']:.4f}", style="bold")
    result.add_row("majority class", "-", f"{metrics['majority_accuracy']:.4f}", f"{metrics['majority_macro_f1']:.4f}")
    console.print(result)
    rows, seconds = tokenization_speed(args.config, args.rows)
    print(f"tokenize + vocabulary + encode {rows:,} rows: {seconds:.2f} s ({rows / seconds:,.0f} rows/s)")
    print(
        f"reproduce: .venv/bin/python benchmarks/classify_quality.py --config {args.config} --rows {args.rows} --variants {args.variants}"
    )


if __name__ == "__main__":
    main()
