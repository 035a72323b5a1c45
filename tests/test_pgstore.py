"""The PostgreSQL store (`store.backend: postgres`) against a real PostgreSQL with pgvector,
started by `scripts/postgres.sh` (never mocked): the same answers as FAISS, one winner of two
writers, and a clear error while the database is away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.pg_harness import postgres, postgres_config, table_locked, wait_until_a_query_waits_for

pytestmark = pytest.mark.slow  # starts the bot, a server or PostgreSQL: not in the fast tier

PUBLISHED = "Published generation"


def rag(*args: str, database_url: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"DATABASE_URL": database_url, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "rag", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_index_ask_and_eval_on_postgres_give_the_faiss_metrics(tmp_path, article, database):
    config = postgres_config(tmp_path, article)
    built = rag("index", "--config", str(config), "--index-dir", str(tmp_path / "cache"), database_url=database)
    assert built.returncode == 0, built.stderr
    assert PUBLISHED in built.stderr and "11 passages" in built.stderr

    asked = rag(
        "ask", "--config", str(config), "--index-dir", str(tmp_path / "replica"), "--json",
        "who revoked Bensouda's visa?", database_url=database,
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert "Fatou Bensouda" in json.loads(asked.stdout)["answer"]
    assert [p.name for p in (tmp_path / "replica").iterdir()] == ["postgres"]  # a replica builds nothing,
    (copy,) = (tmp_path / "replica" / "postgres").glob("gen-1-*")  # it copies the published files
    assert (copy / "passages.npz").is_file()
    other = {"DATABASE_URL": database, "RAG_DOC": str(ROOT / "README.md")}  # not what was published
    refused = subprocess.run(
        [sys.executable, "-m", "rag", "ask", "--config", str(config), "--index-dir", str(tmp_path / "replica"), "x"],
        env=os.environ | other, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert refused.returncode != 0 and "holds dw-icc-sanctions.txt, not README.md" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    reports = {}
    for backend, extra in (("postgres", ["--config", str(config)]), ("faiss", ["--doc", str(article)])):
        report = tmp_path / f"{backend}.json"
        done = rag(
            "eval", *extra, "--index-dir", str(tmp_path / f"eval-{backend}"),
            "--dataset", "eval/dw-icc-sanctions.jsonl", "--report", str(report), database_url=database,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        metrics = json.loads(report.read_text(encoding="utf-8"))["metrics"]
        reports[backend] = {k: v for k, v in metrics.items() if "latency" not in k}
    assert reports["postgres"] == reports["faiss"]
    assert reports["faiss"]["answer_accuracy"] > 0.5


def test_two_writers_at_once_publish_one_generation(tmp_path, article, database):
    """Both writers are started while the test holds the writer lock, so they must overlap."""
    import psycopg

    from rag.pgpublish import LOCK_KEY, SCHEMA

    config = postgres_config(tmp_path, article)
    env = os.environ | {"DATABASE_URL": database, "HF_HUB_OFFLINE": "1"}
    with psycopg.connect(database, autocommit=True) as holder:
        holder.execute(SCHEMA)
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        writers = [
            subprocess.Popen(
                [sys.executable, "-m", "rag", "index", "--config", str(config), "--index-dir", str(tmp_path / f"w{i}")],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for i in range(2)
        ]
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        for _ in range(600):
            if holder.execute(waiting).fetchone() == (2,):
                break
            time.sleep(0.1)
        assert holder.execute(waiting).fetchone() == (2,)  # both wait for the lock
        holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    outputs = [writer.communicate(timeout=600) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], outputs
    assert all("waiting for it" in err for _, err in outputs)
    assert sorted(PUBLISHED in err for _, err in outputs) == [False, True]
    assert any("already holds this index" in err for _, err in outputs)
    with psycopg.connect(database) as db:
        assert db.execute("SELECT count(*) FROM rag_generations").fetchone() == (1,)
        (generation,) = db.execute("SELECT generation FROM rag_current").fetchone()
        assert db.execute(f"SELECT count(*) FROM data_rag_gen_{generation}").fetchone() == (11,)
    replica = str(tmp_path / "r")
    asked = rag("ask", "--config", str(config), "--index-dir", replica, "Who is Bensouda?", database_url=database)
    assert asked.returncode == 0 and "Bensouda" in asked.stdout, asked.stderr


def test_a_new_generation_replaces_the_old_one_and_an_open_engine_keeps_answering(
    tmp_path, article, database, monkeypatch
):
    """Publishing twice keeps the generations a replica may still read (recent ones); an engine
    opened afterwards answers from the newest."""
    import shutil

    import psycopg

    from rag.config import load_config
    from rag.engine import Engine

    document = tmp_path / "article.txt"
    shutil.copy(article, document)
    config_path = postgres_config(tmp_path, document)
    monkeypatch.setenv("DATABASE_URL", database)
    assert (
        rag("index", "--config", str(config_path), "--index-dir", str(tmp_path / "w"), database_url=database).returncode
        == 0
    )
    old = Engine.open(load_config(config_path, index_dir=tmp_path / "old"))
    for addition in ("The court's spokesman is Fadi El Abdallah.", "The court has 18 judges."):
        with document.open("a", encoding="utf-8") as text:
            text.write(f"\n\n{addition}\n")
        built = rag("index", "--config", str(config_path), "--index-dir", str(tmp_path / "w"), database_url=database)
        assert built.returncode == 0 and PUBLISHED in built.stderr, built.stderr
    with psycopg.connect(database) as db:
        assert db.execute("SELECT generation FROM rag_current").fetchone() == (3,)
        assert db.execute("SELECT count(*) FROM rag_generations").fetchone() == (3,)  # all recent: kept
    assert old.stored.manifest["published_generation"] == 1
    assert "Bensouda" in old.ask("Who revoked the visa?").text  # generation 1 is still there
    new = Engine.open(load_config(config_path, index_dir=tmp_path / "new"))
    assert new.stored.manifest["published_generation"] == 3
    assert "18 judges" in new.ask("How many judges does the court have?").text


def test_the_database_stopping_mid_question_gives_a_clear_error_and_the_next_one_an_answer(
    tmp_path, article, database, postgres_server, monkeypatch
):
    from rag.config import load_config
    from rag.engine import Engine
    from rag.errors import StoreUnavailableError
    from rag.pgstore import vectors_table

    config_path = postgres_config(tmp_path, article)
    built = rag("index", "--config", str(config_path), "--index-dir", str(tmp_path / "w"), database_url=database)
    assert built.returncode == 0, built.stderr
    monkeypatch.setenv("DATABASE_URL", database)
    engine = Engine.open(load_config(config_path, index_dir=tmp_path / "replica"))
    assert "Bensouda" in engine.ask("Who revoked the visa?").text

    folder, port, _ = postgres_server
    table = vectors_table(engine.stored.manifest["published_generation"])
    with ThreadPoolExecutor(max_workers=1) as pool, table_locked(database, table):
        asked = pool.submit(engine.ask, "What did Pompeo call the court?")
        wait_until_a_query_waits_for(database, table)  # the question is inside its vector search
        try:
            postgres("stop", folder)
            with pytest.raises(StoreUnavailableError, match="unavailable.*try again"):
                asked.result(timeout=120)
            with pytest.raises(StoreUnavailableError, match="unavailable.*try again"):  # and one asked meanwhile
                engine.ask("What did Pompeo call the court?")
        finally:
            postgres("start", folder, port)
    assert "kangaroo court" in engine.ask("What did Pompeo call the court?").text


def test_above_hnsw_above_the_vectors_are_searched_through_an_hnsw_index(tmp_path, article, database):
    import psycopg

    config = postgres_config(tmp_path, article)
    config.write_text(
        config.read_text(encoding="utf-8").replace("hnsw_above: 20000", "hnsw_above: 5"), encoding="utf-8"
    )
    built = rag("index", "--config", str(config), "--index-dir", str(tmp_path / "w"), database_url=database)
    assert built.returncode == 0, built.stderr
    assert "building the HNSW index of 11 vectors" in built.stderr
    with psycopg.connect(database) as db:
        (definition,) = db.execute("SELECT indexdef FROM pg_indexes WHERE indexdef LIKE '%%hnsw%%'").fetchone()
        assert "vector_ip_ops" in definition
        db.execute("SET enable_seqscan = off")
        query = (
            "SELECT node_id FROM data_rag_gen_1 ORDER BY embedding <#> (SELECT embedding FROM data_rag_gen_1 LIMIT 1)"
        )
        plan = "\n".join(row[0] for row in db.execute(f"EXPLAIN {query} LIMIT 3").fetchall())
    assert "embedding_idx" in plan, plan  # the HNSW index answers the nearest-neighbour query
    asked = rag(
        "ask", "--config", str(config), "--index-dir", str(tmp_path / "r"), "Who is Bensouda?", database_url=database
    )
    assert asked.returncode == 0 and "Bensouda" in asked.stdout, asked.stderr


def test_a_user_without_rights_gets_one_line_saying_so(tmp_path, article, database):
    import psycopg

    config = postgres_config(tmp_path, article)
    built = rag("index", "--config", str(config), "--index-dir", str(tmp_path / "w"), database_url=database)
    assert built.returncode == 0, built.stderr
    with psycopg.connect(database, autocommit=True) as connection:
        connection.execute("DROP ROLE IF EXISTS reader_without_grants")
        connection.execute("CREATE ROLE reader_without_grants LOGIN PASSWORD 'Se-cret_9'")
    url = database.replace("postgresql://postgres@", "postgresql://reader_without_grants:Se-cret_9@")
    asked = rag("ask", "--config", str(config), "--index-dir", str(tmp_path / "r"), "who?", database_url=url)
    assert asked.returncode == 1 and len(asked.stderr.strip().splitlines()) == 1, asked.stderr
    assert "refused: permission denied for table rag_current" in asked.stderr and "Se-cret_9" not in asked.stderr


def test_documents_added_with_rag_add_are_not_published(tmp_path, article, database):
    notes = tmp_path / "notes.txt"
    notes.write_text("The orchard lost 40 apple trees in the storm of 2019.\n", encoding="utf-8")
    cache = str(tmp_path / "cache")
    added = rag("add", "--doc", str(article), "--index-dir", cache, str(notes), database_url=database)  # FAISS
    assert added.returncode == 0, added.stderr
    config = postgres_config(tmp_path, article)
    built = rag("index", "--config", str(config), "--index-dir", cache, database_url=database)
    assert built.returncode == 1, built.stderr
    assert "also holds documents added with `rag add` (notes.txt)" in built.stderr.strip().splitlines()[-1]
    assert PUBLISHED not in built.stderr
