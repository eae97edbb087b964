"""Issue 8's probe, replayed: faults survived, bad inputs refused cleanly, and writers x turns
on one thread with nothing lost, on SQLite and PostgreSQL.

Each fault and bad input is a test marked `fault` or `bad_input` (tests/test_reliability.py,
tests/test_concurrency.py, tests/test_cli.py): it reproduces the case with real processes and
the local provider server and asserts the clean outcome, so this script runs them and counts.
Isolation: each test marked `isolation` checks that one tenant never reaches another's data
and that a server with keys never answers without one.
Writers: `MEMCHAT_TEST_WRITERS` processes each take `MEMCHAT_TEST_TURNS` turns on one thread;
the test asserts every turn stored, each reply after its own question, each request holding
every turn completed before it.

    python bench/adversary.py [--writers 4 --turns 6]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from common import ROOT, table


def run_marked(marker: str, env: dict | None = None) -> tuple[int, int, int, list[str]]:
    """(passed, tried, skipped, names of failures) for the tests with `marker`."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.xml"
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker, f"--junitxml={report}", "tests"],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            check=False,
        )
        cases = ElementTree.parse(report).getroot().iter("testcase")
        passed = tried = skipped = 0
        failed = []
        for case in cases:
            outcome = {child.tag for child in case}
            if "skipped" in outcome:
                skipped += 1
                continue
            tried += 1
            if outcome & {"failure", "error"}:
                failed.append(case.get("name"))
            else:
                passed += 1
    return passed, tried, skipped, failed


def main(writers: int = 4, turns: int = 6) -> str:
    rows = []
    for label, marker, env in (
        ("faults survived", "fault", None),
        ("bad inputs refused cleanly", "bad_input", None),
        ("isolation checks held", "isolation", None),
        (
            f"{writers} writers x {turns} turns on one thread, nothing lost (per backend)",
            "writers",
            {"MEMCHAT_TEST_WRITERS": str(writers), "MEMCHAT_TEST_TURNS": str(turns)},
        ),
    ):
        passed, tried, skipped, failed = run_marked(marker, env)
        note = ", ".join(failed) if failed else ("" if not skipped else f"{skipped} skipped (no PostgreSQL?)")
        rows.append([label, f"{passed} / {tried}", note or "-"])
    return table(
        "Adversarial probe replayed (`python bench/adversary.py`; each case a test on SQLite and, where a database is involved, PostgreSQL)",
        ["measure", "clean / tried", "failed or skipped"],
        rows,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--turns", type=int, default=6)
    arguments = parser.parse_args()
    print(main(arguments.writers, arguments.turns))
