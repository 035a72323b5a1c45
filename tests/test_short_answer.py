"""The short answer: candidates, SQuAD's scores, the shipped model on a document of our own."""

import pytest

from rag.rank import Linear, Perceptron, load_model
from rag.short_answer import (
    SPAN_FEATURES,
    ShortAnswerModel,
    candidates,
    exact_match,
    f1,
    load_short_answer,
    span_features,
    squad_normalise,
    tokens,
)
from rag.train_short_answer import NULL_F1, choose_null_threshold

# A small document of our own (not in the repo's question sets): a museum's annual report.
REPORT = """Harbour Museum annual report

The Harbour Museum welcomed 41,000 visitors in 2019, twice as many as the year before.

The new wing was designed by the architect Samuel Brandt. It opened to the public in March 2021.

Entry costs 12 euros for adults. Children under twelve enter free of charge.

The museum's collection holds 3,200 ship models. Most of them were donated by local families.
"""


def test_squad_normalisation_and_scores_follow_the_official_script():
    assert squad_normalise("The  Eiffel-Tower!") == "eiffeltower"
    assert exact_match("the Fatou Bensouda.", ["Fatou Bensouda"]) == 1.0
    assert f1("Fatou Bensouda", ["Bensouda"]) == pytest.approx(2 / 3)
    assert f1("nothing alike", ["Bensouda", "Fatou Bensouda"]) == 0.0


def test_candidates_start_and_end_on_content_words_and_cross_no_punctuation():
    text = "Last year, the court fined him $41,000 in May."
    spans = {s.text for s in candidates(0, text, tokens(text))}
    assert {"Last year", "$41,000", "May", "court"} <= spans
    assert not any(", " in s for s in spans)
    assert not any(s.split()[0].lower() in {"the", "in", "him"} for s in spans)


def test_features_have_one_row_per_candidate():
    spans, x = span_features("How many visitors came?", ["It welcomed 41,000 visitors.", "Entry is free."], [[], []])
    assert x.shape == (len(spans), len(SPAN_FEATURES))
    assert {s.sentence for s in spans} == {0, 1}


def test_null_threshold_hides_the_spans_that_are_mostly_wrong():
    scored = [(0.1, 0.0), (0.2, 0.0), (0.3, 0.0), (0.6, 1.0), (0.7, 1.0), (0.8, 1.0), (0.9, 1.0)]
    hidden_mean = {threshold: sum(f for p, f in scored if p < threshold) / sum(p < threshold for p, _ in scored)
                   for threshold in (0.6, 0.7, 0.8)}  # fmt: skip
    expected = max(t for t, mean in hidden_mean.items() if mean <= NULL_F1)
    assert choose_null_threshold(scored) == expected  # every wrong span hidden
    assert choose_null_threshold([(0.1, 1.0), (0.5, 1.0)]) == 0.0
    assert choose_null_threshold([(0.4, 0.0), (0.4, 1.0), (0.9, 1.0)]) == 0.0  # never between equal probabilities


def test_shipped_model_has_a_short_answer_model():
    model = load_short_answer(load_model())
    assert model is not None and 0 <= model.threshold < 1


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How many visitors did the Harbour Museum welcome in 2019?", {"41,000"}),
        ("Who was the architect of the new wing?", {"Samuel Brandt"}),
        ("How much does entry cost for adults?", {"12 euros", "12"}),
        ("How many ship models does the collection hold?", {"3,200"}),
    ],
)
def test_answers_carry_the_short_answer_at_its_document_offsets(report_engine, question, expected):
    engine, text = report_engine
    answer = engine.ask(question)
    assert not answer.abstained
    short = answer.short_answer
    assert short is not None and short.text in expected
    assert text[short.start : short.end] == short.text
    assert answer.to_json()["short_answer"] == {"text": short.text, "start": short.start, "end": short.end}


def test_the_short_answer_is_found_in_text_with_runs_of_whitespace(tmp_path, onnx_dir):
    from rag.config import load_config
    from rag.engine import Engine
    from tests.conftest import ROOT

    path = tmp_path / "spaced.txt"
    path.write_text("Ferry report\n\nThe  old ferry   carried\n 1,850 passengers a day  in 1990.\n", encoding="utf-8")
    config = load_config(ROOT / "config.yaml", doc=path, index_dir=tmp_path / "index")
    config = config.model_copy(update={"embedding": config.embedding.model_copy(update={"onnx_dir": onnx_dir})})
    answer = Engine.open(config).ask("How many passengers did the old ferry carry a day?")
    short = answer.short_answer
    assert short is not None and short.text == "1,850"
    assert path.read_text(encoding="utf-8")[short.start : short.end] == "1,850"
    text, _ = answer.parts[short.part]
    assert text[short.offset : short.offset + len(short.text)] == "1,850"  # in the quote as shown


@pytest.fixture(scope="module")
def report_engine(tmp_path_factory, onnx_dir):
    from tests.conftest import engine_on

    folder = tmp_path_factory.mktemp("report")
    path = folder / "harbour-museum.txt"
    path.write_text(REPORT, encoding="utf-8")
    return engine_on(path, folder / "index", onnx_dir), REPORT


def test_a_short_answer_model_with_a_linear_scorer_still_loads():
    width = len(SPAN_FEATURES)
    scorer = {"mean": [0.0] * width, "scale": [1.0] * width, "weights": [0.1] * width, "bias": 0.0}
    old = ShortAnswerModel.from_json({"features": list(SPAN_FEATURES), "scorer": scorer, "threshold": 0.0})
    assert isinstance(old.scorer, Linear)
    sentence = "It welcomed 41,000 visitors."
    found = old.best("How many visitors came?", [sentence], [[]])
    texts = {span.text for span in candidates(0, sentence, tokens(sentence))}
    assert found is not None and found[0].text in texts


def test_the_shipped_short_answer_model_has_a_hidden_layer():
    model = load_short_answer(load_model())
    assert model is not None and isinstance(model.scorer, Perceptron)
    assert model.training["hidden"] == len(model.scorer.weights)
