"""Persist and load the passage index: FAISS through llama-index's FaissVectorStore, plus a manifest.

Files in the index folder:

    manifest.json     what the index holds and was built from, and which generation folder has its
                      files; replaced atomically, last, so a reader sees the old index or the new one
    gen-N/vectors.faiss     FAISS inner-product index of normalised passage embeddings (faiss binary):
                            exact (flat) up to ``retrieval.hnsw_above`` passages, HNSW beyond
                            (vectors stored as float16)
    gen-N/passages.sqlite   llama-index's KVDocumentStore (the passages) and KVIndexStore (FAISS
                            position -> passage id) on `rag.kvstore.SqliteKVStore`: records are
                            read when a passage is needed, not at start
    gen-N/passages.npz      compact arrays in document order (`rag.passages`): passage id, document,
                            paragraph, offsets; and each BM25 term's document frequency
    gen-N/bm25/             the BM25 index (bm25s's own files: .npy arrays and JSON), memory-mapped
    gen-N/documents.npz     each document's extracted text and labelled paragraphs, as arrays

The manifest records each document file's `rag.ingest.fingerprint` (size, modification time,
sha256 of the raw bytes). So `open_current` tells that an index is up to date
by hashing the files, and opens it without extracting or cleaning any document (at 60,000
passages that took 2.7 s of a 6 s start); documents are read only when the index must change.

The index holds the configured documents plus those added with `add_documents` (recorded in the
manifest with ``"origin": "added"``; they stay until `remove_document`). Every build is
incremental: a document whose path and sha256 the previous index already holds keeps its passages
and vectors (copied from the docstore and the FAISS index); only new and changed documents are
embedded. A change of embedding model or chunking, or of index format, re-embeds everything
(except from a format in `REUSABLE_FORMATS`, whose passages and vectors are copied).

`open_index` loads the index when the manifest matches the current documents and settings, and
updates it (reporting progress) when it is missing or stale. Builds write a new generation folder
under the build lock and then swap the manifest in: an interrupted build leaves the previous index
intact. A file that cannot be read back raises `IndexCorruptError` naming it and the remedy.
Nothing is loaded with pickle. The BM25 index and the term statistics are computed once, at
build time, with the one analyser (`rag.lexical.content_terms`); opening an index reads only the
arrays, the BM25 vocabulary and the FAISS file, whatever the number of passages; reading the
files back and checking them is `rag.index_files`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rag.chunking import chunk
from rag.config import Config
from rag.embedding import model_id
from rag.entities import Span as Tagged
from rag.entities import annotate, pipeline
from rag.errors import ConfigError, DocumentError, IndexCorruptError, IndexMissingError
from rag.index_files import (  # noqa: F401  (INDEX_FILES and index_file: re-exported for callers of rag.store)
    ARRAYS,
    BM25,
    DOCUMENT_ARRAYS,
    INDEX_FILES,
    MANIFEST,
    OLD_FILES,
    PASSAGES_DB,
    VECTORS,
    StoredIndex,
    document_order,
    index_file,
    load_index,
    read_manifest,
    save_documents,
)
from rag.ingest import SourceDocument, display_path, fingerprint, read_document
from rag.kvstore import SqliteKVStore
from rag.llama_adapter import check_positions
from rag.passages import Passages
from rag.retrieve import Bm25Index

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.schema import TextNode

# 2: paragraph kinds without DW-specific rules, passages embedded as their own text
# 3: pages and sections in passage metadata (PDF, HTML, DOCX, Markdown readers)
# 4: files in a generation folder named by the manifest; per-document passages, origin and dates
# 5: passages in SQLite (llama-index KV stores), compact arrays, persisted BM25 with the one analyser
# 6: documents' extracted texts in SQLite, file fingerprints in the manifest (no parsing at start)
# 7: documents' texts and paragraphs as arrays (documents.npz) instead of JSON records in SQLite
FORMAT_VERSION = 8  # 8: passages.npz holds the passages' entities and noun phrases
REUSABLE_FORMATS = (5, 6, 7, 8)  # formats whose passages and vectors a build copies instead of re-embedding
BUILD_BATCH = 1024
BUILD_LOCK = ".build.lock"
Progress = Callable[[str], None]
Origin = Literal["config", "added"]


@dataclass(frozen=True)
class Target:
    """A document the index should hold, and why: configured, or added with `rag add`."""

    document: SourceDocument
    origin: Origin

    @property
    def source(self) -> str:
        return self.document.source


@dataclass(frozen=True)
class BuildCounts:
    """Passages embedded by the model in a build, and passages whose vectors were copied."""

    embedded: int
    reused: int


@dataclass(frozen=True)
class AddResult:
    """What `add_documents` did: the updated index, the counts and, per path, "added",
    "updated" or "unchanged"."""

    stored: StoredIndex
    counts: BuildCounts
    actions: list[tuple[SourceDocument, str]]


def build_settings(config: Config) -> dict[str, Any]:
    """The settings an up-to-date index was built with."""
    return {
        "format": FORMAT_VERSION,
        "model": model_id(config.embedding),
        "chunking": config.chunking.model_dump(),
        "hnsw_above": config.retrieval.hnsw_above,
    }


def open_current(
    config: Config, embed_model: BaseEmbedding, rebuild: bool = False, progress: Progress = lambda message: None
) -> StoredIndex:
    """The index answers come from: the local one (`open_local`), or with `store.backend:
    postgres` the one published in the database (`rag.pgstore.open_published`: never built
    here, `python -m rag index` publishes it)."""
    if config.store.backend == "postgres":
        from rag.pgstore import open_published

        return open_published(config, embed_model, progress)
    return open_local(config, embed_model, rebuild, progress)


def open_local(
    config: Config, embed_model: BaseEmbedding, rebuild: bool = False, progress: Progress = lambda message: None
) -> StoredIndex:
    """The index in `config.index_dir` of the configured documents plus the added ones: loaded
    without reading any document when the manifest's file fingerprints and settings match;
    otherwise the documents are read and the index updated (`open_index`)."""
    if not rebuild:
        stored = _load_if_fresh(config, embed_model)
        if stored is not None:
            return stored
    return open_index(config, load_documents(config), embed_model, rebuild, progress)


def _load_if_fresh(config: Config, embed_model: BaseEmbedding) -> StoredIndex | None:
    """The index, with the documents it stored, when it was built with these settings from exactly
    these files (the configured ones and the added ones, unchanged); else None. A missing
    configured document raises its `DocumentError`; a missing added one leaves it to `open_index`
    (whose message names the remedy)."""
    manifest = read_manifest(config.index_dir)
    if manifest is None or not _settings_match(manifest, config):
        return None
    configured = {str(path.resolve()): path for path in config.documents}
    entries = manifest.get("documents", [])
    added = {e["source"]: Path(e["source"]) for e in entries if e.get("origin") == "added"}
    expected = {(s, "config") for s in configured} | {(s, "added") for s in added if s not in configured}
    if {(e["source"], e.get("origin")) for e in entries} != expected:
        return None
    files = {**added, **configured}
    for entry in entries:
        try:
            current = fingerprint(files[entry["source"]])
        except DocumentError:
            if entry["source"] in configured:
                raise
            return None
        if entry.get("file", {}).get("sha256") != current["sha256"]:
            return None
    stored = load_index(config.index_dir, embed_model)
    order = {source: i for i, source in enumerate([*configured, *added])}
    stored.documents.sort(key=lambda d: order[d.source])  # configured ones first, in the configured order
    return stored


def open_index(
    config: Config,
    documents: list[SourceDocument],
    embed_model: BaseEmbedding,
    rebuild: bool = False,
    progress: Progress = lambda message: None,
) -> StoredIndex:
    """Load the persisted index of `documents` (the configured ones) plus the documents added
    earlier, or update it when missing or stale; `rebuild` re-embeds every document.

    Builds hold a lock file in the index folder: a second process that needs the same index
    waits for the first one's build and then loads it, instead of building alongside it."""
    manifest = None if rebuild else read_manifest(config.index_dir)
    if manifest is not None and _settings_match(manifest, config):
        targets = plan(config, documents, manifest)
        if _holds(manifest, targets):
            _refresh_fingerprints(config.index_dir, manifest, targets)
            return load_index(config.index_dir, embed_model, [t.document for t in targets])
    with build_lock(config.index_dir):
        manifest = _manifest_for_update(config.index_dir, rebuild, progress)
        targets = plan(config, documents, manifest)
        if not rebuild and _up_to_date(manifest, config, targets):
            return load_index(config.index_dir, embed_model, [t.document for t in targets])  # built meanwhile
        reason = (
            "rebuild requested"
            if rebuild
            else "no index yet"
            if manifest is None
            else "index format changed"
            if manifest.get("format") != FORMAT_VERSION
            else "document or settings changed"
        )
        progress(f"Building the index in {config.index_dir} ({reason})...")
        previous = None if rebuild else reusable_index(config, manifest, embed_model)
        stored, counts = build_index(config, targets, embed_model, previous, manifest)
    progress(
        f"Indexed {len(stored.passages)} passages from {len(targets)} document(s)"
        f" ({counts.embedded} embedded, {counts.reused} reused)."
    )
    return stored


