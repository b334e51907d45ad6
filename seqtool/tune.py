"""`seqtool tune`: a hyperparameter search over an existing engine, Optuna, not a home-made one.

- Sampling is Optuna's TPE; pruning (median rule or successive halving) reads the engine's own
  evaluation events through `engine.train(on_evaluation=...)`, so a bad trial stops early as an
  ordinary run whose summary says it was pruned.
- Every trial is an ordinary run directory, `<tune dir>/trial-NNN`, trained by `engine.train`.
- The study lives in an Optuna storage: SQLite in the tune directory by default, so rerunning a
  killed `tune` continues it (finished trials count; a trial cut short by Ctrl-C or a kill is
  trained on from its last checkpoint). `--storage` takes a PostgreSQL or MySQL URL instead, and
  the same command started on several machines shares one study: Optuna's distributed mode.
- `--jobs N` starts N worker processes on one study, torch threads divided between them.

The report (table, `best.yaml`, `trials.csv`, `tune.png`) is `seqtool.tune_report`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from seqtool.configure import load_config
from seqtool.errors import SeqtoolError, TrainingInterrupted, first_line
from seqtool.metrics import VAL, MetricsLog, of_split
from seqtool.schema import parse_duration
from seqtool.tune_space import Dimension, as_override, check_space, read_space

PRUNERS = ("median", "halving", "none")
# A RUNNING trial without a heartbeat for the grace period was killed: the storage retries it.
# The environment may shorten both (the tests do, to kill and resume within seconds).
DEFAULT_HEARTBEAT_S, DEFAULT_GRACE_S = 5, 20
INSTALL_HINT = "pip install 'seqtool[tune]'"


@dataclass
class TuneJob:
    """What one `seqtool tune` command searches, where, and for how long; checked before any trial."""

    config: Path
    overrides: list[str]
    space: Path
    dimensions: list[Dimension]
    folder: Path  # the tune directory: trial runs, and the report
    name: str  # the study's name in the storage
    storage: str  # an Optuna storage URL
    trials: int  # finished (completed or pruned) trials the study should reach
    timeout_s: float | None
    jobs: int
    threads: int | None  # torch threads per trial (None: torch's default)
    pruner: str
    metric: str  # a validation metric: "loss" (what chooses checkpoints) or one the kind reports
    direction: str  # minimize | maximize
    seed: int
    shared: bool = False  # the storage was given: other processes or machines may use the study too


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise SeqtoolError(f"seqtool tune needs optuna, not installed: {INSTALL_HINT}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # seqtool prints one line per trial
    return optuna


def plan(
    config: Path,
    overrides: list[str],
    space: Path,
    *,
    name: str | None = None,
    folder: Path | None = None,
    storage: str | None = None,
    trials: int = 20,
    timeout: str | None = None,
    jobs: int = 1,
    threads: int | None = None,
    pruner: str = "median",
    metric: str = "loss",
    direction: str | None = None,
) -> TuneJob:
    """Validate everything that can be checked without training: the config with the overrides,
    the space against the schema, and the options."""
    if pruner not in PRUNERS:
        raise SeqtoolError(f"--pruner takes one of {', '.join(PRUNERS)}; got {pruner!r}")
    if direction not in (None, "minimize", "maximize"):
        raise SeqtoolError(f"--direction takes minimize or maximize; got {direction!r}")
    if metric == "loss" and direction == "maximize":
        raise SeqtoolError("--metric loss is minimised; --direction maximize contradicts it")
    dimensions = read_space(space)
    check_space(config, overrides, dimensions, space)
    base = load_config(config, overrides)
    name = name or Path(config).stem
    folder = folder or Path("runs") / f"tune-{name}"
    if folder.exists() and not folder.is_dir():
        raise SeqtoolError(f"tune directory {folder} is a file")
    if threads is None and jobs > 1:
        threads = max(1, (os.cpu_count() or jobs) // jobs)
    url = storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    seconds = parse_duration(timeout) if timeout else None
    return TuneJob(
        Path(config),
        overrides,
        Path(space),
        dimensions,
        folder,
        name,
        url,
        trials,
        seconds,
        jobs,
        threads,
        pruner,
        metric,
        direction or "minimize",
        base.seed,
        storage is not None,
    )


def open_study(job: TuneJob, worker: int = 0) -> Any:
    """The study in its storage, created on first use; one started with another space, metric or
    direction is refused rather than mixed."""
    optuna = require_optuna()

    if job.storage.startswith("sqlite:///"):
        job.folder.mkdir(parents=True, exist_ok=True)
    engine_kwargs = {"connect_args": {"timeout": 60}} if job.storage.startswith("sqlite") else {}
    storage = _storage(job.storage, engine_kwargs)
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3),
        "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    # Workers (and processes sharing a given --storage) must not propose alike: each its own seed.
    seed = job.seed + 1000 * worker + _count_finished(storage, job.name) + (os.getpid() if job.shared else 0)
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(
        storage=storage,
        study_name=job.name,
        sampler=sampler,
        pruner=pruners[job.pruner](),
        direction=job.direction,
        load_if_exists=True,
    )
    _check_same_search(study, job)
    return study


def _storage(url: str, engine_kwargs: dict[str, Any]) -> Any:
    """The RDB storage, with heartbeats so a killed trial is retried. Processes starting together
    on a new database race to create its tables: the loser tries again."""
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage
    from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats: experimental in name since optuna 2.9
                return RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=int(os.environ.get("SEQTOOL_TUNE_HEARTBEAT_S", DEFAULT_HEARTBEAT_S)),
                    grace_period=int(os.environ.get("SEQTOOL_TUNE_GRACE_S", DEFAULT_GRACE_S)),
                    heartbeat_stale_trial_callback=_retry_killed,
                )
        except (IntegrityError, OperationalError) as exc:
            if attempt == 4:
                raise SeqtoolError(f"--storage {url}: {first_line(exc)}") from None
            time.sleep(0.2 * (attempt + 1))
        except (SQLAlchemyError, ValueError, ImportError, OSError) as exc:  # a bad URL, a missing driver, no server
            raise SeqtoolError(f"--storage {url}: {first_line(exc)}") from None
    raise AssertionError("unreachable")


def _count_finished(storage: Any, name: str) -> int:
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return 0
    return len(study.get_trials(deepcopy=False, states=finished_states()))


def finished_states() -> tuple[Any, ...]:
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED)


def _check_same_search(study: Any, job: TuneJob) -> None:
    wanted = {
        "space": [f"{d.key}: {d.describe()}" for d in job.dimensions],
        "metric": job.metric,
        "config": str(job.config),
        "overrides": job.overrides,
    }
    stored = study.user_attrs
    if not stored:
        for key, value in wanted.items():
            study.set_user_attr(key, value)
        return
    for key, value in wanted.items():
        if stored.get(key) != value:
            raise SeqtoolError(
                f"study {job.name!r} in {job.storage} was started with another {key} ({stored.get(key)!r}, "
                f"now {value!r}); give --name for a new study, or the same {key} to continue it"
            )


def run(job: TuneJob, console: Console, worker_trials: int | None = None, worker_index: int = 0) -> Any:
    """Run the study's remaining trials (in this process, or in `job.jobs` workers) and return it.
    `worker_trials` is set in a worker process: run that many trials and no more."""
    if worker_trials is not None:
        job.shared = False  # a --jobs worker: seeded by its index, so the search is reproducible
    study = open_study(job, worker_index)
    if worker_trials is None:
        _requeue_interrupted(study)
    remaining = job.trials - len(study.get_trials(deepcopy=False, states=finished_states()))
    if worker_trials is not None:
        _optimise(job, study, worker_trials, console)
    elif remaining <= 0:
        console.print(f"Study {job.name!r} already has {job.trials} finished trials; raise --trials to search further")
    elif job.jobs > 1:
        _run_workers(job, remaining, console)
    else:
        _optimise(job, study, remaining, console)
    return study


def _optimise(job: TuneJob, study: Any, count: int, console: Console) -> None:
    from optuna.study import MaxTrialsCallback

    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    # MaxTrialsCallback guards the study's total when other processes or machines share it.
    study.optimize(
        lambda trial: objective(job, trial, console),
        n_trials=count,
        timeout=job.timeout_s,
        callbacks=[MaxTrialsCallback(job.trials, states=finished_states())],
        catch=(TrialFailed,),
    )


def _run_workers(job: TuneJob, remaining: int, console: Console) -> None:
    """`job.jobs` processes of this command on the same study, each with its share of the
    remaining trials and of the cores."""
    shares = [remaining // job.jobs + (k < remaining % job.jobs) for k in range(job.jobs)]
    console.print(f"{job.jobs} workers, {job.threads} torch thread(s) each, {remaining} trial(s) between them")
    base = [sys.executable, "-m", "seqtool", "tune", str(job.config), *job.overrides, "--space", str(job.space)]
    options = ["--name", job.name, "--output", str(job.folder), "--storage", job.storage, "--trials", str(job.trials)]
    options += ["--pruner", job.pruner, "--metric", job.metric, "--direction", job.direction, "--threads", str(job.threads)]
    if job.timeout_s is not None:
        options += ["--timeout", f"{job.timeout_s}s"]
    workers = [
        subprocess.Popen([*base, *options, "--worker-trials", str(share), "--worker-index", str(k)])
        for k, share in enumerate(shares)
        if share
    ]
    codes = [worker.wait() for worker in workers]
    if any(codes):
        raise SeqtoolError(f"{sum(1 for c in codes if c)} of {len(workers)} tune workers failed (exit status {max(codes)})")


def objective(job: TuneJob, trial: Any, console: Console) -> float:
    """One trial: its sampled overrides trained as an ordinary run, pruned from the engine's
    evaluations; the value is the metric at the best checkpoint (what `evaluate` would load)."""
    import optuna

    from seqtool import engine

    params = {d.key: d.suggest(trial) for d in job.dimensions}
    overrides = [*job.overrides, *(as_override(k, v) for k, v in params.items())]
    number = trial_run_number(trial)
    run_dir = job.folder / f"trial-{number:03d}"
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("overrides", overrides)
    trial.set_user_attr("process", f"{socket.gethostname()}:{os.getpid()}")
    shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else as_override(k, v) for k, v in params.items())
    console.print(
        f"trial {trial.number}{'' if number == trial.number else f' (resumes trial {number})'}: {shown}", highlight=False
    )
    start = time.perf_counter()
    try:
        config = load_config(job.config, overrides)  # a combination the schema refuses fails this trial only
        result = engine.train(
            config,
            run_dir,
            resume=number != trial.number,
            console=Console(quiet=True),
            on_evaluation=_pruning_hook(job, trial),
            command=f"seqtool tune (study {job.name}, trial {trial.number})",
        )
    except TrainingInterrupted:
        trial.set_user_attr("interrupted", True)  # the rerun trains this trial on from its checkpoint
        raise
    except BadMetric:
        raise
    except SeqtoolError as exc:  # diverged, say: recorded as failed, and the search goes on
        console.print(f"trial {trial.number} failed: {exc}", highlight=False)
        raise TrialFailed(str(exc)) from None
    seconds = time.perf_counter() - start
    if result.state.stopped_by_hook:  # the pruner's hook is the only one a trial has
        console.print(f"trial {trial.number}: pruned at step {result.state.step} ({seconds:.0f} s)", highlight=False)
        raise optuna.TrialPruned(result.state.stop_reason)
    value = best_value(run_dir, job.metric)
    console.print(f"trial {trial.number}: {job.metric} {value:.6g} ({result.state.step} steps, {seconds:.0f} s)", highlight=False)
    return value


PRUNED = "pruned by the search"


class TrialFailed(Exception):
    """A trial whose training failed: Optuna records it as failed and the search goes on."""


class BadMetric(SeqtoolError):
    """`--metric` names no validation metric of the kind: every trial would fail alike, so the
    search stops with one error line."""


def _pruning_hook(job: TuneJob, trial: Any):
    """Report each evaluation's metric to Optuna; a reason to stop when its pruner says so."""

    def hook(step: int, metrics: dict[str, float]) -> str | None:
        if job.metric not in metrics:
            raise BadMetric(f"--metric {job.metric} is not a validation metric of this kind: {', '.join(sorted(metrics))}")
        trial.report(float(metrics[job.metric]), step)
        return f"{PRUNED} ({job.pruner} rule, step {step})" if trial.should_prune() else None

    return hook


