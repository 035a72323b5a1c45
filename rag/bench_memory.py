"""Where the engine's memory goes: resident memory after each stage of opening it and answering.

Run by `rag bench` as a script (`python -P rag/bench_memory.py memory DOC INDEX_DIR QUESTION`, with
PYTHONPATH naming the checkout measured) and prints one JSON object. It calls `Engine.open` and
`Engine.ask` once, as a front end does, and measures resident memory (VmRSS) around the public
steps they go through: each step in `STAGES` is wrapped, by name, with a function that records
memory before and after the real call (nothing is replaced). A step that a checkout does not
have is skipped and listed; its memory then shows in the enclosing step's "rest". Deliberate
simplification: a step's figure is the change of resident memory while it ran, so memory it
freed again (a parsed JSON file, say) lowers it, and the peak is reported separately.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# (module, attribute path, what the step holds): wrapped when present, in any nesting.
STAGES = [
    ("rag.rank", "load_model", "ranker model"),
    ("rag.store", "load_documents", "documents read"),
    ("rag.embedding", "load_embed_model", "embedding model"),
    ("rag.store", "open_current", "index: FAISS + passages (docstore)"),  # from index format 6 on
    ("rag.store", "open_index", "index opened or updated (open_index)"),  # before: the index's only step
    ("faiss", "read_index", "FAISS index"),
    ("rag.retrieve", "HybridRetriever.__init__", "retriever"),
    ("rag.retrieve", "Bm25Index.__init__", "BM25 index"),
    ("rag.answer", "ExtractiveAnswerer.__init__", "answerer: ranker features"),
]
IMPORTS = ["rag.engine", "rag.store", "rag.retrieve", "rag.answer", "rag.rank", "llama_index.core", "faiss", "bm25s"]


def rss_mb() -> float:
    """Resident memory now (Linux /proc; elsewhere the peak so far)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@dataclass
class Step:
    label: str
    depth: int
    before: float
    after: float = 0.0
    children: float = 0.0  # the memory its wrapped sub-steps took
    nested: bool = False  # whether it has wrapped sub-steps


@dataclass
class Recorder:
    steps: list[Step] = field(default_factory=list)  # in the order they started
    stack: list[Step] = field(default_factory=list)

    def measure(self, label: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        step = Step(label, len(self.stack), rss_mb())
        self.steps.append(step)
        self.stack.append(step)
        try:
            return call(*args, **kwargs)
        finally:
            self.stack.pop()
            step.after = rss_mb()
            if self.stack:
                self.stack[-1].children += step.after - step.before
                self.stack[-1].nested = True

    def wrap(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def measured(*args: Any, **kwargs: Any) -> Any:
            return self.measure(label, function, *args, **kwargs)

        return measured

    def rows(self) -> list[dict[str, Any]]:
        """One row per step; under each step with sub-steps, after them, a row for the rest."""
        rows: list[dict[str, Any]] = []
        pending: list[Step] = []  # steps whose "rest" row comes after their sub-steps
        for step in [*self.steps, None]:
            while pending and (step is None or pending[-1].depth >= step.depth):
                done = pending.pop()
                rest = done.after - done.before - done.children
                rows.append(
                    {"stage": f"rest of {done.label}", "depth": done.depth + 1, "rss_mb": None, "delta_mb": rest}
                )
            if step is not None:
                delta = step.after - step.before
                rows.append({"stage": step.label, "depth": step.depth, "rss_mb": step.after, "delta_mb": delta})
                if step.nested:
                    pending.append(step)
        return rows


def instrument(recorder: Recorder) -> list[str]:
    """Wrap every step of `STAGES` that exists; return the ones that do not."""
    missing = []
    for module_name, path, label in STAGES:
        try:
            owner: Any = importlib.import_module(module_name)
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            setattr(owner, name, recorder.wrap(label, getattr(owner, name)))
        except (ImportError, AttributeError):
            missing.append(f"{module_name}.{path}")
    return missing


def breakdown(doc: str, index_dir: str, question: str) -> dict[str, Any]:
    """Import, open the engine on a built index, answer one question; memory after each step."""
    start = rss_mb()
    for module in IMPORTS:
        try:
            importlib.import_module(module)
        except ImportError:
            continue
    imported = rss_mb()
    recorder = Recorder()
    missing = instrument(recorder)
    from rag.config import load_config
    from rag.engine import Engine

    config = load_config(doc=Path(doc), index_dir=Path(index_dir))
    engine = recorder.measure("Engine.open", Engine.open, config)
    recorder.measure("first answer (Engine.ask)", engine.ask, question)
    rows = [
        {"stage": "Python interpreter", "depth": 0, "rss_mb": start, "delta_mb": start},
        {"stage": "libraries imported", "depth": 0, "rss_mb": imported, "delta_mb": imported - start},
        *recorder.rows(),
    ]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": rows, "peak_mb": peak, "missing": missing, "passages": len(engine.stored.nodes)}


if __name__ == "__main__":
    print(json.dumps(breakdown(*sys.argv[2:5])))  # argv[1] is the worker's name, "memory"
