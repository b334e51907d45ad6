"""`seqtool export`: a trained model as an ONNX or TorchScript file that runs without seqtool.

What is exported is each task's inference graph, not the training module:

- language model: (tokens, h_in[, c_in]) -> (logits, h_out[, c_out]). The recurrent state is part
  of the signature, so a deployed model steps token by token (or reads a prompt in one call and
  carries on from the state it returns).
- forecast: context (batch, context_length, columns), already scaled -> forecast (batch, horizon,
  targets) in scaled units, plus lower/upper interval bounds when the model was trained for them.
  The per-window normalisation (`model.window_norm`), segments, channel independence, the
  parallel decoder and the interval arithmetic are inside the graph; the per-column affine scaler is in the metadata, because applying it inside would make
  float32 rounding depend on the data's units.
- classify: (tokens, lengths) -> (logits, probabilities). Training packs variable-length batches,
  which neither ONNX nor tracing can express; the exported graph runs over the padded batch and
  masks instead (reading the top layer at each text's last token; the backward direction of a
  bidirectional model reads each text reversed within its own length), which gives the same
  numbers because a forward direction never looks beyond a position.

Everything else a deployment needs (vocabulary and tokenizer rules, labels, scaler, column order,
horizon) goes into a JSON file beside the model. Each export is checked before it is written:
the file is loaded by its own runtime (onnxruntime, torch.jit.load) and run on a sample batch of
shapes other than those it was traced with, against seqtool's own inference code.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import seqtool
from seqtool.checkpoint import MAGIC, atomic_write_bytes, resolve_checkpoint
from seqtool.data.text import WORD_PATTERN
from seqtool.engine import load_trained
from seqtool.errors import SeqtoolError
from seqtool.models import SequenceModel, layer_weights, pool_over_time
from seqtool.tasks.forecast import point_and_interval
from seqtool.tasks.forecast_network import ForecastNetwork

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4  # largest accepted |exported - PyTorch| on the check batch
ONNX_OPSET = 17
INSTALL_HINT = "pip install 'seqtool[export]'"


# ---- inference graphs ------------------------------------------------------------------------


class LanguageModelGraph(nn.Module):
    """tokens (batch, time) int64, state (num_layers, batch, hidden) -> scores, new state."""

    def __init__(self, model: SequenceModel):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None = None):
        state = h if c is None else (h, c)
        scores, state = self.model(tokens, state)
        return (scores, *state) if isinstance(state, tuple) else (scores, state)


class ForecastGraph(nn.Module):
    """context (batch, context_length, columns), scaled -> forecast[, lower, upper] (batch, horizon,
    targets), scaled: the forecast network and `point_and_interval`, in one graph."""

    def __init__(self, model: ForecastNetwork, loss: str, quantiles: list[float]):
        super().__init__()
        self.model = model
        self.loss, self.quantiles = loss, quantiles

    def forward(self, context: torch.Tensor):
        out = self.model(context)  # (batch, horizon, targets, outputs_per_step)
        return tuple(part for part in point_and_interval(out, self.loss, self.quantiles) if part is not None)


class ClassifierGraph(nn.Module):
    """tokens (batch, time) int64 padded, lengths (batch,) int64 -> logits, probabilities."""

    def __init__(self, model: SequenceModel):
        super().__init__()
        self.model = model
        config = model.config
        self.pooling, self.bidirectional = config.pooling, config.bidirectional
        if self.bidirectional:
            # One single-layer module per layer and direction, on the same weights, so the
            # backward direction can be fed each text reversed within its own length.
            kind = type(model.recurrent)
            extra = {"nonlinearity": config.nonlinearity} if config.type == "rnn" else {}
            self.layers = nn.ModuleList()
            for k in range(config.num_layers):
                size = config.embedding_size if k == 0 else 2 * config.hidden_size
                for reverse in (False, True):
                    layer = kind(size, config.hidden_size, batch_first=True, **extra)
                    for mine, trained in zip(layer_weights(layer, 0), layer_weights(model.recurrent, k, reverse), strict=True):
                        mine.data = trained.data
                    self.layers.append(layer)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor):
        x = self.model.embedding(tokens)  # (batch, time, embedding_size)
        if self.bidirectional:
            # Position t of a text of length L reads position L - 1 - t; padding stays in place.
            steps = torch.arange(tokens.shape[1], device=tokens.device)[None, :]  # (1, time)
            flip = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)[:, :, None]  # (batch, time, 1)
            for k in range(0, len(self.layers), 2):
                forward_out, _ = self.layers[k](x)
                reversed_in = x.gather(1, flip.expand(-1, -1, x.shape[2]))
                backward_out, _ = self.layers[k + 1](reversed_in)
                backward_out = backward_out.gather(1, flip.expand(-1, -1, backward_out.shape[2]))
                x = torch.cat([forward_out, backward_out], dim=2)
            outputs = x
        else:
            outputs, _ = self.model.recurrent(x)  # (batch, time, hidden * directions)
        if self.pooling == "last":
            size = outputs.shape[2]
            last = (lengths - 1)[:, None, None].expand(-1, 1, size)  # (batch, 1, size)
            final = outputs.gather(1, last)[:, 0]  # each text's last token
            if self.bidirectional:  # forward direction at the end, backward direction at the start
                half = size // 2
                final = torch.cat([final[:, :half], outputs[:, 0, half:]], dim=1)
            features = final
        else:
            features = pool_over_time(outputs, lengths, self.pooling)
        logits = self.model.head(features)
        return logits, torch.softmax(logits, dim=-1)


# ---- sample batches and seqtool's own answers --------------------------------------------------


@dataclass
class Signature:
    """The graph, example inputs to trace it with, a check batch of other shapes, and names."""

    graph: nn.Module
    example: tuple[torch.Tensor, ...]
    check: tuple[torch.Tensor, ...]
    expected: tuple[torch.Tensor, ...]  # seqtool's own inference code on the check batch
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    dynamic_axes: dict[str, dict[int, str]]


def _tensor_spec(name: str, dtype: str, shape: list[str], meaning: str) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape, "meaning": meaning}


def _language_model(task, model: SequenceModel, generator: torch.Generator) -> Signature:
    config = model.config
    vocab = len(task.vocabulary)
    lstm = config.type == "lstm"
    layers, hidden = config.num_layers, config.hidden_size

    def batch(size: int, time: int) -> tuple[torch.Tensor, ...]:
        tokens = torch.randint(0, vocab, (size, time), generator=generator)
        states = [0.5 * torch.randn(layers, size, hidden, generator=generator) for _ in range(2 if lstm else 1)]
        return (tokens, *states)

    example, check = batch(2, 5), batch(3, 17)
    with torch.no_grad():
        scores, state = model(check[0], (check[1], check[2]) if lstm else check[1])
    expected = (scores, *state) if lstm else (scores, state)
    scores_name = "log_probs" if config.output == "adaptive" else "logits"
    state_shape = ["num_layers", "batch", "hidden"]
    inputs = [_tensor_spec("tokens", "int64", ["batch", "time"], "token ids (see vocabulary)")]
    meaning = "log-probabilities of the next token" if scores_name == "log_probs" else "next-token logits"
    outputs = [_tensor_spec(scores_name, "float32", ["batch", "time", "vocabulary"], f"{meaning} at each step")]
    names = [("h", "hidden state")] + ([("c", "cell state")] if lstm else [])
    for name, meaning in names:
        inputs.append(_tensor_spec(f"{name}_in", "float32", state_shape, f"{meaning} before the first token (zeros to start)"))
        outputs.append(_tensor_spec(f"{name}_out", "float32", state_shape, f"{meaning} after the last token (feed back in)"))
    axes = {"tokens": {0: "batch", 1: "time"}, scores_name: {0: "batch", 1: "time"}}
    for name, _ in names:
        axes[f"{name}_in"] = axes[f"{name}_out"] = {1: "batch"}
    return Signature(LanguageModelGraph(model), example, check, expected, inputs, outputs, axes)


def _forecast(task, model: ForecastNetwork, generator: torch.Generator) -> Signature:
    data, training = task.config.data, task.config.training
    graph = ForecastGraph(model, training.loss or "mse", training.quantiles)
    # The training data's last context window (it travels in the checkpoint), and noisy copies.
    last = torch.tensor(task.artifacts_["last_context"], dtype=torch.float32)[None]  # (1, context, columns)

    def batch(size: int) -> torch.Tensor:
        noise = 0.1 * torch.randn(size - 1, *last.shape[1:], generator=generator)
        return torch.cat([last, last + noise])

    example, check = batch(2), batch(5)
    origins = np.array([data.context_length], dtype=np.int64)
    expected_parts: list[list[np.ndarray]] = []
    with torch.no_grad():
        for row in check.numpy():
            padded = np.concatenate([row, np.zeros((data.horizon, row.shape[1]), dtype=np.float32)])
            x, _ = task._windows(padded, origins)
            expected_parts.append([p for p in task._point_and_interval(task._outputs(model, x)) if p is not None])
    expected = tuple(torch.from_numpy(np.concatenate(group)) for group in zip(*expected_parts, strict=True))
    shape = ["batch", "horizon", "targets"]
    outputs = [_tensor_spec("forecast", "float32", shape, "point forecast, scaled units")]
    if len(expected) == 3:
        level = round(100 * task.interval_level)
        outputs += [
            _tensor_spec("lower", "float32", shape, f"lower bound of the {level}% interval, scaled units"),
            _tensor_spec("upper", "float32", shape, f"upper bound of the {level}% interval, scaled units"),
        ]
    inputs = [
        _tensor_spec(
            "context", "float32", ["batch", "context_length", "columns"], "the last context_length rows, scaled (see scaler)"
        )
    ]
    axes = {"context": {0: "batch"}} | {spec["name"]: {0: "batch"} for spec in outputs}
    return Signature(graph, (example,), (check,), expected, inputs, outputs, axes)


def _classifier(task, model: SequenceModel, generator: torch.Generator) -> Signature:
    vocab = len(task.vocabulary)

    def batch(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths_t = torch.tensor(lengths, dtype=torch.int64)
        tokens = torch.randint(0, vocab, (len(lengths), max(lengths)), generator=generator)
        tokens[torch.arange(max(lengths))[None, :] >= lengths_t[:, None]] = 0  # padding, as seqtool encodes it
        return tokens, lengths_t

    example = batch([6, 3])
    check = batch([1, 19, 7, 19, 12])
    with torch.no_grad():
        logits = model.classify(*check)  # the packed path that training and `predict` use
    inputs = [
        _tensor_spec("tokens", "int64", ["batch", "time"], "token ids, padded with 0 after each text's end"),
        _tensor_spec("lengths", "int64", ["batch"], "tokens in each text (1 <= length <= time)"),
    ]
    outputs = [
        _tensor_spec("logits", "float32", ["batch", "labels"], "class scores"),
        _tensor_spec("probabilities", "float32", ["batch", "labels"], "softmax of the logits"),
    ]
    axes = {"tokens": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "logits": {0: "batch"}, "probabilities": {0: "batch"}}
    return Signature(ClassifierGraph(model), example, check, (logits, torch.softmax(logits, dim=-1)), inputs, outputs, axes)


_SIGNATURES = {"language_model": _language_model, "forecast": _forecast, "classify": _classifier}


# ---- metadata ------------------------------------------------------------------------------


def _vocabulary(vocabulary, tokenizer: str, lowercase: bool) -> dict[str, Any]:
    return {
        "tokenizer": tokenizer,
        "lowercase": lowercase,
        "token_pattern": WORD_PATTERN.pattern if tokenizer == "word" else None,
        "tokens": list(vocabulary.tokens),
        "unknown_id": 0,
        "how": ("one token per character" if tokenizer == "char" else "tokens are the matches of token_pattern (Python re)")
        + "; a token's id is its position in tokens, and a token not in it maps to unknown_id",
        "detokenize": "concatenate"
        if tokenizer == "char"
        else "join with single spaces, but no space before any of ,.;:!?)]} or after any of ([{, and none around a newline token",
    }


def _task_metadata(task) -> dict[str, Any]:
    data = task.config.data
    kind = task.config.task
    if kind == "language_model":
        return {"vocabulary": _vocabulary(task.vocabulary, data.tokenizer, lowercase=False)}
    if kind == "classify":
        return {
            "vocabulary": _vocabulary(task.vocabulary, data.tokenizer, data.lowercase),
            "labels": list(task.labels),
            "max_length": data.max_length,
            "text_column": data.text_column,
        }
    artifacts = task.artifacts_
    scaler = artifacts["scaler"]
    return {
        "columns": list(artifacts["columns"]),
        "targets": list(data.target),
        "context_length": data.context_length,
        "horizon": data.horizon,
        "frequency": artifacts["frequency"],
        "columns_how": "targets first, then data.features; a categorical column c becomes one column 'c=value' per "
        "value in categories (1.0 where the row has that value, else 0.0); calendar columns <cycle>_sin/_cos are "
        "sin/cos(2 pi x / period) of hour (x = hour + minute / 60, period 24), dayofweek (Monday = 0, period 7) and "
        "month (x = month - 1 + (day - 1) / 31, period 12)",
        "categories": artifacts["categories"],
        "calendar_features": data.calendar_features,
        "last_context": artifacts["last_context"],  # scaled: input for a forecast after the training data's end
        "last_index": artifacts["last_index"],
        "interval_level": task.interval_level,
        "scaler": {
            "kind": scaler["kind"],
            "shift": scaler["shift"],
            "scale": scaler["scale"],
            "how": "input: (value - shift[j]) / scale[j] for column j of columns; "
            "output: value * scale[j] + shift[j] for target j (the first len(targets) columns)",
        },
    }


def metadata(task, model: SequenceModel, signature: Signature, fmt: str, model_file: str, source: Path, step: int | None):
    config = model.config
    return {
        "seqtool_version": seqtool.__version__,
        "format": fmt,
        "model_file": model_file,
        "task": task.config.task,
        "checkpoint": str(source),
        "step": step,
        "model": {
            "type": config.type,
            "num_layers": config.num_layers,
            "hidden_size": config.hidden_size,
            "bidirectional": config.bidirectional,
        },
        "inputs": signature.inputs,
        "outputs": signature.outputs,
        **_task_metadata(task),
    }


# ---- writing and checking ------------------------------------------------------------------


def _require_onnx() -> None:
    """torch.onnx needs `onnx` to serialise, and the check needs onnxruntime: ask before any work."""
    import importlib.util

    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise SeqtoolError(f"ONNX export needs {' and '.join(missing)}, not installed: {INSTALL_HINT}")


def _onnx_bytes(signature: Signature) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notices
        torch.onnx.export(
            signature.graph,
            signature.example,
            buffer,
            input_names=[spec["name"] for spec in signature.inputs],
            output_names=[spec["name"] for spec in signature.outputs],
            dynamic_axes=signature.dynamic_axes,
            opset_version=ONNX_OPSET,
            dynamo=False,  # torch.export cannot trace nn.LSTM/GRU in torch 2.x; the TorchScript exporter can
        )
    return buffer.getvalue()


def _run_onnx(data: bytes, signature: Signature) -> list[np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    feeds = {spec["name"]: tensor.numpy() for spec, tensor in zip(signature.inputs, signature.check, strict=True)}
    return session.run([spec["name"] for spec in signature.outputs], feeds)


def _torchscript_bytes(signature: Signature) -> bytes:
    signature.graph.requires_grad_(False)  # a deployed module's outputs should not track gradients
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated upstream and says so on every call
        traced = torch.jit.trace(signature.graph, signature.example, check_trace=False)
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def _run_torchscript(data: bytes, signature: Signature) -> list[np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
        with torch.no_grad():
            result = loaded(*signature.check)
    result = result if isinstance(result, tuple) else (result,)
    return [tensor.numpy() for tensor in result]


@dataclass
class ExportResult:
    model_path: Path
    metadata_path: Path
    max_abs_diff: float
    tolerance: float
    task: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


def build(task, model: SequenceModel, fmt: str) -> tuple[bytes, Signature]:
    """The exported file's bytes, unchecked, and its signature with the check batch and
    seqtool's answers to it (also used by benchmarks/generate.py to time onnxruntime)."""
    model.float().eval()
    generator = torch.Generator().manual_seed(0)  # the same check batch every time
    signature = _SIGNATURES[task.config.task](task, model, generator)
    return (_onnx_bytes(signature) if fmt == "onnx" else _torchscript_bytes(signature)), signature


