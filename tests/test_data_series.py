"""The CSV series pipeline: windows, scaling without leakage, dates, cleaning, baselines."""

import numpy as np
import pandas as pd
import pytest
from conftest import forecast_config, sine_frame

from seqtool.errors import SeqtoolError
from seqtool.tasks.forecast import series
from seqtool.tasks.forecast.metrics import (
    forecast_metrics,
    linear_forecast,
    mase_scale,
    naive_forecast,
    seasonal_naive_forecast,
    z_scale,
)


def test_window_origins_match_the_docstring_picture():
    origins = series.window_origins(0, 10, context_length=3, horizon=2)
    assert origins.tolist() == [3, 4, 5, 6, 7, 8]
    assert series.window_origins(6, 10, 3, 2, stride=2).tolist() == [6, 8]


def test_gather_windows_by_hand():
    rows = np.arange(20).reshape(10, 2)  # row r = [2r, 2r + 1]
    origins = np.array([3, 8])
    context = series.gather_windows(rows, origins, -3, 3)
    targets = series.gather_windows(rows, origins, 0, 2)
    assert context.shape == (2, 3, 2) and targets.shape == (2, 2, 2)
    assert context[0].tolist() == [[0, 1], [2, 3], [4, 5]]  # rows 0 1 2
    assert targets[0].tolist() == [[6, 7], [8, 9]]  # rows 3 4
    assert targets[1].tolist() == [[16, 17], [18, 19]]  # rows 8 9


def test_gather_windows_allocates_only_the_selected_windows():
    """Measured by what numpy allocates: every window materialised would be 160 MB."""
    import tracemalloc

    rows = np.random.default_rng(0).standard_normal((100_000, 4))
    tracemalloc.start()
    try:
        windows = series.gather_windows(rows, np.array([60, 70]), -50, 50)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2 * 50 * 4 * 8  # the two selected windows and some bookkeeping, no more
    assert np.array_equal(windows[1], rows[20:70]) and not np.shares_memory(windows, rows)


def test_the_forecast_scaler_is_fitted_on_the_training_rows_only(tmp_path):
    from seqtool.configure import build_config
    from seqtool.tasks.forecast import ForecastTask

    frame = sine_frame()
    frame.to_csv(tmp_path / "sine.csv", index=False)
    task = ForecastTask(build_config(forecast_config(tmp_path / "sine.csv"), "test"))
    task.load_training_data()
    train_end, _ = task._split_bounds(len(frame))
    values = frame["Value"].to_numpy()
    assert train_end == 320
    np.testing.assert_allclose(task.scaler.shift, [values[:train_end].mean()])
    np.testing.assert_allclose(task.scaler.scale, [values[:train_end].std()])
    assert abs(task.scaler.shift[0] - values.mean()) > 0.1  # all rows would give another shift (the series trends)


def test_scaler_round_trips_and_handles_constant_columns():
    values = np.array([[1.0], [3.0], [100.0]])
    scaler = series.Scaler.fit(values[:2], "standard")
    assert scaler.shift.tolist() == [2.0] and scaler.scale.tolist() == [1.0]
    assert np.allclose(scaler.inverse(scaler.transform(values)), values)
    minmax = series.Scaler.fit(values, "minmax")
    assert minmax.transform(values).min() == 0 and minmax.transform(values).max() == 1
    constant = series.Scaler.fit(np.ones((4, 1)), "standard")
    assert np.isfinite(constant.transform(np.ones((4, 1)))).all()


def test_dates_continue_the_frequency():
    assert series.continue_dates(pd.Timestamp("1960-12-01"), "MS", 3).strftime("%Y-%m-%d").tolist() == [
        "1961-01-01",
        "1961-02-01",
        "1961-03-01",
    ]
    hours = series.continue_dates(pd.Timestamp("2014-12-31 23:00"), "h", 2)
    assert [str(t) for t in hours] == ["2015-01-01 00:00:00", "2015-01-01 01:00:00"]
    assert series.continue_dates(pd.Timestamp("2024-03-08"), "B", 1)[0] == pd.Timestamp("2024-03-11")  # Friday -> Monday


def test_frequency_inferred_despite_missing_days_and_gaps_reindexed():
    dates = pd.date_range("2020-01-01", periods=60, freq="D").delete([10, 40])
    frame = pd.DataFrame({"v": np.arange(58.0)})
    assert series.infer_frequency(pd.DatetimeIndex(dates), None, "x.csv") == "D"
    regular, gaps = series.regular_index(frame, pd.DatetimeIndex(dates), "D", "x.csv")
    assert gaps == 2 and len(regular) == 60 and regular["v"].isna().sum() == 2


