"""Measure one index: size on disk, cold start to the first answer and peak RSS (a fresh
`python -m rag ask` under /usr/bin/time -v, median of `--runs`), where start time goes (the
slowest top-level imports of a fresh `rag ask`, from `python -X importtime`), where load time
and memory go (phases of `Engine.open`, timed and RSS-sampled in-process), and warm latency p50/p95.

Not a test: figures for issue 11. Usage (from a checkout; PYTHONPATH picks the code measured):
    python scripts/measure_store.py --doc FILE --index-dir DIR [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

QUESTIONS = [
    "How do I read a file line by line?",
    "What does json.dumps return?",
    "How can I sort a list in reverse order?",
    "Which module handles regular expressions?",
    "What happens when a thread is a daemon?",
    "How do I parse command line arguments?",
    "What is the default encoding of open()?",
    "Who revoked Bensouda's visa?",
    "What did Mike Pompeo call the court?",
    "How did the ICC describe the sanctions?",
    "How do I open a socket connection?",
    "What does the struct module pack?",
    "How are decorators applied?",
    "What is a context manager?",
    "How can I copy a dictionary?",
    "What does asyncio.gather do?",
    "How do I format a date as a string?",
    "Which exception is raised for a missing key?",
    "How do I create a temporary file?",
    "Which sanctions did the United States impose?",
]


def rss_mb() -> float:
    """This process's resident set size now, in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def disk(index_dir: Path) -> dict[str, float]:
    """MB per file of the current generation folder, and the total."""
    manifest = json.loads((index_dir / "manifest.json").read_text())
    folder = index_dir / manifest["files"]
    sizes = {p.name: p.stat().st_size / 2**20 for p in sorted(folder.rglob("*")) if p.is_file()}
    sizes["total"] = sum(sizes.values())
    return {k: round(v, 2) for k, v in sizes.items()}


def cold(doc: Path, index_dir: Path, runs: int = 3) -> dict[str, object]:
    """Wall time and peak RSS of fresh `rag ask` processes (the index already built): medians of `runs`."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "rag", "ask", "--doc", str(doc), "--index-dir", str(index_dir)]
    walls, peaks = [], []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run([*cmd, QUESTIONS[0]], capture_output=True, text=True, check=True)
        walls.append(round(time.perf_counter() - started, 2))
        peaks.append(int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1)) / 1024)
    return {
        "cold_s": statistics.median(walls),
        "cold_runs_s": walls,
        "peak_rss_mb": round(statistics.median(peaks), 1),
    }


def slowest_imports(doc: Path, index_dir: Path, top: int = 8) -> dict[str, float]:
    """Seconds of the slowest top-level imports (cumulative, nested ones included) of one fresh `rag ask`."""
    cmd = [sys.executable, "-X", "importtime", "-m", "rag", "ask", "--doc", str(doc), "--index-dir", str(index_dir)]
    done = subprocess.run([*cmd, QUESTIONS[0]], capture_output=True, text=True, check=True)
    seconds = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)  # no indent: a top-level import
        if match:
            seconds[match.group(2)] = int(match.group(1)) / 1e6
    slowest = sorted(seconds.items(), key=lambda item: -item[1])[:top]
    return {name: round(value, 3) for name, value in slowest}


def phases(doc: Path, index_dir: Path) -> dict[str, object]:
    """Time and RSS growth of each step of opening the engine, then warm latencies."""
    import rag.answer
    import rag.embedding
    import rag.engine
    import rag.rank
    import rag.retrieve
    import rag.store
    from rag.config import load_config

    report: dict[str, list[float]] = {}

    def timed(owner, name, label):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            before, started = rss_mb(), time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                report[label] = [round(time.perf_counter() - started, 3), round(rss_mb() - before, 1)]

        setattr(owner, name, wrapper)

    timed(rag.rank, "load_model", "ranker model")
    timed(rag.embedding, "load_embed_model", "embedding model (ONNX session)")
    timed(rag.store, "load_documents", "read documents (only to build)")
    timed(rag.store, "open_current" if hasattr(rag.store, "open_current") else "open_index", "load index (store)")
    timed(rag.retrieve.HybridRetriever, "__init__", "retriever (BM25, ids)")
    timed(rag.answer.ExtractiveAnswerer, "__init__", "answerer (features)")
    base = rss_mb()
    started = time.perf_counter()
    engine = rag.engine.Engine.open(load_config(None, doc=doc, index_dir=index_dir))
    opened = time.perf_counter() - started
    engine.ask(QUESTIONS[0])
    first = time.perf_counter() - started
    latencies = []
    for _ in range(3):
        for question in QUESTIONS:
            latencies.append(engine.ask(question).latency_ms)
    latencies.sort()
    return {
        "open_s": round(opened, 2),
        "first_answer_s": round(first, 2),
        "phases_s_mb": report,
        "rss_after_open_mb": round(rss_mb(), 1),
        "rss_imports_mb": round(base, 1),
        "warm_p50_ms": round(statistics.median(latencies), 2),
        "warm_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
        "answer": engine.ask(QUESTIONS[0]).text[:120],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--doc", type=Path, required=True)
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--runs", type=int, default=3, help="fresh processes for the cold start (median)")
    args = parser.parse_args()
    result = {"doc": str(args.doc), "disk_mb": disk(args.index_dir), **cold(args.doc, args.index_dir, args.runs)}
    result["slowest_imports_s"] = slowest_imports(args.doc, args.index_dir)
    result |= phases(args.doc, args.index_dir)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
