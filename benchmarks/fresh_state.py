"""Reading from a fresh state: does a language model trained with a carried hidden state still
work when a prompt starts it from zero?

For each `training.state_reset` value, train the shipped char config for a fixed number of steps
(the same steps on any machine), then score the validation text two ways:
- carried: the ordinary validation loss, the state carried through the whole split;
- fresh: the split cut into 64-character windows, each read from a zero state, scoring its
  characters 9-64 (the first 8 are the prompt that sets the state up).
Goal: fresh within 5% of carried. The first characters after a fresh start (2-8) show what the
average hides. Also prints the quick start's sample from "ROMEO:" and the share of its words that
occur in the training text (the first-hour check: at least 70%), for seed 1 and over ten seeds.

    .venv/bin/python benchmarks/fresh_state.py [--steps 600] [--resets 0,0.1]
"""

from __future__ import annotations

import argparse
import io
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from seqtool import engine
from seqtool.api import load
from seqtool.configure import load_config

WINDOW, WARM_UP = 64, 8
SAMPLE_SEEDS = tuple(range(1, 11))  # the README's sample is seed 1; the others show how much it varies


@torch.no_grad()
def fresh_state_losses(model, ids: np.ndarray) -> tuple[float, float]:
    """Mean loss of characters WARM_UP+1..WINDOW, and of characters 2..WARM_UP (the prompt being
    read), over every whole WINDOW-character window of `ids`, each window read from a zero state."""
    windows = torch.from_numpy(ids[: len(ids) // WINDOW * WINDOW].astype(np.int64)).reshape(-1, WINDOW)
    sums, counts = [0.0, 0.0], [0, 0]
    for chunk in windows.split(256):
        logits, _ = model(chunk[:, :-1])  # (windows, 63, vocabulary); logits[:, t] predicts chunk[:, t + 1]
        losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="none")
        for part, scored in enumerate((losses[:, WARM_UP - 1 :], losses[:, : WARM_UP - 1])):
            sums[part] += float(scored.sum())
            counts[part] += scored.numel()
    return sums[0] / counts[0], sums[1] / counts[1]


def known_word_share(sample: str, training_text: str) -> float:
    """Share of the sample's words (letters and apostrophes) that occur in the training text."""
    known = set(re.findall(r"[A-Za-z']+", training_text))
    words = re.findall(r"[A-Za-z']+", sample)
    return sum(word in known for word in words) / max(len(words), 1)


def measure(config_path: str, steps: int, reset: float, workdir: Path, extra: list[str]) -> dict:
    budget = [f"training.max_steps={steps}", "training.max_time=null", f"training.state_reset={reset}"]
    config = load_config(config_path, [*budget, *extra])
    run_dir = workdir / f"reset_{reset}"
    start = time.perf_counter()
    engine.train(config, run_dir, force=True, console=Console(file=io.StringIO()))
    seconds = time.perf_counter() - start
    trained = load(run_dir)
    task, model = trained.task, trained.network
    carried = task.evaluate(model, "val", torch.device("cpu"))["loss"]
    fresh, first = fresh_state_losses(model, task.eval_ids("val", None))
    text = Path(config.data.path).read_text(encoding="utf-8")
    training_text = text[: int(len(text) * (1 - config.data.val_fraction - config.data.test_fraction))]
    samples = [trained.predict(prompt="ROMEO:", length=300, temperature=0.8, seed=seed) for seed in SAMPLE_SEEDS]
    known = [known_word_share(sample[len("ROMEO:") :], training_text) for sample in samples]
    return {
        "reset": reset,
        "seconds": seconds,
        "carried": carried,
        "fresh": fresh,
        "first": first,
        "sample": samples[0],
        "known": known,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/shakespeare_char_lstm.yaml")
    parser.add_argument("--steps", type=int, default=600, help="training steps per variant (the quick start's budget)")
    parser.add_argument("--resets", default="0,0.1,0.3", help="training.state_reset values to compare")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="further overrides for every variant")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(args.config, args.steps, float(r), Path(tmp), args.set) for r in args.resets.split(",")]
    settings = " ".join(args.set)
    table = Table(title=f"{args.config} {settings}, {args.steps} steps: validation loss (nats/char)")
    columns = (
        "state_reset",
        "train s",
        "carried state",
        f"fresh state, chars {WARM_UP + 1}-{WINDOW}",
        "fresh / carried",
        f"fresh state, chars 2-{WARM_UP}",
        "known words, seed 1",
        f"known words, seeds {SAMPLE_SEEDS[0]}-{SAMPLE_SEEDS[-1]} (min-max)",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for r in results:
        known = r["known"]
        table.add_row(
            f"{r['reset']:g}",
            f"{r['seconds']:.0f}",
            f"{r['carried']:.4f}",
            f"{r['fresh']:.4f}",
            f"{r['fresh'] / r['carried']:.3f}",
            f"{r['first']:.3f}",
            f"{known[0]:.0%}",
            f"{sum(known) / len(known):.0%} ({min(known):.0%}-{max(known):.0%})",
        )
    console = Console(width=170)
    console.print(table)
    for r in results:
        console.print(f"\n[bold]state_reset {r['reset']:g}[/]: predict --prompt 'ROMEO:' --length 300 --temperature 0.8 --seed 1")
        console.print(r["sample"], markup=False, highlight=False)


if __name__ == "__main__":
    main()
