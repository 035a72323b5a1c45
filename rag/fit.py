"""The softmax-over-a-group models fitted by `rag train`: a conditional logit for the ranker (a
softmax over a question's retrieved passages), and one with a hidden layer for the short answer
(a softmax over a quote's candidate spans)."""

from __future__ import annotations

import numpy as np

from rag.rank import Linear, Perceptron


def fit_conditional_logit(groups: list[tuple[np.ndarray, np.ndarray]], l2: float) -> Linear:
    """Weights of a softmax over each group's rows (features, gold mask) that maximise the
    probability of the gold rows; L2-regularised, L-BFGS from zeros (deterministic)."""
    from scipy.optimize import minimize

    rows = np.vstack([x for x, _ in groups])
    mean, scale = rows.mean(axis=0), rows.std(axis=0) + 1e-6
    standardised = [((x - mean) / scale, gold) for x, gold in groups]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = l2 * 0.5 * w @ w, l2 * w
        for z, gold in standardised:
            s = z @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            pg = p[gold].sum()
            total -= np.log(pg + 1e-12)
            q = np.where(gold, p / (pg + 1e-12), 0.0)  # posterior over the gold rows
            grad -= z.T @ (q - p)
        return total / len(groups), grad / len(groups)

    w = minimize(loss, np.zeros(rows.shape[1]), jac=True, method="L-BFGS-B").x
    return Linear(mean, scale, w, 0.0)


def fit_conditional_perceptron(
    groups: list[tuple[np.ndarray, np.ndarray]], hidden: int, l2: float, seed: int
) -> Perceptron:
    """A one-hidden-layer scorer of each group's rows, softmax over the group, maximising the
    probability of the gold rows: the interactions a linear score cannot weigh (a "when"
    question and a number that is a year). L2 on the weights, L-BFGS from a seeded start, so
    the same data give the same model; all groups in one matrix, so a step costs a few products."""
    from scipy.optimize import minimize

    rows = np.vstack([x for x, _ in groups])
    gold = np.concatenate([g for _, g in groups])
    starts = np.cumsum([0] + [len(g) for _, g in groups[:-1]])
    group_of = np.repeat(np.arange(len(groups)), [len(g) for _, g in groups])
    mean, scale = rows.mean(axis=0), rows.std(axis=0) + 1e-6
    z = (rows - mean) / scale
    d = z.shape[1]
    rng = np.random.default_rng(seed)
    start = np.r_[rng.normal(0.0, 0.1 / np.sqrt(d), d * hidden), np.zeros(hidden), rng.normal(0.0, 0.1, hidden)]

    def unpack(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return w[: d * hidden].reshape(d, hidden), w[d * hidden : d * hidden + hidden], w[d * hidden + hidden :]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        w1, b1, w2 = unpack(w)
        h = np.tanh(z @ w1 + b1)
        s = h @ w2
        e = np.exp(s - np.maximum.reduceat(s, starts)[group_of])
        p = e / np.add.reduceat(e, starts)[group_of]
        p_gold = np.add.reduceat(p * gold, starts)
        q = np.where(gold, p / (p_gold[group_of] + 1e-12), 0.0)  # the posterior over the gold rows
        g = (p - q) / len(groups)  # d loss / d score
        g_hidden = np.outer(g, w2) * (1 - h**2)
        total = -np.log(p_gold + 1e-12).mean() + 0.5 * l2 * ((w1**2).sum() + (w2**2).sum())
        grad = np.r_[(z.T @ g_hidden + l2 * w1).ravel(), g_hidden.sum(axis=0), h.T @ g + l2 * w2]
        return total, grad

    w1, b1, w2 = unpack(minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 300}).x)
    return Perceptron(mean, scale, w1, b1, w2, 0.0)
