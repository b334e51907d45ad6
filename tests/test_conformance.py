"""The conformance kit (`seqtool.testing`) for every kind the registry finds (seqtool's own, and any
plug-in installed beside it) and for the example plug-in, which is installed into a temporary
folder the way its README says, with seqtool/ untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqtool import tasks
from seqtool.cells import registry as cells
from seqtool.testing import CELL_VARIABLE, CHECKS, parametrize_with_checks

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "examples" / "plugin_task"


@pytest.fixture(autouse=True)
def one_kill_trial_per_kind(monkeypatch):
    """One SIGKILL trial per kind (killed once training is under way) keeps the suite inside its
    budget; `SEQTOOL_KILL_TRIALS=7 python -m seqtool.testing KIND` is the soak (docs/benchmarks.md)."""
    monkeypatch.setenv("SEQTOOL_KILL_TRIALS", os.environ.get("SEQTOOL_KILL_TRIALS", "1"))


@parametrize_with_checks(tasks.names())  # every installed kind: a new one is checked with no edit here
def test_installed_kind(kind, check, tmp_path):
    check(kind, tmp_path)


# Each kind with each cell that is not torch's own: the checks that exercise the cell (training and
# its carried state, resuming, the step form behind predict, export against PyTorch), slow-marked.
MODERN_CELLS = [name for name in cells.names() if not cells.cell(name).fused]
CELL_CHECKS = [check for check in CHECKS if check.name in ("resume_is_bit_identical", "cli_predict", "export")]


@pytest.mark.slow
@pytest.mark.parametrize("check", CELL_CHECKS, ids=lambda check: check.name)
@pytest.mark.parametrize("cell", MODERN_CELLS)
@pytest.mark.parametrize("kind", tasks.names())
def test_installed_kind_with_each_cell(kind, cell, check, tmp_path, monkeypatch):
    monkeypatch.setenv(CELL_VARIABLE, cell)
    check(kind, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["mingru", "slstm"])
def test_two_processes_train_each_cell_as_one_does(cell, tmp_path, monkeypatch):
    """torchrun with two gloo processes, for the kind whose state is carried across batches: one
    cell of each training form, the scan and the loop (minLSTM, which scans, and mLSTM passed
    too, 2026-12-05; the suite's budget keeps two)."""
    monkeypatch.setenv(CELL_VARIABLE, cell)
    next(check for check in CHECKS if check.name == "two_processes_equal_one")("language_model", tmp_path)


@pytest.fixture(scope="module")
def plugin_installed(tmp_path_factory):
    """`pip install --target DIR ./examples/plugin_task`, then DIR on the path of this process and
    of the processes the checks start; taken off again afterwards."""
    target = tmp_path_factory.mktemp("plugin")
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target)]
    subprocess.run([*command, str(PLUGIN)], check=True, capture_output=True)
    sys.path.insert(0, str(target))
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(target), saved) if p)
    tasks.entries.cache_clear()
    tasks.task_class.cache_clear()
    yield target
    sys.path.remove(str(target))
    os.environ.pop("PYTHONPATH") if saved is None else os.environ.__setitem__("PYTHONPATH", saved)
    tasks.entries.cache_clear()
    tasks.task_class.cache_clear()


@parametrize_with_checks(["truecase"])
def test_example_plugin_kind(kind, check, tmp_path, plugin_installed):
    assert tasks.entries()[kind].origin == "seqtool-truecase 0.1.0"
    check(kind, tmp_path)


def test_the_plugin_is_listed_and_its_shipped_config_trains_evaluates_and_predicts(plugin_installed, tmp_path, monkeypatch):
    from seqtool.testing import run_cli

    monkeypatch.setenv("COLUMNS", "200")
    listing = run_cli("tasks").ok().out
    line = next(line for line in listing.splitlines() if " truecase " in line)
    assert "restore the capital letters" in line and "seqtool-truecase 0.1.0" in line
    monkeypatch.chdir(REPO)  # the shipped config reads data/ from the repository's root
    run = tmp_path / "truecase"
    run_cli("train", PLUGIN / "truecase.yaml", "training.max_steps=6", "data.max_chars=20000", "--run-dir", run).ok()
    metrics = json.loads(run_cli("evaluate", run, "--json").ok().out)
    assert {"upper_f1", "rule_upper_f1", "letters"} <= set(metrics)
    assert run_cli("predict", run, stdin="romeo, where art thou?\n").ok().out.lower() == "romeo, where art thou?\n"


def test_the_kit_lists_every_check_the_issue_asks_for():
    assert {check.name for check in CHECKS} == {
        "config_round_trip",
        "evaluate_beside_baselines",
        "resume_is_bit_identical",
        "sigkill_then_resume",
        "checkpoint_round_trip",
        "hostile_checkpoints",
        "bad_inputs",
        "cli_predict",
        "export",
        "serve",
        "two_processes_equal_one",
    }


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["language_model", "--cell"], "--cell needs a cell's name"),
        (["language_model", "--cell", "mingur"], "did you mean 'mingru'?"),
        (["--fast"], "usage: python -m seqtool.testing KIND"),
    ],
)
def test_kit_usage_errors_are_one_line_on_stderr(argv, said, capsys, monkeypatch):
    """A mistyped kit command says what is wrong on stderr and exits 2, before any check trains."""
    from seqtool.testing import main

    monkeypatch.delenv(CELL_VARIABLE, raising=False)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert said in err and out == ""
    assert CELL_VARIABLE not in os.environ
