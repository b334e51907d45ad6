"""`seqtool export`: each exported model is run here by its own runtime, fed only what the metadata
JSON says (tokenizer rules, vocabulary, scaler), and must reproduce what seqtool itself predicts."""

from __future__ import annotations

import importlib.util
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import FILLER, assert_clean_error, classify_config, forecast_config, memory_frame, sine_frame, tiny_config
from rich.console import Console

import seqtool
from seqtool.checkpoint import BEST
from seqtool.configure import build_config
from seqtool.engine import load_trained, train

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
# Only the ONNX round trips need onnxruntime: TorchScript and the error paths are tested without it.
HAS_ONNXRUNTIME = importlib.util.find_spec("onnxruntime") is not None
needs_onnxruntime = pytest.mark.skipif(not HAS_ONNXRUNTIME, reason="onnxruntime is not installed (pip install 'seqtool[export]')")
FORMAT, SUFFIX = ("onnx", "onnx") if HAS_ONNXRUNTIME else ("torchscript", "torchscript.pt")  # what the error tests export


def _train(folder, config: dict) -> str:
    train(build_config(config, "test"), folder / "run", console=Console(file=io.StringIO()))
    return folder / "run"


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    from conftest import make_corpus

    folder = tmp_path_factory.mktemp("lm")
    (folder / "corpus.txt").write_text(make_corpus(), encoding="utf-8")
    return _train(folder, tiny_config(folder / "corpus.txt", training={"max_steps": 30}))


def _session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@needs_onnxruntime
def test_language_model_steps_token_by_token_and_generates_what_seqtool_generates(tmp_path, run_cli, lm_run):
    out = tmp_path / "lm.onnx"
    result = run_cli("export", lm_run, "--output", out)
    assert result.code == 0, result
    assert "max abs difference from PyTorch" in result.out and "h_in" in result.out
    meta = json.loads((tmp_path / "lm.onnx.json").read_text())
    assert meta["task"] == "language_model" and meta["format"] == "onnx" and meta["check"]["max_abs_diff"] <= 1e-4
    assert [spec["name"] for spec in meta["inputs"]] == ["tokens", "h_in", "c_in"]
    assert [spec["name"] for spec in meta["outputs"]] == ["logits", "h_out", "c_out"]

    session = _session(out)
    vocabulary = meta["vocabulary"]
    ids = {token: i for i, token in enumerate(vocabulary["tokens"])}
    layers, hidden = meta["model"]["num_layers"], meta["model"]["hidden_size"]
    prompt = "ROMEO:\nthe cat"
    tokens = np.array([[ids.get(ch, vocabulary["unknown_id"]) for ch in prompt]], dtype=np.int64)
    zeros = np.zeros((layers, 1, hidden), dtype=np.float32)

    # The whole prompt in one call equals feeding it one token at a time with the state carried.
    whole, h, c = session.run(None, {"tokens": tokens, "h_in": zeros, "c_in": zeros})
    h_step, c_step = zeros, zeros
    for t in range(tokens.shape[1]):
        step, h_step, c_step = session.run(None, {"tokens": tokens[:, t : t + 1], "h_in": h_step, "c_in": c_step})
        np.testing.assert_allclose(step[:, 0], whole[:, t], atol=1e-5)
    np.testing.assert_allclose(h_step, h, atol=1e-5)

    # It is seqtool's model: same logits, and greedy decoding writes what `seqtool predict` writes.
    _, model, _ = load_trained(lm_run)
    with torch.no_grad():
        expected, _ = model(torch.from_numpy(tokens))
    np.testing.assert_allclose(whole, expected.numpy(), atol=1e-4)
    generated, last = [], whole[:, -1]
    for _ in range(40):
        token = int(last.argmax())
        generated.append(vocabulary["tokens"][token])
        last, h, c = session.run(None, {"tokens": np.array([[token]], dtype=np.int64), "h_in": h, "c_in": c})
        last = last[:, 0]
    assert seqtool.load(lm_run).predict(prompt=prompt, length=40, temperature=0) == prompt + "".join(generated)


def test_torchscript_export_of_a_word_level_gru_with_adaptive_softmax(tmp_path, run_cli, corpus):
    config = tiny_config(
        corpus, data={"tokenizer": "word"}, model={"type": "gru", "output": "adaptive"}, training={"max_steps": 8}
    )
    run = _train(tmp_path, config)
    result = run_cli("export", run, "--format", "torchscript")
    assert result.code == 0, result
    path = run / "model.torchscript.pt"
    meta = json.loads((run / "model.torchscript.pt.json").read_text())
    assert [spec["name"] for spec in meta["outputs"]] == ["log_probs", "h_out"]  # a GRU has no cell state
    assert meta["vocabulary"]["detokenize"].startswith("join with single spaces")
    pattern = re.compile(meta["vocabulary"]["token_pattern"])
    ids = {token: i for i, token in enumerate(meta["vocabulary"]["tokens"])}
    tokens = torch.tensor([[ids.get(t, 0) for t in pattern.findall("JULIET:\nthe night fears a kiss.")]])
    loaded = torch.jit.load(str(path))
    h0 = torch.zeros(meta["model"]["num_layers"], 1, meta["model"]["hidden_size"])
    log_probs, h = loaded(tokens, h0)
    _, model, _ = load_trained(run)
    with torch.no_grad():
        expected, state = model(tokens)
    torch.testing.assert_close(log_probs, expected)
    torch.testing.assert_close(h, state)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(1, tokens.shape[1]), atol=1e-5)


