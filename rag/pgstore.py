"""The PostgreSQL store (`store.backend: postgres`): one index in a database, read by every replica.

`python -m rag index` builds the index as with FAISS (the files in `index_dir` serve as its
build cache, so unchanged documents are not embedded again) and publishes it as a new
generation, under a PostgreSQL advisory lock, so that two at once give one winner:

    data_rag_gen_<N>     the passages (text, metadata, node id) and their vectors: the table of
                         llama-index's `PGVectorStore` (pgvector; HNSW above retrieval.hnsw_above)
    rag_generations      each generation's manifest, and a key of its documents and settings
    rag_files            each generation's passage arrays, docstore, BM25 index and documents (bytea)
    rag_current          the generation replicas open; swapped in the transaction that adds it

A replica (`rag ask`, `rag chat`, `bot.py`) opens the current generation without reading any
document: it copies the generation's files into ``<index_dir>/postgres/gen-<N>`` once (so BM25
and the arrays load memory-mapped, as from a local index) and searches the vectors in
PostgreSQL (`PgVectors`). Lexical retrieval stays BM25, built with the generation and published
with it, so both backends rank alike. `DATABASE_URL` comes from the environment only; messages
show it without its password.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from rag.errors import ConfigError, IndexCorruptError, StoreUnavailableError

if TYPE_CHECKING:
    import psycopg
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from rag.config import Config
    from rag.index_files import StoredIndex
    from rag.passages import Passages

LOCK_KEY = 0x72616769  # pg_advisory_lock key of the index writer ("ragi")
INSERT_BATCH = 1000  # nodes per PGVectorStore.add call (one transaction each)
KEEP_GENERATIONS = 2  # at least the current one and the one before it (a replica may still be reading it)
KEEP_RECENT = "10 minutes"  # and every generation published this recently (replicas switch at their next question)
EF_SEARCH = 64  # hnsw.ef_search: candidates HNSW looks at per query (pgvector's default is 40)
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
Progress = Callable[[str], None]


def database_url() -> str:
    """`DATABASE_URL` from the environment; ConfigError when it is missing or not a postgresql:// URL."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        raise ConfigError(
            "store.backend: postgres needs DATABASE_URL in the environment "
            "(for a local server: export DATABASE_URL=$(bash scripts/postgres.sh start))"
        )
    if url.split("://", 1)[0] not in ("postgres", "postgresql"):
        raise ConfigError("DATABASE_URL must be a postgresql://USER:PASSWORD@HOST:PORT/DATABASE URL")
    return url


def shown(url: str) -> str:
    """The database `url` names, without its password (nor any other secret), for messages."""
    import psycopg

    try:
        parts = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the configured database"
    user, host, port, name = (parts.get(key, "") for key in ("user", "host", "port", "dbname"))
    return f"postgresql://{user}@{host}:{port or 5432}/{name}"