def default_output(target: Path, fmt: str, is_folder: bool = False) -> Path:
    """`model.onnx` or `model.torchscript.pt` in a folder (the run directory), or beside a file."""
    folder = target if is_folder or target.is_dir() else target.parent
    return folder / ("model.onnx" if fmt == "onnx" else "model.torchscript.pt")


def metadata_path_for(output: Path) -> Path:
    return output.with_name(output.name + ".json")


def export(target: str | Path, fmt: str, output: str | Path | None = None, force: bool = False) -> ExportResult:
    """Export a run's best checkpoint (or a checkpoint file), check it, then write it and its metadata."""
    if fmt not in FORMATS:
        raise SeqtoolError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    target = Path(target)
    source = resolve_checkpoint(target)
    # "DIR/" names a folder even before it exists (a Path would drop the slash): made at the end.
    new_folder = isinstance(output, str) and output.endswith(("/", os.sep)) and not Path(output).is_dir()
    if output is None:
        output = default_output(target, fmt)
    elif new_folder or Path(output).is_dir():
        output = default_output(Path(output), fmt, is_folder=True)
    else:
        output = Path(output)
    metadata_file = metadata_path_for(output)
    for path in (output, metadata_file):
        if path.is_dir():
            raise SeqtoolError(f"{path} is a folder; choose another --output")
        if path.is_file() and _is_checkpoint(path):
            raise SeqtoolError(f"{path} is a seqtool checkpoint; choose another --output")
        if path.exists() and not force:
            raise SeqtoolError(f"{path} exists; pass --force to replace it, or choose another --output")
    if not output.parent.is_dir() and not new_folder:
        raise SeqtoolError(f"--output: folder {output.parent} does not exist (end it with / to have it made)")
    if output.parent.exists() and not output.parent.is_dir():
        raise SeqtoolError(f"--output: {output.parent} is a file, not a folder")
    if fmt == "onnx":
        _require_onnx()
    task, model, payload = load_trained(source)
    kind = task.config.task
    if kind not in _SIGNATURES:
        raise SeqtoolError(
            f"export applies to language_model, forecast and classify models; {target} is a {kind} model "
            "(a benchmark on synthetic data)"
        )
    try:
        data, signature = build(task, model, fmt)
        produced = _run_onnx(data, signature) if fmt == "onnx" else _run_torchscript(data, signature)
    except SeqtoolError:
        raise
    except Exception as exc:  # an exporter or runtime failure is reported, not a traceback
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SeqtoolError(f"{fmt} export of {source} failed: {first_line}") from exc
    for got, want, spec in zip(produced, signature.expected, signature.outputs, strict=True):
        if got.shape != tuple(want.shape):
            raise SeqtoolError(f"the {fmt} export's {spec['name']} has shape {got.shape}, PyTorch's {tuple(want.shape)}")
    diff = max(float(np.abs(got - want.numpy()).max(initial=0.0)) for got, want in zip(produced, signature.expected, strict=True))
    if not diff <= TOLERANCE:  # also catches NaN
        raise SeqtoolError(
            f"the {fmt} export differs from PyTorch by up to {diff:.3g} on the check batch (limit {TOLERANCE:g}); "
            f"nothing was written"
        )
    info = metadata(task, model, signature, fmt, output.name, source, payload["train_state"]["step"])
    info["check"] = {"max_abs_diff": diff, "tolerance": TOLERANCE}
    text = json.dumps(info, indent=1, ensure_ascii=False) + "\n"
    for path, content in ((output, data), (metadata_file, text.encode("utf-8"))):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, content)
        except OSError as exc:
            raise SeqtoolError(f"could not write {path}: {exc.strerror or exc}") from None
    return ExportResult(output, metadata_file, diff, TOLERANCE, kind, signature.inputs, signature.outputs)


def _is_checkpoint(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC
