import random

import numpy as np

from rag.lexical import words
from rag.rank import CANDIDATE_FEATURES, QUESTION_FEATURES
from rag.train import DocumentWords, Example, choose_threshold, fit_confidence, fit_ranker, swapped


def test_ranker_learns_which_feature_marks_the_gold_candidate():
    rng = np.random.default_rng(1)
    examples = []
    for i in range(60):
        x = rng.normal(size=(8, len(CANDIDATE_FEATURES)))
        gold = np.zeros(8, dtype=bool)
        gold[i % 8] = True
        x[gold, 6] += 8.0  # feature 6 ("coverage") is high on the gold candidate
        examples.append(Example("a", "q", True, x, gold, gold, np.ones(8, dtype=bool)))
    ranker = fit_ranker(examples)
    assert int(np.argmax(np.abs(ranker.weights))) == 6 and ranker.weights[6] > 0
    assert all(int(np.argmax(ranker(e.x))) == int(np.argmax(e.gold)) for e in examples[:20])


def test_confidence_is_calibrated_and_learns_what_a_straight_line_cannot():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, len(QUESTION_FEATURES)))
    y = (x[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(float)
    model = fit_confidence(x, y)
    p = 1 / (1 + np.exp(-model(x)))
    assert ((p > 0.5) == (y == 1)).mean() > 0.85
    assert abs(p.mean() - y.mean()) < 0.05
    # two kinds of "no": far below and far above on feature 1 (off-topic, and one detail changed)
    y_two = (np.abs(x[:, 1]) < 1.0).astype(float)
    p_two = 1 / (1 + np.exp(-fit_confidence(x, y_two)(x)))
    assert ((p_two > 0.5) == (y_two == 1)).mean() > 0.9
    assert np.array_equal(fit_confidence(x, y_two)(x), fit_confidence(x, y_two)(x))  # seeded: the same model each time


def test_threshold_abstains_on_at_most_the_allowed_share():
    confidence = np.linspace(0, 1, 101)
    answerable = np.ones(101, dtype=bool)
    t = choose_threshold(confidence, answerable, 0.1)
    assert (confidence[answerable] < t).mean() <= 0.1
    assert (confidence[answerable] < t).mean() >= 0.09


def test_swapped_questions_change_one_detail_to_one_the_answer_paragraph_lacks(engine, article):
    other = "Astronomers at Kepler Observatory mapped distant galaxies with telescopes."
    vocabulary = DocumentWords(engine.stored.nodes, [other])
    text = article.read_text(encoding="utf-8")
    start = text.index("Gambian-born")
    paragraph = vocabulary.gold_paragraph(((start, start + 12),))
    assert "Gambian-born Fatou Bensouda" in paragraph
    question = "Who revoked the visa of the Gambian-born prosecutor?"
    rng = random.Random(0)
    sources = set()
    for _ in range(20):
        changed = swapped(question, paragraph, vocabulary, rng)
        assert changed and changed != question
        new_words = [w for w in words(changed) if w not in words(question)]
        assert len(new_words) == 1 and new_words[0] not in words(paragraph)
        sources.add("document" if new_words[0] in words(text) else "other" if new_words[0] in words(other) else "?")
    assert sources == {"document", "other"}  # from elsewhere in the document, and from outside it
    assert swapped("What is the capital of France?", paragraph, vocabulary, rng) is None
