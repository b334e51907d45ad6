"""The seq2seq kind's export: the encoder and one decoder step, as two graphs.

A deployment encodes a batch of sources once (`encoder`), then calls `decoder_step` once per
output token, feeding back the state it returned, and picks the next token from the logits
(greedy: the argmax; a beam search keeps the k best). `check_greedy` runs exactly that loop on the
exported files and compares the tokens with seqtool's own greedy decoding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from seqtool.cells.registry import cell
from seqtool.signature import Signature, reads_every_input, tensor_spec
from seqtool.tasks.seq2seq.network import BOS, EOS, PAD, Seq2SeqNetwork

Runner = Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]


class EncoderGraph(nn.Module):
    """source (batch, S) int64, lengths (batch,) int64 -> memory, mask, the decoder's first state."""

    def __init__(self, model: Seq2SeqNetwork):
        super().__init__()
        self.model = model

    def forward(self, source: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        memory, mask, state = self.model.encode(source, lengths)
        return (memory, mask, *(state if isinstance(state, tuple) else (state,)))


class DecoderStepGraph(nn.Module):
    """One step: tokens (batch,), state[, feed][, memory, mask] -> logits, new state[, feed][, weights].
    Without attention the step reads no memory (ONNX would drop the unused inputs anyway)."""

    def __init__(self, model: Seq2SeqNetwork):
        super().__init__()
        self.model = model
        self.parts = len(cell(model.config.type).state)

    def forward(self, tokens: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        states, rest = rest[: self.parts], rest[self.parts :]
        feed, rest = (rest[0], rest[1:]) if self.model.feeding else (None, rest)
        memory, mask = rest if rest else (None, None)  # a model without attention reads neither
        logits, state, attended, weights = self.model.step(tokens, states if self.parts > 1 else states[0], feed, memory, mask)
        logits = reads_every_input(logits, states)
        outputs = (logits, *(state if self.parts > 1 else (state,)))
        if self.model.feeding:
            outputs += (attended,)
        return outputs + (() if weights is None else (weights,))


def state_names(model: Seq2SeqNetwork) -> list[str]:
    """The names of the decoder state's parts (`h`, `c`, ...), from the cell registry."""
    return [part.name for part in cell(model.config.type).state]


def _state_shape(model: Seq2SeqNetwork, name: str) -> list[str]:
    (part,) = [part for part in cell(model.config.type).state if part.name == name]
    return ["num_layers", "batch", *map(str, part.shape(model.config))]


def _sources(vocabulary: int, generator: torch.Generator, batch: int, longest: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random source ids of lengths 1..longest (the longest first), padded."""
    lengths = torch.randint(1, longest + 1, (batch,), generator=generator)
    lengths[0] = longest
    source = torch.randint(4, vocabulary, (batch, longest), generator=generator)
    source[torch.arange(longest)[None, :] >= lengths[:, None]] = PAD
    return source, lengths


def signatures(model: Seq2SeqNetwork, source_vocabulary: int, generator: torch.Generator) -> dict[str, Signature]:
    """The two graphs with their example and check batches (other shapes) and names."""
    layers, hidden = model.config.num_layers, model.config.hidden_size
    memory_size = hidden * (2 if model.config.bidirectional else 1)
    states = state_names(model)
    example, check = _sources(source_vocabulary, generator, 2, 5), _sources(source_vocabulary, generator, 3, 9)
    with torch.no_grad():
        expected = EncoderGraph(model)(*check)
    encoder_outputs = [
        tensor_spec("memory", "float32", ["batch", "source_time", "memory"], "the encoder's states, attended over"),
        tensor_spec("mask", "bool", ["batch", "source_time"], "true at real source tokens, false at padding"),
    ] + [tensor_spec(f"{name}_0", "float32", _state_shape(model, name), f"the decoder's first {name} state") for name in states]
    encoder = Signature(
        EncoderGraph(model),
        example,
        check,
        expected,
        [
            tensor_spec("source", "int64", ["batch", "source_time"], "source token ids, padded with 0 (see vocabulary)"),
            tensor_spec("lengths", "int64", ["batch"], "each source's length in tokens"),
        ],
        encoder_outputs,
        {"source": {0: "batch", 1: "source_time"}, "lengths": {0: "batch"}, "memory": {0: "batch", 1: "source_time"}}
        | {"mask": {0: "batch", 1: "source_time"}}
        | {f"{name}_0": {1: "batch"} for name in states},
    )
    return {"encoder": encoder, "decoder_step": _step_signature(model, expected, generator, memory_size, layers)}


def _step_signature(
    model: Seq2SeqNetwork, encoded: tuple[torch.Tensor, ...], generator: torch.Generator, memory_size: int, layers: int
) -> Signature:
    states, hidden = state_names(model), model.config.hidden_size
    targets = model.output.out_features

    def batch(encoded: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        memory, mask, *first = encoded
        size = memory.shape[0]
        tokens = torch.randint(4, targets, (size,), generator=generator)
        feed = (0.5 * torch.randn(size, hidden, generator=generator),) if model.feeding else ()
        return (tokens, *first, *feed) + ((memory, mask) if model.attention != "none" else ())

    example_memory = torch.randn(2, 5, memory_size, generator=generator)
    example_mask = torch.ones(2, 5, dtype=torch.bool)
    example_state = tuple(
        torch.randn(layers, 2, *part.shape(model.config), generator=generator) for part in cell(model.config.type).state
    )
    example, check = batch((example_memory, example_mask, *example_state)), batch(encoded)
    graph = DecoderStepGraph(model)
    with torch.no_grad():
        expected = graph(*check)
    inputs = [tensor_spec("tokens", "int64", ["batch"], f"the previous output token ({BOS} = <s> at the first step)")]
    inputs += [
        tensor_spec(f"{n}_in", "float32", _state_shape(model, n), f"{n} state (from the encoder, then from the last step)")
        for n in states
    ]
    outputs = [tensor_spec("logits", "float32", ["batch", "target_vocabulary"], "next-token logits")]
    outputs += [
        tensor_spec(f"{n}_out", "float32", _state_shape(model, n), f"{n} state after this step (feed back in)") for n in states
    ]
    axes: dict[str, dict[int, str]] = {"tokens": {0: "batch"}, "logits": {0: "batch"}}
    axes |= {f"{n}_in": {1: "batch"} for n in states} | {f"{n}_out": {1: "batch"} for n in states}
    if model.feeding:
        inputs.append(tensor_spec("feed_in", "float32", ["batch", "hidden"], "the last step's attentional state (zeros first)"))
        outputs.append(tensor_spec("feed_out", "float32", ["batch", "hidden"], "this step's attentional state (feed back in)"))
        axes |= {"feed_in": {0: "batch"}, "feed_out": {0: "batch"}}
    if model.attention != "none":
        inputs += [
            tensor_spec("memory", "float32", ["batch", "source_time", "memory"], "the encoder's memory"),
            tensor_spec("mask", "bool", ["batch", "source_time"], "the encoder's mask"),
        ]
        axes |= {"memory": {0: "batch", 1: "source_time"}, "mask": {0: "batch", 1: "source_time"}}
        outputs.append(tensor_spec("attention", "float32", ["batch", "source_time"], "attention weights over the source"))
        axes["attention"] = {0: "batch", 1: "source_time"}
    return Signature(graph, example, check, expected, inputs, outputs, axes)


def check_greedy(model: Seq2SeqNetwork, source_vocabulary: int, run: Runner, max_length: int = 12) -> str | None:
    """Greedy decoding through the exported parts (`run(part, inputs) -> outputs`) of a batch of
    random sources; None when every token equals seqtool's greedy decoding, else what differs."""
    source, lengths = _sources(source_vocabulary, torch.Generator().manual_seed(1), 6, 11)
    with torch.no_grad():
        wanted, _ = model.greedy(source, lengths, max_length)
    states = state_names(model)
    encoded = run("encoder", {"source": source.numpy(), "lengths": lengths.numpy()})
    carried = {f"{n}_in": encoded[f"{n}_0"] for n in states}
    if model.feeding:
        carried["feed_in"] = np.zeros((len(lengths), model.config.hidden_size), dtype=np.float32)
    tokens = np.full(len(lengths), BOS, dtype=np.int64)
    done = np.zeros(len(lengths), dtype=bool)
    produced = []
    for _ in range(max_length):
        attended = {"memory": encoded["memory"], "mask": encoded["mask"]} if model.attention != "none" else {}
        out = run("decoder_step", {"tokens": tokens, **carried, **attended})
        tokens = np.where(done, PAD, out["logits"].argmax(-1)).astype(np.int64)
        produced.append(tokens)
        carried = {name: out[name.replace("_in", "_out")] for name in carried}
        done |= tokens == EOS
        if done.all():
            break
    got = np.stack(produced, axis=1)
    if got.shape != tuple(wanted.shape) or not np.array_equal(got, wanted.numpy()):
        row = next((i for i in range(len(got)) if got.shape != tuple(wanted.shape) or (got[i] != wanted.numpy()[i]).any()), 0)
        return f"greedy decoding with the exported parts differs from seqtool's (sentence {row}: {got[row].tolist()} vs {wanted[row].tolist()})"
    return None