def new_database(server_url: str, name: str) -> str:
    """A new, empty database `name` on the server of `server_url` (dropped first when it exists):
    its connection string. For tests and benchmarks."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}"')
        db.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


class Database:
    """One connection to the database, opened when first needed. A connection the server
    dropped while it sat idle (a restart) is replaced once, at its next use; when the server
    cannot be reached, a call raises `StoreUnavailableError`, and the next one tries again.
    `epoch` counts the connections opened: session-level advisory locks die with a connection,
    so a holder compares epochs to know its locks are still held."""

    def __init__(self, url: str, ef_search: int = EF_SEARCH):
        self.url, self.ef_search = url, ef_search
        self.epoch = 0
        self._connection: psycopg.Connection | None = None
        self._lock = threading.Lock()  # answering threads share one engine

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with self._lock:
            stale = self._connection is not None
            while True:
                try:
                    cursor = self._connect().execute(sql, params)
                    return cursor.fetchall() if cursor.description else []
                except psycopg.OperationalError as exc:
                    broken = self._connection is None or self._connection.broken
                    if broken:
                        self.close()
                    if not (broken and stale):  # a live connection's error (a timeout), or no server at all
                        raise self.unavailable(exc) from None
                    stale = False  # the old connection was dead: once more, on a new one

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """The connection inside one transaction (committed at the end, rolled back on error)."""
        import psycopg

        self.query("SELECT 1")  # replaces a connection the server dropped
        with self._lock:
            try:
                connection = self._connect()
                with connection.transaction():
                    yield connection
            except psycopg.OperationalError as exc:
                if self._connection is not None and self._connection.broken:
                    self.close()
                raise self.unavailable(exc) from None

    def unavailable(self, exc: Exception) -> StoreUnavailableError:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return StoreUnavailableError(f"the database at {shown(self.url)} is unavailable ({reason}); try again shortly")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> psycopg.Connection:
        import psycopg
        from pgvector.psycopg import register_vector

        if self._connection is None or self._connection.closed:
            # keepalives: a replica whose host vanished loses its session (and its locks) in
            # about 25 s instead of the kernel's two hours
            connection = psycopg.connect(
                self.url, autocommit=True, connect_timeout=5, keepalives=1, keepalives_idle=10,
                keepalives_interval=5, keepalives_count=3,
            )  # fmt: skip
            connection.execute(f"SET hnsw.ef_search = {int(self.ef_search)}")  # HNSW returns at most this many
            try:
                register_vector(connection)
            except psycopg.ProgrammingError:  # no vector extension yet: nothing was published
                pass
            self._connection = connection
            self.epoch += 1
        return self._connection


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

    database = Database(database_url())
    embed_model = load_embed_model(config.embedding, progress)
    with _writer_lock(database, progress) as epoch:
        database.query(SCHEMA)
        stored = open_local(config, embed_model, rebuild=rebuild, progress=progress)
        key = content_key(stored.manifest)
        current = _current(database)
        if current is not None and current[1] == key and not rebuild:
            progress(f"The database already holds this index (generation {current[0]}).")
            return False
        generation = _publish(database, stored, key, current[0] if current else None, epoch, config, progress)
        _drop_old_generations(database, generation)
        progress(f"Published generation {generation} ({len(stored.passages)} passages) to {shown(database.url)}.")
        return True


def current_generation(database: Database) -> int | None:
    """The generation replicas should answer from; None when nothing was published."""
    current = _current(database)
    return None if current is None else current[0]


def _current(database: Database) -> tuple[int, str, dict[str, Any]] | None:
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


@contextmanager
def _writer_lock(database: Database, progress: Progress) -> Iterator[int]:
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
    database: Database,
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
            (generation, key, json.dumps(stored.manifest)),
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


def _add_vectors(database: Database, stored: StoredIndex, generation: int, config: Config, progress: Progress) -> None:
    """Every passage with its vector, through llama-index's PGVectorStore, in batches; then the
    indexes: on node ids, and HNSW by inner product above `retrieval.hnsw_above` passages (built
    once the rows are in, which is much faster than inserting into it)."""
    count = len(stored.passages)
    vector_store = _vector_store(database.url, generation, stored.faiss.d, setup=True)
    nodes = stored.nodes
    matrix = stored.faiss.reconstruct_n(0, count)
    for start in range(0, count, INSERT_BATCH):
        batch = nodes[start : start + INSERT_BATCH]
        for node, vector in zip(batch, matrix[start : start + INSERT_BATCH], strict=True):
            node.embedding = vector.tolist()
        vector_store.add(list(batch))
        progress(f"  vectors in PostgreSQL: {min(start + INSERT_BATCH, count)}/{count}")
    table = vectors_table(generation)
    database.query(f"CREATE INDEX ON {table} (node_id)")
    if count > config.retrieval.hnsw_above:
        progress(f"  building the HNSW index of {count} vectors...")
        settings = f"m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}"
        database.query(f"CREATE INDEX ON {table} USING hnsw (embedding vector_ip_ops) WITH ({settings})")


def _drop_old_generations(database: Database, current: int) -> None:
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


def open_published(
    config: Config, embed_model: BaseEmbedding, progress: Progress = lambda message: None
) -> StoredIndex:
    """The database's current generation, its files copied into the local cache once. Its
    manifest records which generation it is (``published_generation``)."""
    from rag.index_files import load_generation

    database = Database(database_url(), ef_search=max(EF_SEARCH, config.retrieval.candidates))
    current = _current(database)
    if current is None:
        raise IndexCorruptError(
            f"the database at {shown(database.url)} holds no index yet; run `python -m rag index` "
            "with store.backend: postgres to publish one"
        )
    generation, _, manifest = current
    folder = _cached_files(database, generation, config.index_dir / "postgres", progress)
    dimension = int(manifest["dimension"])
    return load_generation(
        folder,
        manifest | {"published_generation": generation},
        _vector_store(database.url, generation, dimension, setup=False),
        lambda passages: PgVectors(database, vectors_table(generation), passages, dimension),
        embed_model,
    )


def _vector_store(url: str, generation: int, dimension: int, setup: bool) -> Any:
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


def _cached_files(database: Database, generation: int, cache: Path, progress: Progress) -> Path:
    """The generation's files in `cache/gen-<N>`, fetched from the database when not there yet
    (into a temporary folder renamed into place, so a half-written copy is never used)."""
    from rag.index_files import ARRAYS, BM25, DOCUMENT_ARRAYS, PASSAGES_DB

    folder = cache / f"gen-{generation}"
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
        if old != folder and old.name.split("-")[-1].isdigit() and int(old.name.split("-")[-1]) < generation - 1:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def _files(path: Path) -> list[Path]:
    """`path`, or the files inside it when it is a folder (the BM25 index)."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def _sqlalchemy_url(url: str) -> str:
    """The URL for SQLAlchemy's psycopg (3) dialect, which PGVectorStore connects with."""
    scheme, rest = url.split("://", 1)
    if scheme not in ("postgres", "postgresql", "postgresql+psycopg"):
        raise ConfigError(f"DATABASE_URL must start with postgresql:// (got {scheme}://)")
    return f"postgresql+psycopg://{rest}"
