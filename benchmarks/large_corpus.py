"""A 1 GB text corpus on a laptop: peak memory and encoding speed of the token cache.

Writes a text file of --size-mb (default 1024) from Tiny Shakespeare (its lines shuffled per copy),
then, each in a fresh process so that each peak is its own:

1. encode: build the token cache (`seqtool.tasks.language_model.corpus.load_corpus`), report MB/s;
2. train:  `seqtool.train` a char LSTM for --steps steps on the file (the cache is reused);
3. again:  the same training once more, to show the cache hit (no encoding).

Peak RSS is `resource.getrusage(RUSAGE_SELF).ru_maxrss`; "growth" subtracts the process's RSS
after importing torch and seqtool. Target: growth under 1.5 GB.

    .venv/bin/python benchmarks/large_corpus.py [--size-mb 1024] [--steps 300] [--tokenizer char|word] [--keep]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

SOURCE = Path("data/tinyshakespeare.txt")


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_file(path: Path, size_mb: int) -> None:
    lines = SOURCE.read_text(encoding="utf-8").splitlines(keepends=True)
    rng = random.Random(0)
    written, target = 0, size_mb * 2**20
    with path.open("w", encoding="utf-8") as handle:
        while written < target:
            rng.shuffle(lines)
            block = "".join(lines)
            handle.write(block)
            written += len(block.encode("utf-8"))


def child(phase: str, path: Path, work: Path, tokenizer: str, steps: int) -> None:
    import torch  # noqa: F401  (in the baseline, as in any training process)

    from seqtool.configure import config_from_dict
    from seqtool.engine import train
    from seqtool.tasks.language_model.corpus import load_corpus

    baseline = rss_mb()
    start = time.perf_counter()
    if phase == "encode":
        vocab, splits = load_corpus(path, tokenizer, 1, 0.0005, 0.0, cache_dir=work / "runs/.seqtool-cache")
        seconds = time.perf_counter() - start
        detail = f"{len(vocab)} tokens in vocabulary, {sum(len(s) for s in splits.values()):,} ids"
    else:
        config = config_from_dict(
            {
                "task": "language_model",
                "data": {"path": str(path), "tokenizer": tokenizer, "val_fraction": 0.0005},
                "model": {"type": "lstm", "hidden_size": 256, "num_layers": 1, "dropout": 0.0, "embedding_size": 64},
                "training": {
                    "batch_size": 32,
                    "seq_len": 128,
                    "epochs": None,
                    "max_steps": steps,
                    "eval_every": steps,
                    "device": "cpu",
                },
            }
        )
        train(config, work / f"runs/{phase}", force=True, console=Console(quiet=True))
        seconds = time.perf_counter() - start
        detail = f"{steps} steps"
    print(json.dumps({"phase": phase, "seconds": seconds, "baseline_mb": baseline, "peak_mb": peak_mb(), "detail": detail}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--tokenizer", choices=["char", "word"], default="char")
    parser.add_argument("--keep", action="store_true", help="keep the generated file and runs")
    parser.add_argument("--child", nargs=3, metavar=("PHASE", "FILE", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        phase, file, work = args.child
        child(phase, Path(file), Path(work), args.tokenizer, args.steps)
        return

    work = Path(tempfile.mkdtemp(prefix="seqtool-large-corpus-"))
    try:
        path = work / "corpus.txt"
        start = time.perf_counter()
        make_file(path, args.size_mb)
        size_mb = path.stat().st_size / 2**20
        print(f"wrote {path} ({size_mb:,.0f} MB) in {time.perf_counter() - start:.0f} s")
        results = []
        for phase in ("encode", "train", "again"):
            command = [sys.executable, __file__, "--tokenizer", args.tokenizer, "--steps", str(args.steps)]
            out = subprocess.run([*command, "--child", phase, str(path), str(work)], capture_output=True, text=True)
            if out.returncode:
                sys.exit(out.stderr)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        table = Table(title=f"{size_mb:,.0f} MB text, tokenizer {args.tokenizer}, char LSTM 1x256, batch 32x128")
        for column in ("phase", "seconds", "MB/s of text", "RSS after imports MB", "peak RSS MB", "growth MB", "detail"):
            table.add_column(column, justify="left" if column in ("phase", "detail") else "right")
        for r in results:
            rate = f"{size_mb / r['seconds']:,.0f}" if r["phase"] == "encode" else ""
            growth = r["peak_mb"] - r["baseline_mb"]
            table.add_row(
                r["phase"],
                f"{r['seconds']:.1f}",
                rate,
                f"{r['baseline_mb']:.0f}",
                f"{r['peak_mb']:.0f}",
                f"{growth:.0f}",
                r["detail"],
            )
        Console(width=max(Console().width, 110)).print(table)
        worst = max(r["peak_mb"] - r["baseline_mb"] for r in results)
        print(f"largest growth {worst:,.0f} MB; target under 1,536 MB: {'met' if worst < 1536 else 'NOT met'}")
        cache = sum(p.stat().st_size for p in (work / "runs/.seqtool-cache").iterdir()) / 2**20
        print(f"token cache on disk: {cache:,.0f} MB")
        print(
            f"reproduce: .venv/bin/python benchmarks/large_corpus.py --size-mb {args.size_mb} --steps {args.steps} --tokenizer {args.tokenizer}"
        )
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
