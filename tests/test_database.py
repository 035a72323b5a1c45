"""The connections to PostgreSQL (`rag.database`) on a real server from `scripts/postgres.sh`:
the pool lets one thread's query pass another thread's open transaction; a `Session` keeps its
advisory locks on its one connection."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rag.database import Database, Session

pytestmark = pytest.mark.slow  # starts PostgreSQL: not in the fast tier


def test_a_query_is_answered_while_another_thread_holds_a_transaction_open(database):
    pooled = Database(database, size=2)
    pooled.query("CREATE TABLE ledger (n int)")
    inside, finish = threading.Event(), threading.Event()

    def hold_a_transaction() -> None:
        with pooled.transaction() as connection:
            connection.execute("INSERT INTO ledger VALUES (1)")
            inside.set()
            assert finish.wait(30)

    with ThreadPoolExecutor(max_workers=1) as worker:
        held = worker.submit(hold_a_transaction)
        assert inside.wait(30)
        try:
            assert pooled.query("SELECT count(*) FROM ledger") == [(0,)]  # not yet committed, and not queued
        finally:
            finish.set()
        held.result(timeout=30)
    assert pooled.query("SELECT count(*) FROM ledger") == [(1,)]
    pooled.close()


def test_a_session_holds_its_advisory_lock_across_calls_and_others_see_it(database):
    holder, other = Session(database), Session(database)
    assert holder.query("SELECT pg_try_advisory_lock(42)") == [(True,)]
    assert holder.query("SELECT 1") == [(1,)]  # another call, the same connection: the lock stays
    assert other.query("SELECT pg_try_advisory_lock(42)") == [(False,)]
    assert holder.query("SELECT pg_advisory_unlock(42)") == [(True,)]
    assert other.query("SELECT pg_try_advisory_lock(42)") == [(True,)]
    assert holder.epoch == other.epoch == 1
    holder.close()
    other.close()
