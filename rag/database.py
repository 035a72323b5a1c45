"""The connections to PostgreSQL that the store and the bot's shared state use: `DATABASE_URL`
from the environment, shown in messages without its password; a small pool for queries and one
held connection (`Session`) for advisory locks; a dropped connection replaced at its next use,
and a server that cannot be reached raised as `StoreUnavailableError`."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from rag.config import environment
from rag.errors import ConfigError, StoreUnavailableError

if TYPE_CHECKING:
    import psycopg

EF_SEARCH = 64  # hnsw.ef_search: candidates HNSW looks at per query (pgvector's default is 40)


def database_url() -> str:
    """`DATABASE_URL` from the environment; ConfigError when it is missing or not a postgresql:// URL."""
    url = environment("DATABASE_URL")
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


POOL_SIZE = 4  # connections of a `Database`: the bot answers in a few worker threads at once


class Session:
    """One connection, opened when first needed and held: session-level advisory locks live and
    die with it. A connection the server dropped while it sat idle (a restart) is replaced once,
    at its next use; when the server cannot be reached, a call raises `StoreUnavailableError`, and
    the next one tries again. `epoch` counts the connections opened, so a holder compares epochs
    to know its locks are still held."""

    def __init__(self, url: str, ef_search: int = EF_SEARCH):
        self.url, self.ef_search = url, ef_search
        self.epoch = 0
        self._session: psycopg.Connection | None = None
        self._lock = threading.Lock()  # threads share the session

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with self._lock:
            stale = self._session is not None
            while True:
                try:
                    cursor = self._connect().execute(sql, params)
                    return cursor.fetchall() if cursor.description else []
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise refused(self.url, exc) from None
                except psycopg.OperationalError as exc:
                    broken = self._session is None or self._session.broken
                    if broken:
                        self._drop()
                    if not (broken and stale):  # a live connection's error (a timeout), or no server at all
                        raise unavailable(self.url, exc) from None
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
            except psycopg.errors.InsufficientPrivilege as exc:
                raise refused(self.url, exc) from None
            except psycopg.OperationalError as exc:
                if self._session is not None and self._session.broken:
                    self._drop()
                raise unavailable(self.url, exc) from None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _connect(self) -> psycopg.Connection:
        import psycopg

        if self._session is None or self._session.closed:
            connection = psycopg.connect(self.url, **CONNECTION_OPTIONS)
            configure(connection, self.ef_search)
            self._session = connection
            self.epoch += 1
        return self._session


class Database:
    """A few `Session`s, each lent to one call at a time, so that one thread's vector search does
    not queue behind another's write. The most recently returned is lent first: under a light
    load only one connection is ever opened. (psycopg_pool was tried: it reconnects in the
    background with a growing back-off, so the first question after a database restart waited
    it out and failed; a `Session` reconnects at the call.)"""

    def __init__(self, url: str, ef_search: int = EF_SEARCH, size: int = POOL_SIZE):
        self.url, self.ef_search = url, ef_search
        self._sessions = [Session(url, ef_search) for _ in range(size)]
        self._idle: queue.LifoQueue[Session] = queue.LifoQueue()
        for session in reversed(self._sessions):
            self._idle.put(session)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lent() as session:
            return session.query(sql, params)

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A connection inside one transaction (committed at the end, rolled back on error)."""
        with self._lent() as session, session.transaction() as connection:
            yield connection

    def close(self) -> None:
        for session in self._sessions:
            session.close()

    @contextmanager
    def _lent(self) -> Iterator[Session]:
        session = self._idle.get()  # waits while every session is busy
        try:
            yield session
        finally:
            self._idle.put(session)


# keepalives: a replica whose host vanished loses its session (and its locks) in about 25 s
# instead of the kernel's two hours
CONNECTION_OPTIONS: dict[str, Any] = {
    "autocommit": True, "connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
    "keepalives_count": 3,
}  # fmt: skip


def configure(connection: psycopg.Connection, ef_search: int) -> None:
    """A new connection's settings: HNSW's candidate count, and pgvector's types when the
    extension exists."""
    import psycopg
    from pgvector.psycopg import register_vector

    connection.execute(f"SET hnsw.ef_search = {int(ef_search)}")  # HNSW returns at most this many
    try:
        register_vector(connection)
    except psycopg.ProgrammingError:  # no vector extension yet: nothing was published
        pass


def unavailable(url: str, exc: Exception) -> StoreUnavailableError:
    """The error of a server that cannot be reached or dropped the connection (temporary,
    most often; a wrong DATABASE_URL looks the same to the client)."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreUnavailableError(
        f"the database at {shown(url)} is unavailable ({reason}); check DATABASE_URL and that the"
        " server runs (a local one: bash scripts/postgres.sh start), then try again shortly"
    )


def refused(url: str, exc: psycopg.errors.InsufficientPrivilege) -> ConfigError:
    """The error of a user without the rights a statement needs: a restart will not fix it."""
    reason = exc.diag.message_primary or str(exc).strip().splitlines()[0]
    if "extension" in reason:
        remedy = "a superuser must run CREATE EXTENSION vector in this database once"
    else:
        remedy = "the user in DATABASE_URL needs to own the database or be granted its tables"
    return ConfigError(f"the database at {shown(url)} refused: {reason}; {remedy} (see deploy/README.md)")