def trial_run_number(trial: Any) -> int:
    """The trial whose run directory this trial trains in: its own, or, for the retry of a killed
    or interrupted trial, the original's (trained on from its last checkpoint)."""
    return int(trial.user_attrs.get("resumes", trial.number))


def _retry_killed(study: Any, trial: Any) -> None:
    """The storage's callback for a trial whose heartbeat stopped (its process was killed): the
    same parameters again, in the same run directory."""
    study.enqueue_trial(trial.params, user_attrs={"resumes": trial_run_number(trial)})


def _requeue_interrupted(study: Any) -> None:
    """Trials stopped by Ctrl-C in an earlier `tune` run again, with their parameters, from
    their checkpoints (each once; killed ones are requeued by `_retry_killed`)."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        marker = f"requeued-{trial.number}"
        if trial.user_attrs.get("interrupted") and not study.user_attrs.get(marker):
            study.enqueue_trial(trial.params, user_attrs={"resumes": trial_run_number(trial)})
            study.set_user_attr(marker, True)


def best_value(run_dir: Path, metric: str) -> float:
    """The metric at the evaluation with the lowest validation loss: the best checkpoint's."""
    val = [e for e in of_split(MetricsLog(run_dir).read(), VAL) if isinstance(e.loss, (int, float))]
    if not val:
        raise SeqtoolError(
            f"{run_dir}: the trial ended before its first evaluation; raise its budget or lower training.eval_every"
        )
    best = min(val, key=lambda e: e.loss)
    value = best.loss if metric == "loss" else best.get(metric)
    if value is None:
        raise BadMetric(f"--metric {metric} is not a validation metric of this kind")
    return float(value)
