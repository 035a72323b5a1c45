"""`python -m rag train`: fit the ranker and the answer confidence on SQuAD-format articles.

Reproducible: the split is by article and fixed (`FIT_ARTICLES`, recorded in the model file),
the optimiser is deterministic (L-BFGS from zeros), and the abstention threshold is chosen on
out-of-fold predictions of the fit articles only (leave one article out), so the held-out
articles that `rag eval --squad` reports on are never looked at.

- Ranker: a conditional logit (softmax over each question's retrieved candidates), trained to put
  probability on the sentences that hold a gold answer; L2-regularised.
- Confidence: logistic regression on question-level features of the ranking, trained to predict
  whether the top sentence holds a gold answer (unanswerable questions count as "no"), on
  rankings made by rankers that did not see the question's article. Besides SQuAD's own
  unanswerable questions (only one fit article has them), each fit article is also asked 100
  questions of the other fit articles: unanswerable there by construction, like a user asking
  about something the document does not cover. (Predicting "answerable" instead of "the top
  sentence is right" was tried: on the fit articles out of fold it caught 15 % of the real
  unanswerable questions instead of 24 %, at 1.5 points less accuracy.)
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.config import Config
from rag.evaluate import Question
from rag.lexical import FUNCTION_WORDS, WORD, stem
from rag.rank import CANDIDATE_FEATURES, Featurizer, Linear, RankerModel
from rag.squad import SquadArticle, article_config

if TYPE_CHECKING:
    from rag.retrieve import Candidate

# The SQuAD 2.0 training articles fitted on (of the ten in eval/squad/train-v2.0-10-articles.json); the
# other five are the held-out report split. Both halves hold an article with unanswerable questions.
FIT_ARTICLES = (
    "Beyoncé",
    "Frédéric_Chopin",
    "Sino-Tibetan_relations_during_the_Ming_dynasty",
    "The_Legend_of_Zelda:_Twilight_Princess",
    "2008_Sichuan_earthquake",
)
SEED = 20261128
FOREIGN_QUESTIONS = 100  # per fit article: questions of the other articles, asked of it as unanswerable examples
REWORDED_SHARE = 0.3  # share of answerable questions also asked reworded (see `reworded`)
REWORD_PROBABILITY = 0.6
MAX_FALSE_ABSTENTION = 0.08  # on the fit articles' out-of-fold predictions; leaves room below 10 % elsewhere
RANKER_L2 = 1.0
CONFIDENCE_L2 = 1.0


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
    synthetic: str = ""  # "foreign": another article's question (unanswerable here); "reworded": see `reworded`
    candidates: list[Candidate] = field(default_factory=list)


def collect(config: Config, articles: list[SquadArticle], folder: Path, progress: Callable[[str], None]) -> tuple[list[Example], dict[str, Featurizer]]:
    """Retrieve every question of `articles` with the real engine and compute candidate features."""
    from rag.engine import open_retrieval

    examples, featurizers = [], {}
    for article in articles:
        _, stored, retriever = open_retrieval(article_config(config, article, folder), progress=progress)
        featurizer = featurizers[article.title] = Featurizer(stored.nodes)
        rng = random.Random(f"{SEED}:{article.title}")
        foreign = [q.question for other in articles if other is not article for q in other.questions]
        asked = [(q, q.question, article.spans[q.item_id], "") for q in article.questions]
        asked += [(Question(f"foreign{i}", 0, text), text, (), "foreign") for i, text in enumerate(rng.sample(foreign, min(FOREIGN_QUESTIONS, len(foreign))))]
        asked += [(q, reworded(q.question, featurizer, rng), spans, "reworded") for q, _, spans, _ in asked if q.answerable and rng.random() < REWORDED_SHARE]
        for q, wording, spans, synthetic in asked:
            candidates = retriever.retrieve([q.question], [wording])
            gold = [any(c.node.metadata["start"] <= s and e <= c.node.metadata["end"] for s, e in spans) for c in candidates]
            correct = [any(a.lower() in c.node.text.lower() for a in q.answers) for c in candidates]
            x = featurizer.candidates(wording, candidates)
            allowed = featurizer.offers_kind(wording, candidates)
            examples.append(Example(article.title, wording, q.answerable, x, np.asarray(gold, dtype=bool), np.asarray(correct, dtype=bool), allowed, synthetic, candidates))
        progress(f"  {article.title}: {len(article.questions)} questions, {FOREIGN_QUESTIONS} from other articles, some reworded")
    return examples, featurizers


def reworded(question: str, featurizer: Featurizer, rng: random.Random) -> str:
    """The question as a user might put it in their own words: each lower-case content word the
    document uses is, with probability `REWORD_PROBABILITY`, replaced by a word the document does
    not know (names stay: a paraphrase keeps them).
    Retrieval still embeds the original question (the meaning a paraphrase keeps), while BM25 and
    the word-overlap features see the new words, as they would for a real paraphrase."""

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        if word[:1].isupper() or word.lower() in FUNCTION_WORDS or stem(word.lower()) not in featurizer.weights or rng.random() >= REWORD_PROBABILITY:
            return word
        return "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(7))

    return WORD.sub(swap, question)


def fit_ranker(examples: list[Example]) -> Linear:
    """Conditional-logit weights maximising the probability of the gold candidates."""
    from scipy.optimize import minimize

    usable = [e for e in examples if e.gold.any()]
    rows = np.vstack([e.x for e in usable])
    mean, scale = rows.mean(axis=0), rows.std(axis=0) + 1e-6
    groups = [((e.x - mean) / scale, e.gold) for e in usable]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = RANKER_L2 * 0.5 * w @ w, RANKER_L2 * w
        for z, gold in groups:
            s = z @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            pg = p[gold].sum()
            total -= np.log(pg + 1e-12)
            q = np.where(gold, p / (pg + 1e-12), 0.0)  # posterior over the gold candidates
            grad -= z.T @ (q - p)
        return total / len(groups), grad / len(groups)

    w = minimize(loss, np.zeros(len(CANDIDATE_FEATURES)), jac=True, method="L-BFGS-B").x
    return Linear(mean, scale, w, 0.0)


def fit_confidence(x: np.ndarray, y: np.ndarray) -> Linear:
    """L2-regularised logistic regression of `y` on the question features `x`."""
    from scipy.optimize import minimize

    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        p = 1 / (1 + np.exp(-(z @ w)))
        reg = np.r_[w[:-1], 0.0] * CONFIDENCE_L2
        nll = -np.sum(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12)) + 0.5 * reg @ w
        return nll / len(y), (z.T @ (p - y) + reg) / len(y)

    w = minimize(loss, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B").x
    return Linear(mean, scale, w[:-1], float(w[-1]))


def question_rows(ranker: Linear, examples: list[Example], featurizers: dict[str, Featurizer]) -> tuple[np.ndarray, np.ndarray]:
    """Question features under `ranker`, and whether its top candidate holds a gold answer."""
    rows, labels = [], []
    for e in examples:
        scores = ranker(e.x) if len(e.x) else np.zeros(0)
        rows.append(featurizers[e.article].question(e.question, e.candidates, e.x, scores, e.allowed))
        labels.append(float(e.allowed.any() and e.correct[int(np.argmax(np.where(e.allowed, scores, -np.inf)))]))
    return np.vstack(rows), np.asarray(labels)


def out_of_fold(examples: list[Example], featurizers: dict[str, Featurizer]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Question features, labels and article of every example, each ranked by a ranker fitted
    without its article (so the features look like those of an unseen document)."""
    xs, ys, groups = [], [], []
    for article in dict.fromkeys(e.article for e in examples):
        ranker = fit_ranker([e for e in examples if e.article != article])
        held = [e for e in examples if e.article == article]
        x, y = question_rows(ranker, held, featurizers)
        xs.append(x)
        ys.append(y)
        groups.extend([article] * len(held))
    return np.vstack(xs), np.concatenate(ys), np.asarray(groups)


