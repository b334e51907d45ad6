"""The training loop: it learns, it is deterministic, and a resumed run equals an uninterrupted one."""

import json
import signal

import pytest
import torch
from conftest import interrupt_on_call, raise_error, send_signal, tiny_config

from seqtool.checkpoint import load_checkpoint
from seqtool.configure import build_config
from seqtool.engine import train
from seqtool.errors import SeqtoolError
from seqtool.runtime import learning_rate
from seqtool.schema import TrainingConfig
from seqtool.tasks import to_device
from seqtool.tasks.language_model import LanguageModelTask


def curve(run_dir):
    """The loss curve without wall-clock fields."""
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(e["step"], e["split"], e["loss"], e["lr"]) for e in events]


def final_weights(run_dir):
    return load_checkpoint(run_dir / "last.pt")["model"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_trained_model_beats_the_unigram_baseline(tmp_path, write_config, run_cli):
    result = run_cli("train", write_config(training={"max_steps": 80}), "--run-dir", tmp_path / "run")
    assert result.code == 0, result
    metrics = json.loads(run_cli("evaluate", tmp_path / "run", "--json").out)
    assert metrics["loss"] < 0.7 * metrics["unigram_loss"], metrics


def test_same_seed_gives_an_identical_loss_curve(tmp_path, write_config, run_cli):
    config = write_config(training={"max_steps": 20})
    assert run_cli("train", config, "--run-dir", tmp_path / "a").code == 0
    assert run_cli("train", config, "--run-dir", tmp_path / "b").code == 0
    assert curve(tmp_path / "a") == curve(tmp_path / "b")
    assert same_weights(final_weights(tmp_path / "a"), final_weights(tmp_path / "b"))
    other = write_config("other.yaml", training={"max_steps": 20}, model={"dropout": 0.1})
    other_text = other.read_text().replace("seed: 7", "seed: 8")
    other.write_text(other_text)
    assert run_cli("train", other, "--run-dir", tmp_path / "c").code == 0
    assert curve(tmp_path / "a") != curve(tmp_path / "c")


def test_ctrl_c_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(tmp_path, write_config, run_cli, monkeypatch):
    config = write_config(training={"max_steps": 40})
    assert run_cli("train", config, "--run-dir", tmp_path / "full").code == 0

    original = LanguageModelTask.training_loss
    interrupt_on_call(monkeypatch, LanguageModelTask, "training_loss", 17, send_signal(signal.SIGINT))  # Ctrl-C at step 17
    stopped = run_cli("train", config, "--run-dir", tmp_path / "cut")
    assert stopped.code == 130, stopped
    assert f"--run-dir {tmp_path / 'cut'} --resume" in stopped.err  # the exact command to continue
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["train_state"]["step"] == 17
    monkeypatch.setattr(LanguageModelTask, "training_loss", original)

    resumed = run_cli("train", config, "--run-dir", tmp_path / "cut", "--resume")
    assert resumed.code == 0, resumed
    assert "Resuming" in resumed.out and "step 17" in resumed.out
    assert curve(tmp_path / "cut") == curve(tmp_path / "full")
    assert same_weights(final_weights(tmp_path / "cut"), final_weights(tmp_path / "full"))


def test_crash_after_a_periodic_checkpoint_resumes_exactly(tmp_path, corpus, monkeypatch):
    config = build_config(tiny_config(corpus, training={"max_steps": 30}), "test")
    train(config, tmp_path / "full")

    original = LanguageModelTask.training_loss
    interrupt_on_call(
        monkeypatch, LanguageModelTask, "training_loss", 25, raise_error(MemoryError("simulated crash between checkpoints"))
    )
    with pytest.raises(MemoryError):
        train(config, tmp_path / "cut")
    monkeypatch.setattr(LanguageModelTask, "training_loss", original)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["train_state"]["step"] == 20  # last periodic checkpoint

    train(config, tmp_path / "cut", resume=True)
    assert curve(tmp_path / "cut") == curve(tmp_path / "full")
    assert same_weights(final_weights(tmp_path / "cut"), final_weights(tmp_path / "full"))


def test_resume_of_a_finished_run_says_so_and_more_budget_continues(tmp_path, write_config, run_cli):
    config = write_config(training={"max_steps": 10})
    assert run_cli("train", config, "--run-dir", tmp_path / "run").code == 0
    again = run_cli("train", config, "--run-dir", tmp_path / "run", "--resume")
    assert again.code == 0 and "already finished" in again.out
    more = run_cli("train", config, "training.max_steps=20", "--run-dir", tmp_path / "run", "--resume")
    assert more.code == 0, more
    assert load_checkpoint(tmp_path / "run" / "last.pt")["train_state"]["step"] == 20


def test_resume_refuses_a_changed_model(tmp_path, write_config, run_cli):
    config = write_config(training={"max_steps": 10})
    assert run_cli("train", config, "--run-dir", tmp_path / "run").code == 0
    result = run_cli("train", config, "model.hidden_size=64", "--run-dir", tmp_path / "run", "--resume")
    assert result.code == 2 and "model.hidden_size: 32 -> 64" in result.err and "--init-from" in result.err


def test_init_from_starts_a_new_run_from_old_weights(tmp_path, write_config, run_cli):
    config = write_config(training={"max_steps": 40})
    assert run_cli("train", config, "--run-dir", tmp_path / "source").code == 0
    source_val = json.loads(run_cli("evaluate", tmp_path / "source", "--json").out)["loss"]
    short = write_config("short.yaml", training={"max_steps": 1, "eval_every": 1, "lr": 1e-6, "warmup_steps": 0})
    result = run_cli("train", short, "--run-dir", tmp_path / "warm", "--init-from", tmp_path / "source")
    assert result.code == 0, result
    assert "initialised from the weights" in result.out
    state = load_checkpoint(tmp_path / "warm" / "last.pt")["train_state"]
    assert state["step"] == 1  # a new run: the step count starts again
    assert state["best_val_loss"] == pytest.approx(source_val, abs=0.01)
    assert run_cli("train", short, "--run-dir", tmp_path / "cold").code == 0
    assert load_checkpoint(tmp_path / "cold" / "last.pt")["train_state"]["best_val_loss"] > source_val + 0.5


def test_early_stopping_stops_after_patience_evaluations(tmp_path, corpus, monkeypatch):
    monkeypatch.setattr(LanguageModelTask, "evaluate", lambda self, *a, **k: {"loss": 1.0})
    config = build_config(tiny_config(corpus, training={"max_steps": 100, "eval_every": 5, "early_stopping_patience": 2}), "test")
    result = train(config, tmp_path / "run")
    assert result.state.step == 15  # best at 5, no improvement at 10 and 15
    assert "early stopping" in result.state.stop_reason


def test_learning_rate_schedule():
    training = TrainingConfig(lr=1.0, warmup_steps=10, scheduler="cosine", max_steps=110, epochs=None)
    assert learning_rate(training, 0, 0.0, 110) == pytest.approx(0.1)
    assert learning_rate(training, 9, 0.0, 110) == pytest.approx(1.0)
    assert learning_rate(training, 10, 0.0, 110) == pytest.approx(1.0)
    assert learning_rate(training, 60, 0.0, 110) == pytest.approx(0.5)
    assert learning_rate(training, 110, 0.0, 110) == pytest.approx(0.0)
    timed = TrainingConfig(lr=1.0, scheduler="linear", max_time="100s", epochs=None)
    assert learning_rate(timed, 5, 25.0, None) == pytest.approx(0.75)


def test_metrics_and_run_directory_contract(tmp_path, write_config, run_cli):
    assert run_cli("train", write_config(training={"max_steps": 12, "eval_every": 6}), "--run-dir", tmp_path / "run").code == 0
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "best.pt", "last.pt", "summary.txt", "summary.json"):
        assert (run / name).is_file(), name
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {e["split"] for e in events} == {"train", "val"}
    for event in events:
        assert {"step", "epoch", "split", "loss", "lr", "elapsed_s"} <= event.keys()
    assert "max_steps reached" in (run / "summary.txt").read_text()


