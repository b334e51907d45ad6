"""`seqtool runs`: status of finished, interrupted, diverged and running runs."""

import json
import re
import signal
import subprocess
import sys

from conftest import assert_clean_error, interrupt_on_call, lock_held_by_another_process, send_signal

from seqtool.checkpoint import load_checkpoint
from seqtool.tasks.language_model import LanguageModelTask


def test_runs_lists_each_status(tmp_path, write_config, run_cli, monkeypatch):
    runs = tmp_path / "runs"
    assert run_cli("train", write_config(training={"max_steps": 10}), "--run-dir", runs / "done").code == 0

    original = LanguageModelTask.training_loss
    interrupt_on_call(monkeypatch, LanguageModelTask, "training_loss", 4, send_signal(signal.SIGINT))
    assert run_cli("train", write_config(training={"max_steps": 10}), "--run-dir", runs / "stopped").code == 130
    monkeypatch.setattr(LanguageModelTask, "training_loss", original)

    huge = {"lr": 1e30, "grad_clip": None, "optimizer": "sgd"}
    diverged = run_cli(
        "train", write_config(training=huge, model={"type": "rnn", "nonlinearity": "relu"}), "--run-dir", runs / "nan"
    )
    assert diverged.code == 2

    (runs / "busy").mkdir()
    (runs / "busy" / "config.yaml").write_text("task: forecast\nmodel: {type: gru, num_layers: 1, hidden_size: 8}\n")
    with lock_held_by_another_process(runs / "busy"):
        listed = {run["name"]: run for run in json.loads(run_cli("runs", runs, "--json").out)}
    assert {name: run["status"] for name, run in listed.items()} == {
        "done": "finished",
        "stopped": "interrupted",
        "nan": "diverged",
        "busy": "running",
    }
    done = listed["done"]
    assert done["task"] == "language_model" and done["model"] == "lstm 2x32" and done["steps"] == 10
    assert done["best_val_loss"] > 0 and done["main_metric"] == "perplexity" and done["main_value"] > 1
    stopped = load_checkpoint(runs / "stopped" / "last.pt")["train_state"]["step"]
    assert listed["stopped"]["steps"] == stopped == 4  # where --resume continues; nothing was logged yet

    monkeypatch.setenv("COLUMNS", "200")
    table = run_cli("runs", runs)
    assert table.code == 0 and "finished" in table.out and "diverged" in table.out
    assert re.findall(r"ppl (\S+)", table.out) and all(
        len(value.replace(".", "")) == 4 for value in re.findall(r"ppl (\S+)", table.out)
    )  # four significant figures for every run, never 9.25 beside 6.014


def test_a_truncated_checkpoint_makes_the_run_damaged_without_loading_torch(tmp_path, write_config, run_cli):
    runs = tmp_path / "runs"
    assert run_cli("train", write_config(training={"max_steps": 10}), "--run-dir", runs / "cut").code == 0
    best = runs / "cut" / "best.pt"
    best.write_bytes(best.read_bytes()[:-100])
    code = f"import sys; from seqtool.runs import list_runs; print(list_runs({str(runs)!r})[0].status); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["damaged", "False"]


def test_runs_on_a_missing_folder(tmp_path, run_cli):
    assert_clean_error(run_cli("runs", tmp_path / "nowhere"), "no runs folder")


def test_tables_are_whole_in_a_pipe_or_a_file(tmp_path, write_config, run_cli, monkeypatch):
    """In a pipe or file rich assumes 80 columns and cuts cells; there the tables take the width
    they need, so a long run name and every column survive."""
    monkeypatch.delenv("COLUMNS", raising=False)
    name = "a-run-with-a-name-long-enough-that-eighty-columns-cannot-hold-it-and-its-figures"
    run_cli("train", write_config(training={"max_steps": 2}), "--run-dir", tmp_path / "runs" / name).ok()
    listing = run_cli("runs", tmp_path / "runs").ok().out
    row = next(line for line in listing.splitlines() if name in line)
    assert "finished" in row and "lstm 2x32" in row and len(row) > 80
