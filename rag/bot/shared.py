"""The bot's chat state in PostgreSQL (`store.backend: postgres`), shared by its replicas.

Same interfaces as the in-memory `rag.bot.state` classes, on small tables with row-level updates
(no pickled blob per update, as python-telegram-bot's persistence would write):

    rag_bot_conversations(chat_id, session, updated)   one row per chat: its turns and quoted passages
    rag_bot_answers(key, chat_id, answer, created)      the answers "Sources" and "More context" open
    rag_bot_rates(user_id, asked)                       each user's question times in the last minute
    rag_bot_updates(update_id, answered)                updates answered, so a redelivered one is not

So a follow-up posted to another replica is answered as a follow-up, a button works on any
replica, and a user's rate is counted across them. Every call is a blocking database call: the
handlers make them in a worker thread. Old rows are deleted every `CLEANUP_EVERY` answers
(answers and updates after `RETENTION`, conversations after the idle time).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable

from rag.answer import Answer
from rag.chat import ChatSession
from rag.database import Database, Session

RETENTION = "7 days"  # answers behind buttons, and answered update ids
CLEANUP_EVERY = 100  # saved conversations between two deletions of old rows (kept off each answer)
UPDATE_LOCKS = 0x72616775  # advisory-lock class of the updates being answered ("ragu")
RATE_LOCKS = UPDATE_LOCKS + 1  # ... and of the users whose rate is being counted
CHAT_LOCKS = UPDATE_LOCKS + 2  # ... and of the chats a replica is answering in
SCHEMA_LOCK = 0x72616773  # advisory lock taken while creating the tables ("rags")
SCHEMA = """
CREATE TABLE IF NOT EXISTS rag_bot_conversations (
    chat_id bigint PRIMARY KEY, session jsonb NOT NULL, updated timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS rag_bot_answers (
    key text PRIMARY KEY, chat_id bigint NOT NULL, answer jsonb NOT NULL, created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS rag_bot_rates (user_id bigint NOT NULL, asked timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS rag_bot_updates (update_id bigint PRIMARY KEY, answered timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS rag_bot_conversations_updated ON rag_bot_conversations (updated);
CREATE INDEX IF NOT EXISTS rag_bot_answers_created ON rag_bot_answers (created);
CREATE INDEX IF NOT EXISTS rag_bot_rates_user ON rag_bot_rates (user_id, asked);
CREATE INDEX IF NOT EXISTS rag_bot_updates_answered ON rag_bot_updates (answered);
"""


def create_tables(database: Database) -> None:
    """The tables, once: replicas starting together take turns (concurrent CREATE ... IF NOT
    EXISTS of one table can fail in PostgreSQL)."""
    with database.transaction() as connection:
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        connection.execute(SCHEMA)


def forget_old_rows(database: Database, idle_seconds: float) -> None:
    """Delete what no replica will read again: idle conversations (a question after the idle
    time starts afresh anyway), and answers and update ids older than `RETENTION`."""
    database.query(
        "DELETE FROM rag_bot_conversations WHERE updated < now() - make_interval(secs => %s)", (idle_seconds,)
    )
    database.query("DELETE FROM rag_bot_answers WHERE created < now() - %s::interval", (RETENTION,))
    database.query("DELETE FROM rag_bot_updates WHERE answered < now() - %s::interval", (RETENTION,))


def lock_id(number: int) -> int:
    """A user or update id as the int4 half of a two-key advisory lock."""
    return number % 2**31


class SharedConversations:
    """One `ChatSession` per chat, read before a question and written after its answer."""

    def __init__(self, database: Database, new_session: Callable[[], ChatSession], idle_seconds: float):
        self.database, self.new_session, self.idle_seconds = database, new_session, idle_seconds
        self.saves = 0

    def session(self, chat_id: int) -> ChatSession:
        """This chat's session, fresh if it never had one or was idle too long."""
        rows = self.database.query(
            "SELECT session FROM rag_bot_conversations"
            " WHERE chat_id = %s AND updated > now() - make_interval(secs => %s)",
            (chat_id, self.idle_seconds),
        )
        return ChatSession.from_record(rows[0][0]) if rows else self.new_session()

    def save(self, chat_id: int, session: ChatSession) -> None:
        self.database.query(
            "INSERT INTO rag_bot_conversations (chat_id, session) VALUES (%s, %s) "
            "ON CONFLICT (chat_id) DO UPDATE SET session = excluded.session, updated = now()",
            (chat_id, json.dumps(session.to_record())),
        )
        self.saves += 1
        if self.saves % CLEANUP_EVERY == 0:
            forget_old_rows(self.database, self.idle_seconds)

    def reset(self, chat_id: int) -> None:
        self.database.query("DELETE FROM rag_bot_conversations WHERE chat_id = %s", (chat_id,))


class SharedRateLimiter:
    """At most `per_minute` questions per user in any sliding 60-second window, over all replicas."""

    def __init__(self, database: Database, per_minute: int):
        self.database, self.per_minute = database, per_minute

    def allow(self, user_id: int) -> bool:
        """Record a question and say whether it is within the limit (one transaction, with the
        user's rows locked, so two replicas cannot both let the last one through)."""
        with self.database.transaction() as connection:
            connection.execute("SELECT pg_advisory_xact_lock(%s, %s)", (RATE_LOCKS, lock_id(user_id)))
            connection.execute(
                "DELETE FROM rag_bot_rates WHERE user_id = %s AND asked < now() - interval '60 seconds'", (user_id,)
            )
            row = connection.execute("SELECT count(*) FROM rag_bot_rates WHERE user_id = %s", (user_id,)).fetchone()
            allowed = row is not None and row[0] < self.per_minute
            if allowed:
                connection.execute("INSERT INTO rag_bot_rates (user_id) VALUES (%s)", (user_id,))
        return allowed


class SharedArchive:
    """Answers by random key, each opening only in its own chat (as `AnswerArchive`)."""

    def __init__(self, database: Database):
        self.database = database

    def add(self, chat_id: int, answer: Answer) -> str:
        key = secrets.token_urlsafe(12)
        self.database.query(
            "INSERT INTO rag_bot_answers (key, chat_id, answer) VALUES (%s, %s, %s)",
            (key, chat_id, json.dumps(answer.to_record())),
        )
        return key

    def get(self, chat_id: int, key: str) -> Answer | None:
        """The answer behind `key` if it was given in `chat_id`; None when unknown, expired or foreign."""
        rows = self.database.query("SELECT answer FROM rag_bot_answers WHERE key = %s AND chat_id = %s", (key, chat_id))
        return Answer.from_record(rows[0][0]) if rows else None


class SharedUpdates:
    """Which updates were answered, and which one a replica is answering now. A replica claims
    an update with an advisory lock on its own connection: if it dies, the connection and the
    lock go with it, so the copy Telegram posts again can be taken over by another replica.
    Each lock is released only on the connection that took it: after a reconnect, an unlock on
    the new connection could release another update's hold of the same chat."""

    def __init__(self, database: Session):
        self.database = database
        self._epochs: dict[tuple[int, int], int] = {}  # (lock class, update_id) -> its connection epoch

    def try_claim(self, update_id: int) -> str:
        """ "claimed": this replica holds the update's lock and may answer it; "answered": it was
        answered already; "busy": another replica is answering it now. (Call it once per update
        at a time: the session that holds a lock may take it again.)"""
        if not self.database.query("SELECT pg_try_advisory_lock(%s, %s)", (UPDATE_LOCKS, lock_id(update_id)))[0][0]:
            return "busy"
        self._epochs[UPDATE_LOCKS, update_id] = self.database.epoch
        try:
            answered = bool(self.database.query("SELECT 1 FROM rag_bot_updates WHERE update_id = %s", (update_id,)))
        except BaseException:
            self.release(update_id)
            raise
        if answered:
            self.release(update_id)
            return "answered"
        return "claimed"

    def try_take_turn(self, update_id: int, chat_id: int) -> bool:
        """Take `chat_id`'s turn for `update_id`; False while another replica answers in that chat
        (a turn reads and then writes the chat's conversation: two at once would lose one of
        them). This replica may take it for several updates: its own queue in order anyway."""
        if not self.database.query("SELECT pg_try_advisory_lock(%s, %s)", (CHAT_LOCKS, lock_id(chat_id)))[0][0]:
            return False
        self._epochs[CHAT_LOCKS, update_id] = self.database.epoch
        return True

    def answered(self, update_id: int, chat_id: int | None = None) -> None:
        """Record `update_id` as answered (committed), then release its lock (and its chat's turn)."""
        try:
            self.database.query(
                "INSERT INTO rag_bot_updates (update_id) VALUES (%s) ON CONFLICT DO NOTHING", (update_id,)
            )
        finally:
            self.release(update_id, chat_id)

    def release(self, update_id: int, chat_id: int | None = None) -> None:
        """Release the update's lock (and its chat's turn), each even when the other fails (a lock
        left held would block the update or the chat on every replica)."""
        try:
            if chat_id is not None:
                self._unlock(CHAT_LOCKS, update_id, chat_id)
        finally:
            self._unlock(UPDATE_LOCKS, update_id, update_id)

    def _unlock(self, kind: int, update_id: int, key: int) -> None:
        """Unlock what `update_id` took, if it still holds it (not when its connection was replaced)."""
        if self._epochs.pop((kind, update_id), None) == self.database.epoch:
            self.database.query("SELECT pg_advisory_unlock(%s, %s)", (kind, lock_id(key)))
