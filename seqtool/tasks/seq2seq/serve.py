"""The seq2seq kind over HTTP: source texts in, the best output of each out (greedy, or beam
search with `beam_size`). Requests with the same decoding options batch: their sources are
decoded together (packed encoder, masked attention, so a neighbour changes nothing)."""

from typing import Annotated, Any

import torch
from pydantic import BaseModel, Field

from seqtool.tasks import ServeSpec

MAX_SOURCES = 256  # per request


class Seq2SeqRequest(BaseModel):
    sources: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1, max_length=MAX_SOURCES, description="texts to translate"
    )
    beam_size: int | None = Field(
        None, ge=1, le=64, description="beam search with this many hypotheses (default: the model's model.beam_size; 1: greedy)"
    )
    max_length: int | None = Field(None, ge=1, le=1024, description="output tokens at most (default: the model's)")
    length_penalty: float | None = Field(
        None, ge=0.0, le=5.0, description="beam search's length penalty alpha (default: model.length_penalty)"
    )


class Seq2SeqResponse(BaseModel):
    outputs: list[str]


def _options(request: Seq2SeqRequest) -> dict[str, Any]:
    return {"beam_size": request.beam_size, "max_length": request.max_length, "length_penalty": request.length_penalty}


def spec(task: Any) -> ServeSpec:
    def predict(model: torch.nn.Module, requests: list[Seq2SeqRequest]) -> list[Seq2SeqResponse]:
        sources = [source for request in requests for source in request.sources]
        best = iter(outputs[0][1] for outputs in task.translate(model, sources, _options(requests[0])))
        return [Seq2SeqResponse(outputs=[next(best) for _ in request.sources]) for request in requests]

    return ServeSpec(Seq2SeqRequest, Seq2SeqResponse, predict, batch_key=lambda request: tuple(_options(request).values()))
