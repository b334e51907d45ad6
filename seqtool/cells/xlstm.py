"""sLSTM and mLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory").

Both gate with exponentials, kept in range by a stabiliser state m (the running maximum of the log
gates), and both carry a normaliser n so that the output is a weighted mean, not a sum.

sLSTM, per step (recurrent weights R, one block per head):
    z_t = tanh(W_z x_t + R_z h_{t-1} + b_z)            i~_t = W_i x_t + R_i h_{t-1} + b_i
    f~_t = W_f x_t + R_f h_{t-1} + b_f                 o_t = sigmoid(W_o x_t + R_o h_{t-1} + b_o)
    m_t = max(log f_t + m_{t-1}, i~_t)                 (log f_t = log sigmoid(f~_t))
    i'_t = exp(i~_t - m_t)                             f'_t = exp(log f_t + m_{t-1} - m_t)
    c_t = f'_t c_{t-1} + i'_t z_t                      n_t = f'_t n_{t-1} + i'_t
    h_t = o_t * c_t / n_t
Its state is (h, c, n, m). Its gates read h_{t-1}, so it trains by a loop over time.

mLSTM, per step and head (a matrix memory C of d x d; i~ and f~ are one number per head):
    q_t = W_q x_t,  k_t = W_k x_t / sqrt(d),  v_t = W_v x_t,  o_t = sigmoid(W_o x_t)
    m_t = max(log f_t + m_{t-1}, i~_t),  i'_t = exp(i~_t - m_t),  f'_t = exp(log f_t + m_{t-1} - m_t)
    C_t = f'_t C_{t-1} + i'_t v_t k_t^T                n_t = f'_t n_{t-1} + i'_t k_t
    h_t = o_t * (C_t q_t) / max(|n_t . q_t|, exp(-m_t))
Its state is (h, C, n, m): h first, as every stack's state begins, though the recurrence does not
read it. With no recurrent weights, a chunk of steps is one masked attention-like product (the
parallel form), and the memory is carried between chunks (the chunkwise form).

Both use the sigmoid forget gate of the paper's two choices. The forget gates' biases start
between 3 and 6 (the paper's initialisation: remember by default).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.nn import functional as F

from seqtool.cells.protocol import Cell, StatePart
from seqtool.cells.scan import FLOOR
from seqtool.cells.stack import LayerStack, LayerState, run_layers_by_reference
from seqtool.schema import ModelConfig

MLSTM_CHUNK = 64  # steps per parallel block: the block's work grows with its square


def _last_valid(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Each sequence's output at its own last step (batch, hidden), from h (batch, time, hidden)."""
    if mask is None:
        return h[:, -1]
    last = (mask.sum(dim=1) - 1).clamp_min(0)
    return h.gather(1, last[:, None, None].expand(-1, 1, h.shape[-1]))[:, 0]


