"""Text classification: data helpers, padding invariance, and the CLI end to end."""

import io
import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import FILLER, assert_clean_error, classify_config, memory_frame

from seqtool.api import load
from seqtool.data.text import UNK, Vocabulary
from seqtool.metrics import MetricsLog
from seqtool.models import SequenceModel
from seqtool.tasks.classify import table
from seqtool.tasks.classify.config import ClassifyModel


@pytest.fixture
def memory_csv(tmp_path):
    path = tmp_path / "memory.csv"
    memory_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def write_classify_config(tmp_path, memory_csv):
    def write(name="cls.yaml", path=None, **sections):
        file = tmp_path / name
        file.write_text(yaml.safe_dump(classify_config(path or memory_csv, **sections)))
        return file

    return write


def test_stratified_split_keeps_class_ratios():
    labels = np.array(["a"] * 900 + ["b"] * 100)
    train, val, test = table.stratified_split(labels, 0.1, 0.2, seed=0)
    assert len(train) + len(val) + len(test) == 1000 and not set(train) & set(val)
    assert (labels[val] == "b").sum() == 10 and (labels[val] == "a").sum() == 90
    assert (labels[test] == "b").sum() == 20 and (labels[train] == "b").sum() == 70


def test_tokenize_encode_and_unknown_words():
    texts = pd.Series(["Great film, GREAT cast!", "awful"])
    tokens = table.tokenize_column(texts, "word", lowercase=True)
    assert tokens[0] == ["great", "film", ",", "great", "cast", "!"]
    vocab = table.build_vocabulary(tokens, "word", min_freq=1)
    assert vocab.tokens[:2] == [UNK, "great"]
    ids, lengths, truncated = table.encode_column(
        table.tokenize_column(pd.Series(["great unseenword film", "cast"]), "word", True), vocab, 2
    )
    assert lengths.tolist() == [2, 1] and truncated == 1
    assert ids.tolist() == [[vocab.tokens.index("great"), 0], [vocab.tokens.index("cast"), 0]]  # unseenword -> <unk> (0)
    chars = table.tokenize_column(pd.Series(["Ab"]), "char", lowercase=False)
    assert chars[0] == ["A", "b"]


def test_vocabulary_from_counts_applies_min_freq():
    vocab = Vocabulary.from_counts("word", ["a", "b", "c"], [5, 1, 3], min_freq=2)
    assert vocab.tokens == [UNK, "a", "c"] and vocab.counts == [1, 5, 3]


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_never_changes_a_prediction(pooling, bidirectional):
    torch.manual_seed(0)
    config = ClassifyModel(
        type="lstm", hidden_size=16, num_layers=2, embedding_size=8, dropout=0.0, bidirectional=bidirectional, pooling=pooling
    )
    model = SequenceModel(config, output_size=3, vocab_size=20).eval()
    short = torch.tensor([[3, 5, 7]])
    batch = torch.zeros(3, 40, dtype=torch.long)
    batch[0, :40] = torch.randint(1, 20, (40,))
    batch[1, :3] = short[0]
    batch[2, :25] = torch.randint(1, 20, (25,))
    with torch.no_grad():
        alone = model.pooled_logits(short, torch.tensor([3]))
        among_long = model.pooled_logits(batch, torch.tensor([40, 3, 25]))
        batch[1, 3:] = 9  # garbage in the padding changes nothing either
        garbage = model.pooled_logits(batch, torch.tensor([40, 3, 25]))
    assert torch.allclose(alone[0], among_long[1], atol=1e-6)
    assert torch.allclose(among_long[1], garbage[1], atol=1e-6)


@pytest.fixture(scope="module")
def memory_run(tmp_path_factory):
    """One trained run shared by the tests that only read it (training is the slow part)."""
    from rich.console import Console

    from seqtool.configure import build_config
    from seqtool.engine import train

    folder = tmp_path_factory.mktemp("memory")
    path = folder / "memory.csv"
    memory_frame().to_csv(path, index=False)
    train(build_config(classify_config(path), "test"), folder / "run", console=Console(file=io.StringIO()))
    return folder / "run", path


