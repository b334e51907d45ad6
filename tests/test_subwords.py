"""Subword vocabularies (bpe, unigram) for seq2seq, and unknown words copied from the source."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from seqtool.tasks.seq2seq.subwords import Subwords, learn
from seqtool.tasks.seq2seq.tokens import Codec

REPO = Path(__file__).resolve().parent.parent
MESSAGES = pd.read_csv(REPO / "data" / "messages-en-de.tsv", sep="\t")


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_text_round_trips_through_learned_pieces(kind):
    """Pieces joined back give the text (spaces normalised), also for sentences the model never saw."""
    train, held_out = MESSAGES["source"][:3000].tolist(), MESSAGES["source"][3000:3300].tolist()
    codec = Codec(kind, Subwords(learn(train, kind, 1000, "messages"), "test"))
    normal = [t for t in held_out if unicodedata.normalize("NFKC", t) == t]
    assert len(normal) > 250
    for text in normal:
        pieces = codec.tokens(text)
        assert codec.join(pieces) == " ".join(text.split()), pieces
    assert np.mean([len(codec.tokens(t)) / max(1, len(t.split())) for t in normal]) < 2.5  # pieces, not characters
    again = learn(train, kind, 1000, "messages")
    assert Subwords(again, "test").pieces() == codec.subwords.pieces()  # the same model on every run


def _pairs(folder: Path, rows: list[tuple[str, str]], **data) -> Path:
    pd.DataFrame(rows, columns=["source", "target"]).to_csv(folder / "pairs.tsv", sep="\t", index=False)
    config = {
        "task": "seq2seq",
        "seed": 3,
        "data": {"path": str(folder / "pairs.tsv"), "val_fraction": 0.1, "test_fraction": 0.1, **data},
        "model": {"hidden_size": 32, "num_layers": 1, "embedding_size": 32, "dropout": 0.0},
        "training": {"max_steps": 2, "batch_size": 16, "lr": 0.01, "device": "cpu"},
    }
    (folder / "pairs.yaml").write_text(yaml.safe_dump(config))
    return folder / "pairs.yaml"


def test_a_subword_model_trains_evaluates_predicts_and_exports(tmp_path, run_cli):
    rows = list(zip(MESSAGES["source"][:400], MESSAGES["target"][:400], strict=True))
    config = _pairs(tmp_path, rows, source_tokenizer="bpe", target_tokenizer="bpe", share_vocabulary=True, vocab_size=300)
    run_cli("train", config, "--run-dir", tmp_path / "run").ok()
    metrics = json.loads(run_cli("evaluate", tmp_path / "run", "--json").ok().out)
    assert {"bleu", "chrf", "ter", "copy_bleu", "copy_ter", "token_error_rate"} <= metrics.keys()
    assert metrics["copy_ter"] > 0 and metrics["copy_bleu"] > 0
    answer = run_cli("predict", tmp_path / "run", "--beam-size", "2", "--n-best", "2", stdin="Open file\n\nSave as\n").ok()
    lines = answer.out.split("\n")
    assert "\u2581" not in answer.out and len([line for line in lines if "\t" in line]) == 4, answer.out
    exported = run_cli("export", tmp_path / "run", "--output", f"{tmp_path / 'exp'}/").ok()
    assert "greedy decoding through the parts equals seqtool's" in exported.out
    metadata = json.loads((tmp_path / "exp" / "model.onnx.json").read_text())
    assert metadata["tokenizers"] == {"source": "bpe", "target": "bpe"}
    pieces = Subwords(metadata["subword_models"]["target"], "export").pieces()
    assert pieces == metadata["vocabulary"]["target"] == metadata["vocabulary"]["source"]


def test_a_vocabulary_larger_than_the_text_allows_names_the_largest_that_works(tmp_path, run_cli):
    rows = [("open the file", "datei öffnen"), ("close the file", "datei schließen")] * 20
    config = _pairs(tmp_path, rows, source_tokenizer="unigram", vocab_size=5000)
    failed = run_cli("train", config, "--run-dir", tmp_path / "run")
    failed.clean_error("data.vocab_size 5000", "the largest that works is")
    assert not (tmp_path / "run").exists()
    largest = int(re.search(r"the largest that works is (\d+)", failed.err).group(1))
    run_cli("train", config, f"data.vocab_size={largest}", "--run-dir", tmp_path / "run").ok()


def test_subword_keys_that_do_not_apply_are_errors(tmp_path, run_cli):
    rows = [("open the file", "datei öffnen")] * 20
    config = _pairs(tmp_path, rows)
    run_cli("train", config, "data.vocab_size=100", "--run-dir", tmp_path / "a").clean_error(
        "data.vocab_size", "applies to the subword tokenizers"
    )
    both = ("data.source_tokenizer=bpe", "data.target_tokenizer=bpe", "data.min_freq=2")
    run_cli("train", config, *both, "--run-dir", tmp_path / "b").clean_error("data.min_freq", "data.vocab_size pieces")
    run_cli("train", config, "model.attention=none", "model.copy_unknown=true", "--run-dir", tmp_path / "c").clean_error(
        "model.copy_unknown", "needs attention"
    )


def test_init_from_a_run_with_other_tokenizers_is_refused(tmp_path, run_cli):
    rows = list(zip(MESSAGES["source"][:200], MESSAGES["target"][:200], strict=True))
    config = _pairs(tmp_path, rows, source_tokenizer="bpe", target_tokenizer="bpe", vocab_size=200)
    run_cli("train", config, "--run-dir", tmp_path / "bpe").ok()
    other = ("data.source_tokenizer=unigram", "--init-from", tmp_path / "bpe", "--run-dir", tmp_path / "unigram")
    run_cli("train", config, *other).clean_error("tokenizers (source bpe, target bpe, 200 pieces)", "source unigram")
    assert not (tmp_path / "unigram").exists()


def test_an_unknown_word_in_the_output_is_the_source_word_attended_to(tmp_path, run_cli):
    """A copy task whose rare words are <unk> on both sides: the model learns to write <unk> where
    the source had one, and the output holds the source's word there instead."""
    import torch

    from seqtool import engine

    rng = np.random.default_rng(0)
    common = "red green blue black white grey pink brown".split()
    rows = []
    for n in range(600):
        words = list(rng.choice(common, 4))
        words[int(rng.integers(0, 4))] = f"name{n}"  # seen once: <unk> with min_freq 2
        rows.append((" ".join(words), " ".join(words)))
    config = _pairs(tmp_path, rows, min_freq=2, test_fraction=0.0)
    run_cli("train", config, "training.max_steps=400", "--run-dir", tmp_path / "run").ok()
    answer = run_cli("predict", tmp_path / "run", stdin="red zebra blue pink\n").ok()
    assert answer.out.strip() == "red zebra blue pink", answer
    task, model, _ = engine.load_trained(tmp_path / "run")
    with torch.no_grad():
        task.config.model.copy_unknown = False
        assert task.translate(model, ["red zebra blue pink"], {})[0][0][1] == "red <unk> blue pink"
