"""Many series in one long CSV: layout, sampling, per-series metrics, baselines, predict, errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import assert_clean_error

from seqtool.configure import build_config
from seqtool.tasks.forecast import ForecastTask, conformal, statistical
from seqtool.tasks.forecast.config import ForecastData
from seqtool.tasks.forecast.metrics import history_scales, per_series_metrics
from seqtool.tasks.forecast.panel import PanelForecastTask
from seqtool.tasks.forecast.panel_data import Layout, per_series_scaler

PNG = b"\x89PNG"


def panel_frame(series: int = 12, seed: int = 0) -> pd.DataFrame:
    """Quarterly series of different lengths (10 to 60 rows), start dates and scales (1 to
    5,000): a shared seasonal shape (period 4) and trend on each series' own level, and noise."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(series):
        length = 10 if i == 0 else int(rng.integers(30, 61))
        level = float(np.exp(rng.uniform(0, np.log(5000))))
        t = np.arange(length)
        shape = 1 + 0.3 * np.sin(2 * np.pi * t / 4) + 0.01 * t
        values = level * (shape + rng.normal(0, 0.03, length))
        dates = pd.date_range(end="2020-10-01", periods=length, freq="QS")
        parts.append(pd.DataFrame({"id": f"s{i:02d}", "quarter": dates.strftime("%Y-%m-%d"), "y": values.round(4)}))
    return pd.concat(parts, ignore_index=True)


def panel_config(path, **data) -> dict:
    return {
        "task": "forecast",
        "seed": 5,
        "data": {"path": str(path), "series_column": "id", "date_column": "quarter", "target": "y"}
        | {"context_length": 12, "horizon": 4, "val_rows": 4, "test_rows": 4}
        | data,
        "model": {"type": "gru", "hidden_size": 32, "num_layers": 1, "dropout": 0.0},
        "training": {"batch_size": 32, "epochs": 40, "lr": 0.005, "eval_every": 40, "intervals": "conformal"},
    }


@pytest.fixture
def panel_csv(tmp_path):
    path = tmp_path / "panel.csv"
    panel_frame().sample(frac=1.0, random_state=0).to_csv(path, index=False)  # rows in any order
    return path


