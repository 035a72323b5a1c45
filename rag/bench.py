"""Benchmark: this engine against the llama-index starter pattern and, optionally, against another
checkout of this project, side by side, in one run.

`python -m rag bench` prints one table in sections: the DW article (index build, cold start to
the first answer, warm latency, peak resident memory, embedding throughput); the large corpus (by
default the Python library reference that Debian's python3.11-doc installs) sliced to about
10,000 and 60,000 passages (build time and passages/s, index size on disk, cold start, peak
memory, warm p50/p95), with the starter pattern on the smallest slice; and the Telegram bot's
load-test figures. Under it: where the memory of the largest index goes, stage by stage.
`--compare-with DIR` adds a column measured with the engine of the checkout DIR (e.g.
`git worktree add /tmp/base main`) and the ratio; its processes are interleaved with ours, so both
see the same machine load. The goal column holds issue 11's acceptance figures. `--quick` runs a
tiny version (the test suite runs it so the benchmark cannot rot).

The starter pattern is run for real: llama-index + sentence-transformers (torch) via
`HuggingFaceEmbedding`, `VectorStoreIndex` over `FaissVectorStore` (its default 1024-token
chunks), persisted and loaded, a top-3 retriever. Its warm latency is retrieval only; ours is the
full answer. Every measurement runs in a fresh process (`rag/bench_workers.py`,
`rag/bench_memory.py`), which prints JSON; "cold start" is the wall time of a new `rag ask`
process (the operating system's file cache is warm: the index was just written).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.bench_report import Row, Section, memory_table, table
from rag.config import DEFAULTS_DIR, PACKAGE_DIR, environment
from rag.lexical import normalise

# All shipped in the package (rag/defaults/), so the benchmark runs from an installed wheel too.
ARTICLE = DEFAULTS_DIR / "data" / "dw-icc-sanctions.txt"
QUESTION_SET = DEFAULTS_DIR / "eval" / "dw-icc-sanctions.jsonl"
SECOND_DOCUMENT = DEFAULTS_DIR / "eval" / "docs" / "python-license.txt"
SOURCE_ROOT = PACKAGE_DIR.parent  # the checkout, when this runs from one (else site-packages)
# The Telegram load runs the bot against the test suite's fake Bot API: only a source checkout has it.
LOAD_SCRIPT = SOURCE_ROOT / "scripts" / "telegram_load.py"
POSTGRES_SCRIPT = SOURCE_ROOT / "scripts" / "postgres.sh"
WORKERS = PACKAGE_DIR / "bench_workers.py"
MEMORY_WORKER = PACKAGE_DIR / "bench_memory.py"
DEBIAN_PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/_sources/library")
CORPUS_SIZES = (10_000, 60_000)
QUICK_CORPUS_SIZES = (300,)
BUILD_TIMEOUT_S = 3600
WORKER_TIMEOUT_S = 1800
WARM_RUNS = 3  # warm figures: the median of this many processes per checkout (one run is noisy under load)
CORPUS_QUESTIONS = [  # about the Python library reference; for latency, not for answer quality
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
    "How do I format a date as a string?",
    "How can I run coroutines concurrently with asyncio?",
    "What does the with statement do with a lock?",
    "How do I create a temporary directory?",
    "How do I match a regular expression at the start of a string?",
    "What is a named tuple?",
    "How do I send an HTTP request with urllib?",
    "How can I serialize objects with pickle safely?",
    "How do I log messages to a file?",
    "What does the dataclass decorator generate?",
]


@dataclass(frozen=True)
class Checkout:
    """Whose engine a worker runs: a source folder put first on PYTHONPATH, or None for the
    `rag` this process imports (an installed package)."""

    name: str
    root: Path | None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.root is not None:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.root), env.get("PYTHONPATH")) if p)
        return env


class Bench:
    """One run: the checkouts measured, a work folder and progress lines on stderr."""

    def __init__(self, work: Path, ours: Checkout, other: Checkout | None, cold_runs: int, warm_runs: int = 1):
        self.work, self.ours, self.other, self.cold_runs, self.warm_runs = work, ours, other, cold_runs, warm_runs
        self.started = time.perf_counter()
        self.locations: dict[str, str] = {}  # where each checkout's workers imported `rag` from
        self.database_url: str | None = None  # with --postgres: a server to make a database per measurement in
        self.largest: tuple[Path, Path] | None = None  # the largest corpus slice and its index (memory breakdown)

    @property
    def sides(self) -> list[Checkout]:
        return [self.ours] + ([self.other] if self.other else [])

    def say(self, message: str) -> None:
        print(f"[bench {time.perf_counter() - self.started:6.0f} s] {message}", file=sys.stderr, flush=True)

    def worker(
        self,
        name: str,
        *args: Any,
        side: Checkout,
        script: Path = WORKERS,
        timeout: float = WORKER_TIMEOUT_S,
        live: bool = False,
    ) -> Any:
        """Run a worker in a fresh process in the (empty) work folder, so no stray ./config.yaml is
        picked up, and return the JSON it printed. `-P`: the script's folder is not on sys.path.
        `live`: its stderr (a build's progress bar) goes straight to ours."""
        command = [sys.executable, "-P", str(script), name, *map(str, args)]
        stderr = None if live else subprocess.PIPE
        result = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=timeout, cwd=self.work, env=side.env()
        )
        if result.returncode != 0:
            output = result.stderr[-2000:] if result.stderr else "(its output is above)"
            raise RuntimeError(f"benchmark worker {name} ({side.name}) failed:\n{output}")
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        if isinstance(figures, dict) and "rag" in figures:
            self.locations[side.name] = figures["rag"]
        return figures

    def wall(self, command: list[str], side: Checkout) -> float:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, *command], capture_output=True, check=True, cwd=self.work, env=side.env(), timeout=600
        )
        return time.perf_counter() - started

    def cold_starts(
        self, doc: Path, indexes: dict[str, Path], starter_index: Path | None, question: str
    ) -> dict[str, float]:
        """Median wall time of a new process answering one question, runs interleaved."""
        times: dict[str, list[float]] = {}
        for run in range(self.cold_runs):
            self.say(f"cold start {run + 1}/{self.cold_runs}")
            for side in self.sides:
                ask = ["-m", "rag", "ask", "--doc", str(doc), "--index-dir", str(indexes[side.name]), question]
                times.setdefault(side.name, []).append(self.wall(ask, side))
            if starter_index is not None:
                first = ["-P", str(WORKERS), "baseline_first", str(starter_index), question]
                times.setdefault("starter", []).append(self.wall(first, self.ours))
        return {name: statistics.median(values) for name, values in times.items()}

    def warm(
        self, doc: Path, indexes: dict[str, Path], starter_index: Path | None, questions: list[str]
    ) -> dict[str, dict[str, float]]:
        """Warm latency and memory, the median over `warm_runs` processes each, runs interleaved."""
        runs: dict[str, list[dict[str, float]]] = {}
        for run in range(self.warm_runs):
            self.say(f"warm latency {run + 1}/{self.warm_runs}")
            for side in self.sides:
                figures = self.worker("ours_warm", doc, indexes[side.name], json.dumps(questions), side=side)
                runs.setdefault(side.name, []).append(figures)
            if starter_index is not None:
                figures = self.worker("baseline_warm", starter_index, json.dumps(questions), side=self.ours)
                runs.setdefault("starter", []).append(figures)
        keys = ("p50_ms", "p95_ms", "rss_mb", "rss_now_mb")
        return {
            name: {key: statistics.median(r[key] for r in results) for key in keys if key in results[0]}
            for name, results in runs.items()
        }

    def postgres(self, doc: Path, tag: str, questions: list[str], figures: dict[str, dict[str, Any]]) -> None:
        """Our engine on the PostgreSQL store, into `figures["ours"]`: the publish time (from the
        index `measure` built) and warm latency, the median over `warm_runs` processes."""
        assert self.database_url is not None
        from rag.database import new_database

        database = new_database(self.database_url, "bench_" + re.sub(r"\W", "_", tag))
        self.say(f"{tag}: publishing to PostgreSQL")
        built = self.work / f"{tag}-ours"
        published = self.worker("ours_publish", doc, built, database, side=self.ours, timeout=BUILD_TIMEOUT_S)
        runs = []
        for run in range(self.warm_runs):
            self.say(f"{tag}: warm latency on PostgreSQL {run + 1}/{self.warm_runs}")
            replica = self.work / f"{tag}-replica"
            runs.append(
                self.worker("ours_warm_postgres", doc, replica, json.dumps(questions), database, side=self.ours)
            )
        figures["ours"] |= {
            "pg_publish_s": published["publish_s"],
            "pg_p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "pg_p95_ms": statistics.median(r["p95_ms"] for r in runs),
        }

    def measure(self, doc: Path, tag: str, questions: list[str], starter: bool) -> dict[str, dict[str, Any]]:
        """Build, cold start and warm figures of every checkout (and the starter) on `doc`."""
        figures: dict[str, dict[str, Any]] = {}
        indexes = {side.name: self.work / f"{tag}-{side.name}" for side in self.sides}
        for side in self.sides:
            self.say(f"{tag}: building the index ({side.name})")
            figures[side.name] = self.worker(
                "ours_build", doc, indexes[side.name], side=side, timeout=BUILD_TIMEOUT_S, live=True
            )
        starter_index = self.work / f"{tag}-starter" if starter else None
        if starter_index is not None:
            self.say(f"{tag}: building the starter pattern's index")
            figures["starter"] = self.worker(
                "baseline_build", doc, starter_index, side=self.ours, timeout=BUILD_TIMEOUT_S
            )
        for name, seconds in self.cold_starts(doc, indexes, starter_index, questions[0]).items():
            figures[name]["cold_s"] = seconds
        for name, values in self.warm(doc, indexes, starter_index, questions).items():
            figures[name] |= values
        for values in figures.values():
            values["rate"] = values["passages"] / values["build_s"]
        if self.database_url is not None:
            self.postgres(doc, tag, questions, figures)
        return figures