def add_documents(
    config: Config, paths: list[Path], embed_model: BaseEmbedding, progress: Progress = lambda message: None
) -> AddResult:
    """Add documents to the index (or update them, when their content changed), embedding only
    their passages. Every path is read before anything is written: a bad file changes nothing."""
    _refuse_shared_store(config, "Adding documents")
    new = [read_document(path, config.chunking.drop_boilerplate) for path in paths]
    configured = load_documents(config)
    with build_lock(config.index_dir):
        manifest = read_manifest(config.index_dir)
        targets = plan(config, configured, manifest)
        actions = []
        for document in new:
            at = next((i for i, t in enumerate(targets) if t.source == document.source), None)
            if at is None:
                _refuse_duplicate(document, targets)
                targets.append(Target(document, "added"))
                actions.append((document, "added"))
            else:
                targets[at] = Target(document, targets[at].origin)
                actions.append((document, _change(manifest, targets[at])))
        if _up_to_date(manifest, config, targets):
            stored = load_index(config.index_dir, embed_model, [t.document for t in targets])
            return AddResult(stored, BuildCounts(0, len(stored.passages)), actions)
        progress(f"Updating the index in {config.index_dir}...")
        previous = reusable_index(config, manifest, embed_model)
        stored, counts = build_index(config, targets, embed_model, previous, manifest)
    return AddResult(stored, counts, actions)


