"""`seqtool serve` under load: 1, 8 and 32 concurrent clients against the sentiment classifier
and the char language model, on localhost only, each level bounded in requests and seconds.
p50/p99 latency and requests/s, beside the same predictions made in-process (no HTTP), and how
many requests each batch answered.

    .venv/bin/python benchmarks/serve_load.py [--sentiment RUN] [--char RUN] [--seconds 5] [--clients 1,8,32]

Without RUN directories it trains small ones first (configs/sentiment_lstm.yaml and
configs/shakespeare_char_lstm.yaml, short budgets). The clients (asyncio and httpx, 8 to a
process, up to 4 processes) run on the same 2 cores as the server, so the figures include their
cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

SENTENCE = "a moving, funny and beautifully acted film that never loses its nerve"
MAX_REQUESTS = 5000  # per level


def train(config: str, folder: Path, *overrides: str) -> Path:
    run = folder / Path(config).stem
    command = [sys.executable, "-m", "seqtool", "train", config, *overrides, "training.max_time=null", "--run-dir", str(run)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(run: Path, options: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "seqtool", "serve", str(run), "--port", str(port), *options]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"seqtool serve {run} did not start")


async def load(url: str, body: dict, clients: int, seconds: float) -> tuple[list[float], float]:
    """Each client sends the request again as soon as it is answered; latencies (s) and wall time."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop and len(latencies) < MAX_REQUESTS:
            start = time.perf_counter()
            answer = await http.post("/predict", json=body)
            answer.raise_for_status()
            latencies.append(time.perf_counter() - start)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        await http.post("/predict", json=body)  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return latencies, time.perf_counter() - start


def _load_share(args: tuple[str, dict, int, float]) -> tuple[list[float], float]:
    return asyncio.run(load(*args))


def load_level(url: str, body: dict, clients: int, seconds: float) -> tuple[list[float], float]:
    """`clients` clients spread over client processes (8 each, at most 4): one Python process
    cannot send more than a few hundred requests a second, and would measure itself."""
    processes = min(4, -(-clients // 8))
    shares = [clients // processes + (k < clients % processes) for k in range(processes)]
    if processes == 1:
        return _load_share((url, body, clients, seconds))
    with multiprocessing.Pool(processes) as pool:
        results = pool.map(_load_share, [(url, body, share, seconds) for share in shares])
    return [t for latencies, _ in results for t in latencies], max(wall for _, wall in results)


@contextlib.contextmanager
def generating(url: str, streams: int, length: int):
    """`streams` clients each streaming `POST /generate` of `length` tokens, one after another,
    for the block: the load a /predict must get through."""
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            while not stop.is_set():
                with http.stream("POST", "/generate", json={"prompt": "ROMEO:", "length": length}) as stream:
                    for _ in stream.iter_lines():
                        if stop.is_set():
                            break

    threads = [threading.Thread(target=client, daemon=True) for _ in range(streams)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # every stream under way
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


def in_process(run: Path, call, seconds: float) -> tuple[float, float]:
    """p50 latency (s) and calls/s of the same prediction without HTTP."""
    import seqtool

    model = seqtool.load(run)
    call(model)
    times, stop = [], time.perf_counter() + seconds
    while time.perf_counter() < stop and len(times) < MAX_REQUESTS:
        start = time.perf_counter()
        call(model)
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(times) / sum(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentiment", type=Path)
    parser.add_argument("--char", type=Path)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--serve-option", action="append", default=[], help="for seqtool serve, e.g. --serve-option=--threads=1")
    parser.add_argument("--generations", type=int, default=4, help="/generate streams running during the last char LM row")
    parser.add_argument("--generation-length", type=int, default=2000, help="tokens each of those streams generates")
    args = parser.parse_args()
    levels = [int(n) for n in args.clients.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        sentiment = args.sentiment or train("configs/sentiment_lstm.yaml", Path(tmp), "training.max_steps=200")
        char = args.char or train("configs/shakespeare_char_lstm.yaml", Path(tmp), "training.max_steps=200")
        cases = [
            ("sentiment, 1 sentence", sentiment, {"texts": [SENTENCE]}, lambda m: m.predict([SENTENCE])),
            ("char LM, 50 chars", char, {"prompt": "ROMEO:", "length": 50}, lambda m: m.predict(prompt="ROMEO:", length=50)),
        ]
        table = Table(title=f"seqtool serve on localhost, {args.seconds:g} s per level (clients on the same cores)")
        for header in (
            "model",
            "clients",
            "requests",
            "p50 ms",
            "p99 ms",
            "req/s",
            "req/batch",
            "in-process p50 ms",
            "in-process /s",
        ):
            table.add_column(header, justify="left" if header == "model" else "right")
        for name, run, body, call in cases:
            base_p50, base_rate = in_process(run, call, args.seconds)
            process, url = start_server(run, args.serve_option)
            try:
                rows = [(clients, False) for clients in levels]
                if run == char and args.generations:
                    rows.append((1, True))
                for clients, with_generations in rows:
                    before = httpx.get(f"{url}/health").json()
                    with (
                        generating(url, args.generations, args.generation_length)
                        if with_generations
                        else contextlib.nullcontext()
                    ):
                        latencies, wall = load_level(url, body, clients, args.seconds)
                    after = httpx.get(f"{url}/health").json()
                    per_batch = (after["requests"] - before["requests"]) / max(1, after["batches"] - before["batches"])
                    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else max(latencies)
                    table.add_row(
                        name + (f", {args.generations} /generate streams running" if with_generations else ""),
                        str(clients),
                        str(len(latencies)),
                        f"{statistics.median(latencies) * 1e3:.1f}",
                        f"{p99 * 1e3:.1f}",
                        f"{len(latencies) / wall:.0f}",
                        f"{per_batch:.1f}",
                        f"{base_p50 * 1e3:.1f}",
                        f"{base_rate:.0f}",
                    )
            finally:
                process.terminate()
                process.wait(30)
        Console(width=160).print(table)


if __name__ == "__main__":
    main()