def test_lstm_learns_a_word_early_in_a_long_sequence(tmp_path, run_cli, memory_run):
    run, memory_csv = memory_run
    result = run_cli("evaluate", run, "--json")
    metrics = json.loads(result.out)
    assert metrics["accuracy"] > 0.9 and metrics["majority_accuracy"] < 0.6, metrics
    assert {"macro_f1", "precision_pos", "recall_neg", "majority_macro_f1", "confusion/pos/neg"} <= metrics.keys()
    n_pos = (memory_frame()["sentiment"] == "pos").sum()
    assert metrics["confusion/pos/pos"] + metrics["confusion/pos/neg"] == round(0.2 * n_pos)  # stratified

    table_view = run_cli("evaluate", run)
    assert "Confusion matrix" in table_view.out and "majority" in table_view.out

    out = tmp_path / "preds.csv"
    assert run_cli("predict", run, "--data", memory_csv, "--output", out).code == 0
    predictions = pd.read_csv(out)
    assert list(predictions.columns) == ["review", "sentiment", "label", "prob_neg", "prob_pos"]
    assert np.allclose(predictions[["prob_neg", "prob_pos"]].sum(axis=1), 1.0, atol=1e-5)
    assert (predictions["label"] == predictions["sentiment"]).mean() > 0.9


def test_stdin_prediction_one_line_per_input_line(run_cli, monkeypatch, memory_run):
    run, _ = memory_run
    good, bad = "good " + " ".join(FILLER * 2), "bad " + " ".join(FILLER)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{good}\n\n   \n{bad}\n"))
    result = run_cli("predict", run)
    lines = result.out.split("\n")
    assert result.code == 0 and result.err == "" and len(lines) == 5 and lines[4] == ""  # 4 lines in, 4 out
    assert lines[0].startswith("pos\t") and lines[1:3] == ["", ""] and lines[3].startswith("neg\t")  # blank in, blank out
    probability = float(lines[0].split("\t")[1])
    ((label, expected),) = load(run).predict([good])
    assert label == "pos" and probability == pytest.approx(expected, abs=1e-4) and probability > 0.9


def test_integer_labels_and_three_classes_round_trip(tmp_path, run_cli):
    frame = memory_frame()
    frame["sentiment"] = np.where(frame["sentiment"] == "pos", 1, 0)
    frame.loc[::3, "sentiment"] = 2  # a third class
    path = tmp_path / "ints.csv"
    frame.to_csv(path, index=False)
    config = tmp_path / "ints.yaml"
    config.write_text(yaml.safe_dump(classify_config(path, training={"epochs": 2})))
    assert run_cli("train", config, "--run-dir", tmp_path / "run").code == 0
    predicted = pd.read_csv(io.StringIO(run_cli("predict", tmp_path / "run", "--data", path).out))
    assert set(predicted["label"]) <= {0, 1, 2}
    assert [c for c in predicted.columns if c.startswith("prob_")] == ["prob_0", "prob_1", "prob_2"]
    metrics = json.loads(run_cli("evaluate", tmp_path / "run", "--json").out)
    assert sum(v for k, v in metrics.items() if k.startswith("confusion/")) == metrics["samples"]
    assert "confusion/2/0" in metrics and "recall_2" in metrics


