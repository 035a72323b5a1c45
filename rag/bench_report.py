"""The benchmark's printed report: the comparison table in sections, and the memory breakdown.

Columns: ours, the other checkout (`--compare-with`) and ours/other, the llama-index starter
pattern and ours/starter, and a goal (issue 11's acceptance figures) with whether ours meets it.
A column nobody measured is left out; an empty cell means "not measured for this row".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Goal = tuple[str, float]  # ("max", v): ours <= v; ("min", v): ours >= v; ("ratio", v): ours/other <= v


@dataclass
class Row:
    label: str
    values: dict[str, float | None]  # by column: "ours", the other checkout's name, "starter"
    goal: Goal | None = None

    @classmethod
    def of(cls, label: str, figures: dict[str, dict[str, Any]], key: str, goal: Goal | None = None) -> Row:
        return cls(label, {name: figure.get(key) for name, figure in figures.items()}, goal)


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)


def table(sections: list[Section], sides: list[str]) -> str:
    """All sections as one aligned table."""
    other = sides[1] if len(sides) > 1 else None
    starter = any("starter" in row.values for s in sections for row in s.rows)
    heads = ["ours"] + ([other, f"ours/{other}"] if other else []) + (["starter", "ours/start"] if starter else [])
    width = max([len(r.label) + 2 for s in sections for r in s.rows] + [len("measure")])
    goals = any(_goal(row, other) for s in sections for row in s.rows)  # no goal column without a goal in it
    lines = [f"{'measure':<{width}}" + "".join(f"  {h:>10}" for h in heads) + ("  goal" if goals else ""), ""]
    for section in sections:
        lines.append(section.title)
        for row in section.rows:
            cells = [_num(row.values.get("ours"))]
            if other:
                cells += [_num(row.values.get(other)), _ratio(row.values.get("ours"), row.values.get(other))]
            if starter:
                cells += [_num(row.values.get("starter")), _ratio(row.values.get("ours"), row.values.get("starter"))]
            goal = _goal(row, other)
            lines.append(
                f"  {row.label:<{width - 2}}" + "".join(f"  {c:>10}" for c in cells) + (f"  {goal}" if goal else "")
            )
        lines.append("")
    return "\n".join(lines).rstrip()


def memory_table(breakdowns: dict[str, dict[str, Any]]) -> str:
    """Resident memory after each stage, and its change, per checkout."""
    if not breakdowns:
        return ""
    names = list(breakdowns)
    labels: list[tuple[int, str]] = []
    for breakdown in breakdowns.values():
        labels += [(r["depth"], r["stage"]) for r in breakdown["rows"] if (r["depth"], r["stage"]) not in labels]
    width = max(len(label) + 2 * depth for depth, label in labels) + 2
    first = breakdowns[names[0]]
    lines = [
        f"memory breakdown: opening the engine on {first['passages']:,} passages and answering one question (MB)",
        f"{'stage':<{width}}" + "".join(f"  {name + ' RSS':>12}  {'change':>8}" for name in names),
    ]
    for depth, label in labels:
        cells = ""
        for name in names:
            row = next((r for r in breakdowns[name]["rows"] if (r["depth"], r["stage"]) == (depth, label)), None)
            cells += f"  {_num(row and row['rss_mb']):>12}  {_num(row and row['delta_mb']):>8}"
        lines.append(f"{'  ' * depth + label:<{width}}{cells}")
    lines.append(
        f"{'peak (ru_maxrss)':<{width}}" + "".join(f"  {_num(b['peak_mb']):>12}  {'':>8}" for b in breakdowns.values())
    )
    for name, breakdown in breakdowns.items():
        if breakdown["missing"]:
            lines.append(f"{name}: steps not found, counted in the enclosing step: {', '.join(breakdown['missing'])}")
    return "\n".join(lines)


def _goal(row: Row, other: str | None) -> str:
    if row.goal is None:
        return ""
    kind, limit = row.goal
    ours = row.values.get("ours")
    if kind == "ratio":
        base = row.values.get(other) if other else None
        if ours is None or not base:
            return ""
        return f"ours/{other} <= {limit:.2f}: {'yes' if ours / base <= limit else 'NO'}"
    if ours is None:
        return ""
    met = ours <= limit if kind == "max" else ours >= limit
    return f"{'<=' if kind == 'max' else '>='} {limit:g}: {'yes' if met else 'NO'}"


def _ratio(ours: float | None, base: float | None) -> str:
    return f"{ours / base:.2f}" if ours is not None and base else ""


def _num(value: float | int | None) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return (
        ""
        if value is None
        else f"{value:,.0f}"
        if value >= 1000
        else f"{value:,.1f}"
        if value >= 10
        else f"{value:.2f}"
    )