def write(tmp_path, config: dict, name: str = "panel.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_global_model_beats_the_per_series_baselines_and_forecasts_every_series(tmp_path, run_cli, panel_csv, monkeypatch):
    monkeypatch.setattr(statistical, "available", lambda: False)  # the peers have a test of their own
    run = tmp_path / "run"
    run_cli("train", write(tmp_path, panel_config(panel_csv)), "--run-dir", run).ok()
    per_series = tmp_path / "per.csv"
    result = run_cli("evaluate", run, "--json", "--per-series", per_series, "--plot", tmp_path / "grid.png").ok()
    metrics = json.loads(result.out)
    assert metrics["series"] == 12 and metrics["series_shorter_than_context"] == 1  # s00 has 6 rows before its test part
    for name in ("mase", "smape", "mae", "mse"):
        for prefix in ("", "naive_", "seasonal_naive_", "linear_"):
            assert np.isfinite(metrics[prefix + name]), prefix + name
    assert metrics["mase"] < 0.7 * metrics["naive_mase"], metrics
    assert metrics["mase"] < metrics["seasonal_naive_mase"], metrics
    table = pd.read_csv(per_series)
    assert sorted(table["series"]) == [f"s{i:02d}" for i in range(12)]
    assert table["mase"].mean() == pytest.approx(metrics["mase"], rel=1e-5)  # the mean over series
    assert (tmp_path / "grid.png").read_bytes().startswith(PNG)

    out = tmp_path / "forecast.csv"
    run_cli("predict", run, "--output", out, "--plot", tmp_path / "forecast.png").ok()
    forecast = pd.read_csv(out)
    assert (tmp_path / "forecast.png").read_bytes().startswith(PNG)
    assert list(forecast.columns) == ["series", "date", "forecast", "lower", "upper"]
    assert forecast.groupby("series").size().to_dict() == {f"s{i:02d}": 4 for i in range(12)}
    assert forecast["date"].unique().tolist() == ["2021-01-01", "2021-04-01", "2021-07-01", "2021-10-01"]
    assert (forecast["lower"] < forecast["forecast"]).all() and (forecast["forecast"] < forecast["upper"]).all()
    some = run_cli("predict", run, "--series", "s03,s07", "--horizon", "2").ok()
    assert pd.read_csv(__import__("io").StringIO(some.out))["series"].tolist() == ["s03", "s03", "s07", "s07"]


def test_statistical_peers_sit_beside_the_model_in_evaluate_only(tmp_path, run_cli, panel_csv, monkeypatch):
    run = tmp_path / "run"
    config = panel_config(panel_csv) | {"training": {"epochs": 1, "batch_size": 32}}
    run_cli("train", write(tmp_path, config), "--run-dir", run).ok()
    logged = (run / "metrics.jsonl").read_text()
    assert "ets_mase" not in logged  # training's validation passes do not fit them
    if statistical.available():
        metrics = json.loads(run_cli("evaluate", run, "--json").ok().out)
        assert metrics["ets_mase"] < metrics["naive_mase"] and metrics["theta_mase"] < metrics["naive_mase"], metrics
    monkeypatch.setattr(statistical, "available", lambda: False)
    table = run_cli("evaluate", run).ok()
    assert "pip install 'seqtool[stats]'" in table.out and "ets" not in table.out.split("Note")[0]


def test_layout_pads_each_series_and_windows_never_cross_series(tmp_path):
    data = ForecastData(path="x.csv", target=["y"], series_column="id", context_length=3, horizon=2, val_rows=2, test_rows=2)
    layout = Layout.build(np.array([9, 5]), 3, data)
    assert layout.offsets.tolist() == [3, 15] and layout.rows == 20
    origins, counts = layout.train_origins(2)
    assert counts.tolist() == [3, 0]  # 5 training rows: windows after 1, 2 and 3 rows; 1 row gives none
    assert origins.tolist() == [4, 5, 6]
    assert layout.split_origins("val", 2, 1).tolist() == [8, 16]
    assert layout.split_origins("test", 2, 1).tolist() == [10, 18]
    assert layout.series_of(np.array([4, 10, 16, 18])).tolist() == [0, 0, 1, 1]
    longer = Layout.build(
        np.array([9]), 3, ForecastData(path="x", target=["y"], context_length=3, horizon=2, val_rows=3, test_rows=5)
    )
    assert longer.split_origins("test", 2, 2).tolist() == [8, 10]  # aligned to the end, stride 2


def test_each_series_is_scaled_by_its_own_training_rows():
    data = ForecastData(path="x.csv", target=["y"], series_column="id", val_rows=2, test_rows=2)
    values = np.concatenate([np.arange(8.0), 1000 + 10 * np.arange(6.0)])[:, None]
    values[7] = 1e9  # a test value: it must not move the scaling
    shift, scale = per_series_scaler(values, Layout.build(np.array([8, 6]), 1, data), "standard", 1)
    assert shift[:, 0].tolist() == pytest.approx([1.5, 1005.0])
    assert scale[:, 0].tolist() == pytest.approx([np.std([0, 1, 2, 3]), 5.0])


def test_sampling_caps_long_series_and_keeps_every_window_of_short_ones(tmp_path, panel_csv):
    config = build_config(panel_config(panel_csv, windows_per_series=5), "test")
    task = ForecastTask(config)
    assert isinstance(task, PanelForecastTask)
    task.load_training_data()
    counts = task.window_counts
    order = task.epoch_order(0)
    owner = task.arranged.layout.series_of(task.train_origins[order])
    drawn = np.bincount(owner, minlength=len(counts))
    assert drawn.tolist() == np.minimum(counts, 5).tolist() and task.sample_count() == len(order)
    assert len(set(order.tolist())) == len(order)  # without replacement
    assert np.array_equal(order, task.epoch_order(0)) and not np.array_equal(order, task.epoch_order(1))
    default = ForecastTask(build_config(panel_config(panel_csv), "test"))
    default.load_training_data()
    assert default.windows_per_series == int(np.median(default.window_counts[default.window_counts > 0]))


def test_per_series_mase_uses_each_series_in_sample_seasonal_naive_error():
    values = np.array([1.0, 3.0, 2.0, 4.0, 3.0, 5.0, 100.0, 110.0, 90.0, 130.0])[:, None]
    scale, z = history_scales(values, np.array([4, 10]), np.array([0, 6]), m=2)
    assert scale[:, 0].tolist() == pytest.approx([1.0, 15.0])
    actual = np.array([[[4.0], [6.0]], [[140.0], [150.0]]])
    predicted = np.array([[[5.0], [6.0]], [[130.0], [130.0]]])
    metrics = per_series_metrics(actual, predicted, np.array([0, 1]), 2, scale, z)
    assert metrics["mase"].tolist() == pytest.approx([0.5 / 1.0, 15.0 / 15.0])
    assert metrics["smape"][0] == pytest.approx(100 * (2 * 1 / 9 + 0) / 2)


def test_conformal_half_width_is_the_finite_sample_quantile():
    residuals = np.arange(1.0, 10.0)  # 9 windows, one step: rank ceil(10 * 0.8) = 8
    calibration = conformal.calibrate(residuals[:, None, None], np.zeros((9, 1, 1)), np.ones((1, 1)), 0.8)
    assert calibration["width"] == [[8.0]] and calibration["enough"]
    few = conformal.calibrate(residuals[:3, None, None], np.zeros((3, 1, 1)), np.ones((1, 1)), 0.8)
    assert few["width"] == [[3.0]] and not few["enough"] and "too few" in conformal.note(few)
    bounds = conformal.bounds(np.full((2, 1, 1), 10.0), np.full((2, 1, 1), 2.0), calibration)
    assert bounds["lower"].ravel().tolist() == [-6.0, -6.0] and bounds["upper"].ravel().tolist() == [26.0, 26.0]


def test_conformal_intervals_cover_near_their_level_on_held_out_series(tmp_path, run_cli):
    rng = np.random.default_rng(1)
    frames = []
    for i in range(60):
        level = float(np.exp(rng.uniform(0, 6)))
        values = level * (1 + 0.2 * np.sin(np.arange(40) * np.pi / 2) + rng.normal(0, 0.1, 40))
        frames.append(pd.DataFrame({"id": f"s{i}", "quarter": pd.date_range("2000-01-01", periods=40, freq="QS"), "y": values}))
    path = tmp_path / "many.csv"
    pd.concat(frames).to_csv(path, index=False)
    run = tmp_path / "run"
    config = panel_config(path) | {"training": {"epochs": 4, "batch_size": 64, "lr": 0.01, "intervals": "conformal"}}
    run_cli("train", write(tmp_path, config), "--run-dir", run).ok()
    metrics = json.loads(run_cli("evaluate", run, "--json").ok().out)
    assert 0.7 <= metrics["coverage_80"] <= 0.92, metrics
    assert metrics["width_80"] > 0


def test_rows_hold_out_the_end_of_a_single_series_too(tmp_path, run_cli):
    frame = pd.DataFrame(
        {"t": pd.date_range("2020-01-01", periods=120, freq="D").strftime("%Y-%m-%d"), "v": np.sin(np.arange(120) / 3)}
    )
    path = tmp_path / "one.csv"
    frame.to_csv(path, index=False)
    config = {
        "task": "forecast",
        "data": {"path": str(path), "date_column": "t", "target": "v", "context_length": 10, "horizon": 5}
        | {"val_rows": 20, "test_rows": 15},
        "model": {"hidden_size": 8, "num_layers": 1},
        "training": {"max_steps": 5, "epochs": None, "batch_size": 16},
    }
    run = tmp_path / "run"
    run_cli("train", write(tmp_path, config), "--run-dir", run).ok()
    metrics = json.loads(run_cli("evaluate", run, "--json").ok().out)
    assert metrics["origins"] == 15 - 5 + 1 and metrics["split"] == "test"


def bad_panel(tmp_path, frame: pd.DataFrame) -> str:
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return str(path)


def test_bad_panels_are_one_error_line_and_write_nothing(tmp_path, run_cli, panel_csv):
    frame = panel_frame()
    cases = []
    cases.append((panel_config(panel_csv, series_column="store"), ["column 'store'", "data.series_column"]))
    repeated = frame.copy()
    repeated.loc[5, "quarter"] = repeated.loc[4, "quarter"]
    cases.append((panel_config(bad_panel(tmp_path, repeated)), ["series 's00' repeats date", "rows 6 and 7", "bad.csv"]))
    text = frame.astype({"y": str})
    text.loc[20, "y"] = "n/a?"
    path = tmp_path / "text.csv"
    text.to_csv(path, index=False)
    cases.append((panel_config(path), ["text.csv", "row 22", "column 'y'", "'n/a?'"]))
    cases.append((panel_config(panel_csv, val_fraction=0.2), ["and data.val_fraction are exclusive"]))
    cases.append((panel_config(panel_csv, val_rows=30, test_rows=30), ["12 series have no rows before"]))
    for n, (config, fragments) in enumerate(cases):
        run = tmp_path / f"run{n}"
        assert_clean_error(run_cli("train", write(tmp_path, config, f"bad{n}.yaml"), "--run-dir", run), *fragments)
        assert not run.exists() or not any(run.glob("*.pt")), n


def test_a_series_too_short_to_forecast_is_named_and_the_rest_go_on(tmp_path, run_cli, panel_csv):
    run = tmp_path / "run"
    config = panel_config(panel_csv, val_rows=5, test_rows=5) | {"training": {"epochs": 1, "batch_size": 32}}
    result = run_cli("train", write(tmp_path, config), "--run-dir", run).ok()
    assert "1 series have no rows before data.val_rows + data.test_rows" in result.err and "'s00'" in result.err
    metrics = json.loads(run_cli("evaluate", run, "--json").ok().out)
    assert metrics["series"] == 11


def test_step_scaling_divides_by_each_series_mean_absolute_step():
    data = ForecastData(path="x.csv", target=["y"], series_column="id", val_rows=1, test_rows=1)
    values = np.array([0.0, 2.0, 1.0, 3.0, 50.0, 500.0, 510.0, 490.0, 9.0])[:, None]
    shift, scale = per_series_scaler(values, Layout.build(np.array([5, 4]), 1, data), "step", 1)
    # training rows 0 2 1 and 500 510 (the last two of each series are held out); never the step between series
    assert scale[:, 0].tolist() == pytest.approx([(2 + 1) / 2, 10.0])
    assert shift[:, 0].tolist() == pytest.approx([1.0, 505.0])


def test_window_normalisation_reads_observed_rows_only():
    import torch

    from seqtool.tasks.forecast.config import ForecastModel
    from seqtool.tasks.forecast.network import ForecastNetwork, NetworkInputs

    torch.manual_seed(0)
    model = ForecastModel(hidden_size=8, num_layers=1, window_norm="revin")
    network = ForecastNetwork(model, 2, 1, 3, "mse", 1, NetworkInputs(observed=True))
    network.eval()
    short = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [5.0, 1.0], [7.0, 1.0], [6.0, 1.0]]])  # two rows of padding
    garbage = short.clone()
    garbage[0, :2, 0] = 1e6  # whatever sits in padding must not move the window's mean or spread
    shifted = short.clone()
    shifted[0, 2:, 0] += 100.0
    with torch.no_grad():
        assert torch.allclose(network(short), network(garbage))
        assert torch.allclose(network(shifted), network(short) + 100.0, atol=1e-4)  # the level is the observed rows'