def run(
    quick: bool = False,
    corpus: Path | None = None,
    bot: bool = True,
    cold_runs: int = 5,
    compare_with: Path | None = None,
    corpus_sizes: tuple[int, ...] | None = None,
    memory: bool = True,
    postgres: bool = False,
) -> str:
    """Run everything and return the printed report. `postgres`: also measure our engine on the
    PostgreSQL store, on the server of DATABASE_URL, else on one `scripts/postgres.sh` starts."""
    ours = Checkout("ours", SOURCE_ROOT if LOAD_SCRIPT.is_file() else None)  # a checkout's sources may not be installed
    other = Checkout(_revision(compare_with), compare_with.resolve()) if compare_with else None
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as folder:
        bench = Bench(Path(folder), ours, other, 1 if quick else cold_runs, 1 if quick else WARM_RUNS)
        with _postgres_server(bench, postgres):
            sections = _sections(bench, quick, corpus, corpus_sizes, bot)
        breakdowns = _memory(bench, bench.largest) if memory else {}
        elapsed = time.perf_counter() - bench.started
    header = "rag imported from: " + ", ".join(f"{s.name} {bench.locations.get(s.name, '?')}" for s in bench.sides)
    parts = [header, table(sections, [s.name for s in bench.sides]), memory_table(breakdowns)]
    return "\n\n".join(p for p in parts if p) + f"\n\nbenchmark run time: {elapsed / 60:.1f} min"


