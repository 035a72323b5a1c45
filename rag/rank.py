"""The learned ranker and answer confidence: features of (question, passage), weights fitted on data.

Two small models, both fitted by `rag.train` on SQuAD training articles and shipped as JSON
(``rag/models/ranker.json``, about 24 KB; no pickle, no download):

- the **ranker**, linear, scores each retrieved passage from its features (dense and BM25 scores,
  ranks and gaps to the best candidate, IDF-weighted coverage of the question's words by the
  sentence, its neighbours and its paragraph, how much closer in meaning its neighbours and its
  paragraph's best sentence are to the question than it is, shared word pairs and names, answer-type matches,
  position); a softmax over the candidates gives each one's probability of holding the answer;
- the **confidence** model, one small hidden layer (unanswerable questions come in kinds,
  off-topic ones and ones with one detail changed, which one straight line separates badly),
  turns the ranking (top probability and margin, the best passage's coverage, question words
  and names the document or the best paragraph never uses, words the document uses but not near
  the best passage, pairs of words of one name that no retrieved passage holds side by side, ...)
  into the probability that the quoted passage answers the question. The answerer abstains
  below ``answer.min_confidence``, a probability, so one threshold means the same thing on
  every document.

Deliberate simplifications: small models over hand-named features (fast, inspectable, trained
in a minute), sentence-level only; no reader model extracts a span.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.errors import ModelError
from rag.lexical import TermWeights, content_terms, words

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

    from rag.passages import Passages
    from rag.retrieve import Candidate

MODEL_FILE = Path(__file__).parent / "models" / "ranker.json"  # fitted with the default embedder's vectors
# rankers fitted with another embedder's vectors, by `embedding.model` (its cosine features differ)
EMBEDDER_MODEL_FILES = {
    name: MODEL_FILE.with_name(f"ranker-{name.removeprefix('sentence-transformers/')}.json")
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "multilingual-e5-small")
}
FORMAT = 2

NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][\w’'-]+")
NUMBER = re.compile(r"\b\d[\d,.]*\b")
# a name of several capitalised words, possibly joined by "of", "of the", "the" or "de" ("Ocarina of Time")
NAME_PHRASE = re.compile(r"(?<!^)\b[A-Z][\w’'-]+(?:\s+(?:of\s+(?:the\s+)?|the\s+|de\s+)?[A-Z][\w’'-]+)+")
PRONOUN_OPENING = re.compile(r"^\W*(he|she|they|it|this|these|those|his|her|their|its)\b", re.I)
NUMBER_WORD = re.compile(
    r"^(\d[\d,.]*(st|nd|rd|th|s|%)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
    r"forty|fifty|hundred|hundreds|thousand|thousands|million|millions|billion|dozen|several|first|second|third|half)$",
    re.I,
)
TIME_WORD = re.compile(
    r"^(\d{3,4}s?|\d{1,2}(st|nd|rd|th)|\d{1,2}:\d{2}(:\d{2})?(am|pm)?|\d{1,2}(am|pm)|am|pm|a\.m|p\.m|o’clock|o'clock|"
    r"noon|midnight|morning|evening|night|weekend|weekends|weekday|weekdays|hour|hours|minute|minutes|"
    r"january|february|march|april|may|june|july|august|september|october|november|"
    r"december|monday|tuesday|wednesday|thursday|friday|saturday|sunday|yesterday|today|tomorrow|year|years|month|"
    r"months|week|weeks|day|days|century|centuries|decade|decades|ago|earlier|later|since|until|before|after|during)$",
    re.I,
)

WH = ("who", "when", "where", "how many", "how much", "what", "which", "why", "how", "other")

CANDIDATE_FEATURES = (
    "cosine", "cosine_gap", "dense_rr", "bm25_rel", "bm25_rr", "fused_rel",
    "coverage", "coverage_gap", "coverage_window", "window_gain",
    "coverage_prev", "coverage_next", "coverage_paragraph",
    "cosine_prev_gain", "cosine_next_gain", "cosine_paragraph_gain",
    "matched_log", "novelty", "length_log", "first_in_paragraph", "pronoun_opening", "missing_top_idf",
    "bigram_overlap", "name_overlap", "counted_present", "counted_absent",
    "number_new", "number_absent", "time_new", "time_absent", "name_new", "name_absent",
)  # fmt: skip
COLUMN = {name: i for i, name in enumerate(CANDIDATE_FEATURES)}
QUESTION_FEATURES = (
    "top_probability", "probability_margin", "top_score", "top_cosine", "max_cosine", "top_coverage",
    "top_coverage_window", "top_coverage_paragraph", "top_missing_top_idf", "unknown_share", "terms_log",
    "kind_expected", "kind_fits", "names_unknown", "names_missing_paragraph", "numbers_missing_paragraph",
    "top_counted_absent",
    "known_missing_window", "known_missing_paragraph", "name_pairs_unseen",
)  # fmt: skip


def expected_kind(question: str) -> str | None:
    """What the answer must contain: "number", "time" or "name"; None when anything will do."""
    q = question.lower()
    if re.search(r"\bhow (many|much|long|old|often|far|large|big|tall)\b", q) or re.search(
        r"\b(what|which) (number|percentage|amount)\b", q
    ):
        return "number"
    if re.search(r"^\W*when\b|\b(what|which) (year|date|month|day|time|century|decade)\b", q):
        return "time"
    if re.search(r"^\W*(who|whom|whose|where)\b", q):
        return "name"
    return None


def question_wh(question: str) -> str:
    """The question's wh-word ("how many", "how much" as one); "other" without one."""
    q = question.lower()
    for wh in sorted(WH[:-1], key=len, reverse=True):  # "how many" before "who" or "how"
        if re.search(rf"\b{wh}\b", q):
            return wh
    return "other"


