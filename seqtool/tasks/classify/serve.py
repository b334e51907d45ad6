"""The classify kind over HTTP: texts in, a label and the class probabilities for each out.
Requests batch: the texts of all queued requests are labelled in one pass (packed, so the
padding a longer neighbour adds changes nothing)."""

from typing import Annotated, Any

import pandas as pd
import torch
from pydantic import BaseModel, Field

from seqtool.tasks import ServeSpec

MAX_TEXTS = 256  # per request


class ClassifyRequest(BaseModel):
    texts: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, max_length=MAX_TEXTS, description="texts to label")


class Prediction(BaseModel):
    label: str
    probability: float = Field(description="the label's probability")
    probabilities: dict[str, float] = Field(description="every class's probability")


class ClassifyResponse(BaseModel):
    predictions: list[Prediction]


def spec(task: Any) -> ServeSpec:
    def predict(model: torch.nn.Module, requests: list[ClassifyRequest]) -> list[ClassifyResponse]:
        texts = [text for request in requests for text in request.texts]
        probabilities = task.probabilities(model, task.encode(pd.Series(texts), "request"), torch.device("cpu"))
        rows = iter(probabilities.tolist())
        answers = []
        for request in requests:
            predictions = []
            for _ in request.texts:
                row = next(rows)
                best = max(range(len(row)), key=row.__getitem__)
                shares = {label: round(p, 6) for label, p in zip(task.labels, row, strict=True)}
                predictions.append(Prediction(label=task.labels[best], probability=row[best], probabilities=shares))
            answers.append(ClassifyResponse(predictions=predictions))
        return answers

    return ServeSpec(ClassifyRequest, ClassifyResponse, predict, batch_key=lambda request: "texts")
