"""`seqtool serve`: a trained model behind HTTP, with FastAPI and uvicorn.

The model loads once, when the app is built. Endpoints: `GET /health`, `GET /metadata`, `POST
/predict` (request and response schemas from the task kind's `serve_spec`), and, for kinds that
generate, `POST /generate` as server-sent events; FastAPI adds the OpenAPI page at `/docs`.

- Inference runs on one thread, fed by a bounded queue: a burst waits its turn (and gets 503 once
  the queue is full) instead of running many forward passes at once and exhausting memory.
  Requests of a kind that batches are answered together: whatever queued while the previous batch
  ran goes into the next (no waiting for a batch to fill, so one client sees no added latency).
- Generations count against the same bound and share the thread, a chunk of tokens at a time, so
  a long generation never holds the predictions queued behind it for its whole length.
- A malformed request gets 422 naming the field; one over the size limit 413; a wrong or missing
  API key 401; an internal error 500 with one line, logged, and the server goes on.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, the kind's
# request models, as objects.
import asyncio
import itertools
import json
import logging
import os
import platform
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import seqtool
from seqtool.errors import SeqtoolError, first_line

INSTALL_HINT = "pip install 'seqtool[serve]'"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
SETTINGS_VARIABLE = "SEQTOOL_SERVE_SETTINGS"  # how `seqtool serve` hands settings to uvicorn's workers
OPEN_PATHS = ("/health", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc")
log = logging.getLogger("seqtool.serve")


@dataclass
class ServeSettings:
    run: str
    api_key: str | None = None
    max_request_bytes: int = 4 * 1024 * 1024
    max_batch: int = 64  # requests answered by one call of the kind's predict
    max_queue: int = 256  # requests waiting beyond this get 503
    threads: int | None = None  # torch threads of this worker


def require_serving() -> None:
    import importlib

    missing = []
    for name in ("fastapi", "uvicorn"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise SeqtoolError(f"seqtool serve needs {' and '.join(missing)}, not installed: {INSTALL_HINT}")


class Busy(Exception):
    """The inference queue is full."""


GENERATION_CHUNK = 16  # tokens a generation advances before queued predictions get their turn


@dataclass
class Generation:
    """A `POST /generate` in progress: its request, the pieces ready for the client, and the
    kind's iterator of pieces (made on the inference thread, which reads the prompt)."""

    request: Any
    pieces: asyncio.Queue = field(default_factory=asyncio.Queue)
    stop: threading.Event = field(default_factory=threading.Event)
    iterator: Iterator[str] | None = None


