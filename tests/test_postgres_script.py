"""`scripts/postgres.sh`: a real PostgreSQL with pgvector on loopback, started, stopped and
started again by the project's script (the server the postgres backend's tests will use)."""

from __future__ import annotations

import pytest

from tests.pg_harness import postgres

pytestmark = pytest.mark.slow  # starts the bot, a server or PostgreSQL: not in the fast tier


@pytest.fixture
def server(tmp_path):
    folder = tmp_path / "postgres"
    url = postgres("start", folder)
    try:
        yield folder, url
    finally:
        postgres("stop", folder)


def test_start_gives_a_url_to_a_database_with_pgvector(server):
    import psycopg

    folder, url = server
    assert url.startswith("postgresql://postgres@127.0.0.1:") and url.endswith("/rag")
    assert postgres("url", folder) == url
    assert postgres("start", folder) == url  # idempotent: a second start reuses the running server
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE items (id int PRIMARY KEY, embedding vector(3))")
        db.execute("INSERT INTO items VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0.9,0.1,0]')")
        db.execute("CREATE INDEX ON items USING hnsw (embedding vector_ip_ops)")
        rows = db.execute("SELECT id FROM items ORDER BY embedding <#> '[1,0,0]' LIMIT 2").fetchall()
    assert [row[0] for row in rows] == [1, 3]


def test_a_stopped_server_refuses_connections_and_keeps_its_data_when_started_again(server):
    import psycopg

    folder, url = server
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE notes (body text)")
        db.execute("INSERT INTO notes VALUES ('kept')")
    postgres("stop", folder)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=3)
    url = postgres("start", folder)
    with psycopg.connect(url) as db:
        assert db.execute("SELECT body FROM notes").fetchall() == [("kept",)]
