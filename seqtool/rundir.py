"""The run directory's lifecycle: lock it, decide what `--resume` and `--force` mean for it, check
that a resumed run is the same run, then replace or reopen it and record the session.

Nothing is written before training is ready to start: a `--force` run that fails on bad data
leaves the old run untouched, and a run that fails before its first step leaves no directory.
"""

from __future__ import annotations

import contextlib
import json
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import seqtool
from seqtool.checkpoint import LAST, atomic_write_text, load_checkpoint
from seqtool.configure import config_from_dict
from seqtool.errors import SeqtoolError
from seqtool.lock import run_dir_lock
from seqtool.metrics import CONFIG_FILE, RUN_RECORD, MetricsLog, NullLog
from seqtool.schema import BUDGET_KEYS, Config, dump_yaml, flatten
from seqtool.tasks import kind_record

if TYPE_CHECKING:
    import torch

    from seqtool.distributed import Cluster

# Derived data shared by the runs in one folder (token files of large corpora), beside them.
CACHE_DIR = ".seqtool-cache"

# Keys that may differ between a run and its resumption without changing what is computed.
RESUMABLE_CHANGES = set(BUDGET_KEYS) | {"training.device", "training.log_every", "training.eval_every", "training.compile"}


@contextlib.contextmanager
def held(run_dir: Path, cluster: Cluster) -> Iterator[None]:
    """The run directory's lock for the session (rank 0 alone takes it under torchrun), with the
    temporary files of writes a killed process left behind removed."""
    if not cluster.is_main:
        yield
        return
    with run_dir_lock(run_dir):
        for leftover in run_dir.glob("*.seqtool-tmp") if run_dir.is_dir() else []:
            leftover.unlink()  # no one else writes here now
        yield


@dataclass
class Plan:
    """What this session does with the run directory."""

    resumed: dict[str, Any] | None  # the checkpoint payload to continue from; None: a fresh start
    clear: bool  # whether the directory's old contents go (when training is about to start)


def plan(run_dir: Path, resume: bool, force: bool, say) -> Plan:
    """Decide what to do with the run directory before any work starts."""
    if resume and force:
        raise SeqtoolError("--resume and --force contradict each other: resume keeps the run, force replaces it")
    if run_dir.exists() and not run_dir.is_dir():
        raise SeqtoolError(f"run directory {run_dir} is a file")
    occupied = run_dir.is_dir() and any(run_dir.iterdir())
    if resume:
        if (run_dir / LAST).is_file():
            return Plan(load_checkpoint(run_dir / LAST), False)
        phases = sorted(d.name for d in run_dir.iterdir() if (d / LAST).is_file()) if occupied else []
        if phases:  # runs trained before this one (`seqtool.tasks.Phase`): they go on where they stopped
            say(f"Resuming {run_dir} in its phases before fine-tuning ({', '.join(phases)})")
            return Plan(None, False)
        if occupied:
            say(f"[yellow]Warning:[/] {run_dir} has no checkpoint yet (the run stopped before its first); starting from scratch")
        else:
            say(f"[yellow]Warning:[/] nothing to resume in {run_dir}; starting a new run")
        return Plan(None, occupied)
    if occupied and not force:
        raise SeqtoolError(
            f"run directory {run_dir} already holds a run; use --resume to continue it, "
            "--force to replace it, or --run-dir for a new one"
        )
    return Plan(None, occupied)


def own_part(payload: dict[str, Any], key: str, cluster: Cluster) -> Any:
    """This rank's entry of a per-process field of a checkpoint (see `seqtool.trainer.payload`)."""
    value = payload[key]
    return value["per_rank"][cluster.rank] if isinstance(value, dict) and "per_rank" in value else value


def check_resumable(config: Config, payload: dict[str, Any], run_dir: Path, cluster: Cluster) -> None:
    """The same number of processes, and the same config but for budgets."""
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
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed[:4])
        raise SeqtoolError(
            f"cannot resume {run_dir}: the config differs from the run's in {details}; only budgets "
            "(epochs, max_steps, max_time, early_stopping_patience) may change. Use --init-from to start "
            "a new run from these weights"
        )


def open_for_writing(
    run_dir: Path, plan: Plan, config: Config, device: torch.device, command: str | None, cluster: Cluster, step: int
) -> MetricsLog | NullLog:
    """Replace or reopen the directory (rank 0), write config.yaml and run.json, and open the
    metrics log, cut back to the checkpoint's step when resuming. Every rank calls it together."""
    cluster.barrier()  # every rank has read the old run (if any) before rank 0 replaces it
    resumed_at = step if plan.resumed is not None else None
    if not cluster.is_main:
        return NullLog()
    if plan.clear:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, dump_yaml(config.to_dict()))
    _record_session(run_dir, config, device, command, cluster, resumed_at)
    log = MetricsLog(run_dir, config.training.log, resume_step=resumed_at)
    if resumed_at is not None:
        log.truncate_after(resumed_at)
    return log


def _record_session(
    run_dir: Path, config: Config, device: torch.device, command: str | None, cluster: Cluster, resumed_at: int | None
) -> None:
    """run.json: the kind (and its main metric), and what produced each session of this run
    (versions, device, seed, command line), so a result can be traced and reproduced."""
    import torch

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
    atomic_write_text(path, json.dumps({"kind": kind_record(config.task), "sessions": sessions}, indent=2) + "\n")
