"""Forecasting end to end through the CLI on small synthetic series."""

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, assert_clean_error, crash_and_resume, forecast_config, sine_frame

from seqtool.checkpoint import load_checkpoint
from seqtool.configure import build_config
from seqtool.engine import load_trained, train
from seqtool.tasks.forecast import ForecastTask

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def sine_csv(tmp_path):
    path = tmp_path / "sine.csv"
    sine_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def write_forecast_config(tmp_path, sine_csv):
    def write(name="fc.yaml", path=None, **sections):
        file = tmp_path / name
        file.write_text(yaml.safe_dump(forecast_config(path or sine_csv, **sections)))
        return file

    return write


def test_lstm_beats_naive_and_predicts_beyond_the_data(tmp_path, write_forecast_config, run_cli, sine_csv):
    run = tmp_path / "run"
    assert run_cli("train", write_forecast_config(), "--run-dir", run).code == 0
    result = run_cli("evaluate", run, "--json", "--plot", tmp_path / "backtest.png")
    assert result.code == 0, result
    metrics = json.loads(result.out)
    for name in ("mae", "rmse", "mape", "smape", "mase"):
        for prefix in ("", "naive_", "seasonal_naive_", "linear_"):
            assert isinstance(metrics[prefix + name], float), prefix + name
    assert metrics["mase"] < 0.6 * metrics["naive_mase"], metrics
    assert metrics["origins"] == 80 - 10 + 1  # every origin of the 80 held-out rows
    assert (tmp_path / "backtest.png").read_bytes().startswith(PNG)

    table = run_cli("evaluate", run)
    assert "seasonal-naive" in table.out and "mase" in table.out

    out = tmp_path / "fc.csv"
    result = run_cli("predict", run, "--data", sine_csv, "--horizon", "7", "--output", out, "--plot", tmp_path / "fc.png")
    assert result.code == 0, result
    forecast = pd.read_csv(out)
    assert list(forecast.columns) == ["Date", "Value"]
    assert forecast["Date"].tolist() == pd.date_range("2021-02-04", periods=7, freq="D").strftime("%Y-%m-%d").tolist()
    assert (tmp_path / "fc.png").read_bytes().startswith(PNG)
    stdout = run_cli("predict", run, "--horizon", "7")  # no --data: the training data's end travels in the checkpoint
    assert stdout.out == out.read_text()


def test_checkpoint_round_trip_gives_identical_forecasts(tmp_path, write_forecast_config, run_cli, sine_csv):
    run = tmp_path / "run"
    assert run_cli("train", write_forecast_config(training={"epochs": 2}), "--run-dir", run).code == 0
    task, model, payload = load_trained(run / "best.pt")
    first = task.predict_future(model, str(sine_csv), None)
    from seqtool.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "copy.pt", payload)
    task2, model2, _ = load_trained(tmp_path / "copy.pt")
    assert first.equals(task2.predict_future(model2, str(sine_csv), None))


def test_resume_after_a_crash_matches_an_uninterrupted_forecast_run(tmp_path, sine_csv, monkeypatch):
    # dropout on: a model left in eval mode by an evaluation would make the resumed run differ
    training = {"epochs": None, "max_steps": 60, "eval_every": 20}
    config = build_config(forecast_config(sine_csv, training=training, model={"dropout": 0.2, "num_layers": 2}), "test")
    train(config, tmp_path / "full")
    crash_and_resume(monkeypatch, ForecastTask, config, tmp_path / "cut", crash_at=47)
    full, cut = (load_checkpoint(tmp_path / name / "last.pt")["model"] for name in ("full", "cut"))
    assert all(torch.equal(full[k], cut[k]) for k in full)


