"""The language model over HTTP: `POST /predict` returns the prompt's continuation whole, `POST
/generate` streams it token by token as server-sent events. Sampling is seeded per request, so
the two give the same text for the same request. Requests are answered one at a time."""

from collections.abc import Iterator
from typing import Any

import torch
from pydantic import BaseModel, Field

from seqtool.tasks import ServeSpec

MAX_LENGTH = 10_000  # tokens per request


class GenerateRequest(BaseModel):
    prompt: str = Field("", max_length=100_000, description="the text to continue (empty: from the start)")
    length: int = Field(200, ge=1, le=MAX_LENGTH, description="tokens to generate")
    temperature: float = Field(1.0, gt=0.0, le=10.0, description="sampling temperature")
    top_k: int | None = Field(None, ge=1, description="sample from the k likeliest tokens only")
    seed: int = Field(0, ge=0, description="the sampling seed: the same request gives the same text")


class GenerateResponse(BaseModel):
    text: str = Field(description="the prompt and its continuation (a backward model's: what leads up to the prompt)")


def _pieces(task: Any, model: torch.nn.Module, request: GenerateRequest) -> Iterator[str]:
    generator = torch.Generator().manual_seed(request.seed)
    return task.generate(model, request.prompt, request.length, request.temperature, request.top_k, generator)[0]


def spec(task: Any) -> ServeSpec:
    def predict(model: torch.nn.Module, requests: list[GenerateRequest]) -> list[GenerateResponse]:
        return [
            GenerateResponse(text=task.whole_text(request.prompt, "".join(_pieces(task, model, request)))) for request in requests
        ]

    return ServeSpec(
        GenerateRequest,
        GenerateResponse,
        predict,
        stream_request=GenerateRequest,
        stream=lambda model, request: _pieces(task, model, request),
    )
