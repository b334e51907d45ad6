"""`seqtool tune`: the space checked before any trial, trials as ordinary runs, the report, a
study continued by a rerun (after Ctrl-C or a kill, the cut trial trained on from its
checkpoint), two processes on one SQLite study, and `--jobs`."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("optuna", reason="the tune extra is not installed (pip install 'seqtool[tune]')")

import optuna

from seqtool.configure import load_config
from seqtool.testing import prepare

SPACE = "model.hidden_size: {int: [4, 16], log: true}\ntraining.lr: {float: [1e-3, 3e-2], log: true}\nmodel.type: [gru, lstm]\n"


@pytest.fixture
def job(tmp_path):
    """The forecast kind's example with a small budget, and a three-key space beside it."""
    job = prepare("forecast", tmp_path / "data", max_steps=20, eval_every=10)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    return job.config_path, space, tmp_path / "tune"


def _trials(folder: Path) -> list[dict[str, str]]:
    with open(folder / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _tune_command(config: Path, space: Path, folder: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "seqtool", "tune", str(config), "--space", str(space), "--output", str(folder), *extra]


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("model.hiden_size: {int: [4, 16]}\n", "did you mean 'model.hidden_size'"),
        ("model.type: [gru, lsmt]\n", "did you mean 'lstm'"),
        ("model.hidden_size: {int: [16, 4]}\n", "low must be below high"),
        ("training.lr: {float: [0, 0.1], log: true}\n", "needs low > 0"),
        ("training.lr: {floats: [0.001, 0.1]}\n", "exactly one of int or float"),
        ("model.dropout: {float: [0.0, 1.5]}\n", "model.dropout"),
        ("model.hidden_size: 32\n", "give a list of choices"),
    ],
)
def test_a_bad_space_is_one_error_line_before_any_trial(job, run_cli, space, message):
    config, space_file, folder = job
    space_file.write_text(space)
    result = run_cli("tune", config, "--space", space_file, "--output", folder, "--trials", "2")
    result.clean_error(message)
    assert not (folder / "trial-000").exists()


def test_a_missing_extra_is_one_line_naming_the_install(job, run_cli, monkeypatch):
    config, space, folder = job
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed: importing it fails
    run_cli("tune", config, "--space", space, "--output", folder).clean_error("pip install 'seqtool[tune]'")


def test_a_key_both_searched_and_overridden_is_refused(job, run_cli):
    config, space, folder = job
    run_cli("tune", config, "model.type=gru", "--space", space, "--output", folder).clean_error("both searched and set")


def test_trials_are_runs_and_the_report_names_the_best(job, run_cli):
    config, space, folder = job
    run_cli("tune", config, "--space", space, "--output", folder, "--trials", "3", "--pruner", "none").ok()
    rows = _trials(folder)
    assert [r["state"] for r in rows] == ["complete"] * 3
    for row in rows:
        summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        assert summary["best_val_loss"] == pytest.approx(float(row["loss"]))
    best = min(rows, key=lambda r: float(r["loss"]))
    trained = load_config(folder / "best.yaml")
    assert trained.model.hidden_size == int(best["model.hidden_size"]) and trained.model.type == best["model.type"]
    assert trained.training.lr == pytest.approx(float(best["training.lr"]))
    assert (folder / "tune.png").read_bytes()[:4] == b"\x89PNG"
    again = run_cli("tune", config, "--space", space, "--output", folder, "--trials", "5", "--pruner", "none").ok()
    assert len(_trials(folder)) == 5 and "trial 3:" in again.out and "trial 0:" not in again.out
    run_cli("tune", config, "--space", space, "--output", folder, "--trials", "5", "--pruner", "none").ok()
    assert len(_trials(folder)) == 5  # nothing left to do
    space.write_text(SPACE.replace("[gru, lstm]", "[gru, rnn]"))
    run_cli("tune", config, "--space", space, "--output", folder, "--trials", "6").clean_error("another space")


def test_pruning_stops_a_run_cleanly_at_an_evaluation(tmp_path):
    from seqtool import engine

    job = prepare("forecast", tmp_path, max_steps=40, eval_every=10)
    seen = []

    def hook(step, metrics):
        seen.append((step, metrics["loss"]))
        return "the search stopped it (test)" if step == 20 else None

    result = engine.train(load_config(job.config_path), tmp_path / "run", on_evaluation=hook)
    assert [s for s, _ in seen] == [10, 20] and result.state.step == 20
    assert result.state.stop_reason == "the search stopped it (test)"
    assert result.state.stopped_by_hook  # a typed field says the hook ended it, whatever its words
    budget = engine.train(load_config(job.config_path), tmp_path / "budget", on_evaluation=lambda step, metrics: None)
    assert budget.state.step == 40 and not budget.state.stopped_by_hook
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stopped_because"].startswith("the search stopped it")


