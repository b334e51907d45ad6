"""seqtool's training loop against a bare PyTorch loop: same model, batch, sequence length, data.

Both run in this one process, alternating, so machine noise hits both alike. Throughput is taken
over the training steps only (evaluation excluded) after a warm-up. Target: seqtool within 5%.

    .venv/bin/python benchmarks/overhead.py [--config configs/shakespeare_char_lstm.yaml] [--steps 60] [--rounds 3] [KEY=VALUE ...]

KEY=VALUE overrides apply to both loops, e.g. `model.hidden_size=128`, where per-step overhead
weighs most.
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

from seqtool.config import load_config
from seqtool.data.text import Vocabulary, batchify, read_text, split_by_position
from seqtool.engine import train


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


def bare_loop(config, steps: int, warmup: int) -> float:
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


def seqtool_loop(config_path: str, user_overrides: list[str], steps: int, warmup: int) -> float:
    """Tokens/s of `seqtool train`, from its own metrics.jsonl (training intervals only)."""
    overrides = [
        f"training.max_steps={warmup + steps}",
        f"training.log_every={warmup}",
        "training.max_time=null",
        f"training.eval_every={10 * (warmup + steps)}",
        "training.device=cpu",
    ]
    config = load_config(config_path, user_overrides + overrides)
    with tempfile.TemporaryDirectory() as tmp:
        train(config, Path(tmp) / "run", console=Console(file=io.StringIO()))
        events = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    timed = [e for e in events if e["split"] == "train" and e["step"] > warmup]
    return statistics.mean(e["tok_per_s"] for e in timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/shakespeare_char_lstm.yaml")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides for both loops")
    args = parser.parse_args()
    config = load_config(args.config, args.overrides + ["training.device=cpu"])
    bare, ours = [], []
    for _ in range(args.rounds):
        bare.append(bare_loop(config, args.steps, args.warmup))
        ours.append(seqtool_loop(args.config, args.overrides, args.steps, args.warmup))
    table = Table(
        title=f"Training throughput, {config.model.type} {config.model.num_layers}x{config.model.hidden_size}, "
        f"batch {config.training.batch_size} x seq {config.training.seq_len}, {torch.get_num_threads()} threads"
    )
    table.add_column("round")
    table.add_column("bare PyTorch tok/s", justify="right")
    table.add_column("seqtool tok/s", justify="right")
    table.add_column("seqtool / bare", justify="right")
    for i, (b, o) in enumerate(zip(bare, ours, strict=True), 1):
        table.add_row(str(i), f"{b:,.0f}", f"{o:,.0f}", f"{o / b:.3f}")
    b, o = statistics.median(bare), statistics.median(ours)
    table.add_row("median", f"{b:,.0f}", f"{o:,.0f}", f"{o / b:.3f}", style="bold")
    Console().print(table)
    print(f"overhead: {100 * (1 - o / b):+.1f}% (target: at most 5%)")
    print(
        f"reproduce: .venv/bin/python benchmarks/overhead.py --config {args.config} --steps {args.steps} "
        f"--rounds {args.rounds} {' '.join(args.overrides)}"
    )


if __name__ == "__main__":
    main()
