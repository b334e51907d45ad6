"""`seqtool export`: a trained model as an ONNX or TorchScript file that runs without seqtool.

What is exported is each kind's inference graph, not the training module: the kind's
`export_signature` names its inputs and outputs (a language model's recurrent state is part of
its signature, so a deployed model steps token by token), and `export_metadata` adds everything
else a deployment needs (vocabulary and tokenizer rules, labels, scaler, column order, horizon)
to a JSON file beside the model. A kind without a signature declares why (`not_exportable`).

Each export is checked before it is written: the file is loaded by its own runtime (onnxruntime,
torch.jit.load) and run on a sample batch of shapes other than those it was traced with, against
seqtool's own inference code.
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
from seqtool.engine import load_trained
from seqtool.errors import SeqtoolError
from seqtool.models import model_option
from seqtool.signature import Signature
from seqtool.tasks import Task

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4  # largest accepted |exported - PyTorch| on the check batch
ONNX_OPSET = 17
INSTALL_HINT = "pip install 'seqtool[export]'"


# ---- metadata ------------------------------------------------------------------------------


def metadata(task: Task, model: nn.Module, signature: Signature, fmt: str, model_file: str, source: Path, step: int | None):
    config = task.config.model
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
            "bidirectional": model_option(config, "bidirectional"),
        },
        "inputs": signature.inputs,
        "outputs": signature.outputs,
        **task.export_metadata(),
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


def build(task: Task, model: nn.Module, fmt: str) -> tuple[bytes, Signature]:
    """The exported file's bytes, unchecked, and its signature with the check batch and
    seqtool's answers to it (also used by benchmarks/generate.py to time onnxruntime)."""
    model.float().eval()
    generator = torch.Generator().manual_seed(0)  # the same check batch every time
    signature = task.export_signature(model, generator)
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
    if not task.exports():
        raise SeqtoolError(f"export does not apply to {target}: a {kind} model cannot be exported ({task.not_exportable})")
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
