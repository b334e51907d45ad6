"""`seqtool compare`: the sweep and model parsers, and the three files it writes."""

import csv
import json

import pytest
from conftest import assert_clean_error

from seqtool.compare import parse_models, parse_sweep
from seqtool.errors import SeqtoolError


def test_sweep_values_are_read_as_yaml_scalars():
    assert parse_sweep("data.length=10,50, 100") == ("data.length", [10, 50, 100])
    assert parse_sweep("training.lr=1e-3,3e-3") == ("training.lr", [0.001, 0.003])
    assert parse_sweep("data.synthetic=adding,copy") == ("data.synthetic", ["adding", "copy"])


@pytest.mark.parametrize(
    "text", ["data.length", "data.length=", "=1,2", "data.length=1,,2", "data.length=5,5", "model.type=rnn,gru"]
)
def test_malformed_sweeps_are_refused(text):
    with pytest.raises(SeqtoolError, match="--sweep"):
        parse_sweep(text)


def test_models_must_be_known_cells_listed_once():
    assert parse_models("gru, rnn") == ["gru", "rnn"]
    for bad in ("lstm,transformer", "", "lstm,lstm"):
        with pytest.raises(SeqtoolError, match="--models"):
            parse_models(bad)


@pytest.fixture
def adding_config(tmp_path):
    config = {
        "task": "long_range",
        "seed": 5,
        "data": {"synthetic": "adding", "length": 5, "samples": 500},
        "model": {"hidden_size": 8, "num_layers": 1, "dropout": 0.0},
        "training": {"batch_size": 50, "epochs": None, "max_steps": 12, "eval_every": 6, "device": "cpu"},
    }
    path = tmp_path / "adding.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def test_sweep_compare_writes_json_csv_and_png_with_a_row_per_run(tmp_path, adding_config, run_cli):
    out = tmp_path / "cmp"
    args = ("compare", adding_config, "--sweep", "data.length=4,8", "--seeds", "2", "--output", out)
    result = run_cli(*args)
    assert result.code == 0, result
    document = json.loads((out / "compare.json").read_text())
    runs = {(r["sweep_value"], r["model"], r["seed"]) for r in document["runs"]}
    assert runs == {(n, m, s) for n in (4, 8) for m in ("rnn", "lstm", "gru") for s in (5, 6)}
    assert all(r["status"] == "finished" and r["main_metric"] == "error_vs_chance" for r in document["runs"])
    summary = {(r["sweep_value"], r["model"]): r for r in document["summary"]}
    assert len(summary) == 6 and all(r["seeds"] == 2 and r["main_value_sd"] is not None for r in summary.values())
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert len(rows) == 12 and {row["model"] for row in rows} == {"rnn", "lstm", "gru"}
    png = (out / "compare.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert "error_vs_chance by data.length" in result.out and "lstm" in result.out
    # every variant is an ordinary run directory with its own checkpoint
    assert (out / "8-gru-seed6" / "best.pt").is_file()
    assert_clean_error(run_cli(*args), "already exists", "--force")


def test_compare_without_sweep_on_a_language_model(tmp_path, write_config, run_cli):
    out = tmp_path / "cmp"
    config = write_config(training={"max_steps": 10, "eval_every": 5})
    result = run_cli("compare", config, "--models", "rnn,gru", "--output", out, "model.hidden_size=16")
    assert result.code == 0, result
    summary = json.loads((out / "compare.json").read_text())["summary"]
    assert [r["model"] for r in summary] == ["rnn", "gru"]
    assert all(r["main_metric"] == "perplexity" and r["parameters"] > 0 and r["throughput"] > 0 for r in summary)
    assert "ppl" in result.out and "params" in result.out


def test_a_bad_sweep_value_fails_before_any_training(tmp_path, adding_config, run_cli):
    out = tmp_path / "cmp"
    assert_clean_error(run_cli("compare", adding_config, "--sweep", "data.length=10,abc", "--output", out), "data.length")
    assert not out.exists()


def test_plot_draws_the_curves_of_one_or_several_runs(tmp_path, adding_config, run_cli):
    for model in ("rnn", "lstm"):
        assert run_cli("train", adding_config, f"model.type={model}", "--run-dir", tmp_path / model).code == 0
    assert run_cli("plot", tmp_path / "rnn").code == 0
    both = run_cli("plot", tmp_path / "rnn", tmp_path / "lstm", "--output", tmp_path / "both.png")
    assert both.code == 0, both
    for png in (tmp_path / "rnn" / "curves.png", tmp_path / "both.png"):
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    assert_clean_error(run_cli("plot", tmp_path / "rnn", tmp_path), "is not a run directory")


def test_plot_grad_flow_needs_runs_trained_with_it(tmp_path, adding_config, run_cli):
    assert run_cli("train", adding_config, "--run-dir", tmp_path / "plain").code == 0
    assert_clean_error(run_cli("plot", tmp_path / "plain", "--grad-flow"), "training.log_grad_flow=true")
    for model in ("rnn", "lstm"):
        args = ("train", adding_config, f"model.type={model}", "training.log_grad_flow=true", "--run-dir", tmp_path / model)
        assert run_cli(*args).code == 0
    assert run_cli("plot", tmp_path / "rnn", tmp_path / "lstm", "--grad-flow", "--output", tmp_path / "flow.png").code == 0
    data = (tmp_path / "flow.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_the_table_csv_and_plot_report_the_best_checkpoint_which_evaluate_scores(tmp_path):
    from seqtool.compare import Variant, aggregate, summarise, write_outputs
    from seqtool.configure import build_config
    from seqtool.tasks import task_class

    run = tmp_path / "lstm-seed1"
    run.mkdir()
    (run / "config.yaml").write_text("task: forecast\nmodel: {type: lstm, num_layers: 1, hidden_size: 8}\n")
    events = [  # the model overfits after step 20: the best checkpoint is step 20's
        {"step": 10, "split": "val", "loss": 0.5, "mase": 1.2},
        {"step": 20, "split": "val", "loss": 0.3, "mase": 0.84},
        {"step": 30, "split": "val", "loss": 0.6, "mase": 1.35},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    config = build_config({"task": "forecast", "data": {"path": "x.csv", "target": ["y"]}}, "test")
    result = summarise(Variant("lstm", 1, None, config), run)
    assert (result.best_val_loss, result.main_value) == (0.3, 0.84)
    assert (result.final_val_loss, result.final_main_value) == (0.6, 1.35)
    summary = aggregate([result], task_class("forecast").main_metric)
    assert summary[0]["main_value"] == 0.84 and summary[0]["final_main_value"] == 1.35
    write_outputs(tmp_path, "seqtool compare", None, [result], summary)
    row = next(csv.DictReader((tmp_path / "compare.csv").open()))
    assert row["run_dir"] == str(run) and float(row["main_value"]) == 0.84 and float(row["final_main_value"]) == 1.35