class MLSTMLayer(nn.Module):
    """One direction of one mLSTM layer: `forward` chunkwise-parallel, `step` recurrent."""

    def __init__(self, input_size: int, hidden_size: int, heads: int):
        super().__init__()
        self.heads, self.d, self.hidden_size = heads, hidden_size // heads, hidden_size
        self.project = nn.Linear(input_size, 4 * hidden_size + 2 * heads)  # q, k, v, o and the two scalar gates
        with torch.no_grad():
            self.project.bias[-heads:] = torch.linspace(3.0, 6.0, heads)

    def initial_state(self, batch: int, like: torch.Tensor) -> LayerState:
        heads, d = self.heads, self.d
        zeros = like.new_zeros
        return zeros(batch, self.hidden_size), zeros(batch, heads, d, d), zeros(batch, heads, d), zeros(batch, heads)

    def _parts(self, x: torch.Tensor):
        """q, k, v (..., heads, d), o (..., heads * d), i~ and log f (..., heads)."""
        size = self.hidden_size
        q, k, v, o, gates = self.project(x).split([size, size, size, size, 2 * self.heads], dim=-1)
        shape = (*x.shape[:-1], self.heads, self.d)
        i_tilde, f_tilde = gates.chunk(2, dim=-1)
        k = k.reshape(shape) / math.sqrt(self.d)
        return q.reshape(shape), k, v.reshape(shape), torch.sigmoid(o), i_tilde, F.logsigmoid(f_tilde)

    def step(self, x_t: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState]:
        _, C, n, m = state
        q, k, v, o, i_tilde, log_f = self._parts(x_t)
        m_new = torch.maximum(log_f + m, i_tilde)
        i_gate, f_gate = torch.exp(i_tilde - m_new), torch.exp(log_f + m - m_new)
        C = f_gate[..., None, None] * C + i_gate[..., None, None] * v.unsqueeze(-1) * k.unsqueeze(-2)
        n = f_gate[..., None] * n + i_gate[..., None] * k
        numerator = (C @ q.unsqueeze(-1)).squeeze(-1)
        denominator = torch.maximum((n * q).sum(-1).abs(), torch.exp(-m_new))
        h = o * (numerator / denominator[..., None]).flatten(-2)
        return h, (h, C, n, m_new)

    def forward(self, x: torch.Tensor, state: LayerState, mask: torch.Tensor | None) -> tuple[torch.Tensor, LayerState]:
        q, k, v, o, i_tilde, log_f = self._parts(x)
        if mask is not None:  # a padded step writes nothing and forgets nothing
            i_tilde = i_tilde.masked_fill(~mask[..., None], FLOOR)
            log_f = log_f.masked_fill(~mask[..., None], 0.0)
        memory = state[1:]
        if torch.jit.is_tracing():  # an exported graph: one chunk, so that it holds for any length
            h, memory = _chunk(q, k, v, i_tilde, log_f, memory)
            h = o * h.flatten(-2)
            return h, (_last_valid(h, mask), *memory)
        outputs = []
        chunks = (part.split(MLSTM_CHUNK, dim=1) for part in (q, k, v, i_tilde, log_f))  # split: one backward for all
        for q_c, k_c, v_c, i_c, f_c in zip(*chunks, strict=True):
            h, memory = _chunk(q_c, k_c, v_c, i_c, f_c, memory)
            outputs.append(h)
        h = o * torch.cat(outputs, dim=1).flatten(-2)
        return h, (_last_valid(h, mask), *memory)


def _chunk(q, k, v, i_tilde, log_f, memory):
    """The parallel form over one chunk (batch, time, heads, ...), from and to a carried (C, n, m)."""
    C, n, m = memory
    steps = q.shape[1]
    F_cum = torch.cumsum(log_f, dim=1)  # (batch, time, heads): log of the decay since the chunk's start
    log_d = F_cum.unsqueeze(2) - F_cum.unsqueeze(1) + i_tilde.unsqueeze(1)  # (batch, t, s, heads): step s in h_t
    causal = torch.ones(steps, steps, dtype=torch.bool, device=q.device).tril()
    log_d = log_d.masked_fill(~causal[None, :, :, None], float("-inf"))
    log_carry = F_cum + m.unsqueeze(1)  # (batch, time, heads): the carried memory in h_t
    m_t = torch.maximum(log_d.amax(dim=2), log_carry)  # the recurrence's own stabiliser, unrolled
    weights = torch.exp(log_d - m_t.unsqueeze(2))
    carry = torch.exp(log_carry - m_t)
    scores = torch.einsum("bthd,bshd->btsh", q, k) * weights
    numerator = torch.einsum("btsh,bshd->bthd", scores, v) + carry[..., None] * torch.einsum("bhde,bthe->bthd", C, q)
    normaliser = scores.sum(dim=2) + carry * torch.einsum("bhd,bthd->bth", n, q)
    h = numerator / torch.maximum(normaliser.abs(), torch.exp(-m_t))[..., None]
    w_last = weights[:, -1]  # (batch, s, heads): each step's weight in the memory after the chunk
    C = carry[:, -1, :, None, None] * C + torch.einsum("bsh,bshd,bshe->bhde", w_last, v, k)
    n = carry[:, -1, :, None] * n + torch.einsum("bsh,bshd->bhd", w_last, k)
    return h, (C, n, m_t[:, -1])


