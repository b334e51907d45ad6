"""torchrun + DistributedDataParallel: resuming under torchrun. That 2 CPU processes (gloo) train
what 1 process trains, into one set of files, is checked for every kind by the conformance kit
(`seqtool.testing.check_two_processes_equal_one`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import assert_clean_error, tiny_config

from seqtool.checkpoint import load_checkpoint
from seqtool.configure import load_config
from seqtool.engine import train
from seqtool.metrics import TRAIN, MetricsLog, of_split

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
    return [e.loss for e in of_split(MetricsLog(run_dir).read(), TRAIN)]


def test_a_torchrun_run_resumes_under_torchrun_and_only_with_as_many_processes(tmp_path, corpus, run_cli):
    """Two processes equal one for every kind in the conformance kit; here, a language model's
    per-process carried state survives a resume under torchrun, and a resume with another number
    of processes is refused."""
    config = tmp_path / "lm.yaml"
    values = tiny_config(corpus, model={"dropout": 0.0}, training={"max_steps": 12, "eval_every": 3, "log_every": 3})
    config.write_text(yaml.safe_dump(values))
    train(load_config(config), tmp_path / "single")

    torchrun("train", str(config), "training.max_steps=6", "--run-dir", "resumed", cwd=tmp_path)
    carried = load_checkpoint(tmp_path / "resumed/last.pt")["task_state"]["per_rank"]
    assert [state["carried"][0].shape[1] for state in carried] == [4, 4]  # each rank: half of batch_size 8
    output = torchrun("train", str(config), "--run-dir", "resumed", "--resume", cwd=tmp_path)
    assert "Resuming" in output.stdout
    assert_same_weights(tmp_path / "single/last.pt", tmp_path / "resumed/last.pt", atol=1e-5)
    assert train_losses(tmp_path / "resumed") == pytest.approx(train_losses(tmp_path / "single"), rel=1e-5)

    result = run_cli("train", config, "--run-dir", tmp_path / "resumed", "--resume", "training.max_steps=20")
    assert_clean_error(result, "trained by 2 process(es)", "--nproc-per-node")


def test_every_collective_of_a_cuda_run_has_an_engine_for_its_tensors_device(monkeypatch):
    """A fake process group at the boundary: the group a CUDA run creates, and the devices of the
    tensors each collective is handed. NCCL alone serves CUDA tensors only, so a CPU tensor
    broadcast over an NCCL-only group fails at step 1 ("No backend type associated with device
    type cpu"); every device a collective sees must have an engine in the group."""
    import torch.distributed as dist

    from seqtool.distributed import Cluster

    created, seen = [], []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **_: created.append(backend))
    for name in ("all_reduce", "broadcast"):
        monkeypatch.setattr(dist, name, lambda tensor, *a, _name=name, **k: seen.append((_name, tensor.device.type)))
    monkeypatch.setattr(dist, "gather_object", lambda obj, gathered, dst=0: seen.append(("gather_object", "cpu")))
    monkeypatch.setattr(dist, "barrier", lambda *a, **k: seen.append(("barrier", "cpu")))
    cluster = Cluster.from_environment(torch.device("cuda"))
    (group,) = created
    engines = dict(part.split(":") for part in group.split(",")) if ":" in group else {"cuda": group}
    cluster.from_main([1.0, 0.0])  # elapsed time and stop flag, every step
    cluster.mean(torch.tensor(2.0))  # the logged loss
    cluster.gather({"state": 1})  # the carried state, at each checkpoint
    cluster.barrier()
    assert {name for name, _ in seen} == {"broadcast", "all_reduce", "gather_object", "barrier"}
    missing = sorted({(name, device) for name, device in seen if device not in engines})
    assert not missing, f"group {group!r} has no engine for {missing}"
    assert engines == {"cpu": "gloo", "cuda": "nccl"}


def test_two_processes_train_a_panel_as_one_does(tmp_path):
    """Series are sharded like rows: each process takes its share of every global batch of windows."""
    from test_panel import panel_config, panel_frame

    data = tmp_path / "panel.csv"
    panel_frame().to_csv(data, index=False)
    config = panel_config(data) | {
        "training": {"batch_size": 16, "epochs": None, "max_steps": 6, "eval_every": 3, "log_every": 1}
    }
    config["model"] |= {"dropout": 0.0}
    path = tmp_path / "panel.yaml"
    path.write_text(yaml.safe_dump(config))
    train(load_config(path), tmp_path / "single")
    torchrun("train", str(path), "--run-dir", "ddp", cwd=tmp_path)
    assert_same_weights(tmp_path / "single" / "last.pt", tmp_path / "ddp" / "last.pt", atol=1e-5)
    single, ddp = train_losses(tmp_path / "single"), train_losses(tmp_path / "ddp")
    assert len(single) == len(ddp) and all(abs(a - b) <= 1e-5 * max(1.0, abs(a)) for a, b in zip(single, ddp, strict=True))
