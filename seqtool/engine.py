"""The one training loop, shared by every task kind, and loading a trained model back.

`train` reads top to bottom: prepare the run directory -> build task, model and optimiser ->
restore state when resuming -> loop (forward, loss, backward, clip, step, schedule, log, maybe
evaluate and checkpoint) -> final evaluation, checkpoint and summary. Everything task-specific
(batches, loss, metrics) is behind the `Task` protocol in `seqtool.tasks`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import platform
import random
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

import seqtool
from seqtool.checkpoint import BEST, LAST, atomic_write_text, load_checkpoint, resolve_checkpoint, save_checkpoint
from seqtool.config import (
    BUDGET_KEYS,
    Config,
    TrainingConfig,
    config_from_dict,
    dump_yaml,
    flatten,
    model_label,
    parse_duration,
)
from seqtool.distributed import Cluster
from seqtool.errors import SeqtoolError, TrainingInterrupted
from seqtool.lock import run_dir_lock
from seqtool.metrics import CONFIG_FILE, RUN_RECORD, MetricsLog, NullLog, require_tensorboard, write_summary
from seqtool.models import SequenceModel, count_parameters
from seqtool.progress import Stopwatch, TrainingDisplay
from seqtool.tasks import Task, evaluating, kind_record, make_task

# Derived data shared by the runs in one folder (token files of large corpora), beside them.
CACHE_DIR = ".seqtool-cache"

# Keys that may differ between a run and its resumption without changing what is computed.
_RESUMABLE_CHANGES = set(BUDGET_KEYS) | {"training.device", "training.log_every", "training.eval_every", "training.compile"}


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint so a resumed run continues exactly."""

    step: int = 0
    epoch: int = 0  # completed epochs
    batch_in_epoch: int = 0
    elapsed_s: float = 0.0
    best_val_loss: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    last_train_loss: float | None = None
    loss_sum_since_log: float = 0.0  # so a resumed run logs the same averaged train loss
    steps_since_log: int = 0
    clipped_since_log: int = 0  # steps whose gradient norm exceeded training.grad_clip
    skipped_batches: int = 0  # batches whose loss or gradient was not finite (training.on_nan)
    non_finite_in_a_row: int = 0
    finished: bool = False
    stop_reason: str = ""


@dataclass
class TrainResult:
    run_dir: Path
    state: TrainState
    summary: str
    already_finished: bool = False