def remove_document(
    config: Config, name: str, embed_model: BaseEmbedding, progress: Progress = lambda message: None
) -> tuple[StoredIndex, dict[str, Any]]:
    """Remove an added document (named by file name or path) from the index; no passage is
    re-embedded. Returns the updated index and the removed document's manifest entry."""
    _refuse_shared_store(config, "Removing documents")
    configured = load_documents(config)
    with build_lock(config.index_dir):
        manifest = read_current_manifest(config.index_dir)
        entry = find_document(manifest, name)
        if entry["source"] in {d.source for d in configured}:
            raise DocumentError(
                f"{display_path(Path(entry['source']))} is a configured document (config `documents` or --doc);"
                " remove it there, not with `rag remove`"
            )
        targets = plan(config, configured, manifest, skip=entry["source"])
        progress(f"Updating the index in {config.index_dir}...")
        previous = reusable_index(config, manifest, embed_model)
        stored, _ = build_index(config, targets, embed_model, previous, manifest)
    return stored, entry


def _refuse_shared_store(config: Config, what: str) -> None:
    """`rag add`, `rag remove` and uploads change the local index only (not yet the PostgreSQL store)."""
    if config.store.backend != "faiss":
        raise ConfigError(
            f"{what} works with store.backend: faiss only; with postgres, list the files in the config's"
            " `documents` and run `python -m rag index`"
        )


