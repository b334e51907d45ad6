"""`seqtool init`: each bundled file gets a starter config that validates and trains."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import assert_clean_error

from seqtool.configure import load_config

DATA = Path(__file__).resolve().parent.parent / "data"
EXPECTED = {
    "tinyshakespeare.txt": "language_model",
    "airline-passengers.csv": "forecast",
    "daily-min-temperatures.csv": "forecast",
    "pollution.csv": "forecast",
    "macro-quarterly.csv": "forecast",
    "msft-1986-2009.csv": "forecast",
    "sentiment.csv": "classify",
    "cmudict-20k.tsv": "seq2seq",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_init_guesses_the_task_and_the_config_trains(tmp_path, run_cli, name):
    data = tmp_path / name
    if name == "tinyshakespeare.txt":
        data.write_text((DATA / name).read_text()[:60_000])  # a smaller corpus: this test trains
    else:
        shutil.copy(DATA / name, data)
    result = run_cli("init", data)
    assert result.code == 0, result
    written = data.with_suffix(".yaml")
    assert f"Wrote {written}" in result.out and result.out.startswith("- ")  # says what it guessed and why
    config = load_config(written)
    assert config.task == EXPECTED[name]
    assert config.data.has_test_split(), "init proposes a test part where the data allows one"
    trained = run_cli(
        "train", written, "training.max_steps=3", "training.max_time=null", "training.eval_every=3", "--run-dir", tmp_path / "run"
    )
    assert trained.code == 0, trained
    evaluated = run_cli("evaluate", tmp_path / "run")
    assert evaluated.code == 0 and "Warning" not in evaluated.err and "the test split" in evaluated.out
    again = run_cli("init", data)
    assert_clean_error(again, "already exists", "never overwrites")


@pytest.mark.parametrize(
    ("name", "source", "target", "tokenizers"),
    [
        ("messages-en-de.tsv", "source", "target", ("bpe", "bpe")),  # 23,564 distinct words: shared subwords
        ("qa-babi.tsv", "source", "target", ("word", "word")),  # one-word answers beside prose: words
        ("cmudict-20k.tsv", "word", "phonemes", ("char", "whitespace")),  # spelling to phoneme symbols
    ],
)
def test_init_reads_a_table_of_pairs_as_sequence_to_sequence(tmp_path, run_cli, name, source, target, tokenizers):
    data = tmp_path / name
    shutil.copy(DATA / name, data)
    assert run_cli("init", data).code == 0
    config = load_config(data.with_suffix(".yaml"))
    assert config.task == "seq2seq" and (config.data.source_column, config.data.target_column) == (source, target)
    assert (config.data.source_tokenizer, config.data.target_tokenizer) == tokenizers
    if "bpe" in tokenizers:  # the retuned recipe, its vocabulary sized to the data
        assert config.data.share_vocabulary and config.data.vocab_size == 4000 and config.model.type == "gru"
        assert config.model.beam_size == 5 and config.training.ema_decay == 0.999


def test_init_task_can_be_forced_and_is_checked(tmp_path, run_cli):
    data = tmp_path / "notes.csv"
    data.write_text("text,label\n" + "".join(f"a long enough sentence number {i} here,{'ab'[i % 2]}\n" for i in range(40)))
    assert run_cli("init", data, "--task", "classify").code == 0
    assert load_config(data.with_suffix(".yaml")).data.label_column == "label"
    assert_clean_error(run_cli("init", data, "--task", "regression"), "--task must be")
    assert_clean_error(run_cli("init", tmp_path / "missing.csv"), "data file not found")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"", "the file is empty"),
        ("blank.txt", b"  \n\n\t\n", "the file is empty"),
        ("short.txt", b"To be, or not to be.\n", "too little text"),
        ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not UTF-8 text"),
        ("empty.csv", b"", "the file is empty"),
        ("header.csv", b"date,value\n", "no rows"),
    ],
)
def test_an_empty_or_unusable_file_is_refused_and_nothing_is_written(tmp_path, run_cli, name, content, message):
    data = tmp_path / name
    data.write_bytes(content)
    assert_clean_error(run_cli("init", data), message)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_init_proposes_a_global_model_for_many_series_in_long_format(tmp_path, run_cli):
    rows = []
    for i, length in enumerate((15, 22, 40)):  # yearly series of differing lengths and ends
        years = pd.date_range(end=f"{1990 + i}-01-01", periods=length, freq="YS")
        rows += [
            {"unique_id": f"Y{i}", "ds": d.strftime("%Y-%m-%d"), "y": 100 + t, "region": "north"} for t, d in enumerate(years)
        ]
    data = tmp_path / "yearly.csv"
    pd.DataFrame(rows).to_csv(data, index=False)
    result = run_cli("init", data).ok()
    assert "column 'unique_id' tells 3 series apart" in result.out
    config = load_config(data.with_suffix(".yaml"))
    assert config.data.series_column == "unique_id" and config.data.target == ["y"] and config.data.static == ["region"]
    assert (config.data.horizon, config.data.val_rows, config.data.test_rows) == (6, 6, 6)  # M4: yearly 6
    assert config.data.context_length <= 22 - 12  # the median series can fill it
