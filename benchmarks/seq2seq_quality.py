"""Sequence to sequence beside JoeyNMT: BLEU against wall time, each tool with its own recipe,
for an hour on the same split, then G2P and seqtool's decoding speed.

The data file is split once (seeded 90/5/5 by row) into train/val/test files that both tools read:
seqtool as TSV (`data.train/val/test` over `configs/messages_en_de.yaml` with `training.max_time`
set to the budget), JoeyNMT as plain parallel files with a joint SentencePiece BPE model of 4,000
pieces, trained as JoeyNMT's scripts/build_vocab.py trains it (its special ids, one piece per line
in the vocabulary file), the size seqtool's recipe uses. JoeyNMT runs its documented small-data
recipe, configs/iwslt14_deen_bpe.yaml (a pre-norm Transformer of 6+6 layers of 256, 4 heads,
tied embeddings, AdamW 3e-4, plateau decay on validation BLEU, batches of 4,096 tokens, beam 5
with alpha 1.0), with three changes: BPE from SentencePiece rather than subword-nmt's 32,000
merges (a size for 160,000 pairs, not 19,000), cased text (the references are cased), and
validation every 100 updates rather than 1,000 (at about 4 s an update on one core, 1,000 would
give one checkpoint an hour), with its plateau patience scaled by the same factor, so the rate
still decays after 5,000 updates without a better BLEU; and JoeyNMT's default output limit (1.5
times the source) rather than the recipe's 100 tokens, since an early model writes to the limit
and its Transformer decoder recomputes every earlier position at each step: at 100 tokens one
validation of 1,076 sentences took over 6 minutes on one core. JoeyNMT 2.3's plateau scheduler passes
`verbose`, which torch 2.13 no longer takes: a three-line shim drops it.

Both train at once, one core each (OMP_NUM_THREADS=1: two processes of two threads on two cores
run several times slower), for `--minutes`. Every 5 s the script copies each tool's best
checkpoint when it changes (seqtool's best.pt, JoeyNMT's best.ckpt), with the seconds since the
command started. At each budget of the curve, the checkpoint that was best at that time decodes
the test part (beam 5, length penalty 1.0, two threads), and sacrebleu scores both tools' joined
outputs against the same references: BLEU as in the tools' own evaluation (13a, cased).

    python -m venv /tmp/joey && /tmp/joey/bin/pip install torch==2.13.0 joeynmt==2.3.0 importlib_metadata
    .venv/bin/python benchmarks/seq2seq_quality.py --joey /tmp/joey/bin/python [--minutes 60] [--plot docs/seq2seq_peers.png]
    .venv/bin/python benchmarks/seq2seq_quality.py --words   # the recipe with word vocabularies: <unk> copied or not
    .venv/bin/python benchmarks/seq2seq_quality.py --speed-only --max-time 2m   # greedy speed, memory
    .venv/bin/python benchmarks/seq2seq_quality.py --g2p ../shared/data/cmudict.tsv   # G2P on the full CMUdict

`--g2p FILE` trains configs/g2p_cmudict.yaml on the whole dictionary for 15 minutes instead (its
seeded 90/5/5 split by word: each word appears once) and reports the test phoneme and word error
rates, greedy and with beam 5, beside the copy baseline.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
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
CURVE_MINUTES = (2.5, 5, 10, 20, 30, 45, 60)  # the budgets decoded, as fractions of --minutes / 60
TABLE_MINUTES = (5, 10, 30, 60)
JOEY_SPECIALS = {"unk": 0, "pad": 1, "bos": 2, "eos": 3}
JOEY_SHIM = """import sys, runpy, torch.optim.lr_scheduler as schedulers
import joeynmt.builders as builders
class Plateau(schedulers.ReduceLROnPlateau):
    def __init__(self, *args, verbose=None, **kwargs): super().__init__(*args, **kwargs)
