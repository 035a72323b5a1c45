"""Publishing an index to the PostgreSQL store (`rag index` with `store.backend: postgres`): a
new generation, written under an advisory lock so that two writers at once give one winner, and
swapped in for the replicas in one transaction. `SCHEMA` creates the tables, which `rag.pgstore`
describes."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.database import Session, database_url, shown
from rag.errors import ConfigError, StoreUnavailableError
from rag.pgstore import Progress, current_published, vector_store, vectors_table

if TYPE_CHECKING:
    from rag.config import Config
    from rag.index_files import StoredIndex

LOCK_KEY = 0x72616769  # pg_advisory_lock key of the index writer ("ragi")
INSERT_BATCH = 1000  # nodes per PGVectorStore.add call (one transaction each)
KEEP_GENERATIONS = 2  # at least the current one and the one before it (a replica may still be reading it)
KEEP_RECENT = "10 minutes"  # and every generation published this recently (replicas switch at their next question)
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 64  # pgvector's defaults; the HNSW index is by inner product, as FAISS
SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE SEQUENCE IF NOT EXISTS rag_generation_numbers;
CREATE TABLE IF NOT EXISTS rag_generations (
    generation bigint PRIMARY KEY,
    content_key text NOT NULL,
    manifest jsonb NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS rag_files (
    generation bigint NOT NULL REFERENCES rag_generations ON DELETE CASCADE,
    name text NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (generation, name)
);
CREATE TABLE IF NOT EXISTS rag_current (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    generation bigint NOT NULL REFERENCES rag_generations
);
"""


def content_key(manifest: dict[str, Any]) -> str:
    """What makes two builds the same index: their documents (source, sha256) and settings."""
    documents = sorted((d["source"], d["sha256"]) for d in manifest.get("documents", []))
    settings = {k: manifest.get(k) for k in ("format", "model", "chunking", "hnsw_above")}
    return hashlib.sha256(json.dumps([documents, settings], sort_keys=True).encode()).hexdigest()


def publish_index(config: Config, rebuild: bool = False, progress: Progress = lambda message: None) -> bool:
    """Build the index in `config.index_dir` (incrementally, as with FAISS) and publish it as the
    database's current generation, unless the current one already holds exactly these documents
    and settings. Under the advisory lock: a second writer waits, then finds it up to date.
    True when a generation was published."""
    from rag.embedding import load_embed_model
    from rag.store import open_local

    database = Session(database_url())  # the writer's advisory lock lives on its connection
    embed_model = load_embed_model(config.embedding, progress)
    with _writer_lock(database, progress) as epoch:
        database.query(SCHEMA)
        stored = open_local(config, embed_model, rebuild=rebuild, progress=progress)
        _check_only_configured(stored.manifest, config)
        key = content_key(stored.manifest)
        current = current_published(database)
        if current is not None and current[1] == key and not rebuild:
            progress(f"The database already holds this index (generation {current[0]}).")
            return False
        generation = _publish(database, stored, key, current[0] if current else None, epoch, config, progress)
        _drop_old_generations(database, generation)
        progress(f"Published generation {generation} ({len(stored.passages)} passages) to {shown(database.url)}.")
        return True


def _check_only_configured(manifest: dict[str, Any], config: Config) -> None:
    """ConfigError when the build cache also holds documents added with `rag add` (with the FAISS
    backend): replicas answer from the configured documents, so only those are published."""
    added = sorted(Path(e["source"]).name for e in manifest.get("documents", []) if e.get("origin") == "added")
    if added:
        raise ConfigError(
            f"{config.index_dir} also holds documents added with `rag add` ({', '.join(added)}); the postgres "
            "store publishes the configured documents only: list them in `documents`, or publish from "
            "another --index-dir"
        )


