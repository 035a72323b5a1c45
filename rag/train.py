"""`python -m rag train`: fit the ranker and the answer confidence on SQuAD-format articles.

Reproducible: the split is by article and fixed (`eval/squad/split.json`, recorded in the model file),
the optimisers are deterministic (L-BFGS from zeros or a seeded start), and the abstention threshold is chosen on
out-of-fold predictions of the fit articles only (articles in folds), so the held-out
articles that `rag eval --squad` reports on are never looked at.

- Ranker: a conditional logit (softmax over each question's retrieved candidates), trained to put
  probability on the sentences that hold a gold answer; L2-regularised.
- Confidence: a small network (one hidden layer) on question-level features of the ranking, trained to predict
  whether the answer's quote (the top sentence, with the neighbours `Featurizer.quoted` adds)
  holds a gold answer (unanswerable questions count as "no"), on
  rankings made by rankers that did not see the question's article. Besides SQuAD's own
  unanswerable questions (only one fit article has them), two kinds of made-up ones: each fit
  article is asked 100 questions of the other fit articles (off-topic, like a user asking about
  something the document does not cover), and half of its answerable questions again with one
  detail swapped for another the document uses elsewhere (`swapped`: a name, number or word the
  answer's paragraph lacks, as SQuAD 2.0's writers made theirs). (Predicting "answerable"
  instead of "the top sentence is right" was tried: on the fit articles out of fold it caught
  15 % of the real unanswerable questions instead of 24 %, at 1.5 points less accuracy.)
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.config import Config
from rag.evaluate import Question
from rag.fit import fit_conditional_logit
from rag.lexical import FUNCTION_WORDS, WORD, content_terms, stem, words
from rag.rank import (
    NAME,
    NUMBER,
    QUESTION_FEATURES,
    Featurizer,
    Linear,
    Perceptron,
    RankerModel,
    softmax,
)
from rag.squad import SquadArticle, article_config
from rag.train_short_answer import fit_short_answer, span_examples

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

    from rag.retrieve import Candidate

SEED = 20261128
FOLDS = 5  # out-of-fold predictions: the fit articles in this many folds, each scored by models fitted without it
FOREIGN_QUESTIONS = 100  # per fit article: questions of the other articles, asked of it as unanswerable examples
REWORDED_SHARE = 0.3  # share of answerable questions also asked reworded (see `reworded`)
REWORD_PROBABILITY = 0.6
SWAPPED_SHARE = 0.5  # share of answerable questions also asked with one detail swapped (see `swapped`)
MAX_FALSE_ABSTENTION = 0.08  # on the fit articles' out-of-fold predictions; leaves room below 10 % elsewhere
RANKER_L2 = 1.0
CONFIDENCE_L2 = 10.0
CONFIDENCE_HIDDEN = 32  # hidden units; chosen by out-of-fold recall on the fit articles (8, 16 and 32 tried)


@dataclass
class Example:
    """One question's retrieved candidates, their features and which hold a gold answer."""

    article: str
    question: str
    answerable: bool
    x: np.ndarray
    gold: np.ndarray  # per candidate: holds a gold answer span (what the ranker learns)
    correct: np.ndarray  # per candidate: contains a gold answer's text (what `rag eval` counts)
    allowed: np.ndarray  # per candidate: may be quoted (offers the kind of answer asked for)
    # "" for the article's own questions; "foreign": another article's question (unanswerable here);
    # "reworded", "swapped": see those functions
    synthetic: str = ""
    candidates: list[Candidate] = field(default_factory=list)


