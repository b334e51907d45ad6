"""Kill anywhere, lose nothing: SIGKILL `seqtool train` at random moments, then `--resume`.

For each task kind a reference run goes uninterrupted. Each trial starts the same training in a
new process, kills it with SIGKILL after a random delay (during start-up, training, checkpoint
writes or after the end), checks that every checkpoint on disk still loads, resumes, and requires
the final weights and loss curve to equal the reference bit for bit. Checkpoints are written every
two steps so that many kills land in the middle of a write.

SEQTOOL_KILL_TRIALS sets the trials per task kind (default 7, so 21 in all); raise it for a soak.
"""

import json
import os
import random
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import classify_config, forecast_config, make_corpus, memory_frame, sine_frame

from seqtool.checkpoint import load_checkpoint

TRIALS = int(os.environ.get("SEQTOOL_KILL_TRIALS", "7"))
FAST = {"eval_every": 2, "log_every": 1}


def write_config(kind: str, folder) -> str:
    if kind == "language_model":
        (folder / "corpus.txt").write_text(make_corpus(), encoding="utf-8")
        config = {
            "task": "language_model",
            "seed": 3,
            "data": {"path": str(folder / "corpus.txt"), "val_fraction": 0.1},
            "model": {"hidden_size": 32, "embedding_size": 16, "dropout": 0.1},
            "training": {"batch_size": 8, "seq_len": 32, "epochs": None, "max_steps": 30, "device": "cpu", **FAST},
        }
    elif kind == "forecast":
        sine_frame().to_csv(folder / "sine.csv", index=False)
        config = forecast_config(folder / "sine.csv", training={"epochs": None, "max_steps": 30, **FAST}, model={"dropout": 0.1})
    else:
        memory_frame(rows=300).to_csv(folder / "texts.csv", index=False)
        config = classify_config(folder / "texts.csv", training={"epochs": None, "max_steps": 30, **FAST}, model={"dropout": 0.1})
    path = folder / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def command(config: str, run_dir, *extra: str) -> list[str]:
    return [sys.executable, "-m", "seqtool", "train", config, "--run-dir", str(run_dir), *extra]


def outcome(run_dir):
    weights = load_checkpoint(run_dir / "last.pt")["model"]
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return weights, [(e["step"], e["split"], e["loss"]) for e in events]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["language_model", "forecast", "classify"])
def test_sigkill_anywhere_then_resume_equals_an_uninterrupted_run(tmp_path, kind):
    config = write_config(kind, tmp_path)
    start = time.perf_counter()
    subprocess.run(command(config, tmp_path / "reference"), check=True, capture_output=True)
    duration = time.perf_counter() - start
    reference_weights, reference_curve = outcome(tmp_path / "reference")
    rng = random.Random(f"{kind}-{TRIALS}")
    report = {"killed": 0, "mid_run": 0, "matched": 0}
    for trial in range(TRIALS):
        run = tmp_path / f"trial{trial}"
        process = subprocess.Popen(command(config, run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if trial % 2:  # anywhere: start-up, training, checkpoint writes, or after the end
            time.sleep(rng.uniform(0.3, 1.05) * duration)
        else:  # once training is under way, so that most of these land mid-run
            deadline = time.perf_counter() + 2 * duration
            while not (run / "last.pt").exists() and process.poll() is None and time.perf_counter() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.25))
        if process.poll() is None:
            report["killed"] += 1
            process.kill()
        process.wait()
        for name in ("last.pt", "best.pt"):  # whatever is on disk must load: never half a checkpoint
            if (run / name).exists():
                load_checkpoint(run / name)
        if (run / "last.pt").exists() and not load_checkpoint(run / "last.pt")["train_state"]["finished"]:
            report["mid_run"] += 1
        resumed = subprocess.run(command(config, run, "--resume"), capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        assert "Traceback" not in resumed.stderr
        weights, curve = outcome(run)
        assert curve == reference_curve, f"trial {trial}: loss curve differs after resume"
        assert all(torch.equal(weights[k], reference_weights[k]) for k in reference_weights), f"trial {trial}: weights differ"
        assert not list(run.glob("*.seqtool-tmp")), "temporary files of killed writes are cleaned up on resume"
        report["matched"] += 1
    assert report["matched"] == TRIALS and report["killed"] >= 1 and report["mid_run"] >= 1, report
    print(f"{kind}: {report} over {TRIALS} trials, reference run {duration:.1f} s")
