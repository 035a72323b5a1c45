"""Webhook mode end to end: the real `bot.py` serves its webhook over real HTTP, and answers
through the fake Bot API."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from rag.bot.webhook import HEALTH_PATH, SECRET_HEADER, ChatQueues, RecentIds, webhook_path
from tests.bot_harness import free_port, running_bot, stop, write_config
from tests.conftest import ROOT
from tests.fake_telegram import FakeTelegram

pytestmark = pytest.mark.slow  # starts the bot, a server or PostgreSQL: not in the fast tier

SECRET = "s3cret-Webhook_token"
PATH = "/tg/updates"


@pytest.fixture(scope="module")
def webhook_bot(fake, article, shared_index_dir, onnx_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("webhook")
    port = free_port()
    telegram = {
        "mode": "webhook",
        "webhook_url": f"https://bot.example.org{PATH}",
        "listen": "127.0.0.1",
        "port": port,
        "questions_per_minute": 1000,
        "messages_per_second": 1000,
        "group_messages_per_minute": 1000,
    }
    config = write_config(folder / "bot.yaml", article, telegram)
    log = folder / "bot.log"
    with running_bot(fake, config, shared_index_dir, log, onnx_dir, {"TELEGRAM_WEBHOOK_SECRET": SECRET}) as process:
        fake.wait_until(lambda: bool(fake.sent(method="setWebhook")), timeout=60)
        process.log, process.url = log, f"http://127.0.0.1:{port}"
        wait_until_serving(process.url)
        yield process


def wait_until_serving(url: str) -> None:
    for _ in range(100):
        try:
            httpx.get(url + HEALTH_PATH, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the webhook server did not start")


def post(bot, update: dict, secret: str | None = SECRET) -> httpx.Response:
    headers = {} if secret is None else {SECRET_HEADER: secret}
    return httpx.post(bot.url + PATH, content=json.dumps(update), headers=headers, timeout=30)


def text_update(fake: FakeTelegram, update_id: int, chat_id: int, text: str) -> dict:
    return {"update_id": update_id, "message": fake.user_message(chat_id, text=text)}


def test_the_webhook_is_registered_with_its_secret_and_health_says_ready(fake, webhook_bot):
    call = fake.sent(method="setWebhook")[-1]
    assert call.params["url"] == f"https://bot.example.org{PATH}"
    assert call.params["secret_token"] == SECRET
    health = httpx.get(webhook_bot.url + HEALTH_PATH, timeout=10)
    assert health.status_code == 200 and health.json() == {"ready": True}


def test_a_question_is_answered_before_it_is_acknowledged_and_a_redelivered_update_only_once(fake, webhook_bot):
    update = text_update(fake, 101, 7, "who revoked Bensouda's visa?")
    assert post(webhook_bot, update).status_code == 200
    assert len(fake.replies_to(update["message"])) == 1  # the 200 came after the reply was sent
    assert "revoked the American visa" in fake.replies_to(update["message"])[0].params["text"]
    assert post(webhook_bot, update).status_code == 200  # Telegram retrying: acknowledged, not answered again
    twice = text_update(fake, 102, 7, "Who is the US Secretary of State?")
    with ThreadPoolExecutor(max_workers=2) as pool:  # posted again while the first is being answered
        responses = list(pool.map(lambda _: post(webhook_bot, twice), range(2)))
    assert [r.status_code for r in responses] == [200, 200]
    assert len(fake.replies_to(twice["message"])) == 1  # both acknowledged only after the one answer
    assert len(fake.replies_to(update["message"])) == 1


def test_a_wrong_or_missing_secret_gets_403_and_no_answer(fake, webhook_bot):
    wrong = text_update(fake, 201, 8, "who revoked Bensouda's visa?")
    assert post(webhook_bot, wrong, secret="not-the-secret").status_code == 403
    assert post(webhook_bot, wrong, secret=None).status_code == 403
    assert httpx.post(webhook_bot.url + PATH, content=b"{not json", headers={SECRET_HEADER: SECRET}).status_code == 400
    right = text_update(fake, 202, 8, "Who is the US Secretary of State?")
    post(webhook_bot, right)
    fake.wait_until(lambda: len(fake.replies_to(right["message"])) == 1)
    assert fake.replies_to(wrong["message"]) == []


def test_20_chats_3_questions_each_answered_once_in_order(fake, webhook_bot):
    """Chats post at the same time (as Telegram's parallel connections do), each chat in order."""
    questions = ["who revoked Bensouda's visa?", "Who is the US Secretary of State?", "What did Pompeo call the court?"]
    chats = range(300, 320)
    updates = {c: [text_update(fake, 1000 + 10 * c + i, c, q) for i, q in enumerate(questions)] for c in chats}

    def ask_in_order(chat: int) -> list[int]:
        return [post(webhook_bot, update).status_code for update in updates[chat]]

    with ThreadPoolExecutor(max_workers=len(chats)) as pool:
        assert all(codes == [200] * 3 for codes in pool.map(ask_in_order, chats))
    sent = {chat: [u["message"] for u in chat_updates] for chat, chat_updates in updates.items()}
    assert all(len(fake.replies_to(m)) == 1 for ms in sent.values() for m in ms)
    for chat, messages in sent.items():
        replied = [c.params["reply_parameters"]["message_id"] for c in fake.sent(chat)]
        assert replied == [m["message_id"] for m in messages]  # once each, in the order asked


def test_sigterm_finishes_the_answer_in_flight_and_no_secret_in_logs(fake, webhook_bot):
    update = text_update(fake, 5001, 9, "Who is the US Secretary of State?")
    with ThreadPoolExecutor(max_workers=1) as pool:
        response = pool.submit(post, webhook_bot, update)
        fake.wait_until(lambda: fake.sent(9, "sendChatAction"))
        assert stop(webhook_bot) == 0
        assert response.result().status_code == 200
    assert len(fake.replies_to(update["message"])) == 1
    log = webhook_bot.log.read_text()
    assert "Serving the webhook" in log and SECRET not in log and fake.token not in log


def test_webhook_mode_without_a_secret_exits_with_one_line(article, shared_index_dir, tmp_path):
    config = write_config(
        tmp_path / "bot.yaml", article, {"mode": "webhook", "webhook_url": "https://bot.example.org/tg"}
    )
    env = os.environ | {"TELEGRAM_BOT_TOKEN": "1:x", "RAG_CONFIG": str(config), "RAG_INDEX_DIR": str(shared_index_dir)}
    env.pop("TELEGRAM_WEBHOOK_SECRET", None)
    result = subprocess.run([sys.executable, "bot.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: webhook mode needs TELEGRAM_WEBHOOK_SECRET")


def test_recent_ids_forget_the_oldest():
    recent = RecentIds(size=2)
    assert recent.add(1) and recent.add(2) and not recent.add(1)
    assert recent.add(3) and recent.add(1)  # 1 was forgotten when 3 came
    assert webhook_path("https://bot.example.org") == "/" and webhook_path("https://x.org/a/b") == "/a/b"


def test_chat_queues_let_a_chats_updates_through_in_arrival_order_and_forget_idle_chats():
    queues, order = ChatQueues(), []

    async def claim(chat: int, name: str, seconds: float) -> None:
        async with queues.first_in(chat):
            await asyncio.sleep(seconds)  # the first one waits longest (another replica held the chat)
            order.append(name)

    async def main() -> None:
        await asyncio.gather(claim(1, "first", 0.05), claim(1, "second", 0), claim(2, "other chat", 0))

    asyncio.run(main())
    assert order == ["other chat", "first", "second"]
    assert queues._locks == {} and not queues._waiting
