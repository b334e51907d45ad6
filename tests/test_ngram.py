"""The n-gram baseline beside every classifier: NBSVM or TF-IDF with logistic regression."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from conftest import classify_config

from seqtool.tasks.classify import ngram


def negation_frame(rows: int, seed: int) -> pd.DataFrame:
    """The label turns on a bigram: "not good" and "bad" are negative, "good" and "not bad"
    positive; every text holds the same filler words, so no unigram alone decides it."""
    rng = np.random.default_rng(seed)
    phrases = {"good": 1, "not good": 0, "bad": 0, "not bad": 1}
    keys = rng.choice(list(phrases), rows)
    filler = [" ".join(rng.choice(["the", "film", "was", "plot", "a", "not"], 5)) for _ in range(rows)]
    return pd.DataFrame(
        {"text": [f"{f} , {k} ." for f, k in zip(filler, keys, strict=True)], "label": [phrases[k] for k in keys]}
    )


@pytest.mark.parametrize("kind", ["nbsvm", "tfidf"])
def test_both_linear_models_read_bigrams_and_survive_the_round_trip(kind):
    from sklearn.feature_extraction.text import CountVectorizer

    train = negation_frame(600, 0)
    vectorizer = CountVectorizer(analyzer=ngram.ngrams)
    counts = vectorizer.fit_transform(ngram.word_tokens(train["text"]))
    vocabulary, labels = vectorizer.get_feature_names_out().tolist(), train["label"].to_numpy()
    if kind == "nbsvm":
        model = ngram._fit_nbsvm(counts, labels, 2, 1.0, 0, vocabulary)
    else:
        model = ngram._fit_tfidf(counts, labels, 1.0, 0, vocabulary)
    test = negation_frame(300, 2)
    tokens = ngram.word_tokens(test["text"])
    assert (model.predict(tokens) == test["label"].to_numpy()).mean() > 0.95
    again = ngram.NgramModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.allclose(again.scores(tokens), model.scores(tokens))


def test_the_candidate_kept_is_the_best_on_validation():
    train, val = negation_frame(600, 0), negation_frame(300, 1)
    words = ngram.word_tokens(train["text"]), ngram.word_tokens(val["text"])
    model = ngram.fit(words[0], train["label"].to_numpy(), words[1], val["label"].to_numpy(), 2, seed=0)
    assert model.validation_accuracy == (model.predict(words[1]) == val["label"].to_numpy()).mean() > 0.95
    assert "not good" in model.vocabulary and model.kind in ("nbsvm", "tfidf")


def test_evaluate_shows_the_stored_baseline_without_refitting(tmp_path, run_cli, monkeypatch):
    path = tmp_path / "negation.csv"
    negation_frame(800, 3).assign(label=lambda f: np.where(f["label"] == 1, "pos", "neg")).to_csv(path, index=False)
    config = classify_config(path, data={"text_column": "text", "label_column": "label", "test_fraction": 0.2})
    config["training"] |= {"epochs": 1}
    (tmp_path / "c.yaml").write_text(json.dumps(config))
    run_cli("train", tmp_path / "c.yaml", "--run-dir", tmp_path / "run").ok()

    def refit(*args, **kwargs):
        raise AssertionError("evaluate refitted the n-gram baseline")

    monkeypatch.setattr(ngram, "fit", refit)
    metrics = json.loads(run_cli("evaluate", tmp_path / "run", "--json").ok().out)
    assert metrics["ngram_accuracy"] > 0.95 and metrics["majority_accuracy"] < 0.6, metrics
    assert {"ngram_macro_f1", "ngram_precision_pos", "ngram_recall_neg"} <= metrics.keys()
    table = run_cli("evaluate", tmp_path / "run").ok().out
    assert "ngram" in table and "majority" in table


def test_ngram_weight_predicts_with_the_product_of_network_and_baseline(tmp_path, run_cli):
    """model.ngram_weight w: predict, evaluate and serve use p_net^(1-w) * p_ngram^w renormalised;
    evaluate shows the network alone beside it, and export says the graph is the network alone."""
    import torch

    from seqtool import engine

    path, weight = tmp_path / "negation.csv", 0.3
    negation_frame(800, 3).assign(label=lambda f: np.where(f["label"] == 1, "pos", "neg")).to_csv(path, index=False)
    config = classify_config(path, data={"text_column": "text", "label_column": "label", "test_fraction": 0.2})
    config["model"] |= {"ngram_weight": weight}
    config["training"] |= {"epochs": 1}
    (tmp_path / "c.yaml").write_text(json.dumps(config))
    run_cli("train", tmp_path / "c.yaml", "--run-dir", tmp_path / "run").ok()
    task, model, _ = engine.load_trained(tmp_path / "run")
    test = negation_frame(300, 9).assign(label=lambda f: np.where(f["label"] == 1, "pos", "neg"))
    test.to_csv(tmp_path / "test.csv", index=False)
    encoded = task.encode(test["text"], "test", test["label"])
    network = task.network_probabilities(model, encoded, torch.device("cpu"))
    baseline = task.ngram.probabilities(ngram.word_tokens(test["text"]))
    product = network ** (1 - weight) * baseline**weight
    product /= product.sum(axis=1, keepdims=True)
    truth = encoded.labels
    metrics = json.loads(run_cli("evaluate", tmp_path / "run", "--data", tmp_path / "test.csv", "--json").ok().out)
    assert metrics["accuracy"] == pytest.approx((product.argmax(1) == truth).mean())
    assert metrics["network_accuracy"] == pytest.approx((network.argmax(1) == truth).mean())
    assert metrics["ngram_accuracy"] == pytest.approx((baseline.argmax(1) == truth).mean())
    assert metrics["network_accuracy"] != metrics["accuracy"], "one epoch: the baseline should change some answers"
    chosen_on = -np.log(network[np.arange(len(truth)), truth]).mean()  # the loss trained: the network's own
    assert metrics["loss"] == pytest.approx(chosen_on, rel=1e-4)
    labelled = pd.read_csv(io.StringIO(run_cli("predict", tmp_path / "run", "--data", tmp_path / "test.csv").ok().out))
    assert np.allclose(labelled[["prob_neg", "prob_pos"]].to_numpy(), product, atol=1e-5)
    assert "network" in run_cli("evaluate", tmp_path / "run").ok().out
    exported = run_cli("export", tmp_path / "run", "--output", f"{tmp_path / 'exp'}/").ok()
    assert "the graph is the network alone" in exported.out
    assert json.loads((tmp_path / "exp" / "model.onnx.json").read_text())["ngram_weight"] == weight
