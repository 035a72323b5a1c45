"""The real bot (bot.py, python-telegram-bot, the real engine and index) against a fake Bot API server.

Each test uses its own chat ids, so they share one bot process. The last test stops the bot with
SIGTERM while an answer is in flight and then checks the whole DEBUG log for the token.
"""

from __future__ import annotations

import statistics

import pytest

from rag.evaluate import percentile
from tests.bot_harness import LOAD_CHATS, latencies, load, running_bot, stop, write_config
from tests.fake_telegram import FakeTelegram, unbolded, valid_telegram_html

pytestmark = pytest.mark.slow  # starts the bot, a server or PostgreSQL: not in the fast tier


@pytest.fixture(scope="module")
def bot(fake, article, shared_index_dir, onnx_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bot")
    examples = [
        "Who revoked Bensouda's visa?",
        "What did Mike Pompeo call the court?",
        "How did the ICC describe the sanctions?",
    ]
    telegram = {
        "questions_per_minute": 10,
        "messages_per_second": 1000,
        "group_messages_per_minute": 1000,
        "send_retries": 3,
        "example_questions": examples,
    }
    config = write_config(folder / "bot.yaml", article, telegram)
    log = folder / "bot.log"
    with running_bot(fake, config, shared_index_dir, log, onnx_dir) as process:
        process.log = log
        yield process


def ask(fake: FakeTelegram, chat_id: int, text: str, replies: int = 1, **kwargs) -> tuple[dict, list]:
    message = fake.push_text(chat_id, text, **kwargs)
    fake.wait_until(lambda: len(fake.replies_to(message)) >= replies)
    return message, fake.replies_to(message)


def buttons(call) -> dict[str, str]:
    markup = call.params.get("reply_markup") or {}
    return {b["text"]: b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row}


def test_start_shows_commands_and_example_buttons(fake, bot):
    assert {c["command"] for c in fake.sent(method="setMyCommands")[0].params["commands"]} >= {
        "start",
        "help",
        "sources",
        "reset",
        "about",
        "ask",
    }
    _, (reply,) = ask(fake, 1, "/start")
    assert "dw-icc-sanctions.txt" in reply.params["text"] and "/sources" in reply.params["text"]
    examples = buttons(reply)
    assert len(examples) == 3
    fake.push_callback(reply.result, examples["Who revoked Bensouda's visa?"], user_id=1)
    fake.wait_until(lambda: any("revoked the American visa" in c.params["text"] for c in fake.replies_to(reply.result)))
    _, (about,) = ask(fake, 1, "/about")
    assert "all-MiniLM-L6-v2" in about.params["text"] and "Passages:</b> 11" in about.params["text"]


def test_question_sources_context_follow_up_and_reset(fake, bot):
    chat = 2
    question, (answer,) = ask(fake, chat, "who revoked Bensouda's visa?")
    assert answer.params["parse_mode"] == "HTML"
    assert (
        "Last year, the administration revoked the American visa" in answer.params["text"]
        and "[1]" in answer.params["text"]
    )
    assert any(c.params["action"] == "typing" for c in fake.sent(chat, "sendChatAction"))
    keys = buttons(answer)
    fake.push_callback(answer.result, keys["Sources"], user_id=chat)
    fake.wait_until(lambda: any("paragraph 9" in c.params["text"] for c in fake.replies_to(answer.result)))
    fake.push_callback(answer.result, keys["More context"], user_id=chat)
    fake.wait_until(
        lambda: any("¶8" in c.params["text"] and "¶10" in c.params["text"] for c in fake.replies_to(answer.result))
    )

    ask(fake, chat, "Who is the US Secretary of State?")
    _, (follow_up,) = ask(fake, chat, "What did he call the court?")
    assert "kangaroo court" in unbolded(follow_up.params["text"])
    _, (sources,) = ask(fake, chat, "/sources")
    assert "kangaroo court" in sources.params["text"] and "paragraph 3" in sources.params["text"]
    _, (cleared,) = ask(fake, chat, "/reset")
    assert "cleared" in cleared.params["text"]
    _, (alone,) = ask(fake, chat, "What did he call the court?")
    assert "kangaroo court" not in unbolded(alone.params["text"])


def test_odd_input_gets_short_replies_or_silence(fake, bot):
    chat = 3
    for content in (
        {"photo": [{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}]},
        {
            "sticker": {
                "file_id": "s",
                "file_unique_id": "s",
                "type": "regular",
                "width": 1,
                "height": 1,
                "is_animated": False,
                "is_video": False,
            }
        },
        {"voice": {"file_id": "v", "file_unique_id": "v", "duration": 1}},
        {"document": {"file_id": "d", "file_unique_id": "d"}},
        {"location": {"latitude": 52.1, "longitude": 4.3}},
    ):
        message = fake.user_message(chat, **content)
        fake.push({"message": message})
        fake.wait_until(lambda message=message: fake.replies_to(message))
        assert "only read text" in fake.replies_to(message)[0].params["text"]
    edited = fake.push_text(chat, "Who is Fatou Bensouda?", edited=True)
    fake.push({"channel_post": fake.user_message(-1009, chat_type="channel", text="hello")})
    _, (blank,) = ask(fake, chat, "   ")
    assert "Please ask a question" in blank.params["text"]
    _, (long,) = ask(fake, chat, "w" * 10_000)
    assert "10,000 characters" in long.params["text"] and "1,000" in long.params["text"]
    _, (unknown,) = ask(fake, chat, "/frobnicate<b>&*_[")
    assert "/frobnicate&lt;b&gt;&amp;*_[" in unknown.params["text"]
    old = fake.sent(chat)[-1].result
    fake.push_callback(old, "src:ffffff", user_id=chat)
    fake.wait_until(lambda: any("expired" in c.params.get("text", "") for c in fake.sent(method="answerCallbackQuery")))
    ask(fake, chat, "Who is the US Secretary of State?")  # processed after the edit, in order
    assert fake.replies_to(edited) == [] and fake.sent(-1009) == []


def replies_to_message(call, message: dict) -> bool:
    """Whether a sendMessage call (delivered or not) replies to `message`."""
    to = (call.params.get("reply_parameters") or {}).get("message_id")
    return call.params.get("chat_id") == message["chat"]["id"] and to == message["message_id"]


def test_send_faults_are_retried_and_delivered_once(fake, bot):
    for chat, kind in ((41, "429"), (42, "502"), (43, "drop")):
        fake.fail_next("sendMessage", kind)
        message, replies = ask(fake, chat, "Who pardoned two US soldiers?")
        ask(fake, chat, "Who is Fatou Bensouda?")  # a chat's updates are handled in order: the first is done
        assert len(fake.replies_to(message)) == 1
        attempts = [c for c in fake.calls if c.method == "sendMessage" and replies_to_message(c, message)]
        assert [c.ok for c in attempts] == [False, True], kind
        if kind == "429":
            assert attempts[1].at - attempts[0].at >= 1.0
    fake.fail_next("sendMessage", "parse")
    _, (plain,) = ask(fake, 44, "Who pardoned two US soldiers?")
    assert (
        "parse_mode" not in plain.params
        and "<i>" not in plain.params["text"]
        and "Trump used his executive powers" in plain.params["text"]
    )


def test_rate_limit_per_user(fake, bot):
    chat = 5
    messages = [fake.push_text(chat, f"Who is Mike Pompeo? ({i})") for i in range(12)]
    fake.wait_until(lambda: all(fake.replies_to(m) for m in messages))
    texts = [fake.replies_to(m)[0].params["text"] for m in messages]
    assert sum("faster than I can keep up" in t for t in texts) == 2
    assert all("Mike Pompeo" in t for t in texts[:10])


def test_group_answers_only_when_addressed(fake, bot):
    group = -100123
    chatter = fake.push_text(group, "lunch at noon, anyone?", user_id=61, chat_type="group")
    mention, (answer,) = ask(fake, group, "@docbot who revoked Bensouda's visa?", user_id=61, chat_type="group")
    assert "revoked the American visa" in answer.params["text"]
    _, (replied,) = ask(
        fake, group, "Who is the US Secretary of State?", user_id=62, chat_type="group", reply_to=answer.result
    )
    assert "Mike Pompeo" in replied.params["text"]
    _, (command,) = ask(fake, group, "/ask What did he call the court?", user_id=61, chat_type="group")
    assert "kangaroo court" in unbolded(command.params["text"])  # a follow-up within the group's history
    ask(fake, group, "/ask@docbot who is Fatou Bensouda?", user_id=61, chat_type="group")
    assert fake.replies_to(chatter) == []


def test_conflict_is_logged_and_polling_goes_on(fake, bot):
    fake.fail_next("getUpdates", "409")
    fake.wait_until(lambda: "Another bot instance is polling" in bot.log.read_text(), timeout=30)
    _, (answer,) = ask(fake, 7, "Who is Fatou Bensouda?")
    assert "Bensouda" in answer.params["text"]


def test_load_100_chats_5_questions_each(fake, bot):
    elapsed, pushed = load(fake)
    for chat in LOAD_CHATS:
        replies = list(fake.sent(chat))
        assert len(replies) == 5, f"chat {chat} got {len(replies)} answers"
        assert [c.params["reply_parameters"]["message_id"] for c in replies] == [
            m["message_id"] for c_, m in pushed if c_ == chat
        ]
    waits = latencies(fake, pushed)
    p95 = percentile(waits, 95)
    assert len(waits) == 500 and 0 < min(waits) <= statistics.median(waits) <= p95 <= max(waits)
    assert max(waits) <= elapsed + 1  # every reply came within the run, after its question
    print(
        f"\nload test: 500 questions from 100 chats answered in {elapsed:.1f} s = {500 / elapsed:.1f} answers/s; "
        f"latency p50 {statistics.median(waits) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms"
    )


def test_every_html_reply_is_valid(fake, bot):
    chat = 77  # its own questions, so the test passes alone; the replies of earlier tests are checked too
    for text in (
        "/start",
        "who revoked Bensouda's visa?",
        "/sources",
        "What is the capital of France?",
        "/sources",
        "/frobnicate<b>&*_[",
    ):
        ask(fake, chat, text)
    html = [c for c in fake.calls if c.method == "sendMessage" and c.params.get("parse_mode") == "HTML"]
    assert len([c for c in html if c.params["chat_id"] == chat]) >= 6
    assert all(valid_telegram_html(c.params["text"]) for c in html)


def test_sigterm_finishes_the_answer_in_flight_and_no_token_in_logs(fake, bot):
    message = fake.push_text(8, "Who is the US Secretary of State?")
    fake.wait_until(lambda: fake.sent(8, "sendChatAction"))
    assert stop(bot) == 0
    assert len(fake.replies_to(message)) == 1
    log = bot.log.read_text()
    assert "DEBUG" in log and fake.token not in log and fake.token.split(":")[1] not in log


# ---- separate processes: restricted bot with a tiny message limit; a bad token ----


@pytest.fixture(scope="module")
def tricky_document(tmp_path_factory):
    path = tmp_path_factory.mktemp("tricky") / "notes.txt"
    path.write_text(
        "The comparison rule says that x < y & z must hold for every *starred* value, while snake_case_names "
        "and [bracketed] notes are kept exactly as written by the engineers of the pipeline.\n\n"
        "The pipeline was designed by Ada Okafor in 2021 and it runs every night on the build cluster.\n\n"
        + " ".join(
            f"Step {n} of the pipeline checks that batch {n} arrived complete before it is archived."
            for n in range(1, 60)
        )
        + "\n",
        encoding="utf-8",
    )
    return path


def test_restricted_bot_splits_long_replies_and_refuses_strangers(tricky_document, tmp_path, onnx_dir):
    telegram = {"allowed_user_ids": [111], "message_chars": 200, "messages_per_second": 1000}
    config = write_config(tmp_path / "bot.yaml", tricky_document, telegram, chunking={"unit": "paragraph"})
    with FakeTelegram() as fake, running_bot(fake, config, tmp_path / "index", tmp_path / "bot.log", onnx_dir):
        stranger = fake.push_text(222, "What does the comparison rule say?")
        again = fake.push_text(222, "Hello?")
        fake.wait_until(lambda: fake.replies_to(stranger))
        question = fake.push_text(111, "What does the comparison rule say?")
        fake.wait_until(lambda: any(buttons(c) for c in fake.replies_to(question)))
        fake.wait_until(lambda: f"Ignored message {again['message_id']} from 222" in (tmp_path / "bot.log").read_text())
        assert "private" in fake.replies_to(stranger)[0].params["text"] and fake.replies_to(again) == []
        replies = fake.replies_to(question)
        assert all(len(c.params["text"]) <= 200 for c in replies)
        assert "x &lt; y &amp; z" in unbolded(replies[0].params["text"]) and "*starred*" in replies[0].params["text"]
        long_question = fake.push_text(111, "What does each step of the pipeline check?")
        fake.wait_until(lambda: any(buttons(c) for c in fake.replies_to(long_question)))  # buttons come last
        long_replies = fake.replies_to(long_question)
        assert sum(len(c.params["text"]) for c in long_replies) > 5000 and all(
            len(c.params["text"]) <= 200 for c in long_replies
        )
        assert any("Step 59 of the pipeline" in c.params["text"] for c in long_replies)
        keys = buttons(replies[-1])
        fake.push_callback(replies[-1].result, keys["Sources"], user_id=111)
        fake.wait_until(lambda: len(fake.replies_to(replies[-1].result)) >= 2)
        assert all(valid_telegram_html(c.params["text"]) for c in fake.sent() if c.params.get("parse_mode") == "HTML")
        assert all(c.ok for c in fake.calls if c.method == "sendMessage")


def test_a_button_never_shows_another_chats_answer_even_after_a_restart(article, shared_index_dir, onnx_dir, tmp_path):
    config = write_config(tmp_path / "bot.yaml", article, {"messages_per_second": 1000})
    with FakeTelegram() as fake, running_bot(fake, config, shared_index_dir, tmp_path / "first.log", onnx_dir):
        _, (old_answer,) = ask(fake, 111, "who revoked Bensouda's visa?")
    old_sources = buttons(old_answer)["Sources"]
    with FakeTelegram() as fake, running_bot(fake, config, shared_index_dir, tmp_path / "second.log", onnx_dir):
        _, (other_answer,) = ask(fake, 222, "Who is the US Secretary of State?")
        fake.push_callback(old_answer.result, old_sources, user_id=111)  # the old button, after the restart
        # chat 222's key, sent from chat 111
        fake.push_callback(old_answer.result, buttons(other_answer)["Sources"], user_id=111)
        fake.wait_until(lambda: len(fake.sent(method="answerCallbackQuery")) == 2)
        later, _ = ask(fake, 111, "Who is Fatou Bensouda?")  # handled after both taps, in the chat's order
        assert all("expired" in c.params.get("text", "") for c in fake.sent(method="answerCallbackQuery"))
        assert [c.params["reply_parameters"]["message_id"] for c in fake.sent(111)] == [later["message_id"]]


def test_invalid_token_exits_with_one_line(article, shared_index_dir, tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    with FakeTelegram() as fake:
        env = os.environ | {
            "TELEGRAM_BOT_TOKEN": "999:wrong",
            "TELEGRAM_API_BASE_URL": fake.base_url,
            "RAG_INDEX_DIR": str(shared_index_dir),
        }
        result = subprocess.run(
            [sys.executable, "bot.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "error: Telegram rejected the bot token; check TELEGRAM_BOT_TOKEN"
    assert "999:wrong" not in result.stderr
    assert len([c for c in fake.calls if c.method == "getMe"]) <= 1


def test_generated_answers_grow_in_place_then_show_the_verified_text(article, shared_index_dir, onnx_dir, tmp_path):
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI() as llm, FakeTelegram() as fake:
        llm.reply = (
            "The Trump administration revoked the visa of the court's chief prosecutor last year [1]."
            " She was arrested in 2019 [1]."
        )
        llm.stream_delay = 0.4
        llm_settings = {"provider": "openai_compatible", "base_url": llm.base_url, "model": "fake", "timeout_s": 30}
        config = write_config(tmp_path / "bot.yaml", article, {"messages_per_second": 1000}, llm=llm_settings)
        with running_bot(fake, config, shared_index_dir, tmp_path / "bot.log", onnx_dir):
            question = fake.push_text(9, "who revoked Bensouda's visa?")
            fake.wait_until(lambda: any(buttons(c) for c in fake.sent(9, "editMessageText")))
        placeholder = fake.replies_to(question)[0]
        edits = fake.sent(9, "editMessageText")
        assert all(e.params["message_id"] == placeholder.result["message_id"] for e in edits)
        drafts, final = edits[:-1], edits[-1]
        assert drafts and all("drafting" in e.params["text"] for e in drafts)
        # at most about one edit a second
        assert all(b.at - a.at >= 0.9 for a, b in zip(drafts, drafts[1:], strict=False))
        assert final.params["text"].startswith(
            "The Trump administration revoked the visa of the court's chief prosecutor last year [1]."
        )
        assert "arrested" not in final.params["text"] and set(buttons(final)) == {"Sources", "More context"}
        assert all(valid_telegram_html(e.params["text"]) for e in edits)