def test_probabilistic_losses_give_intervals(tmp_path, write_forecast_config, run_cli, sine_csv):
    for loss in ("gaussian_nll", "quantile"):
        run = tmp_path / loss
        assert (
            run_cli("train", write_forecast_config(f"{loss}.yaml", training={"loss": loss, "epochs": 10}), "--run-dir", run).code
            == 0
        )
        metrics = json.loads(run_cli("evaluate", run, "--json").out)
        assert 0.4 < metrics["coverage_80"] <= 1.0, metrics
        forecast = run_cli("predict", run, "--horizon", "3").out.splitlines()
        assert forecast[0] == "Date,Value,Value_lower,Value_upper"
        value, lower, upper = (float(cell) for cell in forecast[1].split(",")[1:4])
        assert lower <= value <= upper


def test_stock_ohlcv_newest_first_business_days(tmp_path, run_cli):
    rng = np.random.default_rng(1)
    dates = pd.bdate_range("2023-01-02", periods=300)
    close = 100 + np.cumsum(rng.normal(0, 1, 300))
    frame = pd.DataFrame(
        {
            "Date": dates.strftime("%Y-%m-%d"),
            "Open": close + rng.normal(0, 0.5, 300),
            "High": close + 1,
            "Low": close - 1,
            "Close": close,
            "Volume": rng.integers(1000, 5000, 300),
        }
    )
    path = tmp_path / "stock.csv"
    frame.iloc[::-1].to_csv(path, index=False)  # newest first, as stock exports often are
    config = tmp_path / "stock.yaml"
    config.write_text(
        yaml.safe_dump(
            forecast_config(
                path,
                data={
                    "target": "Close",
                    "features": ["Open", "High", "Low", "Volume"],
                    "context_length": 20,
                    "horizon": 5,
                    "seasonality": None,
                },
                training={"epochs": 2},
            )
        )
    )
    assert run_cli("train", config, "--run-dir", tmp_path / "run").code == 0
    forecast = pd.read_csv(io.StringIO(run_cli("predict", tmp_path / "run", "--data", path).out))
    last = dates[-1]
    assert forecast["Date"].tolist() == pd.bdate_range(last, periods=6)[1:].strftime("%Y-%m-%d").tolist()  # skips weekends


def test_untidy_multivariate_csv_with_date_parts_na_cells_and_categories(tmp_path, run_cli):
    rng = np.random.default_rng(2)
    stamps = pd.date_range("2012-01-01", periods=500, freq="h")
    pm = (50 + 30 * np.sin(2 * np.pi * np.arange(500) / 24) + rng.normal(0, 5, 500)).round(1).astype(object)
    pm[:24] = "NA"  # the first day unknown, as in the Beijing data
    pm[100] = "NA"
    frame = pd.DataFrame(
        {
            "No": range(1, 501),
            "year": stamps.year,
            "month": stamps.month,
            "day": stamps.day,
            "hour": stamps.hour,
            "pm2.5": pm,
            "TEMP": rng.normal(0, 1, 500).round(2),
            "cbwd": rng.choice(["NW", "SE", "cv"], 500),
        }
    )
    path = tmp_path / "pollution.csv"
    frame.to_csv(path, index=False)
    config = tmp_path / "p.yaml"
    config.write_text(
        yaml.safe_dump(
            forecast_config(
                path,
                data={
                    "date_column": ["year", "month", "day", "hour"],
                    "target": "pm2.5",
                    "features": ["TEMP"],
                    "categorical": ["cbwd"],
                    "calendar_features": True,
                    "context_length": 24,
                    "horizon": 6,
                    "seasonality": 24,
                },
                training={"epochs": 2},
            )
        )
    )
    assert run_cli("train", config, "--run-dir", tmp_path / "run").code == 0
    artifacts = load_checkpoint(tmp_path / "run" / "best.pt")["artifacts"]
    assert artifacts["categories"] == {"cbwd": ["NW", "SE", "cv"]} and artifacts["frequency"] == "h"
    assert "cbwd=SE" in artifacts["columns"] and "hour_sin" in artifacts["columns"]
    out = run_cli("predict", tmp_path / "run", "--data", path).out.splitlines()
    assert out[0] == "date,pm2.5" and out[1].startswith("2012-01-21 20:00:00")