def _wait_for(path: Path, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def _wait_for_heartbeat(database: Path, seconds: float = 60.0) -> None:
    """Until the running trial's first heartbeat is stored (optuna records it after one interval):
    a trial killed before it has none, and is never found stale."""
    import sqlite3

    deadline = time.monotonic() + seconds
    while True:
        with contextlib.closing(sqlite3.connect(database)) as connection:
            try:
                if connection.execute("SELECT COUNT(*) FROM trial_heartbeats").fetchone()[0]:
                    return
            except sqlite3.OperationalError:  # the table is not made yet
                pass
        assert time.monotonic() < deadline, "the trial never recorded a heartbeat"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_killed_trial_is_trained_on_from_its_checkpoint_by_the_rerun(job, run_cli, monkeypatch):
    """The only trial is killed once it has a checkpoint; once its heartbeat is stale the rerun
    retries it in its own run directory (resumed, not restarted) and completes the study."""
    config, space, folder = job
    monkeypatch.setenv("SEQTOOL_TUNE_HEARTBEAT_S", "1")
    monkeypatch.setenv("SEQTOOL_TUNE_GRACE_S", "1")
    options = ["training.max_steps=200", "training.eval_every=10", "--trials", "1", "--pruner", "none"]
    process = subprocess.Popen(_tune_command(config, space, folder, *options), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(folder / "trial-000" / "last.pt")
    _wait_for_heartbeat(folder / "study.db")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode != 0
    # Past the grace period: SQLite stores heartbeats to the whole second, so a one-second grace
    # needs two seconds of real time before the killed trial's heartbeat is surely stale.
    time.sleep(2.5)
    rerun = run_cli("tune", config, "--space", space, "--output", folder, *options).ok()
    assert "resumes trial 0" in rerun.out
    record = json.loads((folder / "trial-000" / "run.json").read_text())
    assert len(record["sessions"]) == 2 and record["sessions"][1]["resumed_at_step"] > 0
    assert [r["state"] for r in _trials(folder)] == ["fail", "complete"]


def test_an_interrupted_trial_is_requeued_once_to_resume_its_run(tmp_path):
    """Ctrl-C in a trial (TrainingInterrupted) marks it; the next `tune` enqueues its parameters
    once, pointing at its run directory, and the retry of a retry still points at the first."""
    from seqtool.tune import _requeue_interrupted, trial_run_number

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr("interrupted", True)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    _requeue_interrupted(study)
    _requeue_interrupted(study)  # a second rerun does not queue it again
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1
    retry = study.ask()  # what the objective samples is the interrupted trial's parameters
    assert trial_run_number(retry) == 0 and retry.suggest_float("x", 0, 1) == study.trials[0].params["x"]
    retry.set_user_attr("interrupted", True)
    study.tell(retry, state=optuna.trial.TrialState.FAIL)
    _requeue_interrupted(study)
    assert trial_run_number(study.ask()) == 0


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(job):
    config, space, folder = job
    folder.mkdir(parents=True)
    storage = f"sqlite:///{folder / 'shared.db'}"
    options = ["training.max_steps=60", "--storage", storage, "--trials", "4", "--pruner", "none", "--threads", "1"]
    command = _tune_command(config, space, folder, *options)
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    study = optuna.load_study(study_name="forecast", storage=storage)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert 4 <= len(done) <= 5  # each stops once the study has 4; one may be finishing then
    assert len({t.user_attrs["run_dir"] for t in done}) == len(done)
    assert len({t.user_attrs["process"] for t in done}) == 2


@pytest.mark.slow
def test_jobs_divide_the_trials_and_the_threads(job, run_cli):
    config, space, folder = job
    result = run_cli("tune", config, "--space", space, "--output", folder, "--trials", "4", "--jobs", "2", "--pruner", "none")
    threads_each = max(1, (os.cpu_count() or 2) // 2)
    assert f"2 workers, {threads_each} torch thread(s) each" in result.ok().out
    rows = _trials(folder)
    assert len(rows) == 4 and {r["state"] for r in rows} == {"complete"}
    threads = {json.loads((Path(r["run_dir"]) / "run.json").read_text())["sessions"][0]["torch_threads"] for r in rows}
    assert threads == {threads_each}
