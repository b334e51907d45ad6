"""The `seqtool` command: each command parses, calls one function of the engine (or of compare,
tune, serve, export), and prints. Nothing here imports torch at module level, so `seqtool
--help` stays fast; `main` is the one place where exceptions become exit codes (`seqtool.report`)."""

from __future__ import annotations

import json
import logging
import math
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

import seqtool
from seqtool import report
from seqtool.arguments import (
    Checkpoint,
    Command,
    Group,
    KindOptionsCommand,
    config_argument,
    force_flag,
    json_flag,
    overrides_argument,
    shown_default,
)
from seqtool.errors import SeqtoolError, TrainingInterrupted

app = typer.Typer(
    name="seqtool",
    help="Train, evaluate and run recurrent networks (RNN, LSTM, GRU) on sequences.",
    cls=Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


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
    report.debug["on"] = report.debug["on"] or debug
    if debug:  # what seqtool logs (the exporters' silenced notices, say) goes to stderr
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")


def train(
    config: config_argument("YAML config file."),
    overrides: overrides_argument("Dotted KEY=VALUE overrides, e.g. training.max_steps=200 model.type=gru.") = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Where to write the run." + shown_default("runs/<config name>"))
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in the run directory from its last checkpoint (full state).")
    ] = False,
    force: force_flag("an existing run in the run directory") = False,
    init_from: Annotated[
        list[Path] | None,
        typer.Option(
            "--init-from",
            help="Start a new run from a checkpoint's weights only (fresh optimiser and schedule); a classifier also "
            "from a language model run (twice for a bidirectional one: forward and backward)." + shown_default("random weights"),
        ),
    ] = None,
) -> None:
    """Train a model from a YAML config; writes config, metrics, checkpoints and a summary."""
    from seqtool.configure import load_config

    cfg = load_config(config, overrides or [])
    from seqtool import engine
    from seqtool.distributed import launched_rank, launcher_prefix

    # Under torchrun only rank 0 speaks; log lines stay whole when stdout is a file.
    console = Console(soft_wrap=True, quiet=launched_rank() != 0, file=report.PipeSafe(sys.stdout))
    run_dir = run_dir or Path("runs") / config.stem
    try:
        result = engine.train(cfg, run_dir, resume=resume, force=force, init_from=init_from or [], console=console)
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
    checkpoint: Checkpoint,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="Evaluate on this file instead of the run's own data." + shown_default("the run's own split")
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option("--split", help="Which held-out part: val or test." + shown_default("test when the run has one, else val")),
    ] = None,
    as_json: json_flag("one flat JSON object of metrics") = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", help="Draw the evaluation to this PNG (a backtest, for kinds that draw one)." + shown_default("no plot")
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
    report.print_table(report.metrics_table(table_metrics, baselines, report.split_title(data, result.split)))
    for note in result.notes:
        console.print(note)
    if plot:
        Console().print(f"Evaluation plot written to {plot}")


