"""The `seqtool` command: parse, call the engine, print. Nothing here imports torch at module
level, so `seqtool --help` stays fast; user-facing errors become `Error: ...` and exit code 2 in
`main`, the one place that maps exceptions to exit codes."""

from __future__ import annotations

import json
import math
import shlex
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

import seqtool
from seqtool.errors import SeqtoolError, TrainingInterrupted


class _FlagsTakeNoValue:
    """No `<bool>` metavar beside a flag in the help (typer 0.2x writes one): it takes no value."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if param.param_type_name == "option" and getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_FlagsTakeNoValue, TyperCommand):
    """Usage lines in the familiar style, `CONFIG [OVERRIDES]...` (typer 0.2x writes `{config}`)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = (param.metavar or param.name or "").upper()
                pieces.append((name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else ""))
        return pieces


class _Group(_FlagsTakeNoValue, TyperGroup):
    pass


def _shown_default(text: str) -> str:
    """ " [default: text]" for an option whose real default is None (so that predict can tell an
    option given from one left out), escaped so that rich does not read it as markup."""
    return f" \\[default: {text}]"


app = typer.Typer(
    name="seqtool",
    help="Train, evaluate and run recurrent networks (RNN, LSTM, GRU) on sequences.",
    cls=_Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
_debug = {"on": False}
EXIT_USAGE = 2


def _version(value: bool) -> None:
    if value:
        typer.echo(f"seqtool {seqtool.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show Python tracebacks for errors (may be given anywhere on the line).")
    ] = False,
) -> None:
    _debug["on"] = _debug["on"] or debug


def train(
    config: Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Dotted KEY=VALUE overrides, e.g. training.max_steps=200 model.type=gru.", show_default=False),
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Where to write the run." + _shown_default("runs/<config name>"))
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in the run directory from its last checkpoint (full state).")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run in the run directory.")] = False,
    init_from: Annotated[
        Path | None,
        typer.Option(
            "--init-from",
            help="Start a new run from a checkpoint's weights only (fresh optimiser and schedule)."
            + _shown_default("random weights"),
        ),
    ] = None,
) -> None:
    """Train a model from a YAML config; writes config, metrics, checkpoints and a summary."""
    from seqtool.configure import load_config

    cfg = load_config(config, overrides or [])
    from seqtool import engine
    from seqtool.distributed import launched_rank, launcher_prefix

    # Under torchrun only rank 0 speaks; log lines stay whole when stdout is a file.
    console = Console(soft_wrap=True, quiet=launched_rank() != 0)
    run_dir = run_dir or Path("runs") / config.stem
    try:
        result = engine.train(cfg, run_dir, resume=resume, force=force, init_from=init_from, console=console)
    except TrainingInterrupted as exc:
        exc.resume_command = shlex.join(
            [*launcher_prefix(), "train", str(config), *(overrides or []), "--run-dir", str(run_dir), "--resume"]
        )
        exc.quiet = launched_rank() != 0
        raise
    console.print(result.summary.rstrip(), highlight=False)
    if not result.already_finished:
        from seqtool.tasks import task_class

        predict_hint = task_class(cfg.task).predict_hint
        then = f"   |   seqtool predict {result.run_dir} {predict_hint}" if predict_hint else ""
        console.print(f"Next: seqtool evaluate {result.run_dir}{then}", highlight=False)


def evaluate(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path, typer.Argument(help="Run directory (its best checkpoint) or checkpoint file.", show_default=False)
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="Evaluate on this file instead of the run's own data." + _shown_default("the run's own split")
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option("--split", help="Which held-out part: val or test." + _shown_default("test when the run has one, else val")),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one flat JSON object of metrics on stdout.")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", help="Draw the evaluation to this PNG (a backtest, for kinds that draw one)." + _shown_default("no plot")
        ),
    ] = None,
) -> None:
    """Score a trained model beside its baselines on held-out data; a kind may take options below."""
    if split not in (None, "val", "test"):
        raise SeqtoolError(f"--split must be val or test, got {split!r}")
    from seqtool import engine

    result = engine.evaluate(checkpoint, split=split, data_path=str(data) if data else None, plot_path=plot, args=ctx.args)
    metrics, baselines = result.metrics, result.baselines
    for warning in result.warnings:
        Console(stderr=True).print(f"[yellow]Warning:[/] {warning}", highlight=False)
    scored = str(data) if data else result.split
    if as_json:
        finite = {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}
        typer.echo(json.dumps({**finite, "split": scored}))
        return
    console = Console()
    table_metrics = {k: v for k, v in metrics.items() if k not in result.shown_apart}
    console.print(_metrics_table(table_metrics, baselines, _split_title(data, result.split)))
    for note in result.notes:
        console.print(note)
    if plot:
        Console().print(f"Evaluation plot written to {plot}")