# ---- devices, seeds, optimisers, schedules -------------------------------------------------


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SeqtoolError(f"training.device={name} but CUDA is not available on this machine (use auto or cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise SeqtoolError("training.device=mps but MPS is not available on this machine (use auto or cpu)")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """bf16 autocast where the device supports it; a no-op context for fp32."""
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _compile_errors(compiling: bool) -> Iterator[None]:
    """torch.compile fails at the first call (no C++ compiler, an unsupported operation): say
    which setting to turn off instead of showing the compiler's traceback."""
    if not compiling:
        yield
        return
    from torch._dynamo.exc import TorchDynamoException

    try:
        yield
    except TorchDynamoException as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise SeqtoolError(f"training.compile: torch.compile failed ({first.strip()}); set training.compile: false") from exc


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]),
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    random.setstate((3, tuple(int(x) for x in state["python"]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_optimizer(model: torch.nn.Module, training: TrainingConfig) -> torch.optim.Optimizer:
    params = list(model.parameters())
    if training.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=training.lr, weight_decay=training.weight_decay)
    if training.optimizer == "adam":
        return torch.optim.Adam(params, lr=training.lr, weight_decay=training.weight_decay)
    return torch.optim.SGD(params, lr=training.lr, momentum=0.9, weight_decay=training.weight_decay)


def total_steps(training: TrainingConfig, steps_per_epoch: int) -> int | None:
    """The step budget implied by epochs and max_steps (the smaller), or None with max_time only."""
    budgets = [b for b in (training.max_steps, training.epochs and training.epochs * steps_per_epoch) if b]
    return min(budgets) if budgets else None


def learning_rate(training: TrainingConfig, step: int, elapsed_s: float, steps: int | None) -> float:
    """Linear warm-up, then decay by the fraction of the budget used.

    With `max_time` the budget used is the larger of the step and the time fractions, so a
    time-limited run still completes its schedule. That makes the schedule depend on the
    machine's speed: for bit-identical reruns, budget by steps or epochs.
    """
    if step < training.warmup_steps:
        return training.lr * (step + 1) / training.warmup_steps
    used = 0.0
    if steps:
        used = (step - training.warmup_steps) / max(1, steps - training.warmup_steps)
    if training.max_time:
        used = max(used, elapsed_s / parse_duration(training.max_time))
    used = min(max(used, 0.0), 1.0)
    if training.scheduler == "cosine":
        return training.lr * 0.5 * (1.0 + math.cos(math.pi * used))
    if training.scheduler == "linear":
        return training.lr * (1.0 - used)
    return training.lr


# ---- run directory ----------------------------------------------------------------------


def _check_run_dir(run_dir: Path, resume: bool, force: bool, say) -> tuple[dict[str, Any] | None, bool]:
    """Decide what to do with the run directory before any work starts.

    Returns the payload to resume from (None for a fresh start) and whether the directory's old
    contents must be cleared. Clearing waits until data and model are ready, so a --force run that
    fails on bad data leaves the old run untouched.
    """
    if resume and force:
        raise SeqtoolError("--resume and --force contradict each other: resume keeps the run, force replaces it")
    if run_dir.exists() and not run_dir.is_dir():
        raise SeqtoolError(f"run directory {run_dir} is a file")
    occupied = run_dir.is_dir() and any(run_dir.iterdir())
    if resume:
        if (run_dir / LAST).is_file():
            return load_checkpoint(run_dir / LAST), False
        if occupied:
            say(f"[yellow]Warning:[/] {run_dir} has no checkpoint yet (the run stopped before its first); starting from scratch")
        else:
            say(f"[yellow]Warning:[/] nothing to resume in {run_dir}; starting a new run")
        return None, occupied
    if occupied and not force:
        raise SeqtoolError(
            f"run directory {run_dir} already holds a run; use --resume to continue it, "
            "--force to replace it, or --run-dir for a new one"
        )
    return None, occupied


def _own_part(payload: dict[str, Any], key: str, cluster: Cluster) -> Any:
    """This rank's entry of a per-process field of a checkpoint (see `_payload`)."""
    value = payload[key]
    return value["per_rank"][cluster.rank] if isinstance(value, dict) and "per_rank" in value else value


def _check_resumable(config: Config, payload: dict[str, Any], run_dir: Path, cluster: Cluster) -> None:
    saved_state = payload["task_state"]
    processes = len(saved_state["per_rank"]) if "per_rank" in saved_state else 1
    if processes != cluster.world_size:
        raise SeqtoolError(
            f"cannot resume {run_dir}: it was trained by {processes} process(es) and this is {cluster.world_size}; "
            "resume with the same torchrun --nproc-per-node (each process's data shard and hidden state depend on it), "
            "or use --init-from to start a new run from its weights"
        )
    saved = flatten(config_from_dict(payload["config"], source=f"{run_dir} (stored config)").to_dict())
    current = flatten(config.to_dict())
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k) and k not in _RESUMABLE_CHANGES)
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed[:4])
        raise SeqtoolError(
            f"cannot resume {run_dir}: the config differs from the run's in {details}; only budgets "
            "(epochs, max_steps, max_time, early_stopping_patience) may change. Use --init-from to start "
            "a new run from these weights"
        )


MAX_NON_FINITE_IN_A_ROW = 20  # with on_nan: skip_batch, this many bad batches in a row still stop training


