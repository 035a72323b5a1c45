"""Read a document and label its paragraphs, keeping character offsets into the original file.

A paragraph is a block of text between blank lines. Each gets a kind:
``text`` (content), ``heading`` (a short title line), ``attribution`` (a news-wire credit such as
"dv/dr (AFP, Reuters)") or ``boilerplate`` (web furniture: "Read more:" teasers, share/video
widgets, newsletter sign-up lines). Nothing is rewritten: every paragraph is a slice
``text[start:end]`` of the file as read, so citations can point back into it.

Deliberate simplifications: .txt and .md are read as plain text (Markdown markup stays in the
quoted text); boilerplate rules are patterns for common news-site furniture, not a classifier.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rag.errors import DocumentError
from rag.lexical import normalise

SUPPORTED_SUFFIXES = {".txt", ".md", ".markdown", ".text", ""}
MAX_DOCUMENT_BYTES = 200 * 1024 * 1024

ParagraphKind = Literal["text", "heading", "attribution", "boilerplate"]

_BLOCK = re.compile(r"\S(?:.*?\S)?(?=\s*\n[ \t]*\n|\s*\Z)", re.S)
_TEASER = re.compile(r"^(read more|read also|also read|related|recommended)\s*:", re.I)
_VIDEO_WIDGET = re.compile(r"^(watch|play) (video|audio)\b|\bpermalink\b", re.I)
_SOCIAL = re.compile(
    r"\b(facebook|twitter|whatsapp|tumblr|linkedin|reddit|digg|pinterest|telegram|e-?mail|google\+)", re.I
)
_SIGN_UP = re.compile(r"\b(sign up|subscribe|newsletter)\b", re.I)
_WIRE_CREDIT = re.compile(r"^[a-z]{1,5}(?:/[a-z]{1,5})*\s*\(([A-Za-z][\w .,&'-]*)\)$")
_UNDERLINE = re.compile(r"^[=\-~*#]{3,}$")


@dataclass(frozen=True)
class Paragraph:
    number: int  # 1-based position among all blocks of the file, boilerplate included
    start: int
    end: int
    kind: ParagraphKind


@dataclass(frozen=True)
class SourceDocument:
    path: Path
    text: str
    sha256: str
    paragraphs: tuple[Paragraph, ...]

    @property
    def title(self) -> str:
        """The opening heading, else the file name."""
        first = self.paragraphs[0]
        if first.kind == "heading":
            return heading_text(self.text[first.start : first.end])
        return self.path.name

    def content(self) -> list[Paragraph]:
        """Paragraphs that carry content (everything but boilerplate)."""
        return [p for p in self.paragraphs if p.kind != "boilerplate"]


def read_document(path: Path, drop_boilerplate: bool = True) -> SourceDocument:
    """Read a .txt/.md file and label its paragraphs."""
    text = _read_text(path)
    blocks = [(m.start(), m.end()) for m in _BLOCK.finditer(text)]
    paragraphs = tuple(
        Paragraph(
            number,
            start,
            end,
            classify(text[start:end], is_last=number == len(blocks), drop_boilerplate=drop_boilerplate),
        )
        for number, (start, end) in enumerate(blocks, start=1)
    )
    if not any(p.kind in ("text", "attribution") for p in paragraphs):
        raise DocumentError(f"{path}: the document has no text to answer from")
    return SourceDocument(path, text, hashlib.sha256(text.encode("utf-8")).hexdigest(), paragraphs)


def classify(block: str, is_last: bool = False, drop_boilerplate: bool = True) -> ParagraphKind:
    """Label one block of text; see the module docstring for the kinds."""
    flat = normalise(block)
    if drop_boilerplate and is_boilerplate(flat):
        return "boilerplate"
    if _WIRE_CREDIT.match(flat):
        return "attribution"
    if is_heading(block) and not is_last:
        return "heading"
    return "text"


def is_boilerplate(flat: str) -> bool:
    """Web-page furniture that is not part of the article's content."""
    if _TEASER.match(flat) and len(flat) < 300:
        return True
    if _VIDEO_WIDGET.search(flat) and len(_SOCIAL.findall(flat)) >= 2:
        return True
    networks = len(_SOCIAL.findall(flat))
    if networks >= 5 and networks >= 0.25 * len(flat.split()):  # a share bar, not a sentence naming a few networks
        return True
    return (
        bool(_SIGN_UP.search(flat))
        and len(flat) < 300
        and flat.lower()
        .rstrip(".!")
        .endswith(("sign up here", "subscribe", "subscribe here", "sign up now", "newsletter"))
    )


def is_heading(block: str) -> bool:
    """A short title line: Markdown '#', an underlined line, or a short line without end punctuation."""
    lines = [line.strip() for line in block.strip().splitlines()]
    if lines[0].startswith("#"):
        return len(lines) == 1
    if len(lines) == 2 and _UNDERLINE.match(lines[1]):
        return True
    line, title_words = lines[0], [w for w in lines[0].split() if len(w) > 3]
    capitalised = sum(w[:1].isupper() for w in title_words)
    return (
        len(lines) == 1
        and len(line) <= 80
        and line[:1].isupper()
        and not line.endswith((".", "!", "?", ":", ";", ",", '"', "”", ")"))
        and (len(line.split()) <= 3 or capitalised >= 0.6 * len(title_words))  # when unsure, it is text
    )


def display_path(path: Path) -> str:
    """A document path as shown in citations: relative to the working folder when inside it.
    (Indexes and passages hold the resolved path, so they do not depend on the working folder.)"""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def heading_text(block: str) -> str:
    """The words of a heading without Markdown '#' or an underline."""
    first = block.strip().splitlines()[0]
    return first.lstrip("#").strip()


def _read_text(path: Path) -> str:
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise DocumentError(f"{path}: unsupported document type {path.suffix!r} (use .txt or .md)")
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise DocumentError(f"{path}: document is larger than {MAX_DOCUMENT_BYTES // 2**20} MB")
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DocumentError(f"document not found: {path}") from None
    except IsADirectoryError:
        raise DocumentError(f"{path} is a folder, not a document") from None
    except UnicodeDecodeError:
        raise DocumentError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise DocumentError(f"cannot read {path}: {exc.strerror}") from None
    if not text.strip():
        raise DocumentError(f"{path}: the document is empty")
    return text