class Inference:
    """One inference thread and the bounded queue in front of it, batching where the kind allows.

    Generations share the queue's bound (a full server answers 503 to both endpoints) and the
    thread: each advances `GENERATION_CHUNK` tokens at a time, and the predictions queued
    meanwhile are answered between chunks, so a long generation never holds them for its length."""

    def __init__(self, spec: Any, model: Any, settings: ServeSettings):
        self.spec, self.model, self.settings = spec, model, settings
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqtool-inference")
        self.queue: asyncio.Queue | None = None
        self.generations: list[Generation] = []
        self.work = asyncio.Event()  # set when a generation arrives (predictions arrive through the queue)
        self.requests = self.batches = 0

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.work = asyncio.Event()
        self.worker = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        self.worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _admit(self) -> None:
        """Room for one more request, queued or generating, within --max-queue; else Busy (503)."""
        if self.queue.qsize() + len(self.generations) >= self.settings.max_queue:
            raise Busy

    async def answer(self, request: Any) -> Any:
        self._admit()
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((request, future))
        return await future

    async def _serve(self) -> None:
        """Answer the queued predictions (in batches), then advance each generation one chunk; wait
        when there is nothing to do."""
        while True:
            if self.queue.empty() and not self.generations:
                waiting = [asyncio.ensure_future(self.queue.get()), asyncio.ensure_future(self.work.wait())]
                done, pending = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                self.work.clear()
                if waiting[0] in done:
                    await self._answer_batch([waiting[0].result()])
            if not self.queue.empty():
                await self._answer_batch([self.queue.get_nowait()])
            for generation in list(self.generations):
                await self._advance(generation)

    async def _answer_batch(self, batch: list) -> None:
        if self.spec.batch_key is not None:
            while len(batch) < self.settings.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
        groups: dict[Any, list] = {}
        for item in batch:
            key = self.spec.batch_key(item[0]) if self.spec.batch_key else id(item)
            groups.setdefault(key, []).append(item)
        for group in groups.values():
            await self._answer_group(group)

    async def _answer_group(self, group: list) -> None:
        loop = asyncio.get_running_loop()
        try:
            answers = await loop.run_in_executor(self.executor, self._predict, [request for request, _ in group])
        except Exception as exc:
            if len(group) > 1:  # one bad request must not fail the others batched with it
                for item in group:
                    await self._answer_group([item])
                return
            answers, failure = [None], exc
        else:
            failure = None
        self.requests += len(group)
        self.batches += 1
        for (_, future), answer in zip(group, answers, strict=True):
            _settle(future, answer, failure)

    def _predict(self, requests: list[Any]) -> list[Any]:
        import torch

        with torch.inference_mode():
            return self.spec.predict(self.model, requests)

    async def _advance(self, generation: Generation) -> None:
        """One chunk of a generation on the inference thread, handed to its client; a generation
        whose client went away, or that ended or failed, leaves the list."""
        if generation.stop.is_set():
            self.generations.remove(generation)
            return
        try:
            pieces, ended = await asyncio.get_running_loop().run_in_executor(self.executor, self._chunk, generation)
        except Exception as exc:
            log.exception("generation failed")
            pieces, ended = [("error", first_line(exc))], True
        for piece in pieces:
            generation.pieces.put_nowait(piece)
        if ended:
            self.generations.remove(generation)

    def _chunk(self, generation: Generation) -> tuple[list[tuple[str, Any]], bool]:
        import torch

        with torch.inference_mode():
            if generation.iterator is None:
                generation.iterator = iter(self.spec.stream(self.model, generation.request))
            pieces: list[tuple[str, Any]] = []
            for piece in itertools.islice(generation.iterator, GENERATION_CHUNK):
                pieces.append(("piece", piece))
        ended = len(pieces) < GENERATION_CHUNK
        return pieces + ([("end", None)] if ended else []), ended

    def stream(self, request: Any) -> AsyncIterator[str]:
        """`POST /generate`: admitted as a prediction is (Busy when the server is full), then its
        pieces as server-sent events as the chunks come; a client that goes away stops it."""
        self._admit()
        generation = Generation(request)
        self.generations.append(generation)
        self.requests += 1
        self.work.set()

        async def events() -> AsyncIterator[str]:
            try:
                while True:
                    kind, value = await generation.pieces.get()
                    if kind == "piece":
                        yield f"data: {json.dumps({'token': value})}\n\n"
                    else:
                        yield f"event: {kind}\ndata: {json.dumps({'message': value} if value else {})}\n\n"
                        return
            finally:
                generation.stop.set()

        return events()


def _settle(future: asyncio.Future, answer: Any = None, exception: BaseException | None = None) -> None:
    if future.done():  # the client went away
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(answer)