def collect(
    config: Config, articles: list[SquadArticle], folder: Path, progress: Callable[[str], None]
) -> tuple[list[Example], dict[str, Featurizer]]:
    """Retrieve every question of `articles` with the real engine and compute candidate features."""
    from rag.engine import open_retrieval

    examples, featurizers = [], {}
    for article in articles:
        _, stored, retriever = open_retrieval(article_config(config, article, folder), progress=progress)
        featurizer = featurizers[article.title] = Featurizer(stored.passages)  # with the stored entities
        rng = random.Random(f"{SEED}:{article.title}")
        foreign = [q.question for other in articles if other is not article for q in other.questions]
        asked = [(q, q.question, article.spans[q.item_id], "") for q in article.questions]
        asked += [
            (Question(f"foreign{i}", 0, text), text, (), "foreign")
            for i, text in enumerate(rng.sample(foreign, min(FOREIGN_QUESTIONS, len(foreign))))
        ]
        asked += [
            (q, reworded(q.question, featurizer, rng), spans, "reworded")
            for q, _, spans, _ in asked
            if q.answerable and rng.random() < REWORDED_SHARE
        ]
        vocabulary = DocumentWords(stored.nodes, [other.text for other in articles if other is not article])
        for q in article.questions:
            if q.answerable and rng.random() < SWAPPED_SHARE:
                text = swapped(q.question, vocabulary.gold_paragraph(article.spans[q.item_id]), vocabulary, rng)
                if text:
                    asked.append((Question(f"swapped-{q.item_id}", 0, text), text, (), "swapped"))
        for q, wording, spans, synthetic in asked:
            candidates = retriever.retrieve([q.question], [wording])
            gold = [
                any(c.node.metadata["start"] <= s and e <= c.node.metadata["end"] for s, e in spans) for c in candidates
            ]
            correct = [any(a.lower() in c.node.text.lower() for a in q.answers) for c in candidates]
            x = featurizer.candidates(wording, candidates)
            allowed = featurizer.offers_kind(wording, candidates)
            examples.append(
                Example(
                    article.title,
                    wording,
                    q.answerable,
                    x,
                    np.asarray(gold, dtype=bool),
                    np.asarray(correct, dtype=bool),
                    allowed,
                    synthetic,
                    candidates,
                )
            )
        progress(
            f"  {article.title}: {len(article.questions)} questions, {FOREIGN_QUESTIONS} from other articles,"
            " some reworded or with a detail swapped"
        )
    return examples, featurizers


def reworded(question: str, featurizer: Featurizer, rng: random.Random) -> str:
    """The question as a user might put it in their own words: each lower-case content word the
    document uses is, with probability `REWORD_PROBABILITY`, replaced by a word the document does
    not know (names stay: a paraphrase keeps them).
    Retrieval still embeds the original question (the meaning a paraphrase keeps), while BM25 and
    the word-overlap features see the new words, as they would for a real paraphrase."""

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        if (
            word[:1].isupper()
            or word.lower() in FUNCTION_WORDS
            or stem(word.lower()) not in featurizer.weights
            or rng.random() >= REWORD_PROBABILITY
        ):
            return word
        return "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(7))

    return WORD.sub(swap, question)


class DocumentWords:
    """The words a document uses, by kind, and which paragraph holds a character offset."""

    def __init__(self, nodes: list[TextNode], other_texts: Sequence[str] = ()):
        self.nodes = nodes
        self.names = sorted({w for n in nodes for w in NAME.findall(n.text) if len(w) > 1})
        self.numbers = sorted({w for n in nodes for w in NUMBER.findall(n.text)})
        self.common = sorted({w for n in nodes for w in WORD.findall(n.text) if _common(w)})
        known = {stem(w.lower()) for n in nodes for w in WORD.findall(n.text)}
        # words of other documents that this one never uses
        self.foreign_names = sorted({w for t in other_texts for w in NAME.findall(t) if stem(w.lower()) not in known})
        self.foreign_common = sorted(
            {w for t in other_texts for w in WORD.findall(t) if _common(w) and stem(w) not in known}
        )

    def gold_paragraph(self, spans: tuple[tuple[int, int], ...]) -> str:
        """The text of the paragraph(s) holding the gold answer `spans`."""
        paragraphs = {
            (n.metadata["source"], n.metadata["paragraph"])
            for n in self.nodes
            for s, e in spans
            if n.metadata["start"] <= s < n.metadata["end"]
        }
        return " ".join(n.text for n in self.nodes if (n.metadata["source"], n.metadata["paragraph"]) in paragraphs)


def swapped(question: str, paragraph: str, vocabulary: DocumentWords, rng: random.Random) -> str | None:
    """The question with one detail it shares with its gold paragraph (a name, a number or a
    content word) replaced by one of the same kind that the paragraph does not use: how SQuAD
    2.0's writers made questions that look answerable but are not. Half the time the new word
    comes from elsewhere in the document, half the time from outside it (another document's word
    or name, a number shifted). None when the question shares no such word with the paragraph."""
    paragraph_terms = set(content_terms(paragraph))
    paragraph_numbers = set(NUMBER.findall(paragraph))
    shared = [
        m
        for m in WORD.finditer(question)
        if m.group(0).lower() not in FUNCTION_WORDS and stem(words(m.group(0))[0]) in paragraph_terms
    ]
    if not shared:
        return None
    match = rng.choice(shared)
    word = match.group(0)
    outside = rng.random() < 0.5
    pool: Sequence[str]
    if word.isdigit() and outside:
        pool = [str(int(word) + shift) for shift in range(1, 10) if str(int(word) + shift) not in vocabulary.numbers]
    elif word[:1].isdigit():
        pool = [n for n in vocabulary.numbers if n not in paragraph_numbers and n != word]
    elif word[:1].isupper() and match.start() > 0:
        pool = (
            vocabulary.foreign_names
            if outside
            else [n for n in vocabulary.names if stem(n.lower()) not in paragraph_terms]
        )
    else:
        pool = (
            vocabulary.foreign_common if outside else [w for w in vocabulary.common if stem(w) not in paragraph_terms]
        )
    if not pool:
        return None
    return question[: match.start()] + rng.choice(pool) + question[match.end() :]


