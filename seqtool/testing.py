"""The conformance kit: checks every task kind must pass, built-in or plug-in.

In the spirit of scikit-learn's `check_estimator`: each check takes a kind's name and an empty
folder, runs the kind's own small job (`Task.example`) through the real command line, and raises
AssertionError saying what broke. A kind inherits the whole reliability suite by passing them:

    from seqtool.testing import parametrize_with_checks

    @parametrize_with_checks(["truecase"])
    def test_conformance(kind, check, tmp_path):
        check(kind, tmp_path)

or, without pytest: `python -m seqtool.testing truecase`. The SIGKILL and two-process checks
start processes (several seconds each) and are marked `slow`; `SEQTOOL_KILL_TRIALS` sets the
kills per kind (default 2: one soon after the first checkpoint, one at a random moment).
`SEQTOOL_KIT_CELL=mingru` (or `--cell mingru`) runs every check with that recurrent cell in place
of the example's own.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The budget every check trains with: short, evaluating (and checkpointing) every 2 steps.
BUDGET = {"epochs": None, "max_steps": 8, "max_time": None, "eval_every": 2, "log_every": 1, "device": "cpu"}
CELL_VARIABLE = "SEQTOOL_KIT_CELL"  # the recurrent cell every check trains with; unset: the example's own
DEFAULT_KILL_TRIALS = 2  # SIGKILL trials per kind; SEQTOOL_KILL_TRIALS=N, read when the check runs, for more (or fewer)


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def clean_error(self, *fragments: str) -> None:
        """Exit code 2, one `Error: ...` line on stderr naming every fragment, no traceback."""
        assert self.code == 2, f"expected exit code 2, got {self.code}: {self.err[-500:]}"
        assert "Traceback" not in self.err + self.out, self.err[-2000:]
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), f"not one Error: line: {self.err[-1000:]!r}"
        for fragment in fragments:
            assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"

    def ok(self) -> CliResult:
        assert self.code == 0, f"exit code {self.code}: {self.err[-2000:]}"
        return self


def run_cli(*args: Any, stdin: str | None = None) -> CliResult:
    """`seqtool ARGS` in this process, through the real entry point (exit codes included); with
    `stdin`, that text is what the command reads (else sys.stdin as it is)."""
    from seqtool import cli, report

    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv, sys.stdin
    sys.argv = ["seqtool", *map(str, args)]
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    report.debug["on"] = False
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv, sys.stdin = saved
    return CliResult(code, out.getvalue(), err.getvalue())


# ---- the kind's example job --------------------------------------------------------------------


@dataclass
class Job:
    """A kind's example written into a folder, with the kit's budget: its config file and runs."""

    kind: str
    folder: Path
    config_path: Path
    example: Any  # seqtool.tasks.Example

    def run_dir(self, name: str) -> Path:
        return self.folder / "runs" / name

    def train(self, name: str, *args: Any) -> Path:
        run_cli("train", self.config_path, *args, "--run-dir", self.run_dir(name)).ok()
        return self.run_dir(name)


def prepare(kind: str, folder: Path, model: dict[str, Any] | None = None, **training: Any) -> Job:
    """Write the kind's example into `folder`, with the kit's budget (and `model` and `training`
    overrides)."""
    from seqtool.tasks import task_class

    folder.mkdir(parents=True, exist_ok=True)
    example = task_class(kind).example(folder)
    config = json.loads(json.dumps(example.config))  # a deep copy the kit may change
    config.setdefault("training", {}).update({**BUDGET, **training})
    cell = os.environ.get(CELL_VARIABLE)
    config.setdefault("model", {}).update({"type": cell} if cell else {}, **(model or {}))
    path = folder / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return Job(kind, folder, path, example)


_TRAINED: dict[tuple[str, str | None], tuple[Job, Path]] = {}  # (kind, cell) -> its example trained with the kit's budget


def trained_copy(kind: str, folder: Path) -> tuple[Job, Path]:
    """The kind's example trained with the kit's budget, once per process, and a copy of its run
    in `folder` for a check to read or change; the job's own runs also go under `folder`. The
    example itself (its data and config) stays where it was first written, so the copy's stored
    config still names files that exist."""
    key = (kind, os.environ.get(CELL_VARIABLE))
    if key not in _TRAINED:
        base = Path(tempfile.mkdtemp(prefix=f"seqtool-kit-{kind}-"))
        atexit.register(shutil.rmtree, base, True)
        job = prepare(kind, base / "example")
        _TRAINED[key] = (job, job.train("run"))
    job, run = _TRAINED[key]
    folder.mkdir(parents=True, exist_ok=True)
    mine = dataclasses.replace(job, folder=folder)
    copy = mine.run_dir("run")
    shutil.copytree(run, copy)
    return mine, copy


def outcome(run_dir: Path) -> tuple[dict[str, Any], list[tuple]]:
    """The last checkpoint's weights and the loss curve: what must match between runs."""
    from seqtool.checkpoint import LAST, load_checkpoint
    from seqtool.metrics import MetricsLog

    weights = load_checkpoint(run_dir / LAST)["model"]
    return weights, [(e.step, e.split, e.loss) for e in MetricsLog(run_dir).read()]


