"""The Python API trains and predicts in-process, for every task kind."""

import pandas as pd
import pytest
import yaml
from conftest import classify_config, forecast_config, memory_frame, sine_frame

import seqtool
from seqtool.errors import SeqtoolError


def test_language_model_through_the_api(tmp_path, write_config):
    run = seqtool.train(write_config(), overrides={"training.max_steps": 12, "model.type": "gru"}, run_dir=tmp_path / "run")
    assert run.state.step == 12 and (tmp_path / "run" / "best.pt").is_file()
    model = seqtool.load(tmp_path / "run")
    text = model.predict(prompt="ROMEO:", length=30, temperature=0.8, seed=1)
    assert text.startswith("ROMEO:") and len(text) == 36
    assert text == model.predict(prompt="ROMEO:", length=30, temperature=0.8, seed=1)
    assert "unigram_loss" in model.evaluate()
    with pytest.raises(SeqtoolError, match="do not apply"):
        model.predict(prompt="x", horizon=3)


def test_forecast_and_classify_through_the_api(tmp_path):
    sine_frame().to_csv(tmp_path / "sine.csv", index=False)
    (tmp_path / "fc.yaml").write_text(yaml.safe_dump(forecast_config(tmp_path / "sine.csv", training={"epochs": 2})))
    seqtool.train(tmp_path / "fc.yaml", run_dir=tmp_path / "fc")
    forecast = seqtool.load(tmp_path / "fc").predict(horizon=4)
    assert isinstance(forecast, pd.DataFrame) and len(forecast) == 4 and list(forecast.columns) == ["Date", "Value"]

    memory_frame(rows=200).to_csv(tmp_path / "texts.csv", index=False)
    (tmp_path / "cls.yaml").write_text(yaml.safe_dump(classify_config(tmp_path / "texts.csv", training={"epochs": 1})))
    seqtool.train(tmp_path / "cls.yaml", ["training.batch_size=16"], run_dir=tmp_path / "cls")
    classifier = seqtool.load(tmp_path / "cls")
    texts = ["good the a of", "bad the a of"]
    pairs = classifier.predict(texts)
    pd.DataFrame({"review": texts}).to_csv(tmp_path / "two.csv", index=False)
    table = classifier.predict(tmp_path / "two.csv")  # the CSV path scores the same texts the same way
    for (label, probability), (_, row) in zip(pairs, table.iterrows(), strict=True):
        assert label == row["label"] and probability == pytest.approx(row[f"prob_{label}"], abs=1e-6)
        assert row["prob_pos"] + row["prob_neg"] == pytest.approx(1.0, abs=1e-5)
    assert pairs[0][1] != pytest.approx(pairs[1][1], abs=1e-6)  # the first word, which decides, changes the answer
