"""Generalisation check of the verifier on documents it was not designed on (SQuAD articles).

Each sentence of the first 25 paragraphs of the chosen articles is checked against itself
(verbatim: should be kept) and in three perturbed forms (should be dropped): a number raised by
one, "not" inserted after the first is/was/are/were, and a capitalised word swapped for another
name of the same article. Names are swapped in three ways, reported separately: a name inside the
sentence for an unrelated one ("name"), for one sharing its first four letters ("name-lookalike":
"Johnson" for "John"), and the sentence's first word, when the article uses it as a name, for an
unrelated name ("name-first"). Prints how many of each kind were kept.

    .venv/bin/python eval/verification_perturb.py Solar_energy New_York_City Beyoncé IPod
"""

from __future__ import annotations

import json
import random
import re
import sys
import tempfile
from pathlib import Path

from rag.answer import ExtractiveAnswerer, Scored
from rag.config import load_config
from rag.engine import Engine
from rag.generate import reply_checker
from rag.lexical import normalise

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"(?<=[a-z,] )[A-Z][a-z]{3,}\b")  # a capitalised word inside a sentence
FIRST = re.compile(r"^[A-Z][a-z]{3,}\b")


def perturbations(text: str, names: list[str], rng: random.Random) -> dict[str, str]:
    """The sentence itself and its perturbed forms, by kind."""
    cases = {"verbatim": text}
    numbers = re.findall(r"\b\d+\b", text)
    if numbers:
        n = rng.choice(numbers)
        cases["number"] = re.sub(rf"\b{n}\b", str(int(n) + 1), text, count=1)
    verb = re.search(r"\b(is|was|are|were)\b", text)
    if verb:
        cases["negation"] = text[: verb.end()] + " not" + text[verb.end() :]
    own = NAME.findall(text)
    others = [x for x in names if x not in text]
    if own and others:
        word = rng.choice(own)
        unrelated = [x for x in others if x[:4] != word[:4]]
        alike = [x for x in others if x[:4] == word[:4]]
        if unrelated:
            cases["name"] = re.sub(rf"\b{word}\b", rng.choice(unrelated), text, count=1)
        if alike:
            cases["name-lookalike"] = re.sub(rf"\b{word}\b", rng.choice(alike), text, count=1)
    first = FIRST.match(text)
    if first and first.group(0) in names:
        unrelated = [x for x in names if x not in text and x[:4] != first.group(0)[:4]]
        if unrelated:
            cases["name-first"] = rng.choice(unrelated) + text[first.end() :]
    return cases


def main(titles: list[str]) -> None:
    data = json.loads((ROOT / "eval" / "squad" / "train-v2.0-10-articles.json").read_text())
    rng = random.Random(1)
    kept: dict[str, list[int]] = {}
    folder = Path(tempfile.mkdtemp(prefix="verify-perturb-"))
    for article in (a for a in data["data"] if a["title"] in titles):
        path = folder / f"{article['title'][:30]}.txt"
        path.write_text("\n\n".join(p["context"] for p in article["paragraphs"][:25]), encoding="utf-8")
        engine = Engine.open(load_config(ROOT / "config.yaml", doc=path, index_dir=folder / path.stem))
        assert isinstance(engine.answerer, ExtractiveAnswerer)
        checker = reply_checker(engine.answerer, engine.retriever)
        nodes = [n for n in engine.stored.nodes if len(n.text.split()) >= 6]
        names = sorted({w for n in nodes for w in NAME.findall(n.text)})
        for node in nodes:
            evidence = [checker.evidence(Scored(node, 1.0))]
            for kind, claim in perturbations(normalise(node.text).rstrip("."), names, rng).items():
                counts = kept.setdefault(kind, [0, 0])
                counts[0] += checker.verifier.check(claim, evidence).kept
                counts[1] += 1
    for kind, (k, n) in kept.items():
        print(f"{kind:9} kept {k}/{n}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["Solar_energy", "New_York_City", "Beyoncé", "IPod"])