def _record_run(
    run_dir: Path, config: Config, device: torch.device, command: str | None, cluster: Cluster, resumed_at: int | None
) -> None:
    """run.json: what produced this run (versions, device, seed, command line), one entry per
    session, so a result can be traced and reproduced."""
    path = run_dir / RUN_RECORD
    sessions = json.loads(path.read_text()).get("sessions", []) if resumed_at is not None and path.exists() else []
    sessions.append(
        {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command if command is not None else shlex.join(["seqtool", *sys.argv[1:]]),
            "resumed_at_step": resumed_at,
            "seqtool_version": seqtool.__version__,
            "torch_version": str(torch.__version__),  # TorchVersion is not plain data
            "python_version": platform.python_version(),
            "platform": platform.platform(),
            "device": str(device),
            "processes": cluster.world_size,
            "torch_threads": torch.get_num_threads(),
            "seed": config.seed,
        }
    )
    record = {"kind": kind_record(config.task), "sessions": sessions}
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def version_warning(payload: dict[str, Any]) -> str | None:
    """A warning when this torch's major.minor differs from the one that trained the checkpoint:
    kernels change between releases, so results may differ slightly."""
    trained = str(payload.get("torch_version", ""))
    if trained and trained.split(".")[:2] != torch.__version__.split(".")[:2]:
        return f"this checkpoint was trained with torch {trained}; running torch {torch.__version__} may give slightly different results"
    return None


def _gradient_flow(task: Task, model: SequenceModel, batch_index: int, device: torch.device) -> list[float]:
    """|dL/dh_t| for t = 1..T on one training batch: the mean over the batch of the norm of the
    loss gradient with respect to each top-layer state (for an LSTM, hidden and cell state
    together: its memory runs through the cell). Runs in eval mode (no dropout, no random
    numbers drawn) and restores the task's carried state and the gradients, so a run with
    diagnostics on trains exactly as one with them off."""
    carried, was_training = task.state_dict(), model.training
    model.eval()
    model.probe = []
    try:
        with torch.enable_grad():
            task.training_loss(model, batch_index, device).backward()
        norms = []
        for state in model.probe:
            parts = state if isinstance(state, tuple) else (state,)
            squared = sum(p.grad.pow(2).sum(dim=-1) for p in parts if p.grad is not None)
            norms.append(float(torch.as_tensor(squared).sqrt().mean()))
        return norms
    finally:
        model.probe = None
        model.zero_grad(set_to_none=True)
        task.load_state_dict(carried)
        model.train(was_training)


def _remove_leftover_writes(run_dir: Path) -> None:
    """Temporary files of writes cut short by a killed process (the caller holds the lock)."""
    for leftover in run_dir.glob("*.seqtool-tmp") if run_dir.is_dir() else []:
        leftover.unlink()


def _diverged(state: TrainState, loss: float, run_dir: Path, policy: str) -> SeqtoolError:
    kept = (
        f"the last good checkpoint {run_dir / LAST} is kept" if (run_dir / LAST).exists() else "no checkpoint had been saved yet"
    )
    why = "" if policy == "stop" else f" ({MAX_NON_FINITE_IN_A_ROW} batches in a row)"
    return SeqtoolError(
        f"training diverged at step {state.step + 1}: the loss is {loss}{why}; {kept}. Lower training.lr, "
        "keep training.grad_clip on, or set training.on_nan=skip_batch"
    )


def _budget_used(training: TrainingConfig, step: int, steps: int | None, elapsed_s: float) -> float:
    """The share of the budget used, by whichever budget (steps or time) will end training first."""
    used = step / steps if steps else 0.0
    if training.max_time:
        used = max(used, elapsed_s / parse_duration(training.max_time))
    return used


def _stop_reason(state: TrainState, training: TrainingConfig, steps_per_epoch: int, elapsed_s: float) -> str:
    if training.max_steps is not None and state.step >= training.max_steps:
        return f"max_steps reached ({training.max_steps})"
    if training.epochs is not None and state.step >= training.epochs * steps_per_epoch:
        return f"epochs completed ({training.epochs})"
    if training.max_time is not None and elapsed_s >= parse_duration(training.max_time):
        return f"max_time reached ({training.max_time})"
    patience = training.early_stopping_patience
    if patience is not None and state.evals_since_best >= patience:
        return f"early stopping (no improvement in {patience} evaluations)"
    return ""


