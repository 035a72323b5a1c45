"""The large-corpus parts of the benchmark, on a small generated corpus: slicing, the side-by-side
comparison with another checkout (here: this one again), the memory breakdown and the report.
Figures are checked for presence and sign only, never for speed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rag.bench import Bench, Checkout, _corpus_sections, _memory
from rag.bench_report import Row, Section, memory_table, table
from rag.bench_workers import slice_corpus
from rag.chunking import chunk
from rag.ingest import read_document
from tests.conftest import ROOT

MODULES = ["pathlib", "json", "csv", "asyncio", "logging", "hashlib", "argparse", "itertools", "functools", "re"]


def write_corpus(path: Path, paragraphs: int) -> Path:
    """Paragraphs of three sentences each, about made-up uses of standard modules."""
    lines = []
    for i in range(paragraphs):
        module = MODULES[i % len(MODULES)]
        lines.append(
            f"The {module} module offers helper number {i} for everyday tasks. "
            f"It returns a new object when called with a path or a string. "
            f"Version 3.{i % 13} changed how helper {i} reports errors."
        )
    path.write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_corpus_slices_hold_about_the_requested_passages(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", 200)
    result = slice_corpus(str(corpus), str(tmp_path), "[100, 250, 5000]")
    assert result["total_passages"] == 600
    for size in (100, 250):
        stated = result["slices"][str(size)]["passages"]
        assert size <= stated < size + 3  # cut at the end of the paragraph holding passage N
        sliced = read_document(Path(result["slices"][str(size)]["file"]))
        assert len(chunk(sliced, sliced.source)) == stated
    assert result["slices"]["5000"]["passages"] == 600  # beyond the corpus: all of it


@pytest.mark.slow
def test_comparison_with_another_checkout_fills_every_column(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", 60)
    work = tmp_path / "work"
    work.mkdir()
    bench = Bench(work, Checkout("ours", ROOT), Checkout("base", ROOT), cold_runs=1)
    sections, largest = _corpus_sections(bench, corpus, [90], quick=True)
    report = table(sections, ["ours", "base"])
    print(report)
    for row in ("passages in the index", "index build", "build throughput", "index size on disk", "cold start"):
        line = next(line for line in report.splitlines() if line.strip().startswith(row))
        numbers = [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*\.?\d*", line.split(")")[-1])]
        assert len(numbers) == 5 and all(n > 0 for n in numbers), line  # ours, base, ratio, starter, ratio
    for row in ("peak resident memory", "warm latency p50", "warm latency p95"):
        assert next(line for line in report.splitlines() if line.strip().startswith(row))

    breakdowns = _memory(bench, largest)
    printed = memory_table(breakdowns)
    print(printed)
    for name in ("ours", "base"):
        stages = {row["stage"]: row for row in breakdowns[name]["rows"]}
        assert breakdowns[name]["missing"] == []
        assert breakdowns[name]["passages"] > 0
        for stage in ("libraries imported", "embedding model", "index: FAISS + passages (docstore)", "BM25 index"):
            assert stages[stage]["rss_mb"] > 0
    assert "ours RSS" in printed and "base RSS" in printed


def test_goals_say_whether_they_are_met():
    sections = [
        Section(
            "large",
            [
                Row("cold start (s)", {"ours": 1.2, "base": 2.4}, ("max", 1.5)),
                Row("throughput (passages/s)", {"ours": 300.0, "base": 221.0}, ("min", 442.0)),
                Row("warm p50 (ms)", {"ours": 10.0, "base": 10.5}, ("ratio", 1.10)),
            ],
        )
    ]
    printed = table(sections, ["ours", "base"])
    assert "<= 1.5: yes" in printed
    assert ">= 442: NO" in printed
    assert "ours/base <= 1.10: yes" in printed
    assert "starter" not in printed  # a column nobody measured is left out


def test_corpus_sizes_must_be_numbers():
    command = [sys.executable, "-m", "rag", "bench", "--corpus-sizes", "ten,60000"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2
    assert "--corpus-sizes" in result.stderr
