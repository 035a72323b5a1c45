"""The benchmark in its tiny mode, so it cannot rot (figures are printed, never asserted)."""

import re
import subprocess
import sys

from tests.conftest import ROOT


def test_quick_benchmark_prints_the_comparison_table():
    result = subprocess.run(
        [sys.executable, "-m", "rag", "bench", "--quick", "--no-bot"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    for row in (
        "index build, article",
        "cold start to first answer",
        "warm latency p50",
        "peak resident memory",
        "embedding throughput",
    ):
        line = next(line.strip() for line in result.stdout.splitlines() if line.strip().startswith(row))
        numbers = re.findall(r"\d[\d,]*\.\d+", line)
        assert len(numbers) == 3, line  # ours, baseline, ratio


def test_quick_benchmark_on_the_postgres_store_prints_its_rows(postgres_server):
    import os

    env = os.environ | {"DATABASE_URL": postgres_server[2]}
    result = subprocess.run(
        [sys.executable, "-m", "rag", "bench", "--quick", "--no-bot", "--no-memory", "--postgres"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    for row in (
        "PostgreSQL store: rag index",
        "PostgreSQL store: warm latency p50",
        "PostgreSQL store: warm latency p95",
    ):
        line = next(line.strip() for line in result.stdout.splitlines() if line.strip().startswith(row))
        assert re.findall(r"\d[\d,]*\.\d+", line), line  # a figure, in the ours column
