"""Wall time of `seqtool --help` and `seqtool train --help` as a user runs them (a new process
each time). Target: under 0.3 s, which needs torch to stay unimported until a command needs it.

    .venv/bin/python benchmarks/cli_latency.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    executable = str(Path(sys.executable).with_name("seqtool"))  # the entry point of this environment
    table = Table(title=f"CLI latency over {args.repeats} runs")
    table.add_column("command")
    table.add_column("median s", justify="right")
    table.add_column("max s", justify="right")
    for command in (["--help"], ["train", "--help"], ["--version"]):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run([executable, *command], capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        table.add_row("seqtool " + " ".join(command), f"{statistics.median(times):.3f}", f"{max(times):.3f}")
    Console().print(table)
    print("target: seqtool --help under 0.3 s")
    print(f"reproduce: .venv/bin/python benchmarks/cli_latency.py --repeats {args.repeats}")


if __name__ == "__main__":
    main()
