"""The linear recurrence h_t = a_t * h_{t-1} + b_t over a whole sequence at once (Heinsen 2023,
"Efficient Parallelization of a Ubiquitous Sequential Computation"), in log space.

With A_t = sum_{r<=t} log a_r, the recurrence unrolls to
    h_t = exp(A_t) * h_0 + sum_{s<=t} exp(A_t - A_s) * b_s,
and the sum is a cumulative log-sum-exp: log of the sum = A_t + logcumsumexp_s(log b_s - A_s).
Three departures from the paper's appendix, for correctness rather than speed:
- b may be negative (minGRU and minLSTM without the "g" activation): its positive and negative
  parts are scanned apart and subtracted. A part that is zero has log FLOOR, whose exponential
  is exactly 0 and whose gradient is finite (log 0 would give NaN gradients).
- h_0 enters as exp(A_t) * h_0, outside the logarithms, so a carried state of any sign (or zero)
  is exact.
- The sequence is scanned in chunks of CHUNK steps, the state carried between them. Within a
  chunk A_t and the log-sum-exp grow together and cancel; over thousands of strongly decaying
  steps that cancellation would cost float32 digits. The chunk loop is T / CHUNK iterations.

An exported graph runs the recurrence itself, h_t = a_t h_{t-1} + b_t, one step at a time in a
loop compiled by TorchScript (an ONNX Loop): ONNX has no cumulative log-sum-exp, and a traced
Python loop would fix the length it saw.
"""

from __future__ import annotations

import functools

import torch

FLOOR = -1.0e4  # log of a part that is zero: exp(FLOOR + anything reachable) is 0 in float32 and float64
CHUNK = 256


def safe_log(x: torch.Tensor) -> torch.Tensor:
    """log x where x > 0, FLOOR elsewhere, with finite gradients everywhere."""
    tiny = torch.finfo(x.dtype).tiny
    return torch.where(x > 0, torch.log(x.clamp_min(tiny)), torch.full_like(x, FLOOR))


def _from_zero(a_star: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """sum_{s<=t} exp(A_t - A_s) b_s for b > 0 given as log b (batch, time, features)."""
    return torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))


def linear_scan(
    log_a: torch.Tensor, b: torch.Tensor | None = None, h0: torch.Tensor | None = None, log_b: torch.Tensor | None = None
) -> torch.Tensor:
    """All h_t of h_t = a_t h_{t-1} + b_t, (batch, time, features), from log a_t and either b_t
    (any sign) or log b_t (b > 0: one scan instead of two). h0 (batch, features), None for zeros."""
    if torch.jit.is_tracing():  # an exported graph: the recurrence as a loop (below)
        start = h0 if h0 is not None else log_a.new_zeros(log_a.shape[0], log_a.shape[2])
        return _scripted_recurrence()(torch.exp(log_a), b if b is not None else torch.exp(log_b), start)
    outputs = []
    h = h0
    pieces = [part.split(CHUNK, dim=1) if part is not None else None for part in (log_a, b, log_b)]  # split: one backward
    for k, log_a_k in enumerate(pieces[0]):
        b_k, log_b_k = (None if part is None else part[k] for part in pieces[1:])
        chunk = _chunk(log_a_k, b_k, h, log_b_k)
        outputs.append(chunk)
        h = chunk[:, -1]
    return torch.cat(outputs, dim=1)


def _chunk(log_a: torch.Tensor, b: torch.Tensor | None, h0: torch.Tensor | None, log_b: torch.Tensor | None) -> torch.Tensor:
    """The scan over one stretch of steps, from h0."""
    a_star = torch.cumsum(log_a, dim=1)
    if log_b is not None:
        h = _from_zero(a_star, log_b)
    else:
        h = _from_zero(a_star, safe_log(b)) - _from_zero(a_star, safe_log(-b))
    return h if h0 is None else h + torch.exp(a_star) * h0.unsqueeze(1)


def recurrence(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """h_t = a_t h_{t-1} + b_t step by step: a, b (batch, time, features), h0 (batch, features)."""
    outputs: list[torch.Tensor] = []
    h = h0
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        outputs.append(h)
    return torch.stack(outputs, dim=1)


@functools.cache
def _scripted_recurrence():
    return torch.jit.script(recurrence)
