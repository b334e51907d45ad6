"""The training loop, one session of one run directory, read top to bottom in `Trainer.fit`.

- set-up and restore (`setup`): task, data, model and optimiser; on `--resume` the full state
  (weights, optimiser, schedule position, data position, carried state, random streams);
- one `step`: schedule, forward, loss, backward, clip, finite check, optimiser step;
- logging, evaluation and checkpointing (`log_training`, `evaluate_and_checkpoint`, `checkpoint`);
- `fit`: steps until a budget, early stopping or a signal says stop; then the summary.

Everything task-specific (batches, loss, metrics) is behind the `Task` protocol in `seqtool.tasks`;
the run directory's lifecycle is `seqtool.rundir`; the step's parts are in `seqtool.runtime`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

import seqtool
from seqtool import rundir
from seqtool.averaging import TRAINING_WEIGHTS, WeightAverage
from seqtool.checkpoint import BEST, LAST, atomic_write_text, load_checkpoint, resolve_checkpoint, save_checkpoint
from seqtool.configure import build_config
from seqtool.distributed import Cluster
from seqtool.errors import SeqtoolError, TrainingInterrupted
from seqtool.metrics import (
    DIVERGED,
    GRAD_FLOW,
    METRICS_CSV,
    METRICS_FILE,
    SKIPPED_BATCH,
    TRAIN,
    VAL,
    Event,
    MetricsLog,
    require_tensorboard,
    write_summary,
)
from seqtool.models import count_parameters
from seqtool.progress import Stopwatch, TrainingDisplay
from seqtool.runtime import (
    autocast,
    budget_used,
    catch_stop_signals,
    compile_errors,
    learning_rate,
    make_optimizer,
    precision_note,
    restore_rng,
    rng_state,
    score,
    seed_everything,
    total_steps,
)
from seqtool.schema import Config, TrainingConfig, model_label, parse_duration
from seqtool.tasks import Phase, Task, make_task, task_class

# Called after each evaluation with the step and the validation metrics; a reason returned
# (such as a search pruning the trial) stops training there, as a budget would.
EvaluationHook = Callable[[int, dict[str, float]], str | None]

MAX_NON_FINITE_IN_A_ROW = 20  # with on_nan: skip_batch, this many bad batches in a row still stop training


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
    stopped_by_hook: bool = False  # the evaluation hook (a search's pruner) ended it, not a budget

    @classmethod
    def from_stored(cls, stored: dict[str, Any], source: str) -> TrainState:
        """The state a checkpoint stored, from any earlier format: a field added since takes its
        default, which is what that run had (nothing clipped, skipped or counted yet); a field this
        version does not know means a newer seqtool wrote the checkpoint, said in one line."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(stored) - known)
        if unknown:
            raise SeqtoolError(
                f"{source}: its training state has fields this seqtool does not know ({', '.join(unknown)}): "
                "it was written by a newer release; upgrade seqtool to resume it"
            )
        return cls(**stored)


def require_extras(kind: type[Task]) -> None:
    """Every module the kind needs is installed, or one line names them all and the extra."""
    import importlib.util

    missing = [(module, extra) for module, extra in kind.requires if importlib.util.find_spec(module) is None]
    if missing:
        extras = sorted({extra for _, extra in missing})
        raise SeqtoolError(
            f"task: {kind.name} needs {', '.join(module for module, _ in missing)}, not installed: "
            f"pip install 'seqtool[{','.join(extras)}]' (or 'seqtool[all]')"
        )


def stop_reason(state: TrainState, training: TrainingConfig, steps_per_epoch: int, elapsed_s: float) -> str:
    """Why training stops now (empty to go on): the first budget used up, or early stopping."""
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


@dataclass
class TrainResult:
    run_dir: Path
    state: TrainState
    summary: str
    already_finished: bool = False


