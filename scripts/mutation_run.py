"""Mutation testing of the modules that hold the contract's rules (issue 23); run by hand.

    scripts/mutation                       every module in MODULES, one after the other
    scripts/mutation gateway/retry.py      one module (or several)
    scripts/mutation --show                also print the diff of each mutant that survived

Each module runs in a scratch copy of the project (.mutation/<module>/, ignored by git), with
mutmut mutating that module only and running the tests chosen for it below: the unit tests of
its rules, and fast integration tests (SQLite only) that exercise it through the API. Every run
starts afresh, so a result never comes from an older run.

Surviving mutants that cannot change behaviour are listed, each with its reason, in ONE reviewed
file, tests/mutation/equivalent.txt; they are reported and left out of the score, never
silenced in mutmut's configuration. An entry whose mutant was killed, no longer exists, or now
changes another line is reported as stale and excuses nothing.

score = killed / (killed + survived + untested), where untested mutants are those no chosen
test reached, and equivalents are left out of survived.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / ".mutation"
EQUIVALENTS = ROOT / "tests" / "mutation" / "equivalent.txt"
MUTMUT = Path(sys.executable).parent / "mutmut"
COPIED = ("gateway", "tests", "config", "pyproject.toml")

CONTRACT = "tests/integration/test_contract_rules.py"
DELIVERY = "tests/integration/test_delivery.py"
INTEGRITY = "tests/integration/test_integrity.py"
# The chaos test takes 7 s alone, too close to PYTEST_ARGS' timeout on a loaded machine, where
# a test cut off by the timeout would count as a kill.
NO_CHAOS = ["-k", "not at_once_strand_nothing"]

# module -> the pytest arguments that choose the tests meant to kill its mutants. Keep each
# module's run bounded: unit tests first, and only integration tests that take seconds.
MODULES: dict[str, list[str]] = {
    "gateway/retry.py": [
        "tests/unit/test_retry.py",
        "tests/unit/test_retry_defaults.py",
    ],
    "gateway/signing.py": [
        "tests/unit/test_signing.py",
        "tests/unit/test_signing_headers.py",
        "tests/unit/test_signing_schemes.py",
    ],
    "gateway/payloads.py": [
        "tests/unit/test_payloads.py",
        "tests/unit/test_payload_fields.py",
        "tests/unit/test_record_depth.py",
    ],
    "gateway/filters.py": [
        "tests/unit/test_filters.py",
        "tests/unit/test_filter_edges.py",
    ],
    "gateway/handshake.py": [
        "tests/unit/test_handshake.py",
        "tests/unit/test_handshake_codes.py",
        "tests/integration/test_handshake_requests.py",
        "tests/integration/test_handshake.py",
        "tests/integration/test_handshake_answers.py",
    ],
    "gateway/lifecycle.py": [
        "tests/unit/test_lifecycle.py",
        "tests/unit/test_text_limits.py",
        "tests/unit/test_outcomes.py",  # settle applies the lifecycle's transitions
        CONTRACT,
        INTEGRITY,
        *NO_CHAOS,
    ],
    # settle's rules have unit tests of their own, which mutmut runs first (fastest first, and
    # it stops at the first failure); the integration tests then only run for a mutant the unit
    # tests let through (about 0.7 s a test).
    "gateway/outcomes.py": ["tests/unit/test_outcomes.py", CONTRACT, INTEGRITY, *NO_CHAOS],
    # sender runs in every delivery, so each surviving mutant runs its whole selection. The
    # sender's own tests come first: on the mock transport, then against a loopback receiver.
    "gateway/sender.py": [
        "tests/unit/test_sender.py",
        "tests/integration/test_sender.py",
        CONTRACT,
        DELIVERY,
    ],
    "gateway/transport.py": ["tests/unit/test_transport.py"],
    "gateway/netguard.py": [
        "tests/unit/test_netguard.py",
        "tests/unit/test_netguard_rules.py",
        "tests/integration/test_outbound.py",
        "tests/integration/test_system_resolver.py",  # the system resolver, on loopback names
    ],
}
# Added to every module's selection: PostgreSQL runs the same rules as SQLite, only slower.
SELECTION_FOR_ALL = ["-m", "not postgres"]
# Per test while mutants run: a mutant that makes a test wait for a delivery that never comes
# fails after this, not after the suite's 60 s (the slowest chosen test takes about 2 s).
# mutmut's forced-fail check makes every mutated function raise, which can leave a client
# socket unclosed until the session ends; the suite's filterwarnings=error then crashed
# mutmut itself at pytest's exit. A leaked socket is not what these runs judge.
PYTEST_ARGS = [
    "-p", "no:cacheprovider", "--timeout=10",
    "-W", "ignore::pytest.PytestUnraisableExceptionWarning",
]  # fmt: skip

# mutmut's verdicts, as `mutmut results --all true` prints them, into our columns.
KILLED = {"killed", "timeout", "caught by type check"}
SURVIVED = {"survived", "suspicious", "segfault"}
UNTESTED = {"no tests", "not checked", "skipped"}


@dataclass
class Equivalent:
    name: str
    module: str
    mutated: str  # the mutant's changed line(s), as `mutmut show` prints them after "+"
    reason: str


@dataclass
class Result:
    module: str
    verdicts: dict[str, str]  # mutant name -> mutmut's verdict
    seconds: float
    equivalent: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # problems with equivalent.txt entries
    survivors: list[str] = field(default_factory=list)  # not excused
    diffs: dict[str, str] = field(default_factory=dict)

    def count(self, kinds: set[str]) -> int:
        return sum(1 for verdict in self.verdicts.values() if verdict in kinds)

    @property
    def killed(self) -> int:
        return self.count(KILLED)

    @property
    def survived(self) -> int:
        return len(self.survivors)

    @property
    def untested(self) -> int:
        return self.count(UNTESTED)

    @property
    def score(self) -> float | None:
        judged = self.killed + self.survived + self.untested
        return None if not judged else 100.0 * self.killed / judged


def read_equivalents(path: Path = EQUIVALENTS) -> list[Equivalent]:
    """Entries: `<mutant name> <module> <reason...>` on one line, then `    + <mutated line>`
    (one or more) for each line the mutant changes, or `    - <deleted line>` for a mutant
    that only deletes lines. Lines starting with # are comments."""
    entries: list[Equivalent] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith((" ", "\t")):
            text = line.strip()
            if not entries or not text.startswith(("+", "-")):
                raise SystemExit(f"{path}:{number}: expected '+ <mutated line>' under an entry")
            entry = entries[-1]
            changed = text[1:].strip() if text[0] == "+" else "- " + text[1:].strip()
            entry.mutated = "\n".join(filter(None, [entry.mutated, changed]))
            continue
        parts = line.split(maxsplit=2)
        if len(parts) < 3:
            raise SystemExit(f"{path}:{number}: expected '<mutant name> <module> <reason>'")
        entries.append(Equivalent(parts[0], parts[1], "", parts[2]))
    for entry in entries:
        if not entry.mutated:
            raise SystemExit(f"{path}: {entry.name} has no '+ <mutated line>'")
    return entries


