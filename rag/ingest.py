"""Read a document and label its paragraphs, keeping character offsets into its extracted text.

`rag.readers` extracts the text of each format (plain text, Markdown, PDF, HTML, DOCX) as
paragraph-sized blocks, with the PDF page of each and, where the format says so, whether it is a
heading. Each paragraph gets a kind:
``text`` (content), ``heading`` (a short title line), ``attribution`` (a news-wire credit such as
"dv/dr (AFP, Reuters)") or ``boilerplate`` (web furniture: "Read more:" teasers, share/video
widgets, newsletter sign-up lines). Nothing is rewritten: every paragraph is a slice
``text[start:end]`` of the extracted text (for .txt and .md, the file as read), so citations can
point back into it. `fingerprint` identifies a file by its raw bytes, so that an index can tell
it is up to date without extracting and cleaning the text again.

Deliberate simplifications: Markdown markup stays in the quoted text; where a format does not
mark headings (plain text, PDF) they are guessed; boilerplate rules are patterns for common
news-site furniture, not a classifier.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rag.errors import DocumentError, EmptyDocumentError
from rag.lexical import normalise
from rag.readers import MAX_DOCUMENT_BYTES, MAX_UNZIPPED_BYTES, SUPPORTED_SUFFIXES, extract

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "MAX_UNZIPPED_BYTES",
    "SUPPORTED_SUFFIXES",
    "SourceDocument",
    "fingerprint",
    "read_document",
]

ParagraphKind = Literal["text", "heading", "attribution", "boilerplate"]

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
    page: int | None = None  # 1-based PDF page


@dataclass(frozen=True)
class SourceDocument:
    path: Path
    text: str  # the extracted text every offset points into
    sha256: str  # of `text`
    paragraphs: Sequence[Paragraph]  # a tuple, or the index's lazily made `StoredParagraphs`
    pages: int | None = None  # a PDF's page count
    raw: dict[str, Any] | None = None  # `fingerprint` of the file, taken just before it was read

    @property
    def source(self) -> str:
        """How the index names the document: its resolved path (whatever the working folder)."""
        return str(self.path.resolve())

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
    """Read a document of any supported format and label its paragraphs. Raises a `DocumentError`
    (see `rag.errors`) naming the file for a missing, unsupported, bad or empty one."""
    raw = fingerprint(path)  # before reading: an edit made meanwhile then shows as a change
    extracted = extract(path)
    text, blocks = extracted.text, extracted.blocks
    paragraphs = tuple(
        Paragraph(
            number,
            block.start,
            block.end,
            classify(text[block.start : block.end], number == len(blocks), drop_boilerplate, block.heading),
            block.page,
        )
        for number, block in enumerate(blocks, start=1)
    )
    if not any(p.kind in ("text", "attribution") for p in paragraphs):
        raise EmptyDocumentError(f"{path}: the document has no text to answer from")
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return SourceDocument(path, text, sha256, paragraphs, extracted.pages, raw)


def fingerprint(path: Path) -> dict[str, Any]:
    """Size, modification time and sha256 of the file's raw bytes: what tells, without extracting
    and cleaning the text, that a document is the one an index was built from (the index records
    it). Raises `DocumentError` naming a missing or unreadable file, as `read_document` does."""
    try:
        status = path.stat()
        if path.is_dir():
            raise DocumentError(f"{path} is a folder, not a document")
        digest = hashlib.sha256()
        with path.open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise DocumentError(f"document not found: {path}") from None
    except OSError as exc:
        raise DocumentError(f"cannot read {path}: {exc.strerror}") from None
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns, "sha256": digest.hexdigest()}


def classify(
    block: str, is_last: bool = False, drop_boilerplate: bool = True, heading: bool | None = None
) -> ParagraphKind:
    """Label one block of text; see the module docstring for the kinds. `heading` says whether the
    format marks the block as a heading; None guesses from its text."""
    flat = normalise(block)
    if drop_boilerplate and is_boilerplate(flat):
        return "boilerplate"
    if _WIRE_CREDIT.match(flat):
        return "attribution"
    if heading or (heading is None and is_heading(block) and not is_last):
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
    """The words of a heading without Markdown '#' marks (opening, and closing as in '## Tools ##')
    or an underline."""
    first = block.strip().splitlines()[0]
    return re.sub(r"\s+#+$", "", first.lstrip("#").strip()).strip()
