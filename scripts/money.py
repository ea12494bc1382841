"""Run every money scenario (the tests marked ``money``: everyday edits and faults through the real engine
and the GPU-instance provider) and print how many cost nothing.

    .venv/bin/python scripts/money.py        # or: make money

A scenario costs nothing when its test passes: nothing is rented twice, nothing billing is left behind
state's back, no data or service is lost. A skipped scenario (engine, Docker or sshd missing) is counted
apart with its reason, never as a pass. Exit status 0 only when every scenario ran and passed.
"""
from __future__ import annotations

import sys
from typing import Dict, List, Tuple

import pytest

from core.config import PROJECT_ROOT


class Tally:
    """A pytest plugin that keeps each money test's outcome."""

    def __init__(self) -> None:
        self.outcomes: Dict[str, Tuple[str, str]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = report.nodeid.split("::", 1)[-1]
        if report.when == "call" or (report.when == "setup" and not report.passed):
            outcome = "skipped" if report.skipped else report.outcome
            why = str(report.longrepr[-1]) if report.skipped and isinstance(report.longrepr, tuple) else ""
            self.outcomes.setdefault(name, (outcome, why))
            if report.when == "call" or report.outcome != "passed":
                self.outcomes[name] = (outcome, why)


def main(argv: List[str]) -> int:
    tally = Tally()
    code = pytest.main(["-q", "-m", "money", "-p", "no:cacheprovider", "--rootdir", str(PROJECT_ROOT),
                        str(PROJECT_ROOT / "tests"), *argv], plugins=[tally])
    passed = [n for n, (o, _) in tally.outcomes.items() if o == "passed"]
    failed = [n for n, (o, _) in tally.outcomes.items() if o == "failed"]
    skipped = {n: why for n, (o, why) in tally.outcomes.items() if o == "skipped"}
    print("\nmoney scenarios:")
    for name, (outcome, why) in sorted(tally.outcomes.items()):
        mark = {"passed": "ok  ", "failed": "COST", "skipped": "skip"}[outcome]
        print(f"  {mark} {name.replace('test_', '', 1).replace('_', ' ')}{f'  ({why})' if why else ''}")
    print(f"\n{len(passed)} of {len(tally.outcomes)} money scenarios cost nothing"
          + (f"; {len(failed)} cost money" if failed else "")
          + (f"; {len(skipped)} could not run here" if skipped else ""))
    return 0 if code == 0 and not failed and not skipped else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
