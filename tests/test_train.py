import numpy as np

from rag.rank import CANDIDATE_FEATURES, QUESTION_FEATURES
from rag.train import Example, choose_threshold, fit_confidence, fit_ranker


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


def test_confidence_is_a_calibrated_logistic_regression():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, len(QUESTION_FEATURES)))
    y = (x[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(float)
    model = fit_confidence(x, y)
    p = 1 / (1 + np.exp(-model(x)))
    assert ((p > 0.5) == (y == 1)).mean() > 0.85
    assert abs(p.mean() - y.mean()) < 0.05


def test_threshold_abstains_on_at_most_the_allowed_share():
    confidence = np.linspace(0, 1, 101)
    answerable = np.ones(101, dtype=bool)
    t = choose_threshold(confidence, answerable, 0.1)
    assert (confidence[answerable] < t).mean() <= 0.1
    assert (confidence[answerable] < t).mean() >= 0.09
