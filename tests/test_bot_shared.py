"""The bot's shared chat state (`rag.bot.shared`) on a real PostgreSQL from `scripts/postgres.sh`:
two `Session` objects play two replicas, each with its own connection."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rag.answer import Answer, Citation
from rag.bot.shared import (
    SharedArchive,
    SharedConversations,
    SharedRateLimiter,
    SharedUpdates,
    create_tables,
    forget_old_rows,
)
from rag.chat import ChatSession
from rag.database import Session

pytestmark = pytest.mark.slow  # starts the bot, a server or PostgreSQL: not in the fast tier


@pytest.fixture
def replicas(database):
    """Two connections to one database with the bot's tables, as two replicas have."""
    first, second = Session(database), Session(database)
    create_tables(first)
    yield first, second
    first.close()
    second.close()


def an_answer(question: str = "who revoked the visa?") -> Answer:
    citation = Citation(1, "The administration revoked the visa.", 0, 36, 1, 0.9, "doc.txt")
    return Answer(question, "The administration revoked the visa. [1]", False, [citation], parts=[(citation.text, 1)])


def test_a_conversation_saved_by_one_replica_is_read_by_the_other_until_it_idles(replicas):
    first, second = replicas
    session = ChatSession(history_turns=3)
    session.add("who revoked the visa?", an_answer())
    SharedConversations(first, ChatSession, idle_seconds=600).save(7, session)
    assert SharedConversations(second, ChatSession, idle_seconds=600).session(7) == session
    assert SharedConversations(second, ChatSession, idle_seconds=0).session(7) == ChatSession()  # idle: afresh
    SharedConversations(second, ChatSession, idle_seconds=600).reset(7)
    assert SharedConversations(first, ChatSession, idle_seconds=600).session(7) == ChatSession()


def test_an_archived_answer_opens_on_any_replica_but_only_in_its_own_chat(replicas):
    first, second = replicas
    key = SharedArchive(first).add(7, an_answer())
    assert SharedArchive(second).get(7, key) == an_answer()
    assert SharedArchive(second).get(8, key) is None
    assert SharedArchive(second).get(7, "no-such-key") is None


def test_the_rate_limit_counts_a_users_questions_on_all_replicas_at_once(replicas):
    limiters = [SharedRateLimiter(database, per_minute=5) for database in replicas]
    with ThreadPoolExecutor(max_workers=2) as pool:  # both replicas at the same moment, 10 questions each
        allowed = list(pool.map(lambda limiter: [limiter.allow(42) for _ in range(10)], limiters))
    assert sum(map(sum, allowed)) == 5
    assert limiters[0].allow(43)  # another user has a limit of their own


def test_an_update_is_claimed_by_one_replica_and_freed_when_its_connection_dies(replicas):
    first, second = SharedUpdates(replicas[0]), SharedUpdates(replicas[1])
    assert first.try_claim(1) == "claimed"
    assert second.try_claim(1) == "busy"
    first.answered(1)
    assert second.try_claim(1) == "answered"
    assert first.try_claim(2) == "claimed"
    (pid,) = replicas[0].query("SELECT pg_backend_pid()")[0]
    replicas[1].query("SELECT pg_terminate_backend(%s, 10000)", (pid,))  # as when the replica dies
    assert claim_when_free(second, 2) == "claimed"  # its lock ended with its session
    second.release(2)
    assert claim_when_free(first, 2) == "claimed"  # released without an answer: free again (new connection)


def claim_when_free(updates: SharedUpdates, update_id: int, timeout: float = 10) -> str:
    """`try_claim` until it is not "busy" (a lock ends a moment after its session), as the webhook does."""
    deadline = time.monotonic() + timeout
    while (status := updates.try_claim(update_id)) == "busy" and time.monotonic() < deadline:
        time.sleep(0.02)
    return status


def test_old_rows_are_forgotten_and_recent_ones_kept(replicas):
    first, _ = replicas
    SharedConversations(first, ChatSession, idle_seconds=600).save(7, ChatSession())
    key, recent = SharedArchive(first).add(7, an_answer()), SharedArchive(first).add(7, an_answer())
    first.query("INSERT INTO rag_bot_updates (update_id, answered) VALUES (1, now() - interval '8 days'), (2, now())")
    first.query("UPDATE rag_bot_answers SET created = now() - interval '8 days' WHERE key = %s", (key,))
    forget_old_rows(first, idle_seconds=600)
    assert first.query("SELECT update_id FROM rag_bot_updates") == [(2,)]
    assert SharedArchive(first).get(7, key) is None and SharedArchive(first).get(7, recent) == an_answer()
    assert first.query("SELECT chat_id FROM rag_bot_conversations") == [(7,)]
    forget_old_rows(first, idle_seconds=0)
    assert first.query("SELECT chat_id FROM rag_bot_conversations") == []


def test_a_chats_turn_is_held_by_one_replica_at_a_time_until_its_update_ends(replicas):
    first, second = SharedUpdates(replicas[0]), SharedUpdates(replicas[1])
    assert first.try_claim(10) == "claimed" and first.try_take_turn(10, -100)
    assert first.try_claim(11) == "claimed" and first.try_take_turn(11, -100)  # its own next update queues in-process
    assert second.try_claim(12) == "claimed" and not second.try_take_turn(12, -100)
    assert second.try_take_turn(12, -200)  # another chat is free
    first.answered(10, -100)
    assert not second.try_take_turn(12, -100)  # update 11 still holds it
    first.release(11, -100)
    assert second.try_take_turn(12, -100)


def test_after_a_reconnect_an_old_hold_is_not_released_on_the_new_connection(replicas):
    first, second = SharedUpdates(replicas[0]), SharedUpdates(replicas[1])
    assert first.try_claim(20) == "claimed" and first.try_take_turn(20, -300)
    (pid,) = replicas[0].query("SELECT pg_backend_pid()")[0]
    replicas[1].query("SELECT pg_terminate_backend(%s, 10000)", (pid,))  # the connection drops: its locks go
    assert claim_when_free(first, 21) == "claimed" and first.try_take_turn(21, -300)  # on the new connection
    first.release(20, -300)  # update 20's locks died with the old connection: nothing to release
    assert second.try_claim(22) == "claimed" and not second.try_take_turn(22, -300)  # update 21 keeps the chat
    first.answered(21, -300)
    assert second.try_take_turn(22, -300)
