"""The compact passage store and the lazy answerer against the eager, in-memory reference.

The reference is the answering path of index format 4, kept here verbatim: a Featurizer that
computes every passage's terms, answer tokens, bigrams, lengths, neighbours, paragraph terms and
numbers, and the term weights, over the full in-memory list of nodes (`stored.nodes`, every
record read back from the docstore). The product path reads global statistics from the
persisted files and computes features only for the passages a question retrieves. On a generated
2,000-passage document with names, numbers, dates, pronoun openings and multi-sentence
paragraphs, both must give the same answers, citations, abstentions and confidences.
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from rag.answer import ExtractiveAnswerer
from rag.engine import Engine
from rag.lexical import TermWeights, content_terms, words
from rag.passages import LazyMap, Passages
from rag.rank import NUMBER, Featurizer, _bigrams, _paragraph, answer_tokens

NAMES = "Amara Bastien Corvin Dalia Emeka Farrah Gideon Halvard Ingrid Jovan Keiko Lorcan Mireille Nadim".split()
PLACES = "Tallinn Mombasa Valparaiso Tromso Kandy Ushuaia Oaxaca Timbuktu Bergen Hobart".split()
NOUNS = (
    "bridge harbour ledger tribunal archive treaty pipeline orchard vaccine satellite glacier railway "
    "budget census library reactor festival canal mine observatory"
).split()
VERBS = "inspected funded closed opened audited repaired expanded blocked approved surveyed".split()
MONTHS = "January March May July September November".split()


def sentence(rng: random.Random, first: bool) -> str:
    """One generated sentence; some open with a pronoun, as follow-on sentences do."""
    name, place, noun, verb = rng.choice(NAMES), rng.choice(PLACES), rng.choice(NOUNS), rng.choice(VERBS)
    count, year, month = rng.randint(2, 900), rng.randint(1950, 2024), rng.choice(MONTHS)
    forms = [
        f"In {month} {year}, {name} {verb} the {noun} near {place}.",
        f"The {noun} in {place} was {verb} by {name} after {count} complaints.",
        f"{name} said that {count} workers had {verb} the old {noun}.",
        f"Officials in {place} counted {count} visitors at the {noun} in {year}.",
    ]
    if not first:
        forms += [f"He later {verb} a second {noun} for {count} families.", f"It cost {count} million by {year}."]
    return rng.choice(forms)


def generated_document(paragraphs: int, seed: int = 11) -> str:
    rng = random.Random(seed)
    blocks = []
    for _ in range(paragraphs):
        count = rng.choice([1, 2, 3, 4, 5])
        blocks.append(" ".join(sentence(rng, i == 0) for i in range(count)))
    return "\n\n".join(blocks) + "\n"


def questions(document: str, seed: int = 5) -> list[str]:
    """Questions about the generated names, places and things, some about sentences that open with
    "He" (answered together with the sentence before), and two the document cannot answer."""
    rng = random.Random(seed)
    follow_ons = re.findall(r"He later (\w+) a second (\w+) for (\d+) families", document)
    asked = [f"Who later {verb} a second {noun} for {count} families?" for verb, noun, count in follow_ons[:15]]
    for _ in range(30):
        name, place, noun = rng.choice(NAMES), rng.choice(PLACES), rng.choice(NOUNS)
        asked += [
            f"Who {rng.choice(VERBS)} the {noun} near {place}?",
            f"How many complaints were there about the {noun} in {place}?",
            f"When did {name} inspect the {noun}?",
        ]
    return asked + ["What is the capital of France?", "Who won the football match in Lisbon?"]


class EagerFeaturizer(Featurizer):
    """Featurizer exactly as index format 4 built it: everything computed over all nodes at start."""

    def __init__(self, nodes, context_weight: float = 0.5):
        self.context_weight = context_weight
        self.terms = {n.node_id: set(content_terms(n.text)) for n in nodes}
        self.answer_tokens = {n.node_id: answer_tokens(n.text) for n in nodes}
        self.bigrams = {n.node_id: _bigrams(content_terms(n.text)) for n in nodes}
        self.numbers = {}
        self.length = {n.node_id: len(words(n.text)) for n in nodes}
        self.weights = TermWeights(self.terms.values())
        self.previous = {}
        self.next = {}
        self.paragraph_terms = {}
        for before, node in zip(nodes, nodes[1:], strict=False):
            if _paragraph(before) == _paragraph(node):
                self.previous[node.node_id], self.next[before.node_id] = before.node_id, node.node_id
        for node in nodes:
            self.paragraph_terms.setdefault(_paragraph(node), set()).update(self.terms[node.node_id])
            self.numbers.setdefault(_paragraph(node), set()).update(NUMBER.findall(node.text))


def comparable(answer) -> tuple:
    citations = [(c.n, c.text, c.start, c.end, c.paragraph, c.score, c.source) for c in answer.citations]
    confidence = None if answer.confidence is None else round(answer.confidence, 6)
    return answer.text, answer.abstained, confidence, citations, answer.parts


@pytest.fixture(scope="module")
def generated(tmp_path_factory, config):
    folder = tmp_path_factory.mktemp("generated")
    document = folder / "generated.txt"
    document.write_text(generated_document(700), encoding="utf-8")
    generated_config = config.model_copy(update={"documents": [document], "index_dir": folder / "index"})
    return Engine.open(generated_config)


@pytest.mark.slow
def test_the_lazy_store_answers_exactly_as_the_eager_in_memory_reference(generated):
    engine = generated
    nodes = engine.stored.nodes  # every record, read back from the docstore
    assert len(nodes) >= 2000 and len(engine.stored.passages) == len(nodes)
    texts = {d.source: d.text for d in engine.documents}
    config = engine.config
    model = engine.answerer.model
    reference = ExtractiveAnswerer(nodes, texts, config.answer, config.retrieval.top_k, model, engine.name)
    reference.features = EagerFeaturizer(nodes, config.answer.context_weight)
    lazy = engine.answerer
    assert lazy.weights.total == reference.weights.total
    assert dict(lazy.weights.counts) == dict(reference.weights.counts)  # persisted = recomputed
    outcomes = {"answered": 0, "abstained": 0, "two sentences": 0}
    for question in questions(engine.documents[0].text):
        candidates = engine.retriever.retrieve([question])
        ours, theirs = lazy.answer(question, candidates), reference.answer(question, candidates)
        assert comparable(ours) == comparable(theirs), question
        outcomes["abstained" if ours.abstained else "answered"] += 1
        outcomes["two sentences"] += len(ours.parts) == 2
        context = "Tell me about the railway in Bergen."
        follow = engine.retriever.retrieve([question, f"{question} {context}"])
        assert comparable(lazy.answer(question, follow, context)) == comparable(
            reference.answer(question, follow, context)
        ), question
    assert all(outcomes.values()), outcomes  # the comparison covered every kind of answer


def test_neighbours_and_paragraphs_come_from_the_arrays_as_from_the_node_list(generated):
    stored = generated.stored
    nodes = stored.nodes
    eager = EagerFeaturizer(nodes)
    lazy = Featurizer(stored.passages, weights=stored.weights)
    for node in nodes[:: max(len(nodes) // 300, 1)]:
        node_id = node.node_id
        assert lazy.previous.get(node_id) == eager.previous.get(node_id)
        assert lazy.next.get(node_id) == eager.next.get(node_id)
        assert (node_id in lazy.previous) == (node_id in eager.previous)
        assert lazy.paragraph_terms[_paragraph(node)] == eager.paragraph_terms[_paragraph(node)]
        assert lazy.numbers[_paragraph(node)] == eager.numbers[_paragraph(node)]
        assert lazy.terms[node_id] == eager.terms[node_id] and lazy.length[node_id] == eager.length[node_id]
    assert lazy.terms.get("no such passage", set()) == set()


def test_the_passage_arrays_round_trip_without_pickle(generated, tmp_path):
    passages = generated.stored.passages
    path = tmp_path / "passages.npz"
    passages.save(path)
    again = Passages.load(path, passages.node_by_id.__call__)
    for name in ("ids", "document", "paragraph", "start", "end", "df"):
        assert np.array_equal(getattr(again, name), getattr(passages, name)), name
    assert again.sources == passages.sources
    with np.load(path, allow_pickle=False) as data:
        assert all(data[name].dtype != object for name in data.files)


def test_lazy_values_are_cached_and_bounded():
    calls = []
    lazy = LazyMap(lambda key: calls.append(key) or (key * 2 if key >= 0 else None), size=3)
    assert [lazy[1], lazy[1], lazy.get(-1, "none")] == [2, 2, "none"]
    assert calls == [1, -1]
    for key in range(10):
        lazy.get(key)
    assert len(lazy._cache) == 3
    with pytest.raises(KeyError):
        lazy[-5]
