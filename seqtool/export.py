"""`seqtool export`: a trained model as an ONNX or TorchScript file that runs without seqtool.

What is exported is each kind's inference graph, not the training module: the kind's
`export_signature` names its inputs and outputs (a language model's recurrent state is part of
its signature, so a deployed model steps token by token), and `export_metadata` adds everything
else a deployment needs (vocabulary and tokenizer rules, labels, scaler, column order, horizon)
to a JSON file beside the model. A kind without a signature declares why (`not_exportable`).

A kind may export several graphs (an encoder-decoder: the encoder and one decoder step): its signature is
then a dict of parts, written as `model.<part>.onnx` beside one metadata file, and the kind's
`check_export` runs its inference loop (greedy decoding) on the exported parts.

Each export is checked before it is written: the file is loaded by its own runtime (onnxruntime,
torch.jit.load) and run on a sample batch of shapes other than those it was traced with, against
seqtool's own inference code.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import seqtool
from seqtool.cells import registry
from seqtool.checkpoint import MAGIC, atomic_write_bytes, resolve_checkpoint
from seqtool.engine import load_trained
from seqtool.errors import SeqtoolError, first_line
from seqtool.models import model_option
from seqtool.signature import Signature
from seqtool.tasks import Task

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4  # largest accepted |exported - PyTorch| on the check batch
ONNX_OPSET = 17
INSTALL_HINT = "pip install 'seqtool[export]'"
# What an exporter or a runtime raises when a graph cannot be exported or run: reported in one
# line. Anything else (a KeyError, a TypeError) is a bug in seqtool or the kind, and keeps its traceback.
EXPORT_FAILURES: tuple[type[BaseException], ...] = (
    RuntimeError,
    ValueError,
    NotImplementedError,
    torch.onnx.errors.OnnxExporterError,
)


log = logging.getLogger(__name__)


@contextlib.contextmanager
def exporter_notices(what: str) -> Iterator[None]:
    """The warnings the exporters and TorchScript give on every call (deprecation notices,
    tracer warnings about Python values frozen into the graph) are kept off the terminal, and
    logged one line each (`seqtool --debug export` shows them). The check that follows every
    export is what says whether the graph is right."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for notice in caught:
        log.info("%s: %s: %s", what, notice.category.__name__, str(notice.message).splitlines()[0])


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
    with exporter_notices("torch.onnx.export"):
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


def _onnxruntime_failures() -> tuple[type[BaseException], ...]:
    """onnxruntime's own exception types (not RuntimeError's), when it is installed."""
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as state
    except ImportError:
        return ()
    return tuple(
        getattr(state, name) for name in ("Fail", "InvalidArgument", "InvalidGraph", "RuntimeException") if hasattr(state, name)
    )


def _onnx_session(data: bytes) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _run_onnx(data: bytes, signature: Signature) -> list[np.ndarray]:
    session = _onnx_session(data)
    feeds = {spec["name"]: tensor.numpy() for spec, tensor in zip(signature.inputs, signature.check, strict=True)}
    return session.run([spec["name"] for spec in signature.outputs], feeds)


def _torchscript_bytes(signature: Signature) -> bytes:
    signature.graph.requires_grad_(False)  # a deployed module's outputs should not track gradients
    buffer = io.BytesIO()
    with exporter_notices("torch.jit.trace"):
        traced = torch.jit.trace(signature.graph, signature.example, check_trace=False)
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def _torchscript_module(data: bytes) -> Any:
    with exporter_notices("torch.jit.load"):
        return torch.jit.load(io.BytesIO(data), map_location="cpu")


def _run_torchscript(data: bytes, signature: Signature) -> list[np.ndarray]:
    with exporter_notices("TorchScript"):
        with torch.no_grad():
            result = _torchscript_module(data)(*signature.check)
    result = result if isinstance(result, tuple) else (result,)
    return [tensor.numpy() for tensor in result]


def _runner(files: dict[str, bytes], signatures: dict[str, Signature], fmt: str) -> Callable:
    """`run(part, {input name: array}) -> {output name: array}` over the exported parts, for a
    kind's `check_export`: what a deployment would call."""
    loaded = {part: _onnx_session(data) if fmt == "onnx" else _torchscript_module(data) for part, data in files.items()}

    def run(part: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        signature = signatures[part]
        names = [spec["name"] for spec in signature.outputs]
        if fmt == "onnx":
            return dict(zip(names, loaded[part].run(names, feeds), strict=True))
        with torch.no_grad():
            result = loaded[part](*(torch.from_numpy(feeds[spec["name"]]) for spec in signature.inputs))
        return dict(zip(names, [t.numpy() for t in (result if isinstance(result, tuple) else (result,))], strict=True))

    return run


@dataclass
class ExportResult:
    metadata_path: Path
    max_abs_diff: float
    tolerance: float
    task: str
    files: dict[str, Path]  # part ("" for a single graph) -> file
    graphs: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]  # part -> (inputs, outputs)
    note: str | None = None  # what the graph leaves out of seqtool's own predictions (the metadata's "note")


def build(task: Task, model: nn.Module, fmt: str) -> tuple[bytes, Signature]:
    """The exported file's bytes, unchecked, and its signature with the check batch and
    seqtool's answers to it (also used by benchmarks/generate.py to time onnxruntime)."""
    files, signatures = build_parts(task, model, fmt)
    if set(files) != {""}:
        raise SeqtoolError(f"a {task.config.task} model exports several graphs ({', '.join(files)}); use build_parts")
    return files[""], signatures[""]


