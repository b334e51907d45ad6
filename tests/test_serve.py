"""`seqtool serve`: a real uvicorn server on a free localhost port, spoken to with httpx. Each
kind's /predict answers what its Python API answers; bad requests get 422 naming the field, big
ones 413, a failure 500 (and the server goes on); a burst is batched, or refused with 503 once
the queue is full; an API key guards everything but /health; /generate streams the same text
that /predict returns."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'seqtool[serve]')")
pytest.importorskip("httpx")

import httpx
import uvicorn

import seqtool
from seqtool import tasks
from seqtool.serve import ServeSettings, build_app
from seqtool.testing import trained_copy


@contextmanager
def served(run: Path, **settings):
    """The run's app under uvicorn in a thread, on a free port: yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = build_app(ServeSettings(str(run), **settings))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _preparable(kind: str) -> bool:
    """Whether the kind's example can be written here (speech's needs its extra to write clips)."""
    return kind != "speech" or importlib.util.find_spec("soundfile") is not None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A trained run of each kind that serves (as the registry says), the kit's (trained once)."""
    folder = tmp_path_factory.mktemp("serve")
    servable = [kind for kind in tasks.names() if tasks.task_class(kind).serves() and _preparable(kind)]
    trained = {kind: trained_copy(kind, folder / kind) for kind in servable}
    return {kind: (run, job.config_path.parent) for kind, (job, run) in trained.items()}  # the run, its data folder


TEXTS = ["a truly wonderful film", "dull and far too long", "wonderful", "the plot was awful but the acting was fine"]


def test_classify_answers_as_the_python_api_and_refuses_bad_requests(runs):
    run, _ = runs["classify"]
    expected = seqtool.load(run).predict(TEXTS)
    with served(run, max_request_bytes=2000) as url, httpx.Client(base_url=url) as client:
        assert client.get("/health").json()["status"] == "ok"
        meta = client.get("/metadata").json()
        assert meta["task"] == "classify" and "texts" in meta["request"]["properties"] and meta["batched"]
        assert meta["versions"]["seqtool"] == seqtool.__version__
        answer = client.post("/predict", json={"texts": TEXTS})
        assert answer.status_code == 200
        got = [(p["label"], p["probability"]) for p in answer.json()["predictions"]]
        assert [label for label, _ in got] == [label for label, _ in expected]
        assert [p for _, p in got] == pytest.approx([p for _, p in expected], abs=1e-6)
        for p in answer.json()["predictions"]:
            assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        missing = client.post("/predict", json={"text": TEXTS})
        assert missing.status_code == 422 and missing.json()["detail"].startswith("texts: Field required")
        empty = client.post("/predict", json={"texts": []})
        assert empty.status_code == 422 and empty.json()["detail"].startswith("texts:")
        assert client.post("/predict", json={"texts": ["x" * 3000]}).status_code == 413
        assert client.post("/predict", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
        assert client.get("/docs").status_code == 200  # FastAPI's OpenAPI page


def test_a_failure_is_500_in_one_line_and_the_server_goes_on(runs, monkeypatch):
    from seqtool.tasks.classify import ClassifyTask

    run, _ = runs["classify"]
    with served(run) as url, httpx.Client(base_url=url) as client:
        original = ClassifyTask.probabilities

        def broken(self, *args, **kwargs):
            raise RuntimeError("simulated fault\nsecond line")

        monkeypatch.setattr(ClassifyTask, "probabilities", broken)
        failed = client.post("/predict", json={"texts": TEXTS})
        assert failed.status_code == 500 and failed.json()["detail"] == "internal error: simulated fault"
        monkeypatch.setattr(ClassifyTask, "probabilities", original)
        assert client.post("/predict", json={"texts": TEXTS}).status_code == 200


async def _burst(url: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(client.post("/predict", json=body) for body in bodies))


def test_a_burst_is_batched_and_each_answer_is_its_own(runs):
    run, _ = runs["classify"]
    model = seqtool.load(run)
    bodies = [{"texts": [TEXTS[i % 4]] * (1 + i % 3)} for i in range(32)]
    with served(run) as url:
        answers = asyncio.run(_burst(url, bodies))
        health = httpx.get(f"{url}/health").json()
    for body, answer in zip(bodies, answers, strict=True):
        assert answer.status_code == 200
        assert [p["label"] for p in answer.json()["predictions"]] == [label for label, _ in model.predict(body["texts"])]
    assert health["requests"] == 32 and health["batches"] < 32


def test_a_full_queue_answers_503(runs, monkeypatch):
    from seqtool.tasks.classify import ClassifyTask

    run, _ = runs["classify"]
    original = ClassifyTask.probabilities

    def slow(self, *args, **kwargs):
        time.sleep(0.3)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ClassifyTask, "probabilities", slow)
    with served(run, max_queue=2, max_batch=1) as url:
        codes = sorted(r.status_code for r in asyncio.run(_burst(url, [{"texts": TEXTS}] * 8)))
    # At most the queue's 2 and the one being answered get through; the others are refused at once.
    assert 1 <= codes.count(200) <= 3 and codes.count(503) == 8 - codes.count(200) and set(codes) <= {200, 503}