def find_document(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    """The manifest entry of the document called `name` (a path, or a file name when only one
    indexed document has it); DocumentError when no document or several match."""
    entries = manifest["documents"]
    by_path = [e for e in entries if e["source"] == str(Path(name).expanduser().resolve())]
    matches = by_path or [e for e in entries if name in (Path(e["source"]).name, display_path(Path(e["source"])))]
    if len(matches) == 1:
        return matches[0]
    indexed = ", ".join(display_path(Path(e["source"])) for e in entries)
    if not matches:
        raise DocumentError(f"no indexed document is called {name!r}; the index holds: {indexed}")
    paths = ", ".join(display_path(Path(e["source"])) for e in matches)
    raise DocumentError(f"{name!r} is ambiguous: it names {paths}; give the path")


def read_current_manifest(index_dir: Path) -> dict[str, Any]:
    """The manifest of an index in the current format; IndexMissingError saying how to build one
    when there is no index, or an index of an older format, in `index_dir`."""
    manifest = read_manifest(index_dir)
    if manifest is None:
        raise IndexMissingError(f"no index in {index_dir} yet; run `python -m rag index --index-dir {index_dir}`")
    if manifest.get("format") != FORMAT_VERSION:
        raise IndexMissingError(
            f"the index in {index_dir} has an older format; `python -m rag index --index-dir {index_dir}` rebuilds it"
        )
    return manifest


def plan(
    config: Config, configured: list[SourceDocument], manifest: dict[str, Any] | None, skip: str | None = None
) -> list[Target]:
    """The documents the index should hold: the configured ones, then those the manifest records
    as added (read from disk again, so that an edited one is re-embedded), except `skip`."""
    targets = [Target(d, "config") for d in configured]
    sources = {t.source for t in targets}
    for entry in (manifest or {}).get("documents", []):
        if entry.get("origin") != "added" or entry["source"] in sources or entry["source"] == skip:
            continue
        targets.append(Target(_read_added(Path(entry["source"]), config), "added"))
    return targets


def _read_added(path: Path, config: Config) -> SourceDocument:
    """An added document, read again; a missing or unreadable one names the remedy."""
    try:
        return read_document(path, config.chunking.drop_boilerplate)
    except DocumentError as exc:
        raise DocumentError(
            f"{exc} (a document added with `rag add`); restore it, or run `python -m rag remove {path.name}"
            f" --index-dir {config.index_dir}`"
        ) from None


def _refuse_duplicate(document: SourceDocument, targets: list[Target]) -> None:
    """Passage ids derive from the content, so one index cannot hold the same text twice."""
    for target in targets:
        if target.document.sha256 == document.sha256:
            raise DocumentError(
                f"{display_path(document.path)} has the same content as {display_path(target.document.path)},"
                " which the index already holds"
            )


def _change(manifest: dict[str, Any] | None, target: Target) -> str:
    """How adding `target` changes the index: "unchanged", "updated" (new content) or "added"."""
    if _holds_document(manifest, target):
        return "unchanged"
    recorded = any(e["source"] == target.source for e in (manifest or {}).get("documents", []))
    return "updated" if recorded else "added"


def _settings_match(manifest: dict[str, Any], config: Config) -> bool:
    return all(manifest.get(key) == value for key, value in build_settings(config).items())


def _up_to_date(manifest: dict[str, Any] | None, config: Config, targets: list[Target]) -> bool:
    """Whether the index the manifest describes was built with these settings for exactly these documents."""
    return manifest is not None and _settings_match(manifest, config) and _holds(manifest, targets)


def _holds(manifest: dict[str, Any], targets: list[Target]) -> bool:
    """Whether the manifest records exactly these documents, with this content and origin."""
    recorded = {(e["source"], e["sha256"], e.get("origin")) for e in manifest.get("documents", [])}
    return recorded == {(t.source, t.document.sha256, t.origin) for t in targets}


def _refresh_fingerprints(index_dir: Path, manifest: dict[str, Any], targets: list[Target]) -> None:
    """Record the files' current fingerprints when only their bytes changed, not their text (a
    re-saved PDF): otherwise every start would extract them again to find the index current.
    Best effort: a read-only index folder still opens."""
    current = {t.source: t.document.raw for t in targets if t.document.raw}

    def stale(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in entries if e["source"] in current and e.get("file") != current[e["source"]]]

    if not stale(manifest.get("documents", [])):
        return
    try:
        with build_lock(index_dir):
            latest = read_manifest(index_dir)  # another process may have built meanwhile
            if latest is None or not _holds(latest, targets):
                return
            for entry in stale(latest["documents"]):
                entry["file"] = current[entry["source"]]
            _write_manifest(index_dir, latest)
    except OSError:
        pass


def _holds_document(manifest: dict[str, Any] | None, target: Target) -> bool:
    entries = (manifest or {}).get("documents", [])
    return any(e["source"] == target.source and e["sha256"] == target.document.sha256 for e in entries)


def _manifest_for_update(index_dir: Path, rebuild: bool, progress: Progress) -> dict[str, Any] | None:
    """The manifest before a build. A rebuild (the remedy for a corrupt index) goes ahead without a
    readable manifest, saying that the documents it recorded as added are then forgotten."""
    try:
        return read_manifest(index_dir)
    except IndexCorruptError:
        if not rebuild:
            raise
        progress(f"The manifest in {index_dir} cannot be read: documents added with `rag add` must be added again.")
        return None


def reusable_index(config: Config, manifest: dict[str, Any] | None, embed_model: BaseEmbedding) -> StoredIndex | None:
    """The previous index when its passages and vectors can be reused (same format, model and
    chunking; it loads cleanly), else None: then every document is embedded."""
    if manifest is None or manifest.get("format") not in REUSABLE_FORMATS:
        return None
    settings = build_settings(config)
    if manifest.get("model") != settings["model"] or manifest.get("chunking") != settings["chunking"]:
        return None
    try:
        return load_index(config.index_dir, embed_model, documents=[])  # nodes carry their own texts
    except IndexCorruptError:
        return None  # a damaged previous index is replaced, not reused


@contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """The lock every build of the index in `index_dir` holds."""
    from filelock import FileLock

    index_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(index_dir / BUILD_LOCK):
        yield


def build_index(
    config: Config,
    targets: list[Target],
    embed_model: BaseEmbedding,
    previous: StoredIndex | None = None,
    old_manifest: dict[str, Any] | None = None,
) -> tuple[StoredIndex, BuildCounts]:
    """Persist an index of `targets`: passages of documents that `previous` holds unchanged keep
    their nodes and vectors; the others are chunked and embedded (batch by batch, with a progress
    bar). Files are written to a new generation folder, then the manifest is swapped in."""
    vectors = _vectors_by_id(previous) if previous else {}
    per_document = [_passages(t, previous, vectors, config) for t in targets]
    nodes = sorted((n for passages in per_document for n in passages), key=document_order)
    to_embed = sum(n.embedding is None for n in nodes)
    dimension = previous.faiss.d if previous else len(embed_model.get_text_embedding("dimension probe"))
    config.index_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=config.index_dir))
    try:
        documents = [t.document for t in targets]
        tags = _tags_by_id(previous) if previous else {}
        kind = _write_files(staging, nodes, documents, config, embed_model, dimension, to_embed, tags)
        manifest = {
            **build_settings(config),
            "documents": _document_entries(targets, per_document, old_manifest),
            "node_count": len(nodes),
            "dimension": dimension,
            "faiss_index": kind,
            "libraries": _library_versions(),
        }
        _persist(config.index_dir, staging, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    counts = BuildCounts(embedded=to_embed, reused=len(nodes) - to_embed)
    return load_index(config.index_dir, embed_model, [t.document for t in targets]), counts


def _write_files(
    folder: Path,
    nodes: list[TextNode],
    documents: list[SourceDocument],
    config: Config,
    embed_model: BaseEmbedding,
    dimension: int,
    to_embed: int,
    tags: dict[str, list[Tagged]],
) -> str:
    """Embed what needs it (batch by batch, with a progress bar) and write every index file into
    `folder`: FAISS, the llama-index stores and the documents' texts in SQLite, BM25 and the
    arrays. Returns the FAISS kind."""
    import faiss
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore
    from llama_index.core.storage.index_store.keyval_index_store import KVIndexStore
    from llama_index.vector_stores.faiss import FaissVectorStore

    untagged = [n for n in nodes if n.node_id not in tags]  # tags of unchanged passages are kept
    if untagged:
        pipeline()  # a missing tagger fails now, not after every passage is embedded
    faiss_index = new_faiss_index(dimension, len(nodes), config.retrieval.hnsw_above)
    kvstore = SqliteKVStore(folder / PASSAGES_DB, create=True)
    storage = StorageContext.from_defaults(
        docstore=KVDocumentStore(kvstore),
        index_store=KVIndexStore(kvstore),
        vector_store=FaissVectorStore(faiss_index=faiss_index),
    )
    index = VectorStoreIndex([], storage_context=storage, embed_model=embed_model)
    with _progress_bar(to_embed) as bar:
        for start in range(0, len(nodes), BUILD_BATCH):  # embeddings exist for one batch at a time
            batch = nodes[start : start + BUILD_BATCH]
            index.insert_nodes(batch)  # llama-index embeds only the nodes without an embedding
            bar.update(sum(n.embedding is None for n in batch))
    check_positions(index, [n.node_id for n in nodes])  # FAISS position i holds passage i
    index.vector_store.persist(str(folder / VECTORS))
    kvstore.close()
    save_documents(folder / DOCUMENT_ARRAYS, documents)
    passages = Passages.from_nodes(nodes)
    with _progress_bar(len(untagged), "Tagging entities") as bar:
        fresh = annotate([n.text for n in untagged], bar.update)
    tags = tags | {n.node_id: spans for n, spans in zip(untagged, fresh, strict=True)}
    passages.set_spans([tags[n.node_id] for n in nodes])
    bm25, passages.df = Bm25Index.build((n.text for n in nodes), [n.node_id for n in nodes])
    bm25.save(folder / BM25)
    passages.save(folder / ARRAYS)
    return "hnsw" if isinstance(faiss_index, faiss.IndexHNSW) else "flat"


def _passages(
    target: Target, previous: StoredIndex | None, vectors: dict[str, list[float]], config: Config
) -> list[TextNode]:
    """The document's passages: copies of the previous index's nodes, carrying their stored
    vectors, when it holds this very document; else fresh nodes without an embedding."""
    if previous is not None and _holds_document(previous.manifest, target):
        reused = [n.model_copy() for n in _document_nodes(previous, target.source)]
        for node in reused:
            node.embedding = vectors[node.node_id]
        return reused
    return chunk(target.document, target.source, config.chunking.unit)


def _document_nodes(stored: StoredIndex, source: str) -> list[TextNode]:
    """The stored nodes of one document, in document order."""
    passages = stored.passages
    if source not in passages.sources:
        return []
    number = passages.sources.index(source)
    return [passages.node(i) for i in range(len(passages)) if passages.document[i] == number]


def _tags_by_id(stored: StoredIndex) -> dict[str, list[Tagged]]:
    """Every stored passage's entities and noun phrases by id, when its format has them."""
    if stored.manifest.get("format") != FORMAT_VERSION:
        return {}
    return dict(zip(map(str, stored.passages.ids), stored.passages.all_spans(), strict=True))


def _vectors_by_id(stored: StoredIndex) -> dict[str, list[float]]:
    """Every stored vector by passage id, read back from the FAISS index."""
    matrix = stored.faiss.reconstruct_n(0, stored.faiss.ntotal)
    return {node_id: matrix[position].tolist() for position, node_id in enumerate(stored.position_ids)}


def _document_entries(
    targets: list[Target], per_document: list[list[TextNode]], old_manifest: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The manifest's record of each document: path, hash, passages, pages (when the passages
    carry a ``page``), origin, when it was first added and when its passages were embedded."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    old = {e["source"]: e for e in (old_manifest or {}).get("documents", []) if "added" in e}
    entries = []
    for target, passages in zip(targets, per_document, strict=True):
        before = old.get(target.source, {})
        reused = bool(passages) and all(n.embedding is not None for n in passages)
        pages = [n.metadata["page"] for n in passages if isinstance(n.metadata.get("page"), int)]
        entries.append(
            {
                "source": target.source,
                "sha256": target.document.sha256,
                "file": target.document.raw or fingerprint(target.document.path),
                "passages": len(passages),
                "pages": max(pages) if pages else None,
                "origin": target.origin,
                "added": before.get("added", now),
                "embedded": before.get("embedded", now) if reused else now,
            }
        )
    return entries


def new_faiss_index(dimension: int, size: int, hnsw_above: int):
    """Exact inner-product search for small sets; HNSW (approximate, fast) beyond `hnsw_above`,
    over vectors stored as float16: half the disk and memory of float32, and a cosine changes by
    about 1e-4, far below what the approximate search itself gives up."""
    import faiss

    if size <= hnsw_above:
        return faiss.IndexFlatIP(dimension)
    index = faiss.IndexHNSWSQ(dimension, faiss.ScalarQuantizer.QT_fp16, 32, faiss.METRIC_INNER_PRODUCT)  # type: ignore[arg-type]
    index.hnsw.efConstruction, index.hnsw.efSearch = 80, 96
    return index


def _progress_bar(total: int, what: str = "Embedding passages"):
    """A progress bar on stderr, with the time left, for builds big enough to wait for."""
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="passage", disable=total < 2 * BUILD_BATCH, file=sys.stderr)


