"""Prices read as returns: the transform and its inverse, the directional metrics, and errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import assert_clean_error

from seqtool.tasks.forecast import series
from seqtool.tasks.forecast.metrics import directional_metrics, majority_direction


def test_compounding_the_true_changes_gives_back_the_prices():
    prices = np.array([[10.0, 5.0], [11.0, 4.0], [12.1, 4.5], [9.0, 6.0], [9.5, 6.5]])
    rows = np.arange(5.0)
    for kind in ("log_return", "difference"):
        changes, levels = series.to_changes(prices, 2, kind, ["a", "b"], "x.csv", rows)
        assert np.allclose(levels, prices[1:])
        # from the level before row 1 (the first change), the next three changes give rows 1-3
        back = series.to_levels(changes[None, 0:3], prices[0][None], kind)
        assert np.allclose(back[0], prices[1:4])
    assert np.allclose(series.to_changes(prices, 1, "log_return", ["a"], "x", rows)[0][:, 0], np.diff(np.log(prices[:, 0])))


def test_direction_metrics_count_moves_from_the_last_price():
    last = np.array([[10.0]])
    actual = np.array([[[11.0], [9.0], [12.0], [10.0]]])  # up, down, up, flat
    predicted = np.array([[[10.5], [10.5], [9.0], [10.2]]])  # up, up, down, up
    naive = np.full_like(actual, 10.0)
    metrics = directional_metrics(actual, predicted, last, naive, np.array([1.0]))
    assert metrics["directional_accuracy"] == pytest.approx(1 / 4)
    assert metrics["majority_directional_accuracy"] == pytest.approx(2 / 4)
    rmse = np.sqrt(np.mean((predicted - actual) ** 2))
    assert metrics["theil_u"] == pytest.approx(rmse / np.sqrt(np.mean((naive - actual) ** 2)))
    assert majority_direction(np.array([[1.0], [2.0], [1.5], [1.0], [0.5]])).tolist() == [-1.0]


def stock_config(path, **data) -> dict:
    return {
        "task": "forecast",
        "seed": 2,
        "data": {"path": str(path), "date_column": "Date", "target": "Close", "context_length": 20, "horizon": 5}
        | {"val_rows": 150, "test_rows": 150, "target_transform": "log_return"}
        | data,
        "model": {"type": "gru", "hidden_size": 16, "num_layers": 1, "window_norm": "none"},
        "training": {"epochs": 3, "batch_size": 32, "lr": 0.003, "intervals": "conformal"},
    }


@pytest.fixture
def stock_csv(tmp_path):
    """A geometric random walk: prices from 0.5 to several hundred, as a long stock history spans."""
    rng = np.random.default_rng(4)
    close = 0.5 * np.exp(np.cumsum(rng.normal(0.004, 0.02, 900)))
    frame = pd.DataFrame({"Date": pd.bdate_range("2001-01-01", periods=900).strftime("%Y-%m-%d"), "Close": close.round(5)})
    path = tmp_path / "stock.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_model_of_returns_is_scored_on_prices_beside_the_random_walk(tmp_path, run_cli, stock_csv):
    config = tmp_path / "stock.yaml"
    config.write_text(yaml.safe_dump(stock_config(stock_csv)))
    run = tmp_path / "run"
    run_cli("train", config, "--run-dir", run).ok()
    metrics = json.loads(run_cli("evaluate", run, "--json").ok().out)
    for name in ("directional_accuracy", "majority_directional_accuracy", "theil_u", "naive_mase", "coverage_80"):
        assert np.isfinite(metrics[name]), name
    assert 0.8 < metrics["theil_u"] < 1.2, metrics  # a random walk is not beaten, nor lost to by much
    assert metrics["naive_mae"] < 0.2 * pd.read_csv(stock_csv)["Close"].iloc[-300:].mean()  # scored on prices
    forecast = pd.read_csv(io.StringIO(run_cli("predict", run).ok().out))
    last = pd.read_csv(stock_csv)["Close"].iloc[-1]
    assert list(forecast.columns) == ["Date", "Close", "Close_lower", "Close_upper"]
    assert (abs(forecast["Close"] / last - 1) < 0.1).all(), (forecast, last)  # prices near the last, not returns
    assert ((forecast["Close_lower"] > 0) & (forecast["Close_lower"] < forecast["Close"])).all()
    assert (forecast["Close_upper"] > forecast["Close"]).all()


def test_log_returns_of_a_non_positive_price_are_refused(tmp_path, run_cli, stock_csv):
    frame = pd.read_csv(stock_csv)
    frame.loc[41, "Close"] = 0.0
    frame.to_csv(stock_csv, index=False)
    config = tmp_path / "stock.yaml"
    config.write_text(yaml.safe_dump(stock_config(stock_csv)))
    result = run_cli("train", config, "--run-dir", tmp_path / "run")
    assert_clean_error(result, "stock.csv", "row 43", "column 'Close'", "not a positive price")
    assert not (tmp_path / "run").exists()
    config.write_text(yaml.safe_dump(stock_config(stock_csv) | {"training": {"loss": "quantile"}}))
    assert_clean_error(run_cli("train", config, "--run-dir", tmp_path / "run"), "training.intervals: conformal")
