"""Speech recognition on held-out voices: configs/speech_commands.yaml trained on a whole
manifest (validation and test hold out whole voices), then the test CER/WER beside the most common
transcript, inference speed on one core as a real-time factor, feature extraction time, and the
training process's memory sampled every second (flat over the epochs, or not).

    .venv/bin/python benchmarks/speech_quality.py --manifest PATH/TO/speech/manifest.csv [--max-time 10m]
        [--also OTHER/manifest.csv ...] [--run DIR]

`--also` evaluates the trained model on other manifests too (other voices, rates, sample rates):
clips the training never saw, scored with the same decoding.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table


def extraction(manifest: Path) -> tuple[int, float, float]:
    """Clips, seconds to read and featurise them all (no cache), and the peak RSS in MiB."""
    from seqtool.tasks.speech.audio import FeatureSettings, extract

    frame = pd.read_csv(manifest)
    files = [manifest.parent / p for p in frame["path"]]
    start = time.perf_counter()
    extract(files, FeatureSettings(), 20.0, [f"row {i + 2}" for i in range(len(files))])
    return len(files), time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib(pid: int) -> float | None:
    """A process's resident memory (Linux /proc), None once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def train_watched(command: list[str]) -> tuple[float, list[tuple[float, float]]]:
    """Run the training command; its wall time and (seconds, RSS MiB) sampled every second."""
    start = time.perf_counter()
    process = subprocess.Popen(command)
    samples = []
    while process.poll() is None:
        rss = rss_mib(process.pid)
        if rss is not None:
            samples.append((time.perf_counter() - start, rss))
        time.sleep(1.0)
    if process.returncode:
        raise SystemExit(f"training failed with exit status {process.returncode}")
    return time.perf_counter() - start, samples


def memory_line(samples: list[tuple[float, float]]) -> str:
    """RSS at each fifth of training after the first minute (features loaded, first epochs done)."""
    settled = [rss for t, rss in samples if t >= 60] or [rss for _, rss in samples]
    marks = [settled[min(len(settled) - 1, k * len(settled) // 5)] for k in range(5)] + [settled[-1]]
    return "training RSS (MiB) from minute 1 to the end: " + ", ".join(f"{m:.0f}" for m in marks) + f"; peak {max(settled):.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--max-time", default="10m")
    parser.add_argument("--run", type=Path, help="train into this run directory and keep it; if it holds a run, use that")
    parser.add_argument("--also", type=Path, action="append", default=[], help="another manifest to evaluate on")
    args = parser.parse_args()
    clips, seconds, rss = extraction(args.manifest)
    print(f"feature extraction: {clips:,} clips in {seconds:.1f} s (peak RSS {rss:.0f} MiB)")
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or Path(tmp) / "speech"
        overrides = [f"data.path={args.manifest}", f"training.max_time={args.max_time}"]
        command = [sys.executable, "-m", "seqtool", "train", "configs/speech_commands.yaml", *overrides, "--run-dir", str(run)]
        if (run / "best.pt").is_file():
            wall = json.loads((run / "summary.json").read_text())["wall_time_s"]
            print(f"using the run in {run} (trained before: no memory figures)")
        else:
            wall, samples = train_watched(command)
            print(memory_line(samples))
        import torch

        from seqtool import engine

        torch.set_num_threads(1)  # inference speed on one core
        table = Table(title=f"Voices held out of training ({args.manifest}) and --also sets; trained {wall / 60:.1f} min")
        for header in ("set: decoding", "CER", "WER", "baseline CER", "baseline WER", "x real time (1 core)"):
            table.add_column(header, justify="left" if header == "set: decoding" else "right")
        table.add_column("clips", justify="right")
        rows = [("test split", None, None), ("test split", None, 8)] + [(str(m), str(m), None) for m in args.also]
        for name, data, beam in rows:
            metrics = engine.evaluate(run, data_path=data, args=["--beam-size", str(beam)] if beam else []).metrics
            table.add_row(
                f"{name}: " + (f"beam {beam}" if beam else "greedy"),
                f"{metrics['cer']:.2%}",
                f"{metrics['wer']:.2%}",
                f"{metrics['baseline_cer']:.2%}",
                f"{metrics['baseline_wer']:.2%}",
                f"{1 / metrics['real_time_factor']:.0f}",
                f"{metrics['clips']:.0f}" + (f" ({metrics['skipped_clips']:.0f} skipped)" if metrics["skipped_clips"] else ""),
            )
        Console(width=140).print(table)


if __name__ == "__main__":
    main()