def test_date_parts_are_assembled():
    frame = pd.DataFrame({"year": [2010, 2010], "month": [1, 1], "day": [1, 1], "hour": [0, 1]})
    dates = series.parse_dates(frame, ["year", "month", "day", "hour"], "x.csv")
    assert dates.tolist() == [pd.Timestamp("2010-01-01 00:00"), pd.Timestamp("2010-01-01 01:00")]


def test_newest_first_files_are_put_in_time_order():
    frame = pd.DataFrame({"v": [3.0, 2.0, 1.0]})
    dates = pd.Series(pd.to_datetime(["2024-01-03", "2024-01-02", "2024-01-01"]))
    ordered, index = series.order_by_time(frame, dates, "x.csv")
    assert ordered["v"].tolist() == [1.0, 2.0, 3.0] and index.is_monotonic_increasing


@pytest.mark.parametrize(
    "policy, expected, report",
    [
        ("interpolate", [1.0, 2.0, 3.0, 3.0], {"v_interpolated": 1, "v_edges_filled": 1}),
        ("ffill", [1.0, 1.0, 3.0, 3.0], {"v_carried_forward": 1, "v_edges_filled": 1}),
        ("drop", [1.0, 3.0], {"rows_dropped": 2}),
    ],
)
def test_missing_value_policies_say_what_they_did(policy, expected, report):
    values = pd.DataFrame({"v": [1.0, np.nan, 3.0, np.nan], "w": [1.0, 2.0, 3.0, 4.0]})
    filled, said = series.fill_missing(values, policy, "x.csv")
    assert filled["v"].tolist() == expected and said == report


def test_missing_value_error_policy_names_the_column():
    with pytest.raises(SeqtoolError, match="missing value in column 'v'"):
        series.fill_missing(pd.DataFrame({"v": [1.0, np.nan]}), "error", "x.csv")


def test_non_numeric_cells_name_row_and_column():
    frame = pd.DataFrame({"v": ["1", "2", "abc"]})
    with pytest.raises(SeqtoolError, match=r"x.csv: row 4, column 'v': 'abc' is not a number"):
        series.numeric_columns(frame, ["v"], "x.csv")
    missing = pd.DataFrame({"v": ["1", None, "NaN", "NA", " ", "n/a"]})
    assert series.numeric_columns(missing, ["v"], "x.csv")["v"].isna().sum() == 5


def test_one_hot_and_calendar_features():
    frame = pd.DataFrame({"wind": ["NW", "SE", "cv", "??"]})
    encoded = series.one_hot(frame, "wind", ["NW", "SE", "cv"])
    assert encoded.to_numpy().tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]  # unseen: all zeros
    hourly = series.calendar_features(pd.date_range("2020-01-01", periods=3, freq="h"), "h")
    assert list(hourly.columns) == ["hour_sin", "hour_cos", "dayofweek_sin", "dayofweek_cos", "month_sin", "month_cos"]
    monthly = series.calendar_features(pd.date_range("2020-01-01", periods=3, freq="MS"), "MS")
    assert list(monthly.columns) == ["month_sin", "month_cos"]


def test_seasonality_from_frequency():
    assert series.seasonality_from_frequency("MS") == 12
    assert series.seasonality_from_frequency("h") == 24
    assert series.seasonality_from_frequency("D") == 7


def test_baselines_by_hand():
    values = np.arange(30, dtype=float)[:, None]  # 0, 1, 2, ... one target
    origins = np.array([20, 25])
    assert naive_forecast(values, origins, 3)[:, :, 0].tolist() == [[19, 19, 19], [24, 24, 24]]
    # season of 4, origin 20 (rows up to 19 observed): rows 20..24 copy 16 17 18 19, then 16 again
    assert seasonal_naive_forecast(values, origins, 5, 4)[0, :, 0].tolist() == [16, 17, 18, 19, 16]
    linear = linear_forecast(values, 20, origins, context=4, horizon=3)  # an exact linear trend
    assert np.allclose(linear[:, :, 0], [[20, 21, 22], [25, 26, 27]])


def test_metrics_by_hand():
    actual = np.array([[[2.0], [4.0]]])
    predicted = np.array([[[1.0], [5.0]]])
    metrics = forecast_metrics(actual, predicted, scale=np.array([2.0]), z=np.array([0.5]))
    assert metrics["mae"] == 1.0 and metrics["rmse"] == 1.0 and metrics["mase"] == 0.5
    assert metrics["mse"] == 4.0  # errors of 1 in units of the training rows' std 0.5: (1 / 0.5) ** 2
    assert metrics["mape"] == pytest.approx(100 * (0.5 + 0.25) / 2)
    assert metrics["smape"] == pytest.approx(100 * (2 / 3 + 2 / 9) / 2)
    assert mase_scale(np.array([[1.0], [3.0], [6.0]]), 1).tolist() == [2.5]
    assert z_scale(np.array([[1.0, 5.0], [3.0, 5.0]])).tolist() == [1.0, 1.0]  # population std; 1 for a constant column
