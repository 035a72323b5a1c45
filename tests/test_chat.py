from pathlib import Path

import pytest

from rag.answer import Answer
from rag.chat import ChatSession, is_follow_up, small_talk_reply


def test_follow_up_uses_the_previous_turn(engine):
    session = engine.new_session()
    first = engine.ask("Who is the ICC's chief prosecutor?", session)
    assert "Fatou Bensouda" in first.text
    follow_up = engine.ask("Where was she born?", session)
    assert not follow_up.abstained
    assert "Gambian-born" in follow_up.text


def test_reset_forgets_the_conversation(engine):
    session = engine.new_session()
    engine.ask("Who is the US Secretary of State?", session)
    session.reset()
    assert session.context_for("What did he call the court?") == ""
    assert session.last_answer is None


def test_history_is_bounded(engine):
    session = ChatSession(history_turns=2)
    for question in ["Who is Fatou Bensouda?", "Who is Mike Pompeo?", "Who pardoned two soldiers?"]:
        engine.ask(question, session)
    assert [q for q, _ in session.turns] == ["Who is Mike Pompeo?", "Who pardoned two soldiers?"]
    assert ChatSession(history_turns=0).context_for("Where was she born?") == ""


def test_follow_up_detection():
    assert is_follow_up("What did they demand?")
    assert is_follow_up("Why?")
    assert is_follow_up("tell me more")
    assert not is_follow_up("Who revoked Bensouda's visa?")
    assert not is_follow_up("Who is Bensouda?")  # short, but it stands alone


@pytest.mark.parametrize("follow_up", ["What else did he suggest?", "tell me more", "anything else?"])
def test_asking_for_more_gives_a_passage_not_yet_quoted(engine, follow_up):
    session = engine.new_session()
    first = engine.ask("What did Mike Pompeo say the US would not do?", session)
    more = engine.ask(follow_up, session)
    assert not more.abstained and more.text
    quoted_before = {(c.source, c.start) for c in first.citations[: len(first.parts)]}
    quoted_now = {(c.source, c.start) for c in more.citations[: max(len(more.parts), 1)]}
    assert quoted_now - quoted_before  # a new passage (its antecedent may be quoted again before it)


@pytest.mark.parametrize(("message", "reply"), [("hi", "Hello!"), ("Thanks!", "welcome"), ("bye", "Goodbye")])
def test_small_talk_gets_a_short_friendly_reply(engine, message, reply):
    answer = engine.ask(message)
    assert reply in answer.text and not answer.abstained and not answer.citations
    assert small_talk_reply("Hi, who revoked the visa?") is None


def test_a_question_in_another_language_gets_a_hint(engine):
    answer = engine.ask("Wer hat Bensoudas Visum widerrufen?")
    assert answer.abstained and "language of the document" in answer.text
    assert not engine.ask("Bensouda visa revoked by whom").abstained


def test_sessions_in_parallel_threads_get_the_same_answers(engine):
    from concurrent.futures import ThreadPoolExecutor

    conversations = [
        ["Who is the ICC's chief prosecutor?", "Where was she born?"],
        ["Who is the US Secretary of State?", "What did he call the court?"],
    ] * 4

    def run(questions):
        session = engine.new_session()
        return [engine.ask(q, session).text for q in questions]

    expected = [run(c) for c in conversations]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(run, conversations)) == expected


def test_more_requests_move_on_even_when_citations_are_shown_relative(engine, monkeypatch):
    monkeypatch.chdir(engine.documents[0].path.parent)  # citations now show bare file names
    session = engine.new_session()
    engine.ask("Who is the US Secretary of State?", session)
    tops = [engine.ask("tell me more", session).citations[0].start for _ in range(3)]
    assert len(set(tops)) == 3


def test_only_real_requests_for_more_bypass_abstention(engine):
    assert engine.ask("Who else won the Nobel Prize in physics?").abstained
    assert engine.ask("tell me more").abstained  # nothing said yet to continue


def test_small_talk_and_language_hints_do_not_swallow_questions(engine):
    assert engine.ask("hi who is Khan?").mode == "extractive"
    assert engine.ask("thanks for the answer").mode == "conversation"
    assert "language of the document" not in engine.ask("Mercury boiling point temperature").text