class SLSTMLayer(nn.Module):
    """One direction of one sLSTM layer: a loop over time (its gates read h_{t-1}). The recurrent
    matrices are block-diagonal, one block per head."""

    def __init__(self, input_size: int, hidden_size: int, heads: int):
        super().__init__()
        self.heads, self.d, self.hidden_size = heads, hidden_size // heads, hidden_size
        self.input = nn.Linear(input_size, 4 * hidden_size)  # gates z, i, f, o
        self.recurrent = nn.Parameter(torch.randn(heads, self.d, 4 * self.d) / math.sqrt(self.d))
        with torch.no_grad():
            self.input.bias[2 * hidden_size : 3 * hidden_size] = torch.linspace(3.0, 6.0, hidden_size)

    def initial_state(self, batch: int, like: torch.Tensor) -> LayerState:
        zeros = like.new_zeros(batch, self.hidden_size)
        return zeros, zeros, zeros, zeros

    def step(self, x_t: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState]:
        new = slstm_cell(self.input(x_t), self.recurrent, *state)
        return new[0], new

    def forward(self, x: torch.Tensor, state: LayerState, mask: torch.Tensor | None) -> tuple[torch.Tensor, LayerState]:
        loop = _scripted_loop() if torch.jit.is_tracing() else slstm_loop
        outputs, *final = loop(self.input(x), self.recurrent, *state, mask)  # every step's input share at once
        return outputs, tuple(final)


def recur(h: torch.Tensor, recurrent: torch.Tensor) -> torch.Tensor:
    """R h_{t-1}, head by head (recurrent: (heads, d, 4 d)), laid out as the input projection's
    gates (z, i, f, o)."""
    heads, d = recurrent.shape[0], recurrent.shape[1]
    per_head = torch.einsum("bhd,hde->bhe", h.reshape(-1, heads, d), recurrent)  # (batch, heads, 4d)
    return per_head.reshape(-1, heads, 4, d).transpose(1, 2).reshape(-1, 4 * heads * d)


