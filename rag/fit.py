"""The conditional logit fitted by `rag train`: for the ranker (a softmax over a question's
retrieved passages) and for the short answer (a softmax over a quote's candidate spans)."""

from __future__ import annotations

import numpy as np

from rag.rank import Linear


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
