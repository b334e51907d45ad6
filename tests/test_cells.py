"""The cell registry and every registered cell's stack: the fast form against the cell's published
equations, the parallel form against the step form, padding, carried states and the config's checks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqtool.cells import registry, scan, xlstm
from seqtool.cells.minimal import MinimalLayer
from seqtool.errors import SeqtoolError
from seqtool.models import recurrent_layers
from seqtool.schema import TokenModelConfig

REPO = Path(__file__).resolve().parent.parent
CELLS = registry.names()
STEPPED = [name for name in CELLS if not registry.cell(name).fused]


def stack(name: str, layers: int = 2, bidirectional: bool = False, **options):
    config = TokenModelConfig(type=name, hidden_size=8, num_layers=layers, dropout=0.0, embedding_size=5, heads=2, **options)
    config.bidirectional = bidirectional  # the classifier's and encoders' key
    return recurrent_layers(config, 5).double().eval()


def random_state(module, batch: int, generator: torch.Generator):
    """A state of the stack's own shapes, drawn at random (a state carried from earlier text)."""
    _, state = module(torch.randn(batch, 4, 5, dtype=torch.float64, generator=generator))
    parts = state if isinstance(state, tuple) else (state,)
    drawn = tuple(torch.randn(p.shape, dtype=torch.float64, generator=generator) for p in parts)
    return drawn if isinstance(state, tuple) else drawn[0]


@pytest.mark.parametrize("name", CELLS)
def test_the_fast_form_computes_the_cells_published_equations(name):
    torch.manual_seed(0)
    module = stack(name)
    inputs = torch.randn(3, 11, 5, dtype=torch.float64)
    with torch.no_grad():
        fast, _ = module(inputs)
        torch.testing.assert_close(fast, registry.cell(name).reference(module, inputs), rtol=1e-10, atol=1e-10)


