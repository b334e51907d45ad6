"""Divergence guard, one writer per run directory, full or read-only disks, SIGTERM."""

import errno
import json
import os
import signal
import socket

import pytest
import torch
import yaml
from conftest import crash_and_resume, interrupt_on_call, lock_held_by_another_process, send_signal, tiny_config

from seqtool import checkpoint as checkpoint_module
from seqtool.checkpoint import load_checkpoint
from seqtool.configure import build_config
from seqtool.engine import train
from seqtool.errors import SeqtoolError
from seqtool.lock import run_dir_lock
from seqtool.tasks.language_model import LanguageModelTask
from seqtool.testing import SeqtoolProcess


def poison(monkeypatch, at_calls):
    """Make the training loss NaN on the given calls of training_loss (1-based)."""
    original = LanguageModelTask.training_loss
    calls = {"n": 0}

    def poisoned(self, *args):
        calls["n"] += 1
        loss = original(self, *args)
        return loss * float("nan") if calls["n"] in at_calls else loss

    monkeypatch.setattr(LanguageModelTask, "training_loss", poisoned)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, corpus, monkeypatch):
    poison(monkeypatch, {12})
    config = build_config(tiny_config(corpus, training={"max_steps": 30}), "test")
    with pytest.raises(SeqtoolError, match="training diverged at step 12: the loss is nan; the last good checkpoint .* is kept"):
        train(config, tmp_path / "run")
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["train_state"]["step"] == 10
    assert all(torch.isfinite(t).all() for t in saved["model"].values())
    assert load_checkpoint(tmp_path / "run" / "best.pt")["train_state"]["step"] == 10
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "diverged" and events[-1]["step"] == 12


def test_huge_learning_rate_diverges_through_the_cli(tmp_path, write_config, run_cli):
    huge = {"lr": 1e30, "grad_clip": None, "optimizer": "sgd"}
    relu_rnn = {"type": "rnn", "nonlinearity": "relu"}  # unbounded activations: overflow to inf, then nan
    result = run_cli("train", write_config(training=huge, model=relu_rnn), "--run-dir", tmp_path / "run")
    assert result.code == 2 and "training diverged at step" in result.err and "Traceback" not in result.err


def test_skip_batch_policy_skips_and_finishes(tmp_path, corpus, monkeypatch):
    poison(monkeypatch, {12, 13})
    config = build_config(tiny_config(corpus, training={"max_steps": 30, "on_nan": "skip_batch"}), "test")
    result = train(config, tmp_path / "run")
    assert result.state.step == 30 and result.state.skipped_batches == 2
    weights = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_a_second_writer_is_refused_and_a_left_lock_file_taken_over(tmp_path, write_config, run_cli):
    run = tmp_path / "run"
    lock = tmp_path / ".run.lock"
    with lock_held_by_another_process(run) as holder:
        result = run_cli("train", write_config(training={"max_steps": 5}), "--run-dir", run, "--resume")
        result.clean_error(f"in use by process {holder}")
    # a lock file whose holder died (the kernel released its lock) is no obstacle, whatever it says
    lock.write_text(f"{socket.gethostname()} {2**22 + 1}\n")
    run_cli("train", write_config(training={"max_steps": 5}), "--run-dir", run).ok()
    assert not lock.exists()  # released at the end


def test_a_lock_file_just_made_and_still_empty_is_not_taken_for_a_stale_one(tmp_path, write_config, run_cli):
    """The moment between a holder making the lock file and writing its PID: the file is empty,
    but held. A second writer must refuse (the old lock guessed "stale" from the empty file)."""
    with lock_held_by_another_process(tmp_path / "run", writes_pid=False):
        result = run_cli("train", write_config(training={"max_steps": 5}), "--run-dir", tmp_path / "run")
        result.clean_error("is in use by process")
        assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_two_writers_started_together_one_trains_and_the_other_names_it(tmp_path, write_config):
    """20 times, two `seqtool train` processes on one run directory at the same instant: exactly
    one trains, the other exits 2 naming the holder's PID (an empty lock file just created is
    not taken for a stale one). The processes fork from a server that has imported seqtool and
    torch once (`seqtool.testing.SeqtoolProcess`), so each race costs the training, not two
    interpreter start-ups, and wait on a barrier so that neither finds the other's run finished."""
    import multiprocessing

    config = write_config(training={"max_steps": 2, "eval_every": 2})
    for trial in range(20):
        run = tmp_path / f"run{trial}"
        argv = ["train", str(config), "--run-dir", str(run)]
        start = multiprocessing.get_context("forkserver").Barrier(2)
        processes = [SeqtoolProcess(argv, tmp_path / f"err{trial}-{n}", start) for n in range(2)]
        results = [(p.wait(), p.stderr(), p.pid) for p in processes]
        assert sorted(code for code, _, _ in results) == [0, 2], (trial, results)
        (winner,) = [pid for code, _, pid in results if code == 0]
        (refusal,) = [err for code, err, _ in results if code == 2]
        assert f"in use by process {winner}" in refusal and refusal.count("Error:") == 1, (trial, refusal)
        assert (run / "last.pt").is_file()


