"""How forecasts are scored, and the baselines they stand beside: naive, seasonal naive and the linear map from context to horizon."""

from __future__ import annotations

import numpy as np

from seqtool.tasks.forecast import series


def mase_scale(history: np.ndarray, m: int) -> np.ndarray:
    """Mean absolute error of the in-sample seasonal-naive forecast, per target: the yardstick MASE
    divides by (Hyndman & Koehler, 2006). Falls back to lag 1 when the history is too short."""
    lag = m if len(history) > m else 1
    # column by column: the temporary differences stay one column long, however many targets
    scale = np.array([np.abs(history[lag:, j] - history[:-lag, j]).mean() for j in range(history.shape[1])])
    return np.where(scale > 1e-12, scale, 1.0)


def z_scale(history: np.ndarray) -> np.ndarray:
    """Per-target standard deviation of the training rows (population, as scikit-learn's
    StandardScaler): the unit of the published long-horizon tables' MSE. 1 for a constant column."""
    std = np.array([history[:, j].std() for j in range(history.shape[1])])
    return np.where(std > 1e-12, std, 1.0)


def forecast_metrics(actual: np.ndarray, predicted: np.ndarray, scale: np.ndarray, z: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, MAPE and sMAPE (in %) and MASE over (origins, horizon, targets), averaged over
    targets; and `mse`, the mean squared error over origins, steps and targets with every target
    z-scored by its training rows (`z`), as published tables report it."""
    error = predicted - actual
    absolute = np.abs(error)
    nonzero = np.abs(actual) > 1e-12
    mape = [
        100 * (absolute[..., j][nonzero[..., j]] / np.abs(actual[..., j][nonzero[..., j]])).mean()
        for j in range(actual.shape[-1])
    ]
    denominator = np.abs(actual) + np.abs(predicted)
    smape = np.where(denominator > 1e-12, 2 * absolute / np.where(denominator > 1e-12, denominator, 1), 0.0)
    per_target_mae = absolute.reshape(-1, actual.shape[-1]).mean(axis=0)
    return {
        "mae": float(per_target_mae.mean()),
        "rmse": float(np.sqrt((error**2).reshape(-1, actual.shape[-1]).mean(axis=0)).mean()),
        "mape": float(np.nanmean(mape)) if np.isfinite(mape).any() else float("nan"),
        "smape": float(100 * smape.mean()),
        "mase": float((per_target_mae / scale).mean()),
        "mse": float(((error / z) ** 2).mean()),
    }


def majority_direction(history: np.ndarray) -> np.ndarray:
    """Per target, the direction (+1 or -1) most steps of the training rows moved in: the
    majority-direction baseline always predicts it."""
    steps = np.sign(np.diff(history, axis=0))
    return np.where((steps > 0).sum(axis=0) >= (steps < 0).sum(axis=0), 1.0, -1.0)


def directional_metrics(
    actual: np.ndarray, predicted: np.ndarray, last: np.ndarray, naive: np.ndarray, majority: np.ndarray
) -> dict[str, float]:
    """For prices: the share of forecast steps (windows, horizon, targets) whose direction from
    the last observed value `last` (windows, targets) matches the actual one, the same share for
    always predicting the training rows' majority direction, and Theil's U: the forecast's RMSE
    over the random walk's (the naive forecast; under 1 beats it)."""
    moved = np.sign(actual - last[:, None, :])
    hit = np.sign(predicted - last[:, None, :]) == moved
    rmse = np.sqrt(np.mean((predicted - actual) ** 2))
    walk = np.sqrt(np.mean((naive - actual) ** 2))
    return {
        "directional_accuracy": float(hit.mean()),
        "majority_directional_accuracy": float((moved == majority).mean()),
        "theil_u": float(rmse / walk) if walk > 0 else float("nan"),
    }


def naive_forecast(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The last observed value, repeated over the horizon: (origins, horizon, targets)."""
    return np.repeat(values[origins - 1][:, None, :], horizon, axis=1)


def seasonal_naive_forecast(values: np.ndarray, origins: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """The value one season earlier: step h (0-based) after origin t copies row t + h - m * (h // m + 1)."""
    steps = np.arange(horizon)
    rows = origins[:, None] + steps[None, :] - m * (steps[None, :] // m + 1)
    return values[np.clip(rows, 0, None)]


def linear_forecast(values: np.ndarray, train_end: int, origins: np.ndarray, context: int, horizon: int) -> np.ndarray:
    """Least squares from the context window straight to the horizon, one map per target, fitted
    on the training windows only. The normal equations are accumulated over chunks of windows,
    so memory stays small however long the series."""
    train_origins = series.window_origins(0, train_end, context, horizon)
    forecast = np.empty((len(origins), horizon, values.shape[1]))
    for j in range(values.shape[1]):
        column = values[:, j : j + 1].astype(np.float64)
        gram = np.zeros((context + 1, context + 1))
        cross = np.zeros((context + 1, horizon))
        for start in range(0, len(train_origins), 8192):
            chunk = train_origins[start : start + 8192]
            x = _with_bias(series.gather_windows(column, chunk, -context, context)[..., 0])  # (windows, context + 1)
            gram += x.T @ x
            cross += x.T @ series.gather_windows(column, chunk, 0, horizon)[..., 0]
        ridge = 1e-9 * np.trace(gram) / (context + 1)  # keeps a rank-deficient fit (few windows) solvable
        weights = np.linalg.solve(gram + ridge * np.eye(context + 1), cross)
        forecast[:, :, j] = _with_bias(series.gather_windows(column, origins, -context, context)[..., 0]) @ weights
    return forecast


def _with_bias(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))])


# ---- many series: each series scored alone, then the mean over series --------------------------

PER_SERIES_METRICS = ("mase", "smape", "mae", "mse")


def history_scales(values: np.ndarray, ends: np.ndarray, starts: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per series (rows starts[i]:ends[i] of `values`, (rows, targets)): the in-sample naive MAE
    that MASE divides by (seasonal with lag m when the history is longer than m, else lag 1; NaN
    when it has under two rows or never changes), and the standard deviation the MSE is z-scored
    by (1 for a constant history)."""
    targets = values.shape[1]
    scale, z = np.full((len(starts), targets), np.nan), np.ones((len(starts), targets))
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        history = values[start:end]
        if len(history) < 2:
            continue
        lag = m if len(history) > m else 1
        scale[i] = np.abs(history[lag:] - history[:-lag]).mean(axis=0)
        std = history.std(axis=0)
        z[i] = np.where(std > 1e-12, std, 1.0)
    return np.where(scale > 1e-12, scale, np.nan), z


def per_series_metrics(
    actual: np.ndarray, predicted: np.ndarray, series: np.ndarray, count: int, scale: np.ndarray, z: np.ndarray
) -> dict[str, np.ndarray]:
    """Each series' MASE, sMAPE (0-200), MAE and z-scored MSE over its windows, steps and targets,
    from windows (windows, horizon, targets) and the series of each window; NaN for a series
    with no window (or, for MASE, no scale)."""
    error = predicted - actual
    absolute = np.abs(error)
    denominator = np.abs(actual) + np.abs(predicted)
    smape = np.where(denominator > 1e-12, 2 * absolute / np.where(denominator > 1e-12, denominator, 1.0), 0.0)
    cells = np.bincount(series, minlength=count) * actual.shape[1] * actual.shape[2]
    cells = np.where(cells > 0, cells, np.nan)

    def mean(x: np.ndarray) -> np.ndarray:
        return np.bincount(series, x.reshape(len(series), -1).sum(axis=1), minlength=count) / cells

    return {
        "mase": mean(absolute / scale[series][:, None, :]),
        "smape": 100 * mean(smape),
        "mae": mean(absolute),
        "mse": mean((error / z[series][:, None, :]) ** 2),
    }


def mean_over_series(per_series: dict[str, np.ndarray]) -> dict[str, float]:
    """The mean of each metric over the series that have it (the Monash archive's aggregate)."""
    return {name: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for name, v in per_series.items()}


def seasonal_naive_in_series(values: np.ndarray, origins: np.ndarray, first_rows: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """Seasonal naive that never reads before its series' first row (`first_rows`, per origin):
    a step whose season-ago row is not observed takes the last observed value."""
    steps = np.arange(horizon)
    rows = origins[:, None] + steps[None, :] - m * (steps[None, :] // m + 1)
    rows = np.where(rows >= first_rows[:, None], rows, origins[:, None] - 1)
    return values[rows]


def linear_per_series(
    values: np.ndarray, offsets: np.ndarray, train: np.ndarray, origins: np.ndarray, owner: np.ndarray, context: int, horizon: int
) -> np.ndarray:
    """Each series' own least-squares map from its last p values to the horizon, fitted on its
    training windows: p is the context, shrunk until the series has at least 3p windows to fit
    it on. A series too short for p = 1 takes the naive forecast.
    `values` is the padded layout, `offsets` and `train` place each series' training rows in it,
    and `owner` is the series of each origin (origins come series after series)."""
    forecast = np.repeat(values[origins - 1][:, None, :], horizon, axis=1)
    present, first = np.unique(owner, return_index=True)  # origins come series after series
    bounds = np.append(first, len(owner))
    for n, i in enumerate(present):
        lags = min(context, (int(train[i]) - horizon) // 3)
        if lags < 1:
            continue
        fit = np.arange(offsets[i] + lags, offsets[i] + train[i] - horizon + 1)
        mine = slice(bounds[n], bounds[n + 1])
        for j in range(values.shape[1]):
            column = values[:, j : j + 1]
            x = _with_bias(series.gather_windows(column, fit, -lags, lags)[..., 0])
            y = series.gather_windows(column, fit, 0, horizon)[..., 0]
            weights = np.linalg.lstsq(x, y, rcond=None)[0]
            forecast[mine, :, j] = _with_bias(series.gather_windows(column, origins[mine], -lags, lags)[..., 0]) @ weights
    return forecast
