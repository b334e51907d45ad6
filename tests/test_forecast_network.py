"""The forecast network's options: segments, the parallel decoder, channel independence and
window normalisation, as a module and end to end (train, evaluate, predict, resume, export)."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import assert_clean_error, crash_and_resume, forecast_config, sine_frame

import seqtool
from seqtool.checkpoint import load_checkpoint
from seqtool.configure import build_config
from seqtool.engine import train
from seqtool.models import SequenceModel
from seqtool.tasks.forecast import ForecastTask
from seqtool.tasks.forecast.config import ForecastModel
from seqtool.tasks.forecast.network import ForecastNetwork

SEGMENTED = {"segment_length": 8, "decoder": "parallel", "channels": "independent", "window_norm": "revin"}


def network(loss: str = "mse", outputs: int = 1, columns: int = 3, horizon: int = 10, **options) -> ForecastNetwork:
    torch.manual_seed(0)
    config = ForecastModel(hidden_size=16, num_layers=2, dropout=0.0, **options)
    return ForecastNetwork(config, columns, columns, horizon, loss, outputs).eval()


@pytest.mark.parametrize(
    "kind,segment,decoder,channels,norm",
    list(itertools.product(["rnn", "lstm", "gru"], [None, 4], ["head", "parallel"], ["mixed", "independent"], ["revin"]))
    + [("lstm", 4, "parallel", "independent", norm) for norm in ("last", "none")],
)
def test_every_combination_gives_each_window_its_own_forecast(kind, segment, decoder, channels, norm):
    for loss, outputs in (("mse", 1), ("gaussian_nll", 2), ("quantile", 3)):
        net = network(loss, outputs, type=kind, segment_length=segment, decoder=decoder, channels=channels, window_norm=norm)
        x = torch.randn(5, 12, 3)
        with torch.no_grad():
            out = net(x)
            assert out.shape == (5, 10, 3, outputs)
            torch.testing.assert_close(net(x[2:3]), out[2:3])  # alone or in a batch: the same forecast
        if loss == "gaussian_nll":
            assert (out[..., 1] > 0).all()  # a variance


def test_independent_channels_never_see_each_other():
    net = network(segment_length=4, decoder="parallel", channels="independent")
    x = torch.randn(4, 12, 3)
    changed = x.clone()
    changed[:, :, 1] += torch.randn(4, 12)
    with torch.no_grad():
        a, b = net(x), net(changed)
    torch.testing.assert_close(a[:, :, [0, 2]], b[:, :, [0, 2]])
    assert not torch.allclose(a[:, :, 1], b[:, :, 1])
    mixed = network(segment_length=4, decoder="parallel")
    with torch.no_grad():
        assert not torch.allclose(mixed(x)[:, :, 0], mixed(changed)[:, :, 0])


@pytest.mark.parametrize("norm,affine", [("last", False), ("revin", False), ("revin", True)])
def test_window_normalisation_moves_the_forecast_with_the_window(norm, affine):
    net = network(segment_length=4, decoder="parallel", channels="independent", window_norm=norm, revin_affine=affine)
    if affine:
        with torch.no_grad():
            net.revin_weight.copy_(torch.tensor([0.5, 2.0, 1.5]))
            net.revin_bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
    x = torch.randn(4, 12, 3)
    stretch = 1.0 if norm == "last" else 3.0  # last only removes a level; RevIN a level and a spread
    with torch.no_grad():
        torch.testing.assert_close(net(stretch * x + 7.0), stretch * net(x) + 7.0, rtol=1e-4, atol=1e-4)
    plain = network(segment_length=4, decoder="parallel", window_norm="none")
    with torch.no_grad():
        assert not torch.allclose(plain(x + 7.0), plain(x) + 7.0, atol=1e-2)


def test_segments_shorten_the_recurrence_and_the_parallel_decoder_covers_a_ragged_horizon():
    net = network(segment_length=4, decoder="parallel", horizon=10)  # 3 output segments of 4, cut to 10 steps
    net.probe = []
    x = torch.randn(2, 12, 3, requires_grad=True)
    out = net(x)
    assert len(net.probe) == 3 and out.shape == (2, 10, 3, 1)  # 12 rows read in 3 cell steps
    row_by_row = network()
    row_by_row.probe = []
    row_by_row(x)
    assert len(row_by_row.probe) == 12


def test_default_options_load_a_row_by_row_model_of_earlier_versions():
    """Earlier forecast checkpoints hold a SequenceModel's weights, whose outputs were changes
    from the last observed value; the default network must load them and forecast the same."""
    config = ForecastModel(type="gru", hidden_size=16, num_layers=2, dropout=0.0)
    torch.manual_seed(1)
    old = SequenceModel(config, output_size=10 * 2 * 2, input_size=3).eval()
    new = ForecastNetwork(config, 3, 2, 10, "gaussian_nll", 2).eval()
    new.load_state_dict(old.state_dict(), strict=True)
    x = torch.randn(4, 12, 3)
    base = x[:, -1, :2]
    relative = torch.cat([x[:, :, :2] - base[:, None], x[:, :, 2:]], dim=2)
    with torch.no_grad():
        raw = old(relative, last_only=True)[0].reshape(4, 10, 2, 2)
        out = new(x)
    torch.testing.assert_close(out[..., 0], raw[..., 0] + base[:, None])
    torch.testing.assert_close(out[..., 1], torch.nn.functional.softplus(raw[..., 1]) + 1e-6)


# ---- end to end -------------------------------------------------------------------------------


@pytest.fixture
def multi_csv(tmp_path):
    """Three series of different level and phase, hourly."""
    frame = sine_frame(600)
    t = np.arange(len(frame))
    frame["Second"] = (50 + 5 * np.cos(2 * np.pi * t / 20) + np.random.default_rng(1).normal(0, 0.3, len(t))).round(4)
    frame["Third"] = (frame["Value"] * -2 + 40).round(4)
    path = tmp_path / "multi.csv"
    frame.to_csv(path, index=False)
    return path


def multi_config(path, model=None, **sections):
    config = forecast_config(
        path,
        data={"target": ["Value", "Second", "Third"], "test_fraction": 0.15, "val_fraction": 0.15},
        model={"type": "gru", "hidden_size": 32, **SEGMENTED, **(model or {})},
        **sections,
    )
    config["training"].update({"epochs": 15, "lr": 0.005})
    return config


def test_segmented_independent_model_beats_the_baselines_and_runs_everywhere(tmp_path, run_cli, multi_csv):
    config = tmp_path / "seg.yaml"
    config.write_text(yaml.safe_dump(multi_config(multi_csv)))
    run = tmp_path / "run"
    assert run_cli("train", config, "--run-dir", run).code == 0
    result = run_cli("evaluate", run, "--json", "--plot", tmp_path / "backtest.png")
    metrics = json.loads(result.out)
    assert metrics["split"] == "test"
    assert metrics["mse"] < 0.5 * metrics["naive_mse"] and metrics["mse"] < metrics["seasonal_naive_mse"], metrics
    assert (tmp_path / "backtest.png").stat().st_size > 1000
    forecast = run_cli("predict", run, "--data", multi_csv, "--horizon", "6").out.splitlines()
    assert forecast[0] == "Date,Value,Second,Third" and len(forecast) == 7

    onnx = pytest.importorskip("onnxruntime")
    out = tmp_path / "seg.onnx"
    assert run_cli("export", run, "--output", out).code == 0  # export checks the file against seqtool itself
    meta = json.loads((tmp_path / "seg.onnx.json").read_text())
    shift, scale = np.array(meta["scaler"]["shift"]), np.array(meta["scaler"]["scale"])
    rows = pd.read_csv(multi_csv)[meta["columns"]].to_numpy()[-meta["context_length"] :]
    context = ((rows - shift) / scale).astype(np.float32)[None]
    (produced,) = onnx.InferenceSession(str(out)).run(None, {"context": context})
    expected = seqtool.load(run).predict(data=multi_csv)
    np.testing.assert_allclose(produced[0] * scale + shift, expected[meta["targets"]].to_numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("loss", ["gaussian_nll", "quantile"])
def test_segmented_models_give_intervals_that_cover(tmp_path, run_cli, multi_csv, loss):
    config = tmp_path / f"{loss}.yaml"
    config.write_text(yaml.safe_dump(multi_config(multi_csv, training={"loss": loss})))
    assert run_cli("train", config, "--run-dir", tmp_path / loss).code == 0
    metrics = json.loads(run_cli("evaluate", tmp_path / loss, "--json").out)
    assert 0.5 < metrics["coverage_80"] <= 1.0, metrics
    out = run_cli("predict", tmp_path / loss, "--horizon", "3").out.splitlines()[0].split(",")
    assert out[:4] == ["Date", "Value", "Value_lower", "Value_upper"]


def test_segmented_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, multi_csv, monkeypatch):
    training = {"epochs": None, "max_steps": 40, "eval_every": 15}
    config = build_config(multi_config(multi_csv, model={"dropout": 0.3, "revin_affine": True}, training=training), "test")
    train(config, tmp_path / "full")
    crash_and_resume(monkeypatch, ForecastTask, config, tmp_path / "cut", crash_at=23)
    full, cut = (load_checkpoint(tmp_path / name / "last.pt")["model"] for name in ("full", "cut"))
    assert {"position_embedding", "channel_embedding", "revin_weight"} <= set(full)
    assert all(torch.equal(full[k], cut[k]) for k in full)


def test_max_rows_splits_a_prefix_and_predict_still_reads_the_whole_file(tmp_path, run_cli, multi_csv):
    config = tmp_path / "prefix.yaml"
    config.write_text(yaml.safe_dump(forecast_config(multi_csv, data={"max_rows": 300}, training={"epochs": 1})))
    run = tmp_path / "run"
    assert run_cli("train", config, "--run-dir", run).code == 0
    metrics = json.loads(run_cli("evaluate", run, "--json").out)
    assert metrics["split"] == "val" and metrics["origins"] == 60 - 10 + 1  # 20% of 300 rows
    lines = run_cli("predict", run, "--data", multi_csv, "--horizon", "1").out.splitlines()
    assert lines[1].startswith("2021-08-23")  # the day after row 600, not after row 300


def test_bad_combinations_are_refused_before_any_work(tmp_path, run_cli, multi_csv):
    def refused(config: dict, *fragments: str) -> None:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(config))
        assert_clean_error(run_cli("train", path, "--run-dir", tmp_path / "bad"), *fragments)
        assert not (tmp_path / "bad").exists()

    refused(
        multi_config(multi_csv, model={"segment_length": 12}),
        "model.segment_length",
        "data.context_length 40 is not a multiple of model.segment_length 12",
        "36 or 48",
    )
    with_covariate = multi_config(multi_csv)
    with_covariate["data"].update(target=["Value"], features=["Second"], calendar_features=True)
    refused(with_covariate, "model.channels", "data.features, data.calendar_features")
    refused(multi_config(multi_csv, model={"window_norm": "last", "revin_affine": True}), "model.revin_affine", "revin")
    language_model = {"task": "language_model", "data": {"path": str(multi_csv)}, "model": {"segment_length": 4}}
    refused(language_model, "model.segment_length", "applies to task: forecast")