@contextlib.contextmanager
def _catch_stop_signals() -> Iterator[list[int]]:
    """Turn the first SIGINT/SIGTERM into a flag checked between steps; a second one aborts."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum, frame):
        if caught:
            raise KeyboardInterrupt
        caught.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# ---- training ----------------------------------------------------------------------------


def _payload(
    config: Config, task: Task, model: torch.nn.Module, optimizer, state: TrainState, metrics, task_states: list, rngs: list
) -> dict[str, Any]:
    """Everything a resumed run needs. `task_states` and `rngs` hold one entry per process: a
    single process stores its own, several store the list (each rank carries its own hidden
    state and random stream)."""
    return {
        "seqtool_version": seqtool.__version__,
        "torch_version": str(torch.__version__),  # TorchVersion is not plain data
        "task": config.task,
        "config": config.to_dict(),
        "artifacts": task.artifacts(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "train_state": dataclasses.asdict(state),
        "task_state": task_states[0] if len(task_states) == 1 else {"per_rank": task_states},
        "rng": rngs[0] if len(rngs) == 1 else {"per_rank": rngs},
        "metrics": dict(metrics or {}),
    }


def train(
    config: Config,
    run_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    init_from: str | Path | None = None,
    console: Console | None = None,
    command: str | None = None,
) -> TrainResult:
    """Train `config` into `run_dir`, holding the directory's lock; see the module docstring.
    `command` is recorded in run.json (default: this process's command line)."""
    run_dir = Path(run_dir)
    device = pick_device(config.training.device)
    cluster = Cluster.from_environment(device)
    try:
        if not cluster.is_main:  # under torchrun, rank 0 alone locks, writes and draws progress
            result = _train(config, run_dir, resume, force, init_from, Console(quiet=True), command, cluster, device)
        else:
            with run_dir_lock(run_dir):
                _remove_leftover_writes(run_dir)  # of a process killed mid-write; no one else writes here now
                result = _train(config, run_dir, resume, force, init_from, console or Console(), command, cluster, device)
        # No process tears the group down while another still uses it: a rank that left early
        # aborted now and then ("terminate called without an active exception") at exit.
        cluster.barrier()
        return result
    finally:
        cluster.close()


def _train(
    config: Config,
    run_dir: Path,
    resume: bool,
    force: bool,
    init_from: str | Path | None,
    console: Console,
    command: str | None,
    cluster: Cluster,
    device: torch.device,
) -> TrainResult:
    training = config.training
    if "tensorboard" in training.log:
        require_tensorboard()  # before any work, not after the data is loaded
    if resume and init_from:
        raise SeqtoolError("--resume and --init-from contradict each other: resume continues a run, init-from starts a new one")

    resumed, clear_run_dir = _check_run_dir(run_dir, resume, force, console.print)
    if resumed is not None:
        _check_resumable(config, resumed, run_dir, cluster)
    initial = load_checkpoint(resolve_checkpoint(init_from)) if init_from else None
    if initial is not None and initial["config"]["task"] != config.task:
        raise SeqtoolError(f"--init-from {init_from} is a {initial['config']['task']} checkpoint, not {config.task}")

    seed_everything(config.seed)
    device = cluster.device(device)
    task = make_task(config, (resumed or initial or {}).get("artifacts"), cluster)
    task.cache_dir = run_dir.parent / CACHE_DIR
    task.load_training_data()
    model = task.build_model().to(device)  # the same initial weights on every rank (same seed)
    if training.log_grad_flow and not hasattr(model, "probe"):
        raise SeqtoolError(
            f"training.log_grad_flow: the {config.task} model ({type(model).__name__}) does not expose its per-step states"
        )
    if cluster.rank > 0:
        torch.manual_seed(config.seed + cluster.rank)  # but each rank its own dropout masks
    optimizer = make_optimizer(model, training)
    state = TrainState()
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        state = TrainState(**resumed["train_state"])
        task.start_epoch(state.epoch)  # the epoch's batch order; then the carried state on top
        task.load_state_dict(_own_part(resumed, "task_state", cluster))
        task.move_state(device)
        _restore_rng(_own_part(resumed, "rng", cluster))
    elif initial is not None:
        try:
            model.load_state_dict(initial["model"])
        except RuntimeError as exc:
            detail = [line.strip() for line in str(exc).splitlines() if line.strip()][-1]
            raise SeqtoolError(f"--init-from {init_from}: weights do not fit this model ({detail})") from None
        console.print(f"New run initialised from the weights of {init_from} (optimiser and schedule start fresh)")

    steps_per_epoch = task.steps_per_epoch()
    steps = total_steps(training, steps_per_epoch)
    if resumed is not None:
        reason = _stop_reason(state, training, steps_per_epoch, state.elapsed_s)
        if reason:
            text = f"{run_dir} is already finished ({reason}); raise the budget with an override to train further"
            return TrainResult(run_dir, state, text, already_finished=True)
        state.finished, state.stop_reason = False, ""
        console.print(f"Resuming {run_dir} at step {state.step} (full state: weights, optimiser, schedule, data position, RNG)")

    trained = cluster.wrap(model)  # DDP under torchrun: the module whose backward averages gradients
    if training.compile:
        trained = torch.compile(trained)  # training steps only: evaluation shapes vary, checkpoints use `model`
    cluster.barrier()  # every rank has read the old run (if any) before rank 0 replaces it
    if cluster.is_main:
        if clear_run_dir:
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / CONFIG_FILE, dump_yaml(config.to_dict()))
        _record_run(run_dir, config, device, command, cluster, resumed_at=state.step if resumed is not None else None)
        log = MetricsLog(run_dir, training.log, resume_step=state.step if resumed is not None else None)
    else:
        log = NullLog()
    if resumed is not None:
        log.truncate_after(state.step)
    clock = Stopwatch(state.elapsed_s)

    n_params = count_parameters(model)
    where = f"{cluster.world_size} processes ({device.type})" if cluster.distributed else str(device)
    console.print(
        f"Training {model_label(config.to_dict()['model'])} "
        f"({n_params:,} parameters) on {where}, {steps_per_epoch} steps per epoch -> {run_dir}"
    )
    display = TrainingDisplay(console, task.unit)
    display.val_loss = state.best_val_loss
    last_metrics: dict[str, float] = dict((resumed or {}).get("metrics", {}))
    units = task.units_per_step()
    running_loss = torch.tensor(state.loss_sum_since_log, device=device)  # summed on device: no sync per step
    clipped = torch.tensor(state.clipped_since_log, device=device)
    last_grad_norm: torch.Tensor | None = None
    interval_start, interval_steps, rate = clock.elapsed(), 0, 0.0

    def checkpoint(*names: str) -> None:
        """Called on every rank together: rank 0 collects each rank's hidden state and RNG."""
        state.elapsed_s = clock.elapsed()
        state.loss_sum_since_log = running_loss.item()
        state.clipped_since_log = int(clipped.item())
        task_states, rngs = cluster.gather(task.state_dict()), cluster.gather(_rng_state())
        if not cluster.is_main:
            return
        payload = _payload(config, task, model, optimizer, state, last_metrics, task_states, rngs)
        for name in names:
            save_checkpoint(run_dir / name, payload)

    def evaluate_and_checkpoint() -> None:
        """Rank 0 evaluates (the full validation split); the others wait for its loss, so that
        best-checkpoint and early-stopping decisions agree everywhere."""
        nonlocal last_metrics, interval_start
        if cluster.is_main:
            with autocast(device, training.precision), evaluating(model):
                last_metrics = plain_metrics(task.evaluate(model, "val", device))
        val_loss = cluster.from_main([last_metrics["loss"] if cluster.is_main else 0.0])[0]
        if not cluster.is_main:
            last_metrics = {"loss": val_loss}
        improved = state.best_val_loss is None or val_loss < state.best_val_loss
        if improved:
            state.best_val_loss, state.best_step, state.evals_since_best = val_loss, state.step, 0
        else:
            state.evals_since_best += 1
        state.elapsed_s = clock.elapsed()
        log.write(
            {
                "step": state.step,
                "epoch": round(state.step / steps_per_epoch, 4),
                "split": "val",
                "loss": last_metrics["loss"],
                "lr": optimizer.param_groups[0]["lr"],
                "elapsed_s": round(state.elapsed_s, 3),
                **{k: v for k, v in last_metrics.items() if k != "loss"},
            }
        )
        if training.log_grad_flow and cluster.is_main:
            log.write(
                {
                    "step": state.step,
                    "epoch": round(state.step / steps_per_epoch, 4),
                    "split": "grad_flow",
                    "grad_norm": None if last_grad_norm is None else float(last_grad_norm),
                    "dl_dh": _gradient_flow(task, model, state.batch_in_epoch, device),
                    "elapsed_s": round(clock.elapsed(), 3),
                }
            )
        display.evaluated(state.step, last_metrics, improved, main_metric_name(task))
        checkpoint(*((LAST, BEST) if improved else (LAST,)))
        interval_start = clock.elapsed()  # evaluation time does not count against throughput

    display.start(steps, state.step)
    try:
        with _catch_stop_signals() as caught:
            while True:
                if state.batch_in_epoch == 0:
                    task.start_epoch(state.epoch)
                lr = learning_rate(training, state.step, cluster.from_main([clock.elapsed()])[0], steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with _compile_errors(training.compile):
                    with autocast(device, training.precision):
                        loss = task.training_loss(trained, state.batch_in_epoch, device)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                loss = cluster.mean(loss.detach())  # the global batch's loss, the same on every rank
                grad_norm = None
                if training.grad_clip is not None or training.log_grad_flow:
                    # with max_norm inf the "clip" only measures: its factor is exactly 1.0
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), training.grad_clip or math.inf)
                    if training.grad_clip is not None:
                        clipped += grad_norm > training.grad_clip
                    last_grad_norm = grad_norm.detach()
                if torch.isfinite(loss) and (grad_norm is None or torch.isfinite(grad_norm)):
                    optimizer.step()
                    running_loss += loss
                    state.steps_since_log += 1
                    state.non_finite_in_a_row = 0
                else:
                    state.skipped_batches += 1
                    state.non_finite_in_a_row += 1
                    giving_up = training.on_nan == "stop" or state.non_finite_in_a_row >= MAX_NON_FINITE_IN_A_ROW
                    log.write(
                        {
                            "step": state.step + 1,
                            "epoch": round((state.step + 1) / steps_per_epoch, 4),
                            "split": "train",
                            "loss": float(loss.detach()),
                            "lr": lr,
                            "elapsed_s": round(clock.elapsed(), 3),
                            "event": "diverged" if giving_up else "skipped_batch",
                        }
                    )
                    if giving_up:
                        raise _diverged(state, float(loss.detach()), run_dir, training.on_nan)

                state.step += 1
                state.batch_in_epoch += 1
                if state.batch_in_epoch == steps_per_epoch:
                    state.epoch += 1
                    state.batch_in_epoch = 0
                interval_steps += 1

                log_now = state.step % training.log_every == 0
                if log_now:
                    now = clock.elapsed()
                    rate = interval_steps * units / max(now - interval_start, 1e-9)
                    interval_start, interval_steps = now, 0
                    state.last_train_loss = running_loss.item() / max(state.steps_since_log, 1)
                    running_loss.zero_()
                    state.steps_since_log = 0
                    log.write(
                        {
                            "step": state.step,
                            "epoch": round(state.step / steps_per_epoch, 4),
                            "split": "train",
                            "loss": state.last_train_loss,
                            "lr": lr,
                            "elapsed_s": round(now, 3),
                            f"{task.unit}_per_s": round(rate, 1),
                            **({"clipped_steps": int(clipped.item())} if training.grad_clip is not None else {}),
                        }
                    )
                    clipped.zero_()
                elapsed, signalled = cluster.from_main([clock.elapsed(), float(bool(caught))])
                display.update(
                    state.step,
                    state.step / steps_per_epoch,
                    state.last_train_loss,
                    rate or None,
                    _budget_used(training, state.step, steps, elapsed),
                    elapsed,
                    log_now,
                )

                reason = _stop_reason(state, training, steps_per_epoch, elapsed)
                if state.step % training.eval_every == 0 or reason:
                    evaluate_and_checkpoint()
                    reason = reason or _stop_reason(state, training, steps_per_epoch, cluster.from_main([clock.elapsed()])[0])
                if signalled:
                    checkpoint(LAST)
                    raise TrainingInterrupted(caught[0] if caught else signal.SIGTERM, run_dir / LAST)
                if reason:
                    break
    finally:
        display.stop()
        log.close()

    state.finished, state.stop_reason = True, reason
    checkpoint(LAST)
    if not cluster.is_main:
        return TrainResult(run_dir, state, "")
    summary = {
        "run_dir": str(run_dir),
        "task": config.task,
        "model": model_label(config.to_dict()["model"]),
        "parameters": n_params,
        "steps": state.step,
        "epochs": round(state.step / steps_per_epoch, 3),
        "stopped_because": reason,
        "wall_time_s": round(state.elapsed_s, 1),
        "last_train_loss": state.last_train_loss,
        "best_val_loss": state.best_val_loss,
        "best_step": state.best_step,
        "final_val_loss": last_metrics.get("loss"),
        "best_checkpoint": str(run_dir / BEST),
    }
    return TrainResult(run_dir, state, write_summary(run_dir, summary))