def test_lock_is_released_after_a_failure(tmp_path):
    with pytest.raises(RuntimeError), run_dir_lock(tmp_path / "run") as lock:
        assert lock.read_text().split()[1] == str(os.getpid())
        raise RuntimeError("boom")
    assert not (tmp_path / ".run.lock").exists()


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")])
def test_full_or_read_only_disk_keeps_the_previous_checkpoint(tmp_path, corpus, monkeypatch, code, words):
    config = build_config(tiny_config(corpus, training={"max_steps": 30}), "test")
    real_replace = os.replace
    calls = {"n": 0}

    def failing_replace(source, target):
        calls["n"] += 1
        if calls["n"] > 4:  # config.yaml, run.json, then last.pt and best.pt at step 10 succeed
            raise OSError(code, os.strerror(code))
        return real_replace(source, target)

    monkeypatch.setattr(checkpoint_module.os, "replace", failing_replace)
    with pytest.raises(
        SeqtoolError, match=f"could not write checkpoint .*last.pt: {words}; the previous checkpoint is unchanged"
    ):
        train(config, tmp_path / "run")
    monkeypatch.setattr(checkpoint_module.os, "replace", real_replace)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["train_state"]["step"] == 10
    assert not list((tmp_path / "run").glob("*.seqtool-tmp"))  # no temporary file left behind


def test_sigterm_saves_and_exits_143(tmp_path, write_config, run_cli, monkeypatch):
    interrupt_on_call(monkeypatch, LanguageModelTask, "training_loss", 7, send_signal(signal.SIGTERM))
    result = run_cli("train", write_config(training={"max_steps": 30}), "--run-dir", tmp_path / "run")
    assert result.code == 143, result
    assert load_checkpoint(tmp_path / "run" / "last.pt")["train_state"]["step"] == 7


def test_run_record_and_torch_version_warning(tmp_path, write_config, run_cli, monkeypatch):
    run = tmp_path / "run"
    assert run_cli("train", write_config(training={"max_steps": 5}), "--run-dir", run).code == 0
    assert (
        run_cli("train", write_config(training={"max_steps": 5}), "training.max_steps=8", "--run-dir", run, "--resume").code == 0
    )
    sessions = json.loads((run / "run.json").read_text())["sessions"]
    assert len(sessions) == 2 and sessions[1]["resumed_at_step"] == 5
    first = sessions[0]
    assert first["torch_version"] == str(torch.__version__) and first["seed"] == 7 and first["device"] == "cpu"
    assert first["command"].startswith("seqtool train ") and "--run-dir" in first["command"]
    assert run_cli("evaluate", run).err == ""
    monkeypatch.setattr(torch, "__version__", "9.9.0")
    warned = run_cli("evaluate", run)
    assert warned.code == 0 and "trained with torch 2." in warned.err and "9.9.0" in warned.err


def test_resume_of_a_run_that_died_before_its_first_checkpoint_starts_fresh(tmp_path, write_config, run_cli):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("task: language_model\n")  # what a process killed during start-up leaves
    (run / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 9.9}\n')
    result = run_cli("train", write_config(training={"max_steps": 5}), "--run-dir", run, "--resume")
    assert result.code == 0, result
    assert "no checkpoint yet" in result.out and "starting from scratch" in result.out
    assert load_checkpoint(run / "last.pt")["train_state"]["step"] == 5
    assert '"loss": 9.9' not in (run / "metrics.jsonl").read_text()  # the dead run's partial log is gone


def test_csv_metrics_sink_follows_the_jsonl_through_a_resume(tmp_path, corpus, monkeypatch):
    config = build_config(tiny_config(corpus, training={"max_steps": 30, "log": ["jsonl", "csv"]}), "test")
    crash_and_resume(monkeypatch, LanguageModelTask, config, tmp_path / "run", crash_at=25)
    import pandas as pd

    table = pd.read_csv(tmp_path / "run" / "metrics.csv")
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = table[table["metric"] == "loss"]
    assert list(losses["step"]) == [e["step"] for e in events]  # one loss row per event, none duplicated
    assert losses["value"].tolist() == pytest.approx([e["loss"] for e in events])


