"""The Python API for notebooks and scripts; the CLI does the same through the same engine.

from seqtool import train, load
run = train("configs/airline_lstm.yaml", overrides={"training.epochs": 50})
model = load(run.run_dir)            # or load("runs/airline_lstm")
model.predict(horizon=12)            # what the kind predicts: here a DataFrame
model.evaluate()                     # metrics beside the baselines
model.export("airline.onnx")         # ONNX (or format="torchscript") + airline.onnx.json
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from seqtool.configure import load_config
from seqtool.schema import Config


def _overrides(overrides: dict[str, Any] | list[str] | None) -> list[str]:
    if overrides is None:
        return []
    if isinstance(overrides, dict):  # JSON is valid YAML, so values keep their types
        return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    return list(overrides)


def train(
    config: str | Path,
    overrides: dict[str, Any] | list[str] | None = None,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    init_from: str | Path | list[str | Path] | None = None,
    verbose: bool = False,
):
    """Train from a YAML config (plus dotted overrides); returns the engine's TrainResult
    (`run_dir`, `state`, `summary`). Quiet unless `verbose`."""
    from seqtool import engine

    resolved: Config = load_config(config, _overrides(overrides))
    console = Console() if verbose else Console(file=io.StringIO())
    run_dir = Path(run_dir) if run_dir else Path("runs") / Path(config).stem
    return engine.train(
        resolved,
        run_dir,
        resume=resume,
        force=force,
        init_from=init_from,
        console=console,
        command=f"seqtool.train({str(config)!r}, overrides={overrides!r})",
    )


@dataclass
class Model:
    """A trained model with everything it needs (vocabulary, scalers, labels) from its checkpoint."""

    task: Any
    network: Any
    checkpoint: str

    @property
    def kind(self) -> str:
        return self.task.config.task

    def predict(self, data: str | Path | list[str] | None = None, **options: Any):
        """What the kind's `predict_api` returns. Language models: `predict(prompt=..., length=...,
        temperature=..., top_k=..., seed=...)` gives the generated text, with `num_samples=N` a list
        of N. Forecasts: `predict(data=CSV or None, horizon=...)` gives a DataFrame. Classifiers:
        `predict(CSV)` gives the rows with labels and probabilities; `predict(["text", ...])`
        gives (label, probability) pairs."""
        if self.task.not_predictable:
            from seqtool.errors import SeqtoolError

            raise SeqtoolError(f"predict() does not apply to a {self.kind} model: its {self.task.not_predictable}")
        from seqtool.tasks import evaluating

        with evaluating(self.network):
            return self.task.predict_api(self.network, data, options)

    def evaluate(self, split: str | None = None, data: str | Path | None = None) -> dict[str, float]:
        """Metrics beside the baselines; by default on the test split when the run has one."""
        from seqtool import engine

        return engine.evaluate(self.checkpoint, split=split, data_path=str(data) if data else None).metrics

    def export(self, output: str | Path | None = None, format: str = "onnx", force: bool = False):
        """Write the model as ONNX or TorchScript plus its metadata JSON, checked against PyTorch
        (as `seqtool export`); returns the export's paths, signature and measured difference."""
        from seqtool.export import export

        return export(self.checkpoint, format, output, force=force)


def load(target: str | Path) -> Model:
    """Load a run directory (its best checkpoint) or a checkpoint file."""
    from seqtool import engine
    from seqtool.checkpoint import resolve_checkpoint

    task, network, _ = engine.load_trained(target)
    return Model(task, network, str(resolve_checkpoint(target)))
