from rag.answer import Answer
from rag.bot.state import AnswerArchive, BoundedStore, Conversations, RateLimiter
from rag.chat import ChatSession


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bounded_store_forgets_the_least_recently_used():
    store = BoundedStore(2)
    store.put("a", 1)
    store.put("b", 2)
    assert store.get("a") == 1  # "a" is now the most recent
    store.put("c", 3)
    assert (store.get("a"), store.get("b"), store.get("c")) == (1, None, 3)


def test_conversations_expire_after_idle_time_and_reset():
    clock = Clock()
    conversations = Conversations(ChatSession, idle_seconds=60, max_chats=10, clock=clock)
    first = conversations.session(1)
    clock.now = 59
    assert conversations.session(1) is first
    clock.now = 59 + 61
    assert conversations.session(1) is not first
    kept = conversations.session(1)
    conversations.reset(1)
    assert conversations.session(1) is not kept
    assert conversations.session(2) is not conversations.session(3)


def test_rate_limiter_uses_a_sliding_minute_per_user():
    clock = Clock()
    limiter = RateLimiter(per_minute=2, clock=clock)
    assert [limiter.allow(7) for _ in range(3)] == [True, True, False]
    assert limiter.allow(8)
    clock.now = 59.9
    assert not limiter.allow(7)
    clock.now = 60.0
    assert limiter.allow(7)


def test_answer_archive_keys_and_expiry():
    archive = AnswerArchive(capacity=1)
    first = archive.add(5, Answer("q", "a", False))
    second = archive.add(5, Answer("q2", "b", False))
    assert first != second
    assert archive.get(5, first) is None and archive.get(5, second).text == "b"
    assert archive.get(5, "nonsense") is None


def test_answer_archive_opens_answers_only_in_their_own_chat():
    archive = AnswerArchive()
    key = archive.add(111, Answer("q", "secret", False))
    assert archive.get(111, key).text == "secret"
    assert archive.get(222, key) is None


def test_answer_archive_keys_are_random_and_differ_across_restarts():
    before_restart, after_restart = AnswerArchive(), AnswerArchive()
    old_key = before_restart.add(111, Answer("q", "a", False))
    new_key = after_restart.add(222, Answer("q", "b", False))
    assert old_key != new_key and len(old_key) >= 16
    assert after_restart.get(111, old_key) is None
    assert len({AnswerArchive().add(1, Answer("q", "a", False)) for _ in range(200)}) == 200
