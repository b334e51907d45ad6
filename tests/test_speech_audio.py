"""Audio for speech recognition: reading any rate and channel count, resampling that keeps a
tone's pitch, log-mel features against hand-worked frame counts and filters, and bad files."""

from __future__ import annotations

import numpy as np
import pytest

soundfile = pytest.importorskip("soundfile", reason="the speech extra is not installed (pip install 'seqtool[speech]')")

from seqtool.errors import SeqtoolError  # noqa: E402
from seqtool.tasks.speech.audio import (  # noqa: E402
    FeatureSettings,
    UnusableAudio,
    band_limited,
    extract,
    log_mel,
    mel_filterbank,
    read_audio,
)


def _tone(hz: float, rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    wave = 0.5 * np.sin(2 * np.pi * hz * t)
    return np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else wave


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize(
    ("rate", "subtype", "suffix"), [(44100, "PCM_16", "wav"), (8000, "PCM_24", "flac"), (22050, "FLOAT", "wav")]
)
def test_any_rate_channels_and_sample_format_become_mono_16k_at_the_same_pitch(tmp_path, rate, subtype, suffix):
    path = tmp_path / f"tone.{suffix}"
    soundfile.write(path, _tone(1000.0, rate, 0.5, channels=2), rate, subtype=subtype)
    samples = read_audio(path, 16000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 8000) <= 1  # half a second at 16 kHz
    assert abs(_dominant_hz(samples, 16000) - 1000.0) < 5.0
    assert np.abs(samples).max() == pytest.approx(0.375, abs=0.01)  # the two channels averaged: (0.25 + 0.5) / 2


def test_mel_filters_are_triangles_rising_in_pitch_and_cover_the_spectrum():
    bank = mel_filterbank(16000, 512, 40).numpy()
    assert bank.shape == (40, 257) and bank.min() >= 0.0 and bank.max() <= 1.0 + 1e-6
    peaks = bank.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all() and peaks[-1] > 200
    assert (bank.sum(axis=0)[2:-2] > 0).all()  # every bin but the very ends is in some filter


def test_log_mel_frames_and_normalisation(tmp_path):
    settings = FeatureSettings()  # 25 ms windows (400 samples), 10 ms hops (160), 80 bands
    bursts = np.repeat(np.tile([1.0, 0.0], 5), 1600)  # a 440 Hz tone, on and off every 0.1 s
    noise = 0.01 * np.random.default_rng(0).standard_normal(16000)
    samples = (_tone(440.0, 16000, 1.0) * bursts + noise).astype(np.float32)
    features = log_mel(samples, settings)
    assert features.shape == (1 + (16000 - 400) // 160, 80)
    np.testing.assert_allclose(features.mean(axis=0), 0.0, atol=1e-4)
    spread = features.std(axis=0, ddof=1)
    tone_band = int(mel_filterbank(16000, 512, 80).numpy()[:, round(440 / 16000 * 512)].argmax())
    assert spread[tone_band] == pytest.approx(1.0, abs=1e-2)  # a band that varies: unit variance
    assert (spread <= 1.0 + 1e-2).all() and spread.min() < 0.9  # a steady (noise) band: centred, not scaled up
    louder = log_mel(4.0 * samples, settings)
    np.testing.assert_allclose(louder, features, atol=1e-3)  # gain does not matter after normalisation
    assert log_mel(samples[:100], settings).shape == (1, 80)  # shorter than a window: one frame


def test_training_copies_are_lower_rate_recordings_and_other_speeds(tmp_path):
    """training.narrowband's copies: the clip band-limited and back equals a recording at that rate
    read at 16 kHz, frame for frame; rows alternate 8 and 11.025 kHz; the bands below 3.5 kHz keep.
    training.speed_perturb's: rows alternate 0.9x and 1.1x speed, 1 / speed times the frames."""
    from scipy.signal import resample_poly

    settings = FeatureSettings()
    rng = np.random.default_rng(1)
    speechlike = (rng.standard_normal(16000) * np.repeat(np.tile([1.0, 0.05], 10), 800) * 0.3).astype(np.float32)
    soundfile.write(tmp_path / "low.wav", resample_poly(speechlike, 1, 2).astype(np.float32), 8000, subtype="FLOAT")
    recorded = log_mel(read_audio(tmp_path / "low.wav", 16000), settings)
    copy = log_mel(band_limited(speechlike, 16000, 8000), settings)
    np.testing.assert_allclose(copy, recorded, atol=1e-3)
    wide = log_mel(speechlike, settings)
    low = mel_filterbank(16000, settings.n_fft, 80).numpy().argmax(axis=1) * 8000 / (settings.n_fft // 2) < 3500
    assert min(np.corrcoef(wide[:, b], copy[:, b])[0, 1] for b in np.flatnonzero(low)) > 0.99
    paths = []
    for k in range(2):
        paths.append(tmp_path / f"clip{k}.wav")
        soundfile.write(paths[-1], speechlike, 16000, subtype="FLOAT")
    plain = extract(paths, settings, 20.0, ["row 2", "row 3"])
    narrow = extract(paths, settings, 20.0, ["row 2", "row 3"], copy="narrowband")
    assert (narrow.offsets == plain.offsets).all() and (narrow.rows == plain.rows).all()
    np.testing.assert_allclose(narrow.utterance(0), copy, atol=1e-3)  # row 0: 8 kHz
    eleven = log_mel(band_limited(speechlike, 16000, 11025), settings)
    np.testing.assert_allclose(narrow.utterance(1), eleven, atol=1e-3)  # row 1: 11.025 kHz
    faster_slower = extract(paths, settings, 20.0, ["row 2", "row 3"], copy="speed")
    frames = plain.lengths()
    assert (faster_slower.rows == plain.rows).all()
    assert abs(faster_slower.lengths()[0] - frames[0] / 0.9) <= 2 and abs(faster_slower.lengths()[1] - frames[1] / 1.1) <= 2


def test_bad_files_are_named_and_empty_or_silent_ones_are_skipped_by_reason(tmp_path):
    good, empty, silent = tmp_path / "good.wav", tmp_path / "empty.wav", tmp_path / "silent.wav"
    soundfile.write(good, _tone(300.0, 16000, 0.3), 16000)
    soundfile.write(empty, np.zeros(0), 16000)
    soundfile.write(silent, np.zeros(4000), 16000)
    long = tmp_path / "long.wav"
    soundfile.write(long, _tone(300.0, 16000, 3.0), 16000)
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    with pytest.raises(UnusableAudio, match="empty"):
        read_audio(empty, 16000)
    with pytest.raises(SeqtoolError, match="not a readable audio file"):
        read_audio(text, 16000)
    with pytest.raises(SeqtoolError, match="not found"):
        read_audio(tmp_path / "missing.wav", 16000)
    files = [good, empty, silent, long, good]
    features = extract(files, FeatureSettings(), 2.0, [f"manifest.csv row {i + 2}" for i in range(5)])
    assert features.rows.tolist() == [0, 4] and features.skipped == {"empty": [1], "silent": [2], "longer than 2 s": [3]}
    np.testing.assert_array_equal(features.utterance(0), features.utterance(1))
    assert features.seconds.tolist() == pytest.approx([0.3, 0.3])
    with pytest.raises(SeqtoolError, match=r"^manifest.csv row 3: .*notes.wav: not a readable audio file"):
        extract([good, text], FeatureSettings(), 2.0, ["manifest.csv row 2", "manifest.csv row 3"])


def test_features_are_cached_once_and_read_again_when_a_clip_changes(tmp_path, monkeypatch):
    import os

    import seqtool.tasks.speech.audio as audio

    clips = []
    for i, hz in enumerate((300.0, 600.0)):
        clips.append(tmp_path / f"clip{i}.flac")
        soundfile.write(clips[-1], _tone(hz, 16000, 0.4), 16000)
    soundfile.write(tmp_path / "quiet.wav", np.zeros(2000), 16000)
    files, where = [*clips, tmp_path / "quiet.wav"], ["row 2", "row 3", "row 4"]
    cache = tmp_path / "cache"
    first = audio.cached_extract(files, FeatureSettings(), 2.0, where, cache)
    assert len(list(cache.glob("features-*.npz"))) == 1 and first.skipped == {"silent": [2]}

    def no_reading(path, rate):
        raise AssertionError("read the audio again")

    with monkeypatch.context() as patched:
        patched.setattr(audio, "read_audio", no_reading)
        again = audio.cached_extract(files, FeatureSettings(), 2.0, where, cache)
        np.testing.assert_array_equal(again.frames, first.frames)
        assert again.offsets.tolist() == first.offsets.tolist() and again.skipped == first.skipped
        assert again.rows.tolist() == [0, 1] and again.seconds.tolist() == pytest.approx([0.4, 0.4])
    soundfile.write(clips[1], _tone(900.0, 16000, 0.5), 16000)  # a clip replaced: a new key
    os.utime(clips[1], ns=(10**18, 10**18))
    changed = audio.cached_extract(files, FeatureSettings(), 2.0, where, cache)
    assert changed.seconds.tolist() == pytest.approx([0.4, 0.5]) and len(list(cache.glob("features-*.npz"))) == 2
    for stale in cache.glob("features-*.npz"):
        stale.write_bytes(b"not a cache file")  # damaged: rebuilt, never trusted
    assert audio.cached_extract(files, FeatureSettings(), 2.0, where, cache).seconds.tolist() == pytest.approx([0.4, 0.5])
    with pytest.raises(SeqtoolError, match="row 3: audio file not found"):
        audio.cached_extract([clips[0], tmp_path / "gone.wav"], FeatureSettings(), 2.0, ["row 2", "row 3"], cache)
