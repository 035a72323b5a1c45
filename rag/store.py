"""Persist and load the passage index: FAISS through llama-index's FaissVectorStore, plus a manifest.

Files in the index folder:

    vectors.faiss     FAISS inner-product index of normalised passage embeddings (faiss binary):
                      exact (flat) up to ``retrieval.hnsw_above`` passages, HNSW beyond
    docstore.json     the passages (llama-index SimpleDocumentStore, JSON)
    index_store.json  FAISS position -> passage id (llama-index SimpleIndexStore, JSON)
    manifest.json     what the index was built from; written last, so a half-built index is "missing"

`open_index` loads the index when the manifest matches the current documents and settings, and
rebuilds it (reporting progress) when it is missing or stale. A file that cannot be read back
raises `IndexCorruptError` naming it and the remedy. Nothing is loaded with pickle.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.chunking import chunk
from rag.config import Config
from rag.embedding import model_id
from rag.errors import IndexCorruptError
from rag.ingest import SourceDocument, read_document
from rag.llama_adapter import faiss_position_ids

if TYPE_CHECKING:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.schema import TextNode

FORMAT_VERSION = 3  # 2: paragraph kinds without DW-specific rules, passages embedded as their own text; 3: pages
BUILD_BATCH = 1024
VECTORS, DOCSTORE, INDEX_STORE, MANIFEST = "vectors.faiss", "docstore.json", "index_store.json", "manifest.json"
BUILD_LOCK = ".build.lock"
Progress = Callable[[str], None]


@dataclass
class StoredIndex:
    """A loaded index: the llama-index index, its passages in document order, and its manifest."""

    index: VectorStoreIndex
    nodes: list[TextNode]
    manifest: dict[str, Any]

    @property
    def faiss(self) -> Any:
        return self.index.vector_store.client


def expected_manifest(config: Config, documents: list[SourceDocument]) -> dict[str, Any]:
    """What an up-to-date index for these documents and settings records."""
    return {
        "format": FORMAT_VERSION,
        "documents": [{"source": str(d.path.resolve()), "sha256": d.sha256} for d in documents],
        "model": model_id(config.embedding),
        "chunking": config.chunking.model_dump(),
        "hnsw_above": config.retrieval.hnsw_above,
    }


def open_index(
    config: Config,
    documents: list[SourceDocument],
    embed_model: BaseEmbedding,
    rebuild: bool = False,
    progress: Progress = lambda message: None,
) -> StoredIndex:
    """Load the persisted index, or build and persist it when missing, stale or `rebuild`.

    Builds hold a lock file in the index folder: a second process that needs the same index
    waits for the first one's build and then loads it, instead of building alongside it."""
    from filelock import FileLock

    expected = expected_manifest(config, documents)
    manifest = None if rebuild else read_manifest(config.index_dir)
    if manifest is not None and _same_build(manifest, expected):
        return load_index(config.index_dir, embed_model)
    config.index_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(config.index_dir / BUILD_LOCK):
        manifest = None if rebuild else read_manifest(config.index_dir)
        if manifest is not None and _same_build(manifest, expected):
            return load_index(config.index_dir, embed_model)  # built by another process meanwhile
        reason = (
            "rebuild requested" if rebuild else "no index yet" if manifest is None else "document or settings changed"
        )
        progress(f"Building the index in {config.index_dir} ({reason})...")
        stored = build_index(config, documents, embed_model, expected)
    progress(f"Indexed {len(stored.nodes)} passages from {len(documents)} document(s).")
    return stored


def read_manifest(index_dir: Path) -> dict[str, Any] | None:
    """The manifest, or None when there is no index in `index_dir`."""
    path = index_dir / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise _corrupt(path, "is not valid JSON") from None
    if not isinstance(manifest, dict) or "node_count" not in manifest:
        raise _corrupt(path, "is not an index manifest")
    return manifest


def build_index(
    config: Config, documents: list[SourceDocument], embed_model: BaseEmbedding, manifest: dict[str, Any]
) -> StoredIndex:
    """Chunk, embed (batch by batch, with a progress bar) and persist; files are written to a
    temporary folder and moved into place."""
    import faiss
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.vector_stores.faiss import FaissVectorStore

    nodes = sorted(
        (n for d in documents for n in chunk(d, str(d.path.resolve()), config.chunking.unit)), key=_document_order
    )
    dimension = len(embed_model.get_text_embedding("dimension probe"))
    faiss_index = new_faiss_index(dimension, len(nodes), config.retrieval.hnsw_above)
    storage = StorageContext.from_defaults(vector_store=FaissVectorStore(faiss_index=faiss_index))
    index = VectorStoreIndex([], storage_context=storage, embed_model=embed_model)
    with _progress_bar(len(nodes)) as bar:
        for start in range(0, len(nodes), BUILD_BATCH):  # embeddings exist for one batch at a time
            batch = nodes[start : start + BUILD_BATCH]
            index.insert_nodes(batch)
            bar.update(len(batch))
    kind = "hnsw" if isinstance(faiss_index, faiss.IndexHNSWFlat) else "flat"
    manifest = {
        **manifest,
        "node_count": len(nodes),
        "dimension": dimension,
        "faiss_index": kind,
        "libraries": _library_versions(),
    }
    _persist(config.index_dir, index, manifest)
    return StoredIndex(index, nodes, manifest)


