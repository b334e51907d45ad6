"""Shared fixtures: a tiny corpus with learnable structure, tiny configs, an in-process CLI runner."""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from seqtool import testing
from seqtool.testing import CliResult

REPO = Path(__file__).resolve().parent.parent


def make_corpus(lines: int = 600, seed: int = 0) -> str:
    """Play-like text: speaker lines and short sentences from a small grammar."""
    rng = random.Random(seed)
    speakers = ["ROMEO", "JULIET", "NURSE"]
    subjects = ["the cat", "my lord", "a rose", "the night"]
    verbs = ["sees", "loves", "fears", "keeps"]
    objects = ["the moon.", "her name.", "the sword.", "a kiss."]
    out = []
    for _ in range(lines // 2):
        out.append(f"{rng.choice(speakers)}:")
        out.append(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}")
    return "\n".join(out) + "\n"


def load_script(name: str) -> Any:
    """A script of `scripts/` imported as a module (the documentation generators live there)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"scripts_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(make_corpus(), encoding="utf-8")
    return path


def tiny_config(data_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    config = {
        "task": "language_model",
        "seed": 7,
        "data": {"path": str(data_path), "tokenizer": "char", "val_fraction": 0.1},
        "model": {"type": "lstm", "hidden_size": 32, "num_layers": 2, "dropout": 0.1, "embedding_size": 16},
        "training": {
            "batch_size": 8,
            "seq_len": 32,
            "epochs": None,
            "max_steps": 40,
            "lr": 0.01,
            "eval_every": 10,
            "log_every": 5,
            "device": "cpu",
            "warmup_steps": 5,
        },
    }
    for section, values in sections.items():
        config[section].update(values)
    return config


@pytest.fixture
def write_config(tmp_path: Path, corpus: Path):
    def write(name: str = "tiny.yaml", **sections: dict[str, Any]) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(tiny_config(corpus, **sections)), encoding="utf-8")
        return path

    return write


@pytest.fixture
def run_cli():
    """Run `seqtool ARGS` in-process through the real entry point (exit-code mapping included)."""
    return testing.run_cli


def assert_clean_error(result: CliResult, *fragments: str) -> None:
    """Exit code 2, one `Error: ...` line on stderr naming every fragment, no traceback."""
    result.clean_error(*fragments)


def interrupt_on_call(monkeypatch, owner: type, name: str, call_number: int, action) -> None:
    """Wrap `owner.name` so that `action()` runs just before its `call_number`-th call (1-based):
    a simulated crash (raise), Ctrl-C or SIGTERM (os.kill) at a chosen training step.
    `monkeypatch.undo()` or `monkeypatch.setattr` back restores it."""
    original = getattr(owner, name)
    calls = {"n": 0}

    def wrapper(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call_number:
            action()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


def crash_and_resume(monkeypatch, task_class: type, config, run_dir: Path, crash_at: int) -> None:
    """Train `config` into `run_dir`, crashing (MemoryError) before the `crash_at`-th training
    step, then resume it to the end."""
    from seqtool.engine import train

    original = task_class.training_loss
    interrupt_on_call(monkeypatch, task_class, "training_loss", crash_at, raise_error(MemoryError("simulated crash")))
    with pytest.raises(MemoryError):
        train(config, run_dir)
    monkeypatch.setattr(task_class, "training_loss", original)
    train(config, run_dir, resume=True)


@contextlib.contextmanager
def lock_held_by_another_process(run_dir: Path, writes_pid: bool = True):
    """A separate process holding the run directory's lock for the block, as a training run
    does (or, without `writes_pid`, as one does in the instant between locking the file and
    writing its PID into it): yields its PID."""
    if writes_pid:
        code = (
            "import sys, time\nfrom pathlib import Path\nfrom seqtool.lock import run_dir_lock\n"
            "with run_dir_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(120)\n"
        )
    else:
        code = (
            "import fcntl, os, sys, time\nfrom pathlib import Path\nfrom seqtool.lock import lock_path\n"
            "fd = os.open(lock_path(Path(sys.argv[1])), os.O_RDWR | os.O_CREAT, 0o644)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(120)\n"
        )
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def raise_error(error: BaseException):
    def action():
        raise error

    return action


def send_signal(signum: int):
    import os

    return lambda: os.kill(os.getpid(), signum)


# ---- shared data and config builders (forecast, classify) ----------------------------------


def sine_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Sine (period 20) plus trend plus noise, daily."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    value = 10 + 0.02 * t + 3 * np.sin(2 * np.pi * t / 20) + rng.normal(0, 0.3, rows)
    return pd.DataFrame(
        {"Date": pd.date_range("2020-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"), "Value": value.round(4)}
    )


def forecast_config(path, **sections):
    config = {
        "task": "forecast",
        "seed": 3,
        "data": {
            "path": str(path),
            "date_column": "Date",
            "target": "Value",
            "context_length": 40,
            "horizon": 10,
            "val_fraction": 0.2,
            "seasonality": 20,
        },
        "model": {"type": "lstm", "hidden_size": 32, "num_layers": 1, "dropout": 0.0},
        "training": {
            "batch_size": 32,
            "epochs": 25,
            "lr": 0.01,
            "eval_every": 50,
            "log_every": 25,
            "device": "cpu",
            "loss": "mse",
        },
    }
    for section, values in sections.items():
        config[section].update(values)
    return config


FILLER = "the a of and to in is it that was for on with as by this at from or an be".split()


def memory_frame(rows: int = 800, length: int = 20, seed: int = 0) -> pd.DataFrame:
    """The label is the first word ("good" or "bad"), followed by `length` filler words: the
    answer sits early in a long sequence, so the model must carry it to the end."""
    rng = np.random.default_rng(seed)
    first = rng.choice(["good", "bad"], rows)
    texts = [f"{w} " + " ".join(rng.choice(FILLER, length)) for w in first]
    return pd.DataFrame({"review": texts, "sentiment": np.where(first == "good", "pos", "neg")})


def classify_config(path, **sections):
    config = {
        "task": "classify",
        "seed": 5,
        "data": {"path": str(path), "text_column": "review", "label_column": "sentiment", "min_freq": 1, "val_fraction": 0.2},
        "model": {"type": "lstm", "hidden_size": 32, "num_layers": 1, "embedding_size": 16, "dropout": 0.0, "pooling": "last"},
        "training": {"batch_size": 32, "epochs": 15, "lr": 0.01, "eval_every": 30, "log_every": 15, "device": "cpu"},
    }
    for section, values in sections.items():
        config[section].update(values)
    return config