def prepare(module: str) -> Path:
    """A fresh scratch copy of the project whose mutmut settings choose this module."""
    work = SCRATCH / Path(module).stem
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, work / name, ignore=ignore)
        else:
            shutil.copy2(source, work / name)
    chosen = []
    for arg in MODULES.get(module, []):
        if arg.startswith("tests/") and not (work / arg.split("::")[0]).exists():
            # Said out loud, so a renamed test file cannot quietly shrink the selection.
            print(f"{module}: the test selection names {arg}, which does not exist: left out")
            continue
        chosen.append(arg)
    settings = {
        "source_paths": ["gateway"],
        "only_mutate": [module],
        # The suite reads config/gateway.toml (the documented defaults); mutmut runs the tests
        # inside its own copy of the project, which holds only what it is told to copy.
        "also_copy": ["config"],
        "pytest_add_cli_args_test_selection": [*chosen, *SELECTION_FOR_ALL],
        "pytest_add_cli_args": PYTEST_ARGS,
        "use_git_change_detection": False,
    }
    table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())
    with (work / "pyproject.toml").open("a") as handle:
        handle.write(f"\n[tool.mutmut]\n{table}\n")
    return work


def mutmut(work: Path, *args: str, log: Path | None = None) -> str:
    """Run mutmut in the scratch copy; its output (to `log` instead, if given)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if log is None:
        done = subprocess.run(
            [str(MUTMUT), *args], cwd=work, env=env, capture_output=True, text=True, check=True
        )
        return done.stdout
    with log.open("w") as handle:
        code = subprocess.run(
            [str(MUTMUT), *args], cwd=work, env=env, stdout=handle, stderr=subprocess.STDOUT
        ).returncode
    if code != 0:
        raise SystemExit(f"mutmut {' '.join(args)} failed ({code}); see {log}")
    return ""


def verdicts(work: Path) -> dict[str, str]:
    """Every mutant and its verdict."""
    found: dict[str, str] = {}
    for line in mutmut(work, "results", "--all", "true").splitlines():
        name, sep, verdict = line.strip().rpartition(": ")
        if sep and name.startswith("gateway."):
            found[name] = verdict
    return found


def mutated_lines(diff: str) -> str:
    """The lines a mutant adds, as in equivalent.txt; `- <line>` for each it deletes when it
    adds none."""
    added = _changed(diff, "+")
    return "\n".join(added or ["- " + line for line in _changed(diff, "-")])


def _changed(diff: str, sign: str) -> list[str]:
    """The diff's lines with that sign, without it and the file header."""
    lines = [line[1:].strip() for line in diff.splitlines() if line.startswith(sign)]
    return [line for line in lines if line and not line.startswith(sign * 2)]


