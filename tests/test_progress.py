"""What a user watches while training: the live bar, the log lines, the summary."""

import io
import json

from rich.console import Console

from seqtool.configure import build_config
from seqtool.metrics import write_summary
from seqtool.progress import BAR_UNITS, EtaEstimate, TrainingDisplay
from seqtool.runtime import budget_used
from seqtool.schema import model_label


def live_display() -> TrainingDisplay:
    display = TrainingDisplay(Console(file=io.StringIO(), force_terminal=True, width=200), "tok")
    display.start(total_steps=1000, first_step=0)
    return display


def fields(display: TrainingDisplay) -> dict:
    task = display.progress.tasks[0]
    return {**task.fields, "completed": task.completed}


def test_no_figure_is_shown_as_a_dash_not_as_nan():
    display = live_display()
    display.update(step=3, epoch=0.01, loss=None, rate=None, fraction=0.003, elapsed_s=1.0, log_line=False)
    shown = fields(display)
    display.stop()
    assert (shown["loss"], shown["val"], shown["rate"], shown["eta"]) == ("-", "-", "-", "-")


def test_the_bar_counts_against_whichever_budget_binds():
    training = build_config({"data": {"path": "x.txt"}, "training": {"epochs": 300, "max_time": "60s"}}, "t").training
    assert budget_used(training, step=30, steps=3000, elapsed_s=30.0) == 0.5  # time binds: half of it used
    assert budget_used(training, step=2400, steps=3000, elapsed_s=30.0) == 0.8  # steps bind
    display = live_display()
    display.update(step=30, epoch=0.1, loss=2.0, rate=500.0, fraction=0.5, elapsed_s=30.0, log_line=True)
    assert fields(display)["completed"] == 0.5 * BAR_UNITS and fields(display)["step"] == 30
    display.stop()


def test_the_eta_leaves_out_the_slow_first_interval_and_the_rate_is_smoothed():
    eta = EtaEstimate()
    assert eta.update(elapsed_s=30.0, fraction=0.01) is None  # start-up made the first interval slow
    assert eta.update(elapsed_s=40.0, fraction=0.11) == 89.0 * 10.0 / 10.0  # 10 s per 10% from then on
    display = live_display()
    for rate in (100.0, 1000.0):
        display.update(step=10, epoch=0.0, loss=1.0, rate=rate, fraction=0.1, elapsed_s=1.0, log_line=True)
    assert display.rate == 0.3 * 1000.0 + 0.7 * 100.0
    display.stop()


def test_plain_log_lines_before_any_figure_and_with_the_main_metric():
    out = io.StringIO()
    display = TrainingDisplay(Console(file=out, width=200), "samples")
    display.update(step=20, epoch=0.5, loss=None, rate=None, fraction=0.02, elapsed_s=1.0, log_line=True)
    display.evaluated(20, {"loss": 0.41, "accuracy": 0.8125}, True, "accuracy")
    lines = out.getvalue().splitlines()
    assert lines[0] == "step 20 | epoch 0.50 | loss - | val - | - | ETA -"
    assert lines[1] == "step 20 | val loss 0.4100 | accuracy 0.8125 (best)"


def test_the_summary_reads_as_a_person_writes_it(tmp_path):
    text = write_summary(
        tmp_path,
        {"parameters": 1903554, "steps": 1923, "epochs": 300.0, "wall_time_s": 225.0, "best_val_loss": 1.45171, "lr": 0.003},
    )
    rows = dict(
        line.split(None, 1) if not line.startswith(("wall", "best")) else line.rsplit(None, 1) for line in text.splitlines()
    )
    assert rows["parameters"].strip() == "1,903,554" and rows["steps"].strip() == "1,923" and rows["epochs"].strip() == "300"
    assert rows["wall time"] == "3:45" and rows["best val loss"] == "1.4517" and rows["lr"].strip() == "0.003"
    assert json.loads((tmp_path / "summary.json").read_text())["wall_time_s"] == 225.0  # the data stays exact


def test_a_bidirectional_model_is_named_so():
    assert model_label({"type": "lstm", "num_layers": 1, "hidden_size": 128, "bidirectional": True}) == "bidirectional lstm 1x128"
    assert model_label({"type": "gru", "num_layers": 2, "hidden_size": 64}) == "gru 2x64"