def _split_title(data: Path | None, split: str) -> str:
    """Which data a table scores, and whether that data also chose the checkpoint."""
    if data:
        return str(data)
    if split == "test":
        return "the test split (held out: it did not choose the checkpoint)"
    return "the validation split (it chose the best checkpoint: the figures flatter the model; set a test part to avoid that)"


def _metrics_table(metrics: dict[str, float], baselines: tuple[str, ...], title: str) -> Table:
    """The model's metrics beside each baseline's: `mase` next to `naive_mase`, and so on."""
    counts = {k: v for k, v in metrics.items() if isinstance(v, int)}
    own = [k for k, v in metrics.items() if not isinstance(v, int) and not any(k.startswith(b + "_") for b in baselines)]
    table = Table(title=f"Evaluation on {title}" + "".join(f", {v:,} {k}" for k, v in counts.items()))
    table.add_column("metric")
    table.add_column("model", justify="right", style="bold")
    for name in baselines:
        table.add_column(name.replace("_", "-"), justify="right")
    for metric in own:
        cells = [metrics.get(metric)] + [metrics.get(f"{b}_{metric}") for b in baselines]
        table.add_row(metric, *("-" if v is None else f"{v:.4f}" for v in cells))
    return table


def init(
    data: Annotated[Path, typer.Argument(help="A .txt corpus or a .csv table or series.", show_default=False)],
    task: Annotated[
        str | None,
        typer.Option("--task", help="Force the kind (seqtool tasks lists them)." + _shown_default("guessed from the file")),
    ] = None,
) -> None:
    """Look at a data file and write a commented starter config next to it (never overwrites)."""
    from seqtool.init import write_starter_config

    written, reasons = write_starter_config(data, task)
    console = Console(soft_wrap=True)
    for reason in reasons:
        console.print(f"- {reason}", highlight=False)
    console.print(f"Wrote {written}. Next: seqtool train {written}", highlight=False)


def runs(
    folder: Annotated[Path, typer.Argument(help="Folder holding run directories.")] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of runs on stdout.")] = False,
) -> None:
    """List the runs in a folder: task, model, steps, best validation loss, wall time, status."""
    from seqtool.runs import list_runs

    if not folder.is_dir():
        raise SeqtoolError(f"no runs folder at {folder}")
    found = list_runs(folder)
    if as_json:
        typer.echo(json.dumps([run.to_dict() for run in found]))
        return
    colours = {"finished": "green", "running": "cyan", "interrupted": "yellow", "diverged": "red", "damaged": "red"}
    headers = ("run", "task", "model", "steps", "val loss", "at best", "time", "status")
    rows = []
    for run in found:
        short = run.main_metric_short or run.main_metric
        rows.append(
            (
                run.name,
                run.task,
                run.model,
                f"{run.steps:,}",
                f"{run.best_val_loss:.4f}" if run.best_val_loss is not None else "-",
                f"{short} {run.main_value:#.4g}" if run.main_value is not None else "-",
                _duration(run.wall_time_s),
                run.status,
            )
        )
    table = Table(title=f"Runs in {folder}", box=box.SIMPLE_HEAD)
    for i, header in enumerate(headers[:-1]):
        table.add_column(header, justify="right" if i >= 3 else "left")
    table.add_column("status", no_wrap=True, min_width=len("interrupted"))  # never cut the answer people look for
    for row in rows:
        table.add_row(*row[:-1], f"[{colours[row[-1]]}]{row[-1]}[/]")
    Console().print(table if found else f"No runs in {folder}")