@pytest.mark.parametrize(
    ("before", "follow_up"),
    [
        ([], "What else did he say?"),  # a fresh chat
        (["Who is the US Secretary of State?", "/reset"], "What else did he say?"),  # the conversation was cleared
        (["Who is the ICC's chief prosecutor?"], "What did he say about it?"),  # the answer is about a woman
    ],
)
def test_a_pronoun_with_nobody_to_stand_for_gets_a_question_back(engine, before, follow_up):
    session = engine.new_session()
    for message in before:
        session.reset() if message == "/reset" else engine.ask(message, session)
    reply = engine.ask(follow_up, session)
    assert reply.mode == "conversation" and not reply.citations
    assert reply.text == "Who do you mean by “he”? Please ask again with the name."


@pytest.mark.parametrize("before", [[], ["What is the capital of France?"]], ids=["fresh chat", "after a refusal"])
def test_tell_me_more_with_nothing_quoted_yet_gets_a_question_back(engine, before):
    from rag.engine import MORE_OF_NOTHING

    session = engine.new_session()
    for message in before:
        assert engine.ask(message, session).abstained
    reply = engine.ask("Tell me more", session)
    assert reply.text == MORE_OF_NOTHING and reply.mode == "conversation" and not reply.citations


def test_a_pronoun_of_the_person_just_named_is_answered():
    from rag.chat import name_gender, unresolved_pronoun

    texts = ["Ann Lee founded the firm. She sold it in 2001. Tom Hart joined later; he ran sales."]
    assert (name_gender("Ann Lee", texts), name_gender("Tom Hart", texts), name_gender("Nobody", texts)) == (
        "female", "male", None
    )  # fmt: skip
    session = ChatSession()
    session.add("Who founded the firm?", Answer("q", "Ann Lee founded the firm.", False))
    assert unresolved_pronoun("When did she sell it?", session, texts) is None
    assert unresolved_pronoun("When did he sell it?", session, texts) == "he"
    assert unresolved_pronoun("When was it sold?", session, texts) is None  # no personal pronoun


CONTINUE_IN_ANOTHER_FOLDER = """
import json, sys
from pathlib import Path
from rag.chat import ChatSession
from rag.config import load_config
from rag.engine import Engine

state, article, index_dir, question = sys.argv[1:]
config = load_config(None, doc=Path(article), index_dir=Path(index_dir))
engine = Engine.open(config)
session = ChatSession.from_record(json.loads(Path(state).read_text())) if Path(state).exists() else ChatSession()
answer = engine.ask(question, session)
Path(state).write_text(json.dumps(session.to_record()))
print(json.dumps([c.start for c in answer.citations[: len(answer.parts)]]))
"""


@pytest.mark.slow
def test_a_conversation_continues_in_a_process_started_in_another_folder(article, shared_index_dir, tmp_path):
    """As replicas share sessions: the second process sees the document under another path, and
    still does not quote again what the first one quoted."""
    import json
    import subprocess
    import sys

    state = tmp_path / "session.json"

    def ask(question: str, folder: Path) -> list[int]:
        command = [sys.executable, "-c", CONTINUE_IN_ANOTHER_FOLDER, str(state), str(article), str(shared_index_dir)]
        result = subprocess.run([*command, question], cwd=folder, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.splitlines()[-1])

    first = ask("What did Mike Pompeo say the US would not do?", article.parent)  # cited as "dw-icc-sanctions.txt"
    more = ask("tell me more", tmp_path)  # cited by its full path
    assert first and more and not set(more) <= set(first)  # something new (an antecedent may come again)


@pytest.mark.parametrize(
    "question",
    [
        "What did Tesla do with his money?",
        "Who underwent surgery to fix his arm?",
        "This person built it; what was his name?",
    ],
)
def test_a_pronoun_the_question_itself_explains_is_not_asked_back(question):
    from rag.chat import unresolved_pronoun

    assert unresolved_pronoun(question, ChatSession(), []) is None
