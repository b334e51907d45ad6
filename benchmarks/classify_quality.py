"""Sentiment classification on the sentence-polarity data (MR), as the literature reports it:
stratified, seeded K-fold cross-validation, each ablation beside the n-gram baseline on the same folds.

For each fold the other folds are the run's data (its stratified 10% validation part chooses the
checkpoint and the n-gram model's regularisation); the fold itself chooses nothing and is scored
with `seqtool evaluate --data`, which puts the n-gram baseline (NBSVM or TF-IDF logistic
regression, fitted on the same training part) beside the network. Ablations:

- `none`: the shipped config without pretraining;
- `lm`: language-model pretraining (`training.pretrain: language_model`), plain fine-tuning;
- `lm+layers`: and per-layer learning rates (`training.layer_lr_decay`);
- `lm+unfreeze`: and gradual unfreezing (`training.unfreeze_every`);
- `lm+both`: both tricks.

The language models of a fold are trained once, by the first `lm` ablation listed, and the others
start from them with `--init-from` (the same models a one-command run of theirs would train).
Mean accuracy over folds with its standard error (the standard deviation over folds / sqrt(K)),
and the mean training time per fold (pretraining included). Also the speed of tokenizing 100k rows.

    .venv/bin/python benchmarks/classify_quality.py [--folds 10] [--ablations none,lm] [--only 0,1] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from seqtool import engine
from seqtool.configure import load_config
from seqtool.metrics import SUMMARY_JSON
from seqtool.tasks.classify import pretraining, table

# name -> (pretrained?, fine-tuning overrides)
ABLATIONS = {
    "none": (False, []),
    "lm": (True, []),
    "lm+layers": (True, ["training.layer_lr_decay=2.6"]),
    "lm+unfreeze": (True, ["training.unfreeze_every=100"]),
    "lm+both": (True, ["training.layer_lr_decay=2.6", "training.unfreeze_every=100"]),
}


def folds(labels: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
    """Row indices of `count` stratified folds: each class shuffled (seeded) and dealt round-robin."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(count)]
    for value in np.unique(labels):
        for position, row in enumerate(rng.permutation(np.flatnonzero(labels == value))):
            parts[position % count].append(int(row))
    return [np.sort(np.array(part)) for part in parts]


def run_fold(config_path: str, overrides: list[str], frame: pd.DataFrame, test: np.ndarray, folder: Path, lm_runs: list[Path]):
    """Train on every row but `test` (with pretrained language models from `lm_runs` when given),
    then score the held-out fold; returns (accuracy, the network's alone, n-gram accuracy, seconds). With
    model.ngram_weight the accuracy is the product's, and the network's alone is reported beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    rest = frame.drop(frame.index[test])
    rest.to_csv(folder / "train.csv", index=False)
    frame.iloc[test].to_csv(folder / "test.csv", index=False)
    config = load_config(config_path, [*overrides, f"data.path={folder / 'train.csv'}", "data.test_fraction=0"])
    start = time.perf_counter()
    engine.train(config, folder / "run", init_from=lm_runs or None, console=Console(file=io.StringIO()))
    seconds = time.perf_counter() - start
    metrics = engine.evaluate(folder / "run", data_path=str(folder / "test.csv")).metrics
    return metrics["accuracy"], metrics.get("network_accuracy", metrics["accuracy"]), metrics["ngram_accuracy"], seconds


def mean_and_error(values: list[float]) -> str:
    if len(values) < 2:
        return f"{np.mean(values):.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1) / math.sqrt(len(values)):.4f}"


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
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--only", default=None, help="comma-separated fold numbers to run (default: all)")
    parser.add_argument("--ablations", default="none,lm")
    parser.add_argument("--set", nargs="*", default=[], help="overrides applied to every ablation")
    parser.add_argument("--seed", type=int, default=0, help="the folds' shuffle")
    parser.add_argument("--pretrain", nargs="*", default=["training.pretrain_max_time=1m"], help="pretraining overrides")
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    config = load_config(args.config, args.set)
    frame = pd.read_csv(config.data.path)
    parts = folds(frame[config.data.label_column].astype(str).to_numpy(), args.folds, args.seed)
    chosen = [int(k) for k in args.only.split(",")] if args.only else list(range(args.folds))
    names = args.ablations.split(",")
    scores: dict[str, list[float]] = {name: [] for name in [*names, "n-gram"]}
    alone: dict[str, list[float]] = {name: [] for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        for k in chosen:
            lm_runs: list[Path] = []
            for name in names:
                folder = Path(tmp) / f"fold{k}" / name
                uses_lm, tricks = ABLATIONS[name]
                pretrain = ["training.pretrain=language_model", *args.pretrain] if uses_lm and not lm_runs else []
                overrides = [*pretrain, *tricks, *args.set]
                accuracy, network, ngram, seconds = run_fold(
                    args.config, overrides, frame, parts[k], folder, lm_runs if uses_lm else []
                )
                if uses_lm and lm_runs:  # it reused the language models: count their training too
                    seconds += sum(json.loads((run / SUMMARY_JSON).read_text())["wall_time_s"] for run in lm_runs)
                elif uses_lm:  # later ablations start from this one's language models
                    lm_runs = [
                        run
                        for run in (folder / "run" / pretraining.FORWARD, folder / "run" / pretraining.BACKWARD)
                        if run.is_dir()
                    ]
                scores[name].append(accuracy)
                alone[name].append(network)
                times[name].append(seconds)
                print(
                    f"fold {k} {name}: accuracy {accuracy:.4f} (network alone {network:.4f}, n-gram {ngram:.4f}), {seconds:.0f} s",
                    flush=True,
                )
            scores["n-gram"].append(ngram)
    result = Table(
        title=f"{args.config}: {args.folds}-fold cross-validation (folds {','.join(map(str, chosen))}), mean ± standard error"
    )
    for column in ("model", "accuracy", "network alone", "minus n-gram, paired", "train s per fold"):
        result.add_column(column, justify="right" if column != "model" else "left")
    for name in names:
        paired = np.array(scores[name]) - np.array(scores["n-gram"])
        wins = f" (wins {int((paired > 0).sum())} of {len(paired)})"
        row = [mean_and_error(scores[name]), mean_and_error(alone[name]), mean_and_error(list(paired)) + wins]
        result.add_row(name, *row, f"{np.mean(times[name]):.0f}")
    result.add_row("n-gram baseline (same folds)", mean_and_error(scores["n-gram"]), "-", "-", "-")
    Console(width=200).print(result)
    rows, seconds = tokenization_speed(args.config, args.rows)
    print(f"tokenize + vocabulary + encode {rows:,} rows: {seconds:.2f} s ({rows / seconds:,.0f} rows/s)")
    extra = f" --set {' '.join(args.set)}" if args.set else ""
    only = f" --only {args.only}" if args.only else ""
    print(
        f"reproduce: .venv/bin/python benchmarks/classify_quality.py --config {args.config} --folds {args.folds}{only} "
        f"--ablations {args.ablations} --pretrain {' '.join(args.pretrain)}{extra}"
    )


if __name__ == "__main__":
    main()