def run_session(
    config: Config,
    run_dir: Path,
    resume: bool,
    force: bool,
    init_from: list[str | Path],
    console: Console,
    command: str | None,
    cluster: Cluster,
    device: torch.device,
    on_evaluation: EvaluationHook | None = None,
) -> TrainResult:
    """Check everything that can be checked, set up, train the runs the kind trains first (its
    `Task.pretraining` phases, on a fresh start), then train (the caller holds the lock)."""
    require_extras(task_class(config.task))  # before any work: not at the first evaluation, 100 steps in
    if "tensorboard" in config.training.log:
        require_tensorboard()
    if resume and init_from:
        raise SeqtoolError("--resume and --init-from contradict each other: resume continues a run, init-from starts a new one")
    plan = rundir.plan(run_dir, resume, force, console.print)
    if plan.resumed is not None:
        rundir.check_resumable(config, plan.resumed, run_dir, cluster)
    sources = [(str(source), load_checkpoint(resolve_checkpoint(source))) for source in init_from]
    initial = own_kind_source(config.task, sources)
    trainer = Trainer(config, run_dir, console, cluster, device)
    trainer.on_evaluation = on_evaluation
    trainer.setup(plan.resumed or initial)
    if plan.resumed is not None:
        trainer.restore(plan.resumed)
        reason = stop_reason(trainer.state, config.training, trainer.steps_per_epoch, trainer.state.elapsed_s)
        if reason:
            text = f"{run_dir} is already finished ({reason}); raise the budget with an override to train further"
            return TrainResult(run_dir, trainer.state, text, already_finished=True)
        console.print(
            f"Resuming {run_dir} at step {trainer.state.step} (full state: weights, optimiser, schedule, data position, RNG)"
        )
    elif initial is not None:
        trainer.load_weights(initial, sources[0][0])
    phases = [] if plan.resumed is not None or initial is not None else trainer.task.pretraining(run_dir)
    if phases and sources:
        raise SeqtoolError(f"--init-from and {phases[0].name} (training.pretrain) both start the model: give one of them")
    if phases:
        sources = run_phases(phases, run_dir, plan, console, command, cluster, device)
        seed_everything(config.seed)  # the same draws whether the phases ran in this process or an earlier one
    if sources and initial is None:
        for line in trainer.task.initialise_from(trainer.model, sources):
            console.print(line, highlight=False)
    trainer.log = rundir.open_for_writing(run_dir, plan, config, trainer.device, command, cluster, trainer.state.step)
    for phase in phases:
        for event in MetricsLog(run_dir / phase.name).read():
            trainer.log.write(dataclasses.replace(event, phase=phase.name))
    return trainer.fit()


def run_phases(
    phases: list[Phase],
    run_dir: Path,
    plan: rundir.Plan,
    console: Console,
    command: str | None,
    cluster: Cluster,
    device: torch.device,
) -> list[tuple[str, dict[str, Any]]]:
    """Train the runs a kind trains before its own (`Task.pretraining`) in subfolders of the run
    directory, each continued where it stopped, and return their best checkpoints. A `--force`d
    run's old contents go first (its data has been read and checked by now)."""
    if cluster.is_main:
        if plan.clear:
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        for phase in phases:
            for name, text in phase.files.items():
                atomic_write_text(run_dir / name, text)
        for stale in (METRICS_FILE, METRICS_CSV):  # of the kind's own training, if it started: written again
            (run_dir / stale).unlink(missing_ok=True)
    plan.clear = False
    cluster.barrier()
    for number, phase in enumerate(phases, 1):
        folder = run_dir / phase.name
        config = build_config(phase.config, f"the {phase.name} phase's config")
        resume = (folder / LAST).is_file()
        console.print(f"[bold]Phase {number} of {len(phases) + 1}:[/] {phase.description} -> {folder}")
        starts = [] if resume else [run_dir / earlier / BEST for earlier in phase.init_from]
        with rundir.held(folder, cluster):
            result = run_session(config, folder, resume, False, starts, console, command, cluster, device)
        if result.already_finished:
            console.print(f"{folder} had finished; it is kept")
    console.print(f"[bold]Phase {len(phases) + 1} of {len(phases) + 1}:[/] fine-tuning -> {run_dir}")
    return [(str(run_dir / phase.name / BEST), load_checkpoint(run_dir / phase.name / BEST)) for phase in phases]


def own_kind_source(kind: str, sources: list[tuple[str, dict[str, Any]]]) -> dict[str, Any] | None:
    """The checkpoint to start from when `--init-from` names a run of the same kind (all its
    weights and artifacts); None when it names runs of other kinds, which the kind's
    `init_sources` must accept (their parts are copied by `Task.initialise_from`)."""
    if not sources:
        return None
    accepted = task_class(kind).init_sources
    for source, payload in sources:
        other = payload["config"]["task"]
        if other != kind and other not in accepted:
            starts = " or ".join(f"a {name} run ({what})" for name, what in {kind: "all its weights", **accepted}.items())
            raise SeqtoolError(f"--init-from {source} is a {other} run; a {kind} run starts from {starts}")
    same = [payload for _, payload in sources if payload["config"]["task"] == kind]
    if same and len(sources) > 1:
        raise SeqtoolError(f"--init-from: a {kind} run starts from one {kind} run, not {len(sources)} runs")
    return same[0] if same else None


