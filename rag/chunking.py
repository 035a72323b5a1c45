"""Split a document's content paragraphs into passages: llama-index nodes with stable ids.

A passage is one sentence (the default: a precise citation) or one whole paragraph
(``chunking.unit``). Each node's text is the exact slice ``document[start:end]``; its metadata
holds the source path, paragraph number, offsets, paragraph kind and the section heading above
it. Node ids hash the document's sha256, the offsets and the unit, so the same document and
settings always give the same ids.

Sentences come from NLTK's Punkt model, which llama-index ships with its core package (no
download). Headings are kept as section metadata, not as passages of their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from llama_index.core.node_parser import NodeParser
from llama_index.core.schema import BaseNode, Document, TextNode

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
            "doc_sha256": document.sha256,
        }
        documents.append(Document(text=text, metadata=metadata, id_=f"{document.sha256[:16]}-p{paragraph.number}"))
    return documents


class PassageParser(NodeParser):
    """Splits paragraph Documents into sentence (or paragraph) nodes with file offsets."""

    unit: str = "sentence"

    def _parse_nodes(self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any) -> list[BaseNode]:
        passages: list[BaseNode] = []
        for paragraph in nodes:
            spans = [(0, len(paragraph.text))] if self.unit == "paragraph" else sentence_spans(paragraph.text)
            passages.extend(self._node(paragraph, start, end) for start, end in spans)
        return passages

    def _postprocess_parsed_nodes(self, nodes: list[BaseNode], parent_doc_map: dict) -> list[BaseNode]:
        """Keep the offsets set in `_node` (the base class would re-find them paragraph-relative)."""
        return nodes

    def _node(self, paragraph: BaseNode, start: int, end: int) -> TextNode:
        meta = paragraph.metadata
        file_start, file_end = meta["start"] + start, meta["start"] + end
        metadata = {**meta, "start": file_start, "end": file_end}
        node_id = hashlib.sha1(f"{meta['doc_sha256']}:{file_start}:{file_end}:{self.unit}".encode()).hexdigest()[:24]
        return TextNode(
            id_=node_id,
            text=paragraph.text[start:end],
            metadata=metadata,
            start_char_idx=file_start,
            end_char_idx=file_end,
            excluded_embed_metadata_keys=list(metadata),
            excluded_llm_metadata_keys=list(metadata),
        )


def chunk(document: SourceDocument, source: str, unit: str = "sentence") -> list[TextNode]:
    """All passages of a document, in document order."""
    return PassageParser(unit=unit).get_nodes_from_documents(paragraph_documents(document, source))


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentence (start, end) offsets within `text`, using llama-index's bundled Punkt model."""
    return [span for span in _punkt().span_tokenize(text) if text[span[0] : span[1]].strip()]


@lru_cache(maxsize=1)
def _punkt():
    """Punkt from the NLTK data bundled in llama-index-core (never nltk's downloader)."""
    import llama_index.core
    import nltk.data
    from nltk.tokenize import PunktTokenizer

    bundled = str(Path(llama_index.core.__file__).parent / "_static" / "nltk_cache")
    if bundled not in nltk.data.path:
        nltk.data.path.append(bundled)
    return PunktTokenizer("english")