def test_an_api_key_guards_all_but_health(runs):
    run, _ = runs["classify"]
    with served(run, api_key="s3cret") as url, httpx.Client(base_url=url) as client:
        assert client.get("/health").status_code == 200
        assert client.post("/predict", json={"texts": TEXTS}).status_code == 401
        assert client.get("/metadata", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = client.post("/predict", json={"texts": TEXTS}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_generate_streams_the_text_that_predict_returns(runs):
    run, _ = runs["language_model"]
    request = {"prompt": "ROMEO:", "length": 40, "temperature": 0.8, "seed": 5}
    expected = seqtool.load(run).predict(prompt="ROMEO:", length=40, temperature=0.8, seed=5)
    with served(run) as url, httpx.Client(base_url=url) as client:
        assert client.post("/predict", json=request).json()["text"] == expected
        tokens, events = [], []
        with client.stream("POST", "/generate", json=request) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("data: ") and "token" in line:
                    tokens.append(json.loads(line[6:])["token"])
                elif line.startswith("event: "):
                    events.append(line[7:])
        assert "ROMEO:" + "".join(tokens) == expected and events == ["end"]
        bad = client.post("/generate", json={**request, "temperature": 0})
        assert bad.status_code == 422 and bad.json()["detail"].startswith("temperature:")


def test_forecast_answers_for_the_stored_window_and_for_a_posted_history(runs):
    import pandas as pd

    run, folder = runs["forecast"]
    model = seqtool.load(run)
    history = pd.read_csv(folder / "series.csv")
    with served(run) as url, httpx.Client(base_url=url) as client:
        stored = client.post("/predict", json={}).json()
        assert stored["forecast"] == model.predict().to_dict(orient="records")
        posted = client.post("/predict", json={"history": history.to_dict(orient="records"), "horizon": 5}).json()
        expected = model.predict(data=folder / "series.csv", horizon=5).to_dict(orient="records")
        assert len(posted["forecast"]) == 5 and posted["forecast"] == expected
        broken = client.post("/predict", json={"history": history.drop(columns=["Value"]).to_dict(orient="records")})
        assert broken.status_code == 422 and "Value" in broken.json()["detail"] and ".csv" not in broken.json()["detail"]
        short = client.post("/predict", json={"history": history.head(3).to_dict(orient="records")})
        assert short.status_code == 422 and short.json()["detail"].startswith("history:"), short.json()
        assert ".csv" not in short.json()["detail"]
        bad_cell = history.astype({"Value": object})
        bad_cell.loc[3, "Value"] = "n/a?"
        named = client.post("/predict", json={"history": bad_cell.to_dict(orient="records")}).json()["detail"]
        assert "history[3], column 'Value'" in named and ".csv" not in named, named


def test_seq2seq_and_speech_answer_as_the_python_api(runs):
    run, _ = runs["seq2seq"]
    sources = ["three one four", "one five", "nine"]
    with served(run) as url, httpx.Client(base_url=url) as client:
        assert client.post("/predict", json={"sources": sources}).json()["outputs"] == seqtool.load(run).predict(sources)
        beam = client.post("/predict", json={"sources": sources, "beam_size": 3}).json()["outputs"]
        assert beam == seqtool.load(run).predict(sources, beam_size=3)
    if "speech" not in runs:
        pytest.skip("the speech half needs the speech extra (soundfile, scipy, jiwer)")
    run, folder = runs["speech"]
    clips = [folder / f"clip{i}.wav" for i in range(2)]
    with served(run) as url, httpx.Client(base_url=url) as client:
        got = [client.post("/predict", json={"audio": base64.b64encode(c.read_bytes()).decode()}).json() for c in clips]
        assert [g["transcript"] for g in got] == seqtool.load(run).predict([str(c) for c in clips])
        noise = client.post("/predict", json={"audio": base64.b64encode(b"not audio at all").decode()})
        assert noise.status_code == 422 and noise.json()["detail"].startswith("audio: not a readable audio file")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_the_command_serves_and_warns_when_bound_beyond_localhost(runs, run_cli):
    run, _ = runs["classify"]
    port = _free_port()
    command = [sys.executable, "-m", "seqtool", "serve", str(run), "--host", "0.0.0.0", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "seqtool serve did not come up"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert httpx.post(f"http://127.0.0.1:{port}/predict", json={"texts": TEXTS}).status_code == 200
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert "no authentication" in err.splitlines()[0]


def test_a_missing_extra_is_one_line_naming_the_install(runs, run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed: importing it fails
    run_cli("serve", runs["classify"][0]).clean_error("uvicorn", "pip install 'seqtool[serve]'")


def test_generations_are_admitted_as_predictions_are_and_never_hold_them_up(runs, monkeypatch):
    """/generate counts against --max-queue (503 when full, for both endpoints), and a long
    generation advances in chunks with the predictions queued meanwhile answered between them,
    not after its last token."""
    import seqtool.tasks.language_model.serve as lm_serve

    real = lm_serve._pieces

    def slow(*args):  # 2 ms a token: a generation of 2,000 tokens takes 4 s, whatever the machine
        for piece in real(*args):
            time.sleep(0.002)
            yield piece

    monkeypatch.setattr(lm_serve, "_pieces", slow)
    run, _ = runs["language_model"]
    long = {"prompt": "ROMEO:", "length": 2_000, "seed": 1}
    short = {"prompt": "ROMEO:", "length": 5, "seed": 2}
    with served(run, max_queue=1) as url, httpx.Client(base_url=url, timeout=60) as client:
        with client.stream("POST", "/generate", json=long) as stream:
            next(line for line in stream.iter_lines() if line.startswith("data: "))  # under way, holding the one place
            assert client.post("/generate", json=short).status_code == 503
            assert client.post("/predict", json=short).status_code == 503
    finished: dict[str, float] = {}
    with served(run, max_queue=4) as url, httpx.Client(base_url=url, timeout=120) as client:

        def generate() -> None:
            with httpx.Client(base_url=url, timeout=120) as own, own.stream("POST", "/generate", json=long) as stream:
                events = [line for line in stream.iter_lines() if line.startswith("event: ")]
            finished["generation"] = time.monotonic()
            finished["events"] = events

        generating = threading.Thread(target=generate)
        generating.start()
        time.sleep(0.3)  # the generation is under way
        assert client.post("/predict", json=short).status_code == 200
        finished["prediction"] = time.monotonic()
        generating.join(120)
    assert finished["events"] == ["event: end"]
    assert finished["prediction"] < finished["generation"], "the prediction waited for the whole generation"
