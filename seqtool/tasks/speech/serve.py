"""The speech kind over HTTP: an audio file (WAV, FLAC, ... as base64 in the JSON body) in, its
transcript out. Requests with the same decoding batch: their clips are recognised together
(packed, so a longer neighbour changes nothing)."""

import tempfile
from pathlib import Path
from typing import Any

import torch
from pydantic import Base64Bytes, BaseModel, Field

from seqtool.errors import SeqtoolError
from seqtool.tasks import ServeSpec
from seqtool.tasks.speech.audio import log_mel, read_audio


class SpeechRequest(BaseModel):
    audio: Base64Bytes = Field(description="the audio file's bytes (WAV, FLAC, OGG, ...), base64; any rate and channels")
    beam_size: int | None = Field(
        None, ge=1, le=64, description="CTC prefix beam search with this many prefixes (default: greedy)"
    )


class SpeechResponse(BaseModel):
    transcript: str
    seconds: float = Field(description="the clip's duration")


def _features(task: Any, audio: bytes) -> tuple[Any, float]:
    """The clip's features and duration; an unreadable one is an error about `audio`, not a temporary file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip"
        path.write_bytes(audio)
        try:
            samples = read_audio(path, task.settings.sample_rate)
        except SeqtoolError as exc:
            raise SeqtoolError(str(exc).replace(str(path), "audio")) from None
    return log_mel(samples, task.settings), len(samples) / task.settings.sample_rate


def spec(task: Any) -> ServeSpec:
    def predict(model: torch.nn.Module, requests: list[SpeechRequest]) -> list[SpeechResponse]:
        clips = [_features(task, request.audio) for request in requests]
        texts = task.transcribe(model, [features for features, _ in clips], requests[0].beam_size)
        return [
            SpeechResponse(transcript=text, seconds=round(seconds, 3)) for text, (_, seconds) in zip(texts, clips, strict=True)
        ]

    return ServeSpec(SpeechRequest, SpeechResponse, predict, batch_key=lambda request: request.beam_size)