@pytest.mark.parametrize("loss", ["mse", "gaussian_nll", "quantile"])
@needs_onnxruntime
def test_forecaster_from_the_metadata_alone_matches_seqtool_predict(tmp_path, run_cli, loss):
    sine_frame().to_csv(tmp_path / "sine.csv", index=False)
    run = _train(tmp_path, forecast_config(tmp_path / "sine.csv", training={"epochs": 3, "loss": loss}))
    out = tmp_path / "fc.onnx"
    assert run_cli("export", run, "--output", out).code == 0
    meta = json.loads((tmp_path / "fc.onnx.json").read_text())
    assert meta["columns"] == ["Value"] and meta["horizon"] == 10 and meta["context_length"] == 40

    # A deployment's recipe: scale the last context_length rows, run, unscale the targets.
    scaler = meta["scaler"]
    shift, scale = np.array(scaler["shift"]), np.array(scaler["scale"])
    rows = pd.read_csv(tmp_path / "sine.csv")[meta["columns"]].to_numpy()[-meta["context_length"] :]
    context = ((rows - shift) / scale).astype(np.float32)[None]
    names = [spec["name"] for spec in meta["outputs"]]
    produced = dict(zip(names, _session(out).run(None, {"context": context}), strict=True))
    k = len(meta["targets"])
    forecast = produced["forecast"][0] * scale[:k] + shift[:k]  # (horizon, targets)

    expected = seqtool.load(run).predict(data=tmp_path / "sine.csv")
    np.testing.assert_allclose(forecast[:, 0], expected["Value"], rtol=1e-5, atol=1e-4)
    if loss != "mse":
        assert names == ["forecast", "lower", "upper"] and meta["interval_level"] == pytest.approx(0.8)
        np.testing.assert_allclose(
            produced["lower"][0, :, 0] * scale[0] + shift[0], expected["Value_lower"], rtol=1e-5, atol=1e-4
        )
        np.testing.assert_allclose(
            produced["upper"][0, :, 0] * scale[0] + shift[0], expected["Value_upper"], rtol=1e-5, atol=1e-4
        )
    else:
        assert names == ["forecast"]
    # The training data's last window travels in the metadata, scaled, like in the checkpoint.
    np.testing.assert_allclose(np.array(meta["last_context"]), context[0], atol=1e-6)


def _encode_from_metadata(meta: dict, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    vocabulary = meta["vocabulary"]
    pattern = re.compile(vocabulary["token_pattern"])
    ids = {token: i for i, token in enumerate(vocabulary["tokens"])}
    encoded = [
        [ids.get(t, vocabulary["unknown_id"]) for t in pattern.findall(text.lower() if vocabulary["lowercase"] else text)]
        for text in texts
    ]
    encoded = [row[: meta["max_length"]] for row in encoded]
    lengths = np.array([len(row) for row in encoded], dtype=np.int64)
    tokens = np.zeros((len(encoded), lengths.max()), dtype=np.int64)
    for i, row in enumerate(encoded):
        tokens[i, : len(row)] = row
    return tokens, lengths


@pytest.mark.parametrize(
    ("fmt", "model"),
    [
        pytest.param("onnx", {"bidirectional": True, "num_layers": 2, "pooling": "last"}, marks=needs_onnxruntime),
        ("torchscript", {"type": "gru", "bidirectional": True, "num_layers": 2, "pooling": "mean"}),
        pytest.param("onnx", {"type": "rnn", "pooling": "max"}, marks=needs_onnxruntime),
    ],
)
def test_classifier_on_padded_batches_matches_seqtool_on_packed_ones(tmp_path, run_cli, fmt, model):
    memory_frame(rows=300).to_csv(tmp_path / "texts.csv", index=False)
    run = _train(tmp_path, classify_config(tmp_path / "texts.csv", model=model, training={"epochs": 2}))
    out = tmp_path / ("cls.onnx" if fmt == "onnx" else "cls.pt")
    assert run_cli("export", run, "--format", fmt, "--output", out).code == 0
    meta = json.loads(out.with_name(out.name + ".json").read_text())
    assert meta["labels"] == ["neg", "pos"]
    rng = np.random.default_rng(1)
    texts = ["Good, " + " ".join(rng.choice(FILLER, n)) for n in (0, 3, 30)] + ["bad " + " ".join(FILLER), "Unheard-of words!"]
    tokens, lengths = _encode_from_metadata(meta, texts)
    if fmt == "onnx":
        logits, probabilities = _session(out).run(None, {"tokens": tokens, "lengths": lengths})
    else:
        logits, probabilities = (t.numpy() for t in torch.jit.load(str(out))(torch.from_numpy(tokens), torch.from_numpy(lengths)))
    expected = seqtool.load(run).predict(texts)
    assert [meta["labels"][i] for i in probabilities.argmax(axis=1)] == [label for label, _ in expected]
    np.testing.assert_allclose(probabilities.max(axis=1), [p for _, p in expected], atol=1e-5)
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), probabilities, atol=1e-6)