def test_bad_forecast_inputs(tmp_path, write_forecast_config, run_cli, sine_csv):
    def train_on(frame, name, **data):
        path = tmp_path / f"{name}.csv"
        if isinstance(frame, str):
            path.write_text(frame)
        else:
            frame.to_csv(path, index=False)
        return run_cli("train", write_forecast_config(f"{name}.yaml", path=path, data=data), "--run-dir", tmp_path / name)

    good = sine_frame()
    assert_clean_error(train_on(good, "t1", target="Passengers"), "column 'Passengers' (data.target) not found", "Date, Value")
    assert_clean_error(train_on(good, "t2", date_column="Month"), "column 'Month' (data.date_column) not found")
    bad_cell = good.copy().astype({"Value": object})
    bad_cell.loc[57, "Value"] = "12,5x"
    assert_clean_error(train_on(bad_cell, "t3"), "row 59, column 'Value'", "'12,5x' is not a number")
    assert_clean_error(train_on(good.head(40), "t4"), "fewer than data.context_length + data.horizon")
    bad_date = good.copy()
    bad_date.loc[9, "Date"] = "the tenth"
    assert_clean_error(train_on(bad_date, "t5"), "row 11", "cannot parse date 'the tenth'")
    duplicated = good.copy()
    duplicated.loc[20, "Date"] = duplicated.loc[19, "Date"]
    assert_clean_error(train_on(duplicated, "t6"), "duplicate timestamp", "rows 21 and 22")
    shuffled = good.sample(frac=1.0, random_state=0).reset_index(drop=True)  # out of time order, two months repeated
    shuffled.loc[len(shuffled)] = shuffled.loc[50]
    shuffled.loc[len(shuffled)] = shuffled.loc[3]
    first_copy = shuffled["Date"].duplicated(keep=False).idxmax()  # the first repeated row in the file
    copies = shuffled.index[shuffled["Date"] == shuffled.loc[first_copy, "Date"]] + 2  # their file lines
    assert_clean_error(
        train_on(shuffled, "t6b"), f"duplicate timestamp {shuffled.loc[first_copy, 'Date']}", f"rows {copies[0]} and {copies[1]}"
    )
    assert_clean_error(train_on("Date,Value\n", "t7"), "header but no rows")
    assert_clean_error(train_on("", "t8"), "empty")
    config = write_forecast_config("t9.yaml", data={"scaler": "robust"})
    assert_clean_error(run_cli("train", config), "'data.scaler' must be one of standard, minmax, step, none")
    run = tmp_path / "ok"
    assert run_cli("train", write_forecast_config(training={"epochs": 1}), "--run-dir", run).code == 0
    assert_clean_error(run_cli("predict", run, "--horizon", "11"), "beyond the model's horizon of 10")
    other = tmp_path / "other.csv"
    good.rename(columns={"Value": "Price"}).to_csv(other, index=False)
    assert_clean_error(run_cli("predict", run, "--data", other), "column 'Value' (data.target) not found", "Date, Price")
    assert_clean_error(run_cli("evaluate", run, "--split", "test"), "no test split")


def test_validation_values_never_leak_into_training_inputs(tmp_path, sine_csv):
    def training_inputs(path):
        task = ForecastTask(build_config(forecast_config(path), "test"))
        task.load_training_data()
        train_end, _ = task._split_bounds(len(task.train_inputs))
        return task.train_inputs[:train_end], task.scaler

    before, scaler = training_inputs(sine_csv)
    frame = pd.read_csv(sine_csv)
    frame.loc[330:, "Value"] *= 100  # only validation rows change
    changed = tmp_path / "changed.csv"
    frame.to_csv(changed, index=False)
    after, scaler_after = training_inputs(changed)
    assert np.array_equal(before, after)
    assert np.array_equal(scaler.shift, scaler_after.shift) and np.array_equal(scaler.scale, scaler_after.scale)


