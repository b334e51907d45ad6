import dataclasses
from pathlib import Path

import pytest
import yaml
from conftest import load_script

from seqtool.configure import build_config, config_from_dict, load_config
from seqtool.errors import SeqtoolError
from seqtool.schema import dump_yaml, flatten, parse_duration, parse_yaml

REPO = Path(__file__).resolve().parent.parent


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


BASE = "data: {path: x.txt}\n"


def test_scientific_notation_is_a_float_not_a_string(tmp_path):
    config = load_config(config_file(tmp_path, BASE + "training: {lr: 1e-3, weight_decay: 5E-4}\n"))
    assert config.training.lr == pytest.approx(0.001)
    assert isinstance(config.training.lr, float)
    assert config.training.weight_decay == pytest.approx(0.0005)


def test_numbers_given_as_strings_are_coerced_through_the_schema(tmp_path):
    config = load_config(config_file(tmp_path, BASE + 'training: {lr: "0.01", batch_size: "32", epochs: 2.0}\n'))
    assert config.training.lr == 0.01 and config.training.batch_size == 32 and config.training.epochs == 2


def test_yes_and_on_are_not_booleans_unless_the_key_is_boolean(tmp_path):
    assert parse_yaml("a: yes\nb: on\nc: true", "x") == {"a": "yes", "b": "on", "c": True}
    config = load_config(config_file(tmp_path, BASE + "model: {tie_weights: yes, embedding_size: 8, hidden_size: 8}\n"))
    assert config.model.tie_weights is True
    with pytest.raises(SeqtoolError, match="'data.tokenizer' must be one of char, word, got 'on'"):
        load_config(config_file(tmp_path, "data: {path: x.txt, tokenizer: on}\n"))


def test_unknown_key_names_key_file_and_closest_valid_key(tmp_path):
    path = config_file(tmp_path, BASE + "training: {lrr: 0.1}\n")
    with pytest.raises(SeqtoolError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "'training.lrr'" in message and "did you mean 'training.lr'?" in message


def test_key_in_the_wrong_section_points_to_the_right_one(tmp_path):
    with pytest.raises(SeqtoolError, match="'model.lr' is not a known key .did you mean 'training.lr'"):
        load_config(config_file(tmp_path, BASE + "model: {lr: 0.1}\n"))


def test_unknown_top_level_section(tmp_path):
    with pytest.raises(SeqtoolError, match="'modle' is not a known key .did you mean 'model'"):
        load_config(config_file(tmp_path, BASE + "modle: {type: gru}\n"))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("training: {lr: fast}", "'training.lr' must be a number, got 'fast'"),
        ("training: {batch_size: 0}", "'training.batch_size' must be at least 1, got 0"),
        ("training: {batch_size: 2.5}", "'training.batch_size' must be an integer"),
        ("model: {dropout: 1.5}", "'model.dropout' must be less than 1.0"),
        ("model: {type: lsmt}", "'model.type' must be one of the installed cells gru, lstm, .*, got 'lsmt' .did you mean 'lstm'"),
        ("training: {max_time: soon}", "'training.max_time'.*not a duration"),
        ("training: {device: gpu}", "'training.device' must be auto, cpu, cuda"),
        ("training: {lr: .nan}", "'training.lr' must be a finite number"),
        ("model: [1, 2]", "'model' must be a mapping"),
    ],
)
def test_bad_values_name_the_dotted_path(tmp_path, text, expected):
    with pytest.raises(SeqtoolError, match=expected):
        load_config(config_file(tmp_path, BASE + text + "\n"))


def test_cross_key_rules(tmp_path):
    with pytest.raises(SeqtoolError, match="tie_weights.*embedding_size == model.hidden_size"):
        load_config(config_file(tmp_path, BASE + "model: {tie_weights: true, embedding_size: 8, hidden_size: 16}\n"))
    with pytest.raises(SeqtoolError, match="nonlinearity.*rnn only"):
        load_config(config_file(tmp_path, BASE + "model: {type: lstm, nonlinearity: relu}\n"))
    with pytest.raises(SeqtoolError, match="at least one budget"):
        load_config(config_file(tmp_path, BASE + "training: {epochs: null}\n"))
    with pytest.raises(SeqtoolError, match="data.path' is missing"):
        load_config(config_file(tmp_path, "data: {tokenizer: char}\n"))
    with pytest.raises(SeqtoolError, match="data.val' is missing"):
        load_config(config_file(tmp_path, "data: {train: a.txt}\n"))


