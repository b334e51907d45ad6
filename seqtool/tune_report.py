"""What `seqtool tune` leaves at the end: a rich table of the trials, `best.yaml` (the best
trial's resolved config, ready for `seqtool train`), `trials.csv`, and `tune.png` (the optimisation
history beside the parameter importances, drawn with matplotlib from Optuna's numbers)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from rich.table import Table

from seqtool.checkpoint import atomic_write_text
from seqtool.configure import load_config
from seqtool.plots import save_png, subplots
from seqtool.schema import dump_yaml
from seqtool.tune import TuneJob, finished_states

REPORT_FILES = ("best.yaml", "trials.csv", "tune.png")


def trials_table(job: TuneJob, study: Any) -> Table:
    best = _best_trial(study)
    table = Table(title=f"Study {job.name!r} in {job.folder}: {job.metric} ({job.direction})")
    for header in ("trial", "state", job.metric, *(d.key.rsplit(".", 1)[-1] for d in job.dimensions), "run"):
        table.add_column(header, justify="left" if header in ("state", "run") else "right", no_wrap=True)
    for trial in study.get_trials(deepcopy=False):
        value = "" if trial.value is None else f"{trial.value:.5g}"
        if best is not None and trial.number == best.number:
            value = f"[bold green]{value}[/]"
        params = [_shown(trial.params.get(d.key)) for d in job.dimensions]
        run = Path(trial.user_attrs.get("run_dir", "")).name
        table.add_row(str(trial.number), trial.state.name.lower(), value, *params, run)
    return table


def _shown(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _best_trial(study: Any) -> Any | None:
    from optuna.trial import TrialState

    return study.best_trial if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None


def write_report(job: TuneJob, study: Any) -> list[Path]:
    """best.yaml (when a trial completed), trials.csv and tune.png in the tune directory."""
    job.folder.mkdir(parents=True, exist_ok=True)
    written = []
    best = _best_trial(study)
    if best is not None:
        config = load_config(job.config, best.user_attrs["overrides"])
        header = (
            f"# The best of {len(study.get_trials(deepcopy=False, states=finished_states()))} finished trials of study "
            f"{job.name!r}: {job.metric} {best.value:.6g} (trial {best.number}, {best.user_attrs['run_dir']}).\n"
            f"# {job.config} with: {' '.join(best.user_attrs['overrides']) or '(no overrides)'}\n"
            f"# Train it: seqtool train {job.folder / 'best.yaml'}\n"
        )
        atomic_write_text(job.folder / "best.yaml", header + dump_yaml(config.to_dict()))
        written.append(job.folder / "best.yaml")
    atomic_write_text(job.folder / "trials.csv", _trials_csv(job, study))
    save_png(_figure(job, study), job.folder / "tune.png")
    return [*written, job.folder / "trials.csv", job.folder / "tune.png"]


def _trials_csv(job: TuneJob, study: Any) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", "state", job.metric, *(d.key for d in job.dimensions), "last_step", "seconds", "run_dir"])
    for trial in study.get_trials(deepcopy=False):
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else ""
        steps = trial.last_step if trial.last_step is not None else ""
        params = [trial.params.get(d.key, "") for d in job.dimensions]
        writer.writerow(
            [trial.number, trial.state.name.lower(), trial.value, *params, steps, seconds, trial.user_attrs.get("run_dir", "")]
        )
    return buffer.getvalue()


def _figure(job: TuneJob, study: Any):
    """Left: each finished trial's value and the best so far; right: parameter importances."""
    from optuna.trial import TrialState

    figure, (history, importance) = subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    history.scatter([t.number for t in done], [t.value for t in done], label="completed", color="tab:blue", zorder=3)
    if pruned:  # a pruned trial's last reported value, where it was stopped
        stopped = [t for t in pruned if t.last_step is not None]
        values = [t.intermediate_values[t.last_step] for t in stopped]
        history.scatter([t.number for t in stopped], values, marker="x", color="tab:grey", label="pruned (last report)", zorder=2)
    if done:
        pick = min if job.direction == "minimize" else max
        ordered = sorted(done, key=lambda t: t.number)
        running = [pick(t.value for t in ordered[: k + 1]) for k in range(len(ordered))]
        history.step([t.number for t in ordered], running, where="post", color="tab:red", label="best so far")
    history.set_xlabel("trial")
    history.set_ylabel(f"validation {job.metric}")
    history.set_title("Optimisation history")
    history.grid(alpha=0.3)
    history.legend(fontsize=8)
    _draw_importances(importance, study, len(done))
    figure.tight_layout()
    return figure


def _draw_importances(axis, study: Any, completed: int) -> None:
    import optuna

    axis.set_title("Parameter importances (fANOVA)")
    varied = [key for key in study.get_trials(deepcopy=False)[0].params] if study.get_trials(deepcopy=False) else []
    if completed < 2 or not varied:
        axis.text(0.5, 0.5, "needs two completed trials", ha="center", va="center", transform=axis.transAxes)
        axis.set_axis_off()
        return
    try:
        importances = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as exc:  # every completed trial alike in every parameter, say
        axis.text(0.5, 0.5, f"not computable: {exc}", ha="center", va="center", wrap=True, transform=axis.transAxes)
        axis.set_axis_off()
        return
    names = list(importances)[::-1]
    axis.barh(names, [importances[n] for n in names], color="tab:blue")
    axis.set_xlabel("share of the value's variance")
    axis.grid(alpha=0.3, axis="x")
