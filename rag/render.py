"""Turn an `Answer` into text for a person (terminal, Telegram HTML) or JSON: the answer first, then its citations."""

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
    lines = [_wrap(body(answer)), "", "Sources:"] if answer.citations else [_wrap(body(answer))]
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


def body(answer: Answer) -> str:
    """The answer text with a citation number after every quoted sentence ("... [1] ... [2]");
    a generated answer carries its own markers, a reply without sources none."""
    if answer.abstained or not answer.citations or answer.mode != "extractive":
        return answer.text
    if answer.parts:
        return " ".join(f"{text} [{n}]" for text, n in answer.parts)
    return f"{answer.text} [1]"


def _citation_line(c: Citation, limit: int) -> str:
    return f"[{c.n}] “{snippet(c.text, limit)}” ({_where(c)})"


def _where(c: Citation) -> str:
    return f"{c.source}, paragraph {c.paragraph}, chars {c.start}-{c.end}"


def _wrap(text: str, width: int = 100) -> str:
    return textwrap.fill(text, width=width, break_long_words=False, break_on_hyphens=False)


TELEGRAM_LIMIT = 4096


def telegram_html(answer: Answer, limit: int = TELEGRAM_LIMIT, question: str | None = None) -> list[str]:
    """Answer and compact citations as Telegram HTML messages, each at most `limit` characters;
    with `question`, the question is shown first (for answers to a tapped example)."""
    escape = escape_html
    parts = [f"❓ <i>{escape(question)}</i>"] if question else []
    parts.append(escape(body(answer)))
    if answer.citations:
        heading = "Closest passages (not an answer):" if answer.abstained else "Sources:"
        parts.append(f"<b>{heading}</b>")
        parts += [f"[{c.n}] <i>{escape(snippet(c.text))}</i> (paragraph {c.paragraph})" for c in answer.citations]
    return split_messages(parts, limit)


def escape_html(text: str) -> str:
    """Text made safe for Telegram HTML: only <, > and & need escaping (quotes stay readable)."""
    from html import escape

    return escape(text, quote=False)


def plain_text(html_text: str) -> str:
    """Telegram HTML back to plain text (the fallback when Telegram rejects the markup)."""
    import re
    from html import unescape

    return unescape(re.sub(r"<[^>]+>", "", html_text))


def split_messages(paragraphs: list[str], limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Join paragraphs into messages of at most `limit` characters, breaking between paragraphs."""
    messages, current = [], ""
    for paragraph in paragraphs:
        while len(paragraph) > limit:  # a single over-long paragraph: cut at a space
            cut = paragraph.rfind(" ", 0, limit) if " " in paragraph[:limit] else limit
            messages, current = _flush(messages, current), ""
            messages.append(paragraph[:cut])
            paragraph = paragraph[cut:].lstrip()
        candidate = f"{current}\n\n{paragraph}" if current else paragraph
        if len(candidate) > limit:
            messages, current = _flush(messages, current), paragraph
        else:
            current = candidate
    return _flush(messages, current)


def _flush(messages: list[str], current: str) -> list[str]:
    return messages + [current] if current else messages


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """`text` cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
