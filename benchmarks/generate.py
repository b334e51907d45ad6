"""Generation speed of the shipped char LSTM: seqtool's cell-stepping path (one stream, and
`--num-samples` streams as one batch) against calling the fused nn.LSTM once per character, and
the same model after `seqtool export --format onnx`, stepped in onnxruntime (when installed).
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

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from seqtool.configure import load_config
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


def onnxruntime_per_step(task, model, length: int, temperature: float = 0.8) -> float | None:
    """chars/s of the model exported by `seqtool export` (the same graph, state in and out) and
    stepped one character per call in onnxruntime, sampling by Gumbel-max in numpy: what a
    deployment without PyTorch gets. None when onnxruntime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    from seqtool.export import build

    data, signature = build(task, model, "onnx")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    names = [spec["name"] for spec in signature.inputs]
    states = {name: np.zeros_like(value.numpy()[:, :1]) for name, value in zip(names[1:], signature.example[1:], strict=True)}
    feeds = {"tokens": np.zeros((1, 1), dtype=np.int64), **states}  # one stream, one token per call
    rng = np.random.default_rng(0)
    noise = -np.log(-np.log(rng.random((length, len(task.vocabulary))))) * temperature
    noise[:, 0] = -np.inf  # never <unk>, as seqtool samples
    for _ in range(min(50, length)):  # warm-up
        scores, *state = session.run(None, feeds)
        feeds.update(zip(names[1:], state, strict=True))
    start = time.perf_counter()
    for step in range(length):
        scores, *state = session.run(None, feeds)
        feeds["tokens"] = (scores[:, -1] + noise[step]).argmax(axis=-1)[:, None]
        feeds.update(zip(names[1:], state, strict=True))
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
    list(task.generate(model, "ROMEO:", 100, 0.8, None, generator)[0])  # warm-up
    single, batched = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        text = "".join(task.generate(model, "ROMEO:", args.length, 0.8, None, generator)[0])
        single.append(args.length / (time.perf_counter() - start))
        start = time.perf_counter()
        ["".join(s) for s in task.generate(model, "ROMEO:", args.length, 0.8, None, generator, args.num_samples)]
        batched.append(args.num_samples * args.length / (time.perf_counter() - start))
    ours, many = statistics.median(single), statistics.median(batched)
    fused = fused_per_step(model, min(args.length, 500), generator)
    ceiling, megabytes = products_only(model)
    exported = [onnxruntime_per_step(task, model, args.length) for _ in range(args.rounds)]
    table = Table(
        title=f"Generation, {config.model.type} {config.model.num_layers}x{config.model.hidden_size} ({source}), "
        f"{torch.get_num_threads()} threads"
    )
    table.add_column("path")
    table.add_column("chars/s", justify="right")
    table.add_row("seqtool predict, one stream (per-layer cells, Gumbel-max sampling)", f"{ours:,.0f}", style="bold")
    table.add_row(f"seqtool predict --num-samples {args.num_samples} (one batch; total)", f"{many:,.0f}")
    table.add_row("fused module, one call per char", f"{fused:,.0f}")
    if exported[0] is not None:
        table.add_row(
            "seqtool export --format onnx, stepped in onnxruntime (numpy sampling)", f"{statistics.median(exported):,.0f}"
        )
    else:
        table.add_row("seqtool export --format onnx in onnxruntime", "not installed")
    table.add_row(f"ceiling: the step's matrix-vector products alone ({megabytes:.1f} MB of weights)", f"{ceiling:,.0f}")
    Console().print(table)
    verdict = f"seqtool predict {'met' if ours >= 4500 else 'NOT met'}"
    if exported[0] is not None:
        onnx_rate = statistics.median(exported)
        verdict += f"; exported to onnxruntime {'met' if onnx_rate >= 4500 else 'NOT met'} ({onnx_rate / ours:.2f}x seqtool)"
    print(f"speed-up {ours / fused:.1f}x over the fused module; target at least 4,500 chars/s for one stream: {verdict}")
    print(f"sample: {text[:200]!r}")
    print(
        f"reproduce: .venv/bin/python benchmarks/generate.py --config {args.config} --length {args.length} --rounds {args.rounds}"
    )


if __name__ == "__main__":
    main()
