"""Fits the verifier's content thresholds on generic sentences made from SQuAD questions, not on
the labelled set (whose DW and licence parts stay report-only).

For each answerable question of the first 25 paragraphs of the fit articles, the claim is the
question with its answer appended ("When did Beyonce start becoming popular in the late 1990s"):
the question is the crowd worker's paraphrase of the passage, so the claim is a supported
paraphrase when it cites the passage holding the answer, and an unsupported one when it cites
the passage most similar to the question that does not hold the answer. Prints the thresholds
that maximise F0.5 of "kept" (`rag.verify_eval.fit`) and the counts.

    .venv/bin/python eval/verification_squad_fit.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from rag.answer import ExtractiveAnswerer, Scored
from rag.config import load_config
from rag.engine import Engine
from rag.generate import reply_checker
from rag.lexical import normalise
from rag.verify import FULL, MIN_COVERAGE, MIN_SIMILARITY
from rag.verify_eval import Decision, fit

ROOT = Path(__file__).resolve().parent.parent
FIT_ARTICLES = [
    "Beyoncé",
    "Frédéric_Chopin",
    "Sino-Tibetan_relations_during_the_Ming_dynasty",
    "The_Legend_of_Zelda:_Twilight_Princess",
    "2008_Sichuan_earthquake",
]


def decisions(titles: list[str]) -> list[Decision]:
    data = json.loads((ROOT / "eval" / "squad" / "train-v2.0-10-articles.json").read_text())
    folder = Path(tempfile.mkdtemp(prefix="verify-squad-fit-"))
    result = []
    for article in (a for a in data["data"] if a["title"] in titles):
        paragraphs = article["paragraphs"][:25]
        path = folder / f"{article['title'][:30]}.txt"
        path.write_text("\n\n".join(p["context"] for p in paragraphs), encoding="utf-8")
        engine = Engine.open(load_config(ROOT / "config.yaml", doc=path, index_dir=folder / path.stem))
        assert isinstance(engine.answerer, ExtractiveAnswerer)
        checker = reply_checker(engine.answerer, engine.retriever)
        verifier = replace(checker.verifier, min_coverage=0.0, min_similarity=-1.0)
        nodes = engine.stored.nodes
        for paragraph in paragraphs:
            for qa in paragraph["qas"]:
                if qa.get("is_impossible") or not qa["answers"]:
                    continue
                answer = normalise(qa["answers"][0]["text"])
                question = normalise(qa["question"]).rstrip("?").strip()
                claim = f"{question} {answer}"
                holding = [n for n in nodes if answer in normalise(n.text)]
                if not holding:
                    continue
                query = checker.embed(question)
                right = max(holding, key=lambda n: float(checker.stored_vector(n.node_id) @ query))
                wrong = max(
                    (n for n in nodes if answer.lower() not in normalise(n.text).lower()),
                    key=lambda n: float(checker.stored_vector(n.node_id) @ query),
                )
                for node, supported in ((right, True), (wrong, False)):
                    verdict = verifier.check(claim, [checker.evidence(Scored(node, 1.0))])
                    item = {"id": f"squad-{qa['id']}", "supported": supported, "sentence": claim}
                    result.append(Decision(item, verdict))
    return result


def main(titles: list[str]) -> None:
    scored = decisions(titles)
    coverage, similarity = fit(scored)
    candidates = [d for d in scored if d.verdict.kept]
    supported = sum(d.item["supported"] for d in candidates)
    print(f"{len(scored)} claims, {sum(d.item['supported'] for d in scored)} supported;")
    print(f"{len(candidates)} pass every check but the content one ({supported} supported)")
    print(f"fitted: min_coverage {coverage}, min_similarity {similarity}")
    for c, s in ((coverage, similarity), (MIN_COVERAGE, MIN_SIMILARITY)):
        kept = [
            d
            for d in candidates
            if d.verdict.coverage >= FULL or (d.verdict.coverage >= c and d.verdict.similarity >= s)
        ]
        good = sum(d.item["supported"] for d in kept)
        print(f"at ({c}, {s}): precision {good / max(len(kept), 1):.1%}, recall {good / max(len(scored) // 2, 1):.1%}")


if __name__ == "__main__":
    main(sys.argv[1:] or FIT_ARTICLES)
