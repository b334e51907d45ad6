"""`seqtool tune` on the airline config: the best of 12 trials beside the shipped config, with and
without pruning, and `--jobs 2` with threads divided beside oversubscribed threads (the plain
searches run one trial at a time with torch's default threads, one per core).

    .venv/bin/python benchmarks/tune_airline.py [--trials 12] [--skip-jobs]

Each search is a fresh study in a temporary folder. The objective is the validation loss at the
best checkpoint (what chooses checkpoints); the test split, which no search saw, is reported too,
for the shipped config and each search's best trial.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

CONFIG, SPACE = "configs/airline_lstm.yaml", "configs/spaces/airline_lstm.yaml"


def seqtool(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "seqtool", *args], check=True, stdout=subprocess.DEVNULL)


def test_metrics(run: Path) -> dict[str, float]:
    from seqtool import engine

    return engine.evaluate(run).metrics


def search(folder: Path, trials: int, *options: str) -> dict[str, object]:
    """One tune run: wall time, trial states and the best trial's validation and test figures."""
    start = time.perf_counter()
    seqtool("tune", CONFIG, "--space", SPACE, "--trials", str(trials), "--output", str(folder), *options)
    wall = time.perf_counter() - start
    with open(folder / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    done = [r for r in rows if r["state"] == "complete"]
    best = min(done, key=lambda r: float(r["loss"]))
    return {
        "wall": wall,
        "pruned": sum(r["state"] == "pruned" for r in rows),
        "val": float(best["loss"]),
        "test": test_metrics(Path(best["run_dir"])),
        "best": f"trial {best['trial']}: {best['model.type']} {best['model.num_layers']}x{best['model.hidden_size']}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--skip-jobs", action="store_true", help="leave out the --jobs 2 measurements")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        start = time.perf_counter()
        seqtool("train", CONFIG, "--run-dir", str(tmp_path / "shipped"))
        shipped_wall = time.perf_counter() - start
        from seqtool.runs import describe_run

        shipped = {"wall": shipped_wall, "pruned": 0, "val": describe_run(tmp_path / "shipped").best_val_loss}
        shipped |= {"test": test_metrics(tmp_path / "shipped"), "best": "the shipped config"}
        rows = {"shipped config (1 run)": shipped}
        rows[f"tune {args.trials}, median pruning"] = search(tmp_path / "median", args.trials)
        rows[f"tune {args.trials}, no pruning"] = search(tmp_path / "none", args.trials, "--pruner", "none")
        if not args.skip_jobs:
            # Without pruning every trial runs to the end, so the two differ only in threads.
            jobs = ("--jobs", "2", "--pruner", "none")
            rows[f"tune {args.trials}, no pruning, --jobs 2, 1 thread each"] = search(tmp_path / "jobs", args.trials, *jobs)
            rows[f"tune {args.trials}, no pruning, --jobs 2, 2 threads each"] = search(
                tmp_path / "over", args.trials, *jobs, "--threads", "2"
            )
        table = Table(title=f"{CONFIG} searched over {SPACE}: validation loss at the best checkpoint, test backtest")
        for header in ("search", "wall s", "pruned", "val loss", "test MAE", "test MASE", "best"):
            table.add_column(header, justify="left" if header in ("search", "best") else "right")
        for name, row in rows.items():
            test = row["test"]
            table.add_row(
                name,
                f"{row['wall']:.0f}",
                str(row["pruned"]),
                f"{row['val']:.4f}",
                f"{test.get('mae', float('nan')):.2f}",
                f"{test.get('mase', float('nan')):.3f}",
                str(row["best"]),
            )
        Console(width=160).print(table)


if __name__ == "__main__":
    main()
