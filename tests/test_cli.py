"""End to end through the real entry point: train -> evaluate -> predict, and every bad input
ending in one `Error:` line, exit code 2 and no traceback."""

import json
import re
import subprocess
import sys

import pytest
import yaml
from conftest import assert_clean_error

from seqtool import __version__
from seqtool.data.text import tokenize


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_train_evaluate_predict_char(tmp_path, write_config, run_cli, kind):
    run = tmp_path / "run"
    config = write_config(training={"max_steps": 15})
    assert run_cli("train", config, f"model.type={kind}", "--run-dir", run).code == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["type"] == kind  # resolved, after overrides

    evaluated = run_cli("evaluate", run, "--json")
    assert evaluated.code == 0, evaluated
    metrics = json.loads(evaluated.out)  # exactly one JSON object on stdout
    for key in ("loss", "perplexity", "bits_per_token", "bits_per_char", "unigram_loss", "unigram_perplexity"):
        assert isinstance(metrics[key], float), key

    table = run_cli("evaluate", run)
    assert "unigram" in table.out and "perplexity" in table.out

    first = run_cli("predict", run, "--prompt", "ROMEO:", "--length", "40", "--temperature", "0.8", "--seed", "3")
    second = run_cli("predict", run / "best.pt", "--prompt", "ROMEO:", "--length", "40", "--temperature", "0.8", "--seed", "3")
    assert first.code == 0, first
    assert first.out == second.out  # same seed, same text; a run dir means its best checkpoint
    assert first.out.startswith("ROMEO:") and len(first.out) == len("ROMEO:") + 40 + 1


def test_word_level_language_model(tmp_path, write_config, run_cli):
    run = tmp_path / "run"
    config = write_config(data={"tokenizer": "word"}, training={"max_steps": 15, "seq_len": 8})
    assert run_cli("train", config, "--run-dir", run).code == 0
    metrics = json.loads(run_cli("evaluate", run, "--json").out)
    assert "bits_per_token" in metrics and "bits_per_char" not in metrics
    out = run_cli("predict", run, "--prompt", "the cat", "--length", "12", "--seed", "1", "--top-k", "3").out
    assert out.startswith("the cat") and out[len("the cat")] in " .,;:!?\n" and "<unk>" not in out
    assert len(tokenize(out, "word")) == 2 + 12 + 1  # prompt, 12 generated tokens, the final newline


def test_predict_samples_and_greedy(tmp_path, write_config, run_cli):
    run = tmp_path / "run"
    assert run_cli("train", write_config(training={"max_steps": 10}), "--run-dir", run).code == 0
    many = run_cli("predict", run, "--length", "20", "--num-samples", "3", "--seed", "0")
    assert many.out.count("--- sample") == 3
    greedy = [
        run_cli("predict", run, "--prompt", "JU", "--temperature", "0", "--length", "20", "--seed", str(s)).out for s in (1, 2)
    ]
    assert greedy[0] == greedy[1]

    def samples(out: str) -> list[str]:  # each sample is followed by "\n", and a blank line between samples
        parts = re.split(r"--- sample \d of \d ---\n", out)[1:]
        return [part[:-2] for part in parts[:-1]] + [parts[-1][:-1]]

    batch = run_cli("predict", run, "--prompt", "JU", "--temperature", "0", "--length", "20", "--num-samples", "2").out
    assert samples(batch) == [greedy[0][:-1]] * 2  # one batch, each stream as if generated alone
    texts = samples(many.out)
    assert len(set(texts)) == 3 and all(len(t) == 20 for t in texts)  # independent draws, no prompt


def test_evaluate_on_another_file_and_test_split(tmp_path, write_config, run_cli, corpus):
    run = tmp_path / "run"
    assert run_cli("train", write_config(data={"test_fraction": 0.1}, training={"max_steps": 10}), "--run-dir", run).code == 0
    test = json.loads(run_cli("evaluate", run, "--split", "test", "--json").out)
    assert json.loads(run_cli("evaluate", run, "--json").out) == test and test["split"] == "test"  # the default
    assert json.loads(run_cli("evaluate", run, "--split", "val", "--json").out)["loss"] != test["loss"]
    other = json.loads(run_cli("evaluate", run, "--data", corpus, "--json").out)
    n = len(corpus.read_text())
    assert n - 2 * 8 <= other["tokens"] < n  # the whole file, less at most two tokens per stream


def test_existing_run_dir_is_never_overwritten_silently(tmp_path, write_config, run_cli):
    run = tmp_path / "run"
    config = write_config(training={"max_steps": 5})
    assert run_cli("train", config, "--run-dir", run).code == 0
    before = (run / "last.pt").read_bytes()
    assert_clean_error(run_cli("train", config, "--run-dir", run), "already holds a run", "--resume", "--force")
    assert (run / "last.pt").read_bytes() == before
    broken = run_cli("train", config, f"data.path={tmp_path / 'absent.txt'}", "--run-dir", run, "--force")
    assert_clean_error(broken, "data file not found")
    assert (run / "last.pt").read_bytes() == before  # a --force run that fails early replaces nothing
    assert run_cli("train", config, "seed=99", "--run-dir", run, "--force").code == 0
    assert (run / "last.pt").read_bytes() != before


