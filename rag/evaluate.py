"""Evaluation harness: run a JSONL question set through the engine and score it.

Metrics: answer accuracy (answerable, not abstained, answer contains a gold answer),
evidence hit@1 and hit@k (the gold evidence, else a gold answer, inside one of the first k
citations), abstention recall (unanswerable items abstained), false abstention (answerable items
abstained), follow-up accuracy (answer accuracy on turns after the first) and warm latency p50/p95.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.answer import Answer, normalise
from rag.bench_workers import percentile
from rag.errors import ConfigError, RagError
from rag.short_answer import exact_match, f1

if TYPE_CHECKING:
    from rag.config import Config
    from rag.engine import Engine
    from rag.squad import SquadArticle


@dataclass(frozen=True)
class Question:
    item_id: str
    turn: int
    question: str
    answers: tuple[str, ...] = ()
    evidence: str | None = None

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass
class Outcome:
    question: Question
    answer: Answer
    prediction: dict[str, Any]
    correct: bool
    hit_at_1: bool
    hit_at_k: bool
    # system -> its top sentence holds a gold answer (never abstaining)
    top1: dict[str, bool] = field(default_factory=dict)
    # SQuAD exact match and F1 of the short answer (0 when none is shown); None unless `correct`
    short_em: float | None = None
    short_f1: float | None = None


@dataclass
class EvalResult:
    outcomes: list[Outcome] = field(default_factory=list)
    top_k: int = 3
    threshold: float | None = None  # the abstention threshold the answers were given with

    def metrics(self) -> dict[str, Any]:
        answerable = [o for o in self.outcomes if o.question.answerable]
        unanswerable = [o for o in self.outcomes if not o.question.answerable]
        follow_ups = [o for o in answerable if o.question.turn > 0]
        correct = [o for o in answerable if o.correct]
        latencies = sorted(o.answer.latency_ms for o in self.outcomes)
        return {
            "questions": len(self.outcomes),
            "answerable": len(answerable),
            "unanswerable": len(unanswerable),
            "answer_accuracy": _share(answerable, lambda o: o.correct),
            "evidence_hit@1": _share(answerable, lambda o: o.hit_at_1),
            f"evidence_hit@{self.top_k}": _share(answerable, lambda o: o.hit_at_k),
            "abstention_recall": _share(unanswerable, lambda o: o.answer.abstained),
            "false_abstention": _share(answerable, lambda o: o.answer.abstained),
            "follow_up_accuracy": _share(follow_ups, lambda o: o.correct),
            # on the answers whose quote holds a gold answer: is a short answer shown, and its EM/F1
            "short_answer_present": _share(correct, lambda o: o.answer.short_answer is not None),
            "short_answer_em": _mean([o.short_em for o in correct]),
            "short_answer_f1": _mean([o.short_f1 for o in correct]),
            "follow_ups": len(follow_ups),
            **{
                f"top1_{system}": _share(answerable, lambda o, s=system: o.top1.get(s, False))
                for system in self.systems()
            },
            "latency_p50_ms": percentile(latencies, 50),
            "latency_p95_ms": percentile(latencies, 95),
        }

    def systems(self) -> list[str]:
        """Systems with a never-abstaining top-1 figure: ours ("ranker") and, for SQuAD, the baselines."""
        return list(dict.fromkeys(system for o in self.outcomes for system in o.top1))

    def failures(self) -> list[Outcome]:
        return [
            o
            for o in self.outcomes
            if (o.question.answerable and not o.correct) or (not o.question.answerable and not o.answer.abstained)
        ]


def load_dataset(path: Path) -> list[list[Question]]:
    """Conversations of questions (a single question is a one-turn conversation)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read dataset {path}: {exc.strerror}") from None
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            items.append(_conversation(record, number))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}:{number}: not a dataset item ({exc})") from None
    if not items:
        raise ConfigError(f"{path}: the dataset has no items")
    return items


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """Answer JSON lines written by `rag eval --predictions`."""
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"cannot read predictions {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not answer JSON lines ({exc})") from None


