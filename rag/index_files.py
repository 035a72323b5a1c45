"""The files of a persisted index: their names, reading them back, and what a loaded index is.

`load_index` opens the generation folder the manifest names (layout in `rag.store`) and checks
that its files agree with each other; a file that is missing, truncated or garbled raises
`IndexCorruptError` naming it and the remedy (`python -m rag index --rebuild`). Nothing is
loaded with pickle. Only FAISS, the passage and document arrays and the BM25 vocabulary are read whole: the
docstore's records are read when a passage is needed, BM25's arrays are memory-mapped, and the
llama-index `VectorStoreIndex` is built from the storage on first use.
"""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, overload

import numpy as np

from rag.errors import IndexCorruptError
from rag.ingest import Paragraph, ParagraphKind, SourceDocument
from rag.kvstore import SqliteKVStore
from rag.lexical import TermWeights
from rag.llama_adapter import faiss_position_ids
from rag.passages import Passages
from rag.retrieve import Bm25Index

if TYPE_CHECKING:
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.schema import TextNode

VECTORS, PASSAGES_DB, ARRAYS, BM25, DOCUMENT_ARRAYS, MANIFEST = (
    "vectors.faiss", "passages.sqlite", "passages.npz", "bm25", "documents.npz", "manifest.json"
)  # fmt: skip
INDEX_FILES = (VECTORS, PASSAGES_DB, ARRAYS, BM25, DOCUMENT_ARRAYS)
OLD_FILES = ("vectors.faiss", "docstore.json", "index_store.json")  # a format-2 index kept them beside the manifest
DOCUMENTS_SINCE = 7  # the first index format with `DOCUMENT_ARRAYS` (an older index is only read to be reused)
PARAGRAPH_KINDS: tuple[ParagraphKind, ...] = get_args(ParagraphKind)


@dataclass
class StoredIndex:
    """A loaded index: llama-index's storage (FAISS vector store, docstore and index store, the
    docstore read on demand), its passages in document order, BM25, the term weights, its
    manifest and the documents it holds (configured ones first, then added ones).

    The llama-index `VectorStoreIndex` is built from the storage when first asked for: its index
    struct maps every FAISS position to a passage id, and decoding it through llama-index took
    most of the start of a large index, while answering needs only FAISS and the arrays (FAISS
    position i holds passage i, checked when the index is built)."""

    storage: StorageContext
    passages: Passages
    bm25: Bm25Index
    weights: TermWeights
    manifest: dict[str, Any]
    documents: list[SourceDocument]
    embed_model: BaseEmbedding
    folder: Path
    vectors: Any  # the vectors' search index: FAISS's, or `rag.pgstore.PgVectors` answering the same calls
    _index: VectorStoreIndex | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def index(self) -> VectorStoreIndex:
        """The llama-index vector index over this storage (loaded on first use)."""
        with self._lock:
            if self._index is None:
                self._index = _vector_index(self.storage, self.embed_model, self.folder, len(self.passages))
            return self._index

    @property
    def faiss(self) -> Any:
        """The vectors' search index (the FAISS calls: search, reconstruct, reconstruct_batch, ntotal, d)."""
        return self.vectors

    @property
    def position_ids(self) -> list[str]:
        """Passage id by FAISS position."""
        return self.passages.ids.tolist()

    @property
    def nodes(self) -> list[TextNode]:
        """Every passage's node in document order, read from the docstore (all of them: for builds,
        training and small indexes; answering reads only what it retrieves)."""
        return text_nodes(self.storage.docstore)


def read_manifest(index_dir: Path) -> dict[str, Any] | None:
    """The manifest, or None when there is no index in `index_dir`."""
    path = index_dir / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise corrupt(path, "is not valid JSON", index_dir) from None
    if not isinstance(manifest, dict) or "node_count" not in manifest:
        raise corrupt(path, "is not an index manifest", index_dir)
    return manifest


def index_file(index_dir: Path, name: str) -> Path:
    """Where the current index keeps one of its files (one of `INDEX_FILES`)."""
    manifest = read_manifest(index_dir)
    if manifest is None:
        raise corrupt(index_dir / MANIFEST, "is missing", index_dir)
    return generation_folder(index_dir, manifest) / name


