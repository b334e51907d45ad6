"""Memory of forecasting on a large CSV: proportional to the data, not to windows x window length.

Writes a synthetic CSV of ROWS rows and 20 numeric columns, trains a forecast model on it for a
few steps and evaluates it, then prints the peak resident memory beside the size of the data
and the size that materialising every training window would need.

    .venv/bin/python benchmarks/forecast_memory.py [--rows 1000000] [--context 64] [--steps 50]
        [--channels mixed|independent]

`--channels mixed` forecasts x0 from all 20 columns; `independent` forecasts all 20 columns, each
its own univariate series (`model.channels: independent`, 16-row segments, RevIN): 20x the
windows, which must not cost 20x the memory.
"""

from __future__ import annotations

import argparse
import io
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from seqtool import engine
from seqtool.configure import load_config


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--channels", choices=["mixed", "independent"], default="mixed")
    args = parser.parse_args()
    columns = 20
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        t = np.arange(args.rows)
        values = np.sin(2 * np.pi * t[:, None] / 24 + np.arange(columns)) + 0.1 * rng.standard_normal((args.rows, columns))
        frame = pd.DataFrame(values.astype(np.float32), columns=[f"x{i}" for i in range(columns)])
        frame.insert(0, "time", pd.date_range("2000-01-01", periods=args.rows, freq="min").strftime("%Y-%m-%d %H:%M"))
        path = Path(tmp) / "big.csv"
        frame.to_csv(path, index=False, float_format="%.4f")
        del frame, values
        baseline = peak_rss_mb()
        config_path = Path(tmp) / "big.yaml"
        independent = (
            {"channels": "independent", "segment_length": 16, "decoder": "parallel", "window_norm": "revin"}
            if args.channels == "independent"
            else {}
        )
        config_path.write_text(
            yaml.safe_dump(
                {
                    "task": "forecast",
                    "data": {
                        "path": str(path),
                        "date_column": "time",
                        **(
                            {"target": "x0", "features": [f"x{i}" for i in range(1, columns)]}
                            if args.channels == "mixed"
                            else {"target": [f"x{i}" for i in range(columns)]}
                        ),
                        "context_length": args.context,
                        "horizon": 12,
                        "val_fraction": 0.05,
                        "backtest_stride": 500,
                    },
                    "model": {"hidden_size": 64, "num_layers": 1, "dropout": 0.0, **independent},
                    "training": {
                        "batch_size": 256,
                        "epochs": None,
                        "max_steps": args.steps,
                        "eval_every": args.steps,
                        "device": "cpu",
                    },
                }
            )
        )
        start = time.perf_counter()
        engine.train(load_config(config_path), Path(tmp) / "run", console=Console(file=io.StringIO()))
        seconds = time.perf_counter() - start
        peak = peak_rss_mb()
        size_mb = path.stat().st_size / 2**20
    data_mb = args.rows * columns * 8 / 2**20
    windows_mb = args.rows * args.context * columns * 8 / 2**20
    table = Table(
        title=f"Forecast training on {args.rows:,} rows x {columns} columns ({size_mb:,.0f} MB of CSV), {args.steps} steps, "
        f"channels {args.channels}"
    )
    table.add_column("quantity")
    table.add_column("MB", justify="right")
    table.add_row("the data as float64", f"{data_mb:,.0f}")
    table.add_row(f"every training window materialised (context {args.context})", f"{windows_mb:,.0f}")
    table.add_row("peak RSS before training (Python, torch, pandas loaded)", f"{baseline:,.0f}")
    table.add_row("peak RSS after reading, training and evaluating", f"{peak:,.0f}", style="bold")
    Console().print(table)
    print(
        f"train + evaluate wall time: {seconds:.1f} s; growth {peak - baseline:,.0f} MB = {(peak - baseline) / data_mb:.1f}x the data"
    )
    print(
        f"reproduce: .venv/bin/python benchmarks/forecast_memory.py --rows {args.rows} --context {args.context} "
        f"--steps {args.steps} --channels {args.channels}"
    )


if __name__ == "__main__":
    main()
