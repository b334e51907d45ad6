"""Audio for the speech kind: reading, mixing down, resampling, and log-mel features.

- Reading: soundfile (libsndfile), for WAV, FLAC and the other formats it knows, any sample
  format and channel count; channels are averaged to mono.
- Resampling: scipy's polyphase resampler (`scipy.signal.resample_poly`, a windowed-sinc FIR
  filter), well kept and independent of the torch version (torchaudio's wheels are tied to one
  torch release, and none matches torch 2.13).
- Features: log-mel filterbank energies from torch's STFT, Hann window, HTK mel scale, a floor
  80 dB below the utterance's loudest band, normalised per utterance (each mel band to zero mean,
  and to unit variance unless it hardly varies), so loudness and channel gain do not matter, and
  a band a recording lacks (above 4 kHz in 8 kHz audio) stays near 0 instead of amplified noise.
- Copies for training: each clip band-limited (resampled down to 8 or 11.025 kHz and back), so a
  recogniser trained on 16 kHz audio also knows band-limited recordings; or sped up or slowed
  down by 10% (Kaldi's speed perturbation: tempo and pitch together), for other speaking rates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from seqtool.checkpoint import atomic_write_bytes
from seqtool.errors import SeqtoolError, reading_user_file

SILENCE = 1e-4  # an utterance whose samples never exceed this is silent
FLOOR = 1e-8  # energies below this share of the loudest (80 dB down) read as the floor
STD_FLOOR = 1.0  # a band varying less than this (log units) is centred, not scaled up
NARROW_RATES = (8000, 11025)  # the band limits of narrowband training copies, by row in turn
SPEEDS = (0.9, 1.1)  # the speeds of speed-perturbed training copies, by row in turn
COPIES = ("narrowband", "speed")


class UnusableAudio(SeqtoolError):
    """A readable file with nothing to recognise (empty or silent): skipped and counted in a
    data set, an error line for `predict`."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class FeatureSettings:
    """What a deployment must reproduce to feed an exported model (written to its metadata)."""

    sample_rate: int = 16000
    window_ms: float = 25.0
    hop_ms: float = 10.0
    n_mels: int = 80

    @property
    def window(self) -> int:
        return round(self.sample_rate * self.window_ms / 1000)

    @property
    def hop(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def n_fft(self) -> int:
        return 1 << math.ceil(math.log2(self.window))


def read_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at `sample_rate`; an unreadable, empty or silent file is an error naming it."""
    try:
        import soundfile
    except ImportError:
        raise SeqtoolError("reading audio needs soundfile, not installed: pip install 'seqtool[speech]'") from None
    try:
        with reading_user_file(path, what="audio", expected="an audio file"), Path(path).open("rb") as handle:
            samples, rate = soundfile.read(handle, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise SeqtoolError(f"{path}: not a readable audio file ({str(exc).strip().splitlines()[0]})") from None
    if samples.shape[0] == 0:
        raise UnusableAudio(f"{path}: the audio file is empty", "empty")
    mono = samples.mean(axis=1)
    if float(np.abs(mono).max()) < SILENCE:
        raise UnusableAudio(f"{path}: the audio is silent", "silent")
    if rate != sample_rate:
        try:
            from scipy.signal import resample_poly
        except ImportError:
            raise SeqtoolError(f"{path} is at {rate} Hz; resampling needs scipy: pip install 'seqtool[speech]'") from None

        common = math.gcd(int(rate), sample_rate)
        mono = resample_poly(mono, sample_rate // common, int(rate) // common).astype(np.float32)
    return mono


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters evenly spaced on the HTK mel scale, 0 Hz to Nyquist."""

    def mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def hz(mels: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)

    edges = hz(np.linspace(0.0, mel(np.array(sample_rate / 2.0)), n_mels + 2))
    bins = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    return torch.from_numpy(np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32))