def load_index(
    index_dir: Path, embed_model: BaseEmbedding, documents: list[SourceDocument] | None = None
) -> StoredIndex:
    """Read a persisted index back, checking that its files agree with each other. Passages are
    read from the docstore when needed; the documents (for passage texts and citations) are
    `documents` when given, else the extracted texts the index stored at build, so opening an
    up-to-date index never reads or cleans a document."""
    from llama_index.vector_stores.faiss import FaissVectorStore

    manifest = read_manifest(index_dir)
    if manifest is None:
        raise corrupt(index_dir / MANIFEST, "is missing", index_dir)
    folder = generation_folder(index_dir, manifest)
    faiss_index = _read_faiss(folder / VECTORS, index_dir)
    if faiss_index.ntotal != manifest["node_count"]:
        problem = f"holds {faiss_index.ntotal} vectors, the manifest says {manifest['node_count']}"
        raise corrupt(folder / VECTORS, problem, index_dir)
    vector_store = FaissVectorStore(faiss_index=faiss_index)
    return load_generation(folder, manifest, vector_store, lambda passages: faiss_index, embed_model, documents)


def load_generation(
    folder: Path,
    manifest: dict[str, Any],
    vector_store: Any,
    vectors: Callable[[Passages], Any],
    embed_model: BaseEmbedding,
    documents: list[SourceDocument] | None = None,
) -> StoredIndex:
    """The index whose passage, BM25 and document files are in `folder`, with llama-index's
    `vector_store` and `vectors(passages)`, the search index of its vectors (the FAISS file
    beside them, or the PostgreSQL store's table)."""
    from llama_index.core import StorageContext
    from llama_index.core.storage.docstore.keyval_docstore import (
        DEFAULT_COLLECTION_DATA_SUFFIX,
        DEFAULT_NAMESPACE,
        KVDocumentStore,
    )
    from llama_index.core.storage.index_store.keyval_index_store import (
        DEFAULT_COLLECTION_SUFFIX,
        KVIndexStore,
    )
    from llama_index.core.storage.index_store.keyval_index_store import DEFAULT_NAMESPACE as INDEX_NAMESPACE

    index_dir = folder.parent
    kvstore = SqliteKVStore(folder / PASSAGES_DB, remedy=_remedy(index_dir))
    docstore = KVDocumentStore(kvstore)
    storage = StorageContext.from_defaults(
        docstore=docstore, index_store=KVIndexStore(kvstore), vector_store=vector_store
    )
    if documents is None and manifest.get("format", 0) >= DOCUMENTS_SINCE:
        expected = [(e["source"], e["sha256"]) for e in manifest.get("documents", [])]
        documents = read_documents(folder / DOCUMENT_ARRAYS, expected, index_dir)
    documents = documents or []
    texts = {d.source: d.text for d in documents}
    passages = _read_passages(
        folder / ARRAYS,
        lambda node_id: _read_node(docstore, node_id, folder, index_dir),
        texts,
        lambda node_ids: _read_nodes(kvstore, node_ids, folder),
    )
    bm25 = _read_bm25(folder / BM25, passages, index_dir)
    count = manifest["node_count"]
    stored_count = kvstore.count(f"{DEFAULT_NAMESPACE}{DEFAULT_COLLECTION_DATA_SUFFIX}")  # the passages' collection
    if stored_count != count or kvstore.count(f"{INDEX_NAMESPACE}{DEFAULT_COLLECTION_SUFFIX}") != 1:
        raise corrupt(folder / PASSAGES_DB, f"holds {stored_count} passages, the manifest says {count}", index_dir)
    if len(passages) != count:
        raise corrupt(folder / ARRAYS, f"holds {len(passages)} passages, the manifest says {count}", index_dir)
    weights = _term_weights(bm25, passages, folder / ARRAYS, index_dir)
    return StoredIndex(storage, passages, bm25, weights, manifest, documents, embed_model, folder, vectors(passages))


def save_documents(path: Path, documents: list[SourceDocument]) -> None:
    """Store the documents' extracted texts and labelled paragraphs as arrays: one UTF-8 blob and
    one paragraph table for all of them, with each document's end offsets. (As JSON records in
    SQLite, decoding a 5 MB document took 0.12 s of every start.)"""
    texts = [d.text.encode("utf-8") for d in documents]
    rows = [[p.number, p.start, p.end, PARAGRAPH_KINDS.index(p.kind), -1 if p.page is None else p.page]
            for d in documents for p in d.paragraphs]  # fmt: skip
    np.savez(
        path,
        sources=np.array([d.source for d in documents], dtype=str),
        sha256=np.array([d.sha256 for d in documents], dtype=str),
        pages=np.array([-1 if d.pages is None else d.pages for d in documents], dtype=np.int64),
        text=np.frombuffer(b"".join(texts), dtype=np.uint8),
        text_ends=np.cumsum([len(t) for t in texts], dtype=np.int64),
        paragraphs=np.array(rows, dtype=np.int64).reshape(len(rows), 5),
        paragraph_ends=np.cumsum([len(d.paragraphs) for d in documents], dtype=np.int64),
    )


