"""Fitting the short-answer model (`rag.short_answer`) on SQuAD gold spans, part of `rag train`.

Each answerable question of a fit article whose gold answer lies inside one passage gives one
example: that sentence and the next one of its paragraph (or the one before), as an answer would
quote them, with the candidate spans equal to a gold answer (SQuAD normalisation) as the targets.
Questions whose gold answer is no candidate (it crosses punctuation, say) are left out and
counted. The threshold below which no span is shown is chosen on the articles of one fold,
scored by a model fitted without them: the highest probability under which the spans (then
hidden) score an F1 of at most `NULL_F1` on average.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rag.errors import ConfigError
from rag.fit import fit_conditional_perceptron
from rag.rank import Perceptron, softmax
from rag.short_answer import MAX_TOKENS, ShortAnswerModel, f1, span_features, squad_normalise
from rag.squad import SquadArticle, article_config

if TYPE_CHECKING:
    from pathlib import Path

    from rag.config import Config
    from rag.passages import Passages

SHORT_ANSWER_HIDDEN = 16
SHORT_ANSWER_L2 = 0.01
SEED = 20261208
NULL_F1 = 0.3
CALIBRATION_FOLD = 5  # every fifth fit article calibrates the threshold


@dataclass(frozen=True)
class SpanExample:
    article: str
    golds: tuple[str, ...]
    x: np.ndarray
    gold: np.ndarray
    texts: tuple[str, ...]  # the candidates' texts


def train_short_answer(
    config: Config,
    articles: list[SquadArticle],
    held_out: Collection[str],
    folder: Path,
    progress: Callable[[str], None],
) -> tuple[ShortAnswerModel, dict[str, float]]:
    """The short-answer model fitted on the `articles` not `held_out` (indexed in `folder` as
    `rag train` does), and its figures: `rag train --short-answer-only`."""
    from rag.engine import open_retrieval

    fit = [a for a in articles if a.title not in held_out]
    if len(fit) < 2:
        raise ConfigError(f"fitting needs two articles that the split does not hold out; {len(fit)} found")
    passages = {a.title: open_retrieval(article_config(config, a, folder), progress=progress)[1].passages for a in fit}
    examples, missed = span_examples(fit, passages)
    return fit_short_answer(examples, missed)


def span_examples(articles: Sequence[SquadArticle], passages_of: dict[str, Passages]) -> tuple[list[SpanExample], int]:
    """The examples of `articles` (their passages by title) and how many answerable questions gave none."""
    examples, missed = [], 0
    for article in articles:
        passages = passages_of[article.title]
        for q in article.questions:
            spans = article.spans.get(q.item_id, ())
            if not q.answerable or not spans:
                continue
            example = _example(article.title, q.question, q.answers, spans, passages)
            if example is None:
                missed += 1
            else:
                examples.append(example)
    return examples, missed


def _example(
    title: str, question: str, golds: Sequence[str], spans: Sequence[tuple[int, int]], passages: Passages
) -> SpanExample | None:
    """One example, or None when no passage holds a gold span that is also a candidate."""
    holding = [
        i
        for s, e in spans
        for i in [int(np.searchsorted(passages.start, s, side="right")) - 1]  # one document: starts ascend
        if i >= 0 and e <= int(passages.end[i])
    ]
    if not holding:
        return None
    position = holding[0]
    other = passages.neighbour(position, +1)
    if other is None:
        other = passages.neighbour(position, -1)
    positions = sorted([position] + ([] if other is None else [other]))  # in document order, as quoted
    sentences = [passages.text(p) for p in positions]
    tagged = [passages.spans(p) for p in positions]
    candidates, x = span_features(question, sentences, tagged, positions.index(position))
    wanted = {squad_normalise(g) for g in golds}
    gold = np.asarray([squad_normalise(c.text) in wanted for c in candidates], dtype=bool)
    if not gold.any():
        return None
    return SpanExample(title, tuple(golds), x, gold, tuple(c.text for c in candidates))


def fit_short_answer(examples: list[SpanExample], missed: int) -> tuple[ShortAnswerModel, dict[str, float]]:
    """The model fitted on every example, its threshold chosen on the calibration fold, and figures
    (`missed`: the answerable questions that gave no example)."""
    articles = list(dict.fromkeys(e.article for e in examples))
    if len(articles) < 2:
        raise ConfigError("the short-answer model needs gold spans from two fit articles at least")
    calibration = set(articles[::CALIBRATION_FOLD])
    rest = [e for e in examples if e.article not in calibration]
    held = [e for e in examples if e.article in calibration]
    probe = fit_spans(rest)
    scored = []
    for e in held:
        p = softmax(probe(e.x))
        best = int(np.argmax(p))
        scored.append((float(p[best]), f1(e.texts[best], e.golds)))
    threshold = choose_null_threshold(scored)
    shown = [score for p, score in scored if p >= threshold]
    figures = {
        "short_answer_examples": float(len(examples)),
        "short_answer_calibration_f1_all": float(np.mean([s for _, s in scored])) if scored else float("nan"),
        "short_answer_calibration_present": len(shown) / max(len(scored), 1),
        "short_answer_calibration_f1_null_counts_0": sum(shown) / max(len(scored), 1),
        "short_answer_threshold": threshold,
        "short_answer_questions_without_candidate": float(missed),
    }
    training = {
        "fit_articles": articles,
        "calibration_articles": sorted(calibration),
        "hidden": SHORT_ANSWER_HIDDEN,
        "l2": SHORT_ANSWER_L2,
        "seed": SEED,
        "null_f1": NULL_F1,
        "max_tokens": MAX_TOKENS,
        "figures": {k: round(v, 4) for k, v in figures.items()},
    }
    return ShortAnswerModel(fit_spans(examples), threshold, training), figures


def fit_spans(examples: list[SpanExample]) -> Perceptron:
    return fit_conditional_perceptron([(e.x, e.gold) for e in examples], SHORT_ANSWER_HIDDEN, SHORT_ANSWER_L2, SEED)


def choose_null_threshold(scored: list[tuple[float, float]]) -> float:
    """The highest probability p such that the spans scored below p average an F1 of at most
    `NULL_F1` (0 when even the least confident spans do better)."""
    ordered = sorted(scored)
    threshold, total = 0.0, 0.0
    for n, (p, score) in enumerate(ordered, start=1):
        total += score
        if total / n <= NULL_F1 and (n == len(ordered) or ordered[n][0] > p):  # never between equal probabilities
            threshold = ordered[n][0] if n < len(ordered) else p
    return threshold
