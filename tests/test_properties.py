"""Property-based tests: whatever the input, loaders either load it or raise SeqtoolError (which
the CLI turns into one `Error:` line and exit code 2), never another exception; and every input
that is valid by construction loads, with its values kept (so a loader that refuses everything,
or repairs what it should keep, fails here).

Example counts stay small for CI; set SEQTOOL_FUZZ_EXAMPLES for a longer run.
"""

import os

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqtool.configure import build_config, load_config
from seqtool.data import csvfile
from seqtool.data.text import Vocabulary, detokenize, tokenize
from seqtool.errors import SeqtoolError
from seqtool.tasks.classify import ClassifyTask
from seqtool.tasks.forecast import ForecastTask

EXAMPLES = int(os.environ.get("SEQTOOL_FUZZ_EXAMPLES", "60"))
fuzz = settings(  # derandomized: the same examples on every run, so CI is deterministic
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

KEYS = [
    "task",
    "seed",
    "data",
    "model",
    "training",
    "path",
    "lr",
    "type",
    "hidden_size",
    "batch_size",
    "epochs",
    "max_time",
    "target",
    "date_column",
    "tokenizer",
    "loss",
    "quantiles",
    "bogus",
    "dropout",
    "pooling",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["1e-3", "yes", "on", "lstm", "forecast", "classify", "10m", "-1", "[]", "{}"]),
)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.sampled_from(KEYS), children, max_size=4)),
    max_leaves=12,
)


@fuzz
@given(st.dictionaries(st.sampled_from(KEYS), trees, max_size=5))
def test_config_loader_accepts_or_refuses_any_mapping(raw):
    try:
        build_config(raw, "fuzz.yaml")
    except SeqtoolError:
        pass


valid_configs = st.fixed_dictionaries(
    {
        "task": st.just("language_model"),
        "seed": st.integers(0, 2**31 - 1),
        "data": st.fixed_dictionaries({"path": st.just("corpus.txt"), "tokenizer": st.sampled_from(["char", "word"])}),
        "model": st.fixed_dictionaries(
            {
                "type": st.sampled_from(["rnn", "lstm", "gru"]),
                "hidden_size": st.integers(1, 4096),
                "num_layers": st.integers(1, 8),
                "dropout": st.floats(0.0, 0.99),
            }
        ),
        "training": st.fixed_dictionaries(
            {
                "lr": st.one_of(st.floats(1e-8, 10.0), st.sampled_from(["1e-3", "3e-4", "0.01"])),
                "batch_size": st.integers(1, 4096),
                "max_time": st.sampled_from([None, "10m", "90s", "1h30m"]),
            }
        ),
    }
)


def _kept(config, raw) -> None:
    """Every value of `raw` is in the built config, as the schema's type."""
    assert config.seed == raw["seed"] and config.data.tokenizer == raw["data"]["tokenizer"]
    assert {k: getattr(config.model, k) for k in raw["model"]} == raw["model"]
    assert config.training.lr == float(raw["training"]["lr"]) and config.training.batch_size == raw["training"]["batch_size"]
    assert config.training.max_time == raw["training"]["max_time"]


@fuzz
@given(valid_configs)
def test_config_loader_accepts_every_valid_mapping_and_keeps_its_values(raw):
    _kept(build_config(raw, "valid.yaml"), raw)


@fuzz
@given(st.text(max_size=300))
def test_config_loader_accepts_or_refuses_any_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path, [])
    except SeqtoolError:
        pass


