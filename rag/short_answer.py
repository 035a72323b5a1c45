"""The short answer: the span of the quoted sentence(s) that answers the question ("41,000",
"Samuel Brandt"), shown in bold inside the quote, which stays its proof.

Candidates are the word sequences of up to `MAX_TOKENS` tokens that start and end on a content
word and cross no punctuation (a number keeps its commas, points and currency sign). Each gets
named features: its length, its kind (number, time, name) against the kind the question asks for,
how much of it the question already says, how far it sits from the question's words in the
sentence, whether it cuts a name or a number in two, and the question's wh-word crossed with the
span's kind. A scorer with one hidden layer (softmax over one answer's candidates), fitted by
`rag train` on the gold spans of SQuAD's fit articles, weighs them; below the model's threshold
no span is shown. (Files from before it hold a linear scorer, which still loads.)

Deliberate simplifications: the only parse information is spaCy's entities and noun phrases,
stored with the index (no dependency paths to the question's words); one span per answer.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from rag.entities import LABELS
from rag.errors import ModelError
from rag.lexical import FUNCTION_WORDS, content_terms, stem
from rag.rank import (
    NUMBER_WORD,
    TIME_WORD,
    WH,
    Linear,
    Perceptron,
    RankerModel,
    expected_kind,
    question_wh,
    softmax,
)

MAX_TOKENS = 6
TOKEN = re.compile(r"[$€£¥]?\d[\d,.:/–-]*\d%?|[$€£¥]?\d%?|[^\W_]+(?:['’-][^\W_]+)*|\S", re.UNICODE)
QUOTES = frozenset("\"“”‘’'«»")
BE = frozenset("is are was were be been being as called named known became".split())
PREPOSITIONS = frozenset("in on at by from to of for with during since after before into as than about".split())
SPAN_KINDS = ("number", "time", "name")
SPAN_FEATURES = (
    "length_1", "length_2", "length_3", "length_4_plus",
    "question_share", "question_any",
    *(f"{k}_asked_offered" for k in SPAN_KINDS), *(f"{k}_asked_missing" for k in SPAN_KINDS),
    "distance_log", "no_question_word_nearby", "right_after_question_word", "right_before_question_word",
    "after_preposition", "before_punctuation", "all_capitalised", "opens_sentence",
    "cuts_name", "cuts_number", "position", "in_best_sentence",
    "question_words_left", "question_words_right", "inner_function_words", "length_log", "number_only",
    "after_comma", "after_be", "before_be", "before_comma", "unit_left_out_asked", "unit_left_out_new",
    "in_quotes", *(f"{w}_question_any" for w in WH),
    *(f"{w}_{k}" for w in WH for k in (*SPAN_KINDS, "plain")),
    *(f"{w}_length_{n}" for w in WH for n in ("1", "2", "3", "4_plus")),
    "inside_tagged", "cuts_tagged", *(f"{w}_is_{label}" for w in WH for label in LABELS),
)  # fmt: skip


SPAN_COLUMN = {name: i for i, name in enumerate(SPAN_FEATURES)}
TAG_OFFSET = SPAN_FEATURES.index("inside_tagged")  # the features from here on come from `_tag_row`
Tagged = tuple[int, int, int]  # an entity or noun phrase of a sentence: start, end, label index (`rag.entities`)


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int

    @property
    def word(self) -> bool:
        return self.text[:1].isalnum() or self.text[:1] in "$€£¥"

    @property
    def capitalised(self) -> bool:
        return self.text[:1].isupper()

    @cached_property
    def kinds(self) -> frozenset[str]:
        bare = self.text.strip("$€£¥")
        kinds = {kind for kind, pattern in (("number", NUMBER_WORD), ("time", TIME_WORD)) if pattern.match(bare)}
        if any(c.isdigit() for c in self.text):
            kinds.add("number")
        return frozenset(kinds)


@dataclass(frozen=True)
class Span:
    """A candidate: tokens [first, last] of sentence `sentence`, at characters [start, end) of its text."""

    sentence: int
    first: int
    last: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class ShortAnswerModel:
    scorer: Perceptron | Linear
    threshold: float  # the lowest probability shown; below it the short answer is None
    training: dict[str, Any]  # what it was fitted on, how, and its figures

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(SPAN_FEATURES),
            "scorer": self.scorer.to_json(),
            "threshold": self.threshold,
            "training": self.training,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShortAnswerModel:
        if data["features"] != list(SPAN_FEATURES):
            raise ValueError("the short-answer model was trained for other features")
        scorer: Perceptron | Linear
        if "hidden_weights" in data["scorer"]:
            scorer = Perceptron.from_json(data["scorer"], len(SPAN_FEATURES))
        else:
            scorer = Linear.from_json(data["scorer"], len(SPAN_FEATURES))
        return cls(scorer, float(data["threshold"]), data.get("training", {}))

    def best(
        self, question: str, sentences: Sequence[str], tagged: Sequence[Sequence[Tagged]], best_sentence: int = 0
    ) -> tuple[Span, float] | None:
        """The most probable span of `sentences` (the quote, each with its `tagged` entities and noun
        phrases; `best_sentence` the one the ranker put first) and its probability; None when no
        span reaches the threshold."""
        spans, x = span_features(question, sentences, tagged, best_sentence)
        if not spans:
            return None
        probabilities = softmax(self.scorer(x))
        i = int(np.argmax(probabilities))
        return (spans[i], float(probabilities[i])) if probabilities[i] >= self.threshold else None


def load_short_answer(model: RankerModel) -> ShortAnswerModel | None:
    """The short-answer model shipped in the ranker's file; None for a file trained without one."""
    if model.short_answer is None:
        return None
    try:
        return ShortAnswerModel.from_json(model.short_answer)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"the short-answer model is corrupt ({exc}); run `python -m rag train`") from None


