"""One small reader per document format: each returns the extracted text and its blocks.

A block is a paragraph-sized span ``text[start:end]`` of the extracted text, with whether it is
a heading (``None``: unknown, `rag.ingest` guesses from the text) and the PDF page it sits on.
Citations point into the extracted text, so every offset is exact.

    .txt .text (none)  plain text in any common encoding (UTF-8 first, else charset-normalizer)
    .md .markdown      plain text; ATX ('# Tools') and setext headings become their own blocks
    .pdf               pypdf's text layer, page by page (pages are joined by a blank line, unless a
                       paragraph runs on: `runs_on`), paragraphs from the layout (`layout_paragraphs`); a line
                       that is an outline (bookmark) title on its page is a heading
    .html .htm .xhtml  trafilatura's main content: headings, paragraphs, list items, table rows
    .docx              python-docx: body paragraphs and table rows; Heading/Title styles are headings

Before parsing, a file is checked: its size (`MAX_DOCUMENT_BYTES`), that its first bytes match
its extension (``%PDF-`` for PDF, a zip for DOCX, no binary signature for text), and for DOCX the
total uncompressed size of the zip's members (`MAX_UNZIPPED_BYTES`, against zip bombs).
"""

from __future__ import annotations

import codecs
import logging
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import DocumentError, DocumentTooLargeError, EmptyDocumentError, UnreadableDocumentError
from rag.lexical import normalise

MAX_DOCUMENT_BYTES = 20 * 2**20  # 20 MB, Telegram's download limit for bots
MAX_UNZIPPED_BYTES = 100 * 2**20  # 100 MB of decompressed DOCX members
SNIFF_BYTES = 1024

