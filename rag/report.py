"""`rag eval --report-html OUT.html`: the evaluation as one self-contained HTML page with plots.

The page holds the metrics table, the abstention trade-off curve with the threshold in use
marked, accuracy by question kind, a latency histogram and the failed items. Plots are drawn
with matplotlib (Agg backend, no display needed) and embedded as PNG data URLs, so the page is
a single file that opens anywhere.
"""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.evaluate import EvalResult, _shown, abstention_curve, predictions_curve, question_kind

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

KINDS = ("who", "what", "when", "where", "why", "how many", "other")
MAX_FAILURES = 200


def write_html(
    result: EvalResult, path: Path, title: str, other: tuple[str, list[dict[str, Any]]] | None = None
) -> None:
    """Write the report for `result` to `path`; `other` (a name and another run's answer JSON lines
    over the same questions) adds that run's trade-off curve beside this one."""
    sections = [
        f"<h1>Quality report: {escape(title)}</h1>",
        "<h2>Metrics</h2>" + _metrics_table(result),
        "<h2>Abstention trade-off</h2>" + _image(_curve_plot(result, other)),
        "<h2>Accuracy and short answers by question kind</h2>" + _image(_kind_plot(result)),
        "<h2>Latency</h2>" + _image(_latency_plot(result)),
        "<h2>Failures</h2>" + _failures_table(result),
    ]
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "td,th{padding:2px 8px;text-align:left;vertical-align:top}tr:nth-child(even){background:#f4f4f4}"
    )
    head = f"<meta charset='utf-8'><title>{escape(title)}</title><style>{style}</style>"
    page = f"<!doctype html><html><head>{head}</head><body>{''.join(sections)}</body></html>"
    path.write_text(page, encoding="utf-8")


def accuracy_by_kind(result: EvalResult) -> dict[str, tuple[float, int]]:
    """Answer accuracy and count of answerable questions, per question kind."""
    groups: dict[str, list[bool]] = {}
    for o in result.outcomes:
        if o.question.answerable:
            groups.setdefault(question_kind(o.question.question), []).append(o.correct)
    return {kind: (sum(groups[kind]) / len(groups[kind]), len(groups[kind])) for kind in KINDS if kind in groups}


def short_f1_by_kind(result: EvalResult) -> dict[str, float]:
    """Short-answer F1 (a missing one counts 0) over the correct answers, per question kind."""
    groups: dict[str, list[float]] = {}
    for o in result.outcomes:
        if o.short_f1 is not None:
            groups.setdefault(question_kind(o.question.question), []).append(o.short_f1)
    return {kind: sum(groups[kind]) / len(groups[kind]) for kind in KINDS if kind in groups}


def _metrics_table(result: EvalResult) -> str:
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(_shown(k, v))}</td></tr>" for k, v in result.metrics().items())
    return f"<table>{rows}</table>"


def _failures_table(result: EvalResult) -> str:
    failures = result.failures()
    rows = []
    for o in failures[:MAX_FAILURES]:
        expected = " | ".join(o.question.answers) if o.question.answerable else "(abstain)"
        got = "(abstained)" if o.answer.abstained else o.answer.text
        rows.append(f"<tr><td>{escape(o.question.question)}</td><td>{escape(expected)}</td><td>{escape(got)}</td></tr>")
    more = f"<p>… and {len(failures) - MAX_FAILURES} more.</p>" if len(failures) > MAX_FAILURES else ""
    header = "<tr><th>question</th><th>expected</th><th>quoted</th></tr>"
    return f"<p>{len(failures)} failed items.</p><table>{header}{''.join(rows)}</table>{more}"


def _curve_plot(result: EvalResult, other: tuple[str, list[dict[str, Any]]] | None) -> Figure:
    figure, axes = _figure()
    if not any(not o.question.answerable for o in result.outcomes):
        axes.text(0.5, 0.5, "no unanswerable questions in this set: no trade-off to show", ha="center", va="center")
        return figure
    points = abstention_curve(result)
    axes.plot([p[1] for p in points], [p[2] for p in points], label="this run, all thresholds")
    if other is not None:
        name, predictions = other
        before = predictions_curve(result, predictions)
        axes.plot([p[1] for p in before], [p[2] for p in before], linestyle="--", color="grey", label=name)
    threshold = result.threshold
    if threshold is not None:
        at = min(points, key=lambda p: abs(p[0] - threshold))
        axes.plot(
            [at[1]],
            [at[2]],
            "o",
            color="crimson",
            label=f"threshold {threshold:.3f}: {at[1]:.1%} false, {at[2]:.1%} recall",
        )
    axes.axvline(0.10, linestyle=":", color="grey", label="10 % false abstention")
    axes.set(
        xlabel="false abstention (answerable questions abstained)",
        ylabel="abstention recall (unanswerable abstained)",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    axes.legend(loc="lower right")
    return figure


def _kind_plot(result: EvalResult) -> Figure:
    figure, axes = _figure()
    by_kind = accuracy_by_kind(result)
    short = short_f1_by_kind(result)
    places = range(len(by_kind))
    bars = axes.bar([i - 0.2 for i in places], [v[0] for v in by_kind.values()], 0.4, label="answer accuracy")
    axes.bar_label(bars, labels=[f"{v[0]:.0%}\nn={v[1]}" for v in by_kind.values()], fontsize=8)
    f1_bars = axes.bar([i + 0.2 for i in places], [short.get(k, 0.0) for k in by_kind], 0.4, label="short-answer F1")
    axes.bar_label(f1_bars, labels=[f"{short.get(k, 0.0):.2f}" for k in by_kind], fontsize=8)
    axes.set_xticks(list(places), list(by_kind))
    axes.set(ylabel="share / F1", ylim=(0, 1.25))  # room above 100 % for the bar labels
    axes.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])  # no tick above what a share can be
    axes.legend(loc="upper right", fontsize=8)
    return figure


def _latency_plot(result: EvalResult) -> Figure:
    figure, axes = _figure()
    from matplotlib.ticker import MaxNLocator

    axes.hist([o.answer.latency_ms for o in result.outcomes], bins=40, color="seagreen")
    axes.set(xlabel="latency per question, warm (ms)", ylabel="questions")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of questions: whole numbers
    return figure


def _figure() -> tuple[Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    return figure, figure.add_subplot()


def _image(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    return f"<img alt='plot' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"