@fuzz
@given(valid_configs)
def test_config_loader_reads_every_valid_config_file(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    _kept(load_config(path, []), raw)


@fuzz
@given(st.binary(max_size=400))
def test_csv_reader_accepts_or_refuses_any_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("csv") / "x.csv"
    path.write_bytes(data)
    try:
        csvfile.read_csv(path)
    except SeqtoolError:
        pass


@fuzz
@given(
    st.lists(
        st.tuples(st.integers(-(10**9), 10**9), st.floats(-1e6, 1e6, allow_nan=False), st.text('abc,"é-', min_size=1)),
        min_size=1,
        max_size=30,
    ),
    st.booleans(),
)
def test_csv_reader_reads_back_every_table_pandas_writes(tmp_path_factory, rows, bom):
    frame = pd.DataFrame(rows, columns=["n", "x", "s"])
    path = tmp_path_factory.mktemp("csv") / "x.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + frame.to_csv(index=False).encode("utf-8"))
    read = csvfile.read_csv(path, strings=True)
    assert list(read.columns) == ["n", "x", "s"] and len(read) == len(frame)
    assert read["n"].astype(int).tolist() == frame["n"].tolist()
    assert read["s"].tolist() == frame["s"].tolist()


cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["", "NA", "n/a", "nan", "inf", "-", "abc", "1e308", "1e999", "2020-01-01", "2020-13-45", '"q,uo"', "é"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
)


def _csv_bytes(header, rows, bom, crlf, latin1):
    newline = "\r\n" if crlf else "\n"
    text = ",".join(header) + newline + newline.join(",".join(r) for r in rows) + newline
    data = text.encode("latin-1", errors="replace") if latin1 else text.encode("utf-8", errors="replace")
    return (b"\xef\xbb\xbf" if bom else b"") + data


@fuzz
@given(
    rows=st.lists(st.tuples(cells, cells, cells), max_size=40),
    dated=st.booleans(),
    bom=st.booleans(),
    crlf=st.booleans(),
    latin1=st.booleans(),
    context=st.integers(1, 6),
    horizon=st.integers(1, 4),
)
def test_forecast_loader_accepts_or_refuses_any_table(tmp_path_factory, rows, dated, bom, crlf, latin1, context, horizon):
    if dated:  # a mostly valid date column, so parsing goes further than the first cell
        rows = [
            (str(pd.Timestamp("2020-01-01") + pd.Timedelta(days=i)).split()[0] if i % 7 else r[0], r[1], r[2])
            for i, r in enumerate(rows)
        ]
    path = tmp_path_factory.mktemp("fc") / "series.csv"
    path.write_bytes(_csv_bytes(["d", "v", "w"], rows, bom, crlf, latin1))
    data = {
        "path": str(path),
        "target": "v",
        "features": ["w"],
        "context_length": context,
        "horizon": horizon,
        "val_fraction": 0.3,
    }
    if dated:
        data["date_column"] = "d"
    task = ForecastTask(build_config({"task": "forecast", "data": data, "training": {"max_steps": 1}}, "fuzz"))
    try:
        task.load_training_data()
    except SeqtoolError:
        pass


@fuzz
@given(
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=30, max_size=80),
    context=st.integers(1, 6),
    horizon=st.integers(1, 4),
    newest_first=st.booleans(),
)
def test_forecast_loader_loads_every_clean_series(tmp_path_factory, values, context, horizon, newest_first):
    dates = pd.date_range("2020-01-01", periods=len(values), freq="D").strftime("%Y-%m-%d")
    frame = pd.DataFrame({"d": dates, "v": values, "w": range(len(values))})
    path = tmp_path_factory.mktemp("fc") / "series.csv"
    frame.iloc[:: -1 if newest_first else 1].to_csv(path, index=False)
    data = {"path": str(path), "date_column": "d", "target": "v", "features": ["w"], "context_length": context}
    task = ForecastTask(
        build_config({"task": "forecast", "data": {**data, "horizon": horizon}, "training": {"max_steps": 1}}, "ok")
    )
    task.load_training_data()
    assert task.sample_count() >= 1


@fuzz
@given(
    rows=st.lists(st.tuples(cells, st.sampled_from(["pos", "neg", "", "1", "2.0", "NA", "x"])), max_size=40),
    bom=st.booleans(),
    crlf=st.booleans(),
    tokenizer=st.sampled_from(["word", "char"]),
)
def test_classification_loader_accepts_or_refuses_any_table(tmp_path_factory, rows, bom, crlf, tokenizer):
    path = tmp_path_factory.mktemp("cls") / "texts.csv"
    path.write_bytes(_csv_bytes(["text", "label"], rows, bom, crlf, latin1=False))
    data = {"path": str(path), "tokenizer": tokenizer, "min_freq": 1, "val_fraction": 0.3}
    task = ClassifyTask(build_config({"task": "classify", "data": data, "training": {"max_steps": 1}}, "fuzz"))
    try:
        task.load_training_data()
    except SeqtoolError:
        pass


@fuzz
@given(
    texts=st.lists(st.text("abcdefgh éü!?", min_size=1, max_size=40).filter(str.strip), min_size=20, max_size=60),
    tokenizer=st.sampled_from(["word", "char"]),
)
def test_classification_loader_loads_every_clean_table(tmp_path_factory, texts, tokenizer):
    labels = ["pos" if i % 2 else "neg" for i in range(len(texts))]
    path = tmp_path_factory.mktemp("cls") / "texts.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    data = {"path": str(path), "tokenizer": tokenizer, "min_freq": 1, "val_fraction": 0.3}
    task = ClassifyTask(build_config({"task": "classify", "data": data, "training": {"max_steps": 1}}, "ok"))
    task.load_training_data()
    assert task.labels == ["neg", "pos"] and 0.6 * len(texts) <= task.sample_count() <= 0.8 * len(texts)  # stratified 30%