_BLOCK = re.compile(r"\S(?:.*?\S)?(?=\s*\n[ \t\r]*\n|\s*\Z)", re.S)  # \r: Windows line ends
_ATX = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")
_SETEXT = re.compile(r"^ {0,3}(?:=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_THEMATIC_BREAK = re.compile(r"^(?:[-*_][ \t]*){3,}$")
_BLANK_LINES = re.compile(r"\n[ \t\r]*\n\s*")
# On a tie between single-byte encodings, the most widely used wins (Windows Western first).
_COMMON_ENCODINGS = ("utf_8", "cp1252", "latin_1", "iso8859_15", "cp1251", "cp1250", "cp932", "gb18030", "big5")
_SIGNATURES = {  # leading bytes -> what the file really is
    b"%PDF-": "PDF",
    b"PK\x03\x04": "zip archive (such as DOCX)",
    b"\x89PNG": "PNG image",
    b"\xff\xd8\xff": "JPEG image",
    b"GIF8": "GIF image",
    b"\xd0\xcf\x11\xe0": "legacy Office file (.doc/.xls)",
    b"\x7fELF": "Linux program or library (ELF)",
    b"\x1f\x8b": "gzip archive",
    b"7z\xbc\xaf": "7-Zip archive",
    b"Rar!": "RAR archive",
}


@dataclass(frozen=True)
class Block:
    start: int
    end: int
    heading: bool | None = None  # None: unknown, guessed from the text
    page: int | None = None  # 1-based PDF page


@dataclass(frozen=True)
class Extracted:
    text: str
    blocks: tuple[Block, ...]
    pages: int | None = None  # the PDF's page count


def extract(path: Path) -> Extracted:
    """The text and blocks of the document at `path`, read by the reader of its extension."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        names = ", ".join(sorted(s for s in READERS if s))
        raise DocumentError(f"{path}: unsupported document type {path.suffix!r} (supported: {names})")
    data = _read_bytes(path)
    if not data.strip():
        raise EmptyDocumentError(f"{path}: the document is empty")
    _check_signature(path, data)
    extracted = reader(path, data)
    if not extracted.text.strip():
        raise EmptyDocumentError(f"{path}: the document has no text")
    return extracted


def read_text(path: Path, data: bytes) -> Extracted:
    """Plain text: blocks between blank lines, headings guessed."""
    text = decode_text(path, data)
    return Extracted(text, tuple(Block(m.start(), m.end()) for m in _BLOCK.finditer(text)))


def read_markdown(path: Path, data: bytes) -> Extracted:
    """Markdown as written (markup stays in the quoted text); heading lines are heading blocks."""
    text = decode_text(path, data)
    return Extracted(text, tuple(markdown_blocks(text)))


def read_pdf(path: Path, data: bytes) -> Extracted:
    """The PDF's text layer, page by page; every block carries its page number."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    try:
        with _quiet("pypdf"):  # pypdf logs recoverable problems ("EOF marker not found") as warnings
            reader = PdfReader(path)
            if reader.is_encrypted and not reader.decrypt(""):  # an owner password only still opens
                raise UnreadableDocumentError(f"{path}: the PDF is encrypted with a password; save an unencrypted copy")
            pages = [layout_paragraphs(page) for page in reader.pages]  # (text, heading lines) of each
            titles = _outline_titles(reader)
    except (FileNotDecryptedError, DependencyError):
        raise UnreadableDocumentError(
            f"{path}: the PDF is encrypted and cannot be opened; save an unencrypted copy"
        ) from None
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:  # pypdf on truncated or garbled files
        raise UnreadableDocumentError(f"{path}: the PDF is corrupt or truncated ({_reason(exc)})") from None
    parts: list[str] = []
    blocks: list[Block] = []
    offset = 0
    for number, (page_text, headings) in enumerate(pages, start=1):
        page_text = page_text.strip()
        if not page_text:
            continue
        found = page_blocks(page_text, titles.get(number, []) + headings)
        continued = (
            bool(blocks and found) and not (blocks[-1].heading or found[0].heading) and runs_on(parts[-1], page_text)
        )
        if parts:
            separator = "\n" if continued else "\n\n"  # a paragraph that runs onto this page stays one
            parts.append(separator)
            offset += len(separator)
        page = [Block(offset + b.start, offset + b.end, b.heading, number) for b in found]
        if continued:  # cited with the page it starts on
            last = blocks.pop()
            page[0] = Block(last.start, page[0].end, last.heading, last.page)
        blocks += page
        parts.append(page_text)
        offset += len(page_text)
    if not blocks:
        raise EmptyDocumentError(f"{path}: this PDF has no text layer; OCR is not supported")
    return Extracted("".join(parts), tuple(blocks), len(pages))


def runs_on(page_text: str, next_page_text: str) -> bool:
    """Whether a paragraph runs from the end of one page onto the next: the page stops without
    ending a sentence and the next one goes on in lower case ("... He delivers" / "the wood ...")."""
    return page_text.rstrip()[-1:] not in {*'.!?:;…"”’)]', ""} and next_page_text.lstrip()[:1].islower()


def layout_paragraphs(page: Any) -> tuple[str, list[str]]:
    """A page's text layer with a blank line wherever the layout starts a paragraph, and its
    lines set larger than the page's body text (headings).

    A text layer has no blank lines, so pypdf's lines are matched with the positions of the
    text it drew: a paragraph starts after a vertical gap well above the page's usual line
    spacing, at a line in another font size (a heading), at a first line indented from the rest,
    after a short line ending a sentence, or where the text jumps up (a new column). When the
    lines cannot be matched (text drawn out of order), the page keeps pypdf's text as it is,
    with no headings."""
    rows: list[tuple[float, float, float]] = []  # (x, y, font size) of each line, in drawing order

    def visit(text: str, cm: Any, tm: Any, font: Any, size: float) -> None:
        if not text.strip():
            return
        x, y = tm[4] * cm[0] + tm[5] * cm[2] + cm[4], tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        if rows and abs(rows[-1][1] - y) < max(size, 1.0) / 2:
            rows[-1] = (min(rows[-1][0], x), rows[-1][1], rows[-1][2])  # more of the same line
        else:
            rows.append((x, y, size))

    text = page.extract_text(visitor_text=visit) or ""
    lines = text.split("\n")
    if len(rows) != len([line for line in lines if line.strip()]) or len(rows) < 2:
        return text, []
    positions = iter(rows)
    placed = [(line, next(positions) if line.strip() else None) for line in lines]
    gaps = sorted(a[1] - b[1] for a, b in zip(rows, rows[1:], strict=False) if a[1] > b[1])
    spacing = gaps[len(gaps) // 4] if gaps else 0.0  # lines within a paragraph: the smaller gaps
    left = min(x for x, _, _ in rows)
    longest = max(len(line.strip()) for line in lines)
    out = [placed[0][0]]
    previous = placed[0]
    for line, where in placed[1:]:
        if (
            where is not None
            and previous[1] is not None
            and _starts_paragraph(previous, (line, where), spacing, left, longest)
        ):
            out.append("")
        out.append(line)
        if where is not None:
            previous = (line, where)
    sizes = [size for _, _, size in rows]
    body = max(set(sizes), key=sizes.count)
    headings = [line.strip() for line, where in placed if where is not None and where[2] > body + 0.5]
    return "\n".join(out), [h for h in headings if len(h) <= 120]


def _starts_paragraph(
    before: tuple[str, Any], line: tuple[str, Any], spacing: float, left: float, longest: int
) -> bool:
    """Whether `line` opens a new paragraph after `before` (see `layout_paragraphs`)."""
    (text_before, (x_before, y_before, size)), (_, (x, y, size_now)) = before, line
    gap = y_before - y
    return (
        gap < 0  # up the page: a new column
        or abs(size_now - size) > 0.5  # another font size: a heading, or the text after it
        or (spacing > 0 and gap > 1.4 * spacing)
        or (x > left + max(size, 1.0) and x > x_before + max(size, 1.0) / 2)  # a first line indented from the rest
        or (text_before.rstrip().endswith((".", "!", "?", ":", '"', "”")) and len(text_before.strip()) < 0.7 * longest)
    )


def page_blocks(text: str, titles: list[str]) -> list[Block]:
    """A PDF page's blocks: text between blank lines, and each line that is one of the page's
    outline (bookmark) titles as a heading block of its own."""
    cuts = sorted({m.span(1) for title in titles for m in [_title_line(title).search(text)] if m})
    blocks: list[Block] = []
    at = 0
    for start, end in [*cuts, (len(text), len(text))]:
        if start < at:
            continue  # overlaps the previous title
        blocks += [Block(at + m.start(), at + m.end()) for m in _BLOCK.finditer(text[at:start])]
        if start < end:
            blocks.append(Block(start, end, heading=True))
        at = end
    return blocks


def _title_line(title: str) -> re.Pattern[str]:
    """A whole line holding `title`, whatever the whitespace between its words."""
    return re.compile(r"(?m)^[ \t]*(" + r"\s+".join(map(re.escape, title.split())) + r")[ \t]*$")


def _outline_titles(reader) -> dict[int, list[str]]:
    """The PDF's outline (bookmark) titles by 1-based page number."""
    found: dict[int, list[str]] = {}

    def walk(items: list) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item)
                continue
            page = reader.get_destination_page_number(item)
            if page is not None and page >= 0 and item.title and item.title.strip():
                found.setdefault(page + 1, []).append(item.title)

    walk(reader.outline)
    return found


def read_html(path: Path, data: bytes) -> Extracted:
    """The main content of a web page (trafilatura drops menus, footers, share widgets)."""
    import trafilatura
    from lxml import etree

    xml = trafilatura.extract(data, output_format="xml", include_comments=False, include_images=False)
    if not xml:
        raise EmptyDocumentError(f"{path}: no main text found in this web page")
    try:
        root = etree.fromstring(xml.encode("utf-8"))
    except etree.XMLSyntaxError as exc:
        raise UnreadableDocumentError(f"{path}: cannot read the page's extracted text ({exc})") from None
    main = root.find("main")
    pieces = list(_html_pieces(main if main is not None else root))
    return _joined(pieces)


def read_docx(path: Path, data: bytes) -> Extracted:
    """A Word document's paragraphs and table rows, in order; Heading and Title styles are headings."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from lxml.etree import XMLSyntaxError

    _check_zip(path)
    try:
        document = docx.Document(str(path))
        pieces = list(_docx_pieces(document))
    except (PackageNotFoundError, zipfile.BadZipFile, XMLSyntaxError, KeyError, ValueError) as exc:
        raise UnreadableDocumentError(f"{path}: not a readable Word document ({_reason(exc)})") from None
    return _joined(pieces)


READERS: dict[str, Callable[[Path, bytes], Extracted]] = {
    ".txt": read_text,
    ".text": read_text,
    "": read_text,
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".pdf": read_pdf,
    ".html": read_html,
    ".htm": read_html,
    ".xhtml": read_html,
    ".docx": read_docx,
}
SUPPORTED_SUFFIXES = frozenset(READERS)


def decode_text(path: Path, data: bytes) -> str:
    """`data` as text: UTF-8 (with or without a BOM) first, else the encoding charset-normalizer
    detects; binary data or an undetectable encoding raises naming what was tried."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        matches = from_bytes(data)
        best = matches.best()
        if best is None:
            raise UnreadableDocumentError(
                f"{path}: not UTF-8 text and no other common encoding fits; "
                "convert it with `iconv -f ENCODING -t UTF-8` (or save it as UTF-8)"
            ) from None
        tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
        text = str(
            min(tied, key=lambda m: _COMMON_ENCODINGS.index(m.encoding) if m.encoding in _COMMON_ENCODINGS else 99)
        )
    if _looks_binary(text):
        raise UnreadableDocumentError(f"{path}: binary data, not text (is the extension right?)")
    return text


def markdown_blocks(text: str) -> Iterator[Block]:
    """Blocks between blank lines, with ATX and setext heading lines as heading blocks of their own
    (not inside fenced code); thematic breaks ('---') are dropped."""
    run: list[tuple[int, int]] = []  # the lines (start, end) of the current paragraph
    fence, offset = "", 0
    for raw in text.splitlines(keepends=True):
        start, line = offset, raw.rstrip()
        offset += len(raw)
        opening = _FENCE.match(line)
        if fence or opening:
            if fence and line.strip().startswith(fence):
                fence = ""
            elif not fence and opening:
                fence = opening.group(1)
            run.append((start, start + len(line)))
        elif not line.strip():
            yield from _flush(text, run)
            run = []
        elif _ATX.match(line):
            yield from _flush(text, run)
            run = []
            yield _span(text, start, start + len(line), heading=True)
        elif _SETEXT.match(line) and len(run) == 1:
            yield _span(text, run[0][0], start + len(line), heading=True)
            run = []
        elif not (_THEMATIC_BREAK.match(line.strip()) and not run):
            run.append((start, start + len(line)))
    yield from _flush(text, run)


def _flush(text: str, run: list[tuple[int, int]]) -> Iterator[Block]:
    if run:
        yield _span(text, run[0][0], run[-1][1], heading=False)


def _span(text: str, start: int, end: int, heading: bool) -> Block:
    """The block text[start:end] with surrounding whitespace trimmed."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Block(start, end, heading)


def _html_pieces(main) -> Iterator[tuple[str, bool]]:
    """(text, is heading) for every block element of trafilatura's XML, in document order."""
    for element in main.iter("head", "p", "item", "quote", "code", "row"):
        if any(a.tag in ("p", "item", "quote", "code", "row") for a in element.iterancestors()):
            continue  # nested inside a block already taken
        if element.tag == "row":
            text = " | ".join(normalise("".join(cell.itertext())) for cell in element.iter("cell"))
        else:
            text = "".join(element.itertext())
        yield text, element.tag == "head"


def _docx_pieces(document) -> Iterator[tuple[str, bool]]:
    """(text, is heading) for the body's paragraphs and table rows, in document order."""
    from docx.table import Table

    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                cells: list[str] = []
                for cell in row.cells:  # a merged cell repeats: keep it once
                    if not cells or cell.text != cells[-1]:
                        cells.append(cell.text)
                yield " | ".join(normalise(c) for c in cells), False
        else:
            yield item.text, _is_heading_style(item.style)


def _is_heading_style(style) -> bool:
    """A Title or Heading style, or a style based on one."""
    while style is not None:
        name = (style.name or "").lower()
        if name == "title" or name.startswith("heading"):
            return True
        style = style.base_style
    return False


def _joined(pieces: list[tuple[str, bool]]) -> Extracted:
    """Join (text, is heading) pieces into one text, blocks separated by a blank line."""
    parts: list[str] = []
    blocks: list[Block] = []
    offset = 0
    for raw, heading in pieces:
        piece = _BLANK_LINES.sub("\n", raw).strip()
        if not piece:
            continue
        if parts:
            parts.append("\n\n")
            offset += 2
        blocks.append(Block(offset, offset + len(piece), heading))
        parts.append(piece)
        offset += len(piece)
    return Extracted("".join(parts), tuple(blocks))


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise DocumentError(f"{path} is a folder, not a document")
        if size > MAX_DOCUMENT_BYTES:
            raise DocumentTooLargeError(
                f"{path}: {size / 2**20:.1f} MB is over the {MAX_DOCUMENT_BYTES // 2**20} MB limit for a document"
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise DocumentError(f"document not found: {path}") from None
    except OSError as exc:
        raise DocumentError(f"cannot read {path}: {exc.strerror}") from None


def _check_signature(path: Path, data: bytes) -> None:
    """Refuse a file whose first bytes say it is something else than its extension says."""
    suffix = path.suffix.lower()
    head = data[:SNIFF_BYTES]
    actual = next((kind for magic, kind in _SIGNATURES.items() if head.startswith(magic)), None)
    if suffix == ".pdf":
        if b"%PDF-" not in head:
            raise UnreadableDocumentError(f"{path}: not a PDF (it does not start with %PDF-){_really(actual, head)}")
    elif suffix == ".docx":
        if not head.startswith(b"PK\x03\x04"):
            raise UnreadableDocumentError(f"{path}: not a DOCX (a DOCX is a zip archive){_really(actual, head)}")
    elif actual is not None:
        raise UnreadableDocumentError(f"{path}: the extension says {suffix or 'text'}, but the file is a {actual}")


def _really(actual: str | None, head: bytes) -> str:
    """What the file is instead, for the refusal: a known kind, text, or else unknown binary data."""
    if actual:
        return f"; the file is a {actual}"
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head)  # a character cut at the end is fine
    except UnicodeDecodeError:
        text = "\x00"
    return "; the file holds binary data of a kind not recognised" if "\x00" in text else "; the file is plain text"


def _check_zip(path: Path) -> None:
    """Refuse a zip whose members would decompress to more than `MAX_UNZIPPED_BYTES` (a zip bomb).
    The sizes in the zip's directory bound what `zipfile` decompresses, so checking them suffices."""
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(member.file_size for member in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise UnreadableDocumentError(f"{path}: not a readable Word document ({exc})") from None
    if total > MAX_UNZIPPED_BYTES:
        raise DocumentTooLargeError(
            f"{path}: unpacks to {total / 2**20:,.0f} MB, over the {MAX_UNZIPPED_BYTES // 2**20} MB limit "
            "for a Word document's contents"
        )


def _looks_binary(text: str) -> bool:
    """More than 1 % control characters (other than tabs, line and page breaks): not text."""
    controls = sum(1 for ch in text if ch not in "\t\n\r\f\v" and unicodedata.category(ch) == "Cc")
    return controls > 0.01 * max(len(text), 1)


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Hold back a library's warnings while it reads a file: problems surface as one error."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _reason(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