class Trainer:
    """One training session: the task, model, optimiser and state, and the loop over them."""

    def __init__(self, config: Config, run_dir: Path, console: Console, cluster: Cluster, device: torch.device):
        self.config, self.training, self.run_dir = config, config.training, run_dir
        self.console, self.cluster, self.device = console, cluster, cluster.device(device)
        self.state = TrainState()
        self.last_metrics: dict[str, float] = {}
        self.log: Any = None  # the metrics log, opened once the run directory is ready
        self.on_evaluation: EvaluationHook | None = None
        self.stop_asked = ""  # what the evaluation hook said, if it asked to stop
        self.average: WeightAverage | None = None  # training.ema_decay: the weights evaluated and saved

    # ---- set-up and restore --------------------------------------------------------------------

    def setup(self, checkpoint: dict[str, Any] | None) -> None:
        """Task, data, model and optimiser; vocabulary or scalers from `checkpoint` when given."""
        config, training, cluster = self.config, self.training, self.cluster
        seed_everything(config.seed)
        self.task: Task = make_task(config, (checkpoint or {}).get("artifacts"), cluster)
        self.task.cache_dir = self.run_dir.parent / rundir.CACHE_DIR
        self.task.load_training_data()
        self.model = self.task.build_model().to(self.device)  # the same initial weights on every rank (same seed)
        if training.log_grad_flow and not hasattr(self.model, "probe"):
            raise SeqtoolError(
                f"training.log_grad_flow: the {config.task} model ({type(self.model).__name__}) does not expose its per-step states"
            )
        if cluster.rank > 0:
            torch.manual_seed(config.seed + cluster.rank)  # but each rank its own dropout masks
        self.optimizer = make_optimizer(self.task.parameter_groups(self.model), training)
        self.steps_per_epoch = self.task.steps_per_epoch()
        self.steps = total_steps(training, self.steps_per_epoch)

    def restore(self, payload: dict[str, Any]) -> None:
        """The full state of a checkpoint: weights, optimiser, step, batch order, carried state, RNG."""
        if self.training.ema_decay is not None:  # its `model` is the average; the trained weights go on
            self.model.load_state_dict(payload[TRAINING_WEIGHTS])
            self.average = WeightAverage(self.model, self.training.ema_decay)
            self.average.load_state_dict(payload["model"])
        else:
            self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.state = TrainState.from_stored(payload["train_state"], str(self.run_dir / LAST))
        self.state.finished, self.state.stop_reason = False, ""
        self.task.start_epoch(self.state.epoch)  # the epoch's batch order; then the carried state on top
        self.task.load_state_dict(rundir.own_part(payload, "task_state", self.cluster))
        self.task.move_state(self.device)
        restore_rng(rundir.own_part(payload, "rng", self.cluster))
        self.last_metrics = dict(payload.get("metrics", {}))

    def load_weights(self, payload: dict[str, Any], source: str | Path | None) -> None:
        """`--init-from`: the weights only; optimiser and schedule start fresh."""
        try:
            self.model.load_state_dict(payload["model"])
        except RuntimeError as exc:
            detail = [line.strip() for line in str(exc).splitlines() if line.strip()][-1]
            raise SeqtoolError(f"--init-from {source}: weights do not fit this model ({detail})") from None
        self.console.print(f"New run initialised from the weights of {source} (optimiser and schedule start fresh)")

    # ---- one step --------------------------------------------------------------------------------

    def step(self) -> float:
        """Schedule, forward, loss, backward, clip, finite check, optimiser step; returns the lr."""
        state, training, optimizer = self.state, self.training, self.optimizer
        lr = learning_rate(training, state.step, self.cluster.from_main([self.clock.elapsed()])[0], self.steps)
        for group, scale in zip(optimizer.param_groups, self.task.lr_scales(state.step), strict=True):
            group["lr"] = lr * scale
        with compile_errors(training.compile):
            with autocast(self.device, training.precision):
                loss = self.task.training_loss(self.trained, state.batch_in_epoch, self.device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        loss = self.cluster.mean(loss.detach())  # the global batch's loss, the same on every rank
        grad_norm = None
        if training.grad_clip is not None or training.log_grad_flow:
            # with max_norm inf the "clip" only measures: its factor is exactly 1.0
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), training.grad_clip or math.inf)
            if training.grad_clip is not None:
                self.clipped += grad_norm > training.grad_clip
            self.last_grad_norm = grad_norm.detach()
        finite = torch.isfinite(loss) if grad_norm is None else torch.isfinite(loss) & torch.isfinite(grad_norm)
        if training.on_nan == "skip_batch":  # deciding to skip needs the answer now: one wait per step, opted into
            if bool(finite):
                self._optimizer_step(loss)
                state.non_finite_in_a_row = 0
            else:
                self._skip_batch(float(loss), lr)
        else:
            # Nothing waits for the device here: a non-finite step is noted on the device (its
            # step and loss) and found by check_finite before the next log line, evaluation or
            # checkpoint, so the last checkpoint on disk is always a finite one.
            self._optimizer_step(loss)
            self.device_step += 1
            first = self.first_non_finite
            noted = torch.stack([self.device_step, loss.detach().double()])
            self.first_non_finite = torch.where(~finite & (first[0] == 0), noted, first)
        state.step += 1
        state.batch_in_epoch += 1
        if state.batch_in_epoch == self.steps_per_epoch:
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        self.interval_steps += 1
        return lr

    def _optimizer_step(self, loss: torch.Tensor) -> None:
        self.optimizer.step()
        if self.average is not None:
            self.average.update(self.model, self.state.step + 1)
        self.running_loss += loss
        self.state.steps_since_log += 1

    def check_finite(self, lr: float) -> None:
        """training.on_nan: stop: the first non-finite step since the last check, if any, stops
        training (one wait for the device, at a log line, an evaluation or a checkpoint)."""
        step, loss = (float(x) for x in self.first_non_finite.tolist())
        if step:
            self.state.step = int(step) - 1  # where it diverged, for the message and the log
            self._skip_batch(loss, lr)

    def _skip_batch(self, loss: float, lr: float) -> None:
        """training.on_nan: a non-finite batch is logged and skipped, or stops training."""
        state, policy = self.state, self.training.on_nan
        state.skipped_batches += 1
        state.non_finite_in_a_row += 1
        giving_up = policy == "stop" or state.non_finite_in_a_row >= MAX_NON_FINITE_IN_A_ROW
        epoch = round((state.step + 1) / self.steps_per_epoch, 4)
        elapsed = round(self.clock.elapsed(), 3)
        self.log.write(Event(state.step + 1, TRAIN, epoch, elapsed, loss, lr, DIVERGED if giving_up else SKIPPED_BATCH))
        if giving_up:
            last = self.run_dir / LAST
            kept = f"the last good checkpoint {last} is kept" if last.exists() else "no checkpoint had been saved yet"
            why = "" if policy == "stop" else f" ({MAX_NON_FINITE_IN_A_ROW} batches in a row)"
            raise SeqtoolError(
                f"training diverged at step {state.step + 1}: the loss is {loss}{why}; {kept}. Lower training.lr, "
                "keep training.grad_clip on, or set training.on_nan=skip_batch"
            )

    # ---- logging, evaluation and checkpointing -------------------------------------------------

    def _event(self, split: str, **fields: Any) -> Event:
        state = self.state
        return Event(state.step, split, round(state.step / self.steps_per_epoch, 4), round(self.clock.elapsed(), 3), **fields)

    def log_training(self, lr: float) -> None:
        """The training loss averaged since the last log line, throughput and clipped steps."""
        state, now = self.state, self.clock.elapsed()
        self.rate = self.interval_steps * self.task.units_per_step() / max(now - self.interval_start, 1e-9)
        self.interval_start, self.interval_steps = now, 0
        state.last_train_loss = self.running_loss.item() / max(state.steps_since_log, 1)
        self.running_loss.zero_()
        state.steps_since_log = 0
        values = {f"{self.task.unit}_per_s": round(self.rate, 1)}
        if self.training.grad_clip is not None:
            values["clipped_steps"] = int(self.clipped.item())
        self.log.write(self._event(TRAIN, loss=state.last_train_loss, lr=lr, values=values))
        self.clipped.zero_()

    def evaluate_and_checkpoint(self) -> None:
        """Rank 0 evaluates (the full validation split); the others wait for its loss, so that
        best-checkpoint and early-stopping decisions agree everywhere."""
        state, cluster = self.state, self.cluster
        if cluster.is_main:
            with self.average.applied(self.model) if self.average is not None else contextlib.nullcontext():
                self.last_metrics = score(self.task, self.model, "val", self.device)
        val_loss = cluster.from_main([self.last_metrics["loss"] if cluster.is_main else 0.0])[0]
        if not cluster.is_main:
            self.last_metrics = {"loss": val_loss}
        improved = state.best_val_loss is None or val_loss < state.best_val_loss
        if improved:
            state.best_val_loss, state.best_step, state.evals_since_best = val_loss, state.step, 0
        else:
            state.evals_since_best += 1
        lr = self.optimizer.param_groups[0]["lr"]
        values = {k: v for k, v in self.last_metrics.items() if k != "loss"}
        self.log.write(self._event(VAL, loss=self.last_metrics["loss"], lr=lr, values=values))
        if self.training.log_grad_flow and cluster.is_main:
            norm = None if self.last_grad_norm is None else float(self.last_grad_norm)
            flow = gradient_flow(self.task, self.model, state.batch_in_epoch, self.device)
            self.log.write(self._event(GRAD_FLOW, values={"grad_norm": norm, "dl_dh": flow}))
        main = self.task.main_metric.name if self.task.main_metric else None
        self.display.evaluated(state.step, self.last_metrics, improved, main)
        self.checkpoint(*((LAST, BEST) if improved else (LAST,)))
        if self.on_evaluation is not None and cluster.is_main:
            self.stop_asked = self.on_evaluation(state.step, dict(self.last_metrics)) or ""
        self.interval_start = self.clock.elapsed()  # evaluation time does not count against throughput

    def checkpoint(self, *names: str) -> None:
        """Called on every rank together: rank 0 collects each rank's carried state and RNG."""
        state = self.state
        state.elapsed_s = self.clock.elapsed()
        state.loss_sum_since_log = self.running_loss.item()
        state.clipped_since_log = int(self.clipped.item())
        task_states, rngs = self.cluster.gather(self.task.state_dict()), self.cluster.gather(rng_state())
        if not self.cluster.is_main:
            return
        content = payload(self, task_states, rngs)
        for name in names:
            save_checkpoint(self.run_dir / name, content)

    # ---- the loop --------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Steps until a budget, early stopping or a signal says stop, evaluating and
        checkpointing every `eval_every` steps; then the final checkpoint and the summary."""
        self._start()
        state, training, cluster = self.state, self.training, self.cluster
        try:
            with catch_stop_signals() as caught:
                while True:
                    if state.batch_in_epoch == 0:
                        self.task.start_epoch(state.epoch)
                    lr = self.step()
                    logged = state.step % training.log_every == 0
                    elapsed, signalled = cluster.from_main([self.clock.elapsed(), float(bool(caught))])
                    reason = stop_reason(state, training, self.steps_per_epoch, elapsed)
                    evaluating = state.step % training.eval_every == 0 or bool(reason)
                    if logged or evaluating or signalled:
                        self.check_finite(lr)
                    if logged:
                        self.log_training(lr)
                    self._show_progress(elapsed, logged)
                    if evaluating:
                        self.evaluate_and_checkpoint()
                        reason = (
                            reason
                            or self.stop_asked
                            or stop_reason(state, training, self.steps_per_epoch, cluster.from_main([self.clock.elapsed()])[0])
                        )
                    if signalled:
                        self.checkpoint(LAST)
                        raise TrainingInterrupted(caught[0] if caught else signal.SIGTERM, self.run_dir / LAST)
                    if reason:
                        break
        finally:
            self.display.stop()
            self.log.close()
        state.finished, state.stop_reason = True, reason
        state.stopped_by_hook = bool(self.stop_asked) and reason == self.stop_asked
        self.checkpoint(LAST)
        return self._result(reason)

    def _start(self) -> None:
        """The module trained, the clock, the on-device running sums and the display, from where
        the (restored) state stands."""
        state = self.state
        if self.training.ema_decay is not None and self.average is None:  # after any --init-from or pretraining
            self.average = WeightAverage(self.model, self.training.ema_decay)
        self.trained = self.cluster.wrap(self.model)  # DDP under torchrun: its backward averages gradients
        if self.training.compile:
            self.trained = torch.compile(self.trained)  # training steps only: evaluation shapes vary, checkpoints use `model`
        self.clock = Stopwatch(state.elapsed_s)
        self.running_loss = torch.tensor(state.loss_sum_since_log, device=self.device)  # summed on device: no sync per step
        self.clipped = torch.tensor(state.clipped_since_log, device=self.device)
        self.first_non_finite = torch.zeros(2, dtype=torch.float64, device=self.device)  # (step, loss); step 0: none
        self.device_step = torch.tensor(float(state.step), dtype=torch.float64, device=self.device)  # no host copy per step
        self.last_grad_norm: torch.Tensor | None = None
        self.interval_start, self.interval_steps, self.rate = self.clock.elapsed(), 0, 0.0
        self.parameters = count_parameters(self.model)
        cluster = self.cluster
        where = f"{cluster.world_size} processes ({self.device.type})" if cluster.distributed else str(self.device)
        self.console.print(
            f"Training {model_label(self.config.to_dict()['model'])} "
            f"({self.parameters:,} parameters) on {where}, {self.steps_per_epoch} steps per epoch -> {self.run_dir}"
        )
        repaired = {name: count for name, count in self.task.data_report().items() if count}
        if repaired:
            said = ", ".join(f"{name.replace('_', ' ')} {count:,}" for name, count in repaired.items())
            self.console.print(f"[yellow]Data:[/] {said} (summary.json: data)", highlight=False)
        note = precision_note(self.device, self.training.precision)
        if note:
            self.console.print(f"[yellow]Warning:[/] {note}", highlight=False)
        self.display = TrainingDisplay(self.console, self.task.unit)
        self.display.val_loss = state.best_val_loss
        self.display.start(self.steps, state.step)

    def _show_progress(self, elapsed: float, logged: bool) -> None:
        state = self.state
        used = budget_used(self.training, state.step, self.steps, elapsed)
        self.display.update(
            state.step, state.step / self.steps_per_epoch, state.last_train_loss, self.rate or None, used, elapsed, logged
        )

    def _result(self, reason: str) -> TrainResult:
        state = self.state
        if not self.cluster.is_main:
            return TrainResult(self.run_dir, state, "")
        summary = {
            "run_dir": str(self.run_dir),
            "task": self.config.task,
            "model": model_label(self.config.to_dict()["model"]),
            "parameters": self.parameters,
            "steps": state.step,
            "epochs": round(state.step / self.steps_per_epoch, 3),
            "stopped_because": reason,
            "wall_time_s": round(state.elapsed_s, 1),
            "last_train_loss": state.last_train_loss,
            "best_val_loss": state.best_val_loss,
            "best_step": state.best_step,
            "final_val_loss": self.last_metrics.get("loss"),
            "best_checkpoint": str(self.run_dir / BEST),
            "data": self.task.data_report(),
        }
        return TrainResult(self.run_dir, state, write_summary(self.run_dir, summary))


def payload(trainer: Trainer, task_states: list, rngs: list) -> dict[str, Any]:
    """Everything a resumed run needs. `task_states` and `rngs` hold one entry per process: a
    single process stores its own, several store the list (each rank carries its own hidden
    state and random stream)."""
    config = trainer.config
    return {
        "seqtool_version": seqtool.__version__,
        "torch_version": str(torch.__version__),  # TorchVersion is not plain data
        "task": config.task,
        "config": config.to_dict(),
        "artifacts": trainer.task.artifacts(),
        **weights(trainer),
        "optimizer": trainer.optimizer.state_dict(),
        "train_state": dataclasses.asdict(trainer.state),
        "task_state": task_states[0] if len(task_states) == 1 else {"per_rank": task_states},
        "rng": rngs[0] if len(rngs) == 1 else {"per_rank": rngs},
        "metrics": dict(trainer.last_metrics),
    }


def weights(trainer: Trainer) -> dict[str, Any]:
    """The checkpoint's `model`: the weights to predict with (the average, with training.ema_decay,
    beside the trained weights that a resume continues)."""
    if trainer.average is None:
        return {"model": trainer.model.state_dict()}
    return {"model": trainer.average.state_dict(trainer.model), TRAINING_WEIGHTS: trainer.model.state_dict()}


def gradient_flow(task: Task, model: torch.nn.Module, batch_index: int, device: torch.device) -> list[float]:
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