def _common(word: str) -> bool:
    """A lower-case content word of four letters or more."""
    return word.islower() and word not in FUNCTION_WORDS and len(word) > 3


def fit_ranker(examples: list[Example]) -> Linear:
    """Conditional-logit weights maximising the probability of the gold candidates."""
    return fit_conditional_logit([(e.x, e.gold) for e in examples if e.gold.any()], RANKER_L2)


def fit_confidence(x: np.ndarray, y: np.ndarray) -> Perceptron:
    """A one-hidden-layer network predicting `y` from the question features `x` (log loss, L2 on
    the weights, L-BFGS from a seeded start, so the same data give the same model)."""
    from scipy.optimize import minimize

    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    n, d, h = len(z), z.shape[1], CONFIDENCE_HIDDEN
    rng = np.random.default_rng(SEED)
    start = np.r_[rng.normal(0.0, 0.3, d * h), np.zeros(h), rng.normal(0.0, 0.3, h), 0.0]

    def unpack(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        return w[: d * h].reshape(d, h), w[d * h : d * h + h], w[d * h + h : d * h + 2 * h], float(w[-1])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        w1, b1, w2, b2 = unpack(w)
        hidden = np.tanh(z @ w1 + b1)
        p = 1 / (1 + np.exp(-(hidden @ w2 + b2)))
        nll = -np.mean(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12))
        g = (p - y) / n
        g_hidden = np.outer(g, w2) * (1 - hidden**2)
        grad = np.r_[
            (z.T @ g_hidden + CONFIDENCE_L2 * w1 / n).ravel(),
            g_hidden.sum(axis=0),
            hidden.T @ g + CONFIDENCE_L2 * w2 / n,
            g.sum(),
        ]
        return nll + 0.5 * CONFIDENCE_L2 * ((w1**2).sum() + (w2**2).sum()) / n, grad

    w1, b1, w2, b2 = unpack(minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 500}).x)
    return Perceptron(mean, scale, w1, b1, w2, b2)