# ---- using a trained model ---------------------------------------------------------------


def load_trained(target: str | Path, device: str = "cpu") -> tuple[Task, SequenceModel, dict[str, Any]]:
    """Task (with vocabulary or scalers), model in eval mode, and the raw checkpoint payload."""
    path = resolve_checkpoint(target)
    payload = load_checkpoint(path)
    config = config_from_dict(payload["config"], source=f"{path} (stored config)")
    task = make_task(config, payload["artifacts"])
    task.cache_dir = path.parent.parent / CACHE_DIR  # the run directory's parent, as in training
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


def plain_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """A kind's metrics as Python ints and floats: numpy scalars would make a checkpoint that the
    safe loader refuses, and JSON that cannot be written."""
    plain: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise SeqtoolError(f"task kind metric {name!r} is {value!r}, not a number")
        plain[name] = int(value) if isinstance(value, (int, np.integer)) else float(value)
    return plain


def main_metric_name(task: Task) -> str | None:
    return task.main_metric.name if task.main_metric else None


def has_test_split(config: Config) -> bool:
    """Whether the run's data holds out a test part (a fraction of `data.path`, or `data.test`)."""
    data = config.data
    return getattr(data, "test_fraction", 0.0) > 0 or bool(getattr(data, "test", None))


def evaluate(
    target: str | Path, split: str | None = None, data_path: str | None = None, plot_path: str | Path | None = None
) -> Evaluation:
    """Metrics of a trained model and of its task's baselines on a split or on another file. The
    default split is the test part when the run has one (it did not choose the checkpoint), else
    the validation part."""
    task, model, payload = load_trained(target)
    if split is None:
        split = "test" if has_test_split(task.config) else "val"
    if plot_path is not None and type(task).evaluation_plot is Task.evaluation_plot:  # refuse before any work
        task.evaluation_plot(model, split, data_path, Path(plot_path))
    device = next(model.parameters()).device
    with autocast(device, task.config.training.precision), evaluating(model):
        metrics = plain_metrics(task.evaluate(model, split, device, data_path=data_path))
    if plot_path is not None:
        with evaluating(model):
            task.evaluation_plot(model, split, data_path, Path(plot_path))
    warning = version_warning(payload)
    apart = [name for name in metrics if task.shown_apart(name)]
    return Evaluation(metrics, task.baselines, [warning] if warning else [], split, task.evaluation_notes(metrics), apart)
