"""What one training step is made of, as plain functions: the device, precision and compile
settings, seeds and random-number state, the optimiser and learning-rate schedule, and when the
budget says to stop. `seqtool.trainer` puts them together."""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from seqtool.errors import SeqtoolError
from seqtool.schema import TrainingConfig, parse_duration
from seqtool.tasks import evaluating

if TYPE_CHECKING:
    from seqtool.tasks import Task


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


def precision_note(device: torch.device, precision: str) -> str | None:
    """What to tell the user when the precision asked for is not what runs (one warning line)."""
    if precision == "bf16" and device.type not in ("cuda", "cpu"):
        return f"training.precision: bf16 has no autocast on {device.type} here; training in fp32"
    return None


def autocast(device: torch.device, precision: str):
    """bf16 autocast where the device supports it; a no-op context for fp32."""
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def compile_errors(compiling: bool) -> Iterator[None]:
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


@contextlib.contextmanager
def callers_random_state_kept() -> Iterator[None]:
    """Training seeds and draws from the process's global generators (dropout draws from
    torch's); the caller's states of Python's, numpy's and torch's generators come back when it
    ends, so training from a notebook leaves the notebook's random streams where they were."""
    python, numpy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """`training.deterministic`: deterministic kernels for the block (cuBLAS needs a fixed
    workspace for them, set when unset), and the process's settings as they were afterwards."""
    if not enabled:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if workspace is None:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1], before[2]
        if workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]),
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate((3, tuple(int(x) for x in state["python"]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


def make_optimizer(params: list[list[torch.nn.Parameter]], training: TrainingConfig) -> torch.optim.Optimizer:
    """The optimiser over parameter groups (a kind's `parameter_groups`), all at `training.lr`."""
    params = [{"params": group} for group in params]
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


def budget_used(training: TrainingConfig, step: int, steps: int | None, elapsed_s: float) -> float:
    """The share of the budget used, by whichever budget (steps or time) will end training first."""
    used = step / steps if steps else 0.0
    if training.max_time:
        used = max(used, elapsed_s / parse_duration(training.max_time))
    return used


@contextlib.contextmanager
def catch_stop_signals() -> Iterator[list[int]]:
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


def score(task: Task, model: torch.nn.Module, split: str, device: torch.device, data_path: str | None = None) -> dict[str, float]:
    """A kind's metrics of `model` on a split, in eval mode without gradients, at the run's
    precision: what training's evaluations and `seqtool evaluate` both report."""
    with autocast(device, task.config.training.precision), evaluating(model):
        return plain_metrics(task.evaluate(model, split, device, data_path=data_path))


def plain_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """A kind's metrics as Python ints and floats: numpy scalars would make a checkpoint that the
    safe loader refuses, and JSON that cannot be written."""
    plain: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise SeqtoolError(f"task kind metric {name!r} is {value!r}, not a number")
        plain[name] = int(value) if isinstance(value, (int, np.integer)) else float(value)
    return plain
