"""training.ema_decay: the average of the weights is what is evaluated, saved and predicted with,
and a resumed run continues both the trained weights and the average exactly."""

import pytest
import torch
from conftest import interrupt_on_call, raise_error, tiny_config

from seqtool.averaging import TRAINING_WEIGHTS, WeightAverage
from seqtool.checkpoint import load_checkpoint
from seqtool.configure import build_config
from seqtool.engine import load_trained, train
from seqtool.runtime import score
from seqtool.tasks.language_model import LanguageModelTask


def test_the_average_follows_the_weights_by_the_warmed_up_decay():
    model = torch.nn.Linear(3, 2)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    average = WeightAverage(model, decay=0.9)
    expected = dict(start)
    for step in range(1, 40):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        average.update(model, step)
        decay = min(0.9, (1 + step) / (10 + step))
        expected = {name: decay * expected[name] + (1 - decay) * p.detach() for name, p in model.named_parameters()}
    trained = {name: p.detach().clone() for name, p in model.named_parameters()}
    with average.applied(model):
        for name, p in model.named_parameters():
            assert torch.allclose(p, expected[name], atol=1e-6)
    assert all(torch.equal(p, trained[name]) for name, p in model.named_parameters())  # restored after the block
    assert not torch.allclose(expected["weight"], trained["weight"])


def test_the_checkpoint_holds_the_average_to_predict_with_and_the_weights_to_resume(tmp_path, corpus):
    config = build_config(tiny_config(corpus, training={"max_steps": 30, "ema_decay": 0.9}), "test")
    train(config, tmp_path / "run")
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["model"].keys() == saved[TRAINING_WEIGHTS].keys()
    assert any(not torch.equal(saved["model"][k], saved[TRAINING_WEIGHTS][k]) for k in saved["model"])
    task, model, payload = load_trained(tmp_path / "run" / "last.pt")
    assert all(torch.equal(v, saved["model"][k]) for k, v in model.state_dict().items())  # predictions use the average
    assert score(task, model, "val", torch.device("cpu"))["loss"] == pytest.approx(payload["metrics"]["loss"], rel=1e-5)


def test_a_resumed_run_continues_the_average_exactly(tmp_path, corpus, monkeypatch):
    config = build_config(tiny_config(corpus, training={"max_steps": 30, "ema_decay": 0.95}), "test")
    train(config, tmp_path / "full")
    original = LanguageModelTask.training_loss
    interrupt_on_call(monkeypatch, LanguageModelTask, "training_loss", 25, raise_error(MemoryError("crash")))
    with pytest.raises(MemoryError):
        train(config, tmp_path / "cut")
    monkeypatch.setattr(LanguageModelTask, "training_loss", original)
    train(config, tmp_path / "cut", resume=True)
    full, cut = (load_checkpoint(tmp_path / name / "last.pt") for name in ("full", "cut"))
    for key in ("model", TRAINING_WEIGHTS):
        assert all(torch.equal(full[key][k], cut[key][k]) for k in full[key]), key
