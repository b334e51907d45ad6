"""Sequence to sequence beside JoeyNMT: the same English->German split, the same model shape,
the same wall time on the same cores, then test BLEU/chrF, training tokens/s and decoding speed.

The data file is split once (seeded 90/5/5 by row) into train/val/test files that both tools
read: seqtool as TSV (`data.train/val/test` over the shipped recipe), JoeyNMT as plain parallel
files pre-tokenized by seqtool's word tokenizer (JoeyNMT's word level splits on spaces), so both
see the same tokens. Both train a bidirectional LSTM encoder and an LSTM decoder with Luong
(general) attention, without input feeding, of the recipe's sizes, with Adam at the recipe's
rate, batch size, dropout, label smoothing and vocabulary cut-off, and both choose their
checkpoint by validation perplexity. seqtool trains first with the recipe's `max_time`; JoeyNMT
then gets the wall time seqtool's train command took, and is stopped with SIGINT (it saves its
state and keeps its best checkpoint).

Scores: both tools' test outputs (greedy, and beam 5 with length penalty 1.0) are detokenized the
same way and scored here by sacrebleu against the same references. Training tokens/s counts
target tokens (with the end token) per second of training steps, validation excluded: JoeyNMT's
own "Tokens per Sec" log lines, and seqtool's samples/s times the mean target length of the
training split. Decoding speed is the decoding time alone (JoeyNMT's "Generation took" line,
seqtool timed around its batched decode), model loading excluded.

    python -m venv /tmp/joey && /tmp/joey/bin/pip install torch==2.13.0 joeynmt==2.3.0
    .venv/bin/python benchmarks/seq2seq_quality.py --joey /tmp/joey/bin/python [--max-time 6m]
    .venv/bin/python benchmarks/seq2seq_quality.py --speed-only --max-time 2m   # greedy speed, memory
    .venv/bin/python benchmarks/seq2seq_quality.py --g2p ../shared/data/cmudict.tsv   # G2P on the full CMUdict

`--g2p FILE` trains configs/g2p_cmudict.yaml on the whole dictionary for 15 minutes instead (its
seeded 90/5/5 split by word: each word appears once) and reports the test phoneme and word error
rates, greedy and with beam 5, beside the copy baseline.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

RECIPE = "configs/messages_en_de.yaml"
BEAM = 5


def split_files(data: str, folder: Path, seed: int) -> dict[str, Path]:
    """The data file's rows split 90/5/5 at random (seeded) into three TSVs."""
    frame = pd.read_csv(data, sep="\t", dtype=str, keep_default_na=False)
    order = np.random.default_rng(seed).permutation(len(frame))
    n = round(len(frame) * 0.05)
    parts = {"val": order[:n], "test": order[n : 2 * n], "train": order[2 * n :]}
    paths = {}
    for split, rows in parts.items():
        paths[split] = folder / f"{split}.tsv"
        frame.iloc[np.sort(rows)].to_csv(paths[split], sep="\t", index=False)
    return paths


# ---- seqtool -------------------------------------------------------------------------------------


def train_seqtool(paths: dict[str, Path], folder: Path, max_time: str) -> tuple[Path, float, list[float]]:
    """The recipe trained on the split: the run, the command's wall time, and the training
    process's resident memory (MiB) sampled once a second."""
    run = folder / "seqtool_run"
    overrides = ["data.path=null", *(f"data.{split}={path}" for split, path in paths.items()), f"training.max_time={max_time}"]
    start, rss = time.perf_counter(), []
    process = subprocess.Popen([sys.executable, "-m", "seqtool", "train", RECIPE, *overrides, "--run-dir", str(run)])
    while process.poll() is None:
        status = Path(f"/proc/{process.pid}/status")
        found = re.search(r"VmRSS:\s+(\d+) kB", status.read_text()) if status.exists() else None
        if found:
            rss.append(int(found.group(1)) / 1024)
        time.sleep(1.0)
    if process.returncode != 0:
        raise SystemExit(f"seqtool train failed ({process.returncode})")
    return run, time.perf_counter() - start, rss