def compare(
    config: Annotated[Path, typer.Argument(help="YAML config file shared by every variant.", show_default=False)],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted KEY=VALUE overrides for every variant.", show_default=False)
    ] = None,
    models: Annotated[str, typer.Option("--models", help="Comma-separated cells to compare.")] = "rnn,lstm,gru",
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds per variant (config seed, +1, ...).")] = 1,
    sweep: Annotated[
        str | None,
        typer.Option(
            "--sweep",
            help="KEY=V1,V2,...: train every model at each value, e.g. data.length=10,50,100." + _shown_default("no sweep"),
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Compare directory." + _shown_default("runs/compare-<config name>"))
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing compare directory.")] = False,
) -> None:
    """Train the same config as RNN, LSTM and GRU with the same data and budget; one table and plot."""
    from seqtool import compare as comparing

    model_list = comparing.parse_models(models)
    swept = comparing.parse_sweep(sweep) if sweep else None
    base, variants = comparing.plan(config, model_list, seeds, overrides or [], swept)
    out_dir = output or Path("runs") / f"compare-{config.stem}"
    console = Console(soft_wrap=True)
    results = comparing.run_comparison(variants, out_dir, force, console)
    from seqtool.tasks import task_class

    summary = comparing.aggregate(results, task_class(base.task).main_metric)
    comparing.write_outputs(out_dir, shlex.join(["seqtool", *sys.argv[1:]]), swept[0] if swept else None, results, summary)
    console.print(_compare_table(summary, swept[0] if swept else None, base.task))
    console.print(f"Wrote {', '.join(str(out_dir / name) for name in comparing.COMPARE_FILES)}", highlight=False)


def tune(
    config: Annotated[Path, typer.Argument(help="YAML config file every trial starts from.", show_default=False)],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Dotted KEY=VALUE overrides for every trial (e.g. a shorter budget).", show_default=False),
    ] = None,
    space: Annotated[
        Path,
        typer.Option(
            "--space", help="Search space YAML: dotted keys -> {int: [lo, hi]}, {float: [lo, hi], log: true} or [choices]."
        ),
    ] = ...,  # type: ignore[assignment]
    trials: Annotated[int, typer.Option("--trials", min=1, help="Finished trials the study should reach.")] = 20,
    timeout: Annotated[
        str | None, typer.Option("--timeout", help="Start no trial after this long, e.g. 30m." + _shown_default("none"))
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Optuna storage URL; a PostgreSQL or MySQL one shares the study between machines."
            + _shown_default("sqlite in the tune directory"),
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", min=1, help="Trials at once, each in its own process with its share of the cores.")
    ] = 1,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Torch threads per trial." + _shown_default("cores / jobs"))
    ] = None,
    pruner: Annotated[str, typer.Option("--pruner", help="Stop bad trials early: median, halving or none.")] = "median",
    metric: Annotated[
        str,
        typer.Option("--metric", help="Validation metric to optimise, at the best checkpoint (loss, or one the kind reports)."),
    ] = "loss",
    direction: Annotated[
        str | None, typer.Option("--direction", help="minimize or maximize." + _shown_default("minimize"))
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Study name." + _shown_default("the config's name"))] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Tune directory." + _shown_default("runs/tune-<name>"))] = None,
    worker_trials: Annotated[int | None, typer.Option("--worker-trials", hidden=True)] = None,
    worker_index: Annotated[int, typer.Option("--worker-index", hidden=True)] = 0,
) -> None:
    """Search hyperparameters with Optuna (TPE, pruning); trials are runs, and a rerun continues."""
    from seqtool import tune as tuning

    job = tuning.plan(
        config,
        overrides or [],
        space,
        name=name,
        folder=output,
        storage=storage,
        trials=trials,
        timeout=timeout,
        jobs=jobs,
        threads=threads,
        pruner=pruner,
        metric=metric,
        direction=direction,
    )
    console = Console(soft_wrap=True)
    try:
        study = tuning.run(job, console, worker_trials, worker_index)
    except TrainingInterrupted as exc:
        exc.resume_command = shlex.join(["seqtool", *sys.argv[1:]])
        raise
    if worker_trials is not None:
        return
    from seqtool.tune_report import trials_table, write_report

    # A table as wide as it needs when written to a file or pipe (rich assumes 80 columns there).
    Console(width=None if sys.stdout.isatty() else 200).print(trials_table(job, study))
    console.print(f"Wrote {', '.join(map(str, write_report(job, study)))}", highlight=False)