def run(module: str, jobs: int, equivalents: list[Equivalent]) -> Result:
    """Mutate one module, run its tests against every mutant, and judge the survivors."""
    work = prepare(module)
    started = time.monotonic()
    mutmut(work, "run", "--max-children", str(jobs), log=work / "mutmut.log")
    result = Result(module, verdicts(work), time.monotonic() - started)
    listed = {e.name: e for e in equivalents if e.module == module}
    for name, verdict in sorted(result.verdicts.items()):
        if verdict not in SURVIVED:
            continue
        diff = mutmut(work, "show", name)
        entry = listed.pop(name, None)
        if entry is None:
            result.survivors.append(name)
            result.diffs[name] = diff
        elif entry.mutated != mutated_lines(diff):
            result.survivors.append(name)
            result.diffs[name] = diff
            result.stale.append(f"{name}: now changes another line; review it again")
        else:
            result.equivalent.append(name)
    for name in listed:
        found = result.verdicts.get(name)
        what = "no longer exists" if found is None else f"was {found}"
        result.stale.append(f"{name}: {what}; remove it from {EQUIVALENTS.name}")
    return result


def report(results: list[Result], seconds: float, show: bool) -> None:
    """The table, then what to look at."""
    head = f"{'module':<22} {'mutants':>7} {'killed':>6} {'survived':>8} {'untested':>8} "
    print(head + f"{'equivalent':>10} {'score':>7} {'time':>7}")
    for r in results:
        score = "-" if r.score is None else f"{r.score:.1f}%"
        print(
            f"{r.module:<22} {len(r.verdicts):>7} {r.killed:>6} {r.survived:>8} "
            f"{r.untested:>8} {len(r.equivalent):>10} {score:>7} {r.seconds:>6.0f}s"
        )
    print(f"total time {seconds:.0f} s")
    for r in results:
        other = Counter(v for v in r.verdicts.values() if v not in {"killed", "survived"})
        if other:
            shown = ", ".join(f"{n} {v}" for v, n in sorted(other.items()))
            print(f"{r.module}: of which {shown}")
        for problem in r.stale:
            print(f"{r.module}: stale equivalent entry {problem}")
        for name in r.survivors:
            print(f"{r.module}: survived {name}")
            if show:
                print(r.diffs[name])
        for name, verdict in sorted(r.verdicts.items()):
            if verdict in UNTESTED:
                print(f"{r.module}: untested ({verdict}) {name}")


def main(argv: list[str] | None = None) -> int:
    """Run the chosen modules one at a time and print the table."""
    parser = argparse.ArgumentParser(prog="scripts/mutation", description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help="e.g. gateway/retry.py (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (2)")
    parser.add_argument("--show", action="store_true", help="print each survivor's diff")
    parser.add_argument("--fail-under", type=float, default=0.0, help="exit 1 below this score")
    args = parser.parse_args(argv)
    modules = args.modules or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        parser.error(f"not in MODULES (scripts/mutation_run.py): {', '.join(unknown)}")
    equivalents = read_equivalents()
    started = time.monotonic()
    results = []
    for module in modules:
        print(f"mutating {module} ...", flush=True)
        results.append(run(module, args.jobs, equivalents))
    report(results, time.monotonic() - started, args.show)
    low = [r for r in results if r.score is not None and r.score < args.fail_under]
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
