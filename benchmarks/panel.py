"""Many-series forecasting: the `seqtool init` config, untuned, beside naive, ETS and Theta.

Development panels (never the judged ones):

- `yearly`: 181 synthetic short yearly series shaped like M1 yearly's (lengths 15-58, horizon
  6): log-level random walks with a per-series drift that may bend, and noise of every size;
- `macro`: ../shared/data/panel/macro-quarterly.csv, 12 US quarterly macro series (horizon 8);
- `retail`: make_panel.py's daily retail-like panel, 300 series (horizon 14).

For each: `seqtool init` writes the config, `seqtool train` runs it unchanged, and `seqtool
evaluate` scores the test part (the last horizon rows of every series) with statsforecast's
AutoETS and AutoTheta beside. Then the conformal coverage, and a stock series (daily closes read
as log returns) against the random walk. `--scale` adds the scale run: a panel of 10,000 series of
500 rows, its peak memory through training, windows per second and the statistical baselines'
time.

    .venv/bin/python benchmarks/panel.py [--panels yearly,macro,retail] [--stock] [--scale]
"""

from __future__ import annotations

import argparse
import io
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from seqtool import engine
from seqtool.configure import load_config
from seqtool.init import write_starter_config

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "panel"
REPO = Path(__file__).resolve().parent.parent
FORECASTERS = ("", "naive_", "seasonal_naive_", "linear_", "ets_", "theta_")