def _sections(
    bench: Bench, quick: bool, corpus: Path | None, corpus_sizes: tuple[int, ...] | None, bot: bool
) -> list[Section]:
    """The article, the corpus slices and the bot load test."""
    sections = [_article_section(bench, quick)]
    corpus_file = _corpus_text(corpus if quick else corpus or _default_corpus(), bench.work)
    sizes = corpus_sizes or (QUICK_CORPUS_SIZES if quick else CORPUS_SIZES)
    if corpus_file is not None:
        corpus_sections, bench.largest = _corpus_sections(bench, corpus_file, sorted(sizes), quick)
        sections += corpus_sections
    elif quick:
        slice_note = f"--corpus PATH adds a {QUICK_CORPUS_SIZES[0]}-passage slice"
        sections.append(Section(f"large corpus: skipped with --quick ({slice_note})", []))
    else:
        sections.append(Section("large corpus: none found (apt-get install python3.11-doc, or --corpus PATH)", []))
    if bot and quick:
        sections.append(Section("Telegram bot load test: skipped with --quick (it takes minutes; run without it)", []))
    elif bot:
        bench.say("Telegram load test")
        sections.append(_bot_section())
    return sections


@contextmanager
def _postgres_server(bench: Bench, wanted: bool) -> Iterator[None]:
    """Sets `bench.database_url` when `wanted`: DATABASE_URL's server, else a local one that
    `scripts/postgres.sh` runs in the work folder for the length of the run."""
    if not wanted:
        yield
        return
    if environment("DATABASE_URL"):
        bench.database_url = environment("DATABASE_URL")
        yield
        return
    if not POSTGRES_SCRIPT.is_file():
        raise RuntimeError("--postgres needs DATABASE_URL, or a source checkout (scripts/postgres.sh)")
    env = os.environ | {"POSTGRES_DIR": str(bench.work / "postgres"), "POSTGRES_PORT": "0", "PYTHON": sys.executable}
    script = ["bash", str(POSTGRES_SCRIPT)]
    bench.say("starting PostgreSQL (scripts/postgres.sh)")
    bench.database_url = subprocess.run(
        [*script, "start"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield
    finally:
        subprocess.run([*script, "stop"], env=env, capture_output=True, check=False)


def _article_section(bench: Bench, quick: bool) -> Section:
    questions = _questions()[: 3 if quick else None]
    figures = bench.measure(ARTICLE, "article", questions, starter=True)
    passages = bench.work / "passages.txt"
    passages.write_text(
        "\n".join(
            _sample_passages(None if quick else _corpus_text(_default_corpus(), bench.work), 64 if quick else 2000)
        )
    )
    for side in bench.sides:
        bench.say(f"embedding throughput ({side.name})")
        figures[side.name]["embed_rate"] = bench.worker("throughput", "ours", passages, side=side)["passages_per_s"]
    figures["starter"]["embed_rate"] = bench.worker("throughput", "baseline", passages, side=bench.ours)[
        "passages_per_s"
    ]
    ratio = ("ratio", 1.10)
    rows = [
        Row.of("passages in the index", figures, "passages"),
        Row.of("index build, article (s)", figures, "build_s"),
        Row.of(f"cold start to first answer, median of {bench.cold_runs} (s)", figures, "cold_s", ratio),
        Row.of(
            f"warm latency p50, {len(questions)} questions, median of {bench.warm_runs} (ms)", figures, "p50_ms", ratio
        ),
        Row.of("warm latency p95 (ms)", figures, "p95_ms"),
        Row.of("peak resident memory after answering (MB)", figures, "rss_mb", ratio),
        Row.of("embedding throughput (passages/s)", figures, "embed_rate"),
        *_postgres_rows(bench, figures),
    ]
    return Section(f"DW article ({ARTICLE.name})", rows)


def _postgres_rows(bench: Bench, figures: dict[str, dict[str, Any]]) -> list[Row]:
    """With --postgres: our engine on the PostgreSQL store, beside the FAISS rows above."""
    if bench.database_url is None:
        return []
    return [
        Row.of("PostgreSQL store: rag index of the built index, publishing it (s)", figures, "pg_publish_s"),
        Row.of(f"PostgreSQL store: warm latency p50, median of {bench.warm_runs} (ms)", figures, "pg_p50_ms"),
        Row.of("PostgreSQL store: warm latency p95 (ms)", figures, "pg_p95_ms"),
    ]


def _corpus_sections(
    bench: Bench, corpus_file: Path, sizes: list[int], quick: bool
) -> tuple[list[Section], tuple[Path, Path]]:
    """One section per corpus slice; the starter pattern runs on the smallest."""
    bench.say(f"slicing the corpus into {', '.join(f'{s:,}' for s in sizes)} passages")
    sliced = bench.worker("slice_corpus", corpus_file, bench.work, json.dumps(sizes), side=bench.ours, timeout=600)
    questions = CORPUS_QUESTIONS[: 3 if quick else None]
    sections, largest = [], (corpus_file, corpus_file)
    for size in sizes:
        doc = Path(sliced["slices"][str(size)]["file"])
        figures = bench.measure(doc, f"corpus-{size}", questions, starter=size == sizes[0])
        largest = (doc, bench.work / f"corpus-{size}-ours")
        big = figures["ours"]["passages"] >= 50_000  # issue 11's goals are for about 60,000 passages
        rows = [
            Row.of("passages in the index", figures, "passages"),
            Row.of("index build (s)", figures, "build_s"),
            Row.of("build throughput (passages/s)", figures, "rate", ("min", 442.0) if big else None),
            Row.of("index size on disk (MB)", figures, "index_mb", ("max", 120.0) if big else None),
            Row.of(
                f"cold start to first answer, median of {bench.cold_runs} (s)",
                figures,
                "cold_s",
                ("max", 1.5) if big else None,
            ),
            Row.of("peak resident memory while answering (MB)", figures, "rss_mb", ("max", 450.0) if big else None),
            Row.of("resident memory after answering (MB)", figures, "rss_now_mb"),
            Row.of(
                f"warm latency p50, {len(questions)} questions, median of {bench.warm_runs} (ms)", figures, "p50_ms"
            ),
            Row.of("warm latency p95 (ms)", figures, "p95_ms", ("max", 30.0) if big else None),
            *_postgres_rows(bench, figures),
        ]
        text_mb = doc.stat().st_size / 2**20
        title = f"corpus slice ~{size:,} passages: {text_mb:.2f} MB of text, FAISS {figures['ours'].get('faiss', '?')}"
        sections.append(Section(title, rows))
    return sections, largest


def _memory(bench: Bench, largest: tuple[Path, Path] | None) -> dict[str, dict[str, Any]]:
    """The memory breakdown of every checkout on the largest index built (else the article's)."""
    question = CORPUS_QUESTIONS[0] if largest else _questions()[0]
    result = {}
    for side in bench.sides:
        doc, index = largest if largest else (ARTICLE, bench.work / "article-ours")
        index = index.with_name(index.name.replace("-ours", f"-{side.name}"))
        bench.say(f"memory breakdown ({side.name})")
        result[side.name] = bench.worker("memory", doc, index, question, side=side, script=MEMORY_WORKER)
    return result


def _bot_section() -> Section:
    """The Telegram load test's printed figures (500 questions from 100 chats on a fake Bot API)."""
    title = "Telegram bot, 100 chats x 5 questions on a fake Bot API"
    if not LOAD_SCRIPT.is_file():
        return Section(f"{title}: skipped, it needs a source checkout (scripts/telegram_load.py)", [])
    command = [sys.executable, str(LOAD_SCRIPT)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=SOURCE_ROOT, timeout=WORKER_TIMEOUT_S)
    if result.returncode != 0 or not result.stdout.strip():
        return Section(f"{title}: the load script failed ({result.stderr.strip().splitlines()[-1:]})", [])
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    rate, p50, p95 = figures["answers_per_s"], figures["p50_ms"], figures["p95_ms"]
    return Section(
        title,
        [
            Row("answers/s", {"ours": rate}),
            Row("latency p50 (ms)", {"ours": p50}),
            Row("latency p95 (ms)", {"ours": p95}),
        ],
    )


def _revision(folder: Path) -> str:
    """A short name for another checkout: its git revision, else its folder name."""
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return folder.name
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else folder.name


def _questions() -> list[str]:
    items = [json.loads(line) for line in QUESTION_SET.read_text().splitlines() if line.strip()]
    return [item["question"] for item in items if "question" in item]


def _default_corpus() -> Path | None:
    return DEBIAN_PYTHON_DOCS if DEBIAN_PYTHON_DOCS.exists() else None


def _corpus_text(source: Path | None, work: Path) -> Path | None:
    """The large corpus as one text file: a file as is, or a folder's .txt files joined."""
    if source is None or source.is_file():
        return source
    target = work / "corpus.txt"
    if not target.exists():
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
