"""The speech kind's export: the recogniser from features to CTC log-probabilities, one graph.

Feature extraction stays outside the graph (a deployment reads audio with its own library), so the
metadata spells out exactly how seqtool computes the frames; decoding stays outside too (greedy is
a few lines over the log-probabilities; a beam search or a language model is the deployment's
choice). The frame stacking and the packed recurrent stack are inside: the graph takes any batch
of clips and numbers of frames.
"""

from __future__ import annotations

from typing import Any

import torch

from seqtool.signature import Signature, tensor_spec
from seqtool.tasks.speech.audio import FLOOR, STD_FLOOR, FeatureSettings
from seqtool.tasks.speech.network import BLANK, SpeechNetwork


def _clips(generator: torch.Generator, lengths: list[int], bands: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random normalised frames, zero after each clip's end, as seqtool pads them."""
    lengths_t = torch.tensor(lengths, dtype=torch.int64)
    features = torch.randn(len(lengths), max(lengths), bands, generator=generator)
    features[torch.arange(max(lengths))[None, :] >= lengths_t[:, None]] = 0.0
    return features, lengths_t


def signature(model: SpeechNetwork, bands: int, generator: torch.Generator) -> Signature:
    """(features, lengths) -> (log_probs, out_lengths), traced on two clips and checked on four
    others of other lengths (one shorter than a stacked frame)."""
    example, check = _clips(generator, [17, 9], bands), _clips(generator, [31, 1, 20, 8], bands)
    with torch.no_grad():
        expected = model(*check)
    inputs = [
        tensor_spec(
            "features", "float32", ["batch", "frames", "n_mels"], "normalised log-mel frames, zero after each clip's end"
        ),
        tensor_spec("lengths", "int64", ["batch"], "frames in each clip (1 <= length <= frames)"),
    ]
    outputs = [
        tensor_spec(
            "log_probs",
            "float32",
            ["batch", "steps", "labels"],
            "per step: log-probabilities of the blank (0) and the characters",
        ),
        tensor_spec(
            "out_lengths", "int64", ["batch"], "steps of each clip (ceil(length / frame_stack)); later steps are padding"
        ),
    ]
    axes = {
        "features": {0: "batch", 1: "frames"},
        "lengths": {0: "batch"},
        "log_probs": {0: "batch", 1: "steps"},
        "out_lengths": {0: "batch"},
    }
    return Signature(model, example, check, expected, inputs, outputs, axes)


def metadata(settings: FeatureSettings, characters: list[str], lowercase: bool, frame_stack: int) -> dict[str, Any]:
    """Everything a deployment needs to turn a clip into the graph's input and its output into text."""
    return {
        "features": {
            "sample_rate": settings.sample_rate,
            "channels": "mono: the channels' mean, before resampling",
            "resampler": "scipy.signal.resample_poly (polyphase windowed-sinc FIR)",
            "window_ms": settings.window_ms,
            "hop_ms": settings.hop_ms,
            "window_samples": settings.window,
            "hop_samples": settings.hop,
            "n_fft": settings.n_fft,
            "window_function": "hann (periodic) of window_samples, centred in n_fft; frame i covers samples [i * hop, i * hop + window)",
            "frames": "1 + (samples - window_samples) // hop_samples (a clip shorter than one window is padded to one)",
            "n_mels": settings.n_mels,
            "mel_scale": "htk: triangular filters evenly spaced in 2595 * log10(1 + hz / 700), 0 Hz to Nyquist, unnormalised",
            "energies": f"log(mel_power + max(mel_power) * {FLOOR:g} + 1e-30), mel_power = filters @ |stft|^2",
            "normalisation": f"per clip, each band: (x - mean) / max(std, {STD_FLOOR:g}), std with n - 1 (x - mean for a one-frame clip)",
            "reference": "seqtool.tasks.speech.audio.log_mel",
        },
        "frame_stack": frame_stack,
        "characters": list(characters),
        "blank": BLANK,
        "labels": "label 0 is the CTC blank; label i >= 1 is characters[i - 1]",
        "lowercase": lowercase,
        "decoding": "greedy: the argmax label of each of a clip's first out_lengths steps, repeats merged, blanks dropped",
    }
