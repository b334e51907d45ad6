"""Speech recognition: audio in, text out, with a (bi)directional RNN and CTC.

A manifest CSV lists audio files (paths relative to it) and their transcripts. Each clip is read
at any rate and channel count, resampled to `data.sample_rate`, turned into normalised log-mel
frames (`audio.py`, cached beside the runs), and recognised by `network.py`: frame
stacking, a packed recurrent stack and a CTC head over the transcripts' characters. Evaluation
decodes for real (greedy, or prefix beam search with `--beam-size`) and scores with jiwer's CER
and WER beside the most common training transcript, with the real-time factor of inference.
"""

from __future__ import annotations

import base64
import dataclasses
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import torch

from seqtool.checkpoint import atomic_write_text
from seqtool.data import csvfile, sniff, splits
from seqtool.distributed import Cluster
from seqtool.errors import SeqtoolError
from seqtool.schema import Config, Where
from seqtool.signature import Signature
from seqtool.tasks import (
    BadInput,
    Example,
    MainMetric,
    PredictOption,
    ServeSpec,
    Starter,
    Unsuitable,
    WindowedTask,
    to_device,
)
from seqtool.tasks.speech import export as export_parts
from seqtool.tasks.speech.audio import Features, FeatureSettings, cached_extract, log_mel, read_audio
from seqtool.tasks.speech.config import SpeechData, SpeechModel, SpeechTraining
from seqtool.tasks.speech.network import (
    BLANK,
    SpeechNetwork,
    clip_seed,
    ctc_steps_needed,
    greedy_decode,
    prefix_beam_search,
    spec_augment,
)

EVAL_BATCH = 64
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")


@dataclass
class Utterances:
    """A split's clips as features, with their transcripts and where they came from."""

    features: Features
    texts: list[str]  # the transcripts of the clips kept
    source: str  # the manifest, for messages
    copies: dict[str, Features] = dataclasses.field(default_factory=dict)  # training copies of the same clips, by name