def test_tensorboard_sink_without_the_package_says_how_to_install(tmp_path, corpus, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name == "tensorboard":
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    config = build_config(tiny_config(corpus, training={"log": ["jsonl", "tensorboard"]}), "test")
    with pytest.raises(SeqtoolError, match=r"pip install 'seqtool\[tensorboard\]'"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before any work


def test_a_checkpoint_of_an_earlier_format_resumes_and_a_newer_one_is_named(tmp_path, corpus, run_cli):
    """TrainState as checkpoints stored it before clipping, skipped batches and the NaN run were
    counted (seqtool's first release) resumes; fields only a newer release knows are one line."""
    from seqtool.checkpoint import LAST, save_checkpoint

    config = build_config(tiny_config(corpus, training={"max_steps": 6, "eval_every": 3}), "test")
    run = tmp_path / "run"
    train(config, run)
    payload = load_checkpoint(run / LAST)
    for field in ("clipped_since_log", "skipped_batches", "non_finite_in_a_row"):  # added after the first release
        del payload["train_state"][field]
    payload["train_state"].update(finished=False)
    save_checkpoint(run / LAST, payload)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_config(corpus, training={"max_steps": 8, "eval_every": 3})))
    run_cli("train", tmp_path / "c.yaml", "--run-dir", run, "--resume").ok()
    assert load_checkpoint(run / LAST)["train_state"]["step"] == 8
    payload = load_checkpoint(run / LAST)
    payload["train_state"]["ema_decay"] = 0.99  # a field a newer seqtool might add
    save_checkpoint(run / LAST, payload)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_config(corpus, training={"max_steps": 10, "eval_every": 3})))
    run_cli("train", tmp_path / "c.yaml", "--run-dir", run, "--resume").clean_error("ema_decay", "newer release")


def test_deterministic_algorithms_are_on_while_training_asks_for_them_and_off_after(tmp_path, corpus, monkeypatch):
    seen = []
    original = LanguageModelTask.training_loss

    def spy(self, *args, **kwargs):
        seen.append((torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LanguageModelTask, "training_loss", spy)
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    config = build_config(tiny_config(corpus, training={"max_steps": 3, "deterministic": True}), "test")
    train(config, tmp_path / "run")
    assert seen == [(True, True)] * 3
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == workspace  # the process's environment as it was


def test_bf16_where_it_cannot_run_is_said_and_the_mps_generator_is_saved(monkeypatch):
    from seqtool import runtime

    assert (
        runtime.precision_note(torch.device("mps"), "bf16")
        == "training.precision: bf16 has no autocast on mps here; training in fp32"
    )
    assert (
        runtime.precision_note(torch.device("cpu"), "bf16") is None
        and runtime.precision_note(torch.device("mps"), "fp32") is None
    )
    stored = {}
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda: torch.tensor([7], dtype=torch.uint8))
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda state: stored.update(mps=state))
    state = runtime.rng_state()
    assert torch.equal(state["mps"], torch.tensor([7], dtype=torch.uint8))
    runtime.restore_rng(state)
    assert torch.equal(stored["mps"], torch.tensor([7], dtype=torch.uint8))


def test_the_nan_guard_waits_for_the_device_only_at_log_lines_and_checkpoints(tmp_path, corpus, monkeypatch):
    """With on_nan: stop, a training step asks the device nothing (the guard's answer was read
    in Python every step: on a GPU, a wait per step); a non-finite step is still found, by its
    step number, before any log line or checkpoint."""
    from seqtool.trainer import Trainer

    asked, in_step = [], []
    real_bool, real_step = torch.Tensor.__bool__, Trainer.step

    def spy_bool(self):
        if in_step:
            asked.append(1)
        return real_bool(self)

    def spy_step(self):
        in_step.append(1)
        try:
            return real_step(self)
        finally:
            in_step.clear()

    monkeypatch.setattr(torch.Tensor, "__bool__", spy_bool)
    monkeypatch.setattr(Trainer, "step", spy_step)
    train(build_config(tiny_config(corpus, training={"max_steps": 12}), "test"), tmp_path / "run")
    assert not asked, f"{len(asked)} waits for the device inside training steps"
    poison(monkeypatch, {7})  # step 7's loss is NaN: found at the log line of step 10, named as step 7
    with pytest.raises(SeqtoolError, match="training diverged at step 7: the loss is nan"):
        train(build_config(tiny_config(corpus, training={"max_steps": 12, "eval_every": 5}), "test"), tmp_path / "nan")
    assert load_checkpoint(tmp_path / "nan" / "last.pt")["train_state"]["step"] == 5  # the checkpoint before it, kept
