"""A real PostgreSQL with pgvector for tests, run by the project's `scripts/postgres.sh`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "postgres.sh"


def postgres(command: str, folder: Path, port: int = 0) -> str:
    """Run the script with its state in `folder`, on `port` (0: a free one); its standard output."""
    env = os.environ | {"POSTGRES_DIR": str(folder), "POSTGRES_PORT": str(port), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def postgres_config(folder: Path, document: Path) -> Path:
    """The project's config.yaml with the postgres backend, on `document`."""
    text = (ROOT / "config.yaml").read_text(encoding="utf-8")
    text = text.replace("backend: faiss", "backend: postgres").replace("data/dw-icc-sanctions.txt", str(document))
    path = folder / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def publish(config: Path, cache: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    """`python -m rag index` with the postgres backend."""
    env = os.environ | {"DATABASE_URL": database_url, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "rag", "index", "--config", str(config), "--index-dir", str(cache)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@contextmanager
def table_locked(database_url: str, table: str) -> Iterator[None]:
    """`table` locked by another session, so that a question reading it waits inside its query
    (until the block ends, or the server stops); the block starts once the lock is held."""
    import psycopg

    connection = psycopg.connect(database_url)
    try:
        connection.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        connection.close()  # a stopped server has closed it already: then a no-op


def wait_until_a_query_waits_for(database_url: str, table: str, timeout: float = 120) -> None:
    """Until some session waits for the lock on `table` (the question is inside its query)."""
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as connection:
        while time.monotonic() < deadline:
            waiting = "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted"
            if connection.execute(waiting, (table,)).fetchone() != (0,):
                return
            time.sleep(0.05)
    raise AssertionError(f"no query waited for {table}")
