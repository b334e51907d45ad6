"""Audio for the speech kind: reading, mixing down, resampling, and log-mel features.

- Reading: soundfile (libsndfile), for WAV, FLAC and the other formats it knows, any sample
  format and channel count; channels are averaged to mono.
- Resampling: scipy's polyphase resampler (`scipy.signal.resample_poly`, a windowed-sinc FIR
  filter), well kept and independent of the torch version (torchaudio's wheels are tied to one
  torch release, and none matches torch 2.13).
- Features: log-mel filterbank energies from torch's STFT, Hann window, HTK mel scale, a floor
  100 dB below the utterance's loudest band, normalised per utterance (each mel band to zero mean and unit variance over the utterance), so
  loudness and channel gain do not matter.
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
from seqtool.errors import SeqtoolError

SILENCE = 1e-4  # an utterance whose samples never exceed this is silent


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
    if not Path(path).is_file():
        raise SeqtoolError(f"audio file not found: {path}")
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
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
    # A floor 100 dB below the utterance's loudest band: relative, so the gain of a recording
    # changes nothing at all once each band is normalised.
    energies = torch.log(mel + float(mel.max()) * 1e-10 + 1e-30).T
    mean, std = energies.mean(0, keepdim=True), energies.std(0, keepdim=True) if energies.shape[0] > 1 else None
    normalised = energies - mean if std is None else (energies - mean) / (std + 1e-5)
    return normalised.numpy().astype(np.float32)


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


def extract(files: list[Path], settings: FeatureSettings, max_seconds: float, where: list[str]) -> Features:
    """Features of each file; one too long, empty or silent is skipped (counted by reason), a
    missing or unreadable one is an error naming `where[i]` (its manifest row)."""
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
        features = log_mel(samples, settings)
        frames.append(features)
        lengths.append(len(features))
        seconds.append(duration)
        rows.append(row)
    stacked = np.concatenate(frames) if frames else np.zeros((0, settings.n_mels), dtype=np.float32)
    return Features(stacked, np.cumsum(lengths), np.array(seconds), np.array(rows, dtype=np.int64), skipped)


CACHE_FORMAT = 1  # bump when the features change, so old cache files are not read


def cached_extract(
    files: list[Path], settings: FeatureSettings, max_seconds: float, where: list[str], cache_dir: Path | None
) -> Features:
    """`extract`, computed once per set of files and settings and kept in `cache_dir` (one .npz,
    written atomically). The key covers every file's path, size and modification time, so an
    edited or replaced clip is read again; without a cache folder nothing is kept."""
    if cache_dir is None:
        return extract(files, settings, max_seconds, where)
    stats = []
    for path, place in zip(files, where, strict=True):
        try:
            stat = path.stat()
        except OSError:
            raise SeqtoolError(f"{place}: audio file not found: {path}") from None
        stats.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    key = hashlib.sha256(json.dumps([CACHE_FORMAT, dataclasses.asdict(settings), max_seconds, stats]).encode()).hexdigest()[:16]
    cache_file = Path(cache_dir) / f"features-{key}.npz"
    if cache_file.is_file():
        try:
            with np.load(cache_file) as stored:
                skipped = json.loads(str(stored["skipped"]))
                return Features(stored["frames"], stored["offsets"], stored["seconds"], stored["rows"], skipped)
        except (OSError, ValueError, KeyError):  # a damaged cache file is rebuilt, never trusted
            pass
    features = extract(files, settings, max_seconds, where)
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
