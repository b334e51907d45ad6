"""seqtool's engine, as the CLI and the Python API call it: train a config into a run
directory, load a trained model back, and evaluate it.

Training is `seqtool.trainer` (the loop, read top to bottom), `seqtool.rundir` (the run
directory's lock, resume and record) and `seqtool.runtime` (the step's parts). Everything
task-specific is behind the `Task` protocol in `seqtool.tasks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from seqtool import rundir
from seqtool.checkpoint import load_checkpoint, resolve_checkpoint
from seqtool.configure import config_from_dict
from seqtool.distributed import Cluster
from seqtool.errors import SeqtoolError
from seqtool.runtime import callers_random_state_kept, deterministic_algorithms, pick_device, score
from seqtool.schema import Config, SplitData
from seqtool.tasks import Task, evaluating, make_task, parse_options
from seqtool.trainer import EvaluationHook, TrainResult, run_session


def train(
    config: Config,
    run_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    init_from: str | Path | Sequence[str | Path] | None = None,
    console: Console | None = None,
    command: str | None = None,
    on_evaluation: EvaluationHook | None = None,
) -> TrainResult:
    """Train `config` into `run_dir`, holding the directory's lock. `resume` continues the run
    with its full state, `force` replaces it, `init_from` starts a new run from a checkpoint's
    weights (or from parts of other kinds' runs, one or more, where the kind's `init_sources`
    accept them); `command` is recorded in run.json (default: this process's command line);
    `on_evaluation(step, metrics)` may return a reason to stop (a search pruning a trial)."""
    run_dir = Path(run_dir)
    sources = [] if init_from is None else [init_from] if isinstance(init_from, (str, Path)) else list(init_from)
    device = pick_device(config.training.device)
    cluster = Cluster.from_environment(device)
    try:
        # Under torchrun rank 0 alone locks, writes and draws progress.
        console = (console or Console()) if cluster.is_main else Console(quiet=True)
        with rundir.held(run_dir, cluster), callers_random_state_kept(), deterministic_algorithms(config.training.deterministic):
            result = run_session(config, run_dir, resume, force, sources, console, command, cluster, device, on_evaluation)
        # No process tears the group down while another still uses it: a rank that left early
        # aborted now and then ("terminate called without an active exception") at exit.
        cluster.barrier()
        return result
    finally:
        cluster.close()


# ---- using a trained model ---------------------------------------------------------------


def load_trained(target: str | Path, device: str = "cpu") -> tuple[Task, torch.nn.Module, dict[str, Any]]:
    """Task (with vocabulary or scalers), model in eval mode, and the raw checkpoint payload."""
    path = resolve_checkpoint(target)
    payload = load_checkpoint(path)
    config = config_from_dict(payload["config"], source=f"{path} (stored config)")
    task = make_task(config, payload["artifacts"])
    task.cache_dir = path.parent.parent / rundir.CACHE_DIR  # the run directory's parent, as in training
    with callers_random_state_kept():  # initial weights draw from the global generator; they are replaced
        model = task.build_model()
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError:
        raise SeqtoolError(f"{path}: the stored weights do not match the stored model config") from None
    model.to(pick_device(device)).eval()
    return task, model, payload


@dataclass
class Evaluation:
    metrics: dict[str, float]
    baselines: tuple[str, ...]  # names prefixing the baselines' metrics
    warnings: list[str]
    split: str  # the split scored ("test" did not choose the checkpoint; "val" did)
    notes: list[Any]  # what the kind shows below the table (rich renderables or text)
    shown_apart: list[str]  # metrics kept out of the table (they are in the notes)


def has_test_split(config: Config) -> bool:
    """Whether the run's data holds out a test part (a fraction of `data.path`, or `data.test`)."""
    return isinstance(config.data, SplitData) and config.data.has_test_split()


def evaluate(
    target: str | Path,
    split: str | None = None,
    data_path: str | None = None,
    plot_path: str | Path | None = None,
    args: list[str] | tuple[str, ...] = (),
) -> Evaluation:
    """Metrics of a trained model and of its task's baselines on a split or on another file. The
    default split is the test part when the run has one (it did not choose the checkpoint), else
    the validation part. `args` are the kind's own options (`evaluate_options`), as typed."""
    task, model, payload = load_trained(target)
    task.evaluation_options = parse_options(type(task), list(args), str(target), command="evaluate")
    task.reporting = True
    if split is None:
        split = "test" if has_test_split(task.config) else "val"
    if plot_path is not None and not task.draws_evaluation_plot():  # refuse before any work
        task.evaluation_plot(model, split, data_path, Path(plot_path))
    metrics = score(task, model, split, next(model.parameters()).device, data_path)
    if plot_path is not None:
        with evaluating(model):
            task.evaluation_plot(model, split, data_path, Path(plot_path))
    warning = version_warning(payload)
    apart = [name for name in metrics if task.shown_apart(name)]
    return Evaluation(metrics, task.baselines, [warning] if warning else [], split, task.evaluation_notes(metrics), apart)


def version_warning(payload: dict[str, Any]) -> str | None:
    """A warning when this torch's major.minor differs from the one that trained the checkpoint:
    kernels change between releases, so results may differ slightly."""
    trained = str(payload.get("torch_version", ""))
    if trained and trained.split(".")[:2] != torch.__version__.split(".")[:2]:
        return f"this checkpoint was trained with torch {trained}; running torch {torch.__version__} may give slightly different results"
    return None
