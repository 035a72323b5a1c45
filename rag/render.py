"""Turn an `Answer` into text for a person: the answer first, then its numbered citations."""

from __future__ import annotations

import json
import textwrap

from rag.answer import Answer, Citation

SNIPPET_CHARS = 110


def terminal(answer: Answer) -> str:
    """Answer with short citations, for the CLI and the REPL."""
    if answer.abstained:
        lines = [answer.text]
        if answer.citations:
            lines += ["", "Closest passages (they do not answer the question):"]
            lines += [_citation_line(c, SNIPPET_CHARS) for c in answer.citations]
        return "\n".join(lines)
    markers = "".join(f"[{c.n}]" for c in answer.citations[:1])
    lines = [_wrap(f"{answer.text} {markers}"), "", "Sources:"]
    lines += [_citation_line(c, SNIPPET_CHARS) for c in answer.citations]
    return "\n".join(lines)


def sources(answer: Answer | None) -> str:
    """The full quoted passages of an answer, for /sources."""
    if answer is None or not answer.citations:
        return "No sources yet: ask a question first."
    blocks = []
    for c in answer.citations:
        blocks.append(f"[{c.n}] {_where(c)}\n" + textwrap.indent(_wrap(f"“{c.text}”", width=76), "    "))
    return "\n\n".join(blocks)


def as_json(answer: Answer, item_id: str = "q1", turn: int = 0) -> str:
    return json.dumps(answer.to_json(item_id, turn), ensure_ascii=False)


def _citation_line(c: Citation, limit: int) -> str:
    quote = c.text if len(c.text) <= limit else c.text[: limit - 1].rstrip() + "…"
    return f"[{c.n}] “{quote}” ({_where(c)})"


def _where(c: Citation) -> str:
    return f"{c.source}, paragraph {c.paragraph}, chars {c.start}-{c.end}"


def _wrap(text: str, width: int = 100) -> str:
    return textwrap.fill(text, width=width, break_long_words=False, break_on_hyphens=False)
