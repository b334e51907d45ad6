"""`seqtool compare`: the same config trained as RNN, LSTM and GRU (over seeds, and optionally over
a sweep of one key), then one table, one JSON, one CSV and one plot.

Every variant is an ordinary run made by `engine.train` in its own directory under the compare
directory, with the same data, split and budget; this module only chooses the overrides and
summarises the run directories afterwards (from their metrics.jsonl and summary.json), so there
is no second training loop to keep in step with the first.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from seqtool.cells import registry as cells
from seqtool.checkpoint import atomic_write_text
from seqtool.configure import load_config
from seqtool.errors import SeqtoolError
from seqtool.metrics import TRAIN, VAL, MetricsLog, of_split
from seqtool.runs import describe_run
from seqtool.schema import Config, parse_yaml
from seqtool.tasks import MainMetric

COMPARE_FILES = ("compare.json", "compare.csv", "compare.png")


@dataclass
class Variant:
    """One training run of the comparison."""

    model: str
    seed: int
    sweep_value: Any
    config: Config  # validated when the comparison is planned, before any training

    @property
    def name(self) -> str:
        swept = "" if self.sweep_value is None else f"{self.sweep_value}-"
        return f"{swept}{self.model}-seed{self.seed}".replace("/", "_")


@dataclass
class VariantResult:
    model: str
    seed: int
    sweep_value: Any
    run_dir: str
    status: str  # finished | diverged
    best_val_loss: float | None  # the best checkpoint's: what `evaluate` reports
    main_metric: str | None
    main_value: float | None  # the main metric of the best checkpoint
    final_train_loss: float | None  # at the last step, for seeing overfitting
    final_val_loss: float | None
    final_main_value: float | None
    parameters: int | None
    throughput: float | None  # tokens or samples per second
    wall_time_s: float | None


def parse_models(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    installed = cells.names()
    unknown = [m for m in models if m not in installed]
    if not models or unknown:
        raise SeqtoolError(f"--models takes a comma-separated list of the installed cells {', '.join(installed)}; got {text!r}")
    if len(set(models)) != len(models):
        raise SeqtoolError(f"--models lists a model twice: {text!r}")
    return models


def parse_sweep(text: str) -> tuple[str, list[Any]]:
    """`data.length=10,50,100` -> ("data.length", [10, 50, 100]), each value read as YAML."""
    key, sep, values = text.partition("=")
    key = key.strip()
    parts = [v.strip() for v in values.split(",")]
    if not sep or not key or not values.strip() or any(not p for p in parts):
        raise SeqtoolError(f"--sweep {text!r} is not KEY=V1,V2,... (e.g. data.length=10,50,100)")
    if key in ("model.type", "seed"):
        raise SeqtoolError(f"--sweep {key}: use --models and --seeds for that")
    parsed = [parse_yaml(p, f"--sweep {text!r}") for p in parts]
    if len(set(map(str, parsed))) != len(parsed):
        raise SeqtoolError(f"--sweep {text!r} lists a value twice")
    return key, parsed


def plan(
    config_path: str | Path, models: list[str], seeds: int, overrides: list[str], sweep: tuple[str, list[Any]] | None
) -> tuple[Config, list[Variant]]:
    """Every variant's overrides, each validated now: a bad value fails before any training."""
    if seeds < 1:
        raise SeqtoolError(f"--seeds must be at least 1, got {seeds}")
    base = load_config(config_path, overrides)
    sweep_values = sweep[1] if sweep else [None]
    variants = []
    for value in sweep_values:
        for model in models:
            for k in range(seeds):
                extra = [f"model.type={model}", f"seed={base.seed + k}"]
                if sweep:
                    extra.append(f"{sweep[0]}={value}")
                variants.append(Variant(model, base.seed + k, value, load_config(config_path, [*overrides, *extra])))
    return base, variants


