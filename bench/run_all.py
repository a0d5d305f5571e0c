"""Run every scenario of the benchmark suite, one after another, and print their reports.

    python -m bench.run_all [--quick]

Every `bench/s<N>_<name>.py` present runs in order of N, each as its own
`python -m bench.s<N>_<name>` subprocess (so one scenario's processes and memory never carry
into the next), with `--quick` passed through. Each report is printed as its scenario ends; a
last table says how each one exited.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

SCENARIO = re.compile(r"^s(\d+)_\w+$")
HERE = Path(__file__).resolve().parent


def scenarios() -> list[str]:
    """The scenario modules present, in order of their number."""
    numbered = {}
    for path in HERE.glob("s*_*.py"):
        if found := SCENARIO.match(path.stem):
            numbered[path.stem] = int(found.group(1))
    return sorted(numbered, key=lambda name: (numbered[name], name))


def run(module: str, quick: bool) -> tuple[int, float]:
    """Run one scenario with its output passed through; its exit code and wall-clock seconds."""
    command = [sys.executable, "-m", f"bench.{module}", *(["--quick"] if quick else [])]
    start = time.perf_counter()
    code = subprocess.run(command, cwd=HERE.parent, check=False).returncode
    return code, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every scenario")
    args = parser.parse_args()
    outcomes = {module: run(module, args.quick) for module in scenarios()}
    print("\n## Suite\n\n| scenario | exit code | seconds |\n|---|---|---|")
    for module, (code, seconds) in outcomes.items():
        print(f"| {module} | {code} | {seconds:.0f} |")
    return 1 if any(code for code, _ in outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