def build_parts(task: Task, model: nn.Module, fmt: str) -> tuple[dict[str, bytes], dict[str, Signature]]:
    """Each graph's bytes and signature: one part named "" for most kinds, or the kind's parts."""
    model.float().eval()
    generator = torch.Generator().manual_seed(0)  # the same check batch every time
    signature = task.export_signature(model, generator)
    signatures = signature if isinstance(signature, dict) else {"": signature}
    for part in signatures.values():
        # A wrapper module starts in training mode, and torch.onnx.export restores the mode it
        # found, recursively: the model itself would come back with dropout on.
        part.graph.eval()
    files = {part: _onnx_bytes(s) if fmt == "onnx" else _torchscript_bytes(s) for part, s in signatures.items()}
    model.eval()
    return files, signatures


def part_path(output: Path, part: str) -> Path:
    """`model.onnx` -> `model.encoder.onnx`; the output itself for a single graph."""
    if not part:
        return output
    stem, dot, rest = output.name.partition(".")
    return output.with_name(f"{stem}.{part}{dot}{rest}")


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
    output, new_folder = _output_path(target, fmt, output)
    metadata_file = metadata_path_for(output)
    _refuse_to_overwrite([output, metadata_file], force)
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
    cell = task.config.model.type
    if fmt == "onnx" and not registry.cell(cell).onnx:
        raise SeqtoolError(
            f"ONNX export does not support model.type={cell} (seqtool cells says which do); use --format torchscript"
        )
    files, signatures, diff = _checked_parts(task, model, fmt, source)
    paths = {part: part_path(output, part) for part in files}
    _refuse_to_overwrite([p for p in paths.values() if p != output], force)
    info = _part_metadata(task, model, signatures, fmt, paths, source, payload["train_state"]["step"])
    info["check"] = {"max_abs_diff": diff, "tolerance": TOLERANCE}
    text = json.dumps(info, indent=1, ensure_ascii=False) + "\n"
    writes = [(paths[part], data) for part, data in files.items()] + [(metadata_file, text.encode("utf-8"))]
    for path, content in writes:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, content)
        except OSError as exc:
            raise SeqtoolError(f"could not write {path}: {exc.strerror or exc}") from None
    graphs = {part: (s.inputs, s.outputs) for part, s in signatures.items()}
    return ExportResult(metadata_file, diff, TOLERANCE, kind, paths, graphs, info.get("note"))


def _output_path(target: Path, fmt: str, output: str | Path | None) -> tuple[Path, bool]:
    """The file to write, and whether its folder is to be made ("DIR/" names a folder even
    before it exists; a Path would drop the slash)."""
    new_folder = isinstance(output, str) and output.endswith(("/", os.sep)) and not Path(output).is_dir()
    if output is None:
        return default_output(target, fmt), False
    if new_folder or Path(output).is_dir():
        return default_output(Path(output), fmt, is_folder=True), new_folder
    return Path(output), False


def _refuse_to_overwrite(paths: list[Path], force: bool) -> None:
    for path in paths:
        if path.is_dir():
            raise SeqtoolError(f"{path} is a folder; choose another --output")
        if path.is_file() and _is_checkpoint(path):
            raise SeqtoolError(f"{path} is a seqtool checkpoint; choose another --output")
        if path.exists() and not force:
            raise SeqtoolError(f"{path} exists; pass --force to replace it, or choose another --output")


def _checked_parts(task: Task, model: nn.Module, fmt: str, source: Path) -> tuple[dict[str, bytes], dict[str, Signature], float]:
    """Each part built and run by its runtime on the check batch against PyTorch (and, for a kind
    of several parts, its own inference loop through them): the bytes, signatures and largest
    difference. Nothing is written when a check fails."""
    try:
        files, signatures = build_parts(task, model, fmt)
        produced = {
            p: _run_onnx(d, signatures[p]) if fmt == "onnx" else _run_torchscript(d, signatures[p]) for p, d in files.items()
        }
        mismatch = task.check_export(model, _runner(files, signatures, fmt)) if len(files) > 1 else None
    except EXPORT_FAILURES + _onnxruntime_failures() as exc:  # reported in one line; other errors are bugs
        raise SeqtoolError(f"{fmt} export of {source} failed: {first_line(exc)}") from exc
    diff = 0.0
    for part, outputs in produced.items():
        signature = signatures[part]
        for got, want, spec in zip(outputs, signature.expected, signature.outputs, strict=True):
            if got.shape != tuple(want.shape):
                raise SeqtoolError(f"the {fmt} export's {spec['name']} has shape {got.shape}, PyTorch's {tuple(want.shape)}")
            difference = float(np.abs(got.astype(np.float64) - want.numpy().astype(np.float64)).max(initial=0.0))
            diff = max(diff, difference) if difference == difference else float("nan")
    if not diff <= TOLERANCE:  # also catches NaN
        raise SeqtoolError(
            f"the {fmt} export differs from PyTorch by up to {diff:.3g} on the check batch (limit {TOLERANCE:g}); "
            f"nothing was written"
        )
    if mismatch:
        raise SeqtoolError(f"the {fmt} export: {mismatch}; nothing was written")
    return files, signatures, diff


def _part_metadata(
    task: Task, model: nn.Module, signatures: dict[str, Signature], fmt: str, paths: dict[str, Path], source: Path, step: int
) -> dict[str, Any]:
    if set(signatures) == {""}:
        return metadata(task, model, signatures[""], fmt, paths[""].name, source, step)
    first = next(iter(signatures))
    info = metadata(task, model, signatures[first], fmt, paths[first].name, source, step)
    del info["model_file"], info["inputs"], info["outputs"]
    parts = {part: {"model_file": paths[part].name, "inputs": s.inputs, "outputs": s.outputs} for part, s in signatures.items()}
    return {**info, "parts": parts}


def _is_checkpoint(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC
