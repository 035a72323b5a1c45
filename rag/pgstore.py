"""The PostgreSQL store (`store.backend: postgres`): one index in a database, read by every replica.

`python -m rag index` builds the index as with FAISS (the files in `index_dir` serve as its
build cache, so unchanged documents are not embedded again) and publishes it as a new
generation (`rag.pgpublish`), under a PostgreSQL advisory lock, so that two at once give one winner:

    data_rag_gen_<N>     the passages (text, metadata, node id) and their vectors: the table of
                         llama-index's `PGVectorStore` (pgvector; HNSW above retrieval.hnsw_above)
    rag_generations      each generation's manifest, and a key of its documents and settings
    rag_files            each generation's passage arrays, docstore, BM25 index and documents (bytea)
    rag_current          the generation replicas open; swapped in the transaction that adds it

A replica (`rag ask`, `rag chat`, `bot.py`) opens the current generation without reading any
document: it copies the generation's files into ``<index_dir>/postgres/gen-<N>-<id>`` once (so BM25
and the arrays load memory-mapped, as from a local index) and searches the vectors in
PostgreSQL (`PgVectors`). Lexical retrieval stays BM25, built with the generation and published
with it, so both backends rank alike. The connection is `rag.database`'s.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.database import EF_SEARCH, Database, Session, database_url, shown
from rag.errors import (
    ConfigError,
    IndexCorruptError,
    IndexMissingError,
    PublishedIndexMismatchError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from rag.config import Config
    from rag.index_files import StoredIndex
    from rag.passages import Passages

Progress = Callable[[str], None]


class PgVectors:
    """The FAISS calls the retriever makes (`search`, `reconstruct`, `reconstruct_batch`, `ntotal`,
    `d`), answered from the generation's pgvector table: inner product, exact below
    retrieval.hnsw_above passages and by its HNSW index above. Positions are passage positions
    in document order, as in the FAISS index."""

    def __init__(self, database: Database, table: str, passages: Passages, dimension: int):
        self.database, self.table, self.passages = database, table, passages
        self.ntotal, self.d = len(passages), dimension

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._query(
            f"SELECT node_id, -(embedding <#> %s) FROM {self.table} ORDER BY embedding <#> %s LIMIT %s",
            (x[0], x[0], k),
        )
        positions = [self.passages.position(node_id) for node_id, _ in rows]
        found = np.full((1, k), -1, dtype="int64")
        scores = np.zeros((1, k), dtype="float32")
        for i, (position, (_, score)) in enumerate(zip(positions, rows, strict=True)):
            found[0, i], scores[0, i] = -1 if position is None else position, score
        return scores, found

    def reconstruct_batch(self, positions: np.ndarray) -> np.ndarray:
        ids = [str(self.passages.ids[int(p)]) for p in positions]
        rows = dict(self._query(f"SELECT node_id, embedding FROM {self.table} WHERE node_id = ANY(%s)", (ids,)))
        missing = [node_id for node_id in ids if node_id not in rows]
        if missing:
            problem = f"{self.table} lacks the vectors of {len(missing)} passages"
            raise IndexCorruptError(f"{problem}; run `python -m rag index --rebuild`")
        return np.vstack([np.asarray(rows[node_id].to_numpy(), dtype="float32") for node_id in ids])

    def reconstruct(self, position: int) -> np.ndarray:
        return self.reconstruct_batch(np.asarray([position]))[0]

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        import psycopg

        try:
            return self.database.query(sql, params)
        except psycopg.errors.UndefinedTable:  # a newer generation replaced this one, and it was dropped
            raise StoreUnavailableError(
                "the index in the database was replaced by a newer one; ask again in a moment"
            ) from None


def vectors_table(generation: int) -> str:
    """PGVectorStore's table of a generation (it prefixes "data_" to the name it is given)."""
    return f"data_rag_gen_{generation}"


def current_generation(database: Database | Session) -> int | None:
    """The generation replicas should answer from; None when nothing was published."""
    current = current_published(database)
    return None if current is None else current[0]


def current_published(database: Database | Session) -> tuple[int, str, dict[str, Any]] | None:
    """(generation, content key, manifest) of the current generation; None when there is none."""
    import psycopg

    try:
        rows = database.query(
            "SELECT g.generation, g.content_key, g.manifest"
            " FROM rag_current c JOIN rag_generations g USING (generation)"
        )
    except psycopg.errors.UndefinedTable:  # nothing was ever published to this database
        return None
    return (int(rows[0][0]), rows[0][1], rows[0][2]) if rows else None


def open_published(
    config: Config, embed_model: BaseEmbedding, progress: Progress = lambda message: None
) -> StoredIndex:
    """The database's current generation, its files copied into the local cache once. Its
    manifest records which generation it is (``published_generation``)."""
    from rag.index_files import load_generation
    from rag.store import FORMAT_VERSION

    database = Database(database_url(), ef_search=max(EF_SEARCH, config.retrieval.candidates))
    current = current_published(database)
    if current is None:
        raise IndexMissingError(
            f"the database at {shown(database.url)} holds no index yet; run `python -m rag index` "
            "with store.backend: postgres to publish one"
        )
    generation, key, manifest = current
    if manifest.get("format") != FORMAT_VERSION:
        raise IndexMissingError(
            f"the index published at {shown(database.url)} has format {manifest.get('format')}, this version reads"
            f" {FORMAT_VERSION}; run `python -m rag index` with store.backend: postgres to publish it again"
        )
    _check_documents(config, generation, manifest)
    copy = f"gen-{generation}-{manifest.get('publish_id', key[:16])}"  # not another database's generation N
    folder = _cached_files(database, generation, config.index_dir / "postgres" / copy, progress)
    dimension = int(manifest["dimension"])
    return load_generation(
        folder,
        manifest | {"published_generation": generation},
        vector_store(database.url, generation, dimension, setup=False),
        lambda passages: PgVectors(database, vectors_table(generation), passages, dimension),
        embed_model,
    )


def vector_store(url: str, generation: int, dimension: int, setup: bool) -> Any:
    """llama-index's PGVectorStore over a generation's table (created when `setup`)."""
    from llama_index.vector_stores.postgres import PGVectorStore

    return PGVectorStore(
        connection_string=_sqlalchemy_url(url),
        async_connection_string=_sqlalchemy_url(url),
        table_name=f"rag_gen_{generation}",
        embed_dim=dimension,
        use_jsonb=True,
        perform_setup=setup,
        initialization_fail_on_error=True,
    )


def _check_documents(config: Config, generation: int, manifest: dict[str, Any]) -> None:
    """PublishedIndexMismatchError unless the published generation holds documents of the configured names (or
    --doc's): a reader never builds, so answering from other documents than asked would mislead."""
    published = sorted(Path(e["source"]).name for e in manifest.get("documents", []))
    configured = sorted(path.name for path in config.documents)  # by name: hosts may keep them elsewhere
    if configured != published:
        names, asked = ", ".join(published) or "no document", ", ".join(configured)
        raise PublishedIndexMismatchError(
            f"the database's index (generation {generation}) holds {names}, not {asked}: with "
            "store.backend: postgres every command answers from what `python -m rag index` published. "
            "Publish these documents with `python -m rag index` (same config and --doc), or use "
            "store.backend: faiss for a local index"
        )


def _cached_files(database: Database, generation: int, folder: Path, progress: Progress) -> Path:
    """The generation's files in `folder`, fetched from the database when not there yet (into a
    temporary folder renamed into place, so a half-written copy is never used); older copies in
    its parent folder are removed."""
    from rag.index_files import ARRAYS, BM25, DOCUMENT_ARRAYS, PASSAGES_DB

    cache = folder.parent
    if folder.is_dir():
        return folder
    progress(f"Copying index generation {generation} from the database...")
    rows = database.query("SELECT name, data FROM rag_files WHERE generation = %s", (generation,))
    names = {name.split("/")[0] for name, _ in rows}
    if not {ARRAYS, BM25, DOCUMENT_ARRAYS, PASSAGES_DB} <= names:  # dropped meanwhile by a newer publish
        raise StoreUnavailableError(f"index generation {generation} was replaced while being read; try again")
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".gen-{generation}-", dir=cache))
    try:
        for name, data in rows:
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        staging.rename(folder)
    except OSError:
        if not folder.is_dir():  # not merely another process renaming its copy first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for old in cache.glob("gen-*"):
        number = old.name.split("-")[1]
        if old != folder and number.isdigit() and int(number) < generation - 1:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def _sqlalchemy_url(url: str) -> str:
    """The URL for SQLAlchemy's psycopg (3) dialect, which PGVectorStore connects with."""
    scheme, rest = url.split("://", 1)
    if scheme not in ("postgres", "postgresql", "postgresql+psycopg"):
        raise ConfigError(f"DATABASE_URL must start with postgresql:// (got {scheme}://)")
    return f"postgresql+psycopg://{rest}"
