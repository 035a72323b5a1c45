"""The benchmark in its tiny mode, so it cannot rot (figures are printed, never asserted)."""

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def quick_bench(*flags: str, env: dict[str, str] | None = None) -> str:
    """`rag bench --quick` with `flags`: its table (it must exit 0)."""
    result = subprocess.run(
        [sys.executable, "-m", "rag", "bench", "--quick", *flags],
        capture_output=True, text=True, timeout=900, cwd=ROOT, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    return result.stdout


def figures(table: str, row: str) -> list[str]:
    """The numbers on the table's line that starts with `row`."""
    line = next(line.strip() for line in table.splitlines() if line.strip().startswith(row))
    return re.findall(r"\d[\d,]*\.\d+", line)


@pytest.mark.slow
def test_quick_benchmark_prints_the_comparison_table():
    table = quick_bench()
    for row in (
        "index build, article",
        "cold start to first answer",
        "warm latency p50",
        "peak resident memory",
        "embedding throughput",
    ):
        assert len(figures(table, row)) == 3, row  # ours, baseline, ratio
    assert "Telegram bot load test: skipped with --quick" in table  # said, not silently left out
    assert "large corpus: skipped with --quick" in table


@pytest.mark.slow
def test_quick_benchmark_on_the_postgres_store_prints_its_rows(postgres_server):
    import os

    table = quick_bench("--no-bot", "--no-memory", "--postgres", env=os.environ | {"DATABASE_URL": postgres_server[2]})
    for row in (
        "PostgreSQL store: rag index",
        "PostgreSQL store: warm latency p50",
        "PostgreSQL store: warm latency p95",
    ):
        assert figures(table, row), row  # a figure, in the ours column


def test_the_benchmark_and_the_evaluation_share_one_percentile():
    from rag import bench_workers, evaluate

    assert evaluate.percentile is bench_workers.percentile
    assert bench_workers.percentile([1, 2, 3, 10], 95) == 8.95  # inclusive interpolation, not nearest rank (10)
    assert bench_workers.percentile([4, 1], 50) == 2.5
    assert bench_workers.percentile([], 95) is None


def test_the_goal_column_is_shown_only_when_a_row_has_a_goal():
    from rag.bench_report import Row, Section, table

    without = table([Section("article", [Row("warm latency p50 (ms)", {"ours": 7.5})])], ["ours"])
    assert "goal" not in without.splitlines()[0]
    with_goal = table([Section("article", [Row("warm latency p50 (ms)", {"ours": 7.5}, ("max", 30))])], ["ours"])
    assert with_goal.splitlines()[0].endswith("goal") and "<= 30: yes" in with_goal
