"""Truncated BPTT batches, carried state, metrics and baselines of the language-model task."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, tiny_config

from seqtool.configure import build_config, config_from_dict
from seqtool.distributed import Cluster
from seqtool.engine import load_trained, train
from seqtool.metrics import MetricsLog
from seqtool.tasks.language_model import LanguageModelTask
from seqtool.tasks.language_model.config import STATE_RESET_DEFAULT


@pytest.fixture
def task(corpus):
    config = build_config(tiny_config(corpus, training={"batch_size": 4, "seq_len": 16}), "test")
    task = LanguageModelTask(config)
    task.load_training_data()
    return task


def test_training_batches_are_consecutive_windows_of_each_row(task):
    rows = task.train_rows
    assert rows.shape[0] == 4 and task.steps_per_epoch() == (rows.shape[1] - 1) // 16
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, tokens, state, targets):
            seen.append(tokens.clone())
            return torch.zeros((), requires_grad=True), torch.zeros(1, 4, 1)

    recorder = Recorder()
    task.start_epoch(0)
    task.training_loss(recorder, 0, torch.device("cpu"))
    task.training_loss(recorder, 1, torch.device("cpu"))
    assert seen[0].shape == (4, 16)  # (batch, seq_len)
    assert seen[0][:, 0].tolist() == rows[:, 0].tolist()
    assert seen[1][:, 0].tolist() == rows[:, 16].tolist()  # row r continues where it stopped


def test_hidden_state_is_carried_detached_and_reset_each_epoch(task):
    model = task.build_model()
    task.start_epoch(0)
    assert task.carried is None
    task.training_loss(model, 0, torch.device("cpu")).backward()
    h, _ = task.carried
    assert h.shape == (2, 4, 32) and not h.requires_grad and h.abs().sum() > 0
    task.start_epoch(1)
    assert task.carried is None


def test_some_rows_restart_from_a_zero_state_the_same_rows_in_any_number_of_processes(corpus):
    """Without resets a carried state is zero once an epoch, and the model never learns to read a
    fresh prompt (benchmarks/fresh_state.py). The rows come from (seed, epoch, batch), so a resumed
    run and two processes holding half the rows each reset the same ones as one process."""

    def carried_after_reset(rank: int, world_size: int, epoch: int, batch: int) -> torch.Tensor:
        values = tiny_config(corpus, training={"batch_size": 8, "seq_len": 16, "state_reset": 0.5})
        task = LanguageModelTask(build_config(values, "test"), cluster=Cluster(rank=rank, world_size=world_size))
        task.train_rows = np.zeros((8 // world_size, 100), dtype=np.uint8)  # this process's share of the rows
        task.start_epoch(epoch)
        task.carried = (torch.ones(2, 8 // world_size, 3), torch.ones(2, 8 // world_size, 3))
        h, c = task._reset_some_rows(batch)
        assert torch.equal(h, c) and set(h.unique().tolist()) <= {0.0, 1.0}
        return h[0, :, 0]

    single = carried_after_reset(0, 1, epoch=1, batch=5)
    assert 0 < single.sum() < 8  # some rows kept, some restarted
    assert torch.equal(torch.cat([carried_after_reset(r, 2, epoch=1, batch=5) for r in (0, 1)]), single)
    assert torch.equal(carried_after_reset(0, 1, epoch=1, batch=5), single)  # the same on a rerun or resume
    others = [carried_after_reset(0, 1, epoch=e, batch=b) for e, b in ((1, 6), (2, 5), (0, 0))]
    assert any(not torch.equal(kept, single) for kept in others)  # and other rows at other batches


def test_a_stored_config_from_before_state_resets_keeps_training_without_them(corpus):
    stored = tiny_config(corpus)
    assert "state_reset" not in stored["training"]
    assert config_from_dict(stored).training.state_reset == 0.0  # how that run was trained
    assert build_config(stored, "new config").training.state_reset == STATE_RESET_DEFAULT > 0


def test_unigram_baseline_is_the_cross_entropy_of_smoothed_training_frequencies(task):
    rows = np.array([[3, 1, 1], [3, 2, 1]], dtype=np.uint8)  # the first column is context, not scored
    counts = np.asarray(task.vocabulary.counts, dtype=float) + 1
    p = counts / counts.sum()
    expected = -(3 * math.log(p[1]) + math.log(p[2])) / 4
    assert task._unigram_loss(rows) == pytest.approx(expected)


def test_evaluation_metrics_are_consistent(task):
    metrics = task.evaluate(task.build_model(), "val", torch.device("cpu"))
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert metrics["bits_per_char"] == pytest.approx(metrics["loss"] / math.log(2))
    assert abs(metrics["loss"] - math.log(len(task.vocabulary))) < 0.5  # untrained: about uniform


def test_bf16_autocast_trains_on_cpu(tmp_path, corpus):
    """bf16 really runs (its losses are not fp32's, bit for bit) and learns as fp32 does."""
    losses = {}
    for precision in ("fp32", "bf16"):
        config = build_config(tiny_config(corpus, training={"max_steps": 10, "precision": precision}), "test")
        result = train(config, tmp_path / precision)
        losses[precision] = [e.loss for e in MetricsLog(tmp_path / precision).read() if e.split == "train"]
        assert result.state.best_val_loss is not None and math.isfinite(result.state.best_val_loss)
    assert losses["bf16"] != losses["fp32"], "precision: bf16 trained exactly as fp32: autocast did not run"
    assert losses["bf16"][-1] < losses["bf16"][0] and abs(losses["bf16"][-1] - losses["fp32"][-1]) < 0.1


def test_adaptive_softmax_word_model_learns_round_trips_and_generates(tmp_path, corpus, write_config, run_cli):
    config = write_config(
        data={"tokenizer": "word"},
        model={"output": "adaptive"},
        training={"max_steps": 60, "eval_every": 30, "seq_len": 8},
    )
    assert run_cli("train", config, "--run-dir", tmp_path / "run").code == 0
    result = run_cli("evaluate", tmp_path / "run", "--json")
    assert result.code == 0, result
    metrics = json.loads(result.out)
    assert metrics["loss"] < 0.8 * metrics["unigram_loss"]  # it learnt the grammar, not just frequencies
    _, model, _ = load_trained(tmp_path / "run")
    assert model.adaptive is not None and model.head is None
    again = run_cli("evaluate", tmp_path / "run", "--json")
    assert json.loads(again.out)["loss"] == metrics["loss"]
    generated = run_cli("predict", tmp_path / "run", "--prompt", "ROMEO :", "--length", "12", "--seed", "1")
    assert generated.code == 0 and generated.out.startswith("ROMEO :"), generated
    assert {"the", "cat", "sees"} & set(generated.out.split()[2:]), generated  # words of the corpus follow


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"model": {"output": "adaptive", "tie_weights": True, "embedding_size": 32}}, "model.tie_weights"),
        ({"model": {"output": "sampled"}}, "model.output"),
    ],
)
def test_adaptive_softmax_config_errors(write_config, run_cli, tmp_path, sections, message):
    assert_clean_error(run_cli("train", write_config(**sections), "--run-dir", tmp_path / "run"), message)
    assert not (tmp_path / "run").exists()


def test_generation_steps_record_no_autograd_graph(task, monkeypatch):
    """`generate` returns its loop unstarted, so the loop needs its own no_grad: a step that
    records a graph through the weights costs a quarter of a char model's generation speed."""
    from seqtool.tasks.language_model.sampling import CellStepper

    model = task.build_model().eval()
    grad_enabled = []
    original = CellStepper.step

    def spy(self, token_ids, layer_states):
        grad_enabled.append(torch.is_grad_enabled())
        return original(self, token_ids, layer_states)

    monkeypatch.setattr(CellStepper, "step", spy)
    assert torch.is_grad_enabled()  # iterated where gradients are on, as the CLI does
    text = "".join(task.generate(model, "ROMEO:", 5, 1.0, None, torch.Generator().manual_seed(0))[0])
    assert len(text) == 5 and grad_enabled == [False] * 5
