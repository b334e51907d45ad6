"""The encoder-decoder with attention (Bahdanau et al. 2015; Luong et al. 2015).

- Encoder: token embedding -> stacked RNN/LSTM/GRU (optionally bidirectional) over the packed
  source, so padding never changes a state.
- Bridge: the encoder's final states, per layer (both directions concatenated), through a linear
  map and tanh, start the decoder.
- Decoder: the same cell type, stacked, one target token per step. With attention, each step
  scores the encoder states (`dot`: h . m; `general`: h . W m; `bahdanau`: v . tanh(W h + U m)),
  takes their weighted sum c, and predicts from the attentional state tanh(W_c [c; h]). With
  input feeding (Luong) that attentional state is also fed to the next step's input.

Training is teacher-forced (`teacher_forced`, which `forward` and `align` share); decoding
(`greedy`, `beam_search`) runs the same `step`, batched over sentences; `align` gives the
attention weights of any output, for the alignment plot.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from seqtool.models import recurrent_layers, run_padded

PAD, UNK, BOS, EOS = 0, 1, 2, 3  # ids of the special tokens, in every vocabulary


class Seq2SeqNetwork(nn.Module):
    """source ids (batch, S) with lengths -> target scores (batch, T, target vocabulary)."""

    def __init__(self, config, source_size: int, target_size: int, shared_vocabulary: bool):
        super().__init__()
        self.config = config
        e, h = config.embedding_size, config.hidden_size
        directions = 2 if config.bidirectional else 1
        self.source_embedding = nn.Embedding(source_size, e, padding_idx=PAD)
        self.target_embedding = self.source_embedding if shared_vocabulary else nn.Embedding(target_size, e, padding_idx=PAD)
        self.encoder = recurrent_layers(config, e)
        self.fused = isinstance(self.encoder, nn.RNNBase)
        self.bridge = nn.Linear(h * directions, h)
        self.attention, self.feeding = config.attention, config.input_feeding and config.attention != "none"
        decoder_config = dataclasses.replace(config, bidirectional=False)
        self.decoder = recurrent_layers(decoder_config, e + (h if self.feeding else 0))
        memory = h * directions
        if self.attention in ("dot", "general"):
            self.memory_key = nn.Linear(memory, h, bias=False) if self.attention == "general" or memory != h else None
        if self.attention == "bahdanau":
            self.query_proj, self.key_proj = nn.Linear(h, h, bias=False), nn.Linear(memory, h)
            self.score = nn.Linear(h, 1, bias=False)
        self.combine = nn.Linear(h + memory, h) if self.attention != "none" else None
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(h, target_size)
        if config.tie_embeddings:
            self.output.weight = self.target_embedding.weight

    # ---- encoder ---------------------------------------------------------------------------------

    def encode(self, source: torch.Tensor, lengths: torch.Tensor):
        """Encoder states (batch, S, memory), the source mask (batch, S), and the decoder's first state."""
        embedded = self.dropout(self.source_embedding(source))
        memory, final = run_padded(self.encoder, embedded, lengths)
        mask = torch.arange(source.shape[1], device=source.device)[None, :] < lengths.to(source.device)[:, None]
        return memory, mask, self._bridge(final)

    def _bridge(self, final):
        def start(states: torch.Tensor) -> torch.Tensor:  # (layers * directions, batch, h) -> (layers, batch, h)
            layers = self.config.num_layers
            if self.config.bidirectional:
                states = states.view(layers, 2, *states.shape[1:]).permute(0, 2, 1, 3).reshape(layers, states.shape[1], -1)
            return torch.tanh(self.bridge(states))

        if not isinstance(final, tuple):
            return start(final)
        if self.fused:  # the LSTM's (h, c): both bridged
            return tuple(start(s) for s in final)
        # Another cell's state holds more than h (a normaliser, a stabiliser, a matrix memory),
        # which no linear map of the encoder's may fill: the decoder starts from the bridged h
        # and the rest at zero, as a fresh sequence would.
        layers = self.config.num_layers
        return (start(final[0]), *(torch.zeros_like(part[:layers]) for part in final[1:]))

    # ---- decoder ---------------------------------------------------------------------------------

    def step(self, tokens: torch.Tensor, state, feed: torch.Tensor | None, memory: torch.Tensor, mask: torch.Tensor):
        """One decoder step for every sentence: tokens (batch,) -> scores (batch, V), the new
        state, the attentional state (fed to the next step) and the attention weights (batch, S)."""
        x = self.dropout(self.target_embedding(tokens))[:, None, :]
        if self.feeding:
            x = torch.cat([x, feed[:, None, :]], dim=-1)
        out, state = self.decoder(x, state)
        attended, weights = self._attend(out, memory, mask)
        return self.output(self.dropout(attended[:, 0])), state, attended[:, 0], None if weights is None else weights[:, 0]

    def _attend(self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor):
        """query (batch, T, h), memory (batch, S, m) -> attentional states (batch, T, h) and
        weights (batch, T, S); every step at once when no state is fed back."""
        if self.attention == "none":
            return query, None
        if self.attention == "bahdanau":
            energy = self.score(torch.tanh(self.query_proj(query)[:, :, None, :] + self.key_proj(memory)[:, None]))[..., 0]
        else:
            keys = memory if self.memory_key is None else self.memory_key(memory)
            energy = torch.bmm(query, keys.transpose(1, 2))  # (batch, T, S)
        weights = torch.softmax(energy.masked_fill(~mask[:, None, :], float("-inf")), dim=-1)
        context = torch.bmm(weights, memory)  # (batch, T, m)
        return torch.tanh(self.combine(torch.cat([context, query], dim=-1))), weights

    def teacher_forced(self, source: torch.Tensor, lengths: torch.Tensor, target_in: torch.Tensor):
        """The decoder reading target_in = <s> y_1 ... y_{T-1}, whatever it would have chosen:
        scores (batch, T, V) and the attention weights (batch, T, S), None without attention.
        Without input feeding it reads all T tokens in one fused call and attends for all at once;
        with it, each step needs the last one's attentional state, so it steps."""
        memory, mask, state = self.encode(source, lengths)
        if not self.feeding:
            out, _ = self.decoder(self.dropout(self.target_embedding(target_in)), state)
            attended, weights = self._attend(out, memory, mask)
            return self.output(self.dropout(attended)), weights
        feed = memory.new_zeros(source.shape[0], self.config.hidden_size)
        scores, alignments = [], []
        for t in range(target_in.shape[1]):
            step_scores, state, feed, weights = self.step(target_in[:, t], state, feed, memory, mask)
            scores.append(step_scores)
            alignments.append(weights)
        return torch.stack(scores, dim=1), None if self.attention == "none" else torch.stack(alignments, dim=1)

    def forward(self, source: torch.Tensor, lengths: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """Training: the teacher-forced scores (batch, T, V)."""
        return self.teacher_forced(source, lengths, target_in)[0]

    @torch.no_grad()
    def align(self, source: torch.Tensor, lengths: torch.Tensor, output: torch.Tensor) -> torch.Tensor | None:
        """The attention weights (batch, T, S) while the decoder reads <s> and then `output`
        (batch, T - 1) of any decoding, greedy or beam: row t is where it looked to choose token t."""
        if self.attention == "none":
            return None
        target_in = torch.cat([output.new_full((output.shape[0], 1), BOS), output], dim=1)
        return self.teacher_forced(source, lengths, target_in)[1]

    @torch.no_grad()
    def greedy(self, source: torch.Tensor, lengths: torch.Tensor, max_length: int):
        """Greedy decoding, batched: ids (batch, <= max_length) ending at </s> (or cut), and the
        attention weights (batch, steps, S) when the model attends."""
        memory, mask, state = self.encode(source, lengths)
        batch = source.shape[0]
        feed = memory.new_zeros(batch, self.config.hidden_size)
        tokens = torch.full((batch,), BOS, dtype=torch.long, device=source.device)
        done = torch.zeros(batch, dtype=torch.bool, device=source.device)
        outputs, alignments = [], []
        for _ in range(max_length):
            scores, state, feed, weights = self.step(tokens, state, feed, memory, mask)
            tokens = scores.argmax(-1).masked_fill(done, PAD)
            outputs.append(tokens)
            if weights is not None:
                alignments.append(weights)
            done |= tokens == EOS
            if bool(done.all()):
                break
        ids = torch.stack(outputs, dim=1)
        return ids, (torch.stack(alignments, dim=1) if alignments else None)

    @torch.no_grad()
    def beam_search(
        self, source: torch.Tensor, lengths: torch.Tensor, max_length: int, beam_size: int, alpha: float = 1.0, n_best: int = 1
    ) -> list[list[tuple[float, list[int]]]]:
        """Beam search, batched over sentences: for each sentence, its hypotheses (ended by </s>,
        or cut at `max_length`) as (score, ids), best first. The score is the log-probability over
        the GNMT length penalty ((5 + length) / 6) ** alpha (alpha 0: the plain log-probability).

        A sentence is done when it has `beam_size` ended hypotheses, or `n_best` of them and its
        best candidate of the step ends (no live beam scores higher: with alpha 0, none can catch
        up). Done sentences leave the batch, so the steps that follow compute only the rest."""
        k = beam_size
        memory, mask, state = self.encode(source, lengths)
        memory, mask = memory.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)
        state = _rows(state, torch.arange(source.shape[0], device=source.device).repeat_interleave(k), dim=1)
        feed = memory.new_zeros(memory.shape[0], self.config.hidden_size)
        tokens = torch.full((memory.shape[0],), BOS, dtype=torch.long, device=source.device)
        scores = memory.new_full((source.shape[0], k), float("-inf"))
        scores[:, 0] = 0.0  # one live beam per sentence at the start
        sequences = torch.empty((memory.shape[0], 0), dtype=torch.long, device=source.device)
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(source.shape[0])]
        alive = list(range(source.shape[0]))  # the sentence of each live batch entry

        def penalty(length: int) -> float:
            return ((5.0 + length) / 6.0) ** alpha

        for t in range(max_length):
            logits, state, feed, _ = self.step(tokens, state, feed, memory, mask)
            total = scores[:, :, None] + torch.log_softmax(logits.float(), dim=-1).view(len(alive), k, -1)
            best, index = total.view(len(alive), -1).topk(2 * k, dim=1)  # enough that k need not end here
            # The bookkeeping runs on Python lists, one transfer per step, not on tensor elements.
            best_list, beam_list, token_list = (
                best.tolist(),
                (index // total.shape[2]).tolist(),
                (index % total.shape[2]).tolist(),
            )
            keep = [[b * k] * k for b in range(len(alive))]  # dead slots: their own sentence's first
            kept_scores = [[float("-inf")] * k for _ in alive]
            kept_tokens = [[PAD] * k for _ in alive]
            still = []
            for b, sentence in enumerate(alive):
                slot = 0
                for j in range(2 * k):
                    if best_list[b][j] == float("-inf") or slot == k:
                        break
                    origin = b * k + beam_list[b][j]
                    if token_list[b][j] == EOS:
                        if len(finished[sentence]) < k:
                            finished[sentence].append((best_list[b][j] / penalty(t + 1), sequences[origin].tolist()))
                        continue
                    keep[b][slot], kept_scores[b][slot], kept_tokens[b][slot] = origin, best_list[b][j], token_list[b][j]
                    slot += 1
                ended = len(finished[sentence])
                if not (ended >= k or (ended >= n_best and token_list[b][0] == EOS)):
                    still.append(b)
            alive = [alive[b] for b in still]
            if not alive:
                break
            order = torch.tensor([keep[b] for b in still], device=source.device).view(-1)
            scores = torch.tensor([kept_scores[b] for b in still], device=source.device, dtype=scores.dtype)
            tokens = torch.tensor([kept_tokens[b] for b in still], device=source.device).view(-1)
            sequences = torch.cat([sequences[order], tokens[:, None]], dim=1)
            state, feed = _rows(state, order, dim=1), feed[order]
            if len(still) < memory.shape[0] // k:  # a sentence's k rows of memory are alike: drop the done ones
                rows = (torch.tensor(still, device=source.device)[:, None] * k + torch.arange(k, device=source.device)).view(-1)
                memory, mask = memory[rows], mask[rows]
        for b, sentence in enumerate(alive):  # sentences cut at max_length: their live beams, unfinished
            for slot in range(k):
                if len(finished[sentence]) < k and torch.isfinite(scores[b, slot]):
                    finished[sentence].append(
                        (float(scores[b, slot]) / penalty(sequences.shape[1]), sequences[b * k + slot].tolist())
                    )
        return [sorted(f, key=lambda hypothesis: -hypothesis[0]) for f in finished]


def _rows(state, rows: torch.Tensor, dim: int):
    """An RNN state (a tensor, or an LSTM's (h, c)) at the given batch rows."""
    return tuple(s.index_select(dim, rows) for s in state) if isinstance(state, tuple) else state.index_select(dim, rows)
