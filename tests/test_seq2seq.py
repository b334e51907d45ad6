"""Sequence to sequence: metrics against hand-worked values, padding never changing an output,
attention that is a distribution over the real source tokens, and a model that learns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from seqtool.tasks.seq2seq import Seq2SeqTask
from seqtool.tasks.seq2seq.config import Seq2SeqModel
from seqtool.tasks.seq2seq.metrics import edit_distance, sequence_metrics
from seqtool.tasks.seq2seq.network import EOS, Seq2SeqNetwork
from seqtool.tasks.seq2seq.tokens import Codec, join_tokens, tokenize


def test_edit_distance_and_token_error_rate_by_hand():
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert edit_distance([], ["a", "b"]) == 2
    metrics = sequence_metrics(["HH AH0 L OW1", "K AE1"], ["HH AH0 L OW1", "K AE1 T"], Codec("whitespace"))
    assert metrics["exact_match"] == 0.5
    assert metrics["token_error_rate"] == pytest.approx(1 / 7)  # one deletion over 7 reference phonemes
    perfect = sequence_metrics(["Die Datei wurde nicht gefunden."], ["Die Datei wurde nicht gefunden."], Codec("word"))
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["chrf"] == pytest.approx(100.0) and perfect["ter"] == 0
    # BLEU of one-word answers: 2 of 3 right, not the 0 of standard BLEU's empty 2- to 4-grams
    answers = sequence_metrics(["garden", "office", "kitchen"], ["garden", "hallway", "kitchen"], Codec("word"))
    assert answers["bleu"] == pytest.approx(200 / 3) and answers["exact_match"] == pytest.approx(2 / 3)


def test_bleu_is_sacrebleus_standard_corpus_bleu_on_sentences():
    import sacrebleu

    hypotheses = ["Die Datei wurde nicht gefunden .", "Ordner öffnen", "Speichern unter ..."]
    references = ["Die Datei wurde nicht gefunden .", "Den Ordner öffnen", "Speichern als ..."]
    ours = sequence_metrics(hypotheses, references, Codec("whitespace"))
    assert ours["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references], tokenize="none").score)
    assert ours["ter"] == pytest.approx(sacrebleu.corpus_ter(hypotheses, [references]).score) and ours["ter"] > 0


def test_tokenizers_round_trip():
    assert tokenize("S IY1  K", "whitespace") == ["S", "IY1", "K"]
    assert join_tokens(["S", "IY1", "K"], "whitespace") == "S IY1 K"
    assert join_tokens(tokenize("File not found.", "word"), "word") == "File not found."
    assert join_tokens(tokenize("abc", "char"), "char") == "abc"


@pytest.mark.parametrize("attention", ["dot", "general", "bahdanau", "none"])
@pytest.mark.parametrize("feeding", [True, False])
def test_padding_never_changes_a_translation_and_attention_covers_the_source(attention, feeding):
    torch.manual_seed(0)
    config = Seq2SeqModel(type="gru", hidden_size=12, num_layers=2, embedding_size=6, dropout=0.0)
    config.attention, config.input_feeding = attention, feeding
    model = Seq2SeqNetwork(config, 20, 15, shared_vocabulary=False).eval()
    short = torch.tensor([[5, 6, 7]])
    batch = torch.tensor([[9, 8, 7, 6, 5, 4, 9, 8], [5, 6, 7, 0, 0, 0, 0, 0], [4, 4, 4, 4, 0, 0, 0, 0]])
    alone, alone_weights = model.greedy(short, torch.tensor([3]), 6)
    together, weights = model.greedy(batch, torch.tensor([8, 3, 4]), 6)
    assert torch.equal(alone[0], together[1, : alone.shape[1]])
    # the teacher-forced path and the step-by-step path give the same scores
    target_in = torch.tensor([[2, 5, 6, 7]])
    forced = model(short, torch.tensor([3]), target_in)
    memory, mask, state = model.encode(short, torch.tensor([3]))
    feed = memory.new_zeros(1, 12)
    for t in range(4):
        scores, state, feed, _ = model.step(target_in[:, t], state, feed, memory, mask)
        torch.testing.assert_close(scores, forced[:, t], atol=1e-5, rtol=0)
    if attention == "none":
        assert weights is None and model.align(short, torch.tensor([3]), alone) is None
        return
    # re-reading a decoded output gives the weights the decoder had while writing it
    torch.testing.assert_close(model.align(short, torch.tensor([3]), alone[:, :-1]), alone_weights, atol=1e-6, rtol=0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]))
    assert float(weights[1, :, 3:].abs().max()) == 0.0  # never on padding
    torch.testing.assert_close(alone_weights[0], weights[1, : alone_weights.shape[1], :3], atol=1e-6, rtol=0)


def test_a_model_learns_to_reverse_number_words_and_beats_copying(tmp_path, run_cli, monkeypatch):
    example = Seq2SeqTask.example(tmp_path)
    config = json.loads(json.dumps(example.config))
    config["model"].update({"hidden_size": 48, "embedding_size": 24, "dropout": 0.0})
    config["training"].update({"epochs": None, "max_steps": 500, "eval_every": 250, "log_every": 50, "device": "cpu"})
    path = tmp_path / "reverse.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run_cli("train", path, "--run-dir", tmp_path / "run").code == 0
    metrics = json.loads(run_cli("evaluate", tmp_path / "run", "--json").out)
    assert metrics["split"] == "test" and metrics["pairs"] == 30
    assert metrics["exact_match"] >= 0.8 and metrics["copy_exact_match"] == 0.0
    assert metrics["token_error_rate"] < 0.1 < metrics["copy_token_error_rate"]
    assert metrics["bleu"] > metrics["copy_bleu"]
    one_beam = json.loads(run_cli("evaluate", tmp_path / "run", "--json", "--beam-size", "1").out)
    assert one_beam == metrics  # a beam of one is greedy decoding
    beam = run_cli("evaluate", tmp_path / "run", "--beam-size=4", "--length-penalty", "0.6")
    assert beam.code == 0 and "beam search (4 beams, length penalty 0.6)" in beam.out
    run_cli("evaluate", tmp_path / "run", "--length-penalty", "0.6").clean_error("give --beam-size too")
    run_cli("evaluate", tmp_path / "run", "--n-best", "2").clean_error("no such evaluate option --n-best")
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("three one four\n\nnine two\n"))
    result = run_cli("predict", tmp_path / "run")
    assert result.out.split("\n")[:3] == ["4 1 3", "", "2 9"]  # one output line per input line, blank for blank
    assert result.err == ""
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("three eleven\n"))
    result = run_cli("predict", tmp_path / "run")
    assert (
        result.code == 0 and "not in the training vocabulary, read as <unk>: 'l'" in result.err
    )  # 'eleven' in pieces: only its l is new
    out = tmp_path / "out.csv"
    assert run_cli("predict", tmp_path / "run", "--data", tmp_path / "new.csv", "--output", out).code == 0
    assert out.read_text().splitlines()[0] == "source,prediction"


def test_decoding_stops_at_the_end_token_and_at_the_limit():
    torch.manual_seed(1)
    model = Seq2SeqNetwork(Seq2SeqModel(hidden_size=8, num_layers=1, embedding_size=4, dropout=0.0), 10, 10, False).eval()
    with torch.no_grad():
        model.output.bias.fill_(-10.0)
        model.output.bias[EOS] = 10.0  # always </s> first
    ids, _ = model.greedy(torch.tensor([[4, 5]]), torch.tensor([2]), 7)
    assert ids.tolist() == [[EOS]]
    with torch.no_grad():
        model.output.bias[EOS] = -10.0
        model.output.bias[6] = 10.0  # never </s>
    ids, _ = model.greedy(torch.tensor([[4, 5]]), torch.tensor([2]), 7)
    assert ids.shape == (1, 7)


def _log_probability(model, source, lengths, ids, ended):
    """log P(ids[, </s>] | source) under the model, by teacher forcing."""
    target = torch.tensor([[*ids, EOS] if ended else list(ids)])
    target_in = torch.cat([torch.tensor([[2]]), target[:, :-1]], dim=1)
    with torch.no_grad():
        scores = torch.log_softmax(model(source, lengths, target_in).float(), dim=-1)
    return float(scores.gather(2, target[:, :, None]).sum())


@pytest.mark.parametrize("feeding", [True, False])
def test_beam_search_of_one_is_greedy_and_a_wider_beam_finds_at_least_as_likely_an_output(feeding):
    torch.manual_seed(3)
    config = Seq2SeqModel(type="lstm", hidden_size=10, num_layers=1, embedding_size=6, dropout=0.0)
    config.input_feeding = feeding
    model = Seq2SeqNetwork(config, 12, 9, shared_vocabulary=False).eval()
    source = torch.tensor([[5, 6, 7, 8], [4, 9, 0, 0]])
    lengths = torch.tensor([4, 2])
    greedy, _ = model.greedy(source, lengths, 8)
    one = model.beam_search(source, lengths, 8, beam_size=1, alpha=0.0)
    for row in range(2):
        ids = greedy[row].tolist()
        ids = ids[: ids.index(EOS)] if EOS in ids else ids
        assert one[row][0][1] == ids
    wide = model.beam_search(source, lengths, 8, beam_size=4, alpha=0.0, n_best=4)
    stopped_early = model.beam_search(source, lengths, 8, beam_size=4, alpha=0.0)  # done once its best candidate ends
    for row in range(2):
        assert stopped_early[row][0] == wide[row][0]  # alpha 0: no live beam could have caught up
        scores = [score for score, _ in wide[row]]
        assert scores == sorted(scores, reverse=True) and len(scores) == 4
        best_score, best_ids = wide[row][0]
        ended = len(best_ids) < 8  # shorter than the limit: it ended with </s>, which its score includes
        probability = _log_probability(model, source[row : row + 1, : lengths[row]], lengths[row : row + 1], best_ids, ended)
        assert best_score == pytest.approx(probability, abs=1e-4)  # alpha 0: the plain log-probability
        assert best_score >= one[row][0][0] - 1e-6


def test_predict_beam_and_n_best_through_the_cli(tmp_path, run_cli, monkeypatch):
    from seqtool.testing import prepare

    job = prepare("seq2seq", tmp_path, max_steps=30)
    run = job.train("run")
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("three one\n"))
    result = run_cli("predict", run, "--beam-size", "3", "--n-best", "2")
    lines = result.out.splitlines()
    assert result.code == 0 and len(lines) == 3 and lines[2] == "", result
    assert all("\t" in line for line in lines[:2]) and float(lines[0].split("\t")[1]) >= float(lines[1].split("\t")[1])
    out = tmp_path / "beam.csv"
    assert run_cli("predict", run, "--data", tmp_path / "new.csv", "--beam-size", "2", "--output", out).code == 0
    assert out.read_text().splitlines()[0] == "source,prediction,score"
    run_cli("predict", run, "--beam-size", "0").clean_error("--beam-size must be at least 1")
    png = tmp_path / "alignment.png"
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("\nthree one four\nnine\n"))
    result = run_cli("predict", run, "--attention", png, "--beam-size", "2")
    assert result.code == 0 and len(result.out.splitlines()) == 3, result
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "'three one four' written to" in result.err
    png.unlink()
    assert run_cli("predict", run, "--data", tmp_path / "new.csv", "--attention", png).code == 0 and png.exists()
    run_cli("predict", run, "--data", tmp_path / "new.csv", "--beam-size", "2", "--n-best", "3").clean_error(
        "more than --beam-size"
    )


def _make_qa():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("make_qa", Path(__file__).parents[1] / "scripts" / "make_qa.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _answer(story: str) -> str:
    """The answer worked out by reading the story sentence by sentence, independently of the generator."""
    *sentences, question = [s.strip() for s in story.replace("?", ".").split(".") if s.strip()]
    at, holder, lying = {}, {}, {}
    for sentence in sentences:
        words = sentence.split()
        person, thing = words[0], words[-1] if words[-1] != "there" else words[-2]
        if words[-2] == "the" and " to the " in sentence:
            at[person] = thing
        elif sentence.endswith(" there"):
            holder[thing] = person
        else:
            holder.pop(thing)
            lying[thing] = at[person]
    asked = question.split()[-1]
    return at[asked] if asked in at else (at[holder[asked]] if asked in holder else lying[asked])


def test_qa_stories_are_reproducible_and_every_answer_follows_from_the_story(tmp_path):
    make_qa = _make_qa()
    for task in (1, 2):
        path = tmp_path / f"qa{task}.tsv"
        assert make_qa.main(["--tasks", str(task), "--questions", "300", "--seed", "5", "--out", str(path)]) == 0
        again = tmp_path / "again.tsv"
        make_qa.main(["--tasks", str(task), "--questions", "300", "--seed", "5", "--out", str(again)])
        assert path.read_bytes() == again.read_bytes()
        rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
        assert len(rows) == 300 and {r[2] for r in rows} == {f"qa{task}"}
        assert all(_answer(source) == answer for source, answer, _ in rows)
        questions = {source.rsplit(". ", 1)[-1].split()[2].rstrip("?") for source, _, _ in rows}
        assert questions <= (set(make_qa.PEOPLE) if task == 1 else {"the"})


@pytest.mark.parametrize(
    "model",
    [
        {"type": "lstm", "attention": "bahdanau", "input_feeding": True, "bidirectional": True, "num_layers": 2},
        {"type": "gru", "attention": "none", "input_feeding": False, "bidirectional": False, "num_layers": 1},
    ],
)
def test_onnx_export_decodes_like_predict_with_only_the_metadata(tmp_path, run_cli, monkeypatch, model):
    """A deployment's greedy loop, written here from the metadata alone: encode once, then step."""
    ort = pytest.importorskip("onnxruntime")
    import base64

    import numpy as np
    import sentencepiece

    from seqtool.testing import prepare

    run = prepare("seq2seq", tmp_path, model=model, max_steps=40).train("run")
    (tmp_path / "out").mkdir()
    result = run_cli("export", run, "--output", tmp_path / "out" / "s2s.onnx")
    assert result.code == 0 and "greedy decoding through the parts equals seqtool's" in result.out, result
    meta = json.loads((tmp_path / "out" / "s2s.onnx.json").read_text())
    assert sorted(meta["parts"]) == ["decoder_step", "encoder"] and meta["check"]["max_abs_diff"] <= 1e-4
    sessions = {p: ort.InferenceSession(str(tmp_path / "out" / meta["parts"][p]["model_file"])) for p in meta["parts"]}
    source_index = {t: i for i, t in enumerate(meta["vocabulary"]["source"])}
    ids = meta["special_ids"]
    assert meta["tokenizers"]["source"] == "bpe"  # the example's source is read in learned pieces
    pieces = sentencepiece.SentencePieceProcessor(model_proto=base64.b64decode(meta["subword_models"]["source"]))
    sentences = ["three one four", "nine", "two two seven five"]
    cut = [pieces.encode(sentence, out_type=str) for sentence in sentences]
    lengths = np.array([len(c) for c in cut])
    source = np.zeros((3, lengths.max()), dtype=np.int64)
    for row, sentence in enumerate(cut):
        source[row, : lengths[row]] = [source_index.get(piece, ids["unk"]) for piece in sentence]
    names = [o["name"] for o in meta["parts"]["encoder"]["outputs"]]
    encoded = dict(zip(names, sessions["encoder"].run(names, {"source": source, "lengths": lengths}), strict=True))
    step_inputs = [i["name"] for i in meta["parts"]["decoder_step"]["inputs"]]
    step_outputs = [o["name"] for o in meta["parts"]["decoder_step"]["outputs"]]
    feeds = {name: encoded[name.replace("_in", "_0")] for name in step_inputs if name in ("h_in", "c_in")}
    if "feed_in" in step_inputs:
        feeds["feed_in"] = np.zeros((3, meta["model"]["hidden_size"]), dtype=np.float32)
    tokens, outputs = np.full(3, ids["bos"], dtype=np.int64), [[] for _ in sentences]
    for _ in range(12):
        out = dict(
            zip(
                step_outputs,
                sessions["decoder_step"].run(
                    step_outputs, {"tokens": tokens, **feeds, **{n: encoded[n] for n in ("memory", "mask") if n in step_inputs}}
                ),
                strict=True,
            )
        )
        tokens = out["logits"].argmax(-1).astype(np.int64)
        feeds = {name: out[name.replace("_in", "_out")] for name in feeds}
        for row, token in enumerate(tokens):
            if ids["eos"] not in outputs[row]:
                outputs[row].append(int(token))
    target = meta["vocabulary"]["target"]
    exported = [" ".join(target[t] for t in (o[: o.index(ids["eos"])] if ids["eos"] in o else o)) for o in outputs]
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("\n".join(sentences) + "\n"))
    assert run_cli("predict", run).out.splitlines() == exported


