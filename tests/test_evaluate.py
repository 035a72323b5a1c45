import pytest

from rag.answer import Answer, Citation
from rag.errors import ConfigError
from rag.evaluate import EvalResult, Question, load_dataset, score


def citation(text: str) -> Citation:
    return Citation(1, text, 0, len(text), 1, 0.9, "doc.txt")


def test_scoring_follows_the_design_definitions():
    question = Question("q", 0, "who?", ("Fatou  Bensouda",), "revoked the visa")
    good = score(
        question, Answer("who?", "The prosecutor, fatou bensouda.", False, [citation("They revoked the visa.")]), 3
    )
    assert good.correct and good.hit_at_1
    abstained = score(question, Answer("who?", "Fatou Bensouda", True, [citation("revoked the visa")]), 3)
    assert not abstained.correct and not abstained.hit_at_1
    late = score(question, Answer("who?", "Bensouda?", False, [citation("x"), citation("revoked the visa")]), 3)
    assert not late.correct and not late.hit_at_1 and late.hit_at_k


def test_metrics_count_each_group():
    answerable = Question("a", 0, "q", ("yes",))
    follow_up = Question("c", 1, "q", ("no",))
    unanswerable = Question("u", 0, "q")
    result = EvalResult(top_k=3)
    result.outcomes = [
        score(answerable, Answer("q", "yes", False, [citation("yes")], latency_ms=2.0), 3),
        score(follow_up, Answer("q", "n/a", True, latency_ms=4.0), 3),
        score(unanswerable, Answer("q", "n/a", True, latency_ms=6.0), 3),
    ]
    metrics = result.metrics()
    assert metrics["answer_accuracy"] == 0.5
    assert metrics["false_abstention"] == 0.5
    assert metrics["abstention_recall"] == 1.0
    assert metrics["follow_up_accuracy"] == 0.0
    assert metrics["latency_p50_ms"] == 4.0
    assert [o.question.item_id for o in result.failures()] == ["c"]


def test_load_dataset_reads_all_item_kinds(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"id": "q", "question": "a?", "answers": ["b"]}\n\n{"id": "u", "question": "c?", "unanswerable": true}\n'
        '{"id": "t", "turns": [{"question": "d?", "answers": ["e"]}, {"question": "f?", "answers": ["g"]}]}\n'
    )
    items = load_dataset(path)
    assert [[(q.item_id, q.turn, q.answerable) for q in conv] for conv in items] == [
        [("q", 0, True)],
        [("u", 0, False)],
        [("t", 0, True), ("t", 1, True)],
    ]


def test_bad_dataset_lines_are_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "q", "question": "a?"}\n')
    with pytest.raises(ConfigError, match=r"d.jsonl:1"):
        load_dataset(path)


@pytest.mark.parametrize("name", ["dw-icc-sanctions.jsonl", "python-license.jsonl"])
def test_bundled_question_sets_are_valid(name):
    from tests.conftest import ROOT

    items = load_dataset(ROOT / "eval" / name)
    assert len(items) >= 25


def test_another_runs_predictions_give_their_own_trade_off_curve(tmp_path):
    from rag.evaluate import abstention_curve, predictions_curve, read_predictions
    from rag.report import write_html

    result = EvalResult()
    asked = [
        (Question("a", 0, "q1", ("x",)), 0.9),
        (Question("b", 0, "q2", ("y",)), 0.4),
        (Question("u", 0, "q3"), 0.2),
    ]
    for question, confidence in asked:
        result.outcomes.append(score(question, Answer(question.question, "x", False, confidence=confidence), 3))
    before = tmp_path / "before.jsonl"
    before.write_text(
        '{"id": "a", "turn": 0, "confidence": 0.3}\n{"id": "b", "turn": 0, "confidence": 0.8}\n'
        '{"id": "u", "turn": 0, "confidence": 0.5}\n{"id": "elsewhere", "confidence": 0.1}\n',
        encoding="utf-8",
    )
    curve = predictions_curve(result, read_predictions(before))
    assert (0.5, 0.5, 0.0) in curve and (0.8, 0.5, 1.0) in curve  # answerability comes from this run
    assert (0.4, 0.0, 1.0) in abstention_curve(result)
    html = tmp_path / "report.html"
    write_html(result, html, "test", other=("before.jsonl", read_predictions(before)))
    assert html.read_text(encoding="utf-8").count("data:image/png;base64,") == 3


def test_report_plots_keep_labels_inside_and_count_whole_questions():
    from rag.report import _image, _kind_plot, _latency_plot

    result = EvalResult()
    for i, latency in enumerate([3.0, 5.0]):
        question = Question(f"q{i}", 0, "Who revoked the visa?", ("x",))
        answer = Answer(question.question, "x", False, latency_ms=latency, confidence=0.9)
        result.outcomes.append(score(question, answer, 3))  # both right: 100 % bars
    latency = _latency_plot(result)
    _image(latency)  # draws it
    ticks = latency.axes[0].get_yticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
    kinds = _kind_plot(result)
    _image(kinds)
    axes = kinds.axes[0]
    top_label = max(text.get_window_extent().y1 for text in axes.texts)  # the "100%" bar labels
    assert top_label <= axes.get_window_extent().y1


def test_evidence_at_1_is_the_passage_the_ranker_rates_highest_not_the_first_number():
    from rag.answer import Citation

    antecedent = Citation(1, "Ann Lee founded the firm.", 0, 25, 1, 0.0, "d.txt")
    best = Citation(2, "She sold it in 2001.", 26, 46, 1, 0.9, "d.txt")
    question = Question("q", 0, "When did Ann Lee sell the firm?", ("2001",))
    answer = Answer(question.question, "Ann Lee founded the firm. She sold it in 2001.", False, [antecedent, best])
    outcome = score(question, answer, 3)
    assert outcome.correct and outcome.hit_at_1 and outcome.top1 == {"ranker": True}