def slstm_cell(
    pre: torch.Tensor, recurrent: torch.Tensor, h: torch.Tensor, c: torch.Tensor, n: torch.Tensor, m: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step from the input's share of the pre-activations (batch, 4 hidden): the step form."""
    z, i_tilde, f_tilde, o = (pre + recur(h, recurrent)).chunk(4, dim=-1)
    return _gated(z, i_tilde, f_tilde, o, c, n, m)


def _gated(
    z: torch.Tensor,
    i_tilde: torch.Tensor,
    f_tilde: torch.Tensor,
    o: torch.Tensor,
    c: torch.Tensor,
    n: torch.Tensor,
    m: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The stabilised update from the gates' pre-activations: the new (h, c, n, m)."""
    log_f = F.logsigmoid(f_tilde)
    m_new = torch.maximum(log_f + m, i_tilde)
    i_gate, f_gate = torch.exp(i_tilde - m_new), torch.exp(log_f + m - m_new)
    c = f_gate * c + i_gate * torch.tanh(z)
    n = f_gate * n + i_gate
    return torch.sigmoid(o) * c / n, c, n, m_new


def slstm_loop(
    pre: torch.Tensor,
    recurrent: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    n: torch.Tensor,
    m: torch.Tensor,
    mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every step of pre (batch, time, 4 hidden): the outputs (batch, time, hidden) and the final
    (h, c, n, m). A padded step (mask False) keeps the state. Inside, every tensor is head-major,
    (heads, batch, d), so that a step is one batched matrix product added to the input's share
    (baddbmm) and the gate arithmetic runs on views: no reshape or copy per step."""
    heads, d = recurrent.shape[0], recurrent.shape[1]
    batch, steps = pre.shape[0], pre.shape[1]
    inputs = pre.reshape(batch, steps, 4, heads, d).permute(1, 3, 0, 2, 4).reshape(steps, heads, batch, 4 * d)
    h, c, n, m = _head_major(h, heads), _head_major(c, heads), _head_major(n, heads), _head_major(m, heads)
    keep = None if mask is None else mask.t()[:, None, :, None]  # (time, 1, batch, 1)
    outputs: list[torch.Tensor] = []
    # unbind, not inputs[t]: indexing's backward writes a whole-sequence gradient at every step
    for t, x_t in enumerate(inputs.unbind(0)):
        z, i_tilde, f_tilde, o = torch.baddbmm(x_t, h, recurrent).chunk(4, dim=-1)
        h_t, c_t, n_t, m_t = _gated(z, i_tilde, f_tilde, o, c, n, m)
        if keep is not None:
            h_t, c_t, n_t, m_t = (torch.where(keep[t], h_t, h), torch.where(keep[t], c_t, c), torch.where(keep[t], n_t, n),
                                  torch.where(keep[t], m_t, m))  # fmt: skip
        h, c, n, m = h_t, c_t, n_t, m_t
        outputs.append(h)
    hidden = torch.stack(outputs).permute(2, 0, 1, 3).reshape(batch, steps, heads * d)
    return hidden, _unit_major(h), _unit_major(c), _unit_major(n), _unit_major(m)


def _head_major(part: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, hidden) -> (heads, batch, d)."""
    return part.reshape(part.shape[0], heads, part.shape[1] // heads).transpose(0, 1)


def _unit_major(part: torch.Tensor) -> torch.Tensor:
    """(heads, batch, d) -> (batch, hidden)."""
    return part.transpose(0, 1).reshape(part.shape[1], part.shape[0] * part.shape[2])


@functools.cache
def _scripted_loop():
    """The loop compiled by TorchScript, for export only: a traced Python loop would fix the
    length it saw, a scripted one keeps it a loop (an ONNX Loop)."""
    return torch.jit.script(slstm_loop)


def _mlstm_reference_step(layer: MLSTMLayer, x_t: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState]:
    """The paper's mLSTM equations without the stabiliser: i = exp(i~), f = sigmoid(f~),
    h = o * C q / max(|n . q|, 1) (exact while exp does not overflow)."""
    _, C, n, _ = state
    q, k, v, o, i_tilde, log_f = layer._parts(x_t)
    i_gate, f_gate = torch.exp(i_tilde), torch.exp(log_f)
    C = f_gate[..., None, None] * C + i_gate[..., None, None] * v.unsqueeze(-1) * k.unsqueeze(-2)
    n = f_gate[..., None] * n + i_gate[..., None] * k
    h = o * ((C @ q.unsqueeze(-1)).squeeze(-1) / torch.clamp_min((n * q).sum(-1).abs(), 1.0)[..., None]).flatten(-2)
    return h, (h, C, n, state[3])


def _slstm_reference_step(layer: SLSTMLayer, x_t: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState]:
    """The paper's sLSTM equations without the stabiliser: i = exp(i~), f = sigmoid(f~)."""
    h, c, n, m = state
    z, i_tilde, f_tilde, o = (layer.input(x_t) + recur(h, layer.recurrent)).chunk(4, dim=-1)
    c = torch.sigmoid(f_tilde) * c + torch.exp(i_tilde) * torch.tanh(z)
    n = torch.sigmoid(f_tilde) * n + torch.exp(i_tilde)
    h = torch.sigmoid(o) * c / n
    return h, (h, c, n, m)


def _build(layer: type[nn.Module]):
    def build(config: ModelConfig, input_size: int) -> LayerStack:
        return LayerStack(config, input_size, lambda i, h: layer(i, h, config.heads))

    return build


_HIDDEN = StatePart("h", "hidden state (the last output)", lambda config: (config.hidden_size,))
_NOTES = ("layers after the first are pre-norm residual blocks; two or more layers end with a LayerNorm",)

SLSTM = Cell(
    name="slstm",
    summary="scalar LSTM of xLSTM (Beck et al. 2024): exponential gating, normaliser and stabiliser; a loop over time",
    colour="tab:purple",
    build=_build(SLSTMLayer),
    reference=lambda stack, x: run_layers_by_reference(stack, x, _slstm_reference_step),
    state=(
        _HIDDEN,
        StatePart("c", "cell state (scaled by exp(-m))", lambda config: (config.hidden_size,)),
        StatePart("n", "normaliser state (scaled by exp(-m))", lambda config: (config.hidden_size,)),
        StatePart("m", "stabiliser state", lambda config: (config.hidden_size,)),
    ),
    options=("heads",),
    onnx=False,  # its scripted loop does not survive torch's ONNX exporter; TorchScript keeps it
    notes=_NOTES,
)

MLSTM = Cell(
    name="mlstm",
    summary="matrix LSTM of xLSTM (Beck et al. 2024): a d x d memory per head; trains chunkwise in parallel",
    colour="tab:brown",
    build=_build(MLSTMLayer),
    reference=lambda stack, x: run_layers_by_reference(stack, x, _mlstm_reference_step),
    state=(
        _HIDDEN,
        StatePart(
            "C",
            "matrix memory per head (scaled by exp(-m))",
            lambda config: (config.heads, *[config.hidden_size // config.heads] * 2),
        ),
        StatePart(
            "n", "normaliser per head (scaled by exp(-m))", lambda config: (config.heads, config.hidden_size // config.heads)
        ),
        StatePart("m", "stabiliser per head", lambda config: (config.heads,)),
    ),
    options=("heads",),
    notes=(*_NOTES, "an encoder-decoder's decoder starts from the bridged h and an empty memory: attention carries the source"),
)
