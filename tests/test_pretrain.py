"""Language-model pretraining carried into the classifier: `--init-from` language-model runs, the
one-command `training.pretrain`, backward language models, per-layer rates and gradual unfreezing."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import classify_config, crash_and_resume, memory_frame

from seqtool.checkpoint import BEST, load_checkpoint
from seqtool.configure import build_config
from seqtool.data.text import Vocabulary, tokenize
from seqtool.engine import train
from seqtool.metrics import VAL, MetricsLog, of_split
from seqtool.tasks import make_task
from seqtool.tasks.classify import pretraining
from seqtool.tasks.language_model import LanguageModelTask

SHAPE = {"type": "lstm", "hidden_size": 16, "num_layers": 1, "embedding_size": 8, "dropout": 0.0}


def lm_config(corpus, **model):
    return {
        "task": "language_model",
        "seed": 1,
        "data": {"path": str(corpus), "tokenizer": "word", "val_fraction": 0.1},
        "model": SHAPE | model,
        "training": {"batch_size": 8, "seq_len": 16, "max_steps": 20, "eval_every": 10, "device": "cpu"},
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A CSV of labelled texts, and a forward and a backward language model of its texts."""
    folder = tmp_path_factory.mktemp("pretrain")
    frame = memory_frame(rows=240, length=8)
    frame.to_csv(folder / "reviews.csv", index=False)
    texts = frame.review.str.replace(" be", " ben")  # the classifier has a word ("be") the models lack
    (folder / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    train(build_config(lm_config(folder / "texts.txt"), "test"), folder / "forward")
    train(build_config(lm_config(folder / "texts.txt", direction="backward"), "test"), folder / "backward")
    return folder


def classifier(runs, tmp_path, name="cls.yaml", **sections):
    config = classify_config(runs / "reviews.csv", model=SHAPE | sections.pop("model", {}), **sections)
    config["training"].update(max_steps=6, eval_every=3)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def fresh_model(config_path):
    from seqtool.configure import load_config

    task = make_task(load_config(config_path))
    task.load_training_data()
    return task, task.build_model()


def test_init_from_copies_embedding_rows_word_by_word_and_the_recurrent_layers(runs, tmp_path):
    task, model = fresh_model(classifier(runs, tmp_path))
    forward = load_checkpoint(runs / "forward" / BEST)
    lines = task.initialise_from(model, [("forward", forward)])
    theirs = Vocabulary.from_dict(forward["artifacts"]["vocabulary"])
    shared = [w for w in task.vocabulary.tokens if w in theirs.ids]
    assert 0 < len(shared) < len(task.vocabulary)  # some words only the classifier's training texts hold
    for word in shared:
        assert torch.equal(
            model.embedding.weight[task.vocabulary.ids[word]], forward["model"]["embedding.weight"][theirs.ids[word]]
        )
    for name, value in forward["model"].items():
        if name.startswith("recurrent."):
            assert torch.equal(model.state_dict()[name], value)
    counts = np.array(task.vocabulary.counts)
    share = counts[[task.vocabulary.ids[w] for w in shared]].sum() / counts.sum()
    assert f"{len(shared)} of {len(task.vocabulary)} tokens from forward ({share:.1%} of the training tokens)" in lines[0]


def test_a_bidirectional_classifier_takes_its_reverse_direction_from_a_backward_model(runs, tmp_path, run_cli):
    task, model = fresh_model(classifier(runs, tmp_path, model={"bidirectional": True}))
    forward, backward = (load_checkpoint(runs / name / BEST) for name in ("forward", "backward"))
    task.initialise_from(model, [("backward", backward), ("forward", forward)])  # in either order
    weights = model.state_dict()
    assert torch.equal(weights["recurrent.weight_hh_l0"], forward["model"]["recurrent.weight_hh_l0"])
    assert torch.equal(weights["recurrent.weight_hh_l0_reverse"], backward["model"]["recurrent.weight_hh_l0"])
    config = classifier(runs, tmp_path, name="bi.yaml", model={"bidirectional": True})
    ran = run_cli(
        "train", config, "--run-dir", tmp_path / "bi", "--init-from", runs / "forward", "--init-from", runs / "backward"
    )
    assert "Recurrent layers (backward direction): 1 copied from" in ran.ok().out


@pytest.mark.parametrize(
    ("overrides", "sources", "fragments"),
    [
        (["model.hidden_size=32"], ["forward"], ["model.hidden_size differs", "language model's is 16", "classifier's is 32"]),
        (["data.tokenizer=char"], ["forward"], ["data.tokenizer differs", "is word", "is char"]),
        (["model.type=gru"], ["forward"], ["model.type differs"]),
        ([], ["backward"], ["backward language model", "model.bidirectional: false"]),
        (["model.bidirectional=true"], ["forward"], ["give a backward one too"]),
        ([], ["forward", "forward"], ["both forward language models"]),
    ],
)
def test_an_incompatible_language_model_is_one_error_and_nothing_is_written(
    runs, tmp_path, run_cli, overrides, sources, fragments
):
    config = classifier(runs, tmp_path)
    starts = [arg for name in sources for arg in ("--init-from", runs / name)]
    run_cli("train", config, *overrides, "--run-dir", tmp_path / "run", *starts).clean_error(*fragments)
    assert not (tmp_path / "run").exists()


def test_a_run_of_a_kind_that_is_not_accepted_is_refused(runs, tmp_path, run_cli):
    config = tmp_path / "lm.yaml"
    config.write_text(yaml.safe_dump(lm_config(runs / "texts.txt")))
    run_cli("train", classifier(runs, tmp_path), "--run-dir", tmp_path / "cls").ok()
    refused = run_cli("train", config, "--run-dir", tmp_path / "lm", "--init-from", tmp_path / "cls")
    refused.clean_error("is a classify run", "a language_model run starts from a language_model run")
    assert not (tmp_path / "lm").exists()


def test_a_backward_model_reads_the_text_from_its_end_and_writes_what_leads_to_the_prompt(runs):
    forward, backward = (make_task(_config(runs / name)) for name in ("forward", "backward"))
    path = str(runs / "texts.txt")
    assert np.array_equal(backward._load(path, 0.1)["val"], forward._load(path, 0.1)["val"][::-1])
    from seqtool.api import load

    text = load(runs / "backward").predict(prompt="good the", length=5, seed=0)
    assert text.endswith(" good the") and len(tokenize(text, "word")) == 7  # five tokens (line breaks count) first


def _config(run):
    from seqtool.configure import config_from_dict

    return config_from_dict(load_checkpoint(run / BEST)["config"])


def pretrain_config(runs, tmp_path, **training):
    config = classify_config(runs / "reviews.csv", model=SHAPE | {"bidirectional": True})
    config["training"].update({"max_steps": 6, "eval_every": 3, "pretrain": "language_model", "pretrain_epochs": 1} | training)
    return build_config(config, "test")


def test_one_command_pretrains_on_the_training_texts_only_then_fine_tunes(runs, tmp_path):
    run = tmp_path / "run"
    train(pretrain_config(runs, tmp_path, pretrain_batch_size=8, pretrain_seq_len=8), run)
    corpus = set((run / pretraining.CORPUS).read_text().splitlines())
    task = make_task(pretrain_config(runs, tmp_path))
    splits = task._split_frames()
    assert corpus == set(splits["train"][1].review) and not corpus & set(splits["val"][1].review)
    events = MetricsLog(run).read()
    phases = {e.phase for e in events}
    assert phases == {None, pretraining.FORWARD, pretraining.BACKWARD}
    assert [e.step for e in of_split(events, VAL)] == [3, 6]  # the classifier's own curve, without the phases'
    assert all((run / phase / BEST).is_file() for phase in (pretraining.FORWARD, pretraining.BACKWARD))


def test_a_run_interrupted_in_a_pretraining_phase_resumes_there_and_ends_as_an_uninterrupted_one(runs, tmp_path, monkeypatch):
    config = pretrain_config(runs, tmp_path, pretrain_batch_size=8, pretrain_seq_len=8)
    train(config, tmp_path / "whole")
    crash_and_resume(
        monkeypatch, LanguageModelTask, config, tmp_path / "resumed", crash_at=8
    )  # in the forward phase, after its first checkpoint
    whole, resumed = (load_checkpoint(tmp_path / run / BEST)["model"] for run in ("whole", "resumed"))
    assert all(torch.equal(whole[name], resumed[name]) for name in whole)
    sessions = json.loads((tmp_path / "resumed" / pretraining.FORWARD / "run.json").read_text())["sessions"]
    assert len(sessions) == 2 and sessions[1]["resumed_at_step"] > 0


def test_gradual_unfreezing_trains_the_head_alone_first_and_layers_learn_at_decayed_rates(runs, tmp_path):
    config = classify_config(runs / "reviews.csv", model=SHAPE)
    config["training"].update(max_steps=4, eval_every=4, layer_lr_decay=2.0, unfreeze_every=5)
    config = build_config(config, "test")
    task = make_task(config)
    assert (
        task.lr_scales(0) == [1.0, 0.0, 0.0] and task.lr_scales(5) == [1.0, 0.5, 0.0] and task.lr_scales(10) == [1.0, 0.5, 0.25]
    )
    train(config, tmp_path / "run")
    before = _initial_weights(config)
    after = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert not torch.equal(before["head.weight"], after["head.weight"])
    for name in ("embedding.weight", "recurrent.weight_ih_l0", "recurrent.weight_hh_l0"):
        assert torch.equal(before[name], after[name]), name


def _initial_weights(config):
    from seqtool.runtime import seed_everything

    task = make_task(config)
    task.load_training_data()
    seed_everything(config.seed)
    return task.build_model().state_dict()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "file not found"), ("", "empty"), (b"\x00\x01binary\x00", "binary")],
)
def test_a_bad_unlabelled_file_is_one_line_naming_it(runs, tmp_path, run_cli, content, fragment):
    unlabelled = tmp_path / "more.txt"
    if content is not None:
        unlabelled.write_bytes(content.encode() if isinstance(content, str) else content)
    config = classifier(runs, tmp_path)
    options = ["training.pretrain=language_model", f"data.unlabelled={unlabelled}"]
    run_cli("train", config, *options, "--run-dir", tmp_path / "run").clean_error(fragment, "more.txt")
    assert not (tmp_path / "run").exists()