def assert_same_outcome(reference: Path, other: Path, what: str) -> None:
    import torch

    weights, curve = outcome(reference)
    other_weights, other_curve = outcome(other)
    assert other_curve == curve, f"{what}: the loss curve differs from the uninterrupted run's"
    assert weights.keys() == other_weights.keys(), f"{what}: different parameters"
    differing = [name for name in weights if not torch.equal(weights[name], other_weights[name])]
    assert not differing, f"{what}: weights differ from the uninterrupted run's: {differing[:3]}"


def _predicts(kind: str) -> bool:
    from seqtool.tasks import task_class

    return task_class(kind).not_predictable is None


# ---- the checks ----------------------------------------------------------------------------------


def check_config_round_trip(kind: str, folder: Path) -> None:
    """The run directory's config.yaml and the checkpoint's stored config are the config trained;
    `runs` lists the run as finished, with the kind's main metric."""
    from seqtool.checkpoint import LAST, load_checkpoint
    from seqtool.configure import config_from_dict, load_config

    job, run = trained_copy(kind, folder)
    given = load_config(job.config_path).to_dict()
    assert load_config(run / "config.yaml").to_dict() == given, "config.yaml differs from the config trained"
    stored = config_from_dict(load_checkpoint(run / LAST)["config"]).to_dict()
    assert stored == given, "the checkpoint's stored config differs from the config trained"
    (listed,) = json.loads(run_cli("runs", run.parent, "--json").ok().out)
    assert listed["task"] == kind and listed["status"] == "finished", listed
    assert listed["steps"] == BUDGET["max_steps"], listed


def check_evaluate_beside_baselines(kind: str, folder: Path) -> None:
    """`evaluate --json` scores the model and every baseline the kind declares, main metric included."""
    from seqtool.tasks import task_class

    cls = task_class(kind)
    run = trained_copy(kind, folder)[1]
    metrics = json.loads(run_cli("evaluate", run, "--json").ok().out)
    assert isinstance(metrics.get("loss"), float), metrics
    missing = folder / "no-such-file.csv"
    refused = run_cli("evaluate", run, "--data", missing)
    refused.clean_error()
    assert str(missing) in refused.err or "--data does not apply" in refused.err, f"the missing file is not named: {refused.err}"
    if cls.main_metric is not None:
        assert cls.main_metric.name in metrics, f"main metric {cls.main_metric.name} missing from {sorted(metrics)}"
    for baseline in cls.baselines:
        assert any(name.startswith(f"{baseline}_") for name in metrics), f"no {baseline}_* metric in {sorted(metrics)}"


def check_resume_is_bit_identical(kind: str, folder: Path) -> None:
    """SIGTERM mid-run (exit 143, state saved), then `--resume`: the same weights and loss curve
    as an uninterrupted run."""
    from seqtool.tasks import task_class

    job, reference = trained_copy(kind, folder)  # the uninterrupted run
    cls, interrupted = task_class(kind), job.run_dir("interrupted")
    original, calls = cls.training_loss, []

    def stopped_at_step_5(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)

    cls.training_loss = stopped_at_step_5
    try:
        result = run_cli("train", job.config_path, "--run-dir", interrupted)
    finally:
        cls.training_loss = original
    assert result.code == 143, f"SIGTERM should stop training with exit 143, got {result.code}: {result.err[-1000:]}"
    job.train("interrupted", "--resume")
    assert_same_outcome(reference, interrupted, "SIGTERM + --resume")