def build_app(settings: ServeSettings) -> Any:
    """The FastAPI app of one run: the model loaded now, the routes from its kind's spec."""
    require_serving()
    from contextlib import asynccontextmanager

    import torch
    from fastapi import FastAPI

    from seqtool import engine

    if settings.threads:
        torch.set_num_threads(settings.threads)
    task, model, payload = engine.load_trained(settings.run)
    spec = task.serve_spec()
    inference = Inference(spec, model, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await inference.start()
        yield
        await inference.stop()

    app = FastAPI(
        title=f"seqtool: {task.config.task} model {Path(settings.run).name}",
        version=seqtool.__version__,
        description=task.description,
        lifespan=lifespan,
    )
    info = _metadata(task, spec, payload, settings)
    _add_routes(app, spec, inference, info)
    _add_guards(app, settings)
    return app


def _metadata(task: Any, spec: Any, payload: dict[str, Any], settings: ServeSettings) -> dict[str, Any]:
    import fastapi
    import torch

    endpoints = ["GET /health", "GET /metadata", "POST /predict"] + (["POST /generate"] if spec.stream else [])
    return {
        "task": task.config.task,
        "description": task.description,
        "checkpoint": settings.run,
        "step": payload.get("train_state", {}).get("step"),
        "endpoints": endpoints,
        "request": spec.request.model_json_schema(),
        "response": spec.response.model_json_schema(),
        "generate_request": spec.stream_request.model_json_schema() if spec.stream_request else None,
        "batched": spec.batch_key is not None,
        "limits": {
            "max_request_bytes": settings.max_request_bytes,
            "max_batch": settings.max_batch,
            "max_queue": settings.max_queue,
        },
        "config": task.config.to_dict(),
        "versions": {
            "seqtool": seqtool.__version__,
            "torch": str(torch.__version__),
            "fastapi": fastapi.__version__,
            "python": platform.python_version(),
        },
    }


def _add_routes(app: Any, spec: Any, inference: Inference, info: dict[str, Any]) -> None:
    from fastapi.responses import JSONResponse, StreamingResponse

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "task": info["task"], "requests": inference.requests, "batches": inference.batches}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        return info

    async def predict(request: spec.request) -> Any:  # type: ignore[name-defined]
        try:
            return await inference.answer(request)
        except Busy:
            return JSONResponse({"detail": "the server is busy: too many requests queued; retry"}, status_code=503)
        except SeqtoolError as exc:  # the kind refused the content (a clip it cannot read, a series too short)
            return JSONResponse({"detail": str(exc)}, status_code=422)
        except Exception as exc:
            log.exception("prediction failed")
            return JSONResponse({"detail": f"internal error: {first_line(exc)}"}, status_code=500)

    app.post("/predict", response_model=spec.response)(predict)
    if spec.stream is not None:

        async def generate(request: spec.stream_request) -> Any:  # type: ignore[name-defined]
            try:
                events = inference.stream(request)
            except Busy:
                return JSONResponse({"detail": "the server is busy: too many requests queued; retry"}, status_code=503)
            return StreamingResponse(events, media_type="text/event-stream")

        app.post("/generate", response_class=StreamingResponse)(generate)


def _add_guards(app: Any, settings: ServeSettings) -> None:
    """422 with a one-line message naming the field; the request size limit and the API key."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid request"}
        parts = [] if first.get("type") == "json_invalid" else [str(p) for p in first.get("loc", ()) if p != "body"]
        field = ".".join(parts) or "body"
        return JSONResponse({"detail": f"{field}: {first.get('msg')}", "errors": _plain(exc.errors())}, status_code=422)

    app.add_middleware(Guard, settings=settings)


class Guard:
    """The API key and the request size limit, as plain ASGI (Starlette's BaseHTTPMiddleware costs
    milliseconds a request): a declared length over the limit is refused before the body is read,
    and a chunked body is counted as it arrives."""

    def __init__(self, app: Any, settings: ServeSettings):
        self.app, self.settings = app, settings
        self.expected = f"Bearer {settings.api_key}".encode() if settings.api_key else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        from fastapi import HTTPException
        from fastapi.responses import JSONResponse

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.expected is not None and scope["path"] not in OPEN_PATHS:
            if not secrets.compare_digest(headers.get(b"authorization", b""), self.expected):
                detail = "missing or wrong API key (Authorization: Bearer KEY)"
                return await JSONResponse({"detail": detail}, status_code=401)(scope, receive, send)
        limit = self.settings.max_request_bytes
        too_large = {"detail": f"the request is over {limit:,} bytes"}
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await JSONResponse(too_large, status_code=413)(scope, receive, send)
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, too_large["detail"])
            return message

        await self.app(scope, counted, send)


def _plain(errors: Any) -> Any:
    """Validation errors as plain JSON (pydantic may put exceptions in `ctx`)."""
    return json.loads(json.dumps(errors, default=str))


def app_from_environment() -> Any:
    """uvicorn's app factory: the settings `seqtool serve` put in the environment."""
    return build_app(ServeSettings(**json.loads(os.environ[SETTINGS_VARIABLE])))


def serve(settings: ServeSettings, host: str, port: int, workers: int) -> None:
    """Check the run loads and the kind serves, then run uvicorn (its workers build the app)."""
    require_serving()
    import uvicorn

    from seqtool import engine

    task, _, _ = engine.load_trained(settings.run)  # a bad run directory fails here, in one line
    task.serve_spec()
    if workers > 1 and settings.threads is None:
        settings.threads = max(1, (os.cpu_count() or workers) // workers)
    os.environ[SETTINGS_VARIABLE] = json.dumps(asdict(settings))
    uvicorn.run("seqtool.serve:app_from_environment", factory=True, host=host, port=port, workers=workers, log_level="info")
