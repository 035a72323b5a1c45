"""The softmax-over-a-group fitters (`rag.fit`): the hidden layer learns what a linear score cannot."""

import numpy as np

from rag.fit import fit_conditional_logit, fit_conditional_perceptron


def xor_groups(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Groups of four rows (a, b) in {0, 1}², shuffled; the gold rows are those where a != b."""
    rng = np.random.default_rng(3)
    corners = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    groups = []
    for _ in range(count):
        x = corners[rng.permutation(4)]
        groups.append((x, x[:, 0] != x[:, 1]))
    return groups


def gold_probability(scorer, groups) -> float:
    total = 0.0
    for x, gold in groups:
        s = scorer(x)
        p = np.exp(s - s.max())
        total += p[gold].sum() / p.sum()
    return total / len(groups)


def test_the_perceptron_puts_the_probability_on_gold_rows_a_linear_score_cannot_single_out():
    groups = xor_groups(40)
    linear = fit_conditional_logit(groups, l2=0.01)
    perceptron = fit_conditional_perceptron(groups, hidden=4, l2=0.001, seed=1)
    assert gold_probability(linear, groups) < 0.6  # no straight line ranks both odd corners first
    assert gold_probability(perceptron, groups) > 0.9
    again = fit_conditional_perceptron(groups, hidden=4, l2=0.001, seed=1)
    assert np.array_equal(perceptron(groups[0][0]), again(groups[0][0]))  # seeded: the same model each time
