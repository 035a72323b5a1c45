"""A llama-index key-value store in one SQLite file, so the docstore is read on demand.

llama-index's `SimpleKVStore` keeps every record in memory and persists them as one JSON file:
for 10,000 sentences that file was 10.8 MB (seven times the text) and took a second to parse at
every start. `SqliteKVStore` implements llama-index's `BaseKVStore`, so llama-index's own
`KVDocumentStore` and `KVIndexStore` run on it unchanged and the `VectorStoreIndex` built on them
is a real one; a record is read only when a passage is asked for.

Records are JSON compressed with zlib against a preset dictionary (a passage record with empty
fields, stored in the file itself): llama-index's passage records repeat the same keys and
metadata names, and the dictionary brings a record from about 850 bytes to about 165.

Reads are safe from several threads (one connection behind a lock; the engine answers chats in
parallel threads). Files are written only while a build fills a new generation folder, so
without a journal: an interrupted build is thrown away whole. A store opened on a finished file
never changes it: llama-index writes the index struct back when it loads an index, and such
writes stay in memory (an overlay read before the file), so a persisted generation is immutable.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import zlib
from pathlib import Path

from llama_index.core.storage.kvstore.types import DEFAULT_BATCH_SIZE, DEFAULT_COLLECTION, BaseKVStore

from rag.errors import IndexCorruptError

SCHEMA = (
    "CREATE TABLE kv (collection TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
    " PRIMARY KEY (collection, key)) WITHOUT ROWID",
    "CREATE TABLE codec (zdict BLOB NOT NULL)",
)


def preset_dictionary() -> bytes:
    """The JSON of a passage record with every field empty: what all records share."""
    from llama_index.core.schema import TextNode
    from llama_index.core.storage.docstore.utils import doc_to_json

    keys = ["source", "paragraph", "start", "end", "kind", "section", "page", "doc_sha256"]
    node = TextNode(
        id_="", text="", metadata=dict.fromkeys(keys, ""), excluded_embed_metadata_keys=keys,
        excluded_llm_metadata_keys=keys, start_char_idx=0, end_char_idx=0,
    )  # fmt: skip
    return _dumps(doc_to_json(node))


def _dumps(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class SqliteKVStore(BaseKVStore):
    """llama-index key-value store in an SQLite file: collection -> key -> JSON dict."""

    def __init__(self, path: Path, create: bool = False, remedy: str = ""):
        self.path = path
        self.remedy = remedy  # appended to IndexCorruptError messages
        self._lock = threading.Lock()
        self._overlay: dict[tuple[str, str], dict | None] | None = None  # writes to a finished file
        if create:
            self._connection = sqlite3.connect(path, check_same_thread=False)
            self._connection.execute("PRAGMA journal_mode=OFF")
            self._connection.execute("PRAGMA synchronous=OFF")
            for statement in SCHEMA:
                self._connection.execute(statement)
            self._zdict = preset_dictionary()
            self._connection.execute("INSERT INTO codec VALUES (?)", (self._zdict,))
            self._connection.commit()
            return
        if not path.exists():
            raise self._corrupt("is missing")
        try:
            self._connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            self._check_length()
            row = self._connection.execute("SELECT zdict FROM codec").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(f"cannot be read ({type(exc).__name__})") from None
        if row is None:
            raise self._corrupt("has no codec record")
        self._zdict = bytes(row[0])
        self._overlay = {}

    def _check_length(self) -> None:
        """A truncated file is found at once, not when a lost page is first read."""
        pages = self._connection.execute("PRAGMA page_count").fetchone()[0]
        size = self._connection.execute("PRAGMA page_size").fetchone()[0]
        if pages * size != self.path.stat().st_size:
            raise self._corrupt("is truncated")

    def _corrupt(self, problem: str) -> IndexCorruptError:
        return IndexCorruptError(f"index file {self.path} {problem}{self.remedy}")

    def close(self) -> None:
        """Commit and close (a build's last step before its folder is swapped in)."""
        with self._lock:
            self._connection.commit()
            self._connection.close()

    def _encode(self, value: dict) -> bytes:
        compressor = zlib.compressobj(6, zdict=self._zdict)
        return compressor.compress(_dumps(value)) + compressor.flush()

    def _decode(self, blob: bytes) -> dict:
        try:
            return json.loads(zlib.decompressobj(zdict=self._zdict).decompress(blob))
        except (zlib.error, ValueError) as exc:  # ValueError: JSONDecodeError, UnicodeDecodeError
            raise self._corrupt(f"holds a record that cannot be read ({type(exc).__name__})") from None

    def _query(self, sql: str, parameters: tuple) -> list[tuple]:
        with self._lock:
            try:
                return self._connection.execute(sql, parameters).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._corrupt(f"cannot be read ({type(exc).__name__})") from None

    def put(self, key: str, val: dict, collection: str = DEFAULT_COLLECTION) -> None:
        self.put_all([(key, val)], collection)

    def put_all(
        self,
        kv_pairs: list[tuple[str, dict]],
        collection: str = DEFAULT_COLLECTION,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        """Write all pairs in one transaction (`batch_size` is moot: SQLite takes them at once)."""
        if self._overlay is not None:
            with self._lock:
                self._overlay.update(((collection, key), dict(value)) for key, value in kv_pairs)
            return
        rows = [(collection, key, self._encode(value)) for key, value in kv_pairs]
        with self._lock:  # committed by `close`: only a build writes, and it reads its own writes
            self._connection.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", rows)

    def get(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        if self._overlay and (collection, key) in self._overlay:
            value = self._overlay[(collection, key)]
            return None if value is None else dict(value)
        rows = self._query("SELECT value FROM kv WHERE collection = ? AND key = ?", (collection, key))
        return self._decode(rows[0][0]) if rows else None

    def get_many(self, keys: list[str], collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        """The records of `keys` that `collection` holds, read in one query (absent keys are left out)."""
        values: dict[str, dict] = {}
        wanted = set(keys)
        for start in range(0, len(keys), 500):  # SQLite allows at most 999 parameters per statement
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, value FROM kv WHERE collection = ? AND key IN ({marks})"
            values.update((key, self._decode(value)) for key, value in self._query(sql, (collection, *chunk)))
        for (name, key), value in self._overlay_items():
            if name == collection and key in wanted:
                if value is None:
                    values.pop(key, None)
                else:
                    values[key] = dict(value)
        return values

    def _overlay_items(self) -> list[tuple[tuple[str, str], dict | None]]:
        """A snapshot of the in-memory writes, taken under the lock (another thread may add one)."""
        with self._lock:
            return list((self._overlay or {}).items())

    def get_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        rows = self._query("SELECT key, value FROM kv WHERE collection = ?", (collection,))
        values = {key: self._decode(value) for key, value in rows}
        for (name, key), value in self._overlay_items():
            if name == collection and value is None:
                values.pop(key, None)
            elif name == collection and value is not None:
                values[key] = dict(value)
        return values

    def count(self, collection: str = DEFAULT_COLLECTION) -> int:
        """How many records `collection` holds in the file."""
        return int(self._query("SELECT count(*) FROM kv WHERE collection = ?", (collection,))[0][0])

    def delete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        if self._overlay is not None:
            existed = self.get(key, collection) is not None
            with self._lock:
                self._overlay[(collection, key)] = None
            return existed
        with self._lock:
            cursor = self._connection.execute("DELETE FROM kv WHERE collection = ? AND key = ?", (collection, key))
        return cursor.rowcount > 0

    async def aput(self, key: str, val: dict, collection: str = DEFAULT_COLLECTION) -> None:
        self.put(key, val, collection)

    async def aput_all(
        self,
        kv_pairs: list[tuple[str, dict]],
        collection: str = DEFAULT_COLLECTION,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.put_all(kv_pairs, collection, batch_size)

    async def aget(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        return self.get(key, collection)

    async def aget_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        return self.get_all(collection)

    async def adelete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        return self.delete(key, collection)
