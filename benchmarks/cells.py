"""Speed of every recurrent cell beside torch's fused nn.LSTM: training tokens/s and generation chars/s.

Training: one stack of `--layers` layers (the stack `model.type` builds in every kind, so the
minGRU's scan, the mLSTM's chunks and the sLSTM's loop are what is timed), forward and backward
over (batch, length, width) inputs with batch * length = `--tokens`, at each length and width.
Rounds alternate between the cells, so machine noise hits all alike; the table shows medians and
each cell's ratio to nn.LSTM in the same round.

Generation: a character model (embedding 64, the cell, a 65-way head) steps one token at a time
the way `seqtool predict` does (`CellStepper`: torch's cell kernels for the fused cells, the
stack's step form for the others), from a 100-character prompt, for `--generate` characters.

    .venv/bin/python benchmarks/cells.py [--cells rnn,lstm,gru,mingru,minlstm,slstm,mlstm]
        [--lengths 128,512,2048] [--widths 256,512] [--tokens 16384] [--rounds 3] [--generate 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from seqtool.cells import registry
from seqtool.models import SequenceModel, recurrent_layers
from seqtool.schema import TokenModelConfig
from seqtool.tasks.language_model.sampling import CellStepper


def model_config(cell: str, width: int, layers: int) -> TokenModelConfig:
    return TokenModelConfig(type=cell, hidden_size=width, num_layers=layers, dropout=0.0, embedding_size=width)


def training_seconds(stack: torch.nn.Module, inputs: torch.Tensor) -> float:
    """One forward and backward pass over the inputs, in seconds."""
    start = time.perf_counter()
    outputs, _ = stack(inputs)
    outputs.float().pow(2).mean().backward()
    return time.perf_counter() - start


def training_table(args: argparse.Namespace) -> Table:
    table = Table(title=f"Training tokens/s, forward + backward, {args.layers} layers, {args.tokens:,} tokens a batch")
    for header in ("width", "length", "cell", "tokens/s", "x nn.LSTM"):
        table.add_column(header, justify="right" if header not in ("cell",) else "left")
    for width in args.widths:
        for length in args.lengths:
            batch = max(1, args.tokens // length)
            inputs = torch.randn(batch, length, width)
            stacks = {cell: recurrent_layers(model_config(cell, width, args.layers), width) for cell in args.cells}
            for stack in stacks.values():
                training_seconds(stack, inputs)  # warm-up: allocations, kernels chosen
            times: dict[str, list[float]] = {cell: [] for cell in args.cells}
            for _ in range(args.rounds):
                for cell, stack in stacks.items():
                    times[cell].append(training_seconds(stack, inputs))
            reference = statistics.median(times["lstm"]) if "lstm" in times else None
            for cell in args.cells:
                seconds = statistics.median(times[cell])
                ratio = f"{reference / seconds:.2f}" if reference else "-"
                table.add_row(str(width), str(length), cell, f"{batch * length / seconds:,.0f}", ratio)
    return table


@torch.no_grad()
def generation_rate(cell: str, width: int, layers: int, characters: int) -> float:
    """Characters per second of greedy stepping after a 100-character prompt."""
    config = model_config(cell, width, layers)
    config.embedding_size = 64
    model = SequenceModel(config, 65, vocab_size=65).eval()
    prompt = torch.randint(0, 65, (1, 100))
    start = time.perf_counter()
    scores, state = model(prompt, last_only=True)
    stepper = CellStepper(model)
    states = stepper.split_state(state)
    for _ in range(characters):
        scores = stepper.step(scores.argmax(dim=-1), states)
    return characters / (time.perf_counter() - start)


def generation_table(args: argparse.Namespace) -> Table:
    table = Table(title=f"Generation chars/s (one stream, {args.layers} layers, embedding 64, 65 characters)")
    for header in ("width", "cell", "chars/s", "x nn.LSTM"):
        table.add_column(header, justify="left" if header == "cell" else "right")
    for width in args.widths:
        rates = {cell: generation_rate(cell, width, args.layers, args.generate) for cell in args.cells}
        for cell, rate in rates.items():
            ratio = f"{rate / rates['lstm']:.2f}" if "lstm" in rates else "-"
            table.add_row(str(width), cell, f"{rate:,.0f}", ratio)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default=",".join(registry.names()), type=lambda s: s.split(","))
    parser.add_argument("--lengths", default="128,512,2048", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--widths", default="256,512", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--layers", default=1, type=int)
    parser.add_argument("--tokens", default=16384, type=int)
    parser.add_argument("--rounds", default=3, type=int)
    parser.add_argument("--generate", default=2000, type=int)
    args = parser.parse_args()
    torch.manual_seed(0)
    console = Console(width=120)
    console.print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    console.print(training_table(args))
    console.print(generation_table(args))


if __name__ == "__main__":
    main()
