"""Training throughput of seqtool against a bare PyTorch loop, and against the machine's limit.

For LSTM/GRU/RNN at hidden sizes 128/256/512 (the rest of the model from `--config`), prints
seqtool's training tokens/s, a bare hand-written loop's tokens/s on the same shapes and data,
their ratio, and the achieved GFLOP/s as a share of this machine's fp32 matrix-multiply rate,
measured in the same run. Both loops alternate, round by round, so machine noise hits both
alike; the table shows medians. Then the same comparison for `training.compile: true` and
`training.precision: bf16` against plain fp32 (LSTM 256), to say whether either helps here.

Targets: seqtool within 5% of the bare loop everywhere; LSTM at hidden 256+ above 70% of the
matrix-multiply rate on CPU. The last column is the share that one torch recurrent layer of the
row's size (hidden -> hidden, same batch and length) reaches alone, forward and backward: the
ceiling PyTorch's kernel sets for any loop built on it.

    .venv/bin/python benchmarks/throughput.py [--config configs/shakespeare_char_lstm.yaml] [--steps 20] [--rounds 3]
        [--kinds lstm,gru,rnn] [--hidden 128,256,512] [--no-options] [KEY=VALUE ...]

FLOPs counted: the matrix multiplies of the recurrent layers and the output layer, forward and
backward (3x forward); element-wise gate arithmetic and the optimiser are left out, so the share
is a slight underestimate of the work done.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from seqtool.configure import load_config
from seqtool.data.text import Vocabulary, batchify, read_text, split_by_position
from seqtool.engine import train
from seqtool.schema import Config

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
    """This machine's fp32 matrix-multiply rate with the threads torch uses (median of repeats)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def flops_per_token(config: Config, vocab_size: int) -> float:
    """Training FLOPs per token of the matrix multiplies: recurrent layers plus output layer."""
    m = config.model
    forward = 0
    width = m.embedding_size
    for _ in range(m.num_layers):
        forward += 2 * GATES[m.type] * m.hidden_size * (width + m.hidden_size)
        width = m.hidden_size
    forward += 2 * m.hidden_size * vocab_size
    return 3 * forward


def layer_alone_gflops(kind: str, width: int, hidden: int, batch: int, seq_len: int, repeats: int = 5) -> float:
    """GFLOP/s of one torch recurrent layer, forward and backward, nothing else: the ceiling
    that PyTorch's own kernel sets for any training loop built on it."""
    layer = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind](width, hidden, batch_first=True)
    x = torch.randn(batch, seq_len, width, requires_grad=True)
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        out, _ = layer(x)
        out.sum().backward()
        if i >= 2:
            times.append(time.perf_counter() - start)
    flops = 3 * 2 * GATES[kind] * hidden * (width + hidden) * batch * seq_len
    return flops / statistics.median(times) / 1e9


class BareModel(nn.Module):
    def __init__(self, vocab: int, embedding: int, hidden: int, layers: int, dropout: float, kind: str):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.dropout = nn.Dropout(dropout)
        cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
        self.rnn = cls(embedding, hidden, layers, dropout=dropout if layers > 1 else 0.0, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, h):
        out, h = self.rnn(self.dropout(self.embedding(x)), h)
        return self.head(self.dropout(out)), h


def bare_loop(config: Config, steps: int, warmup: int) -> float:
    """Tokens/s of the plainest loop we would write by hand (word_language_model style)."""
    data, model_cfg, training = config.data, config.model, config.training
    text, _, _ = split_by_position(read_text(data.path), data.val_fraction, data.test_fraction)
    vocab = Vocabulary.build(text, data.tokenizer)
    rows = batchify(vocab.encode(text), training.batch_size)
    torch.manual_seed(config.seed)
    model = BareModel(
        len(vocab), model_cfg.embedding_size, model_cfg.hidden_size, model_cfg.num_layers, model_cfg.dropout, model_cfg.type
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=training.lr)
    T = training.seq_len
    hidden = None
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        i = (step * T) % (rows.shape[1] - T - 1)
        block = torch.from_numpy(rows[:, i : i + T + 1].astype(np.int64))
        logits, hidden = model(block[:, :-1], hidden)
        hidden = tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), block[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), training.grad_clip)
        optimizer.step()
    return steps * training.batch_size * T / (time.perf_counter() - start)


