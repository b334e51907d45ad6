"""The speech kind's config sections: a manifest of audio files and transcripts, the feature
settings, the recogniser's shape, and SpecAugment in training."""

from __future__ import annotations

from dataclasses import dataclass

from seqtool.schema import FileSplitData, ModelConfig, TrainingConfig, option, test_fraction_option


@dataclass
class SpeechData(FileSplitData):
    """A manifest of clips and transcripts; `path` is split at random (seeded), by whole groups with `group_column`."""

    audio_column: str = option("path", "column holding each audio file's path")
    text_column: str = option("text", "column holding each transcript")
    group_column: str | None = option(None, "split `path` by this column (a voice, a speaker): no group on two sides")
    lowercase: bool = option(True, "lower-case transcripts")
    sample_rate: int = option(16000, "audio is resampled to this rate (Hz)", ge=1000)
    window_ms: float = option(25.0, "analysis window of the log-mel features (ms)", gt=0.0)
    hop_ms: float = option(10.0, "step between feature frames (ms)", gt=0.0)
    n_mels: int = option(80, "mel bands", ge=1)
    max_duration: float = option(20.0, "longer clips are skipped (and counted), in seconds", gt=0.0)
    test_fraction: float = test_fraction_option(0.1)


@dataclass
class SpeechModel(ModelConfig):
    bidirectional: bool = option(True, "read the frames in both directions")
    frame_stack: int = option(3, "concatenate this many frames into one: a shorter, faster sequence", ge=1)


@dataclass
class SpeechTraining(TrainingConfig):
    freq_masks: int = option(0, "SpecAugment: bands of mel channels masked per utterance in training", ge=0)
    freq_mask_width: int = option(10, "SpecAugment: widest masked band (channels)", ge=0)
    time_masks: int = option(0, "SpecAugment: spans of frames masked per utterance in training", ge=0)
    time_mask_width: int = option(20, "SpecAugment: longest masked span (frames)", ge=0)
    narrowband: float = option(
        0.0, "share of training clips heard band-limited (as if recorded at 8 or 11.025 kHz) each epoch", ge=0.0, le=1.0
    )
    speed_perturb: float = option(0.0, "share of training clips heard 10% faster or slower each epoch", ge=0.0, le=1.0)
    max_unalignable: float = option(
        0.01,
        "largest share of training clips (or of their training copies) whose transcript needs more output steps than "
        "the clip has (CTC cannot align them: they add nothing to the loss); more is an error naming the first",
        ge=0.0,
        le=1.0,
    )