def check_sigkill_then_resume(kind: str, folder: Path) -> None:
    """SIGKILL `seqtool train` at random moments (start-up, mid-step, mid-write, after the end);
    every checkpoint left on disk loads, and `--resume` ends exactly where an uninterrupted run does."""
    from seqtool.checkpoint import load_checkpoint

    trials = int(os.environ.get("SEQTOOL_KILL_TRIALS", DEFAULT_KILL_TRIALS))
    job = prepare(kind, folder, max_steps=24)
    start = time.perf_counter()
    if trials == 1:  # the one kill waits for the first checkpoint: no timing needed, so train here
        reference, duration = job.train("reference"), 30.0
    else:  # kills at random moments are timed by a whole run, process start included
        reference = job.run_dir("reference")
        assert SeqtoolProcess(_train_arguments(job, reference), folder / "reference.err").wait() == 0
        duration = time.perf_counter() - start
    rng = random.Random(f"{kind}-{trials}")
    killed = mid_run = 0
    for trial in range(trials):
        run = job.run_dir(f"trial{trial}")
        process = SeqtoolProcess(_train_arguments(job, run), folder / f"trial{trial}.err")
        if trial % 2:  # anywhere
            time.sleep(rng.uniform(0.3, 1.05) * duration)
        else:  # once training is under way, so that these land mid-run
            deadline = time.perf_counter() + 2 * duration
            while not (run / "last.pt").exists() and process.poll() is None and time.perf_counter() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.05))
        killed += process.poll() is None
        process.kill()
        process.wait()
        for name in ("last.pt", "best.pt"):  # never half a checkpoint
            if (run / name).exists():
                load_checkpoint(run / name)
        mid_run += (run / "last.pt").exists() and not load_checkpoint(run / "last.pt")["train_state"]["finished"]
        resumed = SeqtoolProcess(_train_arguments(job, run, "--resume"), folder / f"resumed{trial}.err")
        code, stderr = resumed.wait(), resumed.stderr()
        assert code == 0 and "Traceback" not in stderr, stderr[-2000:]
        assert_same_outcome(reference, run, f"kill trial {trial}")
        assert not list(run.glob("*.seqtool-tmp")), "temporary files of killed writes are left behind"
    assert killed >= 1 and mid_run >= 1, f"only {killed} kills, {mid_run} mid-run: raise SEQTOOL_KILL_TRIALS"
    print(f"{kind}: {trials} trials, {killed} killed, {mid_run} mid-run, all resumed bit-identical")


def _train_arguments(job: Job, run_dir: Path, *extra: str) -> list[str]:
    return ["train", str(job.config_path), "--run-dir", str(run_dir), *extra]


class SeqtoolProcess:
    """`seqtool ARGUMENTS` in a process of its own, stdout discarded and stderr in a file. Where
    the platform has a fork server it is forked from one that imported seqtool and torch once,
    so a check that starts many short runs pays for the imports once, not per run; elsewhere it
    is a fresh interpreter (`python -m seqtool`). Either way it is a separate process that
    `kill()` stops with SIGKILL, mid-write or not. `start`, a barrier of the fork-server context
    (`multiprocessing.get_context("forkserver").Barrier(n)`), holds it until n processes are
    ready, so that they run at the same instant (a lock race)."""

    def __init__(self, arguments: list[str], stderr_path: Path, start: Any = None):
        import multiprocessing

        self.stderr_path = stderr_path
        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["seqtool.cli", "torch._dynamo"])  # a no-op once the server runs
            self.process: Any = context.Process(target=_seqtool_main, args=(arguments, str(stderr_path), start))
            self.process.start()
        elif start is not None:
            raise unittest.SkipTest("processes started together need a fork server, which this platform lacks")
        else:
            with stderr_path.open("w") as stderr:
                command = [sys.executable, "-m", "seqtool", *arguments]
                self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        if isinstance(self.process, subprocess.Popen):
            return self.process.poll()
        return self.process.exitcode

    def kill(self) -> None:
        self.process.kill()

    def wait(self) -> int:
        if isinstance(self.process, subprocess.Popen):
            return self.process.wait()
        self.process.join()
        return self.process.exitcode

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def _seqtool_main(arguments: list[str], stderr_path: str, start: Any = None) -> None:
    """A forked process's life as `seqtool ARGUMENTS`: the entry point, stderr to a file, once
    `start` (a barrier, if any) lets it go."""
    descriptor = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(descriptor, 2)
    sys.stderr = open(2, "w", closefd=False)
    sys.stdout = open(os.devnull, "w")
    sys.argv = ["seqtool", *arguments]
    from seqtool.cli import main

    if start is not None:
        start.wait()
    main()


