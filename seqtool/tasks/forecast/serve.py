"""The forecast kind over HTTP: a history (rows of the training CSV's columns) or none (the
training data's last window, stored with the model) in, the forecast with its intervals out.
A history is checked exactly as `seqtool predict --data` checks a CSV; its errors name the
request's `history` and its rows as the client sent them (`history[3]`), never a file the client
did not send. Requests are answered one at a time."""

import math
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from pydantic import BaseModel, Field

from seqtool.errors import SeqtoolError
from seqtool.tasks import ServeSpec

Cell = float | int | str | None


class ForecastRequest(BaseModel):
    history: list[dict[str, Cell]] | None = Field(
        None,
        min_length=1,
        max_length=1_000_000,
        description="rows of the training CSV's columns, oldest first (default: the training data's end)",
    )
    horizon: int | None = Field(None, ge=1, description="steps to forecast (default and at most: the model's horizon)")


class ForecastResponse(BaseModel):
    columns: list[str]
    forecast: list[dict[str, Cell]] = Field(
        description="one row per future step: its date (or step) and each target's value and interval"
    )


def _table(task: Any, model: torch.nn.Module, request: ForecastRequest) -> pd.DataFrame:
    if request.history is None:
        return task.predict_future(model, None, request.horizon)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "history.csv"
        pd.DataFrame(request.history).to_csv(path, index=False)
        try:
            return task.predict_future(model, str(path), request.horizon)
        except SeqtoolError as exc:
            raise SeqtoolError(_as_request(str(exc), path)) from None


def _as_request(message: str, path: Path) -> str:
    """A CSV error said of the request: the file is `history`, and its row N (a file line,
    counting the header) is `history[N - 2]`."""
    message = message.replace(str(path), "history")
    message = re.sub(r"\brows (\d+) and (\d+)", lambda m: f"history[{int(m[1]) - 2}] and history[{int(m[2]) - 2}]", message)
    return re.sub(r"\brow (\d+)", lambda m: f"history[{int(m[1]) - 2}]", message)


def _cell(value: Any) -> Cell:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value.item() if hasattr(value, "item") else value


def spec(task: Any) -> ServeSpec:
    def predict(model: torch.nn.Module, requests: list[ForecastRequest]) -> list[ForecastResponse]:
        answers = []
        for request in requests:
            table = _table(task, model, request)
            rows = [{k: _cell(v) for k, v in row.items()} for row in table.to_dict(orient="records")]
            answers.append(ForecastResponse(columns=[str(c) for c in table.columns], forecast=rows))
        return answers

    return ServeSpec(ForecastRequest, ForecastResponse, predict)
