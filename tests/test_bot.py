"""`python bot.py` start-up checks and the Telegram rendering helpers (the running bot: test_bot_telegram.py)."""

import subprocess
import sys

import pytest

from rag.answer import Answer, Citation
from rag.bot.render import sources_html, split_messages, telegram_html
from tests.conftest import ROOT


def test_without_a_token_the_bot_exits_with_one_line(monkeypatch):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    result = subprocess.run([sys.executable, "bot.py"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: set TELEGRAM_BOT_TOKEN to the token @BotFather gave you"


def test_telegram_html_escapes_document_text():
    citation = Citation(1, "a <b> & c", 0, 9, 1, 0.9, "doc.txt")
    (message,) = telegram_html(Answer("q", "x < y & z", False, [citation]))
    assert "x &lt; y &amp; z [1]" in message and "a &lt;b&gt; &amp; c" in message


def test_long_replies_are_split_between_paragraphs():
    paragraphs = ["word " * 300, "more " * 300, "end"]
    messages = split_messages(paragraphs, limit=2000)
    assert all(len(m) <= 2000 for m in messages) and len(messages) == 2
    assert split_messages(["x" * 5000], limit=4096) == ["x" * 4096, "x" * 904]


def run_bot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    import os

    default_log = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "bot.py", *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env=default_log | env
    )


def test_a_missing_document_fails_before_any_network_traffic(tmp_path):
    config = tmp_path / "bot.yaml"
    config.write_text(f"documents: [{tmp_path / 'gone.txt'}]\n")
    result = run_bot(
        {"TELEGRAM_BOT_TOKEN": "1:x", "RAG_CONFIG": str(config), "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/bot"}
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: document not found: {tmp_path / 'gone.txt'}"


def test_bot_py_takes_the_common_options_and_refuses_unknown_ones(tmp_path):
    config = tmp_path / "bot.yaml"
    config.write_text(f"documents: [{tmp_path / 'gone.txt'}]\n")
    env = {"TELEGRAM_BOT_TOKEN": "1:x", "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/bot"}
    result = run_bot(env, "--config", str(config))  # the config named on the command line is the one used
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: document not found: {tmp_path / 'gone.txt'}"
    result = run_bot(env, "--doc", str(tmp_path / "other.txt"))
    assert result.returncode == 1 and result.stderr.strip() == f"error: document not found: {tmp_path / 'other.txt'}"
    result = run_bot(env, "--confg", str(config))
    assert result.returncode == 2 and "unrecognized arguments: --confg" in result.stderr


def test_an_unreachable_bot_api_exits_with_a_clear_last_line():
    from tests.bot_harness import free_port

    port = free_port()
    result = run_bot({"TELEGRAM_BOT_TOKEN": "1:secret", "TELEGRAM_API_BASE_URL": f"http://127.0.0.1:{port}/bot"})
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()  # the one line only: no traceback before it
    assert line.startswith(f"error: cannot reach the Telegram Bot API at http://127.0.0.1:{port}/bot")
    assert "1:secret" not in result.stderr


def test_faiss_library_probing_stays_out_of_the_default_log():
    code = "from rag.bot.app import configure_logging; configure_logging('1:secret'); import faiss"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0 and "faiss" not in result.stderr


def test_sources_on_telegram_wrap_naturally_and_name_document_and_paragraph():
    quoted = Citation(
        1,
        "Last year, the administration revoked the American visa of the court's chief prosecutor,"
        " Gambian-born Fatou Bensouda.",
        1419,
        1591,
        9,
        0.9,
        "/srv/docs/dw.txt",
    )
    other = Citation(
        2,
        "However, ICC judges approved her investigation request in March after initially rejecting it.",
        1592,
        1690,
        9,
        0.1,
        "/srv/docs/dw.txt",
    )
    answer = Answer("q", quoted.text, False, [quoted, other], parts=[(quoted.text, 1)])
    (message,) = sources_html(answer)
    assert "dw.txt, paragraph 9 – quoted in the answer" in message and "1419" not in message and "chars" not in message
    assert f"“{quoted.text}”" in message  # one line: the phone wraps it
    (reply,) = telegram_html(answer)
    assert reply.count("Gambian-born") == 1  # the answer, not repeated as source [1]
    assert "[1] quoted above (dw.txt, paragraph 9)" in reply and "[2] <i>However, ICC judges" in reply


def test_sources_after_an_abstention_list_the_closest_passages():
    closest = Citation(1, "The ICC called the sanctions unprecedented.", 0, 44, 4, 0.2, "dw.txt")
    (message,) = sources_html(Answer("q", "dw.txt doesn't say.", True, [closest]))
    assert (
        message.startswith("My last answer quoted nothing") and "The ICC called the sanctions unprecedented." in message
    )
    assert sources_html(None) == ["No sources yet: ask a question first."]


def test_a_refusal_says_the_bot_is_not_confident_rather_than_that_the_passages_do_not_answer():
    closest = Citation(1, "The ICC called the sanctions unprecedented.", 0, 44, 4, 0.2, "dw.txt")
    (reply,) = telegram_html(Answer("q", "I couldn't find this in dw.txt.", True, [closest]))
    assert "<b>Closest passages (I am not confident they answer the question):</b>" in reply
    assert "not an answer" not in reply


def test_handlers_take_message_chat_and_sender_from_an_update_or_ignore_it():
    import datetime as dt

    from telegram import CallbackQuery, Chat, InaccessibleMessage, Message, Update, User

    from rag.bot.handlers import Incoming, incoming

    chat, user = Chat(5, Chat.PRIVATE), User(7, "Ann", is_bot=False)
    message = Message(1, dt.datetime.now(dt.UTC), chat, from_user=user, text="hi")
    assert incoming(Update(1, message=message)) == Incoming(message, chat, user)
    tapped = CallbackQuery("q", user, "ci", message=message, data="src:k")
    assert incoming(Update(2, callback_query=tapped)) == Incoming(message, chat, user)  # the tapper is the sender
    gone = CallbackQuery("q", user, "ci", message=InaccessibleMessage(chat, 1), data="src:k")
    with pytest.warns(UserWarning, match="InaccessibleMessage"):  # python-telegram-bot's own note
        assert incoming(Update(3, callback_query=gone)) is None  # no message to reply to
    post = Message(2, dt.datetime.now(dt.UTC), Chat(-9, Chat.CHANNEL), text="hi")
    assert incoming(Update(4, channel_post=post)) is None  # no sender


def test_telegram_citations_show_the_page_or_section():
    pdf = Citation(1, "The keeper counted ships.", 5, 30, 2, 0.9, "/docs/report.pdf", page=4)
    md = Citation(2, "Keep a <hammer>.", 0, 14, 3, 0.5, "handbook.md", section="Tools & Co")
    (message,) = telegram_html(Answer("q", "The keeper counted ships.", False, [pdf, md], parts=[(pdf.text, 1)]))
    assert "[1] quoted above (report.pdf, p. 4)" in message
    assert "(handbook.md, § Tools &amp; Co, paragraph 3)" in message
    (sources,) = sources_html(Answer("q", "x", False, [pdf], parts=[(pdf.text, 1)]))
    assert "report.pdf, p. 4 – quoted in the answer" in sources