def check_checkpoint_round_trip(kind: str, folder: Path) -> None:
    """A checkpoint loaded and saved again evaluates and predicts exactly as the original (metrics
    of speed aside)."""
    from seqtool.checkpoint import BEST, load_checkpoint, save_checkpoint
    from seqtool.tasks import task_class

    job, run = trained_copy(kind, folder)
    copy = folder / "copy.pt"
    save_checkpoint(copy, load_checkpoint(run / BEST))
    for args in (
        (["evaluate", "--json"], ["predict", *job.example.predict_args]) if _predicts(kind) else (["evaluate", "--json"],)
    ):
        first = run_cli(args[0], run / BEST, *args[1:], stdin=job.example.predict_stdin or "").ok()
        second = run_cli(args[0], copy, *args[1:], stdin=job.example.predict_stdin or "").ok()
        if args[0] == "evaluate":  # a metric of speed differs between any two runs
            timing = task_class(kind).timing_metrics
            first_out, second_out = ({k: v for k, v in json.loads(r.out).items() if k not in timing} for r in (first, second))
        else:
            first_out, second_out = first.out, second.out
        assert first_out == second_out, f"{args[0]} differs after a checkpoint round trip"


def check_hostile_checkpoints(kind: str, folder: Path) -> None:
    """A truncated, a bit-flipped and a code-carrying checkpoint are refused with one clean error,
    and the code never runs."""
    from seqtool.checkpoint import BEST

    run = trained_copy(kind, folder)[1]
    data = (run / BEST).read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    marker = folder / "pwned"
    bad = {"truncated": data[: len(data) // 2], "bit-flipped": bytes(flipped), "code-carrying": _code_carrying(data, marker)}
    for name, content in bad.items():
        path = folder / f"{name}.pt"
        path.write_bytes(content)
        for command in ("evaluate", "predict", "export"):
            result = run_cli(command, path)
            assert result.code == 2, f"{command} of a {name} checkpoint: exit {result.code}"
            result.clean_error()
    assert not marker.exists(), "loading a checkpoint executed code from it"


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _code_carrying(real: bytes, marker: Path) -> bytes:
    """A checkpoint with a valid header and checksum whose payload pickles a call to os.system."""
    import torch

    from seqtool.checkpoint import MAGIC

    buffer = io.BytesIO()
    torch.save({"config": {}, "model": {}, "evil": _RunsCode(marker)}, buffer, pickle_protocol=2)
    body = buffer.getvalue()
    header = json.loads(real[len(MAGIC) : real.index(b"\n", len(MAGIC))])
    header.update(sha256=hashlib.sha256(body).hexdigest(), payload_bytes=len(body))
    return MAGIC + json.dumps(header).encode() + b"\n" + body


def check_bad_inputs(kind: str, folder: Path) -> None:
    """Each of the kind's bad inputs, and a misspelt key, a bad value and a key of another kind,
    ends in one `Error:` line with exit 2 and leaves an existing run exactly as it was."""
    job, run = trained_copy(kind, folder / "good")
    before = _snapshot(run)
    for n, bad in enumerate([*job.example.bad_inputs, *_generic_bad_inputs(kind)]):
        broken = prepare(kind, folder / f"bad{n}")
        for name, content in bad.files.items():
            (broken.folder / name).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        result = run_cli("train", broken.config_path, *bad.overrides, "--run-dir", run, "--force")
        try:
            result.clean_error(bad.message)
        except AssertionError as exc:
            raise AssertionError(f"bad input {bad.what!r}: {exc}") from None
        assert _snapshot(run) == before, f"bad input {bad.what!r} changed the existing run {run}"


def _generic_bad_inputs(kind: str) -> list[Any]:
    import dataclasses as dc

    from seqtool.tasks import BadInput, names, task_class

    bad = [
        BadInput("misspelt key", "did you mean 'model.hidden_size'", overrides=("model.hiden_size=8",)),
        BadInput("text for a number", "must be a number", overrides=("training.lr=fast",)),
    ]
    own = {
        f"{s}.{f.name}"
        for s, c in (("model", task_class(kind).model_schema), ("training", task_class(kind).training_schema))
        for f in dc.fields(c)
    }
    for other in names():
        cls = task_class(other)
        foreign = [f"training.{f.name}" for f in dc.fields(cls.training_schema) if f"training.{f.name}" not in own]
        if other != kind and foreign:
            bad.append(BadInput("a key of another kind", "applies to task", overrides=(f"{foreign[0]}=1",)))
            break
    return bad


def _snapshot(run: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.iterdir()) if p.is_file()}


def check_cli_predict(kind: str, folder: Path) -> None:
    """`seqtool predict RUN ...` answers (or, for a kind that declares it, refuses cleanly); an
    option no kind has is a clean error."""
    from seqtool.tasks import task_class

    job, run = trained_copy(kind, folder)
    if not _predicts(kind):
        run_cli("predict", run).clean_error("predict does not apply", task_class(kind).not_predictable)
        return
    result = run_cli("predict", run, *job.example.predict_args, stdin=job.example.predict_stdin or "").ok()
    assert result.out.strip(), "predict wrote nothing"
    if job.example.predict_stdin is not None:  # lines in, as many lines out
        piped = run_cli("predict", run, stdin=job.example.predict_stdin).ok()
        lines = job.example.predict_stdin.splitlines()
        assert len(piped.out.splitlines()) == len(lines), f"{len(lines)} lines in, output {piped.out!r}"
    run_cli("predict", run, "--no-such-option", "1").clean_error("--no-such-option")


def job_cell(run: Path) -> str:
    """The recurrent cell a run trained (its config.yaml's model.type)."""
    return yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["model"]["type"]


def check_export(kind: str, folder: Path) -> None:
    """`seqtool export` writes a file its runtime reproduces (TorchScript, and ONNX when
    onnxruntime is installed), or the kind's declared refusal is a clean error."""
    import importlib.util

    from seqtool.cells import registry
    from seqtool.tasks import task_class

    cls = task_class(kind)
    run = trained_copy(kind, folder)[1]
    if not cls.exports():
        run_cli("export", run).clean_error("export does not apply", cls.not_exportable)
        return
    cell = registry.cell(job_cell(run))
    formats = ["torchscript"] + (["onnx"] if importlib.util.find_spec("onnxruntime") and cell.onnx else [])
    if not cell.onnx:
        run_cli("export", run, "--format", "onnx", "--output", folder / "model.onnx").clean_error(f"model.type={cell.name}")
    for fmt in formats:
        output = folder / f"model.{fmt}"
        run_cli("export", run, "--format", fmt, "--output", output).ok()
        metadata = json.loads((folder / f"model.{fmt}.json").read_text())
        assert metadata["task"] == kind and metadata["check"]["max_abs_diff"] <= metadata["check"]["tolerance"]


def check_serve(kind: str, folder: Path) -> None:
    """`seqtool serve`'s app (with the serve extra): /health, /metadata naming the kind, the
    example's `POST /predict` answered in the kind's response schema, the same answer twice, and a
    body that is not a JSON object refused with 422; or, for a kind that does not serve, the
    refusal as one clean error."""
    import importlib.util

    from seqtool.serve import ServeSettings, build_app
    from seqtool.tasks import task_class

    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("httpx") is None:
        raise unittest.SkipTest("the serve extra (fastapi) and httpx are not installed")
    from fastapi.testclient import TestClient

    job, run = trained_copy(kind, folder)
    if not task_class(kind).serves():
        run_cli("serve", run, "--port", "0").clean_error("serve does not apply")
        return
    assert job.example.serve_request is not None, f"{kind} serves, but its example() gives no serve_request"
    with TestClient(build_app(ServeSettings(str(run)))) as client:
        assert client.get("/health").json()["status"] == "ok"
        metadata = client.get("/metadata").json()
        assert metadata["task"] == kind, metadata["task"]
        first = client.post("/predict", json=job.example.serve_request)
        assert first.status_code == 200, first.text
        assert client.post("/predict", json=job.example.serve_request).json() == first.json(), "two answers to one request"
        refused = client.post("/predict", json=[])
        assert refused.status_code == 422 and refused.json()["detail"].startswith("body"), refused.text
        assert client.get("/health").json()["requests"] == 2


def check_two_processes_equal_one(kind: str, folder: Path) -> None:
    """torchrun with 2 CPU processes (gloo) trains what one process trains with the same global batch."""
    import torch

    from seqtool.cells import registry
    from seqtool.metrics import TRAIN, MetricsLog, of_split

    if not torch.distributed.is_available():  # a torch build without it (some macOS wheels): say so, never pass
        raise unittest.SkipTest("this torch build has no torch.distributed: two processes cannot be checked")
    job = prepare(kind, folder, model={"dropout": 0.0}, max_steps=6)  # each process draws its own dropout masks
    single = job.train("single")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "seqtool"]
    ddp = job.run_dir("ddp")
    result = subprocess.run(
        [*command, "train", str(job.config_path), "--run-dir", str(ddp)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Training ") == 1, "every process printed: only the first should"
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir()), "the processes wrote other files"
    first, second = outcome(single)[0], outcome(ddp)[0]
    # Half a batch per process rounds differently in float32 than the whole batch, and Adam
    # divides tiny gradients (saturated gates) by their own tiny scale, so the rounding can reach
    # 1e-5 in a few weights of the log-space and exponential cells; a wrong split of the batch
    # would differ by the learning rate itself.
    tolerance = 1e-5 if registry.cell(job_cell(single)).fused else 1e-4
    for name in first:
        torch.testing.assert_close(second[name], first[name], atol=tolerance, rtol=0, msg=name)
    losses = [[e.loss for e in of_split(MetricsLog(run).read(), TRAIN)] for run in (single, ddp)]
    assert len(losses[0]) == len(losses[1]) and all(abs(a - b) <= 1e-5 * max(1.0, abs(a)) for a, b in zip(*losses, strict=True))


@dataclass(frozen=True)
class Check:
    function: Callable[[str, Path], None]
    slow: bool = False

    @property
    def name(self) -> str:
        return self.function.__name__.removeprefix("check_")

    def __call__(self, kind: str, folder: Path) -> None:
        self.function(kind, folder)


CHECKS = (
    Check(check_config_round_trip),
    Check(check_evaluate_beside_baselines),
    Check(check_resume_is_bit_identical),
    Check(check_checkpoint_round_trip),
    Check(check_hostile_checkpoints),
    Check(check_bad_inputs),
    Check(check_cli_predict),
    Check(check_export),
    Check(check_serve),
    Check(check_sigkill_then_resume, slow=True),
    Check(check_two_processes_equal_one, slow=True),
)


def parametrize_with_checks(kinds: list[str]) -> Any:
    """A pytest parametrisation over (kind, check), the slow checks marked `slow`."""
    import pytest

    cases = [
        pytest.param(kind, check, id=f"{kind}-{check.name}", marks=[pytest.mark.slow] if check.slow else [])
        for kind in kinds
        for check in CHECKS
    ]
    return pytest.mark.parametrize(("kind", "check"), cases)


def main(argv: list[str] | None = None) -> int:
    """`python -m seqtool.testing KIND... [--fast] [--cell CELL]`: run the checks, print one line per check.
    A usage error is one line on stderr and exit status 2."""
    from seqtool.cells import registry

    args = list(sys.argv[1:] if argv is None else argv)
    if "--cell" in args:
        at = args.index("--cell")
        if at + 1 == len(args) or args[at + 1].startswith("-"):
            print("--cell needs a cell's name (seqtool cells lists them)", file=sys.stderr)
            return 2
        if args[at + 1] not in registry.names():
            print(f"--cell {registry.unknown_cell_message(args[at + 1])}", file=sys.stderr)
            return 2
        os.environ[CELL_VARIABLE] = args[at + 1]
        del args[at : at + 2]
    kinds, fast = [a for a in args if not a.startswith("-")], "--fast" in args
    if not kinds:
        print(
            "usage: python -m seqtool.testing KIND... [--fast] [--cell CELL]  (--fast skips the SIGKILL and torchrun "
            "checks; --cell trains every check with that recurrent cell)",
            file=sys.stderr,
        )
        return 2
    failed = 0
    for kind in kinds:
        for check in CHECKS:
            if fast and check.slow:
                continue
            with tempfile.TemporaryDirectory() as folder:
                try:
                    check(kind, Path(folder))
                    print(f"ok    {kind}  {check.name}")
                except unittest.SkipTest as exc:
                    print(f"skip  {kind}  {check.name}: {exc}")
                except Exception as exc:  # every failure is reported, and the others still run
                    failed += 1
                    print(f"FAIL  {kind}  {check.name}: {type(exc).__name__}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