def load_documents(config: Config) -> list[SourceDocument]:
    """Read every configured document."""
    return [read_document(path, config.chunking.drop_boilerplate) for path in config.documents]


def _persist(index_dir: Path, staging: Path, manifest: dict[str, Any]) -> None:
    """Move the built files (`staging`) into a new generation folder, then atomically replace the
    manifest with one naming it. Until that rename the previous index stays whole; afterwards the
    folder of the previous generation is kept (a reader may have just read its manifest) and
    older ones go."""
    previous = _current_generation(index_dir)
    generation = index_dir / f"gen-{_next_generation(index_dir)}"
    staging.rename(generation)
    _write_manifest(index_dir, {**manifest, "files": generation.name})
    _remove_old_generations(index_dir, keep={generation.name, previous})


def _write_manifest(index_dir: Path, manifest: dict[str, Any]) -> None:
    """Replace the manifest in one atomic rename."""
    (index_dir / f".{MANIFEST}.new").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(index_dir / f".{MANIFEST}.new", index_dir / MANIFEST)


def _current_generation(index_dir: Path) -> str:
    """The generation folder the current manifest names ("" when none can be read)."""
    try:
        manifest = read_manifest(index_dir)
    except IndexCorruptError:
        return ""
    return str(manifest.get("files", "")) if manifest else ""


def _next_generation(index_dir: Path) -> int:
    numbers = [int(p.name[4:]) for p in index_dir.glob("gen-*") if p.name[4:].isdigit()]
    return max(numbers, default=0) + 1


def _remove_old_generations(index_dir: Path, keep: set[str]) -> None:
    """Delete generation folders other than `keep`, and the files of a format-2 index."""
    for folder in index_dir.glob("gen-*"):
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
    for name in OLD_FILES:
        (index_dir / name).unlink(missing_ok=True)


def _library_versions() -> dict[str, str]:
    names = [
        "llama-index-core",
        "llama-index-vector-stores-faiss",
        "faiss-cpu",
        "bm25s",
        "sentence-transformers",
        "torch",
    ]
    return {name: version(name) for name in names}
