"""A model's reading part started from language models: `seqtool train CONFIG --init-from LM_RUN`.

Pretraining a recurrent network to predict the next word of texts, then fine-tuning it for the
task, is how recurrent classifiers beat linear n-gram models without outside data (Dai & Le,
2015; Howard & Ruder, 2018); a translation encoder gains from it the same way (Ramachandran et
al., 2017). The reading part (a classifier's embedding and recurrent stack, a seq2seq encoder)
keeps its own vocabulary, built from its training texts: each of its tokens that the language
model also knows gets that token's embedding row (the share so mapped is reported), the others
start fresh. The recurrent layers are copied whole: a forward language model's into the forward
direction, a backward one's (`model.direction: backward`) into the reverse direction of a
bidirectional reader, whose embedding comes from the forward model. The rest starts fresh.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from seqtool.cells.registry import cell
from seqtool.data.text import Vocabulary
from seqtool.errors import SeqtoolError
from seqtool.schema import ModelConfig
from seqtool.tasks.registry import task_class

COPIED = "the embedding (token by token) and the recurrent layers"

# Model keys that must agree for a language model's weights to fit the reader's layers.
_SHAPE_KEYS = ("type", "hidden_size", "num_layers", "embedding_size")
_INITIALISATION_ONLY = ("forget_bias",)  # a cell option that sets starting weights, which are copied over


@dataclass
class Reader:
    """The part of a model that reads tokens as a language model does, which its weights seed."""

    what: str  # "classifier", "encoder": for the messages
    model: ModelConfig  # cell, sizes and `bidirectional`
    tokenizer: str
    tokenizer_key: str  # where the reader's tokenizer is set ("data.tokenizer")
    tokens: list[str]  # the reader's vocabulary, by id
    counts: list[int] | None  # training counts by id, for the share of tokens mapped; None: unknown
    embedding: str  # the state-dict key of its embedding
    recurrent: str  # the state-dict prefix of its recurrent stack


def seed(model: torch.nn.Module, reader: Reader, sources: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Copy the language models' embedding rows and recurrent layers into `model`; the lines
    say what came from where. Everything is checked before anything is copied."""
    by_direction = _by_direction(reader, sources)
    forward_source, forward = by_direction["forward"]
    state = model.state_dict()
    mapped, share = _copy_embedding(state, reader, forward)
    fresh = len(reader.tokens) - mapped
    shared = f" ({share:.1%} of the training tokens)" if share is not None else ""
    lines = [
        f"Embedding: {mapped:,} of {len(reader.tokens):,} tokens from {forward_source}{shared}"
        + (f"; the other {fresh:,} start fresh" if fresh else ""),
    ]
    for direction, (source, payload) in by_direction.items():
        layers = _copy_recurrent(state, reader.recurrent, payload["model"], reverse=direction == "backward")
        lines.append(f"Recurrent layers ({direction} direction): {layers} copied from {source}")
    model.load_state_dict(state)
    lines.append(f"The rest of the {reader.what} starts fresh; so do the optimiser and the schedule")
    return lines


