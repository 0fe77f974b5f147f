"""The benchmark scripts keep running: each in `--quick` mode, as a user would start
it, ends with its report (a crash while printing it went unnoticed once). No
figure is asserted here; speed is read from the report, never tested."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("script", "args", "tables"),
    [
        ("bench/bench.py", ["--quick"], ["| figure | result | target |", "| N x K | balances |"]),
        ("bench/history.py", ["--quick"], ["| per account per cycle | median |"]),
        # the literal 90-day state-file run, here tiny
        (
            "bench/history.py",
            ["--growth", "3", "2"],
            ["| day | 0 | 1 | 2 |", "| database |", "| WAL |"],
        ),
    ],
)
def test_a_bench_script_runs_to_its_report(script: str, args: list[str], tables: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, script, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "Machine: " in done.stdout
    for table in tables:
        assert table in done.stdout