def init(
    data: Annotated[Path, typer.Argument(help="A .txt corpus or a .csv table or series.", show_default=False)],
    task: Annotated[
        str | None,
        typer.Option("--task", help="Force the kind (seqtool tasks lists them)." + shown_default("guessed from the file")),
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
    as_json: json_flag("a JSON list of runs") = False,
) -> None:
    """List the runs in a folder: task, model, steps, best validation loss, wall time, status."""
    from seqtool.runs import list_runs

    if not folder.is_dir():
        raise SeqtoolError(f"no runs folder at {folder}")
    found = list_runs(folder)
    if as_json:
        typer.echo(json.dumps([run.to_dict() for run in found]))
        return
    if found:
        report.print_table(report.runs_table(found, folder))
    else:
        Console().print(f"No runs in {folder}")


def compare(
    config: config_argument("YAML config file shared by every variant."),
    overrides: overrides_argument("Dotted KEY=VALUE overrides for every variant.") = None,
    models: Annotated[str, typer.Option("--models", help="Comma-separated cells to compare.")] = "rnn,lstm,gru",
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds per variant (config seed, +1, ...).")] = 1,
    sweep: Annotated[
        str | None,
        typer.Option(
            "--sweep",
            help="KEY=V1,V2,...: train every model at each value, e.g. data.length=10,50,100." + shown_default("no sweep"),
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Compare directory." + shown_default("runs/compare-<config name>"))
    ] = None,
    force: force_flag("an existing compare directory") = False,
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
    report.print_table(report.compare_table(summary, swept[0] if swept else None, base.task))
    console.print(f"Wrote {', '.join(str(out_dir / name) for name in comparing.COMPARE_FILES)}", highlight=False)


def tune(
    config: config_argument("YAML config file every trial starts from."),
    overrides: overrides_argument("Dotted KEY=VALUE overrides for every trial (e.g. a shorter budget).") = None,
    space: Annotated[
        Path,
        typer.Option(
            "--space", help="Search space YAML: dotted keys -> {int: [lo, hi]}, {float: [lo, hi], log: true} or [choices]."
        ),
    ] = ...,  # type: ignore[assignment]
    trials: Annotated[int, typer.Option("--trials", min=1, help="Finished trials the study should reach.")] = 20,
    timeout: Annotated[
        str | None, typer.Option("--timeout", help="Start no trial after this long, e.g. 30m." + shown_default("none"))
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Optuna storage URL; a PostgreSQL or MySQL one shares the study between machines."
            + shown_default("sqlite in the tune directory"),
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", min=1, help="Trials at once, each in its own process with its share of the cores.")
    ] = 1,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Torch threads per trial." + shown_default("cores / jobs"))
    ] = None,
    pruner: Annotated[str, typer.Option("--pruner", help="Stop bad trials early: median, halving or none.")] = "median",
    metric: Annotated[
        str,
        typer.Option("--metric", help="Validation metric to optimise, at the best checkpoint (loss, or one the kind reports)."),
    ] = "loss",
    direction: Annotated[
        str | None, typer.Option("--direction", help="minimize or maximize." + shown_default("minimize"))
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Study name." + shown_default("the config's name"))] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Tune directory." + shown_default("runs/tune-<name>"))] = None,
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
    report.print_table(trials_table(job, study))
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
        int | None, typer.Option("--threads", min=1, help="Torch threads per worker." + shown_default("cores / workers"))
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
            "--output", help="PNG to write." + shown_default("RUN/curves.png or RUN/grad_flow.png; ./ for several runs")
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
    checkpoint: Checkpoint,
    fmt: Annotated[str, typer.Option("--format", help="onnx (runs in onnxruntime) or torchscript (torch.jit.load).")] = "onnx",
    output: Annotated[
        str | None,  # not a Path: "DIR/" (a folder to make) must keep its slash
        typer.Option(
            "--output",
            help="File to write, or a folder (made when it ends with /) for model.onnx / model.torchscript.pt in it."
            + shown_default("model.onnx or model.torchscript.pt in the run directory"),
        ),
    ] = None,
    force: force_flag("existing export files (never a checkpoint)") = False,
) -> None:
    """Write the model as ONNX or TorchScript with its vocabulary/scaler as JSON, checked against PyTorch."""
    from seqtool.export import export as export_model

    result = export_model(checkpoint, fmt, output, force=force)
    console = Console(soft_wrap=True)
    for table in report.export_tables(result):
        report.print_table(table)
    console.print(report.export_summary(result, fmt), highlight=False)


def predict(
    ctx: typer.Context,
    checkpoint: Checkpoint,
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


def tasks(as_json: json_flag("a JSON list of kinds") = False) -> None:
    """List the task kinds installed: seqtool's own and plug-ins', with where each comes from."""
    from seqtool.tasks import describe_kinds

    kinds = describe_kinds()
    if as_json:
        typer.echo(json.dumps(kinds))
        return
    report.print_table(report.tasks_table(kinds))


def cells(as_json: json_flag("a JSON list of cells") = False) -> None:
    """List the recurrent cells installed (model.type): seqtool's own and plug-ins', with what each supports."""
    from seqtool.cells import describe_cells

    described = describe_cells()
    if as_json:
        typer.echo(json.dumps(described))
        return
    report.print_table(report.cells_table(described))


# In the order a user meets them: the help lists them so.
for _command in (init, train, evaluate, predict, runs, compare, tune, serve, plot, export, tasks, cells):
    if _command in (predict, evaluate):  # some options are the kind's, parsed once the checkpoint says which kind
        app.command(cls=KindOptionsCommand, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(_command)
    else:
        app.command(cls=Command)(_command)


def main() -> None:
    """Entry point: a user's error is exit code 2, an interruption 130 or 143 (`seqtool.report`)."""
    try:
        app(args=report.debug_first(sys.argv[1:]), prog_name="seqtool")
    except SeqtoolError as exc:  # an OS error anywhere else is a bug, and keeps its traceback
        report.user_error(exc)
    except TrainingInterrupted as exc:
        report.interrupted(exc)
