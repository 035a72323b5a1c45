"""Split a document's content paragraphs into passages: llama-index nodes with stable ids.

A passage is one sentence (the default: a precise citation) or one whole paragraph
(``chunking.unit``). Each node's text is the exact slice ``document[start:end]``; its metadata
holds the source path, paragraph number, offsets, paragraph kind, the section heading above
it ("" when there is none) and the PDF page (None for other formats). Node ids hash the
document's sha256, the offsets and the unit, so the same document and settings always give the
same ids.

Sentences come from NLTK's Punkt model, which llama-index ships with its core package (no
download; `rag.llama_adapter.punkt_data_dir` finds it). Headings are kept as section metadata,
not as passages of their own.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from llama_index.core.schema import Document, TextNode

from rag.ingest import SourceDocument, heading_text


def paragraph_documents(document: SourceDocument, source: str) -> list[Document]:
    """One llama-index Document per content paragraph, carrying its offsets and section."""
    documents, section = [], ""
    for paragraph in document.content():
        text = document.text[paragraph.start : paragraph.end]
        if paragraph.kind == "heading":
            section = heading_text(text)
            continue
        metadata = {
            "source": source,
            "paragraph": paragraph.number,
            "start": paragraph.start,
            "end": paragraph.end,
            "kind": paragraph.kind,
            "section": section,
            "page": paragraph.page,
            "doc_sha256": document.sha256,
        }
        documents.append(Document(text=text, metadata=metadata, id_=f"{document.sha256[:16]}-p{paragraph.number}"))
    return documents


def chunk(document: SourceDocument, source: str, unit: str = "sentence") -> list[TextNode]:
    """All passages of a document, in document order. The nodes are built directly (llama-index's
    public schema) rather than by a `NodeParser`, whose post-processing would re-find each
    passage's offsets relative to its paragraph."""
    passages: list[TextNode] = []
    for paragraph in paragraph_documents(document, source):
        spans = [(0, len(paragraph.text))] if unit == "paragraph" else sentence_spans(paragraph.text)
        passages.extend(_node(paragraph, start, end, unit) for start, end in spans)
    return passages


def _node(paragraph: Document, start: int, end: int, unit: str) -> TextNode:
    """The passage `paragraph.text[start:end]`, with file offsets and an id stable across builds."""
    meta = paragraph.metadata
    file_start, file_end = meta["start"] + start, meta["start"] + end
    metadata = {**meta, "start": file_start, "end": file_end}
    node_id = hashlib.sha1(f"{meta['doc_sha256']}:{file_start}:{file_end}:{unit}".encode()).hexdigest()[:24]
    return TextNode(
        id_=node_id,
        text=paragraph.text[start:end],
        metadata=metadata,
        start_char_idx=file_start,
        end_char_idx=file_end,
        excluded_embed_metadata_keys=list(metadata),
        excluded_llm_metadata_keys=list(metadata),
    )


# a list or section label that Punkt takes for a sentence of its own: "2.", "iv.", "b)", "(3)"
LABEL = re.compile(r"\(?(\d{1,3}(\.\d{1,3})*|[ivxlc]{1,5}|[a-z])[.)]", re.I)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentence (start, end) offsets within `text`, using llama-index's bundled Punkt model; a
    label ("2.") is joined to the sentence it opens ("2. The works")."""
    spans: list[tuple[int, int]] = []
    label: tuple[int, int] | None = None  # labels waiting for their sentence
    for start, end in _punkt().span_tokenize(text):
        if not text[start:end].strip():
            continue
        if LABEL.fullmatch(text[start:end].strip()):
            label = (start, end) if label is None else (label[0], end)
            continue
        spans.append((start if label is None else label[0], end))
        label = None
    return spans if label is None else [*spans, label]  # a label at the very end stays a span of its own


@lru_cache(maxsize=1)
def _punkt():
    """Punkt from the NLTK data bundled in llama-index-core (never nltk's downloader)."""
    import nltk.data
    from nltk.tokenize import PunktTokenizer

    from rag.llama_adapter import punkt_data_dir

    bundled = str(punkt_data_dir())
    if bundled not in nltk.data.path:
        nltk.data.path.append(bundled)
    return PunktTokenizer("english")