def seqtool_tokens_per_s(run: Path, train: Path) -> float:
    """Median samples/s of the training log lines times the mean target tokens (with </s>)."""
    from seqtool.metrics import MetricsLog

    rates = [e.values["samples_per_s"] for e in MetricsLog(run).read() if e.split == "train"]
    task = _seqtool_model(run)[0]
    targets = pd.read_csv(train, sep="\t", dtype=str, keep_default_na=False)[task.data.target_column]
    _, lengths, _ = task._ids(targets.tolist(), "target", task.data.max_target_length, end=True)
    return statistics.median(rates[1:] or rates) * float(lengths.mean())


def _seqtool_model(run: Path):
    from seqtool import engine

    task, model, _ = engine.load_trained(run)
    return task, model.eval()


def seqtool_decode(run: Path, sources: list[str], beam: int | None) -> tuple[list[str], float]:
    import torch

    task, model = _seqtool_model(run)
    options = {"beam_size": beam or 1, "length_penalty": 1.0 if beam else None}  # 1: greedy, whatever the recipe's default
    with torch.no_grad():
        start = time.perf_counter()
        outputs = task.translate(model, sources, options)
        seconds = time.perf_counter() - start
    return [o[0][1] for o in outputs], seconds


# ---- JoeyNMT -------------------------------------------------------------------------------------