def yearly_panel(path: Path, series: int = 181, seed: int = 0) -> None:
    """Short yearly series like M1 yearly's: a log level that drifts (the drift may bend once),
    noise from 1% to 15% a year, lengths 15-58, levels from 10 to 100,000."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(series):
        length = int(rng.integers(15, 59))
        drift = rng.normal(0.05, 0.06)
        bend = int(rng.integers(length // 2, length)) if rng.random() < 0.3 else length
        steps = np.where(np.arange(length) < bend, drift, drift * rng.uniform(-1.0, 0.5))
        noise = rng.uniform(0.01, 0.15)
        log_level = np.log(10 ** rng.uniform(1, 5)) + np.cumsum(steps + rng.normal(0, noise, length))
        years = pd.date_range(end=f"{int(rng.integers(1985, 1996))}-01-01", periods=length, freq="YS")
        frames.append(
            pd.DataFrame({"series": f"Y{i:03d}", "year": years.strftime("%Y-%m-%d"), "value": np.exp(log_level).round(3)})
        )
    pd.concat(frames).to_csv(path, index=False)


def make_data(name: str, folder: Path) -> Path:
    path = folder / f"{name}.csv"
    if name == "yearly":
        yearly_panel(path)
    elif name == "macro":
        path.write_bytes((SHARED / "macro-quarterly.csv").read_bytes())
    elif name == "retail":
        subprocess.run([sys.executable, str(SHARED / "make_panel.py"), str(path), "--series", "300", "--seed", "3"], check=True)
    return path


def run_panel(name: str, folder: Path, console: Console) -> dict[str, float]:
    """init, train and evaluate one development panel; its metrics and seconds."""
    data = make_data(name, folder)
    config_path, _ = write_starter_config(data)
    config = load_config(config_path, [])
    started = time.perf_counter()
    engine.train(config, folder / f"run-{name}", console=Console(file=io.StringIO()))
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    metrics = engine.evaluate(folder / f"run-{name}").metrics
    metrics |= {"train_s": seconds, "evaluate_s": time.perf_counter() - started}
    console.print(f"{name}: {config_path.read_text().count(chr(10))}-line starter config, trained in {seconds:.0f} s")
    return metrics


def panel_table(results: dict[str, dict[str, float]]) -> Table:
    table = Table(title="Test part (the last horizon rows of every series): mean over series")
    table.add_column("panel")
    table.add_column("series", justify="right")
    table.add_column("metric")
    for prefix in FORECASTERS:
        table.add_column((prefix.rstrip("_") or "seqtool").replace("_", "-"), justify="right")
    table.add_column("coverage 80", justify="right")
    table.add_column("train s", justify="right")
    for name, metrics in results.items():
        for metric in ("mase", "smape"):
            cells = [f"{metrics[p + metric]:.3f}" if p + metric in metrics else "-" for p in FORECASTERS]
            coverage = f"{metrics['coverage_80']:.2f}" if metric == "mase" and "coverage_80" in metrics else ""
            seconds = f"{metrics['train_s']:.0f}" if metric == "mase" else ""
            table.add_row(
                name if metric == "mase" else "",
                str(metrics["series"]) if metric == "mase" else "",
                metric,
                *cells,
                coverage,
                seconds,
            )
    return table


def stock(folder: Path, console: Console) -> None:
    """The shipped stock config on the MSFT closes: directional accuracy beside the random walk."""
    config = load_config(REPO / "configs" / "stock_returns.yaml", [])
    engine.train(config, folder / "run-stock", console=Console(file=io.StringIO()))
    metrics = engine.evaluate(folder / "run-stock").metrics
    table = Table(title=f"MSFT daily closes, test part ({metrics['origins']} origins, horizon {config.data.horizon})")
    for column in ("forecaster", "MAE", "RMSE", "MASE", "direction right", "Theil's U"):
        table.add_column(column, justify="right")
    table.add_row(
        "seqtool (log returns)", f"{metrics['mae']:.4f}", f"{metrics['rmse']:.4f}", f"{metrics['mase']:.4f}",
        f"{metrics['directional_accuracy']:.3f}", f"{metrics['theil_u']:.3f}",
    )  # fmt: skip
    table.add_row(
        "random walk (naive)",
        f"{metrics['naive_mae']:.4f}",
        f"{metrics['naive_rmse']:.4f}",
        f"{metrics['naive_mase']:.4f}",
        "-",
        "1.000",
    )
    table.add_row("majority direction", "-", "-", "-", f"{metrics['majority_directional_accuracy']:.3f}", "-")
    console.print(table)
    console.print(f"80% conformal interval: coverage {metrics['coverage_80']:.2f} on the test part (nominal 0.80)")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scale(folder: Path, console: Console) -> None:
    """10,000 series of 500 rows: peak memory through training, windows/s, baselines' time."""
    path = folder / "big.csv"
    subprocess.run(
        [sys.executable, str(SHARED / "make_panel.py"), str(path), "--series", "10000", "--length", "500", "--seed", "1"],
        check=True,
    )
    config_path, _ = write_starter_config(path)
    overrides = ["training.max_steps=3000", "training.eval_every=1000", "training.intervals=null", "data.windows_per_series=20"]
    config = load_config(config_path, overrides)
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def watch() -> None:
        started = time.perf_counter()
        while not done.wait(1.0):
            with open("/proc/self/status") as status:
                rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
            samples.append((time.perf_counter() - started, rss / 1024))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    result = engine.train(config, folder / "run-big", console=Console(file=io.StringIO()))
    train_s = time.perf_counter() - started
    done.set()
    steps = result.state.step
    started = time.perf_counter()
    metrics = engine.evaluate(folder / "run-big").metrics
    evaluate_s = time.perf_counter() - started
    rss = np.array([m for _, m in samples])
    third = len(rss) // 3
    table = Table(
        title=f"Scale: 10,000 series x 500 rows ({config.data.horizon}-step horizon), {steps} steps of {config.training.batch_size}"
    )
    for column in (
        "train s",
        "windows/s",
        "RSS after 1/3 MB",
        "RSS at end MB",
        "peak MB",
        "evaluate s (with ETS, Theta)",
        "MASE",
        "naive",
        "ETS",
        "Theta",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        f"{train_s:.0f}", f"{steps * config.training.batch_size / train_s:,.0f}", f"{rss[third]:.0f}", f"{rss[-1]:.0f}",
        f"{peak_rss_mb():.0f}", f"{evaluate_s:.0f}", f"{metrics['mase']:.3f}", f"{metrics['naive_mase']:.3f}",
        f"{metrics.get('ets_mase', float('nan')):.3f}", f"{metrics.get('theta_mase', float('nan')):.3f}",
    )  # fmt: skip
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--panels", default="yearly,macro,retail")
    parser.add_argument("--stock", action="store_true", help="the MSFT closes against the random walk")
    parser.add_argument("--scale", action="store_true", help="the 10,000-series scale run (several minutes)")
    args = parser.parse_args()
    console = Console(width=160)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results = {name: run_panel(name, folder, console) for name in args.panels.split(",") if name}
        if results:
            console.print(panel_table(results))
        if args.stock:
            stock(folder, console)
        if args.scale:
            scale(folder, console)


if __name__ == "__main__":
    main()