builders.ReduceLROnPlateau = Plateau
sys.argv = ["joeynmt", *sys.argv[1:]]
runpy.run_module("joeynmt", run_name="__main__")
"""


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


def one_core() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ---- seqtool -------------------------------------------------------------------------------------


def start_seqtool(
    paths: dict[str, Path], folder: Path, max_time: str, env: dict[str, str] | None = None, changes: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, Path]:
    """The recipe (with `changes`) training on the split, in the background: the process and its run directory."""
    run = folder / "seqtool_run"
    overrides = ["data.path=null", *(f"data.{split}={path}" for split, path in paths.items()), f"training.max_time={max_time}"]
    overrides += changes
    log = open(folder / "seqtool_train.log", "w")  # the child writes it until it ends
    command = [sys.executable, "-m", "seqtool", "train", RECIPE, *overrides, "--run-dir", str(run)]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), run


def train_seqtool(paths: dict[str, Path], folder: Path, max_time: str, changes: tuple[str, ...] = ()) -> tuple[Path, list[float]]:
    """The recipe (with `changes`) trained on the split (two threads): the run, and the training
    process's resident memory (MiB) sampled once a second."""
    process, run = start_seqtool(paths, folder, max_time, changes=changes)
    rss = []
    while process.poll() is None:
        status = Path(f"/proc/{process.pid}/status")
        found = re.search(r"VmRSS:\s+(\d+) kB", status.read_text()) if status.exists() else None
        if found:
            rss.append(int(found.group(1)) / 1024)
        time.sleep(1.0)
    if process.returncode != 0:
        raise SystemExit(f"seqtool train failed ({process.returncode}); see {folder / 'seqtool_train.log'}")
    return run, rss


def seqtool_decode(checkpoint: Path, sources: list[str], beam: int | None) -> tuple[list[str], float]:
    """A checkpoint's outputs for the sources (beam search, or greedy without `beam`), and the
    decoding time alone."""
    import torch

    from seqtool import engine

    task, model, _ = engine.load_trained(checkpoint)
    options = {"beam_size": beam or 1, "length_penalty": 1.0 if beam else None}  # 1: greedy, whatever the recipe's default
    with torch.no_grad():
        start = time.perf_counter()
        outputs = task.translate(model, sources, options)
        seconds = time.perf_counter() - start
    return [o[0][1] for o in outputs], seconds


# ---- JoeyNMT -------------------------------------------------------------------------------------


def joey_files(paths: dict[str, Path], folder: Path) -> Path:
    """Plain parallel files (`train.en`, `train.de`, ...) as written, and one SentencePiece BPE
    model of 4,000 pieces learned on both sides' training text, as JoeyNMT's build_vocab.py
    learns it (`sp.model`, and `sp.vocab` with one piece per line)."""
    import sentencepiece

    data = folder / "joey_data"
    data.mkdir()
    for split, path in paths.items():
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        for side, column in (("en", "source"), ("de", "target")):
            (data / f"{split}.{side}").write_text("\n".join(frame[column]) + "\n", encoding="utf-8")
    corpus = data / "spm_train.txt"
    corpus.write_text(
        (data / "train.en").read_text(encoding="utf-8") + (data / "train.de").read_text(encoding="utf-8"), encoding="utf-8"
    )
    sentencepiece.SentencePieceTrainer.Train(
        input=str(corpus),
        model_prefix=str(data / "sp"),
        model_type="bpe",
        vocab_size=4000,
        character_coverage=1.0,
        vocabulary_output_piece_score=False,
        num_threads=1,
        minloglevel=2,
        **{f"{name}_piece": f"<{name}>" if name != "eos" else "</s>" for name in JOEY_SPECIALS},
        **{f"{name}_id": index for name, index in JOEY_SPECIALS.items()},
    )
    return data


