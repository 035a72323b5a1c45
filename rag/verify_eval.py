"""The verifier on the labelled set ``eval/verification.jsonl`` (README, "Formats"): precision and
recall of "kept" per part, and the fit of the content thresholds.

    python -m rag.verify eval/verification.jsonl [--fit PART]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.answer import ExtractiveAnswerer, Scored
from rag.lexical import normalise
from rag.verify import FULL, MIN_COVERAGE, MIN_SIMILARITY, Verdict

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Decision:
    item: dict[str, Any]
    verdict: Verdict

    @property
    def part(self) -> str:
        """The item's part of the set: its id up to the first '-' ("dw", "lic")."""
        return str(self.item["id"]).split("-")[0]


def load_items(path: Path) -> list[dict[str, Any]]:
    """The labelled sentences (README, "Formats": verification set)."""
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def decide(
    items: list[dict[str, Any]],
    index_dir: Path,
    min_coverage: float = MIN_COVERAGE,
    min_similarity: float = MIN_SIMILARITY,
) -> list[Decision]:
    """Each item's verdict from the real checker on a real engine per document (indexes under
    `index_dir`), with the given content thresholds."""
    from rag.config import load_config
    from rag.engine import Engine
    from rag.generate import reply_checker

    decisions = []
    for document in dict.fromkeys(item["document"] for item in items):
        path = Path(document) if Path(document).exists() else ROOT / document
        engine = Engine.open(load_config(ROOT / "config.yaml", doc=path, index_dir=index_dir / path.stem))
        extractive = engine.answerer
        assert isinstance(extractive, ExtractiveAnswerer)
        checker = reply_checker(extractive, engine.retriever)
        checker.verifier = replace(checker.verifier, min_coverage=min_coverage, min_similarity=min_similarity)
        for item in (i for i in items if i["document"] == document):
            passages = [Scored(_node_with(engine.stored.nodes, text), 1.0) for text in item["passages"]]
            evidence = [checker.evidence(p) for p in passages]
            decisions.append(Decision(item, checker.check(item["question"], item["sentence"], evidence)))
    return decisions


def _node_with(nodes: Sequence[TextNode], text: str) -> TextNode:
    for node in nodes:
        if normalise(text) in normalise(node.text):
            return node
    raise ValueError(f"no passage of the document contains {text[:60]!r}")


def precision_recall(decisions: Sequence[Decision]) -> tuple[float, float, int]:
    """Precision and recall of "kept" (a supported sentence is a positive), and the item count."""
    kept = [d for d in decisions if d.verdict.kept]
    good = sum(bool(d.item["supported"]) for d in kept)
    supported = sum(bool(d.item["supported"]) for d in decisions)
    return (good / len(kept) if kept else 0.0), (good / supported if supported else 0.0), len(decisions)


def fit(decisions: Sequence[Decision]) -> tuple[float, float]:
    """The (min_coverage, min_similarity) that maximise F0.5 of "kept" on `decisions` (scored with
    both thresholds at zero): precision counts double, since a dropped sentence falls back to the
    extractive quote while a kept wrong one misleads. Among equally good thresholds, the one
    nearest the centre of their region (the widest margin either side)."""
    candidates = [d for d in decisions if d.verdict.kept]  # passed every check but the content one
    positives = sum(bool(d.item["supported"]) for d in decisions)
    grid = [round(float(x), 2) for x in np.arange(0.0, 1.0001, 0.05)]
    scores: dict[tuple[float, float], float] = {}
    for c in grid:
        for s in grid:
            kept = [
                d
                for d in candidates
                if d.verdict.coverage >= FULL or (d.verdict.coverage >= c and d.verdict.similarity >= s)
            ]
            good = sum(bool(d.item["supported"]) for d in kept)
            p, r = (good / len(kept) if kept else 0.0), (good / positives if positives else 0.0)
            scores[c, s] = 1.25 * p * r / (0.25 * p + r) if p + r else 0.0
    best = max(scores.values())
    tied = [key for key, score in scores.items() if score >= best - 1e-9]
    centre = np.mean(tied, axis=0)
    return min(tied, key=lambda key: float(np.hypot(key[0] - centre[0], key[1] - centre[1])))


def report(decisions: Sequence[Decision]) -> str:
    """Precision and recall of "kept" per part and overall, then the wrong decisions."""
    lines = [f"{'part':<8} {'items':>5} {'precision':>9} {'recall':>7}"]
    for part in [*dict.fromkeys(d.part for d in decisions), "all"]:
        subset = [d for d in decisions if part in ("all", d.part)]
        p, r, n = precision_recall(subset)
        lines.append(f"{part:<8} {n:>5} {p:>9.1%} {r:>7.1%}")
    wrong = [d for d in decisions if d.verdict.kept != d.item["supported"]]
    lines.append(f"\nwrong decisions ({len(wrong)}):")
    for d in wrong:
        what = "kept unsupported" if d.verdict.kept else f"dropped supported ({d.verdict.reason})"
        lines.append(f"  {d.item['id']} [{d.item['kind']}] {what}: {d.item['sentence']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rag.verify", description="Precision and recall of the verifier's 'kept'."
    )
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--index-dir", type=Path, default=Path(tempfile.gettempdir()) / "rag-verification-index")
    parser.add_argument(
        "--fit", metavar="PART", help="fit the content thresholds on this part (e.g. dw) and report with them"
    )
    args = parser.parse_args(argv)
    items = load_items(args.dataset)
    coverage, similarity = MIN_COVERAGE, MIN_SIMILARITY
    if args.fit:
        scored = decide(items, args.index_dir, min_coverage=0.0, min_similarity=-1.0)
        coverage, similarity = fit([d for d in scored if d.part == args.fit])
        print(f"fitted on {args.fit}: min_coverage {coverage}, min_similarity {similarity}")
    print(report(decide(items, args.index_dir, coverage, similarity)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
