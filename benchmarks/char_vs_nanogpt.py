"""seqtool's character recipe beside nanoGPT, on the same machine, split and wall time.

For each of nanoGPT's iteration counts (its README CPU command at 2,000 iterations, about 100 s,
and at 12,000, about 10 minutes), one job at a time:
1. run nanoGPT's README CPU command and time the whole process (start-up and its evaluations
   included);
2. train `configs/shakespeare_char.yaml` with `training.max_time` set so that the whole seqtool
   process (start-up, training, evaluations and saving) takes no longer than nanoGPT's did;
3. score both on the whole validation split: the last 10% of data/tinyshakespeare.txt, which is
   nanoGPT's split (its `prepare.py`) and seqtool's (`data.val_fraction: 0.1`).

nanoGPT is scored two ways. "blocks" cuts the split into consecutive 64-character blocks, as its
training and its own estimate read text, so a character sees 0-63 characters before it (31.5 on
average). "sliding" gives every character after the first block at least 32 characters of context
(windows of 64 that advance by 32, scoring their last 32), the best its 64-character context allows.
seqtool's recurrent model carries its state through the split (`seqtool evaluate`), so every
character sees all the text before it: that is the recurrent model's own reading, and the reason
both of nanoGPT's are shown.

nanoGPT's code is not bundled: bring a copy (the search tool's `fetch` of karpathy/nanoGPT, then
`git archive`). Its data is prepared here by its own `prepare.py` from the bundled text (its
download is skipped: the input file is already in place).

    .venv/bin/python benchmarks/char_vs_nanogpt.py --nanogpt ../nanoGPT [--iters 2000,12000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

TEXT = Path("data/tinyshakespeare.txt")
NANOGPT_CPU = [  # nanoGPT README's "I only have a macbook" command, with its checkpoint at the end
    "config/train_shakespeare_char.py",
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=1",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--dropout=0.0",
    "--always_save_checkpoint=True",  # the model after the budget, not the best of noisy 20-batch estimates
]


def prepare_nanogpt_data(nanogpt: Path) -> None:
    """Run nanoGPT's own prepare.py on the bundled text. It imports `requests` for a download it
    skips when input.txt exists, so a stand-in module is enough."""
    folder = nanogpt / "data" / "shakespeare_char"
    shutil.copyfile(TEXT, folder / "input.txt")
    sys.modules.setdefault("requests", types.ModuleType("requests"))
    runpy.run_path(str(folder / "prepare.py"), run_name="__main__")


def timed(command: list[str], cwd: Path, log: Path) -> float:
    """Run `command` to completion with its output in `log`; return its wall seconds."""
    start = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


@torch.no_grad()
def nanogpt_losses(nanogpt: Path, checkpoint: Path) -> dict[str, float]:
    """Full-split validation loss of a nanoGPT checkpoint, by blocks and by sliding windows."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", nanogpt / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = module.GPT(module.GPTConfig(**saved["model_args"]))
    model.load_state_dict(saved["model"])
    model.eval()
    ids = np.fromfile(nanogpt / "data" / "shakespeare_char" / "val.bin", dtype=np.uint16).astype(np.int64)
    ids = torch.from_numpy(ids)
    block = model.config.block_size
    return {
        "blocks": windowed_loss(model, ids, block, stride=block),
        "sliding": windowed_loss(model, ids, block, stride=block // 2),
    }


def windowed_loss(model: torch.nn.Module, ids: torch.Tensor, block: int, stride: int) -> float:
    """Mean loss over every character of `ids` after the first, read in windows of `block`
    characters that start every `stride`; each window scores the characters no earlier window
    scored (all of the first window's)."""
    total, count = 0.0, 0
    starts = list(range(0, len(ids) - 1, stride))
    for batch in range(0, len(starts), 64):
        inputs, targets = [], []
        for start in starts[batch : batch + 64]:
            window = ids[start : start + block + 1]
            x = torch.full((block,), 0, dtype=torch.int64)
            y = torch.full((block,), -1, dtype=torch.int64)
            x[: len(window) - 1], y[: len(window) - 1] = window[:-1], window[1:]
            if start > 0:
                y[: block - stride] = -1  # scored by the window before
            inputs.append(x)
            targets.append(y)
        targets_tensor = torch.stack(targets)
        _, loss = model(torch.stack(inputs), targets_tensor)
        scored = int((targets_tensor >= 0).sum())
        total += float(loss) * scored
        count += scored
    return total / count


def seqtool_run(config: str, wall_s: float, allowance_s: float, run_dir: Path, log: Path, extra: list[str]) -> dict:
    """Train the recipe so its whole process fits in `wall_s`, then evaluate the validation split."""
    budget = max(wall_s - allowance_s, 10.0)
    command = [sys.executable, "-m", "seqtool", "train", config, f"training.max_time={budget:.0f}s", *extra]
    seconds = timed([*command, "--run-dir", str(run_dir), "--force"], Path.cwd(), log)
    metrics = subprocess.run(
        [sys.executable, "-m", "seqtool", "evaluate", str(run_dir), "--json"], capture_output=True, text=True, check=True
    )
    steps = json.loads((run_dir / "summary.json").read_text())["steps"]
    return {"seconds": seconds, "loss": json.loads(metrics.stdout)["loss"], "steps": steps}


def measure(args: argparse.Namespace, iters: int, workdir: Path) -> dict:
    out_dir = workdir / f"nanogpt_{iters}"
    command = [sys.executable, "train.py", *NANOGPT_CPU, f"--max_iters={iters}", f"--lr_decay_iters={iters}"]
    nanogpt_s = timed([*command, f"--out_dir={out_dir}"], args.nanogpt, workdir / f"nanogpt_{iters}.log")
    nanogpt = nanogpt_losses(args.nanogpt, out_dir / "ckpt.pt")
    ours = seqtool_run(
        args.config, nanogpt_s, args.allowance, workdir / f"seqtool_{iters}", workdir / f"seqtool_{iters}.log", args.set
    )
    return {"iters": iters, "nanogpt_s": nanogpt_s, **{f"nanogpt_{k}": v for k, v in nanogpt.items()}, **ours}


def report(results: list[dict], config: str) -> None:
    table = Table(title=f"Tiny Shakespeare, validation loss over the whole split (nats/char): {config} beside nanoGPT")
    for column in (
        "nanoGPT iterations",
        "nanoGPT wall s",
        "nanoGPT, blocks",
        "nanoGPT, sliding",
        "seqtool wall s",
        "seqtool steps",
        "seqtool",
        "seqtool vs nanoGPT's better",
    ):
        table.add_column(column, justify="right")
    for r in results:
        best = min(r["nanogpt_blocks"], r["nanogpt_sliding"])
        table.add_row(
            f"{r['iters']:,}",
            f"{r['nanogpt_s']:.1f}",
            f"{r['nanogpt_blocks']:.4f}",
            f"{r['nanogpt_sliding']:.4f}",
            f"{r['seconds']:.1f}",
            f"{r['steps']:,}",
            f"{r['loss']:.4f}",
            f"{(r['loss'] - best) / best:+.1%}",
        )
    Console(width=170).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", type=Path, required=True, help="a copy of karpathy/nanoGPT's code")
    parser.add_argument("--iters", default="2000,12000", help="nanoGPT's max_iters, one budget each")
    parser.add_argument("--config", default="configs/shakespeare_char.yaml")
    parser.add_argument(
        "--allowance",
        type=float,
        default=6.0,
        help="seconds of seqtool's process outside training.max_time (start-up, final evaluation, saving)",
    )
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for the seqtool recipe")
    args = parser.parse_args()
    if not (args.nanogpt / "train.py").exists():
        parser.error(f"{args.nanogpt}: no nanoGPT train.py there")
    args.nanogpt = args.nanogpt.resolve()
    prepare_nanogpt_data(args.nanogpt)
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(args, int(iters), Path(tmp)) for iters in args.iters.split(",")]
    report(results, args.config)


if __name__ == "__main__":
    main()