def test_export_errors_are_one_line_and_leave_files_alone(tmp_path, run_cli, lm_run, monkeypatch):
    import seqtool.export

    assert_clean_error(run_cli("export", lm_run, "--format", "tflite"), "--format", "tflite")
    assert_clean_error(run_cli("export", tmp_path / "nowhere"), "not found")
    assert_clean_error(run_cli("export", lm_run, "--format", FORMAT, "--output", tmp_path / "no" / "m.onnx"), "does not exist")

    checkpoint = lm_run / BEST
    before = checkpoint.read_bytes()
    assert_clean_error(
        run_cli("export", lm_run, "--format", FORMAT, "--output", checkpoint, "--force"), "is a seqtool checkpoint"
    )
    assert checkpoint.read_bytes() == before

    folder = tmp_path / "exports"
    folder.mkdir()
    assert run_cli("export", lm_run, "--format", FORMAT, "--output", folder).code == 0  # a folder gets model.<suffix> inside
    assert sorted(p.name for p in folder.iterdir()) == [f"model.{SUFFIX}", f"model.{SUFFIX}.json"]

    existing = tmp_path / f"m.{SUFFIX}"
    existing.write_text("keep me")
    assert_clean_error(run_cli("export", lm_run, "--format", FORMAT, "--output", existing), "exists", "--force")
    assert existing.read_text() == "keep me"

    # A failed check writes nothing (the limit set below any possible difference).
    monkeypatch.setattr(seqtool.export, "TOLERANCE", -1.0)
    assert_clean_error(
        run_cli("export", lm_run, "--format", FORMAT, "--output", tmp_path / f"bad.{SUFFIX}"),
        "differs from PyTorch",
        "nothing was written",
    )
    assert not (tmp_path / f"bad.{SUFFIX}").exists() and not (tmp_path / f"bad.{SUFFIX}.json").exists()
    monkeypatch.undo()

    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    assert_clean_error(run_cli("export", lm_run, "--output", tmp_path / "x.onnx"), "onnxruntime", "seqtool[export]")
    monkeypatch.undo()

    config = tmp_path / "adding.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "long_range",
                "data": {"synthetic": "adding", "length": 5, "samples": 64},
                "model": {"hidden_size": 8, "num_layers": 1},
                "training": {"max_steps": 2, "batch_size": 16, "device": "cpu"},
            }
        )
    )
    assert run_cli("train", config, "--run-dir", tmp_path / "adding").code == 0
    assert_clean_error(run_cli("export", tmp_path / "adding", "--format", FORMAT), "long_range")


def test_a_new_folder_ending_in_a_slash_is_made_with_the_model_inside(tmp_path, run_cli, lm_run):
    folder = tmp_path / "deploy" / "v1"
    result = run_cli("export", lm_run, "--format", FORMAT, "--output", f"{folder}/")
    assert result.code == 0, result
    assert folder.is_dir() and (folder / f"model.{SUFFIX}").is_file() and (folder / f"model.{SUFFIX}.json").is_file()
    failed = run_cli("export", lm_run, "--format", "tflite", "--output", f"{tmp_path / 'never'}/")
    assert failed.code == 2 and not (tmp_path / "never").exists()  # nothing made before the checks pass


def test_a_bug_in_an_export_keeps_its_traceback_and_exporter_notices_are_logged(tmp_path, run_cli, lm_run, monkeypatch, caplog):
    """An exporter's failure is one line, but a KeyError is a bug and surfaces; the warnings the
    exporters give on every call are logged (shown with --debug), not thrown away."""
    import logging
    import warnings

    import seqtool.export

    real = torch.jit.trace

    def warns(*args, **kwargs):
        warnings.warn("a Python value was frozen into the trace", torch.jit.TracerWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.jit, "trace", warns)
    with caplog.at_level(logging.INFO, logger="seqtool.export"):
        run_cli("export", lm_run, "--format", "torchscript", "--output", tmp_path / "m.pt").ok()
    assert any("TracerWarning: a Python value was frozen" in record.getMessage() for record in caplog.records)
    monkeypatch.undo()

    def runtime_failure(*_):
        raise RuntimeError("the exporter could not trace this")

    monkeypatch.setattr(seqtool.export, "_torchscript_bytes", runtime_failure)
    assert_clean_error(run_cli("export", lm_run, "--format", "torchscript", "--output", tmp_path / "n.pt"), "could not trace")

    def bug(*_):
        raise KeyError("a missing signature field")

    monkeypatch.setattr(seqtool.export, "_torchscript_bytes", bug)
    with pytest.raises(KeyError):
        run_cli("export", lm_run, "--format", "torchscript", "--output", tmp_path / "o.pt")