def serve(
    run: Annotated[Path, typer.Argument(help="Run directory (its best.pt) or checkpoint file.", show_default=False)],
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; anything but localhost is reachable by others.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Server processes, each with the model and its share of the cores.")
    ] = 1,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="SEQTOOL_API_KEY", help="Require 'Authorization: Bearer KEY' (or set SEQTOOL_API_KEY)."),
    ] = None,
    max_request_bytes: Annotated[int, typer.Option("--max-request-bytes", min=1, help="Larger requests get 413.")] = 4
    * 1024
    * 1024,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Queued requests answered in one batch, at most.")] = 64,
    max_queue: Annotated[int, typer.Option("--max-queue", min=1, help="Requests waiting beyond this get 503.")] = 256,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Torch threads per worker." + _shown_default("cores / workers"))
    ] = None,
) -> None:
    """Serve a trained model over HTTP (FastAPI + uvicorn): /health, /metadata, /predict, /generate; OpenAPI at /docs."""
    from seqtool.serve import LOCAL_HOSTS, ServeSettings
    from seqtool.serve import serve as run_server

    if host not in LOCAL_HOSTS and not api_key:
        print(
            f"Warning: binding {host}: anyone who can reach this machine can use the model, and there is no "
            "authentication; pass --api-key (or SEQTOOL_API_KEY) to require a bearer token",
            file=sys.stderr,
        )
    settings = ServeSettings(str(run), api_key, max_request_bytes, max_batch, max_queue, threads)
    run_server(settings, host, port, workers)


def plot(
    runs: Annotated[list[Path], typer.Argument(help="One or more run directories.", show_default=False)],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", help="PNG to write." + _shown_default("RUN/curves.png or RUN/grad_flow.png; ./ for several runs")
        ),
    ] = None,
    grad_flow: Annotated[
        bool, typer.Option("--grad-flow", help="Draw |dL/dh_t| against t (runs trained with training.log_grad_flow: true).")
    ] = False,
) -> None:
    """Draw loss and metric curves, or the gradient flow, of one or several runs."""
    from seqtool.metrics import GRAD_FLOW, METRICS_FILE, VAL, MetricsLog, of_split
    from seqtool.plots import curves_plot, grad_flow_plot
    from seqtool.runs import describe_run

    curves, flows = {}, {}
    for run in runs:
        if not (run / METRICS_FILE).is_file():
            raise SeqtoolError(f"{run} is not a run directory (no {METRICS_FILE})")
        events = MetricsLog(run).read()
        name = run.name if sum(r.name == run.name for r in runs) == 1 else str(run)
        if grad_flow:
            flows[name] = [e for e in of_split(events, GRAD_FLOW) if e.get("dl_dh")]
            if not flows[name]:
                raise SeqtoolError(f"{run} has no gradient-flow records: train it with training.log_grad_flow=true")
        elif not of_split(events, VAL):
            raise SeqtoolError(f"{run} has no evaluation yet: nothing to plot")
        curves[name] = (events, describe_run(run).main_metric)
    filename = "grad_flow.png" if grad_flow else "curves.png"
    path = output or (runs[0] / filename if len(runs) == 1 else Path(filename))
    if grad_flow:
        grad_flow_plot(path, flows)
    else:
        curves_plot(path, curves)
    Console().print(f"Wrote {path}", highlight=False)