def test_several_targets_from_several_inputs(tmp_path, run_cli):
    frame = sine_frame()
    frame["Other"] = (frame["Value"] * 2 + 1).round(4)
    frame["Driver"] = np.cos(np.arange(len(frame)) / 5).round(4)
    path = tmp_path / "multi.csv"
    frame.to_csv(path, index=False)
    config = tmp_path / "multi.yaml"
    config.write_text(
        yaml.safe_dump(forecast_config(path, data={"target": ["Value", "Other"], "features": ["Driver"]}, training={"epochs": 3}))
    )
    assert run_cli("train", config, "--run-dir", tmp_path / "run").code == 0
    metrics = json.loads(run_cli("evaluate", tmp_path / "run", "--json").out)
    assert metrics["mase"] > 0
    lines = run_cli("predict", tmp_path / "run", "--horizon", "2").out.splitlines()
    assert lines[0] == "Date,Value,Other" and len(lines) == 3


def test_options_of_the_other_task_are_refused(tmp_path, write_forecast_config, run_cli):
    run = tmp_path / "run"
    assert run_cli("train", write_forecast_config(training={"epochs": 1}), "--run-dir", run).code == 0
    assert_clean_error(run_cli("predict", run, "--prompt", "hello"), "--prompt", "language_model models")
    # an option given with its default value is still an option of the other kind
    assert_clean_error(run_cli("predict", run, "--length", "500"), "--length applies to language_model models")


def test_series_without_dates_forecasts_numbered_steps(tmp_path, run_cli):
    path = tmp_path / "plain.csv"
    sine_frame().drop(columns=["Date"]).to_csv(path, index=False)
    config = tmp_path / "plain.yaml"
    config.write_text(yaml.safe_dump(forecast_config(path, data={"date_column": None}, training={"epochs": 2})))
    assert run_cli("train", config, "--run-dir", tmp_path / "run").code == 0
    result = run_cli("predict", tmp_path / "run", "--horizon", "3", "--plot", tmp_path / "p.png")
    assert result.out.splitlines()[0] == "step,Value" and result.out.splitlines()[1].startswith("1,")
    assert (tmp_path / "p.png").read_bytes().startswith(PNG)


def test_evaluate_scores_the_held_out_test_split_by_default_with_mse_on_the_z_scale(tmp_path, write_forecast_config, run_cli):
    run = tmp_path / "run"
    config = write_forecast_config(data={"val_fraction": 0.2, "test_fraction": 0.2}, training={"epochs": 3})
    assert run_cli("train", config, "--run-dir", run).code == 0
    scored = json.loads(run_cli("evaluate", run, "--json").out)
    test = json.loads(run_cli("evaluate", run, "--split", "test", "--json").out)
    val = json.loads(run_cli("evaluate", run, "--split", "val", "--json").out)
    assert scored == test and scored["split"] == "test" and val["split"] == "val" and test["mse"] != val["mse"]
    assert "test split (held out" in run_cli("evaluate", run).out
    task, _, _ = load_trained(run)  # mse by hand: the naive forecast over the test origins, z-scored by the training rows
    setup = task._eval_setup("test", None)
    train_end, _ = task._split_bounds(len(setup["prepared"].values))
    std = setup["prepared"].values[:train_end, 0].std()
    expected = (((setup["baselines"]["naive"] - setup["actual"]) / std) ** 2).mean()
    assert test["naive_mse"] == pytest.approx(expected) and set(test) >= {"mse", "seasonal_naive_mse", "linear_mse"}


def test_filled_days_and_gaps_are_said_in_the_output_and_summary(tmp_path, run_cli):
    """Nothing is repaired silently: the two days missing from the temperatures file, and a
    leading gap, are counted per column in the training output and summary.json."""
    frame = pd.read_csv(REPO / "data" / "daily-min-temperatures.csv")
    frame.loc[:2, "Temp"] = None  # a leading gap of three cells
    frame.to_csv(tmp_path / "temps.csv", index=False)
    config = forecast_config(tmp_path / "temps.csv", data={"date_column": "Date", "target": "Temp"}, training={"max_steps": 2})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    out = run_cli("train", tmp_path / "c.yaml", "--run-dir", tmp_path / "run").ok().out
    assert "missing timestamps filled 2, Temp interpolated 2, Temp edges filled 3" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"] == {"missing_timestamps_filled": 2, "Temp_interpolated": 2, "Temp_edges_filled": 3}