def answer_tokens(text: str) -> list[tuple[str, frozenset[str]]]:
    """The words of `text` that could be an answer of some kind, with their kinds: "number",
    "time" or "name" (a capitalised word that does not open the text)."""
    tokens = []
    for i, token in enumerate(re.findall(r"[\w’'%.,:-]+", text)):
        bare = token.strip(".,’'-:")
        kinds = {kind for kind, pattern in (("number", NUMBER_WORD), ("time", TIME_WORD)) if pattern.match(bare)}
        if i > 0 and bare[:1].isupper():
            kinds.add("name")
        if kinds:
            tokens.append((bare.lower(), frozenset(kinds)))
    return tokens


def new_kinds(tokens: list[tuple[str, frozenset[str]]], question_words: set[str]) -> set[str]:
    """Kinds of answer that the `answer_tokens` offer beyond the question's own words."""
    return {kind for word, kinds in tokens if word not in question_words for kind in kinds}


@dataclass(frozen=True)
class Linear:
    """A standardised linear function: w · (x - mean) / scale + bias."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.weights + self.bias

    def to_json(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], width: int) -> Linear:
        mean, scale, weights = (np.asarray(data[key], dtype="float64") for key in ("mean", "scale", "weights"))
        if any(a.shape != (width,) for a in (mean, scale, weights)):
            raise ValueError(f"expected {width} weights")
        return cls(mean, scale, weights, float(data["bias"]))


@dataclass(frozen=True)
class Perceptron:
    """One hidden tanh layer over standardised inputs: v · tanh(W (x - mean) / scale + c) + bias."""

    mean: np.ndarray
    scale: np.ndarray
    hidden_weights: np.ndarray  # (inputs, hidden)
    hidden_bias: np.ndarray  # (hidden,)
    weights: np.ndarray  # (hidden,)
    bias: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (
            np.tanh(((x - self.mean) / self.scale) @ self.hidden_weights + self.hidden_bias) @ self.weights + self.bias
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "hidden_weights": self.hidden_weights.tolist(),
            "hidden_bias": self.hidden_bias.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], width: int) -> Perceptron:
        mean, scale, hidden_weights, hidden_bias, weights = (
            np.asarray(data[key], dtype="float64")
            for key in ("mean", "scale", "hidden_weights", "hidden_bias", "weights")
        )
        hidden = len(weights)
        if (
            mean.shape != (width,)
            or scale.shape != (width,)
            or hidden_weights.shape != (width, hidden)
            or hidden_bias.shape != (hidden,)
        ):
            raise ValueError(f"expected {width} inputs and {hidden} hidden units")
        return cls(mean, scale, hidden_weights, hidden_bias, weights, float(data["bias"]))


@dataclass(frozen=True)
class RankerModel:
    ranker: Linear
    confidence: Perceptron
    threshold: float  # the default abstention point (a probability), chosen on the training articles
    training: dict[str, Any]
    short_answer: dict[str, Any] | None = None  # the short-answer model's JSON (`rag.short_answer`), if trained

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "candidate_features": list(CANDIDATE_FEATURES),
            "question_features": list(QUESTION_FEATURES),
            "ranker": self.ranker.to_json(),
            "confidence": self.confidence.to_json(),
            "threshold": self.threshold,
            "training": self.training,
            **({"short_answer": self.short_answer} if self.short_answer else {}),
        }

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")


def model_file(ranker_model: Path | None, embedding_model: str) -> Path:
    """The configured ranker file, else the one shipped for the embedder (MODEL_FILE for the rest)."""
    return ranker_model or EMBEDDER_MODEL_FILES.get(embedding_model, MODEL_FILE)


def load_model(path: Path = MODEL_FILE) -> RankerModel:
    """The shipped ranker; ModelError naming the file and the remedy when it is missing or stale."""
    remedy = "reinstall the package or run `python -m rag train`"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if (
            data["format"] != FORMAT
            or data["candidate_features"] != list(CANDIDATE_FEATURES)
            or data["question_features"] != list(QUESTION_FEATURES)
        ):
            raise ModelError(f"{path} was trained for other features; {remedy}")
        ranker = Linear.from_json(data["ranker"], len(CANDIDATE_FEATURES))
        confidence = Perceptron.from_json(data["confidence"], len(QUESTION_FEATURES))
        return RankerModel(
            ranker, confidence, float(data["threshold"]), data.get("training", {}), data.get("short_answer")
        )
    except OSError as exc:
        raise ModelError(f"cannot read the ranker model {path}: {exc.strerror}; {remedy}") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"the ranker model {path} is corrupt ({exc}); {remedy}") from None


class Featurizer:
    """Computes ranking and confidence features over one set of passages (the index's)."""

    def __init__(
        self,
        nodes: Sequence[TextNode] | Passages,
        context_weight: float = 0.5,
        weights: TermWeights | None = None,
    ):
        """Over `nodes` (in document order) or an index's `Passages`. Per-passage and per-paragraph
        features are computed when a candidate first needs them, and cached; `weights` are the
        index's persisted term weights (without them: computed over every passage)."""
        from rag.passages import LazyMap, Passages

        passages = nodes if isinstance(nodes, Passages) else Passages.from_nodes(nodes)
        self.passages = passages
        self.context_weight = context_weight

        def per_passage(compute: Callable[[str], Any]) -> LazyMap[str, Any]:
            def lookup(node_id: str) -> Any:
                position = passages.position(node_id)
                return None if position is None else compute(passages.text(position))

            return LazyMap(lookup)

        def neighbour(step: int) -> LazyMap[str, str]:
            def lookup(node_id: str) -> str | None:
                position = passages.position(node_id)
                other = None if position is None else passages.neighbour(position, step)
                return None if other is None else str(passages.ids[other])

            return LazyMap(lookup)

        def per_paragraph(compute: Callable[[range], set[Any]]) -> LazyMap[tuple[str, int], set[Any]]:
            def lookup(key: tuple[str, int]) -> set[Any] | None:
                positions = passages.paragraph_positions(*key)
                return compute(positions) if positions else None

            return LazyMap(lookup)

        self.terms: LazyMap[str, set[str]] = per_passage(lambda text: set(content_terms(text)))
        self.answer_tokens: LazyMap[str, list[tuple[str, frozenset[str]]]] = per_passage(answer_tokens)
        self.bigrams: LazyMap[str, set[tuple[str, str]]] = per_passage(lambda text: _bigrams(content_terms(text)))
        self.length: LazyMap[str, int] = per_passage(lambda text: len(words(text)))
        self.weights = weights or TermWeights(set(content_terms(passages.text(i))) for i in range(len(passages)))
        self.previous, self.next = neighbour(-1), neighbour(+1)
        self.paragraph_terms: LazyMap[tuple[str, int], set[str]] = per_paragraph(
            lambda positions: {t for i in positions for t in self.terms[str(passages.ids[i])]}
        )
        self.numbers: LazyMap[tuple[str, int], set[str]] = per_paragraph(
            lambda positions: {n for i in positions for n in NUMBER.findall(passages.text(i))}
        )

    def quoted(
        self, best: str, text: str, others: Iterable[tuple[str, float]], probability: float, ratio: float
    ) -> list[str]:
        """Ids, in document order, of the passages an answer resting on passage `best` (its `text`,
        ranked with `probability`) quotes: `best`, preceded by the sentence before it when it opens
        with a pronoun that refers back, and the adjacent passage rated highest among `others`
        (id and probability, best first) when its probability is at least `ratio` of the best's."""
        before, after = self.previous.get(best), self.next.get(best)
        quoted = [best] if before is None or not PRONOUN_OPENING.match(text) else [before, best]
        adjacent = {before, after} - {None, *quoted}
        neighbour = next((node_id for node_id, p in others if p >= ratio * probability and node_id in adjacent), None)
        if neighbour is None:
            return quoted
        return [*quoted, neighbour] if neighbour == after else [neighbour, *quoted]

    def offers_kind(self, question: str, candidates: Sequence[Candidate]) -> np.ndarray:
        """Per candidate: whether it offers a number or a time when the question asks for one ("how
        many", "when"); always true otherwise. On the SQuAD fit articles 98 % of the sentences that
        hold such answers do; for "who" and "where" only 95 % offer a new name, so that is left to
        the ranker's features. Only candidates that offer the kind are quoted."""
        kind = expected_kind(question)
        if kind not in ("number", "time"):
            return np.ones(len(candidates), dtype=bool)
        q_words = set(words(question))
        return np.asarray(
            [kind in new_kinds(self.answer_tokens[c.node.node_id], q_words) for c in candidates], dtype=bool
        )

    def candidates(self, question: str, candidates: Sequence[Candidate], context: str = "") -> np.ndarray:
        """One row of `CANDIDATE_FEATURES` per candidate. With `context` (a follow-up), similarity
        and coverage blend the question alone with the question read with the conversation."""
        q_terms = set(content_terms(question))
        c_terms = set(content_terms(context)) - q_terms if context else set()
        q_words = set(words(question))
        q_bigrams = _bigrams(content_terms(question))
        q_names = question_names(question)
        counted = counted_things(question)
        kind = expected_kind(question)
        weight = self.weights.idf
        top_idf = max((weight(t) for t in q_terms), default=1.0)

        def coverage(terms: set[str]) -> float:
            own = self.weights.coverage(q_terms, terms)
            if not c_terms:
                return own
            return (1 - self.context_weight) * own + self.context_weight * self.weights.coverage(c_terms, terms)

        def blended(per_query: Sequence[float]) -> float:
            """A similarity of the question alone, or (a follow-up) blended with the question read in context."""
            if not c_terms:
                return per_query[0]
            return (1 - self.context_weight) * per_query[0] + self.context_weight * per_query[-1]

        rows = []
        for c in candidates:
            node_id = c.node.node_id
            terms = self.terms[node_id]
            before, after = (
                self.terms.get(self.previous.get(node_id, ""), set()),
                self.terms.get(self.next.get(node_id, ""), set()),
            )
            cosine = blended(c.similarities)
            gains = [
                blended([n[k] - s for n, s in zip(c.neighbourhoods, c.similarities, strict=True)]) for k in range(3)
            ]
            new = new_kinds(self.answer_tokens[node_id], q_words)
            window = coverage(terms | before | after)
            own = coverage(terms)
            missing = [weight(t) for t in q_terms if t not in (terms | before | after)]
            rows.append([
                cosine, 0.0, 1 / c.dense_rank if c.dense_rank else 0.0,
                c.bm25, 1 / c.bm25_rank if c.bm25_rank else 0.0, c.fused,
                own, 0.0, window, window - own,
                coverage(before), coverage(after), coverage(self.paragraph_terms[_paragraph(c.node)]), *gains,
                math.log1p(len(q_terms & terms)), len(terms - q_terms) / max(len(terms), 1),
                math.log1p(self.length[node_id]), float(node_id not in self.previous),
                float(bool(PRONOUN_OPENING.match(c.node.text))), max(missing, default=0.0) / top_idf,
                len(q_bigrams & self.bigrams[node_id]) / len(q_bigrams) if q_bigrams else 0.0,
                len(q_names & terms) / len(q_names) if q_names else 0.0,
                float(bool(counted & (terms | before))), float(bool(counted) and not counted & (terms | before)),
                *_kind_pair(kind, "number", new), *_kind_pair(kind, "time", new), *_kind_pair(kind, "name", new),
            ])  # fmt: skip
        x = np.asarray(rows, dtype="float64").reshape(len(rows), len(CANDIDATE_FEATURES))
        if len(rows):
            for name in ("cosine", "coverage"):  # gaps to the best candidate
                column = COLUMN[name]
                x[:, COLUMN[f"{name}_gap"]] = x[:, column] - x[:, column].max()
            for name in ("bm25_rel", "fused_rel"):  # scores relative to the best candidate
                column = COLUMN[name]
                x[:, column] = x[:, column] / x[:, column].max() if x[:, column].max() > 0 else 0.0
        return x

    def question(
        self, question: str, candidates: Sequence[Candidate], x: np.ndarray, scores: np.ndarray, allowed: np.ndarray
    ) -> np.ndarray:
        """`QUESTION_FEATURES` of a question whose candidates have features `x` and ranker `scores`;
        the top is the best `allowed` candidate, its probability taken over all of them."""
        q_terms = set(content_terms(question))
        total_idf = sum(self.weights.idf(t) for t in q_terms) or 1.0
        names = question_names(question)
        kind = expected_kind(question)
        row = {
            "unknown_share": sum(self.weights.idf(t) for t in q_terms if t not in self.weights) / total_idf,
            "terms_log": math.log1p(len(q_terms)),
            "kind_expected": float(kind is not None),
            "names_unknown": sum(n not in self.weights for n in names) / len(names) if names else 0.0,
        }
        pairs = name_pairs(question, self.weights)
        retrieved_pairs = {p for c in candidates for p in self.bigrams[c.node.node_id]}
        row["name_pairs_unseen"] = sum(p not in retrieved_pairs for p in pairs) / len(pairs) if pairs else 0.0
        if not allowed.any():  # nothing may be quoted: the weakest possible ranking
            row |= {"top_score": -10.0, "top_missing_top_idf": 1.0, "names_missing_paragraph": 1.0}
            row |= {"numbers_missing_paragraph": 1.0, "top_counted_absent": 1.0}
            row |= {"known_missing_window": 1.0, "known_missing_paragraph": 1.0}
            return np.asarray([row.get(name, 0.0) for name in QUESTION_FEATURES], dtype="float64")
        probabilities = softmax(scores)
        best = int(np.argmax(np.where(allowed, scores, -np.inf)))
        top = x[best]
        paragraph = _paragraph(candidates[best].node)
        best_id = candidates[best].node.node_id
        window = self.terms[best_id] | self.terms.get(self.previous.get(best_id, ""), set())
        window |= self.terms.get(self.next.get(best_id, ""), set())
        known = [t for t in q_terms if t in self.weights]
        top_idf = max((self.weights.idf(t) for t in q_terms), default=1.0)
        row |= {
            "top_probability": probabilities[best],
            "probability_margin": probabilities[best]
            - (float(np.delete(probabilities, best).max()) if len(scores) > 1 else 0.0),
            "top_score": scores[best],
            "top_cosine": top[COLUMN["cosine"]],
            "max_cosine": x[:, COLUMN["cosine"]].max(),
            "top_coverage": top[COLUMN["coverage"]],
            "top_coverage_window": top[COLUMN["coverage_window"]],
            "top_coverage_paragraph": top[COLUMN["coverage_paragraph"]],
            "top_missing_top_idf": top[COLUMN["missing_top_idf"]],
            "kind_fits": top[COLUMN[f"{kind}_new"]] if kind else 0.0,
            "names_missing_paragraph": sum(n not in self.paragraph_terms[paragraph] for n in names) / len(names)
            if names
            else 0.0,
            "numbers_missing_paragraph": float(any(n not in self.numbers[paragraph] for n in NUMBER.findall(question))),
            "top_counted_absent": top[COLUMN["counted_absent"]],
            "known_missing_window": max((self.weights.idf(t) for t in known if t not in window), default=0.0) / top_idf,
            "known_missing_paragraph": sum(
                self.weights.idf(t) for t in known if t not in self.paragraph_terms[paragraph]
            )
            / total_idf,
        }
        return np.asarray([row[name] for name in QUESTION_FEATURES], dtype="float64")


def counted_things(question: str) -> set[str]:
    """Stems of what a "how many ..." question counts ("how many US soldiers" -> {"us", "soldier"})."""
    match = re.search(r"\bhow many ((?:\S+\s+){0,1}\S+)", question.lower())
    return set(content_terms(match.group(1))) if match else set()


def question_names(question: str) -> set[str]:
    """Stems of the capitalised words inside the question (names, mostly; not its first word)."""
    return {t for name in NAME.findall(question.strip()) if name != "I" for t in content_terms(name)}


def name_pairs(question: str, weights: TermWeights) -> list[tuple[str, str]]:
    """Adjacent stem pairs inside the question's multi-word names whose words the document both
    knows. A question written to look answerable often swaps one word of such a name ("Ocarina
    Princess" for "Twilight Princess"): each word is known, the pair is in no retrieved passage
    (retrieval would have found a passage holding both words side by side)."""
    pairs = []
    for match in NAME_PHRASE.finditer(question.strip()):
        terms = content_terms(match.group(0))
        pairs += [p for p in zip(terms, terms[1:], strict=False) if p[0] in weights and p[1] in weights]
    return pairs


def _bigrams(terms: list[str]) -> set[tuple[str, str]]:
    return set(zip(terms, terms[1:], strict=False))


def softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max())
    return exp / exp.sum()


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


def _kind_pair(kind: str | None, which: str, new: set[str]) -> tuple[float, float]:
    """(the question asks for `which` and the sentence offers it, ... and it does not)."""
    if kind != which:
        return 0.0, 0.0
    return (1.0, 0.0) if which in new else (0.0, 1.0)


def _paragraph(node: TextNode) -> tuple[str, int]:
    return node.metadata["source"], node.metadata["paragraph"]