def test_the_reference_is_not_trivially_equal():
    """Against a deliberately different stack (other weights), the same check fails."""
    torch.manual_seed(0)
    module, other = stack("mingru"), stack("mingru")
    inputs = torch.randn(2, 7, 5, dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(module(inputs)[0], registry.cell("mingru").reference(other, inputs))


@pytest.mark.parametrize("name", STEPPED)
def test_the_parallel_form_equals_the_step_form_from_any_state(name, monkeypatch):
    monkeypatch.setattr(scan, "CHUNK", 4)  # several chunks, the state carried across them
    monkeypatch.setattr(xlstm, "MLSTM_CHUNK", 3)
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    for trial in range(4):
        module = stack(name, layers=1 + trial % 2)
        steps = int(torch.randint(1, 13, (), generator=generator))
        inputs = 3 * torch.randn(2, steps, 5, dtype=torch.float64, generator=generator)
        state = None if trial == 0 else random_state(module, 2, generator)
        with torch.no_grad():
            parallel, final = module.padded(inputs, None, state)
            stepped, carried = [], state
            for t in range(steps):
                h, carried = module.step(inputs[:, t], carried)
                stepped.append(h)
        torch.testing.assert_close(parallel, torch.stack(stepped, 1), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(final, carried, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", STEPPED)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_changes_nothing(name, bidirectional):
    """A packed batch of three lengths gives each sequence the outputs and final state it gets alone."""
    torch.manual_seed(2)
    module = stack(name, layers=2, bidirectional=bidirectional)
    lengths = torch.tensor([7, 3, 5])
    inputs = torch.randn(3, 7, 5, dtype=torch.float64)
    with torch.no_grad():
        packed, final = module(pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False))
        outputs, _ = pad_packed_sequence(packed, batch_first=True)
        for i, length in enumerate(lengths.tolist()):
            alone, alone_final = module(inputs[i : i + 1, :length])
            torch.testing.assert_close(outputs[i, :length], alone[0], rtol=1e-10, atol=1e-10)
            parts = final if isinstance(final, tuple) else (final,)
            alone_parts = alone_final if isinstance(alone_final, tuple) else (alone_final,)
            for part, alone_part in zip(parts, alone_parts, strict=True):
                torch.testing.assert_close(part[:, i], alone_part[:, 0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("activation", ["g", "identity"])
@pytest.mark.parametrize("normalise", [True, False])
def test_min_cells_variants_agree_with_their_step_form(activation, normalise):
    """The paper's variants: with and without the g activation, minLSTM with and without its normalisation."""
    torch.manual_seed(3)
    for kind in ("mingru", "minlstm"):
        layer = MinimalLayer(4, 5, kind, activation, normalise).double()
        x = 3 * torch.randn(2, 9, 4, dtype=torch.float64)
        h0 = torch.randn(2, 5, dtype=torch.float64)
        parallel, _ = layer(x, (h0,), None)
        h, stepped = (h0,), []
        for t in range(9):
            out, h = layer.step(x[:, t], h)
            stepped.append(out)
        torch.testing.assert_close(parallel, torch.stack(stepped, 1), rtol=1e-10, atol=1e-10)


def test_min_cells_gradients_are_finite_and_float32_holds_at_length_2048():
    torch.manual_seed(4)
    layer = MinimalLayer(4, 4, "mingru", "identity", True).double()
    x = torch.randn(2, 300, 4, dtype=torch.float64, requires_grad=True)
    layer(x, layer.initial_state(2, x), None)[0].sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in layer.parameters())
    long = MinimalLayer(8, 8, "minlstm", "g", True)
    x = 4 * torch.randn(2, 2048, 8)
    exact = long.double()(x.double(), (torch.zeros(2, 8, dtype=torch.float64),), None)[0]
    approx = long.float()(x, (torch.zeros(2, 8),), None)[0]
    torch.testing.assert_close(approx.double(), exact, rtol=1e-4, atol=1e-5)


def test_model_type_is_checked_against_the_registry(tmp_path):
    from seqtool.configure import load_config

    config = tmp_path / "c.yaml"
    config.write_text("task: long_range\nmodel:\n  type: mingur\n", encoding="utf-8")
    with pytest.raises(SeqtoolError, match="did you mean 'mingru'"):
        load_config(config, [])
    config.write_text("task: long_range\nmodel:\n  type: gru\n  normalise_gates: false\n", encoding="utf-8")
    with pytest.raises(SeqtoolError, match="'model.normalise_gates' applies to model.type=minlstm only"):
        load_config(config, [])
    config.write_text("task: long_range\nmodel:\n  type: mingru\n  forget_bias: 2.0\n", encoding="utf-8")
    with pytest.raises(SeqtoolError, match="'model.forget_bias' applies to model.type=lstm only"):
        load_config(config, [])
    assert load_config(config, ["model.forget_bias=1.0", "model.candidate_activation=identity"]).model.type == "mingru"


PLUGIN_CELL = """
from seqtool.cells import Cell, StatePart
from seqtool.cells.minimal import MinimalLayer, _reference_step
from seqtool.cells.stack import LayerStack, run_layers_by_reference

def build(config, input_size):
    return LayerStack(config, input_size, lambda i, h: MinimalLayer(i, h, "mingru", "identity", False))

TESTCELL = Cell(
    name="testcell",
    summary="a minGRU without g, declared by a plug-in",
    colour="tab:pink",
    build=build,
    reference=lambda stack, x: run_layers_by_reference(stack, x, _reference_step),
    state=(StatePart("h", "hidden state", lambda config: (config.hidden_size,)),),
)
"""


@pytest.mark.slow
def test_a_cell_from_a_plug_in_package_trains_and_is_listed(tmp_path):
    """A package declaring a cell in the entry-point group `seqtool.cells` (an installed
    distribution's metadata on the path) is listed by `seqtool cells` and trains."""
    site = tmp_path / "site"
    (site / "seqtool_testcell-0.1.dist-info").mkdir(parents=True)
    (site / "seqtool_testcell.py").write_text(textwrap.dedent(PLUGIN_CELL), encoding="utf-8")
    info = site / "seqtool_testcell-0.1.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: seqtool-testcell\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[seqtool.cells]\ntestcell = seqtool_testcell:TESTCELL\n", encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    environment["COLUMNS"] = "200"

    def seqtool(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "seqtool", *args]
        return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300, cwd=tmp_path)

    listing = seqtool("cells")
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if "testcell" in line)
    assert "seqtool-testcell 0.1" in line and "declared by a plug-in" in line
    run = tmp_path / "run"
    config = REPO / "configs" / "long_range_adding.yaml"
    overrides = ["model.type=testcell", "data.length=10", "data.samples=256", "training.max_steps=3", "training.max_time=null"]
    trained = seqtool("train", str(config), *overrides, "--run-dir", str(run))
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "testcell" in (run / "config.yaml").read_text(encoding="utf-8")


def test_the_cell_reference_in_docs_is_generated_from_the_protocol():
    from conftest import load_script

    page = (REPO / "docs" / "cells.md").read_text(encoding="utf-8")
    assert load_script("tasks_reference").updated_page(page, "cells") == page, (
        "docs/cells.md is stale: run python scripts/tasks_reference.py"
    )
