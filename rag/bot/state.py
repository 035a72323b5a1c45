"""Per-chat and per-user state the Telegram bot keeps in memory: conversations, rate limits and
the answers its buttons refer to. All of it is bounded, so a busy bot's memory stays flat.

Deliberate simplification: state lives in the process; a restart forgets conversations.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Generic, TypeVar

from rag.answer import Answer
from rag.chat import ChatSession

Clock = Callable[[], float]
T = TypeVar("T")


class BoundedStore(Generic[T]):
    """A mapping that forgets its least recently used entries beyond `capacity`."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.items: OrderedDict[object, T] = OrderedDict()

    def get(self, key: object) -> T | None:
        if key in self.items:
            self.items.move_to_end(key)
        return self.items.get(key)

    def put(self, key: object, value: T) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.capacity:
            self.items.popitem(last=False)

    def pop(self, key: object) -> None:
        self.items.pop(key, None)


class Conversations:
    """One `ChatSession` per chat, forgotten after `idle_seconds` without a question."""

    def __init__(
        self, new_session: Callable[[], ChatSession], idle_seconds: float, max_chats: int, clock: Clock = time.monotonic
    ):
        self.new_session = new_session
        self.idle_seconds = idle_seconds
        self.clock = clock
        self.sessions: BoundedStore[tuple[ChatSession, float]] = BoundedStore(max_chats)

    def session(self, chat_id: int) -> ChatSession:
        """This chat's session, fresh if it never had one or was idle too long."""
        now = self.clock()
        entry = self.sessions.get(chat_id)
        session = entry[0] if entry and now - entry[1] <= self.idle_seconds else self.new_session()
        self.sessions.put(chat_id, (session, now))
        return session

    def save(self, chat_id: int, session: ChatSession) -> None:
        """Nothing to do: the session object is the stored one (the shared store writes it back)."""

    def reset(self, chat_id: int) -> None:
        self.sessions.pop(chat_id)


class RateLimiter:
    """At most `per_minute` questions per user in any sliding 60-second window."""

    def __init__(self, per_minute: int, max_users: int = 100_000, clock: Clock = time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self.history: BoundedStore[deque[float]] = BoundedStore(max_users)

    def allow(self, user_id: int) -> bool:
        """Record a question and say whether it is within the limit."""
        now = self.clock()
        times = self.history.get(user_id) or deque()
        while times and now - times[0] >= 60:
            times.popleft()
        allowed = len(times) < self.per_minute
        if allowed:
            times.append(now)
        self.history.put(user_id, times)
        return allowed


class AnswerArchive:
    """Recent answers by key, for the "Sources" and "More context" buttons.

    Keys are random (unguessable, and unique across restarts, so an old button can never name a
    newer answer), and each answer remembers its chat: a key only opens answers of its own chat.
    """

    def __init__(self, capacity: int = 5_000):
        self.answers: BoundedStore[tuple[int, Answer]] = BoundedStore(capacity)

    def add(self, chat_id: int, answer: Answer) -> str:
        key = secrets.token_urlsafe(12)
        self.answers.put(key, (chat_id, answer))
        return key

    def get(self, chat_id: int, key: str) -> Answer | None:
        """The answer behind `key` if it was given in `chat_id`; None when unknown, expired or foreign."""
        entry = self.answers.get(key)
        return entry[1] if entry is not None and entry[0] == chat_id else None