def test_default_run_dir_is_runs_slash_config_stem(tmp_path, write_config, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli("train", write_config("my_experiment.yaml", training={"max_steps": 3})).code == 0
    assert (tmp_path / "runs" / "my_experiment" / "last.pt").is_file()


def test_bad_config_inputs(tmp_path, write_config, run_cli):
    config = write_config()
    assert_clean_error(run_cli("train", config, "training.lrr=0.1"), "training.lrr", "did you mean 'training.lr'")
    assert_clean_error(run_cli("train", config, "training.lr=abc"), "training.lr", "must be a number")
    assert_clean_error(run_cli("train", tmp_path / "nope.yaml"), "config file not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {path: x.txt}\ntraining: a: b\n")
    assert_clean_error(run_cli("train", bad), "invalid YAML", "line 2")


def test_bad_data_inputs(tmp_path, write_config, run_cli):
    missing = write_config("missing.yaml", data={"path": str(tmp_path / "absent.txt")})
    assert_clean_error(run_cli("train", missing, "--run-dir", tmp_path / "r1"), "data file not found", "absent.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert_clean_error(
        run_cli("train", write_config("e.yaml", data={"path": str(empty)}), "--run-dir", tmp_path / "r2"), "empty.txt", "empty"
    )
    binary = tmp_path / "latin1.txt"
    binary.write_bytes(("café " * 2000).encode("latin-1"))
    assert_clean_error(
        run_cli("train", write_config("b.yaml", data={"path": str(binary)}), "--run-dir", tmp_path / "r3"),
        "not UTF-8",
        "byte offset 3",
    )
    short = tmp_path / "short.txt"
    short.write_text("tiny text\n" * 5)
    assert_clean_error(
        run_cli("train", write_config("s.yaml", data={"path": str(short)}), "--run-dir", tmp_path / "r4"),
        "fewer than",
        "batch_size",
    )
    assert not (tmp_path / "r1").exists()  # nothing written for a run that never started


def test_bad_checkpoint_inputs(tmp_path, write_config, run_cli):
    assert_clean_error(run_cli("evaluate", tmp_path / "nothing"), "checkpoint not found")
    (tmp_path / "emptydir").mkdir()
    assert_clean_error(run_cli("evaluate", tmp_path / "emptydir"), "no checkpoint in")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 not a checkpoint")
    assert_clean_error(run_cli("evaluate", garbage), "not a seqtool checkpoint", "garbage.pt")
    run = tmp_path / "run"
    assert run_cli("train", write_config(training={"max_steps": 5}), "--run-dir", run).code == 0
    data = (run / "best.pt").read_bytes()
    (run / "best.pt").write_bytes(data[: len(data) // 2])
    assert_clean_error(run_cli("predict", run, "--length", "5"), "best.pt", "truncated")
    assert_clean_error(run_cli("evaluate", run / "last.pt", "--split", "test"), "no test split")
    assert_clean_error(run_cli("evaluate", run / "last.pt", "--split", "train"), "--split must be val or test")
    assert_clean_error(run_cli("predict", run / "last.pt", "--prompt", "Ωmega"), "never saw", "Ω")


def test_usage_errors_exit_2(tmp_path, write_config, run_cli):
    assert run_cli("train").code == 2
    run = tmp_path / "run"
    run_cli("train", write_config(training={"max_steps": 2}), "--run-dir", run).ok()
    assert_clean_error(run_cli("predict", run, "--length", "zero"), "--length must be an integer, got 'zero'")
    assert_clean_error(run_cli("predict", run, "--length", "0"), "--length must be at least 1")


def test_debug_shows_the_traceback(tmp_path, run_cli):
    result = run_cli("evaluate", tmp_path / "nothing", "--debug")
    assert result.code == 2 and "Traceback" in result.err


def test_version(run_cli):
    result = run_cli("--version")
    assert result.code == 0 and result.out.strip() == f"seqtool {__version__}"


def test_help_is_fast_because_it_does_not_import_torch():
    # `predict --help` and `evaluate --help` import the installed task kinds (and torch) to list
    # each kind's options.
    code = "import sys; sys.argv = ['seqtool', '--help']\nfrom seqtool.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'\n"
    for args in ([], ["train"], ["runs"], ["tasks"]):
        script = code.replace("['seqtool', '--help']", repr(["seqtool", *args, "--help"]))
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "Usage" in result.stdout


def _help(run_cli, monkeypatch, *command: str) -> str:
    monkeypatch.setenv("COLUMNS", "200")  # one help line per option
    result = run_cli(*command, "--help")
    assert result.code == 0, result
    return result.out


def test_help_shows_every_default_and_no_value_placeholder_on_flags(run_cli, monkeypatch):
    predict = _help(run_cli, monkeypatch, "predict")
    for option, default in (
        ("--length", "500"),
        ("--temperature", "1.0"),
        ("--num-samples", "1"),
        ("--seed", "random"),
        ("--top-k", "all tokens"),
        ("--output", "stdout"),
        ("--horizon", "the model's horizon"),
    ):
        line = next(line for line in predict.splitlines() if f" {option} " in line)
        assert f"[default: {default}]" in line, line
    train = _help(run_cli, monkeypatch, "train")
    assert "Usage: seqtool train [OPTIONS] CONFIG [OVERRIDES]..." in train
    assert "{" not in train.split("Usage:")[1].splitlines()[0]
    evaluate = _help(run_cli, monkeypatch, "evaluate")
    for text in (train, evaluate, _help(run_cli, monkeypatch)):
        assert "<bool>" not in text
    beam = next(line for line in evaluate.splitlines() if " --beam-size " in line)  # a kind's evaluate option
    assert "[default: model.beam_size]" in beam and "no options" not in evaluate


def test_commands_are_listed_in_the_order_a_user_meets_them(run_cli, monkeypatch):
    listing = _help(run_cli, monkeypatch).split("Commands")[1]
    order = ["init", "train", "evaluate", "predict", "runs", "compare", "plot", "export"]
    positions = [listing.index(f" {name} ") for name in order]
    assert positions == sorted(positions), listing


def test_an_unseen_prompt_character_is_refused_before_anything_is_written(tmp_path, write_config, run_cli):
    run = tmp_path / "run"
    assert run_cli("train", write_config(training={"max_steps": 5}), "--run-dir", run).code == 0
    result = run_cli("predict", run, "--prompt", "Zoë", "--length", "10")
    assert_clean_error(result, "never saw", "ë")
    assert result.out == ""


# The options of each command that take a value (flags take none); predict's are its kinds', listed apart.
VALUED_OPTIONS = {
    "init": {"--task"},
    "train": {"--run-dir", "--init-from"},
    "evaluate": {"--data", "--split", "--plot"},
    "predict": set(),
    "runs": set(),
    "compare": {"--models", "--seeds", "--sweep", "--output"},
    "plot": {"--output"},
    "export": {"--format", "--output"},
}


@pytest.mark.parametrize("command", sorted(VALUED_OPTIONS))
def test_every_option_that_takes_a_value_shows_its_default(run_cli, monkeypatch, command):
    rows: list[str] = []
    for line in _help(run_cli, monkeypatch, command).splitlines():
        if re.match(r"│ +--", line):
            rows.append(line)
        elif rows and line.startswith("│ ") and not rows[-1].endswith("╯"):
            rows[-1] += line  # a help text wrapped onto the next line
    valued = {re.match(r"│ +(--[\w-]+) +<", row).group(1): row for row in rows if re.match(r"│ +--[\w-]+ +<", row)}
    assert set(valued) == VALUED_OPTIONS[command], sorted(valued)  # the parse found every one
    assert all("[default: " in row for row in valued.values()), [row for row in valued.values() if "[default: " not in row]


def test_an_os_error_inside_seqtool_is_a_bug_with_its_traceback_not_a_users_error(tmp_path, write_config, run_cli, monkeypatch):
    """Only a path the user named becomes one Error: line (seqtool.errors.reading_user_file);
    a FileNotFoundError from seqtool's own code is a bug and keeps its traceback."""
    from seqtool import engine

    run = tmp_path / "run"
    run_cli("train", write_config(training={"max_steps": 2}), "--run-dir", run).ok()
    assert_clean_error(run_cli("evaluate", run, "--data", tmp_path / "absent.txt"), "absent.txt", "not found")

    def broken(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "/internal/cache/file")

    monkeypatch.setattr(engine, "evaluate", broken)
    with pytest.raises(FileNotFoundError):
        run_cli("evaluate", run)


def test_a_reader_that_leaves_does_not_stop_training(tmp_path, write_config):
    """`seqtool train ... | head -1`: once the pipe closes, output stops and training goes on to
    its end and its checkpoint (it died with exit 1 and no message)."""
    import subprocess
    import sys

    config = write_config(training={"max_steps": 30, "log_every": 1, "eval_every": 10})
    command = [sys.executable, "-m", "seqtool", "train", str(config), "--run-dir", str(tmp_path / "run")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline()  # the first line, then the reader leaves
    process.stdout.close()
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0 and b"Traceback" not in err and b"BrokenPipe" not in err, err[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 30


def test_a_place_that_cannot_be_written_is_one_line_naming_it(tmp_path, write_config, run_cli):
    """Output paths the user names (plot --output, predict --output, --run-dir) in a folder
    that does not exist: one Error: line naming the file, no traceback (once main stopped turning
    every OSError into exit 2, these had become tracebacks)."""
    run = tmp_path / "run"
    run_cli("train", write_config(training={"max_steps": 2}), "--run-dir", run).ok()
    absent = tmp_path / "no-such-folder"
    run_cli("plot", run, "--output", absent / "p.png").clean_error(f"could not write {absent / 'p.png'}", "No such file")
    file = tmp_path / "a-file"
    file.write_text("not a folder")
    run_cli("train", write_config(training={"max_steps": 2}), "--run-dir", file / "run").clean_error("could not write", "a-file")
    assert not list(tmp_path.glob("**/*.seqtool-tmp"))
