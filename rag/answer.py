"""Answers with citations: the `Answer`/`Citation` types and the offline extractive answerer.

The extractive answerer quotes the document. The learned ranker (`rag.rank`) scores every
retrieved sentence; the answer is the best one, preceded by the sentence before it when it opens
with a pronoun such as "He" or "They" (so the answer names who is meant), and joined by the
adjacent sentence when the ranker gives that one at least ``answer.neighbour_ratio`` of the best
one's probability (answers often run on into the next sentence, or name their subject in the one
before). Each quoted sentence has its own citation number. The confidence model then gives the
probability that the quote answers the question; below ``answer.min_confidence`` (default: the
threshold chosen when the model was trained, at most about 10 % wrong abstentions on unseen
articles) the answerer says the document does not say, and lists the closest passages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rag.config import AnswerConfig
from rag.ingest import display_path
from rag.lexical import TermWeights, normalise
from rag.rank import Featurizer, RankerModel, sigmoid, softmax
from rag.retrieve import NodesById
from rag.short_answer import load_short_answer

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

    from rag.passages import Passages
    from rag.retrieve import Candidate


@dataclass(frozen=True)
class Citation:
    n: int
    text: str  # the quoted passage, whitespace-normalised; equals document[start:end] normalised
    start: int
    end: int
    paragraph: int
    score: float
    source: str
    page: int | None = None  # 1-based PDF page; None for formats without pages
    section: str | None = None  # the nearest heading above the passage; None when there is none
    passage_id: str = ""  # the passage's id in the index: stable across folders and replicas (not in the JSON)

    def to_json(self) -> dict[str, Any]:
        """The fixed citation JSON (README, "Formats")."""
        record = asdict(self)
        del record["passage_id"]
        return record


@dataclass(frozen=True)
class ShortAnswer:
    """The span of the quote that answers the question: `text` is document[start:end] normalised;
    it sits in quoted sentence `part` (of `Answer.parts`) at character `offset` of that part's text."""

    text: str
    start: int
    end: int
    part: int
    offset: int

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "start": self.start, "end": self.end}


@dataclass
class Answer:
    question: str
    text: str
    abstained: bool
    citations: list[Citation] = field(default_factory=list)
    latency_ms: float = 0.0
    mode: str = "extractive"  # which path produced the answer: "extractive" or "generative"
    dropped_sentences: int = 0  # generated sentences removed by verification
    confidence: float | None = None  # the probability that a quoted answer answers the question
    parts: list[tuple[str, int]] = field(default_factory=list)  # quoted sentences with their citation numbers
    short_answer: ShortAnswer | None = None  # the span of the quote that answers the question, when confident

    def to_record(self) -> dict[str, Any]:
        """Every field, as JSON-ready values (`from_record` restores the answer): for state kept
        outside the process, such as the PostgreSQL bot state."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Answer:
        fields = dict(record)
        fields["citations"] = [Citation(**c) for c in record["citations"]]
        fields["parts"] = [(text, int(n)) for text, n in record["parts"]]
        short = record.get("short_answer")
        fields["short_answer"] = ShortAnswer(**short) if short else None
        return cls(**fields)

    def to_json(self, item_id: str = "q1", turn: int = 0) -> dict[str, Any]:
        """The fixed answer JSON (README, "Formats")."""
        return {
            "id": item_id,
            "turn": turn,
            "question": self.question,
            "answer": self.text,
            "abstained": self.abstained,
            "citations": [c.to_json() for c in self.citations],
            "latency_ms": round(self.latency_ms, 2),
            "mode": self.mode,
            "dropped_sentences": self.dropped_sentences,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "short_answer": None if self.short_answer is None else self.short_answer.to_json(),
        }


@dataclass(frozen=True)
class Scored:
    node: TextNode
    score: float


@dataclass
class Ranked:
    """One question ranked once: the extractive answer and the passages it ranked first."""

    answer: Answer  # the extractive answer, or its abstention
    passages: list[Scored]  # the top_k passages by the ranker's probability, best first
    citations: list[Citation]  # those passages as citations numbered 1..top_k


class Answerer(Protocol):
    """What every answerer offers the engine."""

    def answer(
        self,
        question: str,
        candidates: list[Candidate],
        context: str = "",
        on_draft: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer `question` from retrieval `candidates`, with the conversation `context`."""
        ...

    def standalone(self, question: str, context: str) -> tuple[str, str]:
        """The question to retrieve with, and the context to keep."""
        ...