@contextmanager
def _writer_lock(database: Session, progress: Progress) -> Iterator[int]:
    """The index writer's advisory lock, held on this connection until the block ends; yields
    the connection's epoch (if it changes, the connection and the lock were lost)."""
    if not database.query("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))[0][0]:
        progress("Another `rag index` is publishing to this database; waiting for it...")
        database.query("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    epoch = database.epoch
    try:
        yield epoch
    finally:
        if database.epoch == epoch:
            database.query("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def _publish(
    database: Session,
    stored: StoredIndex,
    key: str,
    previous: int | None,
    epoch: int,
    config: Config,
    progress: Progress,
) -> int:
    """Vectors into a new PGVectorStore table, then, in one transaction, the generation's files
    and manifest and the swap of `rag_current` from `previous` (refused when the writer lock
    was lost with its connection, or when another writer swapped meanwhile). The new number."""
    from rag.index_files import INDEX_FILES, VECTORS

    generation = int(database.query("SELECT nextval('rag_generation_numbers')")[0][0])
    _add_vectors(database, stored, generation, config, progress)
    files = [path for name in INDEX_FILES if name != VECTORS for path in _files(stored.folder / name)]
    with database.transaction() as connection:
        if database.epoch != epoch:
            raise StoreUnavailableError(
                "the connection to the database dropped while publishing; run `rag index` again"
            )
        connection.execute(
            "INSERT INTO rag_generations (generation, content_key, manifest) VALUES (%s, %s, %s)",
            (generation, key, json.dumps(stored.manifest | {"publish_id": secrets.token_hex(8)})),
        )
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO rag_files (generation, name, data) VALUES (%s, %s, %s)",
                [(generation, path.relative_to(stored.folder).as_posix(), path.read_bytes()) for path in files],
            )
        swapped = connection.execute(
            "INSERT INTO rag_current (one, generation) VALUES (true, %s) ON CONFLICT (one) DO UPDATE"
            " SET generation = excluded.generation WHERE rag_current.generation IS NOT DISTINCT FROM %s RETURNING 1",
            (generation, previous),
        ).fetchall()
        if not swapped:
            raise StoreUnavailableError("another `rag index` published meanwhile; run `rag index` again")
    return generation


def _add_vectors(database: Session, stored: StoredIndex, generation: int, config: Config, progress: Progress) -> None:
    """Every passage with its vector, through llama-index's PGVectorStore, in batches; then the
    indexes: on node ids, and HNSW by inner product above `retrieval.hnsw_above` passages (built
    once the rows are in, which is much faster than inserting into it)."""
    count = len(stored.passages)
    store = vector_store(database.url, generation, stored.faiss.d, setup=True)
    nodes = stored.nodes
    matrix = stored.faiss.reconstruct_n(0, count)
    for start in range(0, count, INSERT_BATCH):
        batch = nodes[start : start + INSERT_BATCH]
        for node, vector in zip(batch, matrix[start : start + INSERT_BATCH], strict=True):
            node.embedding = vector.tolist()
        store.add(list(batch))
        progress(f"  vectors in PostgreSQL: {min(start + INSERT_BATCH, count)}/{count}")
    table = vectors_table(generation)
    database.query(f"CREATE INDEX ON {table} (node_id)")
    if count > config.retrieval.hnsw_above:
        progress(f"  building the HNSW index of {count} vectors...")
        settings = f"m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}"
        database.query(f"CREATE INDEX ON {table} USING hnsw (embedding vector_ip_ops) WITH ({settings})")


def _drop_old_generations(database: Session, current: int) -> None:
    """Generations beyond the newest `KEEP_GENERATIONS` that are older than `KEEP_RECENT` (a
    replica switches to the current one at its next question), and vector tables no generation
    names (left by a publish that died before its transaction)."""
    kept = {row[0] for row in database.query(
        "SELECT generation FROM rag_generations"
        " WHERE generation >= (SELECT min(generation) FROM (SELECT generation FROM rag_generations"
        " ORDER BY generation DESC LIMIT %s) newest) OR created > now() - %s::interval",
        (KEEP_GENERATIONS, KEEP_RECENT),
    )} | {current}  # fmt: skip
    database.query("DELETE FROM rag_generations WHERE NOT generation = ANY(%s)", (sorted(kept),))
    for (table,) in database.query("SELECT tablename FROM pg_tables WHERE tablename LIKE 'data\\_rag\\_gen\\_%%'"):
        if int(table.rsplit("_", 1)[1]) not in kept and int(table.rsplit("_", 1)[1]) <= current:
            database.query(f"DROP TABLE IF EXISTS {table}")


def _files(path: Path) -> list[Path]:
    """`path`, or the files inside it when it is a folder (the BM25 index)."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