def test_overrides_are_parsed_as_yaml_and_named_in_errors(tmp_path):
    path = config_file(tmp_path, BASE)
    config = load_config(path, ["training.max_steps=200", "model.type=gru", "training.lr=1e-4", "training.grad_clip=null"])
    assert config.training.max_steps == 200 and config.model.type == "gru"
    assert config.training.lr == pytest.approx(1e-4) and config.training.grad_clip is None
    with pytest.raises(SeqtoolError, match="command-line override 'training.lrr' is not a known key .did you mean 'training.lr'"):
        load_config(path, ["training.lrr=0.1"])
    with pytest.raises(SeqtoolError, match="command-line override 'model.hidden_size' must be an integer"):
        load_config(path, ["model.hidden_size=big"])
    with pytest.raises(SeqtoolError, match="not KEY=VALUE"):
        load_config(path, ["training.lr"])


def test_a_misspelt_section_in_an_override_names_the_override_not_the_file(tmp_path):
    path = config_file(tmp_path, BASE)
    with pytest.raises(SeqtoolError) as caught:
        load_config(path, ["trainig.lr=1e-3"])
    assert str(caught.value).startswith("command-line override 'trainig.lr': 'trainig' is not a known key")
    assert "did you mean 'training'" in str(caught.value) and str(path) not in str(caught.value)


@pytest.mark.parametrize(("typed", "meant"), [("lerning_rate", "lr"), ("learning_rate", "lr"), ("n_layer", "num_layers")])
def test_names_from_other_tools_and_their_misspellings_suggest_the_key_meant(tmp_path, typed, meant):
    section = "model" if meant == "num_layers" else "training"
    with pytest.raises(SeqtoolError, match=rf"did you mean '{section}.{meant}'\?"):
        load_config(config_file(tmp_path, BASE), [f"{section}.{typed}=2"])


def test_file_level_errors(tmp_path):
    with pytest.raises(SeqtoolError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(SeqtoolError, match="empty"):
        load_config(config_file(tmp_path, "# nothing\n"))
    with pytest.raises(SeqtoolError, match=r"line 2, column \d+: invalid YAML"):
        load_config(config_file(tmp_path, "data: {path: x}\ntraining: a: b\n"))
    with pytest.raises(SeqtoolError, match="must be a mapping"):
        load_config(config_file(tmp_path, "- a\n- b\n"))


def test_durations():
    assert parse_duration("10m") == 600 and parse_duration("90s") == 90 and parse_duration("1h30m") == 5400
    assert parse_duration(45) == 45 and parse_duration("120") == 120
    for bad in ("soon", "10x", "", "-5"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_defaults_fill_missing_sections():
    config = build_config({"data": {"path": "x.txt"}}, "inline")
    assert config.model.type == "lstm" and config.training.grad_clip == 1.0 and config.training.device == "auto"


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    config = load_config(path)
    resolved = flatten(config.to_dict())
    written = flatten(parse_yaml(path.read_text(encoding="utf-8"), str(path)))
    for key, value in written.items():  # every key the file sets is kept as written (a name may stand for a list of one)
        assert resolved[key] == value or resolved[key] == [value], key
    assert config_from_dict(parse_yaml(dump_yaml(config.to_dict()), "run")) == config  # and round-trips a run directory


def test_config_reference_is_up_to_date():
    reference_markdown = load_script("config_reference").reference_markdown
    documented = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    assert documented == reference_markdown(), "docs/config.md is stale: run python scripts/config_reference.py"
    for key in ("`training.on_nan`", "`data.context_length`", "`model.pooling`", "`data.text_column`"):
        assert key in documented


@pytest.mark.parametrize(
    "task,data,given,expected",
    [
        (
            "forecast",
            {"path": "x.csv", "target": "y"},
            "training: {seq_len: 128}",
            "'training.seq_len' applies to task: language_model, not forecast",
        ),
        (
            "forecast",
            {"path": "x.csv", "target": "y"},
            "model: {embedding_size: 64}",
            "'model.embedding_size' applies to task: .*not forecast",
        ),
        (
            "long_range",
            {"synthetic": "adding"},
            "model: {embedding_size: 8}",
            "'model.embedding_size' does not apply to data.synthetic: adding",
        ),
        (
            "language_model",
            {"path": "x.txt"},
            "training: {loss: mse}",
            "'training.loss' applies to task: forecast, not language_model",
        ),
        (
            "classify",
            {"path": "x.csv"},
            "model: {tie_weights: false}",
            "'model.tie_weights' applies to task: language_model, not classify",
        ),
        (
            "language_model",
            {"path": "x.txt"},
            "training: {class_weights: none}",
            "'training.class_weights' applies to task: classify",
        ),
    ],
)
def test_a_key_the_task_does_not_read_is_an_error_even_at_its_default(tmp_path, task, data, given, expected):
    text = yaml.safe_dump({"task": task, "data": data}) + given + "\n"
    with pytest.raises(SeqtoolError, match=expected):
        load_config(config_file(tmp_path, text))
    config = build_config({"task": task, "data": data}, "x")
    assert config_from_dict(config.to_dict()) == config  # a run directory's config, only the keys its task reads
    every_key = {k: v for k, v in dataclasses.asdict(config).items() if k != "unread"}  # what earlier versions stored
    assert config_from_dict(every_key) == config  # still loads