def log_mel(samples: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """(frames, n_mels) float32 log-mel energies, each band normalised over the utterance."""
    signal = torch.from_numpy(samples)
    if signal.numel() < settings.window:  # shorter than one window: pad to one frame
        signal = torch.nn.functional.pad(signal, (0, settings.window - signal.numel()))
    # torch centres the window in each n_fft frame: padding by the difference makes frame i cover
    # samples [i * hop, i * hop + window), 1 + (samples - window) // hop frames in all.
    left = (settings.n_fft - settings.window) // 2
    signal = torch.nn.functional.pad(signal, (left, settings.n_fft - settings.window - left))
    spectrum = torch.stft(
        signal,
        n_fft=settings.n_fft,
        hop_length=settings.hop,
        win_length=settings.window,
        window=torch.hann_window(settings.window),
        center=False,
        return_complex=True,
    )
    power = spectrum.abs().pow(2)  # (freq, frames)
    mel = mel_filterbank(settings.sample_rate, settings.n_fft, settings.n_mels) @ power
    # A floor 80 dB below the utterance's loudest band: relative, so the gain of a recording
    # changes nothing at all once each band is normalised; a resampler's leakage into a band the
    # recording never had stays under it.
    energies = torch.log(mel + float(mel.max()) * FLOOR + 1e-30).T
    mean = energies.mean(0, keepdim=True)
    if energies.shape[0] == 1:
        return (energies - mean).numpy().astype(np.float32)
    std = energies.std(0, keepdim=True).clamp(min=STD_FLOOR)
    return ((energies - mean) / std).numpy().astype(np.float32)


@dataclass
class Features:
    """A manifest's utterances as one array of frames: utterance i is frames[offsets[i]:offsets[i + 1]]."""

    frames: np.ndarray  # (total frames, n_mels) float32
    offsets: np.ndarray  # (utterances + 1,) int64
    seconds: np.ndarray  # (utterances,) audio duration
    rows: np.ndarray  # (utterances,) the manifest rows kept
    skipped: dict[str, list[int]]  # why -> manifest rows left out (too long, empty, silent)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def utterance(self, index: int) -> np.ndarray:
        return self.frames[self.offsets[index] : self.offsets[index + 1]]


def band_limited(samples: np.ndarray, sample_rate: int, limit: int) -> np.ndarray:
    """The clip as a recording at `limit` Hz would sound once resampled back to `sample_rate`."""
    from scipy.signal import resample_poly

    common = math.gcd(limit, sample_rate)
    down = resample_poly(samples, limit // common, sample_rate // common)
    back = resample_poly(down, sample_rate // common, limit // common).astype(np.float32)
    return back[: len(samples)]


def training_copy(samples: np.ndarray, sample_rate: int, copy: str, row: int) -> np.ndarray:
    """The clip as a `copy` ("narrowband" or "speed") of it; the setting alternates by row."""
    if copy == "narrowband":
        limit = NARROW_RATES[row % len(NARROW_RATES)]
        return band_limited(samples, sample_rate, limit) if limit < sample_rate else samples
    from scipy.signal import resample_poly

    speed = SPEEDS[row % len(SPEEDS)]  # played `speed` times as fast: 1 / speed times as many samples
    return resample_poly(samples, 10, round(10 * speed)).astype(np.float32)


def extract(files: list[Path], settings: FeatureSettings, max_seconds: float, where: list[str], copy: str = "") -> Features:
    """Features of each file; one too long, empty or silent is skipped (counted by reason), a
    missing or unreadable one is an error naming `where[i]` (its manifest row). With `copy`, of
    each clip's training copy instead (`training_copy`): the same clips kept."""
    frames, lengths, seconds, rows = [], [0], [], []
    skipped: dict[str, list[int]] = {}
    for row, path in enumerate(files):
        try:
            samples = read_audio(path, settings.sample_rate)
        except UnusableAudio as exc:
            skipped.setdefault(exc.reason, []).append(row)
            continue
        except SeqtoolError as exc:
            raise SeqtoolError(f"{where[row]}: {exc}") from None
        duration = len(samples) / settings.sample_rate
        if duration > max_seconds:
            skipped.setdefault(f"longer than {max_seconds:g} s", []).append(row)
            continue
        if copy:
            samples = training_copy(samples, settings.sample_rate, copy, row)
        features = log_mel(samples, settings)
        frames.append(features)
        lengths.append(len(features))
        seconds.append(duration)
        rows.append(row)
    stacked = np.concatenate(frames) if frames else np.zeros((0, settings.n_mels), dtype=np.float32)
    return Features(stacked, np.cumsum(lengths), np.array(seconds), np.array(rows, dtype=np.int64), skipped)


CACHE_FORMAT = 2  # bump when the features change, so old cache files are not read


def cached_extract(
    files: list[Path],
    settings: FeatureSettings,
    max_seconds: float,
    where: list[str],
    cache_dir: Path | None,
    copy: str = "",
) -> Features:
    """`extract`, computed once per set of files and settings and kept in `cache_dir` (one .npz,
    written atomically). The key covers every file's path, size and modification time, so an
    edited or replaced clip is read again; without a cache folder nothing is kept."""
    if cache_dir is None:
        return extract(files, settings, max_seconds, where, copy)
    stats = []
    for path, place in zip(files, where, strict=True):
        try:
            stat = path.stat()
        except OSError:
            raise SeqtoolError(f"{place}: audio file not found: {path}") from None
        stats.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    key = hashlib.sha256(json.dumps([CACHE_FORMAT, dataclasses.asdict(settings), max_seconds, copy, stats]).encode()).hexdigest()[
        :16
    ]
    cache_file = Path(cache_dir) / f"features-{key}.npz"
    if cache_file.is_file():
        try:
            with np.load(cache_file) as stored:
                skipped = json.loads(str(stored["skipped"]))
                return Features(stored["frames"], stored["offsets"], stored["seconds"], stored["rows"], skipped)
        except (OSError, ValueError, KeyError):  # a damaged cache file is rebuilt, never trusted
            pass
    features = extract(files, settings, max_seconds, where, copy)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        frames=features.frames,
        offsets=features.offsets,
        seconds=features.seconds,
        rows=features.rows,
        skipped=np.array(json.dumps(features.skipped)),
    )
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache_file, buffer.getvalue())
    except OSError as exc:
        raise SeqtoolError(
            f"could not write the feature cache in {cache_dir}: {exc.strerror or exc}; free space or make it writable"
        ) from None
    return features