def read_documents(path: Path, expected: list[tuple[str, str]], index_dir: Path) -> list[SourceDocument]:
    """The documents `save_documents` stored, which must be the `expected` (source, sha256 of
    the text) in that order; a missing, truncated or garbled file, or other documents, is
    corruption."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            stored = {name: arrays[name] for name in arrays.files}
        held = list(zip(stored["sources"].tolist(), stored["sha256"].tolist(), strict=True))
        text, table = stored["text"].tobytes(), stored["paragraphs"]
        text_ends, paragraph_ends = stored["text_ends"].tolist(), stored["paragraph_ends"].tolist()
        sizes = (len(held), len(stored["pages"]), len(text_ends), len(paragraph_ends))
        if table.dtype.kind != "i" or len(set(sizes)) != 1:
            raise ValueError("arrays that do not fit together")
        if held and (text_ends[-1] != len(text) or paragraph_ends[-1] != len(table)):
            raise ValueError("arrays that do not fit together")
    except FileNotFoundError:
        raise corrupt(path, "is missing", index_dir) from None
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise corrupt(path, f"cannot be read ({type(exc).__name__})", index_dir) from None
    if held != expected:
        raise corrupt(path, "holds other documents than the manifest names", index_dir)
    documents = []
    for i, (source, sha256) in enumerate(held):
        text_start, paragraph_start = (text_ends[i - 1], paragraph_ends[i - 1]) if i else (0, 0)
        try:
            paragraphs = StoredParagraphs(table[paragraph_start : paragraph_ends[i]])
            document_text = text[text_start : text_ends[i]].decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            raise corrupt(path, f"cannot be read ({type(exc).__name__})", index_dir) from None
        pages = int(stored["pages"][i])
        documents.append(SourceDocument(Path(source), document_text, sha256, paragraphs, None if pages < 0 else pages))
    return documents


class StoredParagraphs(Sequence[Paragraph]):
    """A stored document's paragraph table, each row made a `Paragraph` only when read: starting
    needs only the title's, and a large document has tens of thousands."""

    def __init__(self, rows: np.ndarray):
        if rows.ndim != 2 or rows.shape[1] != 5 or ((rows[:, 3] < 0) | (rows[:, 3] >= len(PARAGRAPH_KINDS))).any():
            raise ValueError("a garbled paragraph table")
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Paragraph: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Paragraph]: ...
    def __getitem__(self, index: int | slice) -> Paragraph | Sequence[Paragraph]:
        if isinstance(index, slice):
            return StoredParagraphs(self._rows[index])
        number, start, end, kind, page = self._rows[index].tolist()
        return Paragraph(number, start, end, PARAGRAPH_KINDS[kind], None if page < 0 else page)


def _vector_index(storage: StorageContext, embed_model: BaseEmbedding, folder: Path, count: int) -> VectorStoreIndex:
    """llama-index's vector index from the storage, checked against the passage count."""
    from llama_index.core import VectorStoreIndex, load_index_from_storage

    index_dir = folder.parent
    try:
        index = load_index_from_storage(storage, embed_model=embed_model)
    except ValueError as exc:  # llama-index: no index, or several, in the index store
        raise corrupt(folder / PASSAGES_DB, f"holds no vector index ({type(exc).__name__})", index_dir) from None
    if not isinstance(index, VectorStoreIndex):
        raise corrupt(folder / PASSAGES_DB, f"holds a {type(index).__name__}, not a vector index", index_dir)
    if len(faiss_position_ids(index)) != count:
        raise corrupt(folder / PASSAGES_DB, f"maps {len(faiss_position_ids(index))} vectors, not {count}", index_dir)
    return index


def _read_passages(
    path: Path,
    read_node: Callable[[str], TextNode],
    texts: dict[str, str],
    read_nodes: Callable[[list[str]], dict[str, TextNode]],
) -> Passages:
    """The compact passage arrays; a missing, truncated or garbled file is reported as corrupt."""
    index_dir = path.parent.parent
    if not path.exists():
        raise corrupt(path, "is missing", index_dir)
    try:
        return Passages.load(path, read_node, texts, read_nodes)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # a garbled or truncated file
        raise corrupt(path, f"cannot be read ({type(exc).__name__})", index_dir) from None