def tokens(text: str) -> list[Token]:
    return [Token(m.group(0), m.start(), m.end()) for m in TOKEN.finditer(text)]


def candidates(sentence: int, text: str, toks: list[Token]) -> list[Span]:
    """Every span of up to `MAX_TOKENS` word tokens, crossing no punctuation, that starts and ends
    on a content word."""
    spans = []
    for first, token in enumerate(toks):
        if not _content(token):
            continue
        for last in range(first, min(first + MAX_TOKENS, len(toks))):
            if not toks[last].word:
                break
            if _content(toks[last]):
                start, end = token.start, toks[last].end
                spans.append(Span(sentence, first, last, start, end, text[start:end]))
    return spans


def span_features(
    question: str, sentences: Sequence[str], tagged: Sequence[Sequence[Tagged]], best_sentence: int = 0
) -> tuple[list[Span], np.ndarray]:
    """The candidate spans of `sentences` (with their `tagged` spans) and one row of `SPAN_FEATURES` each."""
    q_terms = set(content_terms(question))
    kind = expected_kind(question)
    wh = question_wh(question)
    spans: list[Span] = []
    rows: list[list[float]] = []
    for number, text in enumerate(sentences):
        toks = tokens(text)
        in_question = [bool(_content(t) and stem(t.text.lower()) in q_terms) for t in toks]
        anchors = [i for i, hit in enumerate(in_question) if hit]
        labels = {(start, end): label for start, end, label in tagged[number]}
        for span in candidates(number, text, toks):
            row = _row(span, toks, in_question, anchors, kind, wh, number == best_sentence)
            rows.append(row + _tag_row(span, labels, wh))
            spans.append(span)
    return spans, np.asarray(rows, dtype="float64").reshape(len(rows), len(SPAN_FEATURES))