@fuzz
@given(st.text(max_size=400))
def test_char_vocabulary_round_trips_any_text(text):
    vocab = Vocabulary.build(text, "char")
    assert vocab.decode(vocab.encode(text)) == text


@fuzz
@given(st.text(max_size=400))
def test_word_tokens_survive_detokenizing(text):
    tokens = tokenize(text, "word")
    assert tokenize(detokenize(tokens, "word"), "word") == tokens


def test_yaml_dumped_configs_round_trip(tmp_path):
    """A resolved config, dumped and read again, validates to the same config (resume relies on it)."""
    config = build_config({"task": "forecast", "data": {"path": "a.csv", "target": ["x", "y"]}, "training": {"lr": 1e-3}}, "x")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    assert load_config(path).to_dict() == config.to_dict()


EDGE_FILES = {
    "empty": b"",
    "only_header": b"d,v,w\n",
    "bom_crlf": b"\xef\xbb\xbfd,v,w\r\n" + b"".join(f"2020-01-{i + 1:02d},{i},{i}\r\n".encode() for i in range(28)),
    "non_utf8": "d,v,w\n2020-01-01,1,caf\xe9\n".encode("latin-1"),
    "nan_inf_cells": b"d,v,w\n"
    + b"".join(f"2020-01-{i + 1:02d},{'nan' if i == 3 else 'inf' if i == 5 else i},1\n".encode() for i in range(28)),
    "huge_numbers": b"d,v,w\n" + b"".join(f"2020-01-{i + 1:02d},1e308,{10**40}\n".encode() for i in range(28)),
    "mixed_types": b"d,v,w\n" + b"".join(f"2020-01-{i + 1:02d},{i if i % 2 else 'x'},1\n".encode() for i in range(28)),
    "very_long_line": b"d,v,w\n2020-01-01," + b"9" * 300_000 + b",1\n",
}


# What each edge file must give: None to train, else a fragment of its one `Error:` line.
EDGE_OUTCOMES = {
    ("forecast", "bom_crlf"): None,
    ("forecast", "empty"): "the file is empty",
    ("forecast", "huge_numbers"): "too large to scale",
    ("forecast", "mixed_types"): "'x' is not a number",
    ("forecast", "nan_inf_cells"): "infinite value",
    ("forecast", "non_utf8"): "not UTF-8 text (invalid byte 0xe9 at byte offset 22)",
    ("forecast", "only_header"): "header but no rows",
    ("forecast", "very_long_line"): "cannot infer the series' frequency",
    ("classify", "bom_crlf"): "the validation part is empty",  # 28 labels, one row each
    ("classify", "empty"): "the file is empty",
    ("classify", "huge_numbers"): "has a single label",
    ("classify", "mixed_types"): None,
    ("classify", "nan_inf_cells"): "missing label",
    ("classify", "non_utf8"): "not UTF-8 text (invalid byte 0xe9 at byte offset 29)",
    ("classify", "only_header"): "header but no rows",
    ("classify", "very_long_line"): "has a single label",
}


@pytest.mark.parametrize(("task", "name"), sorted(EDGE_OUTCOMES))
def test_edge_case_files_through_the_cli(tmp_path, run_cli, task, name):
    """Each trains, or ends in its one `Error:` line and exit code 2, never a traceback."""
    path = tmp_path / "edge.csv"
    data = EDGE_FILES[name]
    if task == "classify":
        data = data.replace(b"d,v,w", b"text,label,w")
    path.write_bytes(data)
    if task == "forecast":
        section = {"path": str(path), "date_column": "d", "target": "v", "features": ["w"], "context_length": 3, "horizon": 2}
    else:
        section = {"path": str(path), "min_freq": 1, "val_fraction": 0.3}
    config = tmp_path / "edge.yaml"
    config.write_text(yaml.safe_dump({"task": task, "data": section, "training": {"max_steps": 2, "device": "cpu"}}))
    result = run_cli("train", config, "--run-dir", tmp_path / "run")
    expected = EDGE_OUTCOMES[task, name]
    if expected is None:
        result.ok()
    else:
        result.clean_error(str(path), expected)
