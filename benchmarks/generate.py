"""Generation speed of the shipped char LSTM: seqtool's cell-stepping path (one stream, and
`--num-samples` streams as one batch) against calling the fused nn.LSTM once per character.
Target: at least 4,500 chars/s for one stream on 2 CPU cores (ten times a small GPT without a
KV cache on such a machine). Medians of `--rounds` repeats.

Uses runs/shakespeare_char_lstm if it exists, otherwise the same architecture with fresh weights
(speed does not depend on the weight values).

    .venv/bin/python benchmarks/generate.py [--config configs/shakespeare_char_lstm.yaml] [--length 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from seqtool.config import load_config
from seqtool.data.text import Vocabulary, read_text
from seqtool.engine import load_trained
from seqtool.tasks.language_model import LanguageModelTask


def fused_per_step(model, length: int, generator: torch.Generator) -> float:
    """chars/s when every character is a separate call of the fused module (the slow way)."""
    token = torch.tensor([[1]])
    state = None
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(length):
            logits, state = model(token, state)
            token = torch.multinomial(torch.softmax(logits[:, -1] / 0.8, -1), 1, generator=generator)
    return length / (time.perf_counter() - start)


def products_only(model, steps: int = 1000) -> tuple[float, float]:
    """Steps/s of a step's matrix-vector products alone (every recurrent weight and the output
    layer, batch 1), and the MB of weights each step reads: the ceiling for exact fp32 stepping,
    set by how fast the cores can stream those weights from cache."""
    weights = [p.detach() for name, p in model.named_parameters() if p.dim() == 2 and not name.startswith("embedding")]
    vectors = [torch.randn(1, w.shape[1]) for w in weights]
    with torch.no_grad():
        for _ in range(50):
            for w, v in zip(weights, vectors, strict=True):
                torch.mm(v, w.t())
        start = time.perf_counter()
        for _ in range(steps):
            for w, v in zip(weights, vectors, strict=True):
                torch.mm(v, w.t())
    return steps / (time.perf_counter() - start), sum(w.numel() for w in weights) * 4 / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/shakespeare_char_lstm.yaml")
    parser.add_argument("--length", type=int, default=2000)
    parser.add_argument("--num-samples", type=int, default=8, help="streams of the batched measurement")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    config = load_config(args.config)
    run_dir = Path("runs") / Path(args.config).stem
    if (run_dir / "best.pt").is_file():
        task, model, _ = load_trained(run_dir)
        source = str(run_dir / "best.pt")
    else:
        torch.manual_seed(0)
        task = LanguageModelTask(config, {"vocabulary": Vocabulary.build(read_text(config.data.path), "char").to_dict()})
        model = task.build_model().eval()
        source = "fresh weights"
    generator = torch.Generator().manual_seed(0)
    list(task.generate(model, "ROMEO:", 100, 0.8, None, generator))  # warm-up
    single, batched = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        text = "".join(task.generate(model, "ROMEO:", args.length, 0.8, None, generator))
        single.append(args.length / (time.perf_counter() - start))
        start = time.perf_counter()
        task.generate_many(model, "ROMEO:", args.length, 0.8, None, generator, args.num_samples)
        batched.append(args.num_samples * args.length / (time.perf_counter() - start))
    ours, many = statistics.median(single), statistics.median(batched)
    fused = fused_per_step(model, min(args.length, 500), generator)
    ceiling, megabytes = products_only(model)
    table = Table(
        title=f"Generation, {config.model.type} {config.model.num_layers}x{config.model.hidden_size} ({source}), "
        f"{torch.get_num_threads()} threads"
    )
    table.add_column("path")
    table.add_column("chars/s", justify="right")
    table.add_row("seqtool predict, one stream (per-layer cells, Gumbel-max sampling)", f"{ours:,.0f}", style="bold")
    table.add_row(f"seqtool predict --num-samples {args.num_samples} (one batch; total)", f"{many:,.0f}")
    table.add_row("fused module, one call per char", f"{fused:,.0f}")
    table.add_row(f"ceiling: the step's matrix-vector products alone ({megabytes:.1f} MB of weights)", f"{ceiling:,.0f}")
    Console().print(table)
    print(f"speed-up {ours / fused:.1f}x; target at least 4,500 chars/s: {'met' if ours >= 4500 else 'NOT met'}")
    print(f"sample: {text[:200]!r}")
    print(
        f"reproduce: .venv/bin/python benchmarks/generate.py --config {args.config} --length {args.length} --rounds {args.rounds}"
    )


if __name__ == "__main__":
    main()