def test_a_failing_torch_compile_is_one_clear_error(tmp_path, corpus, monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed

    def fails(module, **kwargs):
        def call(*args, **kw):
            raise BackendCompilerFailed(lambda *a: None, RuntimeError("Compiler: cc not found"), None)

        return call

    monkeypatch.setattr(torch, "compile", fails)
    config = build_config(tiny_config(corpus, training={"compile": True}), "test")
    with pytest.raises(SeqtoolError, match=r"training.compile: torch.compile failed .*set training.compile: false"):
        train(config, tmp_path / "run")


def test_batches_stay_where_they_are_on_the_cpu():
    batch = torch.arange(6)
    assert to_device(batch, torch.device("cpu")) is batch  # no copy on the host


@pytest.mark.slow
def test_compiled_training_computes_what_eager_training_does(tmp_path, corpus):
    losses = {}
    for compiled in (False, True):
        config = build_config(tiny_config(corpus, model={"dropout": 0.0}, training={"compile": compiled, "max_steps": 12}), "t")
        result = train(config, tmp_path / f"run-{compiled}")
        losses[compiled] = (result.state.last_train_loss, result.state.best_val_loss)
        assert set(load_checkpoint(tmp_path / f"run-{compiled}" / "last.pt")["model"]) == set(
            load_checkpoint(tmp_path / "run-False" / "last.pt")["model"]
        )  # plain parameter names: a compiled run's checkpoint loads anywhere
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_resuming_a_finished_run_removes_a_write_cut_short_at_its_end(tmp_path, write_config, run_cli):
    config = write_config(training={"max_steps": 6, "eval_every": 3})
    assert run_cli("train", config, "--run-dir", tmp_path / "run").code == 0
    leftover = tmp_path / "run" / ".summary.txt.x1y2z3.seqtool-tmp"  # killed while writing the summary
    leftover.write_text("half a summ")
    again = run_cli("train", config, "--run-dir", tmp_path / "run", "--resume")
    assert again.code == 0 and "already finished" in again.out
    assert not leftover.exists()