def _pairs_config(tmp_path, sources: list[str], **data) -> Path:
    pd.DataFrame({"source": sources, "target": [s.split()[0] for s in sources]}).to_csv(
        tmp_path / "pairs.tsv", sep="\t", index=False
    )
    config = {
        "task": "seq2seq",
        "data": {"path": str(tmp_path / "pairs.tsv"), "val_fraction": 0.2, "test_fraction": 0.0, **data},
        "model": {"hidden_size": 8, "num_layers": 1, "embedding_size": 8},
        "training": {"max_steps": 2, "batch_size": 8, "device": "cpu"},
    }
    (tmp_path / "pairs.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "pairs.yaml"


def test_cut_sources_are_counted_and_mostly_cut_data_is_refused(tmp_path, run_cli):
    """Cutting a source to data.max_source_length is said (output, summary.json); a file whose
    pairs are nearly all cut is a config mistake, refused naming the longest length."""
    words = "alpha beta gamma delta".split()
    long = " ".join(words[i % 4] for i in range(300))
    config = _pairs_config(tmp_path, [long] * 50, max_source_length=40)
    run_cli("train", config, "--run-dir", tmp_path / "cut").clean_error(
        "40 of 40 training pairs", "data.max_source_length=40", "the longest has 300"
    )
    assert not (tmp_path / "cut").exists()
    sources = [long if i % 10 == 0 else " ".join(words[: 1 + i % 4]) for i in range(60)]
    config = _pairs_config(tmp_path, sources, max_source_length=40)
    out = run_cli("train", config, "--run-dir", tmp_path / "some").ok().out
    train_cut = sum(1 for i in range(60) if i % 10 == 0)  # at most 6; the split decides how many are in training
    summary = json.loads((tmp_path / "some" / "summary.json").read_text())
    assert 1 <= summary["data"]["source_truncated_pairs"] <= train_cut and summary["data"]["target_truncated_pairs"] == 0
    assert f"source truncated pairs {summary['data']['source_truncated_pairs']}" in out


def test_a_missing_extra_is_one_line_before_training_starts(tmp_path, run_cli, monkeypatch):
    """Without the seq2seq extra a run stopped at its first evaluation, 100 steps in, with no
    checkpoint; now nothing starts, and one line names the module and the extra."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sacrebleu" else real(name, *a))
    config = _pairs_config(tmp_path, ["one two", "three four"] * 20)
    run_cli("train", config, "--run-dir", tmp_path / "run").clean_error("needs sacrebleu", "pip install 'seqtool[seq2seq]'")
    assert not (tmp_path / "run").exists()


def test_the_attention_rows_are_the_tokens_decoded_with_unk_kept_whole(tmp_path, run_cli, monkeypatch):
    from seqtool.tasks.seq2seq import Seq2SeqTask

    assert Codec("word").output_tokens("Datei <unk> gefunden.") == ["Datei", "<unk>", "gefunden", "."]
    assert Codec("word").output_tokens("<unk>") == ["<unk>"]
    assert Codec("char").output_tokens("ab<unk>") == ["a", "b", "<unk>"]
    config = _pairs_config(tmp_path, ["one two", "three four", "five six"] * 10)
    run_cli("train", config, "--run-dir", tmp_path / "run").ok()
    drawn = {}
    monkeypatch.setattr(Seq2SeqTask, "translate", lambda self, model, texts, options: [[(None, "one <unk> two")] for _ in texts])
    monkeypatch.setattr(
        "seqtool.tasks.seq2seq.plots.alignment_plot",
        lambda path, weights, source, output: drawn.update(rows=output, shape=weights.shape),
    )
    run_cli("predict", tmp_path / "run", "--attention", tmp_path / "a.png", stdin="one two\n").ok()
    assert drawn["rows"] == ["one", "<unk>", "two", "</s>"] and drawn["shape"][0] == 4


def test_an_output_stops_near_the_longest_plausible_length(tmp_path, run_cli):
    """A model that loops stops at the training pairs' 99.5th-percentile
    target/source length ratio times the source length, plus 10 tokens, not at max_target_length."""
    import math

    from seqtool import engine

    sources = ["alpha beta gamma delta", "beta gamma", "gamma delta alpha beta alpha beta"] * 20
    config = _pairs_config(tmp_path, sources, target_tokenizer="whitespace")
    run_cli("train", config, "--run-dir", tmp_path / "run").ok()
    task, model, _ = engine.load_trained(tmp_path / "run")
    train = task._eval_split("train", None)
    expected = np.quantile(train.target_lengths / train.source_lengths, 0.995)  # targets count their </s>
    assert task.length_ratio == pytest.approx(expected)
    with torch.no_grad():  # a model that never ends: "beta beta beta ..."
        model.output.bias[task.vocab["target"].index("beta")] = 1e4
    text = "alpha beta gamma delta alpha beta gamma delta"
    output = task.translate(model, [text], {})[0][0][1].split()
    assert set(output) == {"beta"} and len(output) == math.ceil(expected * 8) + 10 < 100  # max_target_length: 100


def test_the_configs_beam_is_the_default_decoding_everywhere(tmp_path, run_cli):
    """model.beam_size / length_penalty: evaluate, predict and serve decode by beam search unless
    an option says otherwise (--beam-size 1: greedy)."""
    config = _pairs_config(tmp_path, ["one two", "three four", "five six two"] * 10)
    run_cli("train", config, "model.beam_size=3", "model.length_penalty=0.6", "--run-dir", tmp_path / "run").ok()
    assert "Decoded by beam search (3 beams, length penalty 0.6)" in run_cli("evaluate", tmp_path / "run").ok().out
    assert "Decoded greedily" in run_cli("evaluate", tmp_path / "run", "--beam-size", "1").ok().out
    assert "length penalty 0.9" in run_cli("evaluate", tmp_path / "run", "--length-penalty", "0.9").ok().out
    from seqtool import engine

    task, model, _ = engine.load_trained(tmp_path / "run")
    by_default = task.translate(model, ["one two five"], {})[0]
    assert by_default == task.translate(model, ["one two five"], {"beam_size": 3, "length_penalty": 0.6})[0]
    assert by_default[0][0] is not None  # a beam search's answer carries its score
    assert task.translate(model, ["one two five"], {"beam_size": 1})[0][0][0] is None  # greedy: none