def choose_threshold(confidence: np.ndarray, answerable: np.ndarray, max_false_abstention: float) -> float:
    """The highest threshold that abstains on at most `max_false_abstention` of the answerable questions."""
    scores = np.sort(confidence[answerable])
    return float(scores[int(np.floor(max_false_abstention * len(scores)))])


def train(config: Config, articles: list[SquadArticle], folder: Path, progress: Callable[[str], None]) -> tuple[RankerModel, dict[str, float]]:
    """Fit on the `FIT_ARTICLES` among `articles`; the model and figures from the fit articles."""
    started = time.perf_counter()
    fit = [a for a in articles if a.title in FIT_ARTICLES]
    if len(fit) < 2:
        from rag.errors import ConfigError

        raise ConfigError(f"the SQuAD file lacks the fit articles ({', '.join(FIT_ARTICLES)})")
    examples, featurizers = collect(config, fit, folder, progress)
    if not any(e.answerable and e.gold.any() for e in examples):
        from rag.errors import ConfigError

        raise ConfigError("the fit articles have no answerable question whose answer a retrieved sentence holds")
    progress("Fitting the ranker and the confidence model (leave one article out)...")
    x, y, groups = out_of_fold(examples, featurizers)
    answerable = np.asarray([e.answerable for e in examples])
    real = np.asarray([not e.synthetic for e in examples])
    real_unanswerable = real & ~answerable
    oof_confidence = np.zeros(len(y))
    for article in dict.fromkeys(groups):
        model = fit_confidence(x[groups != article], y[groups != article])
        oof_confidence[groups == article] = 1 / (1 + np.exp(-model(x[groups == article])))
    threshold = choose_threshold(oof_confidence, answerable & real, MAX_FALSE_ABSTENTION)
    ranker, confidence = fit_ranker(examples), fit_confidence(x, y)
    abstained = oof_confidence < threshold
    reworded_questions = np.asarray([e.synthetic == "reworded" for e in examples])
    figures = {
        "questions": float(real.sum()),
        "out_of_fold_top1": float(y[answerable & real].mean()),
        "out_of_fold_accuracy": float((y.astype(bool) & ~abstained)[answerable & real].mean()),
        "out_of_fold_false_abstention": float(abstained[answerable & real].mean()),
        "out_of_fold_abstention_recall": float(abstained[real_unanswerable].mean()) if real_unanswerable.any() else float("nan"),
        "out_of_fold_foreign_abstention": float(abstained[~answerable & ~real].mean()),
        "out_of_fold_reworded_top1": float(y[reworded_questions].mean()),
        "out_of_fold_reworded_false_abstention": float(abstained[reworded_questions].mean()),
        "seconds": time.perf_counter() - started,
    }
    training = {
        "data": "SQuAD 2.0 train, articles below",
        "fit_articles": [a.title for a in fit],
        "held_out_articles": [a.title for a in articles if a.title not in FIT_ARTICLES],
        "questions": len(examples),
        "seed": SEED,
        "foreign_questions_per_article": FOREIGN_QUESTIONS,
        "reworded_share": REWORDED_SHARE,
        "reword_probability": REWORD_PROBABILITY,
        "max_false_abstention": MAX_FALSE_ABSTENTION,
        "embedding": config.embedding.model,
        "figures": {k: round(v, 4) for k, v in figures.items()},
    }
    return RankerModel(ranker, confidence, threshold, training), figures

