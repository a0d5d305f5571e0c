"""Run every scenario of the benchmark suite, one after another, and print their reports, then
one table of every target.

    python -m bench.run_all [--quick]

Every `bench/s<N>_<name>.py` present runs in order of N, each as its own
`python -m bench.s<N>_<name>` subprocess (so one scenario's processes and memory never carry
into the next), with `--quick` passed through. Each report is printed as its scenario ends.
Each scenario's Report also writes itself to a file that this script names in
BENCH_REPORT_FILE (bench.common.Report.print), and at the end this script prints:

- "Targets": every row of every report that has a target (scenario, row, figure, baseline,
  ratio, target, pass/MISS; a target not measured, such as S1's PostgreSQL phase without a
  server, has no verdict), and a MISS row for a scenario that exited with an error or printed
  no report;
- each report's CPU probe line (the machine's speed when it started and when it printed);
- how each scenario exited and how long it took.

The exit code is 1 if a scenario failed or a target was missed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.common import REPORT_FILE, Row

SCENARIO = re.compile(r"^s(\d+)_\w+$")
HERE = Path(__file__).resolve().parent


@dataclass
class Outcome:
    """One scenario's exit code, wall-clock seconds and the reports it wrote."""

    module: str
    code: int
    seconds: float
    reports: list[dict[str, Any]] = field(default_factory=list)

    def targets(self) -> list[Row]:
        """Its rows with a target; a failed row if it crashed or printed nothing."""
        rows = [Row(**row) for report in self.reports for row in report["rows"] if row["target"]]
        if self.code:
            rows.append(Row(f"exited with code {self.code}", "", target="exit 0", met=False))
        elif not self.reports:
            rows.append(Row("printed no report", "", target="a report", met=False))
        return rows


def scenarios() -> list[str]:
    """The scenario modules present, in order of their number."""
    numbered = {}
    for path in HERE.glob("s*_*.py"):
        if found := SCENARIO.match(path.stem):
            numbered[path.stem] = int(found.group(1))
    return sorted(numbered, key=lambda name: (numbered[name], name))


def run(module: str, quick: bool, reports: Path) -> Outcome:
    """Run one scenario with its output passed through; what it did and printed."""
    command = [sys.executable, "-m", f"bench.{module}", *(["--quick"] if quick else [])]
    written = reports / f"{module}.jsonl"
    env = {**os.environ, REPORT_FILE: str(written)}
    start = time.perf_counter()
    code = subprocess.run(command, cwd=HERE.parent, env=env, check=False).returncode
    outcome = Outcome(module, code, time.perf_counter() - start)
    if written.exists():
        outcome.reports = [orjson.loads(line) for line in written.read_bytes().splitlines()]
    return outcome


def print_summary(outcomes: list[Outcome]) -> None:
    """Every target row, every CPU probe line, and how each scenario exited."""
    print("\n## Targets\n")
    print("| scenario | row | figure | baseline | ratio | target | |")
    print("|---|---|---|---|---|---|---|")
    for outcome in outcomes:
        for r in outcome.targets():
            print(
                f"| {outcome.module} | {r.label} | {r.figure} | {r.baseline} | {r.ratio} "
                f"| {r.target} | {r.verdict} |"
            )
    print("\n## CPU probes\n")
    for outcome in outcomes:
        for report in outcome.reports:
            print(f"- {outcome.module}: {report['probe']}")
    print("\n## Suite\n\n| scenario | exit code | seconds |\n|---|---|---|")
    for outcome in outcomes:
        print(f"| {outcome.module} | {outcome.code} | {outcome.seconds:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every scenario")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as reports:
        outcomes = [run(module, args.quick, Path(reports)) for module in scenarios()]
    print_summary(outcomes)
    missed = any(r.met is False for outcome in outcomes for r in outcome.targets())
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
