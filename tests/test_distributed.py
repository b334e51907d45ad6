"""torchrun + DistributedDataParallel: 2 CPU processes (gloo) train what 1 process trains with the
same global batch, write one set of files, and resume under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import assert_clean_error, classify_config, forecast_config, memory_frame, sine_frame, tiny_config

from seqtool.checkpoint import load_checkpoint
from seqtool.config import load_config
from seqtool.engine import train
from seqtool.metrics import MetricsLog

pytestmark = [
    pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed"),
    pytest.mark.slow,
]


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "seqtool"]
    result = subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    first, second = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], atol=atol, rtol=0, msg=name)


def train_losses(run_dir: Path) -> list[float]:
    return [e["loss"] for e in MetricsLog(run_dir).read() if e["split"] == "train"]


def test_two_processes_equal_one_with_the_same_global_batch_and_resume(tmp_path, corpus, run_cli):
    config = tmp_path / "lm.yaml"
    values = tiny_config(corpus, model={"dropout": 0.0}, training={"max_steps": 12, "eval_every": 3, "log_every": 3})
    config.write_text(yaml.safe_dump(values))
    train(load_config(config), tmp_path / "single")

    output = torchrun("train", str(config), "--run-dir", "ddp", cwd=tmp_path)
    assert output.stdout.count("Training lstm") == 1  # rank 0 alone prints
    assert_same_weights(tmp_path / "single/last.pt", tmp_path / "ddp/last.pt", atol=1e-5)
    assert train_losses(tmp_path / "ddp") == pytest.approx(train_losses(tmp_path / "single"), rel=1e-5)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(p.name for p in (tmp_path / "single").iterdir())
    assert not [
        p for p in tmp_path.iterdir() if p.name not in ("corpus.txt", "lm.yaml", "single", "ddp", ".single.lock", ".ddp.lock")
    ]
    carried = load_checkpoint(tmp_path / "ddp/last.pt")["task_state"]["per_rank"]
    assert [state["carried"][0].shape[1] for state in carried] == [4, 4]  # each rank: half of batch_size 8

    torchrun("train", str(config), "training.max_steps=6", "--run-dir", "resumed", cwd=tmp_path)
    output = torchrun("train", str(config), "--run-dir", "resumed", "--resume", cwd=tmp_path)
    assert "Resuming" in output.stdout
    assert_same_weights(tmp_path / "single/last.pt", tmp_path / "resumed/last.pt", atol=1e-5)

    result = run_cli("train", config, "--run-dir", tmp_path / "resumed", "--resume", "training.max_steps=20")
    assert_clean_error(result, "trained by 2 process(es)", "--nproc-per-node")


def test_two_processes_classify_with_an_uneven_last_batch_and_class_weights(tmp_path):
    data = tmp_path / "memory.csv"
    frame = memory_frame(rows=230)
    frame.loc[frame.index[:60], "sentiment"] = "pos"  # unbalanced, so the class weights matter
    frame.to_csv(data, index=False)
    config = tmp_path / "cls.yaml"
    values = classify_config(data, training={"epochs": 2, "eval_every": 5, "log_every": 1, "class_weights": "balanced"})
    config.write_text(yaml.safe_dump(values))
    train(load_config(config), tmp_path / "single")
    torchrun("train", str(config), "--run-dir", "ddp", cwd=tmp_path)
    # 184 training texts in batches of 32: the last batch holds 24, split 12 + 12; a mean over each
    # rank's rows would only equal the global mean by luck with weights, so this checks the scaling.
    assert_same_weights(tmp_path / "single/last.pt", tmp_path / "ddp/last.pt", atol=1e-5)
    assert train_losses(tmp_path / "ddp") == pytest.approx(train_losses(tmp_path / "single"), rel=1e-5)


def test_two_processes_train_a_segmented_channel_independent_forecaster_as_one(tmp_path):
    frame = sine_frame(300)
    frame["Other"] = (frame["Value"] * -1.5 + 30).round(4)
    frame.to_csv(tmp_path / "series.csv", index=False)
    model = {"type": "gru", "segment_length": 8, "decoder": "parallel", "channels": "independent", "window_norm": "revin"}
    values = forecast_config(tmp_path / "series.csv", data={"target": ["Value", "Other"]}, model=model)
    values["training"].update({"epochs": None, "max_steps": 8, "eval_every": 4, "log_every": 1})
    config = tmp_path / "fc.yaml"
    config.write_text(yaml.safe_dump(values))
    train(load_config(config), tmp_path / "single")
    torchrun("train", str(config), "--run-dir", "ddp", cwd=tmp_path)
    assert_same_weights(tmp_path / "single/last.pt", tmp_path / "ddp/last.pt", atol=1e-5)
    assert train_losses(tmp_path / "ddp") == pytest.approx(train_losses(tmp_path / "single"), rel=1e-5)