def _conversation(record: dict[str, Any], number: int) -> list[Question]:
    item_id = str(record.get("id", f"line{number}"))
    turns = record["turns"] if "turns" in record else [record]
    questions = []
    for turn, t in enumerate(turns):
        answers = () if t.get("unanswerable") else tuple(t["answers"])
        if not answers and not t.get("unanswerable"):
            raise ValueError("an item needs answers or unanswerable: true")
        questions.append(Question(item_id, turn, t["question"], answers, t.get("evidence")))
    return questions


def evaluate(
    engine: Engine, items: list[list[Question]], baselines: bool = False, result: EvalResult | None = None
) -> EvalResult:
    """Ask every question (conversations in one session each) and score the answers, adding them
    to `result`. With `baselines`, also score the top BM25 and the top dense sentence."""
    if not items:
        return result or EvalResult(top_k=engine.config.retrieval.top_k)
    engine.ask("What is this about?")  # warm-up, so latencies are warm
    result = result or EvalResult(top_k=engine.config.retrieval.top_k)
    result.threshold = engine.threshold
    for conversation in items:
        session = engine.new_session()
        for question in conversation:
            try:
                answer = engine.ask(question.question, session)
            except RagError as exc:
                answer = Answer(question.question, str(exc), abstained=True)
            outcome = score(question, answer, result.top_k)
            if baselines and question.turn == 0:
                outcome.top1.update(baseline_top1(engine, question))
            result.outcomes.append(outcome)
    return result


def evaluate_squad(
    config: Config, articles: list[SquadArticle], folder: Path, progress: Callable[[str], None]
) -> EvalResult:
    """Each article as one document with its own index (built in `folder` when missing); results pooled."""
    from rag.engine import Engine
    from rag.squad import article_config

    result = EvalResult(top_k=config.retrieval.top_k)
    for article in (a for a in articles if a.questions):
        engine = Engine.open(article_config(config, article, folder), progress=progress)
        evaluate(engine, [[q] for q in article.questions], baselines=True, result=result)
        progress(f"  {article.title}: {len(article.questions)} questions")
    return result


def baseline_top1(engine: Engine, question: Question) -> dict[str, bool]:
    """Whether the single best BM25 sentence, and the single best dense sentence, hold a gold answer."""
    retriever = engine.retriever
    tops = {
        "bm25": [i for i, _ in retriever.lexical(question.question)[:1]],
        "dense": retriever.dense(retriever.embed(question.question))[:1],
    }
    return {name: any(_holds(retriever.nodes[i].text, question.answers) for i in ids) for name, ids in tops.items()}


def score(question: Question, answer: Answer, top_k: int) -> Outcome:
    # by the ranker's probability, best first: citations are numbered in reading order instead
    ranked = sorted(answer.citations, key=lambda c: c.score, reverse=True)
    texts = [_fold(c.text) for c in ranked]
    targets = [_fold(question.evidence)] if question.evidence else [_fold(a) for a in question.answers]
    correct = not answer.abstained and _holds(answer.text, question.answers)
    usable = not answer.abstained and question.answerable
    top = ranked[0].text if ranked else ""  # one sentence, like the baselines
    short = answer.short_answer.text if answer.short_answer else None
    return Outcome(
        question,
        answer,
        answer.to_json(question.item_id, question.turn),
        correct,
        usable and any(t in text for t in targets for text in texts[:1]),
        usable and any(t in text for t in targets for text in texts[:top_k]),
        {"ranker": _holds(top, question.answers)} if answer.mode == "extractive" else {},
        (exact_match(short, question.answers) if short else 0.0) if correct else None,
        (f1(short, question.answers) if short else 0.0) if correct else None,
    )


