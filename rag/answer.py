"""Answers with citations: the `Answer`/`Citation` types and the offline extractive answerer.

The extractive answerer quotes the document: its answer is the best-scoring passage (plus the
sentence before it when the passage opens with a pronoun such as "He" or "They", so the answer
names who is meant). A passage's score blends its cosine similarity to the question with the
IDF-weighted share of the question's content words it contains. The answerer abstains when

- the question names something (a capitalised word) that appears nowhere in the document,
- no passage of the expected kind exists ("how many" needs a number, "when" a time; "how many
  soldiers" also needs the word "soldiers"), or
- the best score is below ``answer.min_score`` (calibrated with `python -m rag eval`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rag.config import AnswerConfig
from rag.lexical import TermWeights, content_terms, stem, words

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

    from rag.retrieve import Candidate

PRONOUN_OPENING = re.compile(r"^\W*(he|she|they|it|this|these|those|his|her|their|its)\b", re.I)
NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    r"hundred|thousand|million|billion|dozen|several|first|second|third|half)\b",
    re.I,
)
TIME = re.compile(
    r"\d{4}|\d{1,2}(st|nd|rd|th)?\b|\b(january|february|march|april|may|june|july|august|september|october|"
    r"november|december|monday|tuesday|wednesday|thursday|friday|saturday|sunday|yesterday|today|"
    r"tomorrow|year|month|week|day|century|decade|ago|earlier|later|since|until|before|after|during)\b",
    re.I,
)
NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][\w’'-]+")


@dataclass(frozen=True)
class Citation:
    n: int
    text: str  # the quoted passage, whitespace-normalised; equals document[start:end] normalised
    start: int
    end: int
    paragraph: int
    score: float
    source: str


@dataclass
class Answer:
    question: str
    text: str
    abstained: bool
    citations: list[Citation] = field(default_factory=list)
    latency_ms: float = 0.0
    mode: str = "extractive"  # which path produced the answer: "extractive" or "generative"
    dropped_sentences: int = 0  # generated sentences removed by verification

    def to_json(self, item_id: str = "q1", turn: int = 0) -> dict[str, Any]:
        """The fixed answer JSON of DESIGN.md."""
        return {
            "id": item_id,
            "turn": turn,
            "question": self.question,
            "answer": self.text,
            "abstained": self.abstained,
            "citations": [asdict(c) for c in self.citations],
            "latency_ms": round(self.latency_ms, 2),
            "mode": self.mode,
            "dropped_sentences": self.dropped_sentences,
        }


@dataclass(frozen=True)
class Scored:
    node: TextNode
    score: float


def normalise(text: str) -> str:
    return " ".join(text.split())


def expected_kind(question: str) -> str | None:
    """What the answer must contain: "number", "time" or "name"; None when anything will do."""
    q = question.lower()
    if re.search(r"\bhow (many|much|long|old|often)\b|\bwhat (number|percentage|amount)\b", q):
        return "number"
    if re.search(r"^\W*when\b|\bwhat (year|date|month|day|time)\b|\bin which year\b", q):
        return "time"
    if re.search(r"^\W*(who|whom|whose|where)\b", q):
        return "name"
    return None


def fits_kind(text: str, kind: str | None) -> bool:
    if kind == "number":
        return bool(NUMBER.search(text))
    if kind == "time":
        return bool(TIME.search(text))
    if kind == "name":
        return bool(NAME.search(text)) or bool(PRONOUN_OPENING.match(text))
    return True


def counted_things(question: str) -> set[str]:
    """Stems of what a "how many ..." question counts ("how many US soldiers" -> {"us", "soldier"})."""
    match = re.search(r"\bhow many ((?:\S+\s+){0,1}\S+)", question.lower())
    return set(content_terms(match.group(1))) if match else set()


def unknown_names(question: str, vocabulary: TermWeights) -> list[str]:
    """Capitalised words of the question (not its first word) that the document never uses."""
    names = [w for w in NAME.findall(question.strip()) if w != "I"]
    return [n for n in names if all(stem(w) not in vocabulary for w in words(n))]


class ExtractiveAnswerer:
    """Quotes the passage that best answers the question, or abstains."""

    def __init__(self, nodes: list[TextNode], texts: dict[str, str], config: AnswerConfig, top_k: int):
        self.config = config
        self.top_k = top_k
        self.texts = texts  # source -> full document text, for citation slices
        self.previous = _previous_passages(nodes)
        self.terms = {node.node_id: set(content_terms(node.get_content(metadata_mode="embed"))) for node in nodes}
        self.weights = TermWeights(self.terms.values())

    def answer(self, question: str, candidates: list[Candidate], context: str = "", on_draft: Callable[[str], None] | None = None) -> Answer:
        """Answer `question` from retrieval `candidates`; `context` is the conversation so far.
        (`on_draft` is the generative answerer's; a quote has no drafts.)"""
        ranked = self.rank(question, candidates, context)
        kind, counted = expected_kind(question), counted_things(question)
        fitting = [s for s in ranked if self._has_kind_of_answer(s.node, kind, counted)]
        if unknown_names(question, self.weights) or not fitting or fitting[0].score < self.config.min_score:
            closest = [s for s in ranked[:2] if s.score >= self.config.citation_min_score]
            return Answer(question, self.config.abstain_message, True, self.citations(closest))
        best = fitting[0]
        quoted = self._quoted(best.node)
        text = " ".join(normalise(node.text) for node in quoted)
        cited = [best] + [Scored(node, best.score) for node in quoted if node is not best.node]
        cited += [s for s in ranked if s.score >= self.config.citation_min_score]
        return Answer(question, text, False, self.citations(_unique(cited)[: max(self.top_k, len(quoted))]))

    def _has_kind_of_answer(self, node: TextNode, kind: str | None, counted: set[str]) -> bool:
        """Whether the passage (with its antecedent) holds the kind of answer asked for."""
        quoted = self._quoted(node)
        if not fits_kind(" ".join(n.text for n in quoted), kind):
            return False
        return not counted or any(counted & self.terms[n.node_id] for n in quoted)

    def standalone(self, question: str, context: str) -> tuple[str, str]:
        """The question to retrieve with, and the context to keep: here both unchanged (the
        follow-up is retrieved and scored together with the conversation)."""
        return question, context

    def rank(self, question: str, candidates: list[Candidate], context: str = "") -> list[Scored]:
        """Candidates by score: cosine similarity plus weighted term coverage.

        For a follow-up (`context` given) both the similarity and the coverage blend the question
        alone with the question read together with the conversation.
        """
        terms = content_terms(question)
        context_terms = content_terms(context)
        share = self.config.context_weight if context_terms else 0.0
        scored = []
        for candidate in candidates:
            passage_terms = self.terms[candidate.node.node_id]
            coverage = self.weights.coverage(terms, passage_terms)
            similarity = candidate.similarities[0]
            if share:
                coverage = (1 - share) * coverage + share * self.weights.coverage(context_terms, passage_terms)
                similarity = (1 - share) * similarity + share * candidate.similarities[-1]
            scored.append(Scored(candidate.node, similarity + self.config.lexical_weight * coverage))
        return sorted(scored, key=lambda s: s.score, reverse=True)

    def _quoted(self, node: TextNode) -> list[TextNode]:
        """The passages an answer resting on `node` quotes: `node`, preceded by the sentence
        before it when `node` opens with a pronoun that refers back."""
        antecedent = self.previous.get(node.node_id) if PRONOUN_OPENING.match(node.text) else None
        return [node] if antecedent is None else [antecedent, node]

    def citations(self, scored: list[Scored]) -> list[Citation]:
        return [self._citation(n, s) for n, s in enumerate(scored, start=1)]

    def _citation(self, n: int, scored: Scored) -> Citation:
        meta = scored.node.metadata
        text = self.texts[meta["source"]][meta["start"] : meta["end"]]
        return Citation(n, normalise(text), meta["start"], meta["end"], meta["paragraph"], round(scored.score, 4), meta["source"])


def _previous_passages(nodes: list[TextNode]) -> dict[str, TextNode]:
    """Each passage's predecessor in the same document and section."""
    previous = {}
    for before, node in zip(nodes, nodes[1:]):
        same_place = all(before.metadata[k] == node.metadata[k] for k in ("source", "section"))
        if same_place:
            previous[node.node_id] = before
    return previous


def _unique(scored: list[Scored]) -> list[Scored]:
    seen, result = set(), []
    for s in scored:
        if s.node.node_id not in seen:
            seen.add(s.node.node_id)
            result.append(s)
    return result
