"""Full softmax against adaptive softmax on a word-level language model with a large vocabulary.

Both variants train the same LSTM on the same data for the same wall time (`training.max_time`),
then the run's checkpoint is scored on the validation text. With a vocabulary of ~28k words the
output layer is most of the work of the full softmax; the adaptive softmax (Grave et al. 2017)
gives the frequent words a small head and the rare ones cheaper clusters. Target: adaptive at
least 2x the tokens/s at equal or better validation perplexity.

The corpus is built from the bundled data: Tiny Shakespeare plus the movie-review sentences
(two vocabularies, ~30k distinct words together). The first 90% of each is training text, the
rest validation; words first seen in validation count as `<unk>`.

    .venv/bin/python benchmarks/word_lm.py [--seconds 60] [--rounds 1] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from seqtool.configure import config_from_dict
from seqtool.engine import evaluate, load_trained, train
from seqtool.schema import apply_overrides

REPO = Path(__file__).resolve().parent.parent


def write_corpus(folder: Path) -> tuple[Path, Path]:
    """train.txt and val.txt: the heads and tails of Shakespeare and of the review sentences."""
    plays = (REPO / "data/tinyshakespeare.txt").read_text(encoding="utf-8").splitlines()
    reviews = pd.read_csv(REPO / "data/sentiment.csv")["text"].astype(str).tolist()
    train_lines, val_lines = [], []
    for lines in (plays, reviews):
        cut = int(0.9 * len(lines))
        train_lines += lines[:cut]
        val_lines += lines[cut:]
    train_path, val_path = folder / "train.txt", folder / "val.txt"
    train_path.write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    val_path.write_text("\n".join(val_lines) + "\n", encoding="utf-8")
    return train_path, val_path


def run(output: str, corpus: tuple[Path, Path], seconds: float, overrides: list[str], folder: Path) -> dict[str, float]:
    """Train one variant for `seconds`, then score its last checkpoint on the validation text."""
    raw = {
        "task": "language_model",
        "seed": 0,
        "data": {"train": str(corpus[0]), "val": str(corpus[1]), "tokenizer": "word"},
        "model": {"type": "lstm", "hidden_size": 256, "num_layers": 1, "embedding_size": 256, "dropout": 0.2, "output": output},
        "training": {
            "batch_size": 32,
            "seq_len": 35,
            "epochs": None,
            "max_steps": None,
            "max_time": f"{seconds}s",
            "lr": 3e-3,
            "warmup_steps": 20,
            "eval_every": 10**9,  # only the final evaluation: the time budget goes to training
            "log_every": 10,
            "device": "cpu",
        },
    }
    apply_overrides(raw, overrides)
    run_dir = folder / f"run-{output}"
    result = train(config_from_dict(raw), run_dir, force=True, console=Console(file=io.StringIO()))
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [e["tok_per_s"] for e in events if e["split"] == "train" and e["step"] > 20]
    metrics = evaluate(run_dir / "last.pt").metrics
    return {
        "steps": result.state.step,
        "tok_per_s": statistics.median(rates),
        "val_ppl": metrics["perplexity"],
        "unigram_ppl": metrics["unigram_perplexity"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="training time of each variant")
    parser.add_argument("--rounds", type=int, default=1, help="repeat both variants; the table shows medians")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides for both variants")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"full": [], "adaptive": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        corpus = write_corpus(folder)
        for _ in range(args.rounds):
            for output in results:  # alternating, so machine noise hits both alike
                results[output].append(run(output, corpus, args.seconds, args.overrides, folder))
        task, _, _ = load_trained(folder / "run-adaptive" / "last.pt")
        vocab_size, cutoffs = len(task.vocabulary), task.build_model().adaptive.cutoffs[:-1]
    table = Table(
        title=f"Word LSTM 1x256, vocabulary {vocab_size:,} words (adaptive cutoffs {cutoffs}), "
        f"{args.seconds:g} s each, {torch.get_num_threads()} threads, median of {args.rounds}"
    )
    for column in ("output", "steps", "tokens/s", "val perplexity", "unigram perplexity"):
        table.add_column(column, justify="left" if column == "output" else "right")
    medians = {k: {m: statistics.median(r[m] for r in runs) for m in runs[0]} for k, runs in results.items()}
    for output, m in medians.items():
        table.add_row(output, f"{m['steps']:,.0f}", f"{m['tok_per_s']:,.0f}", f"{m['val_ppl']:.1f}", f"{m['unigram_ppl']:.1f}")
    Console(width=max(Console().width, 110)).print(table)
    speedup = medians["adaptive"]["tok_per_s"] / medians["full"]["tok_per_s"]
    better = medians["adaptive"]["val_ppl"] <= medians["full"]["val_ppl"]
    met = speedup >= 2 and better
    print(
        f"adaptive/full speed: {speedup:.2f}x; perplexity {'equal or better' if better else 'worse'}; target (2x, <=): {'met' if met else 'NOT met'}"
    )
    print(f"reproduce: .venv/bin/python benchmarks/word_lm.py --seconds {args.seconds:g} --rounds {args.rounds}")


if __name__ == "__main__":
    main()
