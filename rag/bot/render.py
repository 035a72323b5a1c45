"""Telegram HTML for answers and sources, sized for a phone: text that wraps by itself, the
document and page, section or paragraph of every passage, no character offsets, and messages split between
paragraphs under Telegram's 4096-character limit. Every piece of text is escaped here."""

from __future__ import annotations

import re
from html import escape, unescape
from pathlib import PurePath

from rag.answer import Answer, Citation
from rag.render import CLOSEST_HEADING, body, locators, nothing_quoted, snippet

TELEGRAM_LIMIT = 4096


def telegram_html(answer: Answer, limit: int = TELEGRAM_LIMIT, question: str | None = None) -> list[str]:
    """Answer and compact citations as Telegram HTML messages, each at most `limit` characters;
    with `question`, the question is shown first (for answers to a tapped example)."""
    parts = [f"❓ <i>{escape_html(question)}</i>"] if question else []
    parts.append(body(answer, escape=escape_html, mark=lambda text: f"<b>{text}</b>"))
    if answer.citations:
        heading = CLOSEST_HEADING if answer.abstained else "Sources:"
        parts.append(f"<b>{heading}</b>")
        quoted = {n for _, n in answer.parts} if not answer.abstained else set()
        parts += [
            f"[{c.n}] {'quoted above' if c.n in quoted else f'<i>{escape_html(snippet(c.text))}</i>'} ({_where(c)})"
            for c in answer.citations
        ]
    return split_messages(parts, limit)


def sources_html(answer: Answer | None, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """/sources and the Sources button: every cited passage in full, the quoted ones marked."""
    if answer is None:
        return ["No sources yet: ask a question first."]
    if answer.abstained or not answer.citations:
        return split_messages([escape_html(p) for p in nothing_quoted(answer).split("\n")], limit)
    quoted = {n for _, n in answer.parts}
    blocks = [
        f"<b>[{c.n}]</b> {_where(c)}{' – quoted in the answer' if c.n in quoted else ''}\n“{escape_html(c.text)}”"
        for c in answer.citations
    ]
    return split_messages(blocks, limit)


def _where(c: Citation) -> str:
    """The document's file name, its page and section where known, and the paragraph unless
    there is a page (a PDF's page is what people look up), escaped: "report.pdf, p. 4"."""
    parts = [PurePath(c.source).name, *locators(c)] + ([f"paragraph {c.paragraph}"] if c.page is None else [])
    return escape_html(", ".join(parts))


def escape_html(text: str) -> str:
    """Text made safe for Telegram HTML: only <, > and & need escaping (quotes stay readable)."""
    return escape(text, quote=False)


def plain_text(html_text: str) -> str:
    """Telegram HTML back to plain text (the fallback when Telegram rejects the markup)."""
    return unescape(re.sub(r"<[^>]+>", "", html_text))


def split_messages(paragraphs: list[str], limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Join paragraphs into messages of at most `limit` characters, breaking between paragraphs."""
    messages: list[str] = []
    current = ""
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