class SpeechTask(WindowedTask):
    name = "speech"
    description = "speech recognition: audio clips to text with a bidirectional LSTM and CTC"
    data_schema = SpeechData
    requires = (("soundfile", "speech"), ("scipy", "speech"), ("jiwer", "speech"))
    model_schema = SpeechModel
    training_schema = SpeechTraining
    reads = "it reads a manifest of audio clips and transcripts"
    main_metric = MainMetric("cer", "CER")
    baselines = ("baseline",)
    timing_metrics = ("real_time_factor",)
    predict_hint = "clip.wav ... (or paths on stdin)"
    predict_arguments = "paths"
    predict_options = (
        PredictOption("--data", Path, "a manifest CSV or a folder of clips to transcribe", "paths given or on stdin"),
        PredictOption("--output", Path, "write path,transcript as CSV here", "stdout: path<TAB>transcript"),
        PredictOption("--beam-size", int, "CTC prefix beam search with this many prefixes", "1: greedy", min=1),
    )
    evaluate_options = (PredictOption("--beam-size", int, "decode by CTC prefix beam search", "1: greedy", min=1),)

    def __init__(self, config: Config, artifacts: dict[str, Any] | None = None, cluster: Cluster | None = None):
        super().__init__(config, artifacts, cluster)
        self.data = config.data
        self.settings = FeatureSettings(self.data.sample_rate, self.data.window_ms, self.data.hop_ms, self.data.n_mels)
        self.characters: list[str] | None = list(artifacts["characters"]) if artifacts else None
        self.most_common: str | None = artifacts["most_common"] if artifacts else None
        self.splits: dict[str, Utterances] = {}
        self._index: dict[str, int] | None = None  # character -> label id
        self.epoch = 0

    @classmethod
    def check_config(cls, config: Config, where: Where) -> None:
        config.data.check(where)
        if config.training.narrowband + config.training.speed_perturb > 1.0:
            raise SeqtoolError(
                f"{where('training.speed_perturb')}: narrowband + speed_perturb is a share of the clips: at most 1"
            )

    # ---- data ----------------------------------------------------------------------------------

    def _read_manifest(self, path: str, need_text: bool = True) -> pd.DataFrame:
        frame = csvfile.read_csv(path, strings=True)
        columns = {"audio_column": [self.data.audio_column]} | ({"text_column": [self.data.text_column]} if need_text else {})
        csvfile.check_columns(frame, columns, path)
        return frame

    def _utterances(self, path: str, frame: pd.DataFrame, copies: tuple[str, ...] = ()) -> Utterances:
        root = Path(path).parent
        files = [root / p for p in frame[self.data.audio_column]]
        where = [f"{path}: row {csvfile.csv_row(int(i))}" for i in frame.index]  # the manifest's own rows
        features = cached_extract(files, self.settings, self.data.max_duration, where, self.cache_dir)
        kept = {
            copy: cached_extract(files, self.settings, self.data.max_duration, where, self.cache_dir, copy) for copy in copies
        }
        for copy, made in list(kept.items()):
            if not np.array_equal(made.rows, features.rows):  # a band-limited clip came out silent: rare
                print(f"Warning: {path}: training.{copy} is off (a {copy} copy of a clip is silent)", file=sys.stderr)
                del kept[copy]
        texts = frame[self.data.text_column].iloc[features.rows].tolist()
        return Utterances(features, [t.lower() if self.data.lowercase else t for t in texts], path, kept)

    def load_training_data(self) -> None:
        frames = splits.file_parts(self.data, self._read_manifest, self.config.seed, self.data.group_column)
        if "val" not in frames or len(frames.get("train", ("", []))[1]) < 2:
            raise SeqtoolError(f"{self.data.path or self.data.train}: too few clips for a training and a validation part")
        training = self.config.training
        copies = tuple(c for c, share in (("narrowband", training.narrowband), ("speed", training.speed_perturb)) if share > 0)
        self.splits = {
            split: self._utterances(path, frame, copies if split == "train" else ()) for split, (path, frame) in frames.items()
        }
        train = self.splits["train"]
        unalignable = self._unalignable(train)  # refused before anything is said of the data
        if self.characters is None:
            self.characters = sorted({c for text in train.texts for c in text})
            self.most_common = Counter(train.texts).most_common(1)[0][0]
            print(f"Vocabulary: {len(self.characters)} characters from the training transcripts", file=sys.stderr)
        skipped = {reason: len(rows) for split in self.splits.values() for reason, rows in split.features.skipped.items()}
        for reason, count in skipped.items():
            print(f"Warning: {count} clip(s) skipped: {reason}", file=sys.stderr)
        self.report = unalignable | self._unknown_characters()

    def _unalignable(self, train: Utterances) -> dict[str, int]:
        """Training clips (and training copies) too short for their transcript: counted, and
        refused beyond `training.max_unalignable` of them."""
        needed = np.array([ctc_steps_needed(text) for text in train.texts])
        stack, counts = self.config.model.frame_stack, {}
        for name, features in {"": train.features, **train.copies}.items():
            steps = (features.lengths() + stack - 1) // stack
            short = np.flatnonzero(steps < needed)
            key = f"{name}_copies_unalignable" if name else "clips_unalignable"
            counts[key] = len(short)
            if len(short) > self.config.training.max_unalignable * len(needed):
                first = int(short[0])
                raise SeqtoolError(
                    f"{train.source}: {len(short)} of {len(needed)} training {'clips' if not name else name + ' copies'} are "
                    f"too short for their transcript (manifest row {int(train.features.rows[first]) + 2}: "
                    f"{int(steps[first])} output steps for {needed[first]} characters); lower model.frame_stack, "
                    "or raise training.max_unalignable"
                )
        return counts

    def _unknown_characters(self) -> dict[str, int]:
        """Characters of the validation and test transcripts the training ones never had: the
        model cannot write them (they are dropped from the loss's targets, and count as errors)."""
        known = set(self.characters)
        return {
            f"{split}_unknown_characters": sum(c not in known for text in part.texts for c in text)
            for split, part in self.splits.items()
            if split != "train"
        }

    def data_report(self) -> dict[str, int]:
        return dict(getattr(self, "report", {}))

    def artifacts(self) -> dict[str, Any]:
        return {"characters": self.characters, "most_common": self.most_common}

    # ---- training --------------------------------------------------------------------------------

    def build_model(self) -> SpeechNetwork:
        return SpeechNetwork(self.config.model, self.data.n_mels, len(self.characters))

    def sample_count(self) -> int:
        return len(self.splits["train"].texts)

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        super().start_epoch(epoch)

    def epoch_order(self, epoch: int) -> np.ndarray:
        return self.length_bucketed_order(epoch, self.splits["train"].features.lengths())

    def _batch(
        self, utterances: Utterances, rows: np.ndarray, device: torch.device, copies: list[str] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded features of `rows`; where `copies` names one, of the clip's training copy."""
        copies = copies or [""] * len(rows)
        sources = [utterances.copies.get(c, utterances.features) for c in copies]
        clips = [source.utterance(int(r)) for r, source in zip(rows, sources, strict=True)]
        return _padded(clips, self.data.n_mels, device)

    def _copy_for(self, seed: int) -> str:
        """Which of a clip's training copies this epoch reads ("" for the clip itself): one draw from
        the clip's seed, so a clip is read alike on any process and in any batch."""
        draw, training = random.Random(seed).random(), self.config.training
        if draw < training.narrowband:
            return "narrowband"
        return "speed" if draw < training.narrowband + training.speed_perturb else ""

    def _targets(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self._index is None:  # built once: this runs every training step
            self._index = {c: i + 1 for i, c in enumerate(self.characters)}  # 0 is the blank
        ids = [[self._index[c] for c in text if c in self._index] for text in texts]
        return torch.tensor([i for seq in ids for i in seq], dtype=torch.long), torch.tensor([len(s) for s in ids])

    def _ctc_sum(self, model: SpeechNetwork, utterances: Utterances, rows: np.ndarray, device: torch.device, augment: bool):
        training = self.config.training
        seeds = [clip_seed(self.config.seed, self.epoch, int(r)) for r in rows]  # per clip and epoch
        copies = [self._copy_for(seed) for seed in seeds] if augment and utterances.copies else None
        features, lengths = self._batch(utterances, rows, device, copies)
        if augment and (training.freq_masks or training.time_masks):
            bands, spans = (training.freq_masks, training.freq_mask_width), (training.time_masks, training.time_mask_width)
            features = spec_augment(features, lengths, bands, spans, seeds)  # on the features' device
        log_probs, out_lengths = model(features, lengths)
        targets, target_lengths = self._targets([utterances.texts[int(r)] for r in rows])
        return torch.nn.functional.ctc_loss(
            log_probs.transpose(0, 1),
            targets.to(device),
            out_lengths,
            target_lengths,
            blank=BLANK,
            reduction="sum",
            zero_infinity=True,  # the clips CTC cannot align: counted at load and bounded (_unalignable)
        )

    def training_loss(self, model: SpeechNetwork, batch_index: int, device: torch.device) -> torch.Tensor:
        """The CTC loss per transcript character over the global batch: this process's sum over all of them."""
        train = self.splits["train"]
        mine, _ = self.batch_rows(batch_index)
        characters = sum(len(train.texts[int(r)]) for r in self.global_rows(batch_index))
        return self._ctc_sum(model, train, mine, device, augment=True) / max(1, characters) * self.cluster.world_size

    # ---- evaluation ------------------------------------------------------------------------------

    def transcribe(self, model: SpeechNetwork, features: list[np.ndarray], beam: int | None) -> list[str]:
        """Each clip's transcript, in batches of similar length: greedy, or prefix beam search."""
        device = next(model.parameters()).device
        order, out = np.argsort([len(f) for f in features], kind="stable"), [""] * len(features)
        for start in range(0, len(order), EVAL_BATCH):
            rows = order[start : start + EVAL_BATCH]
            log_probs, out_lengths = model(*_padded([features[r] for r in rows], self.data.n_mels, device))
            if beam is None:
                ids = greedy_decode(log_probs, out_lengths)
            else:
                ids = [prefix_beam_search(log_probs[k, : out_lengths[k]].cpu(), beam) for k in range(len(rows))]
            for r, seq in zip(rows, ids, strict=True):
                out[r] = "".join(self.characters[i - 1] for i in seq)
        return out

    def _eval_split(self, split: str, data_path: str | None) -> Utterances:
        if data_path:
            return self._utterances(data_path, self._read_manifest(data_path))
        if not self.splits:
            self.load_training_data()
        if split not in self.splits:
            raise SeqtoolError(f"no {split} split in this run's data (set data.test_fraction or data.test, or pass --data FILE)")
        return self.splits[split]

    def evaluate(self, model: SpeechNetwork, split: str, device: torch.device, data_path: str | None = None) -> dict[str, float]:
        jiwer = _jiwer()
        utterances = self._eval_split(split, data_path)
        rows = np.arange(len(utterances.texts))
        loss = sum(
            float(self._ctc_sum(model, utterances, rows[i : i + EVAL_BATCH], device, augment=False))
            for i in range(0, len(rows), EVAL_BATCH)
        )
        start = time.perf_counter()
        clips = [utterances.features.utterance(int(r)) for r in rows]
        hypotheses = self.transcribe(model, clips, self.evaluation_options.get("beam_size"))
        seconds = time.perf_counter() - start
        references = utterances.texts
        baseline = [self.most_common] * len(references)
        return {
            "loss": loss / max(1, sum(len(t) for t in references)),
            "cer": jiwer.cer(references, hypotheses),
            "wer": jiwer.wer(references, hypotheses),
            "baseline_cer": jiwer.cer(references, baseline),
            "baseline_wer": jiwer.wer(references, baseline),
            "real_time_factor": seconds / max(1e-9, float(utterances.features.seconds.sum())),
            "clips": len(rows),
            "skipped_clips": sum(len(r) for r in utterances.features.skipped.values()),
        }

    def shown_apart(self, metric: str) -> bool:
        return super().shown_apart(metric) or metric == "skipped_clips"

    def evaluation_notes(self, metrics: dict[str, float]) -> list[Any]:
        notes = (
            [f"Inference {1 / metrics['real_time_factor']:.0f}x faster than real time."]
            if metrics.get("real_time_factor")
            else []
        )
        if metrics.get("skipped_clips"):
            notes.append(f"{metrics['skipped_clips']:,} clips skipped (empty, silent or longer than data.max_duration).")
        return notes

    # ---- predict -----------------------------------------------------------------------------------

    def _inputs(self, options: dict[str, Any]) -> list[Path]:
        given = [Path(p) for p in options.get("paths") or []]
        data = options.get("data")
        if data is not None:
            data = Path(data)
            if data.is_dir():
                given += sorted(p for p in data.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            else:
                frame = self._read_manifest(str(data), need_text=False)
                given += [data.parent / p for p in frame[self.data.audio_column]]
        if not given:
            if sys.stdin.isatty():
                raise SeqtoolError(
                    "give clips: seqtool predict RUN clip.wav ..., --data manifest.csv or FOLDER, or paths on stdin"
                )
            given = [Path(line.strip()) for line in sys.stdin if line.strip()]
        return given

    def predict(self, model: SpeechNetwork, options: dict[str, Any], out: TextIO) -> None:
        """`path<TAB>transcript` per clip, in input order; a clip that cannot be read gets an
        Error line on stderr and the rest are still transcribed (the exit code says one failed)."""
        rows, failed = [], 0
        for path in self._inputs(options):
            try:
                features = log_mel(read_audio(path, self.settings.sample_rate), self.settings)
            except SeqtoolError as exc:
                print(f"Error: {exc}", file=sys.stderr)
                failed += 1
                continue
            text = self.transcribe(model, [features], options.get("beam_size"))[0]
            rows.append((str(path), text))
            if options.get("output") is None:
                out.write(f"{path}\t{text}\n")
                out.flush()
        if options.get("output") is not None:
            atomic_write_text(options["output"], pd.DataFrame(rows, columns=["path", "transcript"]).to_csv(index=False))
        if failed:
            raise SeqtoolError(f"{failed} clip(s) could not be transcribed (named above); the others were")

    def predict_api(self, model: SpeechNetwork, data: Any, options: dict[str, Any]) -> Any:
        """`predict(["clip.wav", ...], beam_size=...)`: the transcripts."""
        unknown = sorted(set(options) - {"beam_size"})
        if unknown:
            raise SeqtoolError(f"predict() options {unknown} do not apply to a speech model (it takes beam_size)")
        paths = [Path(p) for p in (data if isinstance(data, (list, tuple)) else [data])]
        features = [log_mel(read_audio(p, self.settings.sample_rate), self.settings) for p in paths]
        return self.transcribe(model, features, options.get("beam_size"))

    def serve_spec(self) -> ServeSpec:
        from seqtool.tasks.speech.serve import spec

        return spec(self)

    # ---- export ----------------------------------------------------------------------------------

    def export_signature(self, model: SpeechNetwork, generator: torch.Generator) -> Signature:
        return export_parts.signature(model, self.data.n_mels, generator)

    def export_metadata(self) -> dict[str, Any]:
        return export_parts.metadata(self.settings, self.characters, self.data.lowercase, self.config.model.frame_stack)

    # ---- init and the conformance kit --------------------------------------------------------------

    @classmethod
    def starter(cls, path: Path, frame: Any | None) -> Starter:
        if frame is None:
            raise Unsuitable(f"{path} is not a CSV; speech reads a manifest of audio files and transcripts")
        audio = [c for c in frame.columns if frame[c].astype(str).str.lower().str.endswith(AUDIO_SUFFIXES).mean() > 0.9]
        if not audio:
            raise Unsuitable(f"{path}: no column of audio file names ({', '.join(AUDIO_SUFFIXES)})")
        texts = [c for c in frame.columns if c not in audio and sniff.is_strings(frame[c])]
        if not texts:
            raise Unsuitable(f"{path}: no transcript column beside '{audio[0]}'")
        text = texts[0]
        group = next((c for c in frame.columns if c.lower() in ("voice", "speaker", "speaker_id")), None)
        reasons = [f"column '{audio[0]}' lists audio files, '{text}' their transcripts ({len(frame):,} clips)"]
        if group:
            reasons.append(f"column '{group}': validation and test hold out whole {group}s")
        body = f"""# Starter config written by `seqtool init {path}`; edit freely. Reference: docs/config.md
task: speech
seed: 1
data:
  path: {path}
  audio_column: {audio[0]}
  text_column: {text}
{f"  group_column: {group}        # whole {group}s held out" + chr(10) if group else ""}  max_duration: 20.0
model:
  type: lstm
  hidden_size: 192
  num_layers: 2
  bidirectional: true
  frame_stack: 3
  dropout: 0.2
training:
  batch_size: 16
  epochs: null
  max_time: 10m
  lr: 2e-3
  eval_every: 200
  freq_masks: 2
  time_masks: 2
"""
        return Starter(3, body, reasons)

    @classmethod
    def example(cls, folder: Path) -> Example:
        """Tone sequences: each letter of a/b/c a pitch, 1-3 letters per clip, 40 clips."""
        import soundfile

        rng = np.random.default_rng(0)
        pitches = {"a": 400.0, "b": 900.0, "c": 1700.0}
        rows = []
        for i in range(40):
            text = "".join(rng.choice(list(pitches), rng.integers(1, 4)))
            t = np.arange(1600) / 16000
            wave = np.concatenate([np.r_[0.5 * np.sin(2 * np.pi * pitches[c] * t), np.zeros(400)] for c in text])
            soundfile.write(folder / f"clip{i}.wav", wave.astype(np.float32), 16000)
            rows.append({"path": f"clip{i}.wav", "text": text})
        pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
        pd.DataFrame(rows[:3]).to_csv(folder / "new.csv", index=False)
        (folder / "noise.wav").write_text("not audio")
        broken = pd.DataFrame(rows[:-1] + [{"path": "noise.wav", "text": "a"}])
        config = {
            "task": cls.name,
            "seed": 2,
            "data": {"path": str(folder / "manifest.csv"), "n_mels": 16, "val_fraction": 0.2},
            "model": {"hidden_size": 16, "num_layers": 1, "frame_stack": 2, "dropout": 0.1},
            "training": {"batch_size": 8, "lr": 0.01, "time_masks": 1, "time_mask_width": 4}
            | {"narrowband": 0.3, "speed_perturb": 0.3},
        }
        bad = (
            BadInput(
                "missing column", "column 'transcript' (data.text_column) not found", overrides=("data.text_column=transcript",)
            ),
            BadInput("not an audio file", "row 41: ", files={"manifest.csv": broken.to_csv(index=False)}),
            BadInput("empty manifest", "empty", files={"manifest.csv": ""}),
        )
        serve = {"audio": base64.b64encode((folder / "clip0.wav").read_bytes()).decode("ascii")}
        clips = f"{folder / 'clip0.wav'}\n{folder / 'clip1.wav'}\n"
        return Example(config, ("--data", str(folder / "new.csv")), clips, bad, serve)


def _padded(clips: list[np.ndarray], bands: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of frames as one zero-padded batch (clips, longest, bands), and their lengths."""
    lengths = np.array([len(c) for c in clips], dtype=np.int64)
    padded = np.zeros((len(clips), int(lengths.max()), bands), dtype=np.float32)
    for k, clip in enumerate(clips):
        padded[k, : lengths[k]] = clip
    return to_device(torch.from_numpy(padded), device), torch.from_numpy(lengths)


def _jiwer():
    try:
        import jiwer
    except ImportError:
        raise SeqtoolError("speech evaluation needs jiwer, not installed: pip install 'seqtool[speech]'") from None
    return jiwer