def question_rows(
    ranker: Linear, examples: list[Example], featurizers: dict[str, Featurizer], neighbour_ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """Question features under `ranker`, and whether the answer resting on its top candidate
    (with the neighbours it quotes, see `Featurizer.quoted`) holds a gold answer."""
    rows, labels = [], []
    for e in examples:
        featurizer = featurizers[e.article]
        scores = ranker(e.x) if len(e.x) else np.zeros(0)
        rows.append(featurizer.question(e.question, e.candidates, e.x, scores, e.allowed))
        labels.append(float(e.allowed.any() and quote_correct(e, scores, featurizer, neighbour_ratio)))
    return np.vstack(rows), np.asarray(labels)


def quote_correct(e: Example, scores: np.ndarray, featurizer: Featurizer, neighbour_ratio: float) -> bool:
    """Whether the quote an answer makes from `e`'s candidates ranked by `scores` holds a gold
    answer (a quoted sentence that was not retrieved, such as a pronoun's antecedent, counts as
    not holding one)."""
    probabilities = softmax(scores)
    order = [int(i) for i in np.argsort(-scores, kind="stable") if e.allowed[i]]
    ids = [e.candidates[i].node.node_id for i in order]
    best = order[0]
    quoted = featurizer.quoted(
        ids[0],
        e.candidates[best].node.text,
        zip(ids[1:], probabilities[order[1:]], strict=True),
        probabilities[best],
        neighbour_ratio,
    )
    return any(bool(e.correct[i]) for i, c in enumerate(e.candidates) if c.node.node_id in quoted)


def out_of_fold(
    examples: list[Example], featurizers: dict[str, Featurizer], neighbour_ratio: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Question features, labels and fold of every example, each ranked by a ranker fitted without
    its fold's articles (so the features look like those of an unseen document)."""
    articles = list(dict.fromkeys(e.article for e in examples))
    fold_of = {article: i % FOLDS for i, article in enumerate(articles)}
    folds = np.asarray([fold_of[e.article] for e in examples])
    x = np.zeros((len(examples), len(QUESTION_FEATURES)))
    y = np.zeros(len(examples))
    for fold in sorted(set(fold_of.values())):
        ranker = fit_ranker([e for e, f in zip(examples, folds, strict=True) if f != fold])
        held = np.flatnonzero(folds == fold)
        x[held], y[held] = question_rows(ranker, [examples[i] for i in held], featurizers, neighbour_ratio)
    return x, y, folds


def choose_threshold(confidence: np.ndarray, answerable: np.ndarray, max_false_abstention: float) -> float:
    """The highest threshold that abstains on at most `max_false_abstention` of the answerable questions."""
    scores = np.sort(confidence[answerable])
    return float(scores[int(np.floor(max_false_abstention * len(scores)))])


def train(
    config: Config,
    articles: list[SquadArticle],
    held_out: Collection[str],
    folder: Path,
    progress: Callable[[str], None],
) -> tuple[RankerModel, dict[str, float]]:
    """Fit on the `articles` not `held_out`; the model and figures from the fit articles."""
    started = time.perf_counter()
    fit = [a for a in articles if a.title not in held_out]
    if len(fit) < 2:
        from rag.errors import ConfigError

        raise ConfigError(f"fitting needs two articles that the split does not hold out; {len(fit)} found")
    examples, featurizers = collect(config, fit, folder, progress)
    if not any(e.answerable and e.gold.any() for e in examples):
        from rag.errors import ConfigError

        raise ConfigError("the fit articles have no answerable question whose answer a retrieved sentence holds")
    progress("Fitting the ranker and the confidence model (articles in folds)...")
    x, y, groups = out_of_fold(examples, featurizers, config.answer.neighbour_ratio)
    answerable = np.asarray([e.answerable for e in examples])
    real = np.asarray([not e.synthetic for e in examples])
    real_unanswerable = real & ~answerable
    oof_confidence = np.zeros(len(y))
    for fold in sorted(set(groups)):
        model = fit_confidence(x[groups != fold], y[groups != fold])
        oof_confidence[groups == fold] = 1 / (1 + np.exp(-model(x[groups == fold])))
    threshold = choose_threshold(oof_confidence, answerable & real, MAX_FALSE_ABSTENTION)
    ranker, confidence = fit_ranker(examples), fit_confidence(x, y)
    progress("Fitting the short-answer model...")
    span_data, without_candidate = span_examples(fit, {title: f.passages for title, f in featurizers.items()})
    short_answer, short_figures = fit_short_answer(span_data, without_candidate)
    abstained = oof_confidence < threshold
    reworded_questions = np.asarray([e.synthetic == "reworded" for e in examples])
    swapped_questions = np.asarray([e.synthetic == "swapped" for e in examples])
    figures = {
        "questions": float(real.sum()),
        "out_of_fold_quote_holds_answer": float(y[answerable & real].mean()),
        "out_of_fold_accuracy": float((y.astype(bool) & ~abstained)[answerable & real].mean()),
        "out_of_fold_false_abstention": float(abstained[answerable & real].mean()),
        "out_of_fold_abstention_recall": float(abstained[real_unanswerable].mean())
        if real_unanswerable.any()
        else float("nan"),
        "out_of_fold_foreign_abstention": float(
            abstained[np.asarray([e.synthetic == "foreign" for e in examples])].mean()
        ),
        "out_of_fold_reworded_quote_holds_answer": float(y[reworded_questions].mean()),
        "out_of_fold_reworded_false_abstention": float(abstained[reworded_questions].mean()),
        "out_of_fold_swapped_abstention": float(abstained[swapped_questions].mean())
        if swapped_questions.any()
        else float("nan"),
        **short_figures,
        "seconds": time.perf_counter() - started,
    }
    training = {
        "data": "SQuAD articles, fit ones below",
        "fit_articles": [a.title for a in fit],
        "held_out_articles": [a.title for a in articles if a.title in held_out],
        "questions": len(examples),
        "seed": SEED,
        "foreign_questions_per_article": FOREIGN_QUESTIONS,
        "reworded_share": REWORDED_SHARE,
        "reword_probability": REWORD_PROBABILITY,
        "swapped_share": SWAPPED_SHARE,
        "max_false_abstention": MAX_FALSE_ABSTENTION,
        "folds": FOLDS,
        "ranker_l2": RANKER_L2,
        "confidence_l2": CONFIDENCE_L2,
        "confidence_hidden": CONFIDENCE_HIDDEN,
        "neighbour_ratio": config.answer.neighbour_ratio,
        "embedding": config.embedding.model,
        "figures": {k: round(v, 4) for k, v in figures.items()},
    }
    return RankerModel(ranker, confidence, threshold, training, short_answer.to_json()), figures
