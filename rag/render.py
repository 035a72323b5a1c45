"""Turn an `Answer` into text for a terminal or JSON: the answer first, then its citations.
(Telegram HTML lives with the bot, in `rag/bot/render.py`.)"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable

from rag.answer import Answer, Citation

SNIPPET_CHARS = 110
SECTION_CHARS = 60
# above the passages of a refusal, in the CLI and on Telegram: the first may well answer, the bot is just not sure
CLOSEST_HEADING = "Closest passages (I am not confident they answer the question):"


def terminal(answer: Answer, bold: bool = False) -> str:
    """Answer with short citations, for the CLI and the REPL; with `bold` (a terminal, not a
    pipe), the short answer inside the quote is shown in bold."""
    if answer.abstained:
        lines = [answer.text]
        if answer.citations:
            lines += ["", CLOSEST_HEADING]
            lines += [_citation_line(c, SNIPPET_CHARS) for c in answer.citations]
        return "\n".join(lines)
    text = _wrap(body(answer, mark=_ansi_bold if bold else str))
    lines = [text, "", "Sources:"] if answer.citations else [text]
    lines += [_citation_line(c, SNIPPET_CHARS) for c in answer.citations]
    return "\n".join(lines)


def sources(answer: Answer | None) -> str:
    """The full quoted passages of an answer, for /sources."""
    if answer is None:
        return "No sources yet: ask a question first."
    if answer.abstained or not answer.citations:
        return nothing_quoted(answer)
    blocks = []
    for c in answer.citations:
        blocks.append(f"[{c.n}] {_where(c)}\n" + textwrap.indent(_wrap(f"“{c.text}”", width=76), "    "))
    return "\n\n".join(blocks)


def nothing_quoted(answer: Answer) -> str:
    """What /sources says after an answer that quoted nothing: so, and the closest passages shown."""
    if not answer.citations:
        return "My last answer quoted nothing from the document."
    closest = "\n".join(
        f"[{c.n}] “{c.text}” ({', '.join([c.source, *locators(c), f'paragraph {c.paragraph}'])})"
        for c in answer.citations
    )
    return (
        "My last answer quoted nothing: I was not confident that any passage answers it."
        f" The closest passages I showed:\n{closest}"
    )


def as_json(answer: Answer, item_id: str = "q1", turn: int = 0) -> str:
    return json.dumps(answer.to_json(item_id, turn), ensure_ascii=False)


def body(answer: Answer, escape: Callable[[str], str] = str, mark: Callable[[str], str] = str) -> str:
    """The answer text with a citation number after every quoted sentence ("... [1] ... [2]");
    a generated answer carries its own markers, a reply without sources none. Text goes through
    `escape` (HTML, say), and the short answer, escaped, through `mark` (bold)."""
    if answer.abstained or not answer.citations or answer.mode != "extractive":
        return escape(answer.text)
    if not answer.parts:
        return f"{escape(answer.text)} [1]"
    short = answer.short_answer
    shown = []
    for i, (text, n) in enumerate(answer.parts):
        if short is not None and short.part == i and text[short.offset :].startswith(short.text):
            end = short.offset + len(short.text)
            text_shown = escape(text[: short.offset]) + mark(escape(short.text)) + escape(text[end:])
        else:
            text_shown = escape(text)
        shown.append(f"{text_shown} [{n}]")
    return " ".join(shown)


def _ansi_bold(text: str) -> str:
    return f"\033[1m{text}\033[0m"


def _citation_line(c: Citation, limit: int) -> str:
    return f"[{c.n}] “{snippet(c.text, limit)}” ({_where(c)})"


def _where(c: Citation) -> str:
    return ", ".join([c.source, *locators(c), f"paragraph {c.paragraph}, chars {c.start}-{c.end}"])


def locators(c: Citation) -> list[str]:
    """Where a passage sits for people, when known: its PDF page ("p. 4") and section ("§ Tools")."""
    found = [f"p. {c.page}"] if c.page is not None else []
    if c.section:
        found.append(f"§ {snippet(c.section, SECTION_CHARS)}")
    return found


def _wrap(text: str, width: int = 100) -> str:
    return textwrap.fill(text, width=width, break_long_words=False, break_on_hyphens=False)


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """`text` cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
