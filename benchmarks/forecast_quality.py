"""Forecast quality of RNN, LSTM and GRU against the baselines, on the shipped configs.

For each config and each model type: train with the shipped settings (only `model.type`
changes), time it, then backtest on the test part (the tail after the validation part that chose
the checkpoint). One table per config: MAE, RMSE, MAPE, sMAPE, MASE and the z-scaled MSE of each
network beside naive, seasonal-naive and linear autoregression.

    .venv/bin/python benchmarks/forecast_quality.py [--configs configs/airline_lstm.yaml ...] [--models rnn,lstm,gru]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from seqtool import engine
from seqtool.configure import load_config

METRICS = ("mae", "rmse", "mape", "smape", "mase", "mse")
BASELINES = ("naive", "seasonal_naive", "linear")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["configs/airline_lstm.yaml", "configs/temperatures_lstm.yaml", "configs/pollution_lstm.yaml"],
    )
    parser.add_argument("--models", default="rnn,lstm,gru")
    args = parser.parse_args()
    console = Console()
    for config_path in args.configs:
        rows = []
        metrics = {}
        for kind in args.models.split(","):
            config = load_config(config_path, [f"model.type={kind}"])
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                engine.train(config, Path(tmp) / "run", console=Console(file=io.StringIO()))
                seconds = time.perf_counter() - start
                metrics = engine.evaluate(Path(tmp) / "run").metrics
            rows.append((kind.upper(), seconds, [metrics[m] for m in METRICS]))
        table = Table(title=f"{config_path}: backtest on the test part ({metrics['origins']} origins)")
        table.add_column("forecaster")
        table.add_column("train s", justify="right")
        for name in METRICS:
            table.add_column({"smape": "sMAPE", "mse": "MSE (z)"}.get(name, name.upper()), justify="right")
        for name, seconds, values in rows:
            table.add_row(name, f"{seconds:.1f}", *(f"{v:.4f}" for v in values), style="bold")
        for baseline in BASELINES:
            table.add_row(baseline.replace("_", "-"), "-", *(f"{metrics[f'{baseline}_{m}']:.4f}" for m in METRICS))
        console.print(table)
    print("MAPE and sMAPE in %; MASE scaled by the in-sample seasonal-naive error (below 1 beats it in-sample).")
    print(f"reproduce: .venv/bin/python benchmarks/forecast_quality.py --configs {' '.join(args.configs)} --models {args.models}")


if __name__ == "__main__":
    main()