def _row(
    span: Span,
    toks: list[Token],
    in_question: list[bool],
    anchors: list[int],
    kind: str | None,
    wh: str,
    in_best: bool,
) -> list[float]:
    inside = toks[span.first : span.last + 1]
    content = [i for i in range(span.first, span.last + 1) if _content(toks[i])]
    kinds = {k for t in inside for k in t.kinds}
    name = all(t.capitalised for t in inside if _content(t)) and span.first > 0
    if name:
        kinds.add("name")
    length = span.last - span.first + 1
    outside = [a for a in anchors if a < span.first or a > span.last]
    distance = min((span.first - a if a < span.first else a - span.last for a in outside), default=None)
    before = toks[span.first - 1] if span.first > 0 else None
    after = toks[span.last + 1] if span.last + 1 < len(toks) else None
    row = {
        f"length_{min(length, 4)}" + ("_plus" if length >= 4 else ""): 1.0,
        "question_share": sum(in_question[i] for i in content) / len(content),
        "question_any": float(any(in_question[i] for i in content)),
        "distance_log": math.log1p(distance) if distance is not None else 0.0,
        "no_question_word_nearby": float(distance is None or distance > 10),
        "right_after_question_word": float(span.first > 0 and in_question[span.first - 1]),
        "right_before_question_word": float(span.last + 1 < len(toks) and in_question[span.last + 1]),
        "after_preposition": float(before is not None and before.text.lower() in PREPOSITIONS),
        "before_punctuation": float(after is None or not after.word),
        "all_capitalised": float(name),
        "opens_sentence": float(span.first == 0),
        "cuts_name": float(
            name and ((before is not None and before.capitalised) or (after is not None and after.capitalised))
        ),
        "cuts_number": float(
            bool(kinds & {"number"})
            and ((before is not None and "number" in before.kinds) or (after is not None and "number" in after.kinds))
        ),
        "position": span.first / max(len(toks), 1),
        "in_best_sentence": float(in_best),
        "question_words_left": sum(in_question[max(span.first - 4, 0) : span.first]) / max(len(anchors), 1),
        "question_words_right": sum(in_question[span.last + 1 : span.last + 5]) / max(len(anchors), 1),
        "inner_function_words": float(sum(t.word and not _content(t) for t in inside)),
        "length_log": math.log(length),
        "number_only": float(all("number" in t.kinds for t in inside)),
        "after_comma": float(before is not None and before.text == ","),
        "after_be": float(before is not None and before.text.lower() in BE),
        "before_be": float(after is not None and after.text.lower() in BE),
        "before_comma": float(after is not None and after.text == ","),
        "in_quotes": float(before is not None and after is not None and before.text in QUOTES and after.text in QUOTES),
        f"{wh}_question_any": float(any(in_question[i] for i in content)),
        # a number whose unit or counted noun follows outside the span ("12 [euros]", "41,000 [visitors]")
        "unit_left_out_asked": float(_unit_after(inside, after) and in_question[span.last + 1]),
        "unit_left_out_new": float(_unit_after(inside, after) and not in_question[span.last + 1]),
        f"{wh}_{next((k for k in SPAN_KINDS if k in kinds), 'plain')}": 1.0,
        f"{wh}_length_{min(length, 4)}" + ("_plus" if length >= 4 else ""): 1.0,
    }
    if kind is not None:
        row[f"{kind}_asked_{'offered' if kind in kinds else 'missing'}"] = 1.0
    values = [0.0] * TAG_OFFSET
    for feature, value in row.items():
        if value:
            values[SPAN_COLUMN[feature]] = value
    return values


def _tag_row(span: Span, labels: dict[tuple[int, int], int], wh: str) -> list[float]:
    """The tagger's features of a span: is it an entity or noun phrase of some label (crossed with
    the wh-word), inside one, or cutting one in two."""
    row = [0.0] * (len(SPAN_FEATURES) - TAG_OFFSET)
    label = labels.get((span.start, span.end))
    inside = any(s <= span.start and span.end <= e and (s, e) != (span.start, span.end) for s, e in labels)
    cuts = any(
        s < span.end and span.start < e and not (s <= span.start and span.end <= e or span.start <= s and e <= span.end)
        for s, e in labels
    )
    row[0], row[1] = float(inside), float(cuts)
    if label is not None:
        row[2 + WH.index(wh) * len(LABELS) + label] = 1.0
    return row


def _unit_after(inside: list[Token], after: Token | None) -> bool:
    """Whether the span ends on a number and a lower-case content word follows it."""
    return "number" in inside[-1].kinds and after is not None and _content(after) and not after.capitalised


def _content(token: Token) -> bool:
    return token.word and token.text.lower() not in FUNCTION_WORDS


# SQuAD's official answer normalisation and scores (evaluate-v2.0.py)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def squad_normalise(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces: SQuAD's comparison form."""
    text = "".join(c for c in text.lower() if c not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    return max((float(squad_normalise(prediction) == squad_normalise(g)) for g in golds), default=0.0)


def f1(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD's token F1 against the best of `golds`."""

    def one(gold: str) -> float:
        predicted, wanted = squad_normalise(prediction).split(), squad_normalise(gold).split()
        common = sum((Counter(predicted) & Counter(wanted)).values())
        if not predicted or not wanted:
            return float(predicted == wanted)
        if common == 0:
            return 0.0
        precision, recall = common / len(predicted), common / len(wanted)
        return 2 * precision * recall / (precision + recall)

    return max((one(g) for g in golds), default=0.0)