def _read_bm25(folder: Path, passages: Passages, index_dir: Path) -> Bm25Index:
    """The persisted BM25 index, memory-mapped; any unreadable part is reported as corrupt."""
    if not folder.is_dir():
        raise corrupt(folder, "is missing", index_dir)
    try:
        return Bm25Index.load(folder, passages.ids.tolist())
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:  # ValueError: bad JSON or arrays
        raise corrupt(folder, f"cannot be read ({type(exc).__name__})", index_dir) from None


def _term_weights(bm25: Bm25Index, passages: Passages, path: Path, index_dir: Path) -> TermWeights:
    """Inverse document frequencies from the persisted counts, over BM25's vocabulary."""
    vocabulary = bm25.vocabulary
    if len(passages.df) != len(vocabulary):
        raise corrupt(path, f"holds {len(passages.df)} term counts for {len(vocabulary)} terms", index_dir)
    counts = passages.df.tolist()
    return TermWeights.from_counts({t: counts[i] for t, i in vocabulary.items() if t}, len(passages))


def _read_node(docstore: Any, node_id: str, folder: Path, index_dir: Path) -> TextNode:
    """One passage's node from the docstore; a missing or undecodable record is corruption."""
    from llama_index.core.schema import TextNode

    try:
        node = docstore.get_node(node_id)
    except (KeyError, TypeError, ValueError) as exc:  # llama-index: no such record, or one it cannot decode
        raise corrupt(
            folder / PASSAGES_DB, f"cannot give passage {node_id} ({type(exc).__name__})", index_dir
        ) from None
    if not isinstance(node, TextNode):
        raise corrupt(folder / PASSAGES_DB, f"holds a {type(node).__name__} for passage {node_id}", index_dir)
    return node


def _read_nodes(kvstore: SqliteKVStore, node_ids: list[str], folder: Path) -> dict[str, TextNode]:
    """Several passages' nodes in one SQLite query, decoded as llama-index's `KVDocumentStore`
    decodes one (`json_to_doc`); a missing or undecodable record is corruption."""
    from llama_index.core.schema import TextNode
    from llama_index.core.storage.docstore.keyval_docstore import DEFAULT_COLLECTION_DATA_SUFFIX, DEFAULT_NAMESPACE
    from llama_index.core.storage.docstore.utils import json_to_doc

    records = kvstore.get_many(node_ids, f"{DEFAULT_NAMESPACE}{DEFAULT_COLLECTION_DATA_SUFFIX}")
    nodes = {}
    for node_id in node_ids:
        try:
            node = json_to_doc(records[node_id])
        except (KeyError, TypeError, ValueError) as exc:  # no such record, or one llama-index cannot decode
            problem = f"cannot give passage {node_id} ({type(exc).__name__})"
            raise corrupt(folder / PASSAGES_DB, problem, folder.parent) from None
        if not isinstance(node, TextNode):
            raise corrupt(folder / PASSAGES_DB, f"holds a {type(node).__name__} for passage {node_id}", folder.parent)
        nodes[node_id] = node
    return nodes


def generation_folder(index_dir: Path, manifest: dict[str, Any]) -> Path:
    """The folder holding the index files the manifest describes (format 2 kept them beside it)."""
    name = manifest.get("files", "")
    if not isinstance(name, str) or "/" in name or name.startswith("."):
        raise corrupt(index_dir / MANIFEST, "names no index folder", index_dir)
    return index_dir / name


def text_nodes(docstore: Any) -> list[TextNode]:
    """The passages of a llama-index docstore, in document order."""
    from llama_index.core.schema import TextNode

    return sorted((n for n in docstore.docs.values() if isinstance(n, TextNode)), key=document_order)


def document_order(node: TextNode) -> tuple[str, int]:
    """The one passage order used after building and after loading."""
    return node.metadata["source"], node.metadata["start"]


def _read_faiss(path: Path, index_dir: Path) -> Any:
    """The FAISS index in `path`; faiss raises RuntimeError for a missing, truncated or garbled file."""
    import faiss

    if not path.exists():
        raise corrupt(path, "is missing", index_dir)
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise corrupt(path, f"cannot be read ({type(exc).__name__})", index_dir) from None
    if index is None:  # the file holds faiss's "null" marker instead of an index
        raise corrupt(path, "holds no index", index_dir)
    return index


def corrupt(path: Path, problem: str, index_dir: Path) -> IndexCorruptError:
    return IndexCorruptError(f"index file {path} {problem}{_remedy(index_dir)}")


def _remedy(index_dir: Path) -> str:
    return f"; run `python -m rag index --rebuild --index-dir {index_dir}`"
