"""Speech recognition on held-out voices: configs/speech_commands.yaml trained on a whole
manifest (validation and test hold out whole voices), then the test CER/WER beside the most common
transcript, inference speed on one core as a real-time factor, and feature extraction time.

    .venv/bin/python benchmarks/speech_quality.py --manifest PATH/TO/speech/manifest.csv [--max-time 10m]
"""

from __future__ import annotations

import argparse
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
    from seqtool.tasks.speech_audio import FeatureSettings, extract

    frame = pd.read_csv(manifest)
    files = [manifest.parent / p for p in frame["path"]]
    start = time.perf_counter()
    extract(files, FeatureSettings(), 20.0, [f"row {i + 2}" for i in range(len(files))])
    return len(files), time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--max-time", default="10m")
    args = parser.parse_args()
    clips, seconds, rss = extraction(args.manifest)
    print(f"feature extraction: {clips:,} clips in {seconds:.1f} s (peak RSS {rss:.0f} MiB)")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "speech"
        overrides = [f"data.path={args.manifest}", f"training.max_time={args.max_time}"]
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "seqtool", "train", "configs/speech_commands.yaml", *overrides, "--run-dir", str(run)],
            check=True,
        )
        wall = time.perf_counter() - start
        import torch

        from seqtool import engine

        torch.set_num_threads(1)  # inference speed on one core
        table = Table(title=f"Test split: voices held out of training ({args.manifest}); trained {wall / 60:.1f} min")
        for header in ("decoding", "CER", "WER", "baseline CER", "baseline WER", "x real time (1 core)"):
            table.add_column(header, justify="left" if header == "decoding" else "right")
        for beam in (None, 8):
            metrics = engine.evaluate(run, args=["--beam-size", str(beam)] if beam else []).metrics
            table.add_row(
                f"beam {beam}" if beam else "greedy",
                f"{metrics['cer']:.2%}",
                f"{metrics['wer']:.2%}",
                f"{metrics['baseline_cer']:.2%}",
                f"{metrics['baseline_wer']:.2%}",
                f"{1 / metrics['real_time_factor']:.0f}",
            )
        Console(width=140).print(table)


if __name__ == "__main__":
    main()