def promo_frame(series: int, length: int, seed: int = 0) -> pd.DataFrame:
    """Daily series whose value jumps by 10 on promotion days, planned in advance (and known)."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(series):
        promo = (rng.random(length) < 0.3).astype(int)
        value = 50 + 10 * promo + rng.normal(0, 1, length)
        dates = pd.date_range("2024-01-01", periods=length, freq="D").strftime("%Y-%m-%d")
        parts.append(pd.DataFrame({"id": f"p{i}", "day": dates, "sales": value.round(3), "promo": promo, "store": f"S{i % 2}"}))
    return pd.concat(parts, ignore_index=True)


def promo_config(path, **data) -> dict:
    """`panel_config` for the daily promotion panel: two weeks of context, one ahead."""
    layout = {"date_column": "day", "target": "sales", "context_length": 14, "horizon": 7, "val_rows": 14, "test_rows": 14}
    config = panel_config(path, **layout, seasonality=7, **data)
    config["seed"] = 1
    config["training"] = {"batch_size": 64, "epochs": 12, "lr": 0.01, "eval_every": 50, "loss": "mae"}
    return config


def test_known_future_covariates_are_read_over_the_horizon(tmp_path, run_cli, monkeypatch):
    monkeypatch.setattr(statistical, "available", lambda: False)  # the seasonal ETS fits would take most of the time
    frame = promo_frame(6, 150)
    path = tmp_path / "promo.csv"
    frame.to_csv(path, index=False)
    scores = {}
    for name, future in (("with", ["promo"]), ("without", [])):
        config = write(tmp_path, promo_config(path, future_features=future), f"{name}.yaml")
        run_cli("train", config, "--run-dir", tmp_path / name).ok()
        scores[name] = json.loads(run_cli("evaluate", tmp_path / name, "--json").ok().out)["mae"]
    assert scores["with"] < 0.5 * scores["without"], scores  # the jump is only predictable from the plan

    ahead = frame.groupby("id").tail(7).assign(sales=np.nan)  # the next 7 days: promotions planned, sales unknown
    ahead["day"] = pd.to_datetime(ahead["day"]) + pd.Timedelta(days=7)
    ahead["promo"] = [1, 0, 0, 0, 0, 0, 1] * 6
    future_csv = tmp_path / "future.csv"
    pd.concat([frame, ahead]).to_csv(future_csv, index=False)
    forecast = pd.read_csv(io.StringIO(run_cli("predict", tmp_path / "with", "--data", future_csv).ok().out))
    first = forecast[forecast["series"] == "p0"]["forecast"].to_numpy()
    assert first[0] > first[1] + 5 and first[6] > first[5] + 5, first  # promotion days forecast higher
    assert_clean_error(
        run_cli("predict", tmp_path / "with", "--data", path), "series 'p0' has 0 rows", "data.future_features (promo)"
    )
    assert_clean_error(run_cli("predict", tmp_path / "with", "--data", tmp_path / "nope.csv"), "nope.csv")


def test_a_single_series_reads_future_covariates_too(tmp_path, run_cli):
    frame = promo_frame(1, 300).drop(columns=["id", "store"])
    path = tmp_path / "one.csv"
    frame.to_csv(path, index=False)
    config = promo_config(path, future_features=["promo"])
    del config["data"]["series_column"]
    config["training"] |= {"epochs": 80}
    run_cli("train", write(tmp_path, config), "--run-dir", tmp_path / "run").ok()
    metrics = json.loads(run_cli("evaluate", tmp_path / "run", "--json").ok().out)
    assert metrics["mae"] < 0.5 * metrics["naive_mae"], metrics
    assert_clean_error(run_cli("predict", tmp_path / "run"), "data.future_features (promo)", "without --data there are none")
    ahead = pd.DataFrame(
        {"day": pd.date_range("2024-10-27", periods=7).strftime("%Y-%m-%d"), "sales": np.nan, "promo": [0, 1, 0, 0, 0, 0, 0]}
    )
    future_csv = tmp_path / "future.csv"
    pd.concat([frame, ahead]).to_csv(future_csv, index=False)
    forecast = pd.read_csv(io.StringIO(run_cli("predict", tmp_path / "run", "--data", future_csv).ok().out))
    assert forecast["sales"][1] > forecast["sales"][0] + 4, forecast


def test_static_columns_and_a_series_embedding_reach_the_network(tmp_path, run_cli):
    frame = promo_frame(4, 80)
    path = tmp_path / "static.csv"
    frame.to_csv(path, index=False)
    config = promo_config(path, static=["store"]) | {"model": {"hidden_size": 16, "num_layers": 1, "series_embedding": 3}}
    config["training"] |= {"epochs": 1}
    run_cli("train", write(tmp_path, config), "--run-dir", tmp_path / "run").ok()
    from seqtool.engine import load_trained

    task, model, _ = load_trained(tmp_path / "run")
    assert task.artifacts_["columns"][-4:] == ["store=S0", "store=S1", "series_id", "observed"]
    assert model.series_table.num_embeddings == 5  # four series and the unseen one
    unseen = frame.assign(id=frame["id"].str.replace("p3", "new"))
    other = tmp_path / "other.csv"
    unseen.to_csv(other, index=False)
    assert "new" in run_cli("predict", tmp_path / "run", "--data", other).ok().out
    changing = frame.copy()
    changing.loc[5, "store"] = "S9"
    changing.to_csv(path, index=False)
    assert_clean_error(
        run_cli("train", write(tmp_path, config), "--run-dir", tmp_path / "run2"),
        "'store' (data.static) changes within series 'p0'",
        "row 7",
    )


@pytest.mark.skipif(not statistical.available(), reason="statsforecast (seqtool[stats]) is not installed")
def test_rolling_origins_give_the_peers_the_same_history_as_single_ones():
    rng = np.random.default_rng(0)
    values = np.concatenate([np.zeros(3), 50 + np.cumsum(rng.normal(0, 1, 30)), np.zeros(3), 9 + np.cumsum(rng.normal(0, 1, 24))])
    offsets = np.array([3, 36])
    origins = np.array([25, 28, 54, 57])  # two windows of 3 per series, 3 rows apart, the last ending each series
    owner = np.array([0, 0, 1, 1])
    rolling = statistical.peer_forecasts(values, offsets, origins, owner, 3, 3, 1)
    for n in range(4):
        alone = statistical.peer_forecasts(values, offsets, origins[n : n + 1], owner[n : n + 1], 3, 3, 1)
        for name in statistical.PEERS:
            assert np.allclose(rolling[name][n], alone[name][0]), (name, n)