def joey_files(paths: dict[str, Path], folder: Path) -> Path:
    """Plain parallel files (`train.en`, `train.de`, ...), tokens joined by spaces."""
    from seqtool.tasks.seq2seq.tokens import tokenize

    data = folder / "joey_data"
    data.mkdir()
    for split, path in paths.items():
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        for side, column in (("en", "source"), ("de", "target")):
            lines = [" ".join(tokenize(text, "word")) for text in frame[column]]
            (data / f"{split}.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data


def joey_config(data: Path, folder: Path, recipe: dict) -> Path:
    model, training = recipe["model"], recipe["training"]
    side = {"level": "word", "voc_min_freq": recipe["data"]["min_freq"], "max_length": 60, "lowercase": False}
    rnn = {"type": "recurrent", "rnn_type": model["type"], "hidden_size": model["hidden_size"], "num_layers": model["num_layers"]}
    embeddings = {"embedding_dim": model["embedding_size"]}
    config = {
        "name": "joey_en_de",
        "data": {
            "train": str(data / "train"),
            "dev": str(data / "val"),
            "test": str(data / "test"),
            "dataset_type": "plain",
            "src": {"lang": "en", **side},
            "trg": {"lang": "de", **side},
        },
        # decoding batches of 128 sentences, as seqtool's
        "testing": {"beam_size": 1, "alpha": 1.0, "eval_metrics": ["bleu"], "batch_size": 128, "batch_type": "sentence"},
        "training": {
            "random_seed": recipe["seed"],
            "optimizer": "adam",
            "learning_rate": training["lr"],
            "batch_size": training["batch_size"],
            "batch_type": "sentence",
            "label_smoothing": training["label_smoothing"],
            "clip_grad_norm": 1.0,
            # JoeyNMT 2.3's "plateau" passes `verbose`, which torch 2.13's ReduceLROnPlateau no
            # longer takes, and it has no cosine: an exponential decay by 1.0, a constant rate.
            "scheduling": "exponential",
            "decrease_factor": 1.0,
            "epochs": 1000,
            "validation_freq": training["eval_every"],
            "logging_freq": training["log_every"],
            "early_stopping_metric": "ppl",
            "model_dir": str(folder / "joey_model"),
            "overwrite": True,
            "use_cuda": False,
            "num_workers": 0,
            "keep_best_ckpts": 1,
        },
        "model": {
            "encoder": {**rnn, "bidirectional": True, "dropout": model["dropout"], "embeddings": embeddings},
            "decoder": {
                **rnn,
                "attention": "luong",
                "input_feeding": False,
                "init_hidden": "bridge",
                "dropout": model["dropout"],
                "hidden_dropout": model["dropout"],
                "embeddings": embeddings,
            },
        },
    }
    path = folder / "joey.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train_joey(python: str, config: Path, seconds: float, folder: Path) -> float:
    """JoeyNMT's median training tokens/s (its own log), stopped after `seconds` of wall time."""
    log = folder / "joey_train.log"
    with open(log, "w") as handle:
        subprocess.run(
            ["timeout", "-s", "INT", str(round(seconds)), python, "-m", "joeynmt", "train", str(config)],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    rates = [float(r) for r in re.findall(r"Tokens per Sec:\s+([\d.]+)", log.read_text())]
    if not rates:
        raise SystemExit(f"JoeyNMT logged no training step; see {log}")
    return statistics.median(rates[1:] or rates)


def joey_decode(python: str, config: Path, folder: Path, beam: int) -> tuple[list[str], float]:
    """JoeyNMT's test outputs with its best checkpoint, and its decoding time."""
    settings = yaml.safe_load(config.read_text())
    settings["testing"]["beam_size"] = beam
    beam_config = folder / f"joey_beam{beam}.yaml"
    beam_config.write_text(yaml.safe_dump(settings))
    out = folder / f"joey_hyp_beam{beam}"
    result = subprocess.run(
        [python, "-m", "joeynmt", "test", str(beam_config), "--output-path", str(out)],  # its best.ckpt
        capture_output=True,
        text=True,
    )
    seconds = [float(s) for s in re.findall(r"Generation took ([\d.]+)\[sec\]", result.stdout + result.stderr)]
    hypotheses = Path(f"{out}.test")
    if result.returncode != 0 or not hypotheses.exists() or not seconds:
        raise SystemExit(f"joeynmt test failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return hypotheses.read_text(encoding="utf-8").splitlines(), seconds[-1]


# ---- scores and the table ------------------------------------------------------------------------


def scores(hypotheses: list[str], references: list[str]) -> tuple[float, float]:
    import sacrebleu

    return sacrebleu.corpus_bleu(hypotheses, [references]).score, sacrebleu.corpus_chrf(hypotheses, [references]).score


def detokenized(lines: list[str]) -> list[str]:
    from seqtool.data.text import detokenize

    return [detokenize(line.split(" "), "word") for line in lines]


def speed_and_memory(run: Path, sources: list[str], rss: list[float]) -> None:
    """Greedy decoding of 1,000 sentences, timed; the training process's memory over the run,
    and the decoding process's over repeated passes (both must stay flat: no growing caches)."""
    import resource

    thousand = (sources * (1000 // len(sources) + 1))[:1000]
    _, seconds = seqtool_decode(run, thousand, None)
    passes = []
    for _ in range(5):
        seqtool_decode(run, thousand, None)
        passes.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"seqtool greedy decoding of 1,000 sentences: {seconds:.2f} s ({1000 / seconds:.0f} sentences/s)")
    print(f"decoding process, peak resident memory after each of 5 more passes: {', '.join(f'{m:.0f}' for m in passes)} MiB")
    if rss:
        marks = [rss[min(len(rss) - 1, round(f * (len(rss) - 1)))] for f in (0.1, 0.25, 0.5, 0.75, 1.0)]
        print(f"training process, resident memory at 10/25/50/75/100% of the run: {', '.join(f'{m:.0f}' for m in marks)} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/messages-en-de.tsv")
    parser.add_argument("--joey", help="a Python with joeynmt installed (see above); without it, seqtool alone")
    parser.add_argument("--max-time", default="6m", help="seqtool's training.max_time; JoeyNMT gets the same wall time")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed-only", action="store_true", help="seqtool alone: greedy speed and memory")
    parser.add_argument("--g2p", type=Path, help="the full CMU dictionary (word, phonemes TSV): G2P instead")
    args = parser.parse_args()
    if args.g2p:
        g2p(args.g2p)
        return
    recipe = yaml.safe_load(Path(RECIPE).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = split_files(args.data, folder, args.seed)
        test = pd.read_csv(paths["test"], sep="\t", dtype=str, keep_default_na=False)
        sources, references = test["source"].tolist(), test["target"].tolist()
        run, wall, rss = train_seqtool(paths, folder, args.max_time)
        if args.speed_only:
            speed_and_memory(run, sources, rss)
            return
        rows = {"seqtool": [seqtool_tokens_per_s(run, paths["train"]), wall]}
        for beam in (None, BEAM):
            outputs, seconds = seqtool_decode(run, sources, beam)
            rows["seqtool"] += [*scores(outputs, references), len(sources) / seconds]
        if args.joey:
            config = joey_config(joey_files(paths, folder), folder, recipe)
            start = time.perf_counter()
            rows["JoeyNMT 2.3"] = [train_joey(args.joey, config, wall, folder), time.perf_counter() - start]
            for beam in (1, BEAM):
                outputs, seconds = joey_decode(args.joey, config, folder, beam)
                rows["JoeyNMT 2.3"] += [*scores(detokenized(outputs), references), len(sources) / seconds]
        copy = scores(sources, references)
        show(rows, copy, len(sources), len(pd.read_csv(paths["train"], sep="\t")))


def show(rows: dict[str, list[float]], copy: tuple[float, float], tests: int, trains: int) -> None:
    table = Table(
        title=f"English->German messages: {trains:,} training pairs, {tests:,} test pairs (copy: BLEU {copy[0]:.2f}, chrF {copy[1]:.2f})"
    )
    headers = ["tool", "train tok/s", "train wall s", "greedy BLEU", "greedy chrF", "greedy sent/s"]
    headers += [f"beam {BEAM} BLEU", f"beam {BEAM} chrF", f"beam {BEAM} sent/s"]
    for header in headers:
        table.add_column(header, justify="left" if header == "tool" else "right")
    for name, values in rows.items():
        formats = ["{:,.0f}", "{:.0f}", "{:.2f}", "{:.2f}", "{:.0f}", "{:.2f}", "{:.2f}", "{:.0f}"]
        table.add_row(name, *(f.format(v) for f, v in zip(formats, values, strict=True)))
    Console(width=160).print(table)


def g2p(dictionary: Path, max_time: str = "15m") -> None:
    """configs/g2p_cmudict.yaml on the whole dictionary: test PER and WER, greedy and beam 5."""
    from seqtool import engine

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "g2p"
        overrides = [f"data.path={dictionary}", f"training.max_time={max_time}", "training.eval_every=1000"]
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "seqtool", "train", "configs/g2p_cmudict.yaml", *overrides, "--run-dir", str(run)], check=True
        )
        wall = time.perf_counter() - start
        table = Table(title=f"G2P on {dictionary} (test split: 5% of the words, seeded), trained {wall / 60:.1f} min")
        for header in ("decoding", "PER", "WER", "copy PER", "decode s"):
            table.add_column(header, justify="left" if header == "decoding" else "right")
        for beam in (None, BEAM):
            start = time.perf_counter()
            metrics = engine.evaluate(run, args=["--beam-size", str(beam or 1)]).metrics  # 1: greedy, whatever the default
            name = f"beam {beam}" if beam else "greedy"
            wer = 1 - metrics["exact_match"]
            table.add_row(
                name,
                f"{metrics['token_error_rate']:.2%}",
                f"{wer:.2%}",
                f"{metrics['copy_token_error_rate']:.2%}",
                f"{time.perf_counter() - start:.1f}",
            )
        Console(width=160).print(table)


if __name__ == "__main__":
    main()