def new_faiss_index(dimension: int, size: int, hnsw_above: int):
    """Exact inner-product search for small sets; HNSW (approximate, fast) beyond `hnsw_above`."""
    import faiss

    if size <= hnsw_above:
        return faiss.IndexFlatIP(dimension)
    index = faiss.IndexHNSWFlat(dimension, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction, index.hnsw.efSearch = 80, 96
    return index


def _progress_bar(total: int):
    """A progress bar on stderr for builds big enough to wait for."""
    from tqdm import tqdm

    return tqdm(
        total=total, desc="Embedding passages", unit="passage", disable=total < 2 * BUILD_BATCH, file=sys.stderr
    )


def load_index(index_dir: Path, embed_model: BaseEmbedding) -> StoredIndex:
    """Read a persisted index back, checking that its files agree with each other."""
    from llama_index.core import StorageContext, VectorStoreIndex, load_index_from_storage
    from llama_index.core.schema import TextNode
    from llama_index.core.storage.docstore import SimpleDocumentStore
    from llama_index.core.storage.index_store import SimpleIndexStore
    from llama_index.vector_stores.faiss import FaissVectorStore

    manifest = read_manifest(index_dir)
    if manifest is None:
        raise _corrupt(index_dir / MANIFEST, "is missing")
    vector_store = FaissVectorStore(faiss_index=_read_faiss(index_dir / VECTORS))
    docstore = SimpleDocumentStore.from_dict(_read_store(index_dir / DOCSTORE))
    index_store = SimpleIndexStore.from_dict(_read_store(index_dir / INDEX_STORE))
    storage = StorageContext.from_defaults(docstore=docstore, index_store=index_store, vector_store=vector_store)
    try:
        index = load_index_from_storage(storage, embed_model=embed_model)
    except ValueError as exc:  # llama-index: no index, or several, in the index store
        raise _corrupt(index_dir / INDEX_STORE, f"cannot be read ({type(exc).__name__})") from None
    if not isinstance(index, VectorStoreIndex):
        raise _corrupt(index_dir / INDEX_STORE, f"holds a {type(index).__name__}, not a vector index")
    nodes = sorted((n for n in docstore.docs.values() if isinstance(n, TextNode)), key=_document_order)
    count = manifest["node_count"]
    if vector_store.client.ntotal != count:
        raise _corrupt(index_dir / VECTORS, f"holds {vector_store.client.ntotal} vectors, the manifest says {count}")
    if len(nodes) != count or len(faiss_position_ids(index)) != count:
        raise _corrupt(index_dir / DOCSTORE, f"holds {len(nodes)} passages, the manifest says {count}")
    return StoredIndex(index, nodes, manifest)


def load_documents(config: Config) -> list[SourceDocument]:
    """Read every configured document."""
    return [read_document(path, config.chunking.drop_boilerplate) for path in config.documents]


def _document_order(node: TextNode) -> tuple[str, int]:
    """The one passage order used after building and after loading."""
    return node.metadata["source"], node.metadata["start"]


def _same_build(manifest: dict[str, Any], expected: dict[str, Any]) -> bool:
    return all(manifest.get(key) == value for key, value in expected.items())


def _persist(index_dir: Path, index: VectorStoreIndex, manifest: dict[str, Any]) -> None:
    index_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=index_dir))
    try:
        index.vector_store.persist(str(staging / VECTORS))
        index.storage_context.docstore.persist(str(staging / DOCSTORE))
        index.storage_context.index_store.persist(str(staging / INDEX_STORE))
        (index_dir / MANIFEST).unlink(missing_ok=True)
        for name in (VECTORS, DOCSTORE, INDEX_STORE):
            (staging / name).replace(index_dir / name)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        (staging / MANIFEST).replace(index_dir / MANIFEST)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_faiss(path: Path) -> Any:
    """The FAISS index in `path`; faiss raises RuntimeError for a missing, truncated or garbled file."""
    import faiss

    if not path.exists():
        raise _corrupt(path, "is missing")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise _corrupt(path, f"cannot be read ({type(exc).__name__})") from None
    if index is None:  # the file holds faiss's "null" marker instead of an index
        raise _corrupt(path, "holds no index")
    return index


def _read_store(path: Path) -> dict[str, Any]:
    """A llama-index key-value store file (docstore or index store): collection name -> {key: value}.

    A file that is missing, unreadable, not UTF-8 JSON (truncated, garbled) or JSON of another
    shape is reported as corrupt; llama-index then builds the store from the checked data."""
    if not path.exists():
        raise _corrupt(path, "is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise _corrupt(path, f"cannot be read ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not all(isinstance(collection, dict) for collection in data.values()):
        raise _corrupt(path, "is not a llama-index store")
    return data


def _corrupt(path: Path, problem: str) -> IndexCorruptError:
    return IndexCorruptError(
        f"index file {path} {problem}; run `python -m rag index --rebuild --index-dir {path.parent}`"
    )


def _library_versions() -> dict[str, str]:
    names = ["llama-index-core", "llama-index-vector-stores-faiss", "faiss-cpu", "sentence-transformers", "torch"]
    return {name: version(name) for name in names}