def seqtool_loop(config_path: str, overrides: list[str], steps: int, warmup: int) -> float:
    """Tokens/s of `seqtool train`, from its own metrics.jsonl (training intervals after warm-up)."""
    fixed = [
        f"training.max_steps={warmup + steps}",
        f"training.log_every={warmup}",
        "training.max_time=null",
        f"training.eval_every={10 * (warmup + steps)}",
        "training.device=cpu",
    ]
    config = load_config(config_path, overrides + fixed)
    with tempfile.TemporaryDirectory() as tmp:
        train(config, Path(tmp) / "run", console=Console(file=io.StringIO()))
        events = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    timed = [e for e in events if e["split"] == "train" and e["step"] > warmup]
    return statistics.median(e["tok_per_s"] for e in timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/shakespeare_char_lstm.yaml")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (torch.compile compiles here)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default="lstm,gru,rnn")
    parser.add_argument("--hidden", default="128,256,512")
    parser.add_argument("--no-options", action="store_true", help="skip the compile/bf16 comparison")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides for every measurement")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 120))
    peak = statistics.median(matmul_gflops() for _ in range(3))
    base = load_config(args.config, [*args.overrides, "training.device=cpu"])
    vocab = len(Vocabulary.build(read_text(base.data.path), base.data.tokenizer))
    m, t = base.model, base.training
    table = Table(
        title=f"Training throughput: {m.num_layers} layers, embedding {m.embedding_size}, batch {t.batch_size} x "
        f"seq {t.seq_len}, {torch.get_num_threads()} threads; fp32 matmul rate {peak:.1f} GFLOP/s; "
        f"medians of {args.rounds} rounds"
    )
    columns = ("model", "bare tok/s", "seqtool tok/s", "seqtool / bare", "GFLOP/s", "share of matmul rate", "layer alone")
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for kind in args.kinds.split(","):
        for hidden in map(int, args.hidden.split(",")):
            shape = [*args.overrides, f"model.type={kind}", f"model.hidden_size={hidden}"]
            config = load_config(args.config, [*shape, "training.device=cpu"])
            bare, ours = [], []
            for _ in range(args.rounds):
                bare.append(bare_loop(config, args.steps, args.warmup))
                ours.append(seqtool_loop(args.config, shape, args.steps, args.warmup))
            b, o = statistics.median(bare), statistics.median(ours)
            gflops = o * flops_per_token(config, vocab) / 1e9
            alone = layer_alone_gflops(kind, hidden, hidden, t.batch_size, t.seq_len)
            table.add_row(
                f"{kind} {hidden}",
                f"{b:,.0f}",
                f"{o:,.0f}",
                f"{o / b:.3f}",
                f"{gflops:.1f}",
                f"{gflops / peak:.0%}",
                f"{alone / peak:.0%}",
            )
            console.print(f"  measured {kind} {hidden}: seqtool/bare {o / b:.3f}, {gflops / peak:.0%} of matmul rate")
    console.print(table)
    if not args.no_options:
        options = Table(title="Training options against plain fp32 (LSTM 256, same shapes), seqtool tok/s")
        for column in ("setting", "tok/s", "vs fp32"):
            options.add_column(column, justify="left" if column == "setting" else "right")
        shape = [*args.overrides, "model.type=lstm", "model.hidden_size=256"]
        settings = {
            "fp32": [],
            "training.compile=true": ["training.compile=true"],
            "training.precision=bf16": ["training.precision=bf16"],
        }
        rates: dict[str, list[float]] = {name: [] for name in settings}
        for _ in range(args.rounds):
            for name, extra in settings.items():
                rates[name].append(seqtool_loop(args.config, shape + extra, args.steps, args.warmup))
        fp32 = statistics.median(rates["fp32"])
        for name, values in rates.items():
            options.add_row(name, f"{statistics.median(values):,.0f}", f"{statistics.median(values) / fp32:.2f}x")
        console.print(options)
    print(
        f"reproduce: .venv/bin/python benchmarks/throughput.py --config {args.config} --steps {args.steps} --rounds {args.rounds}"
    )


if __name__ == "__main__":
    main()