def test_bad_classification_inputs(tmp_path, write_classify_config, run_cli, memory_csv):
    frame = memory_frame()

    def train_on(data, name, **data_keys):
        path = tmp_path / f"{name}.csv"
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            data.to_csv(path, index=False)
        return run_cli("train", write_classify_config(f"{name}.yaml", path=path, data=data_keys), "--run-dir", tmp_path / name)

    assert_clean_error(
        train_on(frame, "c1", text_column="body"), "column 'body' (data.text_column) not found", "review, sentiment"
    )
    assert_clean_error(train_on(frame, "c2", label_column="stars"), "column 'stars' (data.label_column) not found")
    empty = frame.copy()
    empty.loc[7, "review"] = "   "
    assert_clean_error(train_on(empty, "c3"), "row 9: empty text in column 'review'")
    assert_clean_error(
        train_on(b"review,sentiment\ngood film,pos\nbad \xe9 film,neg\n", "c4"), "not UTF-8", "byte 0xe9 at byte offset 35"
    )
    single = frame.assign(sentiment="pos")
    assert_clean_error(train_on(single, "c5"), "single label")

    run = tmp_path / "run"
    assert run_cli("train", write_classify_config(training={"epochs": 1}), "--run-dir", run).code == 0
    unseen = frame.copy()
    unseen.loc[3, "sentiment"] = "mixed"
    unseen_path = tmp_path / "unseen.csv"
    unseen.to_csv(unseen_path, index=False)
    assert_clean_error(
        run_cli("evaluate", run, "--data", unseen_path), "row 5: label 'mixed' was never seen in training", "neg, pos"
    )
    assert_clean_error(run_cli("predict", run, "--horizon", "3"), "--horizon applies to forecast models")
    assert_clean_error(run_cli("evaluate", run, "--plot", tmp_path / "x.png"), "--plot is not available for a classify model")
    assert not (tmp_path / "x.png").exists()


def test_balanced_class_weights_follow_inverse_frequency(tmp_path):
    from seqtool.configure import build_config
    from seqtool.tasks.classify import ClassifyTask

    frame = memory_frame(rows=400)
    frame.loc[frame.index[:300], "sentiment"] = "neg"  # make the classes imbalanced
    path = tmp_path / "skewed.csv"
    frame.to_csv(path, index=False)
    task = ClassifyTask(build_config(classify_config(path, training={"class_weights": "balanced"}), "test"))
    task.load_training_data()
    counts = np.bincount(task.train.labels)
    expected = len(task.train.labels) / (2 * counts)
    assert torch.allclose(task.class_weights, torch.tensor(expected, dtype=torch.float32))
    assert task.class_weights[task.labels.index("pos")] > task.class_weights[task.labels.index("neg")]
    assert task.majority == task.labels.index("neg")


def test_with_class_weights_validation_scores_the_weighted_objective_training_minimises(tmp_path, run_cli):
    """The checkpoint is chosen on the loss training minimises: with balanced class weights the
    validation `loss` (and evaluate's) is the weighted cross-entropy, on skewed data unlike the plain one."""
    frame = memory_frame(rows=400)
    frame = pd.concat([frame[frame.sentiment == "pos"], frame[frame.sentiment == "neg"].iloc[:60]])  # skewed
    frame.to_csv(tmp_path / "texts.csv", index=False)
    config = classify_config(tmp_path / "texts.csv", training={"epochs": 2, "class_weights": "balanced"})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    run_cli("train", tmp_path / "c.yaml", "--run-dir", tmp_path / "run").ok()
    model = load(tmp_path / "run")
    task, network = model.task, model.network
    metrics = json.loads(run_cli("evaluate", tmp_path / "run", "--split", "val", "--json").ok().out)
    encoded = task._eval_data("val", None)
    probabilities = task.probabilities(network, encoded, torch.device("cpu"))
    nll = -np.log(probabilities[np.arange(len(encoded.labels)), encoded.labels])
    weights = task.class_weights.numpy()[encoded.labels]
    assert metrics["loss"] == pytest.approx(float((weights * nll).sum() / weights.sum()), rel=1e-6)
    assert abs(metrics["loss"] - float(nll.mean())) > 1e-3
    logged = [e.loss for e in MetricsLog(tmp_path / "run").read() if e.split == "val"]
    assert min(logged) == pytest.approx(metrics["loss"], rel=1e-6)  # the best checkpoint's, as training scored it