def _by_direction(reader: Reader, sources: list[tuple[str, dict[str, Any]]]) -> dict[str, tuple[str, dict[str, Any]]]:
    """direction -> (source, payload): a forward model, and a backward one exactly when the
    reader is bidirectional; each one's tokenizer and layer shapes checked against it."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for source, payload in sources:
        _check_fits(reader, payload, source)
        direction = _stored(payload, "model", "direction")
        if direction in found:
            raise SeqtoolError(f"--init-from {found[direction][0]} and {source} are both {direction} language models; give one")
        found[direction] = (source, payload)
    bidirectional, what = reader.model.bidirectional, reader.what
    if not bidirectional and "backward" in found:
        raise SeqtoolError(
            f"--init-from {found['backward'][0]}: a backward language model (model.direction: backward) reads texts from "
            f"their end, and this {what} reads them forward only (model.bidirectional: false); give a forward one"
        )
    if bidirectional and set(found) != {"forward", "backward"}:
        have, missing = next(iter(found)), ({"forward", "backward"} - set(found)).pop()
        raise SeqtoolError(
            f"--init-from {found[have][0]} is a {have} language model, and this {what} reads both directions "
            f"(model.bidirectional: true): give a {missing} one too (model.direction: {missing}), as "
            "--init-from FORWARD_RUN --init-from BACKWARD_RUN, or set model.bidirectional: false"
        )
    return found


def _stored(payload: dict[str, Any], section: str, key: str) -> Any:
    """A key of a checkpoint's stored config, or its kind's default when the run predates it."""
    kind = task_class(payload["config"]["task"])
    schema = kind.data_schema if section == "data" else kind.model_schema
    default = next(f.default for f in dataclasses.fields(schema) if f.name == key)
    return (payload["config"].get(section) or {}).get(key, default)


def _check_fits(reader: Reader, payload: dict[str, Any], source: str) -> None:
    """One line naming the first key that differs, with both sides' values."""
    mine = reader.model
    keys = [*_SHAPE_KEYS, *(key for key in cell(mine.type).options if key not in _INITIALISATION_ONLY)]
    pairs = [(reader.tokenizer_key, _stored(payload, "data", "tokenizer"), reader.tokenizer)]
    pairs += [(f"model.{key}", _stored(payload, "model", key), getattr(mine, key)) for key in keys]
    for key, lm_value, reader_value in pairs:
        if lm_value != reader_value:
            raise SeqtoolError(
                f"--init-from {source}: {key} differs: the language model's is {lm_value}, this {reader.what}'s is "
                f"{reader_value}; they must agree for its weights to fit"
            )
    if mine.bidirectional and mine.num_layers > 1:
        raise SeqtoolError(
            f"--init-from {source}: a bidirectional {reader.what} of {mine.num_layers} layers feeds both directions into "
            "its upper layers, which no language model's layers fit; use model.num_layers: 1, or model.bidirectional: false"
        )


def _copy_embedding(state: dict[str, torch.Tensor], reader: Reader, payload: dict[str, Any]) -> tuple[int, float | None]:
    """The rows of tokens both vocabularies hold (`<unk>` with `<unk>`); returns how many were
    mapped and their share of the reader's training tokens (None when its counts are unknown)."""
    theirs = Vocabulary.from_dict(payload["artifacts"]["vocabulary"]).ids
    pairs = [(i, theirs[token]) for i, token in enumerate(reader.tokens) if token in theirs]
    mine_rows = torch.tensor([i for i, _ in pairs], dtype=torch.int64)
    their_rows = torch.tensor([j for _, j in pairs], dtype=torch.int64)
    weight = state[reader.embedding]
    weight[mine_rows] = payload["model"]["embedding.weight"][their_rows].to(weight.dtype)
    if reader.counts is None:
        return len(pairs), None
    counts = torch.tensor(reader.counts, dtype=torch.float64)
    return len(pairs), float(counts[mine_rows].sum() / counts.sum()) if counts.sum() > 0 else 0.0


def _copy_recurrent(state: dict[str, torch.Tensor], prefix: str, weights: dict[str, torch.Tensor], reverse: bool) -> int:
    """Every recurrent weight of the language model into the reader's forward parameters, or
    into its reverse ones; returns the number of layers copied."""
    layers = set()
    for name, value in weights.items():
        if not name.startswith("recurrent."):
            continue
        inside, layer = _reader_name(name.removeprefix("recurrent."), reverse)
        state[prefix + inside] = value.to(state[prefix + inside].dtype).clone()
        layers.add(layer)
    return len(layers - {None})


def _reader_name(name: str, reverse: bool) -> tuple[str, str | None]:
    """A language model's stack weight's name in the reader's stack, and the layer it belongs to.
    torch's fused modules name a backward direction's weights `..._reverse`. A stack of another
    cell (seqtool.cells.stack) numbers layer k's directions k * 2 and k * 2 + 1, and a reader with
    two directions has one layer (`_check_fits`), so the backward one is `layers.1`."""
    if name.startswith("layers."):
        _, index, rest = name.split(".", 2)
        return f"layers.{int(index) + int(reverse)}.{rest}", index
    if name.startswith(("norms.", "final_norm.")):  # between layers: none in a two-direction reader
        return name, None
    return name + ("_reverse" if reverse else ""), name.rsplit("_l", 1)[1]