class ExtractiveAnswerer:
    """Quotes the sentence the learned ranker puts first, or abstains when confidence is low."""

    def __init__(
        self,
        nodes: list[TextNode] | Passages,
        texts: dict[str, str],
        config: AnswerConfig,
        top_k: int,
        model: RankerModel,
        document: str,
        weights: TermWeights | None = None,
    ):
        """Over `nodes` in document order, or an index's `Passages` and its persisted term `weights`
        (then passages are read, and their features computed, only when retrieved)."""
        self.config = config
        self.top_k = top_k
        self.texts = texts  # source -> full document text, for citation slices
        self.model = model
        self.features = Featurizer(nodes, config.context_weight, weights)
        self.passages = self.features.passages
        self.terms = self.features.terms
        self.nodes = NodesById(self.passages)
        self.threshold = model.threshold if config.min_confidence is None else config.min_confidence
        self.short_answers = load_short_answer(model)
        self.abstain_message = config.abstain_message.replace("{document}", document)

    def answer(
        self,
        question: str,
        candidates: list[Candidate],
        context: str = "",
        on_draft: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer `question` from retrieval `candidates`; `context` is the conversation so far.
        (`on_draft` is the generative answerer's; a quote has no drafts.)"""
        return self.answer_and_passages(question, candidates, context).answer

    def answer_and_passages(self, question: str, candidates: list[Candidate], context: str = "") -> Ranked:
        """The answer and the top passages it was chosen from, from one ranking of the candidates."""
        ranked, confidence = self.ranked(question, candidates, context)
        top = ranked[: self.top_k]
        return Ranked(self._answer(question, ranked, confidence), top, self.citations(top))

    def _answer(self, question: str, ranked: list[Scored], confidence: float) -> Answer:
        """The quote resting on the first passage, or the abstention when confidence is low."""
        if not ranked or confidence < self.threshold:
            closest = ranked[:1] + [s for s in ranked[1:2] if s.score >= self.config.citation_min_score]
            return Answer(question, self.abstain_message, True, self.citations(closest), confidence=confidence)
        best = ranked[0]
        quoted = self._quoted(best, ranked[1:])
        probability = {s.node.node_id: s.score for s in ranked}  # a pronoun's antecedent may not be ranked (0)
        cited = _unique(  # numbered as read: the quoted sentences in their order, then the other close ones
            [Scored(node, probability.get(node.node_id, 0.0)) for node in quoted]
            + [s for s in ranked[1:] if s.score >= self.config.citation_min_score]
        )
        citations = self.citations(cited[: max(self.top_k, len(quoted))])
        number = {s.node.node_id: n for n, s in enumerate(cited, start=1)}
        parts = [(normalise(node.text), number[node.node_id]) for node in quoted]
        return Answer(
            question,
            " ".join(text for text, _ in parts),
            False,
            citations,
            confidence=confidence,
            parts=parts,
            short_answer=self._short_answer(question, quoted, best.node),
        )

    def _short_answer(self, question: str, quoted: list[TextNode], best: TextNode) -> ShortAnswer | None:
        """The span of the `quoted` sentences that answers `question` (see `rag.short_answer`)."""
        if self.short_answers is None:
            return None
        raws = [n.text for n in quoted]  # each node's text is its document's slice (chunking guarantees it)
        ids = [n.node_id for n in quoted]
        tagged = [self.passages.spans(self._position(n)) for n in quoted]
        found = self.short_answers.best(question, raws, tagged, ids.index(best.node_id))
        if found is None:
            return None
        span = found[0]
        start = quoted[span.sentence].metadata["start"]
        offset = len(normalise(raws[span.sentence][: span.start] + "x")) - 1  # where the span starts once normalised
        return ShortAnswer(normalise(span.text), start + span.start, start + span.end, span.sentence, offset)

    def standalone(self, question: str, context: str) -> tuple[str, str]:
        """The question to retrieve with, and the context to keep: here both unchanged (the
        follow-up is retrieved and scored together with the conversation)."""
        return question, context

    def ranked(self, question: str, candidates: list[Candidate], context: str = "") -> tuple[list[Scored], float]:
        """Candidates by probability, best first, and the confidence that the first answers the question."""
        x = self.features.candidates(question, candidates, context)
        scores = self.model.ranker(x) if len(candidates) else np.zeros(0)
        allowed = self.features.offers_kind(question, candidates)
        confidence = sigmoid(
            float(self.model.confidence(self.features.question(question, candidates, x, scores, allowed)))
        )
        probabilities = softmax(scores) if len(candidates) else scores
        ranked = sorted(
            (Scored(c.node, float(p)) for c, p, ok in zip(candidates, probabilities, allowed, strict=True) if ok),
            key=lambda s: s.score,
            reverse=True,
        )
        return ranked, confidence

    @property
    def weights(self) -> TermWeights:
        """Inverse document frequency of the indexed passages' terms."""
        return self.features.weights

    def preceding(self, node: TextNode) -> list[TextNode]:
        """The passages before `node` in its paragraph and in the paragraph before, nearest first."""
        result: list[TextNode] = []
        paragraphs: set[int] = {node.metadata["paragraph"]}
        for i in range(self._position(node) - 1, -1, -1):
            before = self.passages.node(i)
            if before.metadata["source"] != node.metadata["source"]:
                break
            paragraphs.add(before.metadata["paragraph"])
            if len(paragraphs) > 2:
                break
            result.append(before)
        return result

    def _position(self, node: TextNode) -> int:
        position = self.passages.position(node.node_id)
        if position is None:
            raise KeyError(node.node_id)
        return position

    def _quoted(self, best: Scored, others: list[Scored]) -> list[TextNode]:
        """The passages an answer resting on `best` quotes (see `Featurizer.quoted`)."""
        ids = self.features.quoted(
            best.node.node_id,
            best.node.text,
            ((s.node.node_id, s.score) for s in others),
            best.score,
            self.config.neighbour_ratio,
        )
        return [best.node if node_id == best.node.node_id else self.nodes[node_id] for node_id in ids]

    def citations(self, scored: list[Scored]) -> list[Citation]:
        return [self._citation(n, s) for n, s in enumerate(scored, start=1)]

    def _citation(self, n: int, scored: Scored) -> Citation:
        meta = scored.node.metadata
        text = self.texts[meta["source"]][meta["start"] : meta["end"]]
        return Citation(
            n,
            normalise(text),
            meta["start"],
            meta["end"],
            meta["paragraph"],
            round(scored.score, 4),
            display_path(Path(meta["source"])),
            meta.get("page"),
            meta.get("section") or None,
            scored.node.node_id,
        )


def _unique(scored: list[Scored]) -> list[Scored]:
    seen, result = set(), []
    for s in scored:
        if s.node.node_id not in seen:
            seen.add(s.node.node_id)
            result.append(s)
    return result
