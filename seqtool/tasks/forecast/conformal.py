"""Split-conformal prediction intervals, calibrated per horizon step on the validation part.

After each validation pass, the residuals of the point forecast on the validation windows,
divided by each window's unit (the series' scale, so that series of every scale pool their
residuals), are the conformity scores. For step h and target j the interval half-width is the
ceil((n + 1) * level)-th smallest of its n scores, times the unit: Darts' `ConformalNaiveModel`
and NeuralForecast's `conformal_error` do the same. It works with any loss.

The guarantee (coverage of at least `level` on average) assumes the test windows' scores are
exchangeable with the validation windows': same distribution, no drift between the two parts.
Under a regime change, a trend in the noise, or a test part far from validation, it fails, and
`evaluate` shows the coverage actually met beside the nominal level.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def calibrate(actual: np.ndarray, point: np.ndarray, unit: np.ndarray, level: float, log: bool = False) -> dict[str, Any]:
    """The calibration from validation windows (windows, horizon, targets): a half-width per step
    and target in units of `unit` (or in log space when `log`: forecasts of prices from returns,
    whose errors grow with the price). With too few windows for the level, the largest score
    is used and `enough` is False."""
    scores = np.abs(np.log(actual) - np.log(point)) if log else np.abs(actual - point) / unit
    n = len(scores)
    rank = math.ceil((n + 1) * level)
    ordered = np.sort(scores, axis=0)
    width = ordered[min(rank, n) - 1]
    return {"level": level, "width": width.tolist(), "windows": n, "enough": rank <= n, "log": log}


def bounds(point: np.ndarray, unit: np.ndarray, calibration: dict[str, Any]) -> dict[str, np.ndarray]:
    """Lower and upper bounds around point forecasts (windows, horizon, targets); a forecast
    shorter than the model's horizon uses the first steps."""
    width = np.asarray(calibration["width"])[: point.shape[1]]
    if calibration.get("log"):
        return {"lower": point * np.exp(-width), "upper": point * np.exp(width)}
    return {"lower": point - width * unit, "upper": point + width * unit}


def note(calibration: dict[str, Any]) -> str | None:
    """A warning when the validation part had too few windows for the level."""
    if calibration["enough"]:
        return None
    needed = math.ceil(calibration["level"] / (1 - calibration["level"]))
    return (
        f"conformal intervals: {calibration['windows']} validation windows are too few for level "
        f"{calibration['level']:g} (at least {needed} are needed); the widest residual is used, coverage may fall short"
    )