def run_comparison(
    variants: list[Variant],
    out_dir: Path,
    force: bool,
    console: Console,
) -> list[VariantResult]:
    """Train every variant in `out_dir/<variant>`; a diverged run is recorded and the rest go on."""
    from seqtool import engine

    if out_dir.exists() and not out_dir.is_dir():
        raise SeqtoolError(f"--output {out_dir} is a file; give a directory for the comparison")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not force:
            raise SeqtoolError(f"{out_dir} already exists; pass --force to replace it, or --output another directory")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for n, variant in enumerate(variants, 1):
        console.print(f"[bold][{n}/{len(variants)}] {variant.name}[/bold]")
        run_dir = out_dir / variant.name
        try:
            engine.train(variant.config, run_dir, console=console)
        except SeqtoolError as exc:
            if describe_run(run_dir).status != "diverged":
                raise
            console.print(f"[yellow]{variant.name} diverged: {exc}[/yellow]")
        results.append(summarise(variant, run_dir))
    return results


def summarise(variant: Variant, run_dir: Path) -> VariantResult:
    """What a finished (or diverged) run directory says about the variant."""
    info = describe_run(run_dir)
    events = MetricsLog(run_dir).read()
    train, val = of_split(events, TRAIN), of_split(events, VAL)
    rates = [e.throughput for e in train if e.throughput is not None]
    metric = info.main_metric
    return VariantResult(
        model=variant.model,
        seed=variant.seed,
        sweep_value=variant.sweep_value,
        run_dir=str(run_dir),
        status=info.status,
        best_val_loss=info.best_val_loss,
        main_metric=metric,
        main_value=info.main_value,
        final_train_loss=train[-1].loss if train else None,
        final_val_loss=val[-1].loss if val else None,
        final_main_value=val[-1].get(metric) if val and metric else None,
        parameters=info.parameters,
        throughput=statistics.median(rates) if rates else None,
        wall_time_s=info.wall_time_s,
    )


def aggregate(results: list[VariantResult], main: MainMetric | None) -> list[dict[str, Any]]:
    """Mean and spread (standard deviation; 0 for one seed) over seeds, per sweep value and model."""
    groups: dict[tuple[str, str], list[VariantResult]] = {}
    for r in results:
        groups.setdefault((str(r.sweep_value), r.model), []).append(r)
    rows = []
    for (_, model), group in groups.items():
        row: dict[str, Any] = {"sweep_value": group[0].sweep_value, "model": model, "seeds": len(group)}
        for name in (
            "best_val_loss",
            "main_value",
            "final_train_loss",
            "final_val_loss",
            "final_main_value",
            "throughput",
            "wall_time_s",
        ):
            values = [getattr(r, name) for r in group if getattr(r, name) is not None]
            row[name] = statistics.mean(values) if values else None
            row[f"{name}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0 if values else None
        row["main_metric"] = group[0].main_metric
        row["main_metric_short"] = main.short if main else None
        row["main_reference"] = main.reference if main else None
        row["main_reference_label"] = main.reference_label if main else ""
        row["parameters"] = group[0].parameters
        row["diverged"] = sum(r.status == "diverged" for r in group)
        rows.append(row)
    return rows


def write_outputs(
    out_dir: Path, command: str, sweep_key: str | None, results: list[VariantResult], summary: list[dict[str, Any]]
) -> None:
    """compare.json (everything), compare.csv (one row per run) and compare.png."""
    from seqtool.plots import compare_plot

    document = {"command": command, "sweep": sweep_key, "runs": [asdict(r) for r in results], "summary": summary}
    atomic_write_text(out_dir / "compare.json", json.dumps(document, indent=2, default=str) + "\n")
    buffer = io.StringIO()
    columns = list(asdict(results[0]))
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for r in results:
        writer.writerow(asdict(r))
    atomic_write_text(out_dir / "compare.csv", buffer.getvalue())
    curves = {r.run_dir: of_split(MetricsLog(Path(r.run_dir)).read(), VAL) for r in results}
    compare_plot(out_dir / "compare.png", results, summary, curves, sweep_key)
