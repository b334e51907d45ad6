"""The speech kind through the command line: the evaluate keys, predict over paths, a folder,
a manifest and stdin with one unreadable clip named and the others transcribed, and init."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("soundfile", reason="the speech extra is not installed (pip install 'seqtool[speech]')")

from seqtool.configure import load_config
from seqtool.engine import load_trained
from seqtool.testing import prepare

DATA = Path(__file__).resolve().parent.parent / "data" / "speech"


@pytest.fixture(scope="module")
def speech_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    job = prepare("speech", folder, max_steps=60)
    return job.train("run"), folder


def test_evaluate_reports_the_contract_keys_beside_the_baseline(speech_run, run_cli):
    run, _ = speech_run
    metrics = json.loads(run_cli("evaluate", run, "--json").ok().out)
    for key in ("cer", "wer", "baseline_cer", "baseline_wer", "real_time_factor"):
        assert isinstance(metrics[key], float), key
    assert metrics["clips"] == 4 and metrics["skipped_clips"] == 0  # the test part: 10% of 40 clips
    assert metrics["real_time_factor"] > 0
    beam = json.loads(run_cli("evaluate", run, "--json", "--beam-size", "3").ok().out)
    assert set(beam) == set(metrics)


def test_predict_takes_paths_a_folder_a_manifest_and_stdin_and_names_an_unreadable_clip(speech_run, run_cli, tmp_path):
    run, folder = speech_run
    clips = [str(folder / f"clip{i}.wav") for i in range(3)]
    given = run_cli("predict", run, *clips).ok()
    assert [line.split("\t")[0] for line in given.out.splitlines()] == clips
    piped = run_cli("predict", run, stdin="\n".join(clips) + "\n").ok()
    assert piped.out == given.out
    manifest = run_cli("predict", run, "--data", folder / "new.csv").ok()
    assert [line.split("\t")[1] for line in manifest.out.splitlines()] == [line.split("\t")[1] for line in given.out.splitlines()]
    broken = run_cli("predict", run, clips[0], str(folder / "noise.wav"), clips[1])
    assert broken.code == 2 and broken.out.count("\n") == 2 and "noise.wav: not a readable audio file" in broken.err
    assert "1 clip(s) could not be transcribed" in broken.err and "Traceback" not in broken.err
    out = tmp_path / "transcripts.csv"
    run_cli("predict", run, *clips, "--output", out).ok()
    assert out.read_text().splitlines()[0] == "path,transcript" and len(out.read_text().splitlines()) == 4
    shutil.copy(folder / "clip0.wav", tmp_path / "a.wav")
    assert run_cli("predict", run, "--data", tmp_path).ok().out.startswith(str(tmp_path / "a.wav"))


def test_init_recognises_a_manifest_and_holds_out_voices(tmp_path, run_cli):
    shutil.copytree(DATA, tmp_path / "speech")
    manifest = tmp_path / "speech" / "manifest.csv"
    assert run_cli("init", manifest).code == 0
    config = load_config(manifest.with_suffix(".yaml"))
    assert config.task == "speech" and (config.data.audio_column, config.data.text_column) == ("path", "text")
    assert config.data.group_column == "voice"


def test_the_shipped_config_trains_on_the_bundled_clips(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(DATA.parent.parent)
    run = tmp_path / "run"
    run_cli("train", "configs/speech_commands.yaml", "training.max_steps=4", "training.max_time=null", "--run-dir", run).ok()
    metrics = json.loads(run_cli("evaluate", run, "--json").ok().out)
    assert metrics["clips"] > 20  # whole voices held out for the test part


def test_an_onnx_deployment_needs_only_the_metadata(speech_run, run_cli, tmp_path):
    """Features from the metadata's settings, the graph through onnxruntime, greedy decoding in
    numpy from the metadata's labels: the same transcripts as `seqtool predict`, frame by frame."""
    ort = pytest.importorskip("onnxruntime")
    from seqtool.tasks.speech.audio import FeatureSettings, log_mel, read_audio

    run, folder = speech_run
    output = tmp_path / "asr.onnx"
    run_cli("export", run, "--format", "onnx", "--output", output).ok()
    meta = json.loads(output.with_suffix(".onnx.json").read_text())
    features = meta["features"]
    settings = FeatureSettings(features["sample_rate"], features["window_ms"], features["hop_ms"], features["n_mels"])
    clips = [folder / f"clip{i}.wav" for i in range(3)]
    frames = [log_mel(read_audio(clip, settings.sample_rate), settings) for clip in clips]
    batch = np.zeros((len(frames), max(len(f) for f in frames), settings.n_mels), dtype=np.float32)
    for k, f in enumerate(frames):
        batch[k, : len(f)] = f
    lengths = np.array([len(f) for f in frames], dtype=np.int64)
    log_probs, steps = ort.InferenceSession(str(output)).run(None, {"features": batch, "lengths": lengths})
    assert steps.tolist() == [-(-n // meta["frame_stack"]) for n in lengths]

    def greedy(labels: np.ndarray) -> str:
        kept = [int(a) for a, b in zip(labels, np.r_[-1, labels[:-1]], strict=True) if a != b and a != meta["blank"]]
        return "".join(meta["characters"][i - 1] for i in kept)

    deployed = [greedy(log_probs[k, : steps[k]].argmax(-1)) for k in range(len(clips))]
    predicted = [line.split("\t")[1] for line in run_cli("predict", run, *map(str, clips)).ok().out.splitlines()]
    assert deployed == predicted
    _, model, _ = load_trained(run)
    with torch.no_grad():
        reference, _ = model(torch.from_numpy(batch), torch.from_numpy(lengths))
    for k in range(len(clips)):
        assert (log_probs[k, : steps[k]].argmax(-1) == reference[k, : steps[k]].argmax(-1).numpy()).all()


def test_clips_too_short_for_their_transcript_are_counted_and_bounded(tmp_path, run_cli):
    """CTC cannot align a transcript longer than the clip's output steps (zero_infinity zeroed
    them silently): they are counted in the output and summary.json, and beyond
    training.max_unalignable a run is refused naming the first."""
    job = prepare("speech", tmp_path / "job", max_steps=2)
    out = run_cli("train", job.config_path, "--run-dir", tmp_path / "ok").ok().out
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert summary["data"]["clips_unalignable"] == 0 and "val_unknown_characters" in summary["data"]
    refused = run_cli("train", job.config_path, "model.frame_stack=40", "--run-dir", tmp_path / "stacked")
    refused.clean_error("too short for their transcript", "manifest row", "model.frame_stack", "training.max_unalignable")
    assert "clips unalignable" not in out  # a zero count is not said


def test_spec_augment_masks_the_features_where_they_are(tmp_path, run_cli, monkeypatch):
    """No copy of a batch's features to the CPU and back at every step: during a training step
    no 3-D tensor (a batch of frames) is moved with .cpu()."""
    from seqtool.tasks.speech import SpeechTask

    moved, stepping = [], []
    real_cpu, real_loss = torch.Tensor.cpu, SpeechTask.training_loss

    def cpu(self, *args, **kwargs):
        if stepping and self.dim() == 3:
            moved.append(tuple(self.shape))
        return real_cpu(self, *args, **kwargs)

    def training_loss(self, *args, **kwargs):
        stepping.append(1)
        try:
            return real_loss(self, *args, **kwargs)
        finally:
            stepping.clear()

    monkeypatch.setattr(torch.Tensor, "cpu", cpu)
    monkeypatch.setattr(SpeechTask, "training_loss", training_loss)
    job = prepare("speech", tmp_path / "job", max_steps=2)
    run_cli("train", job.config_path, "training.freq_masks=2", "training.time_masks=2", "--run-dir", tmp_path / "run").ok()
    assert not moved, f"features moved to the CPU in a training step: {moved}"
