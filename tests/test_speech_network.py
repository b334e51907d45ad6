"""The CTC recogniser: padding changes nothing, decoding by hand-made frames, and a model that
learns to transcribe tone sequences (each letter a pitch) far better than the most common one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqtool.tasks.speech.audio import FeatureSettings, log_mel
from seqtool.tasks.speech.config import SpeechModel
from seqtool.tasks.speech.network import BLANK, SpeechNetwork, greedy_decode, prefix_beam_search, spec_augment

PITCHES = {"a": 400.0, "b": 800.0, "c": 1300.0, "d": 2000.0}
SETTINGS = FeatureSettings(n_mels=24)


def _utterance(text: str, rng: np.random.Generator) -> np.ndarray:
    """Each letter a 120-150 ms tone at its pitch, with 30-60 ms of quiet noise between."""
    pieces = []
    for letter in text:
        t = np.arange(int(16000 * rng.uniform(0.12, 0.15))) / 16000
        pieces.append(0.5 * np.sin(2 * np.pi * PITCHES[letter] * t))
        pieces.append(0.01 * rng.standard_normal(int(16000 * rng.uniform(0.03, 0.06))))
    return np.concatenate(pieces).astype(np.float32)


def _batch(features: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(f) for f in features])
    padded = torch.zeros(len(features), int(lengths.max()), features[0].shape[1])
    for row, f in enumerate(features):
        padded[row, : len(f)] = torch.from_numpy(f)
    return padded, lengths


def test_padding_never_changes_an_utterances_output():
    torch.manual_seed(0)
    model = SpeechNetwork(SpeechModel(hidden_size=8, num_layers=2, dropout=0.0, frame_stack=3), 24, 4).eval()
    rng = np.random.default_rng(0)
    short, long = log_mel(_utterance("ab", rng), SETTINGS), log_mel(_utterance("dcba", rng), SETTINGS)
    alone, alone_lengths = model(*_batch([short]))
    together, lengths = model(*_batch([long, short]))
    assert lengths.tolist() == [math.ceil(len(long) / 3), math.ceil(len(short) / 3)] and alone_lengths[0] == lengths[1]
    torch.testing.assert_close(together[1, : alone_lengths[0]], alone[0], atol=1e-5, rtol=0)


def test_greedy_merges_repeats_and_drops_blanks_and_a_beam_of_one_is_greedy():
    frames = [[1, 1, BLANK, 1, 2, 2, BLANK, BLANK, 3], [2, BLANK, 2, 2]]
    log_probs = torch.full((2, 9, 4), -10.0)
    for row, labels in enumerate(frames):
        for t, label in enumerate(labels):
            log_probs[row, t, label] = 0.0
    assert greedy_decode(log_probs, torch.tensor([9, 4])) == [[1, 1, 2, 3], [2, 2]]
    assert prefix_beam_search(log_probs[0], 1) == [1, 1, 2, 3]
    # Two alignments of "1" (1 blank, blank 1) together outweigh the single likeliest frame path "1 2".
    two = torch.log(torch.tensor([[0.5, 0.4, 0.1], [0.5, 0.4, 0.1]]))
    one_path = greedy_decode(two[None], torch.tensor([2]))[0]
    assert one_path == [] and prefix_beam_search(two, 3) == [1]  # P("1") = 0.4*0.5*2 + 0.4*0.4 = 0.56 > P("") = 0.25


def test_spec_augment_masks_bands_and_spans_within_each_utterance():
    features = torch.ones(2, 50, 24)
    masked = spec_augment(features, torch.tensor([50, 20]), (2, 5), (2, 8), [7, 8])
    assert masked.shape == features.shape and 0 < int((masked == 0).sum()) < features.numel() // 2
    assert torch.equal(features, torch.ones(2, 50, 24))  # the input is untouched
    alone = spec_augment(features[1:], torch.tensor([20]), (2, 5), (2, 8), [8])
    assert torch.equal(alone[0], masked[1])  # a clip's masks depend on its seed, not its batch
    beyond = masked[1, 20:]  # past the clip's 20 frames only whole bands are masked, never a span of frames
    assert bool(((beyond == 0).all(dim=0) | (beyond == 1).all(dim=0)).all())
    assert bool((masked[1, :20] == 0).all(dim=1).any())  # a span of frames inside the clip is


def test_a_bilstm_ctc_learns_to_transcribe_tone_sequences():
    jiwer = pytest.importorskip("jiwer")
    rng = np.random.default_rng(1)
    letters = sorted(PITCHES)
    texts = ["".join(rng.choice(letters, rng.integers(1, 5))) for _ in range(200)]
    features = [log_mel(_utterance(t, rng), SETTINGS) for t in texts]
    labels = [[letters.index(c) + 1 for c in t] for t in texts]
    torch.manual_seed(0)
    model = SpeechNetwork(SpeechModel(hidden_size=32, num_layers=1, dropout=0.0, frame_stack=2), 24, 4)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    ctc = torch.nn.CTCLoss(blank=BLANK, zero_infinity=True)
    train = list(range(160))
    for step in range(150):
        rows = [train[(step * 16 + i) % 160] for i in range(16)]
        batch, lengths = _batch([features[r] for r in rows])
        log_probs, out_lengths = model(batch, lengths)
        targets = torch.tensor([label for r in rows for label in labels[r]])
        loss = ctc(log_probs.transpose(0, 1), targets, out_lengths, torch.tensor([len(labels[r]) for r in rows]))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    held_out = list(range(160, 200))
    with torch.no_grad():
        log_probs, out_lengths = model(*_batch([features[r] for r in held_out]))
    greedy = ["".join(letters[i - 1] for i in ids) for ids in greedy_decode(log_probs, out_lengths)]
    beam = ["".join(letters[i - 1] for i in prefix_beam_search(log_probs[k, : out_lengths[k]], 4)) for k in range(len(held_out))]
    truth = [texts[r] for r in held_out]
    spaced = [" ".join(t) for t in truth]  # letters as words: jiwer's CER on letters
    most_common = max(set(texts[:160]), key=texts[:160].count)
    assert jiwer.cer(truth, greedy) < 0.1 < jiwer.cer(truth, [most_common] * len(truth))
    assert jiwer.cer(truth, beam) <= jiwer.cer(truth, greedy) + 0.02
    assert jiwer.wer(spaced, [" ".join(g) for g in greedy]) < 0.1


def test_clip_seeds_are_distinct_across_clips_and_epochs_however_many_clips():
    """The old seed * 1_000_003 + epoch * 100_003 + clip made clip 100,003 of epoch 0 the twin of
    clip 0 of epoch 1; seeds drawn from (seed, epoch, clip) by SeedSequence do not collide."""
    from seqtool.tasks.speech.network import clip_seed

    assert clip_seed(1234, 0, 100_003) != clip_seed(1234, 1, 0)
    seeds = {clip_seed(1234, epoch, clip) for epoch in range(3) for clip in range(0, 300_000, 97)}
    assert len(seeds) == 3 * len(range(0, 300_000, 97))
    assert clip_seed(1234, 2, 5) == clip_seed(1234, 2, 5) and 0 <= clip_seed(7, 0, 0) < 2**63


def test_ctc_needs_a_step_per_character_and_a_blank_between_repeats():
    from seqtool.tasks.speech.network import ctc_steps_needed

    assert ctc_steps_needed("yes") == 3 and ctc_steps_needed("hello") == 6 and ctc_steps_needed("aaa") == 5
