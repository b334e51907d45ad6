"""The standard long-horizon benchmark on ETTh2, with seqtool's recurrent networks beside the
baselines and the published figures.

Protocol (as the published tables): the first 14,400 rows, split 60/20/20 in time order, every
column z-scored with the training rows' mean and standard deviation, a forecast from every test
origin, MSE on that z scale averaged over origins, steps and targets. The best checkpoint is
chosen on the validation part; the figures are the test part's. Settings: multivariate (all 7
columns) and univariate (OT alone), horizons 96 and 336. Every network runs the shipped recipe
`configs/etth2_multivariate.yaml` with only `model.type`, `data.horizon` and `data.target`
changed. Naive, seasonal naive and the per-column linear map (least squares from the same
look-back) are fitted and scored by seqtool in the same run.

Then the cost of one training epoch at look-back 96, 336 and 720, reading the look-back in
segments (the recipe) and row by row (`model.segment_length: null`, `model.decoder: head`).

    .venv/bin/python benchmarks/long_horizon.py [--cells rnn,lstm,gru] [--horizons 96,336]
        [--settings multivariate,univariate] [--set KEY=VALUE ...] [--speed-steps 3] [--no-speed]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from seqtool import engine
from seqtool.configure import load_config
from seqtool.tasks.forecast import ForecastTask

RECIPE = "configs/etth2_multivariate.yaml"
TARGETS = {"multivariate": "[HUFL,HULL,MUFL,MULL,LUFL,LULL,OT]", "univariate": "[OT]"}
# Published ETTh2 test MSE, multivariate: Nie et al. (ICLR 2023, PatchTST) Table 3, and the
# look-back-96 table of the SegRNN repository's README (github.com/lss-1138/SegRNN; its other
# models' rows are taken from iTransformer, Liu et al. 2024).
PUBLISHED = {
    96: [
        ("DLinear L=336 (PatchTST paper)", 0.289),
        ("PatchTST/64 L=512 (PatchTST paper)", 0.274),
        ("DLinear L=96 (SegRNN README)", 0.333),
        ("PatchTST L=96 (SegRNN README)", 0.302),
        ("SegRNN L=96 (SegRNN README)", 0.278),
    ],
    336: [
        ("DLinear L=96 (SegRNN README)", 0.594),
        ("PatchTST L=96 (SegRNN README)", 0.426),
        ("SegRNN L=96 (SegRNN README)", 0.421),
    ],
}


def quality(args: argparse.Namespace, console: Console) -> None:
    for setting in args.settings.split(","):
        for horizon in (int(h) for h in args.horizons.split(",")):
            rows, metrics = [], {}
            for cell in args.cells.split(","):
                overrides = [f"model.type={cell}", f"data.horizon={horizon}", f"data.target={TARGETS[setting]}", *args.set]
                config = load_config(RECIPE, overrides)
                with tempfile.TemporaryDirectory() as tmp:
                    start = time.perf_counter()
                    result = engine.train(config, Path(tmp) / "run", console=Console(file=io.StringIO()))
                    seconds = time.perf_counter() - start
                    metrics = engine.evaluate(Path(tmp) / "run").metrics
                rows.append((f"seqtool {cell.upper()}", f"{seconds:.0f}", result.state.step, metrics["mse"]))
            table = Table(title=f"ETTh2 {setting}, horizon {horizon}: test split, {metrics['origins']} origins")
            for name in ("forecaster", "train s", "steps", "test MSE"):
                table.add_column(name, justify="left" if name == "forecaster" else "right")
            for name, seconds, steps, mse in rows:
                table.add_row(name, seconds, str(steps), f"{mse:.4f}", style="bold")
            for baseline in ("naive", "seasonal_naive", "linear"):
                label = baseline.replace("_", "-") + (" (same look-back)" if baseline == "linear" else "")
                table.add_row(label, "-", "-", f"{metrics[f'{baseline}_mse']:.4f}")
            if setting == "multivariate":
                for name, mse in PUBLISHED.get(horizon, []):
                    table.add_row(f"[dim]published: {name}[/dim]", "-", "-", f"{mse:.3f}")
            console.print(table)


def seconds_per_epoch(overrides: list[str], steps: int) -> float:
    """Wall time of `steps` optimiser steps (forward, backward, AdamW), scaled to one epoch."""
    config = load_config(RECIPE, overrides)
    torch.manual_seed(config.seed)
    task = ForecastTask(config)
    task.load_training_data()
    model = task.build_model()
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.training.lr)
    task.start_epoch(0)
    device = torch.device("cpu")
    task.training_loss(model, 0, device).backward()  # warm-up: first-call allocations
    start = time.perf_counter()
    for index in range(1, steps + 1):
        optimiser.zero_grad(set_to_none=True)
        task.training_loss(model, index, device).backward()
        optimiser.step()
    return (time.perf_counter() - start) / steps * task.steps_per_epoch()


def speed(args: argparse.Namespace, console: Console) -> None:
    table = Table(title="ETTh2 multivariate, horizon 96, GRU: seconds per training epoch")
    for name in ("look-back", "segments of 48", "row by row", "speed-up"):
        table.add_column(name, justify="right")
    for lookback in (96, 336, 720):
        base = [f"data.context_length={lookback}", *args.set]
        segmented = seconds_per_epoch(base, args.speed_steps)
        row_by_row = seconds_per_epoch([*base, "model.segment_length=null", "model.decoder=head"], args.speed_steps)
        table.add_row(str(lookback), f"{segmented:.1f}", f"{row_by_row:.1f}", f"{row_by_row / segmented:.1f}x")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", default="rnn,lstm,gru")
    parser.add_argument("--horizons", default="96,336")
    parser.add_argument("--settings", default="multivariate,univariate")
    parser.add_argument("--set", nargs="*", default=[], help="more overrides of the recipe, e.g. training.max_time=3m")
    parser.add_argument("--speed-steps", type=int, default=3, help="optimiser steps timed per look-back")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--no-quality", action="store_true")
    args = parser.parse_args()
    console = Console()
    console.print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if not args.no_quality:
        quality(args, console)
    if not args.no_speed:
        speed(args, console)
    print("MSE on the z scale of the training rows (the published tables' unit); lower is better.")


if __name__ == "__main__":
    main()
