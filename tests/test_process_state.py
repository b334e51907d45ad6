"""Importing and calling seqtool leaves the process as it was: the global random generators,
matplotlib's backend and the umask belong to the caller (a notebook, a server, a test runner)."""

from __future__ import annotations

import os
import random
import stat

import matplotlib
import numpy as np
import pytest
import torch
from conftest import tiny_config

import seqtool
from seqtool.checkpoint import atomic_write_bytes
from seqtool.configure import build_config
from seqtool.engine import train


@pytest.fixture
def char_run(tmp_path, write_config, run_cli):
    run = tmp_path / "run"
    run_cli("train", write_config(training={"max_steps": 5}), "--run-dir", run).ok()
    return run


def test_sampling_on_the_command_line_and_in_python_leaves_the_global_generator_alone(char_run, run_cli):
    torch.manual_seed(5)
    state = torch.get_rng_state()
    run_cli("predict", char_run, "--prompt", "ROMEO:", "--length", "20").ok()
    model = seqtool.load(char_run)
    first, second = (model.predict(prompt="ROMEO:", length=80) for _ in range(2))
    assert torch.initial_seed() == 5 and torch.equal(torch.get_rng_state(), state)
    assert first != second, "an unseeded call is random in Python, as on the command line"
    assert model.predict(prompt="ROMEO:", length=80, seed=3) == model.predict(prompt="ROMEO:", length=80, seed=3)


def test_the_command_line_and_python_agree_on_a_seed(char_run, run_cli):
    printed = run_cli("predict", char_run, "--prompt", "ROMEO:", "--length", "60", "--seed", "7").ok().out
    assert printed == seqtool.load(char_run).predict(prompt="ROMEO:", length=60, seed=7) + "\n"


def test_training_from_python_gives_the_callers_random_streams_back(tmp_path, corpus):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    train(build_config(tiny_config(corpus, training={"max_steps": 4}), "test"), tmp_path / "run")
    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2]) and torch.initial_seed() == 3


def test_plots_leave_matplotlibs_backend_alone(char_run, run_cli):
    chosen = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        run_cli("plot", char_run).ok()
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(chosen)
    assert (char_run / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_atomic_writes_give_normal_permissions_without_touching_the_umask(tmp_path, monkeypatch):
    previous = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda *_: pytest.fail("os.umask called: it changes every thread's umask"))
        atomic_write_bytes(tmp_path / "file.bin", b"data")
    finally:
        monkeypatch.undo()
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "file.bin").stat().st_mode) == 0o640
    assert (tmp_path / "file.bin").read_bytes() == b"data" and not list(tmp_path.glob("*.seqtool-tmp"))