def export(
    checkpoint: Annotated[
        Path, typer.Argument(help="Run directory (its best checkpoint) or checkpoint file.", show_default=False)
    ],
    fmt: Annotated[str, typer.Option("--format", help="onnx (runs in onnxruntime) or torchscript (torch.jit.load).")] = "onnx",
    output: Annotated[
        str | None,  # not a Path: "DIR/" (a folder to make) must keep its slash
        typer.Option(
            "--output",
            help="File to write, or a folder (made when it ends with /) for model.onnx / model.torchscript.pt in it."
            + _shown_default("model.onnx or model.torchscript.pt in the run directory"),
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace existing export files (never a checkpoint).")] = False,
) -> None:
    """Write the model as ONNX or TorchScript with its vocabulary/scaler as JSON, checked against PyTorch."""
    from seqtool.export import export as export_model

    result = export_model(checkpoint, fmt, output, force=force)
    console = Console(soft_wrap=True)
    for part, path in result.files.items():
        table = Table(title=f"{path} ({result.task}{', ' + part if part else ''})", box=box.SIMPLE_HEAD, title_justify="left")
        for header in ("", "name", "dtype", "shape", "meaning"):
            table.add_column(header)
        inputs, outputs = result.graphs[part]
        for role, specs in (("input", inputs), ("output", outputs)):
            for spec in specs:
                table.add_row(role, spec["name"], spec["dtype"], f"({', '.join(spec['shape'])})", spec["meaning"])
        console.print(table)
    written = " and ".join(f"{path} ({path.stat().st_size / 1e6:.2f} MB)" for path in result.files.values())
    console.print(
        f"Checked with {'onnxruntime' if fmt == 'onnx' else 'torch.jit.load'}: max abs difference from PyTorch "
        f"{result.max_abs_diff:.2g} (limit {result.tolerance:g})"
        + (", and greedy decoding through the parts equals seqtool's" if len(result.files) > 1 else "")
        + f".\nWrote {written}, and {result.metadata_path}",
        highlight=False,
    )


def _compare_table(summary: list[dict], sweep_key: str | None, task: str) -> Table:
    """Without a sweep: one row per model. With one: rows are the swept values, columns the
    models, cells the main metric (mean +- spread over seeds)."""

    def spread(row: dict, name: str, digits: str = ".3g") -> str:
        value, sd = row.get(name), row.get(f"{name}_sd")
        if value is None:
            return "-"
        return f"{value:{digits}}" + (f" ± {sd:.2g}" if sd else "")

    metric = summary[0]["main_metric"] or "val loss"
    if sweep_key is not None:
        table = Table(
            title=f"{metric} by {sweep_key} ({task}; best checkpoint, as evaluate reports it; mean ± sd over seeds)",
            box=box.SIMPLE_HEAD,
        )
        table.add_column(sweep_key)
        models = list(dict.fromkeys(row["model"] for row in summary))
        for model in models:
            table.add_column(model, justify="right")
        for value in dict.fromkeys(str(row["sweep_value"]) for row in summary):
            cells = []
            for model in models:
                row = next(r for r in summary if str(r["sweep_value"]) == value and r["model"] == model)
                cells.append(spread(row, "main_value") + (" [red]diverged[/]" if row["diverged"] else ""))
            table.add_row(value, *cells)
        return table
    table = Table(
        title=f"Comparison ({task}; best checkpoint, as evaluate reports it, and final step; mean ± sd over seeds)",
        box=box.SIMPLE_HEAD,
    )
    short = summary[0].get("main_metric_short") or metric
    headers = (
        "model",
        "best val loss",
        f"{short} at best",
        "final val loss",
        f"final {short}",
        "params",
        "per s",
        "time",
        "diverged",
    )
    for header in headers:
        table.add_column(header, justify="left" if header == "model" else "right")
    for row in summary:
        table.add_row(
            row["model"],
            spread(row, "best_val_loss"),
            spread(row, "main_value"),
            spread(row, "final_val_loss"),
            spread(row, "final_main_value"),
            f"{row['parameters']:,}" if row["parameters"] else "-",
            f"{row['throughput']:,.0f}" if row["throughput"] else "-",
            _duration(row["wall_time_s"]),
            f"[red]{row['diverged']}[/]" if row["diverged"] else "0",
        )
    return table


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


class _KindOptionsCommand(_Command):
    """A command whose options after the checkpoint depend on the kind of model (`predict`,
    `evaluate`): its help lists each installed kind's, so it imports the kinds (and torch)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from seqtool.tasks import names, task_class

        command = self.name
        paragraphs = []
        for name in names():
            try:
                kind = task_class(name)
            except SeqtoolError as exc:
                paragraphs.append(f"[bold]{name}[/]: {exc}")
                continue
            if command == "predict" and kind.not_predictable:
                paragraphs.append(f"[bold]{name}[/] models: predict does not apply ({kind.not_predictable})")
                continue
            declared = kind.predict_options if command == "predict" else kind.evaluate_options
            if command == "evaluate" and not declared:  # most kinds take none: list those that do
                continue
            lines = [f"[bold]{name}[/] models:"]
            for option in declared:
                metavar = {int: "INTEGER", float: "FLOAT", Path: "PATH"}.get(option.type, "TEXT")
                lines.append(f"  {option.flag + ' ' + metavar:<24} {option.help} \\[default: {option.default}]")
            paragraphs.append("\n".join(lines) if declared else f"[bold]{name}[/] models: no options")
        heading = "Options by kind of model" if command == "predict" else "Options of some kinds of model"
        self.epilog = f"{heading} (after the checkpoint):\n\n" + "\n\n".join(paragraphs) if paragraphs else None
        super().format_help(ctx, formatter)


def predict(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path, typer.Argument(help="Run directory (its best checkpoint) or checkpoint file.", show_default=False)
    ],
) -> None:
    """Run a trained model: generate text, predict beyond the data, label texts; options below."""
    from seqtool import engine
    from seqtool.tasks import evaluating, parse_options

    task, model, _ = engine.load_trained(checkpoint)
    if task.not_predictable:
        raise SeqtoolError(f"predict does not apply to {checkpoint}: a {task.name} model's {task.not_predictable}")
    options = parse_options(type(task), ctx.args, str(checkpoint))
    with evaluating(model):
        task.predict(model, options, sys.stdout)


def tasks(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of kinds on stdout.")] = False) -> None:
    """List the task kinds installed: seqtool's own and plug-ins', with where each comes from."""
    from seqtool.tasks import describe_kinds

    kinds = describe_kinds()
    if as_json:
        typer.echo(json.dumps(kinds))
        return
    table = Table(title="Task kinds (task: NAME in a config)", box=box.SIMPLE_HEAD, title_justify="left")
    for header in ("name", "description", "main metric", "from"):
        table.add_column(header, overflow="fold")
    for kind in kinds:
        problem = f"[red]{kind['error']}[/]" if kind["error"] else kind["description"]
        table.add_row(kind["name"], problem, kind["main_metric"] or "-", kind["origin"])
    Console().print(table)


# In the order a user meets them: the help lists them so.
for _command in (init, train, evaluate, predict, runs, compare, tune, serve, plot, export, tasks):
    if _command in (predict, evaluate):  # some options are the kind's, parsed once the checkpoint says which kind
        app.command(cls=_KindOptionsCommand, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
            _command
        )
    else:
        app.command(cls=_Command)(_command)


def main() -> None:
    """Entry point: maps SeqtoolError to exit code 2 and interruptions to 130/143."""
    args = sys.argv[1:]
    if "--debug" in args:  # accept --debug anywhere, as users type it after the command
        args = ["--debug"] + [a for a in args if a != "--debug"]
    try:
        app(args=args, prog_name="seqtool")
    except (SeqtoolError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        # A file a task kind (a plug-in's, say) could not open is bad input like any other.
        if _debug["on"]:
            traceback.print_exc()
        hint = "" if _debug["on"] else " (run with --debug for the traceback)"
        message = str(exc) if isinstance(exc, SeqtoolError) else f"{exc.strerror}: {exc.filename}"
        print(f"Error: {message}{hint}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except TrainingInterrupted as exc:
        if not exc.quiet:
            print(f"Interrupted: {exc}; continue with: {exc.resume_command}", file=sys.stderr)
        sys.exit(exc.exit_code)