def joey_config(data: Path, folder: Path, seed: int, every: int) -> Path:
    """JoeyNMT's configs/iwslt14_deen_bpe.yaml on these files (the changes: see the top)."""
    tokenizer = {"model_file": str(data / "sp.model"), "pretokenizer": "none"}
    side = {"max_length": 62, "lowercase": False, "normalize": False, "level": "bpe", "voc_min_freq": 1}
    side |= {"voc_file": str(data / "sp.vocab"), "tokenizer_type": "sentencepiece", "tokenizer_cfg": tokenizer}
    layers = {"type": "transformer", "num_layers": 6, "num_heads": 4, "hidden_size": 256, "ff_size": 1024, "dropout": 0.3}
    layers |= {"embeddings": {"embedding_dim": 256, "scale": True, "dropout": 0.0}, "layer_norm": "pre", "activation": "relu"}
    symbols = {f"{name}_token": f"<{name}>" if name != "eos" else "</s>" for name in JOEY_SPECIALS}
    config = {
        "name": "joey_iwslt14_recipe",
        "model_dir": str(folder / "joey_model"),
        "use_cuda": False,
        "fp16": False,
        "random_seed": seed,
        "data": {
            **{split: str(data / split) for split in ("train", "test")},
            "dev": str(data / "val"),
            "dataset_type": "plain",
            "src": {"lang": "en", **side},
            "trg": {"lang": "de", **side},
            "special_symbols": {**symbols, **{f"{name}_id": index for name, index in JOEY_SPECIALS.items()}},
        },
        "testing": {"n_best": 1, "beam_size": BEAM, "beam_alpha": 1.0, "batch_size": 1024, "batch_type": "token"}
        | {"max_output_length": -1, "eval_metrics": ["bleu"], "sacrebleu_cfg": {"tokenize": "13a", "lowercase": False}},
        "training": {"optimizer": "adamw", "normalization": "tokens", "adam_betas": [0.9, 0.999], "scheduling": "plateau"}
        | {"patience": 5 * 1000 // every, "decrease_factor": 0.7, "loss": "crossentropy", "learning_rate": 0.0003}
        | {"learning_rate_min": 1e-8, "weight_decay": 0.0, "label_smoothing": 0.1, "batch_size": 4096, "batch_type": "token"}
        | {"early_stopping_metric": "bleu", "epochs": 1000, "validation_freq": every, "logging_freq": max(1, every // 5)}
        | {"overwrite": True, "shuffle": True, "keep_best_ckpts": 5, "num_workers": 0},
        "model": {
            "initializer": "xavier_uniform",
            "embed_initializer": "xavier_uniform",
            "embed_init_gain": 1.0,
            "init_gain": 1.0,
        }
        | {"bias_initializer": "zeros", "tied_embeddings": True, "tied_softmax": True, "encoder": layers, "decoder": layers},
    }
    path = folder / "joey.yaml"
    path.write_text(yaml.safe_dump(config))
    (folder / "joey_shim.py").write_text(JOEY_SHIM)
    return path


def start_joey(python: str, config: Path, seconds: float, folder: Path) -> subprocess.Popen:
    """JoeyNMT training in the background, one core, interrupted (SIGINT: it saves) after `seconds`."""
    log = open(folder / "joey_train.log", "w")  # the child writes it until it ends
    command = [
        "timeout",
        "-s",
        "INT",
        str(round(seconds)),
        python,
        str(folder / "joey_shim.py"),
        "train",
        str(config),
        "--skip-test",
    ]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=one_core())


def joey_decode(python: str, config: Path, checkpoint: Path, folder: Path) -> list[str]:
    """A JoeyNMT checkpoint's test outputs (its recipe's beam 5, alpha 1.0), two threads."""
    settings = yaml.safe_load(config.read_text())
    settings["testing"]["load_model"] = str(checkpoint)
    del settings["data"]["dev"]  # `joeynmt test` decodes each split it is given: the test part alone
    decode_config = folder / f"joey_test_{checkpoint.stem}.yaml"
    decode_config.write_text(yaml.safe_dump(settings))
    out = folder / f"joey_hyp_{checkpoint.stem}"
    command = [python, str(folder / "joey_shim.py"), "test", str(decode_config), "--output-path", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    hypotheses = Path(f"{out}.test")
    if result.returncode != 0 or not hypotheses.exists():
        raise SystemExit(f"joeynmt test failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return hypotheses.read_text(encoding="utf-8").splitlines()


def joey_updates(folder: Path) -> int:
    """The updates JoeyNMT took (its log's last step line)."""
    steps = re.findall(r"Step:\s+(\d+)", (folder / "joey_model" / "train.log").read_text(errors="replace"))
    return int(steps[-1]) if steps else 0


# ---- both at once --------------------------------------------------------------------------------


def snapshot_while_training(
    processes: dict[str, subprocess.Popen], best: dict[str, Path], folder: Path
) -> dict[str, list[tuple[float, Path]]]:
    """Every 5 s, a copy of each tool's best checkpoint when it changed, with the seconds since
    the start: what a user stopping the tool at that time would have."""
    start, seen = time.perf_counter(), {name: None for name in processes}
    copies: dict[str, list[tuple[float, Path]]] = {name: [] for name in processes}
    while any(p.poll() is None for p in processes.values()):
        time.sleep(5.0)
        for name, path in best.items():
            stamp = path.stat().st_mtime_ns if path.exists() else None
            if stamp is not None and stamp != seen[name]:
                elapsed = time.perf_counter() - start
                copy = folder / "snapshots" / name / f"{elapsed:07.0f}{path.suffix}"
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, copy)  # follows JoeyNMT's best.ckpt link
                seen[name], copies[name] = stamp, [*copies[name], (elapsed, copy)]
    return copies


def best_at(copies: list[tuple[float, Path]], seconds: float) -> Path | None:
    earlier = [path for elapsed, path in copies if elapsed <= seconds]
    return earlier[-1] if earlier else None


def converge(args: argparse.Namespace) -> None:
    """Both tools for `--minutes`, at once on one core each; the test BLEU of each at each budget."""
    import sacrebleu

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.work or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        paths = split_files(args.data, folder, args.seed)
        test = pd.read_csv(paths["test"], sep="\t", dtype=str, keep_default_na=False)
        sources, references = test["source"].tolist(), test["target"].tolist()
        joey = joey_config(joey_files(paths, folder), folder, args.seed, args.joey_every)
        seconds = args.minutes * 60
        # seqtool's clock starts after its start-up, and it ends with a last evaluation: a budget
        # a minute shorter ends within the hour
        seqtool, run = start_seqtool(paths, folder, f"{max(1.0, args.minutes - 1):g}m", one_core())
        processes = {"seqtool": seqtool, "JoeyNMT": start_joey(args.joey, joey, seconds, folder)}
        best = {"seqtool": run / "best.pt", "JoeyNMT": folder / "joey_model" / "best.ckpt"}
        copies = snapshot_while_training(processes, best, folder)
        budgets = [m * args.minutes / 60 for m in CURVE_MINUTES]
        scored: dict[Path, float] = {}  # a checkpoint still best at a later budget is decoded once
        for name in processes:
            for checkpoint in {best_at(copies[name], minutes * 60) for minutes in budgets} - {None}:
                if name == "seqtool":
                    outputs = seqtool_decode(checkpoint, sources, BEAM)[0]
                else:
                    outputs = joey_decode(args.joey, joey, checkpoint, folder)
                scored[checkpoint] = sacrebleu.corpus_bleu(outputs, [references]).score
        curve = {name: [scored.get(best_at(copies[name], minutes * 60)) for minutes in budgets] for name in processes}
        copy = sacrebleu.corpus_bleu(sources, [references]).score
        updates = {"seqtool": _seqtool_updates(run), "JoeyNMT": joey_updates(folder)}
        show_curve(budgets, curve, copy, updates, len(sources))
        if args.plot:
            plot_curve(args.plot, budgets, curve, copy)


def _seqtool_updates(run: Path) -> int:
    from seqtool.metrics import MetricsLog

    return max((e.step for e in MetricsLog(run).read()), default=0)


# ---- tables, plot and the command ---------------------------------------------------------------


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


def show_curve(
    budgets: list[float], curve: dict[str, list[float | None]], copy: float, updates: dict[str, int], tests: int
) -> None:
    table = Table(
        title=f"English->German messages, test BLEU (beam {BEAM}) of the checkpoint best at each budget; {tests:,} test pairs, copying {copy:.2f}"
    )
    table.add_column("tool")
    shown = [i for i, minutes in enumerate(budgets) if round(minutes * 60 / budgets[-1]) in TABLE_MINUTES]
    for i in shown:
        table.add_column(f"{budgets[i]:g} min", justify="right")
    table.add_column("updates", justify="right")
    for name, scores in curve.items():
        cells = ["-" if scores[i] is None else f"{scores[i]:.2f}" for i in shown]
        table.add_row(name, *cells, f"{updates[name]:,}")
    Console(width=160).print(table)


def plot_curve(path: Path, budgets: list[float], curve: dict[str, list[float | None]], copy: float) -> None:
    from seqtool.plots import label_axis, save_png, subplots

    figure, axis = subplots(figsize=(6.4, 4.0))
    for name, scores in curve.items():
        points = [(m, s) for m, s in zip(budgets, scores, strict=True) if s is not None]
        axis.plot(*zip(*points, strict=True), marker="o", label=name)
    axis.axhline(copy, color="grey", linestyle="--", label="copying the source")
    label_axis(axis, "wall time, minutes (one core each)", f"test BLEU, beam {BEAM}", "English->German messages")
    save_png(figure, path)
    print(f"plot -> {path}")


WORD_LEVEL = (
    "data.source_tokenizer=word",
    "data.target_tokenizer=word",
    "data.share_vocabulary=false",
    "data.vocab_size=null",
    "data.min_freq=2",
)


def unknown_words(args: argparse.Namespace) -> None:
    """The recipe with word vocabularies (words seen once are `<unk>`), its test outputs decoded
    with and without `model.copy_unknown`: BLEU, chrF and the `<unk>` left in the outputs."""
    import sacrebleu

    from seqtool import engine

    with tempfile.TemporaryDirectory() as tmp:
        paths = split_files(args.data, Path(tmp), args.seed)
        run, _ = train_seqtool(paths, Path(tmp), args.max_time or "10m", WORD_LEVEL)
        test = pd.read_csv(paths["test"], sep="\t", dtype=str, keep_default_na=False)
        sources, references = test["source"].tolist(), test["target"].tolist()
        table = Table(
            title=f"The recipe at word level ({args.max_time or '10m'}), test part: {len(sources):,} pairs, beam {BEAM}"
        )
        for header in ("unknown words", "BLEU", "chrF", "<unk> written", "sentences with <unk>"):
            table.add_column(header, justify="left" if header == "unknown words" else "right")
        task, model, _ = engine.load_trained(run)
        for copy in (True, False):
            task.config.model.copy_unknown = copy
            outputs = [o[0][1] for o in task.translate(model, sources, {})]
            name = "copied from the source (copy_unknown)" if copy else "left as <unk>"
            counts = [o.count("<unk>") for o in outputs]
            bleu, chrf = sacrebleu.corpus_bleu(outputs, [references]).score, sacrebleu.corpus_chrf(outputs, [references]).score
            table.add_row(name, f"{bleu:.2f}", f"{chrf:.2f}", f"{sum(counts):,}", f"{sum(c > 0 for c in counts):,}")
        Console(width=160).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/messages-en-de.tsv")
    parser.add_argument("--joey", help="a Python with joeynmt installed (see above): the curve beside it")
    parser.add_argument("--minutes", type=float, default=60.0, help="the curve's length (its budgets scale with it)")
    parser.add_argument("--plot", type=Path, help="where to write the curve as a PNG")
    parser.add_argument("--work", type=Path, help="keep the curve's files (logs, checkpoints) in this new folder")
    parser.add_argument("--joey-every", type=int, default=100, help="JoeyNMT's validation_freq (updates)")
    parser.add_argument("--max-time", help="seqtool's training.max_time for --speed-only (2m) and --words (10m)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed-only", action="store_true", help="seqtool alone: greedy speed and memory")
    parser.add_argument("--g2p", type=Path, help="the full CMU dictionary (word, phonemes TSV): G2P instead")
    parser.add_argument("--words", action="store_true", help="the recipe at word level: unknown words copied or not")
    args = parser.parse_args()
    if args.g2p:
        g2p(args.g2p)
    elif args.speed_only:
        with tempfile.TemporaryDirectory() as tmp:
            paths = split_files(args.data, Path(tmp), args.seed)
            run, rss = train_seqtool(paths, Path(tmp), args.max_time or "2m")
            test = pd.read_csv(paths["test"], sep="\t", dtype=str, keep_default_na=False)
            speed_and_memory(run, test["source"].tolist(), rss)
    elif args.words:
        unknown_words(args)
    elif args.joey:
        converge(args)
    else:
        parser.error("give --joey PYTHON (the curve beside JoeyNMT), --words, --speed-only or --g2p FILE")


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