def test_pretraining_keys_without_pretraining_are_errors(runs, tmp_path, run_cli):
    config = classifier(runs, tmp_path)
    run_cli("train", config, "training.pretrain_epochs=3").clean_error(
        "training.pretrain_epochs", "training.pretrain: language_model"
    )
    run_cli("train", config, "data.unlabelled=x.txt").clean_error("data.unlabelled", "training.pretrain: language_model")
    deep = ["training.pretrain=language_model", "model.bidirectional=true", "model.num_layers=2"]
    run_cli("train", config, *deep).clean_error("training.pretrain", "bidirectional classifier of 2 layers")


def test_a_seq2seq_encoder_starts_from_language_models_of_the_source_side(runs, tmp_path, run_cli):
    """The encoder's embedding rows and both directions come from the language models; a source
    tokenizer the models did not read is refused naming both sides."""
    sources = memory_frame(rows=120, length=8).review
    pd.DataFrame({"source": sources, "target": sources.str.split().str[0]}).to_csv(tmp_path / "pairs.csv", index=False)
    config = {
        "task": "seq2seq",
        "data": {"path": str(tmp_path / "pairs.csv"), "val_fraction": 0.2, "test_fraction": 0.0},
        "model": SHAPE | {"bidirectional": True},
        "training": {"max_steps": 1, "batch_size": 8, "lr": 1e-9, "device": "cpu"},
    }
    (tmp_path / "pairs.yaml").write_text(yaml.safe_dump(config))
    starts = ["--init-from", runs / "forward", "--init-from", runs / "backward"]
    ran = run_cli("train", tmp_path / "pairs.yaml", "--run-dir", tmp_path / "s2s", *starts).ok()
    assert "Recurrent layers (backward direction): 1 copied" in ran.out and "The rest of the encoder starts fresh" in ran.out
    weights = load_checkpoint(tmp_path / "s2s" / "last.pt")["model"]
    backward = load_checkpoint(runs / "backward" / BEST)["model"]
    assert torch.allclose(weights["encoder.weight_hh_l0_reverse"], backward["recurrent.weight_hh_l0"], atol=1e-6)
    refused = run_cli("train", tmp_path / "pairs.yaml", "data.source_tokenizer=whitespace", "--run-dir", tmp_path / "ws", *starts)
    refused.clean_error("data.source_tokenizer differs", "is word", "is whitespace")