def _holds(text: str, answers: tuple[str, ...]) -> bool:
    """Whether `text` contains a gold answer (case-insensitive, whitespace-normalised)."""
    return any(_fold(a) in _fold(text) for a in answers)


def abstention_curve(result: EvalResult) -> list[tuple[float, float, float]]:
    """(threshold, false abstention, abstention recall) at every confidence seen, from 0 up."""
    return trade_off(
        [o.answer.confidence for o in result.outcomes if o.question.answerable and o.answer.confidence is not None],
        [o.answer.confidence for o in result.outcomes if not o.question.answerable and o.answer.confidence is not None],
    )


def predictions_curve(result: EvalResult, predictions: list[dict[str, Any]]) -> list[tuple[float, float, float]]:
    """The same curve for another run's answer JSON lines (`--predictions` of another model) over
    the same questions: their confidences, with answerability taken from `result`."""
    answerable = {(o.question.item_id, o.question.turn): o.question.answerable for o in result.outcomes}
    scored = [
        (answerable[key], float(p["confidence"]))
        for p in predictions
        if p.get("confidence") is not None and (key := (str(p["id"]), int(p.get("turn", 0)))) in answerable
    ]
    return trade_off([c for a, c in scored if a], [c for a, c in scored if not a])


def trade_off(answerable: list[float], unanswerable: list[float]) -> list[tuple[float, float, float]]:
    """(threshold, share of `answerable` below it, share of `unanswerable` below it) at every confidence."""
    points = []
    for t in sorted({0.0, *answerable, *unanswerable, 1.0}):
        points.append(
            (
                t,
                sum(c < t for c in answerable) / max(len(answerable), 1),
                sum(c < t for c in unanswerable) / max(len(unanswerable), 1),
            )
        )
    return points


def question_kind(question: str) -> str:
    """who, what, when, where, why, how many or other: the kind a question is reported under."""
    q = question.lower()
    if re.search(r"\bhow (many|much)\b", q):
        return "how many"
    return next(
        (w for w in ("who", "when", "where", "why", "what", "which") if re.search(rf"\b{w}\b", q)), "other"
    ).replace("which", "what")


def format_report(result: EvalResult) -> str:
    metrics = result.metrics()
    lines = ["metric                 value", "---------------------  -------"]
    for key, value in metrics.items():
        lines.append(f"{key:<21}  {_shown(key, value)}")
    failures = result.failures()
    if failures:
        lines += ["", f"Failed items ({len(failures)}):"]
        for o in failures:
            q = o.question
            expected = " | ".join(q.answers) if q.answerable else "(abstain)"
            got = "(abstained)" if o.answer.abstained else o.answer.text
            lines.append(f"- {q.item_id}#{q.turn} {q.question}\n    expected: {expected}\n    got:      {got[:200]}")
    return "\n".join(lines)


def write_outputs(result: EvalResult, predictions: Path | None, report: Path | None) -> None:
    if predictions:
        predictions.write_text(
            "".join(json.dumps(o.prediction, ensure_ascii=False) + "\n" for o in result.outcomes), encoding="utf-8"
        )
    if report:
        failures = [
            {
                "id": o.question.item_id,
                "turn": o.question.turn,
                "question": o.question.question,
                "expected": list(o.question.answers),
                "got": o.answer.text,
                "abstained": o.answer.abstained,
            }
            for o in result.failures()
        ]
        report.write_text(
            json.dumps({"metrics": result.metrics(), "failures": failures}, indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )


def _shown(key: str, value: Any) -> str:
    """Shares as percentages, latencies in ms, counts as they are."""
    if value is None:
        return "n/a"
    if key.endswith("_ms"):
        return f"{value:.1f}"
    return f"{value:.1%}" if isinstance(value, float) else str(value)


def _fold(text: str) -> str:
    return normalise(text).lower()


def _share(outcomes: list[Outcome], test) -> float | None:
    return sum(1 for o in outcomes if test(o)) / len(outcomes) if outcomes else None


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None
