"""Synthetic long-range tasks: generators, chance baselines, training beyond chance, forget bias."""

import json

import numpy as np
import pytest
import torch
from conftest import assert_clean_error

from seqtool.configure import build_config
from seqtool.models import SequenceModel
from seqtool.schema import ModelConfig
from seqtool.tasks.long_range import LongRangeTask, generate


def long_range_config(synthetic: str = "adding", **data) -> dict:
    return {
        "task": "long_range",
        "seed": 3,
        "data": {"synthetic": synthetic, "length": 10, "samples": 4000, **data},
        "model": {"type": "lstm", "hidden_size": 32, "num_layers": 1, "dropout": 0.0}
        | ({} if synthetic == "adding" else {"embedding_size": 8}),  # adding's inputs are numbers, not tokens
        "training": {
            "batch_size": 64,
            "epochs": None,
            "max_steps": 300,
            "lr": 0.01,
            "optimizer": "adam",
            "scheduler": "constant",
            "eval_every": 100,
            "device": "cpu",
        },
    }


def test_adding_marks_one_number_in_each_half_and_sums_them():
    inputs, targets = generate("adding", 50, 12, seed=1)
    assert inputs.shape == (50, 12, 2) and targets.shape == (50,) and inputs.dtype == np.float32
    numbers, markers = inputs[..., 0], inputs[..., 1]
    assert ((numbers >= 0) & (numbers < 1)).all()
    assert (markers[:, :6].sum(1) == 1).all() and (markers[:, 6:].sum(1) == 1).all()
    assert np.allclose(targets, (numbers * markers).sum(1))
    again, _ = generate("adding", 50, 12, seed=1)
    other, _ = generate("adding", 50, 12, seed=2)
    assert np.array_equal(inputs, again) and not np.array_equal(inputs, other)


def test_copy_layout_is_symbols_delay_go_then_recall():
    inputs, targets = generate("copy", 2, 3, seed=0, symbols=2, alphabet=4)
    for row, remembered in zip(inputs, targets, strict=True):
        a, b = remembered
        assert row.tolist() == [a, b, 4, 4, 5, 4, 4]  # 4 = blank, 5 = go (the delay's last step)
        assert 0 <= a < 4 and 0 <= b < 4


def test_parity_is_the_xor_of_the_bits():
    inputs, targets = generate("parity", 100, 7, seed=0)
    assert set(np.unique(inputs)) <= {0, 1}
    assert (targets == np.bitwise_xor.reduce(inputs, axis=1)).all()


@pytest.mark.parametrize(
    ("synthetic", "metric", "expected"),
    [("adding", "chance_mse", 1 / 6), ("copy", "chance_accuracy", 1 / 8), ("parity", "chance_accuracy", 1 / 2)],
)
def test_chance_baselines_match_their_theoretical_values(synthetic, metric, expected):
    task = LongRangeTask(build_config(long_range_config(synthetic, samples=20000), "test"))
    task.load_training_data()
    metrics = task.evaluate(task.build_model(), "val", torch.device("cpu"))
    assert metrics[metric] == pytest.approx(expected, abs=0.02)
    assert metrics["samples"] == 2000


@pytest.mark.parametrize(
    ("synthetic", "data"), [("adding", {}), ("parity", {"length": 3}), ("copy", {"length": 5, "symbols": 3, "alphabet": 4})]
)
def test_an_lstm_learns_short_range_tasks_well_beyond_chance(tmp_path, run_cli, synthetic, data):
    path = tmp_path / "lr.yaml"
    path.write_text(json.dumps(long_range_config(synthetic, **data)), encoding="utf-8")
    assert run_cli("train", path, "--run-dir", tmp_path / "run").code == 0
    metrics = json.loads(run_cli("evaluate", tmp_path / "run", "--json").out)
    assert metrics["error_vs_chance"] < 0.3, metrics
    assert_clean_error(run_cli("predict", tmp_path / "run"), "long_range", "evaluate")
    assert_clean_error(run_cli("evaluate", tmp_path / "run", "--data", path), "--data does not apply")


def test_forget_gate_bias_starts_at_the_configured_value():
    model = SequenceModel(ModelConfig(type="lstm", hidden_size=4, num_layers=2, forget_bias=1.5), output_size=1, input_size=2)
    for k in range(2):
        b_ih, b_hh = getattr(model.recurrent, f"bias_ih_l{k}"), getattr(model.recurrent, f"bias_hh_l{k}")
        assert torch.equal(b_ih[4:8] + b_hh[4:8], torch.full((4,), 1.5))  # forget gate: PyTorch order i, f, g, o
        assert not torch.equal(b_ih[:4], torch.full((4,), 1.5))  # other gates keep their random start


def test_forget_bias_is_refused_for_other_cells(tmp_path, run_cli):
    config = long_range_config()
    config["model"].update(type="gru", forget_bias=2.0)
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    assert_clean_error(run_cli("train", path, "--run-dir", tmp_path / "run"), "model.forget_bias", "lstm")


def test_grad_flow_is_logged_per_time_step_and_leaves_training_unchanged(tmp_path, run_cli):
    curves = {}
    for flag in (False, True):
        config = long_range_config(length=12)
        config["training"].update(max_steps=40, eval_every=20, log_every=10, log_grad_flow=flag, grad_clip=0.5)
        path = tmp_path / f"gf{flag}.yaml"
        path.write_text(json.dumps(config), encoding="utf-8")
        assert run_cli("train", path, "--run-dir", tmp_path / f"run{flag}").code == 0
        events = [json.loads(line) for line in (tmp_path / f"run{flag}" / "metrics.jsonl").read_text().splitlines()]
        curves[flag] = [(e["step"], e["loss"]) for e in events if e["split"] in ("train", "val")]
        flows = [e for e in events if e["split"] == "grad_flow"]
        train = [e for e in events if e["split"] == "train"]
        assert all(0 <= e["clipped_steps"] <= 10 for e in train) and sum(e["clipped_steps"] for e in train) > 0
    assert curves[True] == curves[False]  # the diagnostics draw no random numbers and leave no gradients behind
    assert [e["step"] for e in flows] == [20, 40]
    assert all(len(e["dl_dh"]) == 12 and all(np.isfinite(e["dl_dh"])) and e["grad_norm"] > 0 for e in flows)
    assert flows[0]["dl_dh"][-1] > 0  # the adding target is read at the last step
    config["training"].update(grad_clip=None)  # the norm is still measured (and nothing is clipped)
    path.write_text(json.dumps(config), encoding="utf-8")
    assert run_cli("train", path, "--run-dir", tmp_path / "unclipped").code == 0
    events = [json.loads(line) for line in (tmp_path / "unclipped" / "metrics.jsonl").read_text().splitlines()]
    assert all(e["grad_norm"] > 0 for e in events if e["split"] == "grad_flow")
    assert not any("clipped_steps" in e for e in events)
