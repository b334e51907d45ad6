"""Statistical peers for many series: statsforecast's AutoETS and AutoTheta fitted on each series
alone, the models that set the bar on short yearly and quarterly panels (Monash archive; M4).

They come with the optional extra `seqtool[stats]`; without it `seqtool evaluate` says in one line
how to get them. They run in `seqtool evaluate` only (not in training's periodic validation), on
the same origins the network is scored on.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd

PEERS = ("ets", "theta")
INSTALL_HINT = "statistical peers (ets_, theta_): pip install 'seqtool[stats]'"


def available() -> bool:
    return importlib.util.find_spec("statsforecast") is not None


def peer_forecasts(
    values: np.ndarray, offsets: np.ndarray, origins: np.ndarray, owner: np.ndarray, horizon: int, stride: int, m: int
) -> dict[str, np.ndarray]:
    """AutoETS and AutoTheta forecasts (origins, horizon) of one target column `values` (the padded
    layout; series i starts at `offsets[i]`), each origin's model fitted on its series' rows
    before the origin. `origins` come series after series (`owner`), each series' in time order.
    Series are grouped by their count of origins: every group is one statsforecast
    cross-validation, `stride` rows apart (one window each: a plain forecast)."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, AutoTheta, Naive

    out = {name: np.empty((len(origins), horizon)) for name in PEERS}
    windows = np.bincount(owner, minlength=len(offsets))
    last = np.full(len(offsets), -1)
    np.maximum.at(last, owner, origins)
    for count in np.unique(windows[windows > 0]):
        chosen = np.flatnonzero(windows == count)
        # a forecast reads the rows before its origin; a cross-validation, the rows to its last window's end
        lengths = last[chosen] + (horizon if count > 1 else 0) - offsets[chosen]
        steps = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        frame = pd.DataFrame(
            {"unique_id": np.repeat(chosen, lengths), "ds": steps, "y": values[np.repeat(offsets[chosen], lengths) + steps]}
        )
        models = [AutoETS(season_length=m, alias="ets"), AutoTheta(season_length=m, alias="theta")]
        engine = StatsForecast(models=models, freq=1, n_jobs=1, fallback_model=Naive())
        if count == 1:
            result = engine.forecast(df=frame, h=horizon)
        else:
            result = engine.cross_validation(df=frame, h=horizon, n_windows=int(count), step_size=stride)
        result = result.sort_values(["unique_id", *(["cutoff"] if count > 1 else []), "ds"])
        rows = np.flatnonzero(np.isin(owner, chosen))
        for name in PEERS:
            out[name][rows] = result[name].to_numpy().reshape(len(rows), horizon)
    return out
